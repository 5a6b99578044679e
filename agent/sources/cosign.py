"""Signed charts: an OCI chart source with ``verify: {provider: cosign, keys}`` deploys only a chart whose pulled
manifest digest carries a cosign signature by one of the keys, as Flux's ``OCIRepository.spec.verify`` with
static keys does.

Checked by the real cosign (``make`` builds it from its Go module into ``.venv/bin/cosign``; the image carries it):
``cosign verify --key <key> --insecure-ignore-tlog=true <registry>/<chart>@<digest>``, one key after the other
until one verifies. Offline: the signature is checked against the keys alone, the transparency log is not asked
(a registry on a private network needs no Rekor; a signature that was also logged verifies the same). The digest is
the one ``helm pull`` reports for what it pulled, so a chart re-pushed under the same tag after signing has
another digest, and no signature. The registry's credentials reach cosign in a Docker config of the source alone
(``DOCKER_CONFIG``, the file ``helm registry login`` writes), never on a command line; cosign's own state
(``~/.sigstore``) lives under the source's ``cacheDir``. Every run is bounded by the fetch's time left, its process
group killed after. Used by :mod:`agent.sources.charts`.
"""

from __future__ import annotations

import os
import pathlib
import tempfile

from agent import config
from agent.sources import tools
from reconcilers import errors


def binary() -> str | None:
    """The cosign to run: ``$GITOPS_AGENT_COSIGN``, the one beside the running Python, or on PATH."""
    return tools.find("cosign", "GITOPS_AGENT_COSIGN")


def verify(
    spec: config.ChartVerify,
    reference: str,
    digest: str,
    *,
    where: str,
    what: str,
    home: pathlib.Path,
    plain_http: bool,
    timeout: float,
) -> None:
    """Check that ``reference@digest`` (``reference`` without ``oci://``) is signed by one of ``spec.keys``.
    ``where``: the source (``source oci://...``), ``what``: the chart and version, in messages; ``home``: the
    source's Helm home, whose ``docker`` directory holds the registry's credentials; ``timeout``: seconds left.
    Raises FetchError ``Unverified (<what> @ <digest>: <reason>)``."""
    short = digest.removeprefix("sha256:")[:12]
    prefix = f"Unverified ({what} @ {short}"
    program = binary()
    if program is None:
        raise errors.FetchError(f"{prefix}: cosign is not installed (or set GITOPS_AGENT_COSIGN))")
    keys = [k.value(f"{where}.verify.keys[{i}]") for i, k in enumerate(spec.keys)]
    env = {**os.environ, "DOCKER_CONFIG": str(home / "docker"), "HOME": str(home), "TUF_ROOT": str(home / "tuf")}
    flags = ["--allow-http-registry", "--allow-insecure-registry"] if plain_http else []
    said = ""
    with tempfile.TemporaryDirectory(prefix="gitops-agent-cosign-") as tmp:
        for i, key in enumerate(keys):
            path = pathlib.Path(tmp) / f"key-{i}.pub"
            path.write_bytes(key)
            command = [program, "verify", "--key", str(path), "--insecure-ignore-tlog=true", "--output", "json",
                       *flags, f"{reference}@{digest}"]  # fmt: skip
            try:
                done = tools.run(command, tools.Limits(timeout=max(timeout, 1.0), memory=0), env=env)
            except tools.RenderTimeoutError:
                raise errors.FetchError(f"{prefix}: cosign did not answer within {timeout:.0f} s)") from None
            except OSError as e:
                raise errors.FetchError(f"{prefix}: cannot run cosign: {e.strerror or e})") from None
            if done.returncode == 0:
                return
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            said = lines[-1].removeprefix("Error: ").strip()[:300] if lines else said
    raise errors.FetchError(f"{prefix}: not signed by a key of verify.keys" + (f" (cosign: {said}))" if said else ")"))

"""Helm charts in a source: a directory holding ``Chart.yaml`` is rendered with the real ``helm template`` as one
unit (its files are never read as manifests), like a kustomization.

``helm template <release> <chart> --namespace <ns> --include-crds --skip-tests`` (Helm v4; ``make`` installs it
into ``.venv/bin/helm`` from its Go module): the release is named after the chart's directory and placed in the
cluster's namespace, CRDs under ``crds/`` are included and ``helm test`` hooks left out, as Argo CD renders a
chart. Each rendered document keeps the template it came from (Helm's ``# Source:`` line), so an error names
``<chart dir>/<template file>#<doc>``. Rendering is offline: ``lookup`` finds nothing, and until the cluster's
version and API versions are passed, ``.Capabilities`` is Helm's built-in default.

Helm hooks (``helm.sh/hook``) are refused with a clear error naming the template, never applied as plain
objects: sync phases and hooks are not implemented yet. Used by :mod:`agent.sources.manifests`.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

from reconcilers import errors

TIMEOUT = 120.0
"""Seconds one ``helm template`` may take."""
HOOK_ANNOTATION = "helm.sh/hook"
_SOURCE = re.compile(r"^# Source: (.+)$", re.MULTILINE)


def binary() -> str | None:
    """``$GITOPS_AGENT_HELM``, else ``helm`` beside the running Python (the venv ``make`` fills), else on PATH."""
    explicit = os.environ.get("GITOPS_AGENT_HELM")
    if explicit:
        return explicit
    beside = pathlib.Path(sys.executable).parent / "helm"
    if beside.is_file():
        return str(beside)
    return shutil.which("helm")


def is_chart(directory: pathlib.Path) -> bool:
    """True when ``directory`` holds a ``Chart.yaml``."""
    return (directory / "Chart.yaml").is_file()


def template(chart: pathlib.Path, rel: str, *, release: str, namespace: str) -> list[tuple[str, str]]:
    """Render the chart at ``chart`` (named ``rel`` in errors); returns ``(template file, YAML document)`` pairs
    in Helm's order, the template relative to the chart's parent directory as Helm prints it.

    Raises :class:`errors.ManifestError` naming ``rel`` with Helm's own message when it fails, is missing or
    takes longer than :data:`TIMEOUT` seconds."""
    helm = binary()
    if helm is None:
        raise errors.ManifestError(rel, None, "is a Helm chart but helm is not installed (or set GITOPS_AGENT_HELM)")
    with tempfile.TemporaryDirectory(prefix="gitops-agent-helm-") as home:
        env = {
            **os.environ,
            # Helm reads and writes its config, cache and data there: nothing of the user's is read or changed.
            "HELM_CONFIG_HOME": f"{home}/config",
            "HELM_CACHE_HOME": f"{home}/cache",
            "HELM_DATA_HOME": f"{home}/data",
        }
        command = [helm, "template", release, str(chart), "--namespace", namespace, "--include-crds", "--skip-tests"]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False, env=env)
        except subprocess.TimeoutExpired:
            raise errors.ManifestError(rel, None, f"helm template took longer than {TIMEOUT:.0f}s") from None
    if proc.returncode != 0:
        message = proc.stderr.strip().removeprefix("Error: ")
        raise errors.ManifestError(rel, None, f"helm template failed: {message}")
    return split(proc.stdout)


def split(output: str) -> list[tuple[str, str]]:
    """Helm's output as ``(template file, document)`` pairs (documents without a ``# Source:`` line are
    attributed to ``(unknown template)``)."""
    pairs = []
    for doc in re.split(r"^---\s*$", output, flags=re.MULTILINE):
        if not doc.strip():
            continue
        found = _SOURCE.search(doc)
        pairs.append((found.group(1).strip() if found else "(unknown template)", doc))
    return pairs


def refuse_hook(annotations: object, source_file: str, index: int) -> None:
    """Raise :class:`errors.ManifestError` when ``annotations`` mark a Helm hook (refused until sync phases
    exist: a hook applied as a plain object would run at the wrong time and stay as drift)."""
    if isinstance(annotations, dict) and HOOK_ANNOTATION in annotations:
        raise errors.ManifestError(
            source_file,
            index,
            f"Helm hook ({HOOK_ANNOTATION}: {annotations[HOOK_ANNOTATION]}) is not supported yet (sync phases and "
            "hooks are not implemented): turn the hook off in the chart's values",
        )

"""Chart sources: an HTTP chart repository (``type: helm``) or an OCI registry (``type: oci``), read with the real
``helm`` (``make`` installs it into ``.venv/bin/helm``).

A fetch resolves each chart the config's apps name from this source (``chart: {name, version}``) to one version
with Helm's own rules (``helm show chart --version <range>``: an exact version or a semver range, the newest
stable version without one; a chart repository's ``index.yaml`` is read anew each time), and downloads a version
not seen before (``helm pull --untar``, kept under the source's ``cacheDir``). The source's revision is a digest of
every chart's resolved version (its ``ref`` names them, ``podinfo 6.14.1``), so a new version matching a range is
a new revision on the next interval, and nothing changes otherwise. A tree of a revision holds each chart at
:func:`agent.apps.chart_dir`; the chart is then rendered like one in git.

Credentials (``usernameEnv``, ``passwordEnv`` or ``passwordFile``) reach Helm on standard input (``helm repo add
--password-stdin``, ``helm registry login --password-stdin``) into a Helm home of this source alone
(``HELM_CONFIG_HOME`` and the rest under ``cacheDir``), never on a command line, in a log or in an error. A fetch,
every ``helm`` run of it together, is stopped after the source's ``timeout``. A failed fetch (unreachable
server, a server that never answers, refused credentials, no version matching) raises
:class:`reconcilers.errors.FetchError` naming the source and chart: the last good revision stays deployed and the
source shows stale (as for git). Used by :mod:`agent.sources.local` (``open_source``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence

import yaml

from agent import apps, config, kubeyaml
from agent.sources import cosign, trees
from agent.sources.render import helm
from reconcilers import errors, resources

_KEEP_TREES = 3
_REPO_ALIAS = "source"


class ChartSource:
    """The charts of one chart repository or OCI registry. Same interface as :class:`agent.sources.git.GitSource`;
    ``charts``: the charts the config's apps name from it."""

    def __init__(self, source: config.SourceConfig, charts: Sequence[config.ChartRef]) -> None:
        self.source = source
        self.charts = tuple(dict.fromkeys(charts))
        self.dir = source.clone_dir()
        self.store = self.dir / "charts"
        self.last_good: resources.Revision | None = None
        self.last_error: str | None = None
        self.trees = trees.Trees(self.dir / "trees", _KEEP_TREES)
        self._resolved: dict[str, dict[str, str]] = {}  # revision sha -> {chart_dir: version}
        self._lock = threading.Lock()
        self._deadline = 0.0  # when the fetch in progress must end (monotonic seconds)
        self._verified: set[str] = set()  # manifest digests whose signature cosign checked (verify)

    @property
    def watched(self) -> None:
        """None: a chart source is fetched on its interval."""
        return None

    def fetch(self, stop: threading.Event | None = None) -> resources.Revision:
        """Resolve and download every chart; the revision of their versions. Raises FetchError."""
        with self._lock:
            try:
                revision = self._fetch(stop)
            except errors.FetchError as e:
                self.last_error = str(e)
                raise
            self.last_good, self.last_error = revision, None
            return revision

    def resolve(self, ref: str) -> resources.Revision:
        """A chart source has no history to preview. Raises FetchError."""
        raise errors.FetchError(f"source {self.source.url} is a chart {self.source.type} source: no revision {ref!r}")

    @contextlib.contextmanager
    def tree(self, revision: resources.Revision) -> Iterator[pathlib.Path]:
        """A directory holding each chart of ``revision`` at :func:`agent.apps.chart_dir`, held until the block
        ends. Raises FetchError for a revision this source did not fetch."""
        versions = self._resolved.get(revision.sha)
        if versions is None:
            raise errors.FetchError(f"source {self.source.url}: revision {revision.short} was not fetched here")

        def write(into: pathlib.Path) -> None:
            into.mkdir(parents=True)
            for where, version in versions.items():
                name = where.rpartition("/")[2]
                shutil.copytree(self.store / f"{name}-{version}" / name, into / where, symlinks=False)

        with self.trees.hold(revision.sha, write) as path:
            yield path

    # -- helm ------------------------------------------------------------------------------------------------
    def _fetch(self, stop: threading.Event | None) -> resources.Revision:
        self._deadline = time.monotonic() + self.source.timeout  # for the whole fetch, every helm run together
        if self.charts:
            self._login()
        versions: dict[str, str] = {}
        for chart in self.charts:
            if stop is not None and stop.is_set():
                raise errors.FetchError(f"source {self.source.url}: fetch stopped")
            version = self._version(chart)
            if isinstance(self.source.verify, config.ChartVerify):
                version = self._pull_verified(chart.name, version, self.source.verify)
            elif not (self.store / f"{chart.name}-{version}" / chart.name / "Chart.yaml").is_file():
                self._pull(chart.name, version)
            versions[apps.chart_dir(chart)] = version
        digest = hashlib.sha256(json.dumps(sorted(versions.items())).encode()).hexdigest()
        self._resolved[digest] = versions
        names = {where.rpartition("/")[2]: v.partition("@")[0] for where, v in versions.items()}
        return resources.Revision(digest, ", ".join(f"{n} {v}" for n, v in sorted(names.items())) or "no charts")

    def _ref(self, name: str) -> str:
        if self.source.type == "oci":
            return f"{self.source.url.rstrip('/')}/{name}"
        return f"{_REPO_ALIAS}/{name}"

    def _flags(self) -> list[str]:
        return ["--plain-http"] if self.source.type == "oci" and self.source.insecure else []

    def _login(self) -> None:
        """Register the repository (``helm repo add``: this also reads its index anew) or log in to the
        registry, with the credentials on standard input."""
        username, password = self._credentials()
        if self.source.type == "helm":
            auth = ["--username", username, "--password-stdin"] if username else []
            self._helm(["repo", "add", _REPO_ALIAS, self.source.url, "--force-update", *auth], "index.yaml", password)
        elif username:
            host = self.source.url.removeprefix("oci://").split("/", 1)[0]
            self._helm(["registry", "login", host, "--username", username, "--password-stdin", *self._flags()],
                       "registry login", password)  # fmt: skip

    def _credentials(self) -> tuple[str, str]:
        """(username, password) from the environment or the password file ("" when not configured)."""
        s = self.source
        out = []
        for key, env in (("usernameEnv", s.username_env), ("passwordEnv", s.password_env)):
            if env is None:
                out.append("")
            elif env not in os.environ:
                raise errors.FetchError(f"source {s.url}: {key}: environment variable {env} is not set")
            else:
                out.append(os.environ[env])
        if s.password_file:
            try:
                out[1] = pathlib.Path(s.password_file).expanduser().read_text().strip()
            except OSError as e:
                raise errors.FetchError(f"source {s.url}: passwordFile: cannot read it: {e.strerror or e}") from None
        return out[0], out[1]

    def _version(self, chart: config.ChartRef) -> str:
        version = ["--version", chart.version] if chart.version else []
        what = f"chart {chart.name}" + (f" {chart.version}" if chart.version else "")
        shown = self._helm(["show", "chart", self._ref(chart.name), *version, *self._flags()], what)
        try:
            found = kubeyaml.load(shown)
            return str(found["version"])
        except (yaml.YAMLError, KeyError, TypeError):
            raise errors.FetchError(
                f"source {self.source.url}: chart {chart.name}: no version in its Chart.yaml"
            ) from None

    def _pull(self, name: str, version: str, keep: str = "") -> str:
        """Pull chart ``name`` ``version`` into the store (as ``<name>-<version><keep>``); the manifest digest
        Helm reports for what it pulled ("" when it reports none: a chart repository)."""
        partial = self.store / f".{name}-{version}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        said = self._helm(["pull", self._ref(name), "--version", version, "--untar", "--untardir", str(partial),
                           *self._flags()], f"chart {name} {version}")  # fmt: skip
        digest = next((line.split()[-1] for line in said.splitlines() if line.startswith("Digest: ")), "")
        if keep == "@":
            keep = f"@{digest}"
            if not digest:
                shutil.rmtree(partial, ignore_errors=True)
                raise errors.FetchError(f"source {self.source.url}: chart {name} {version}: helm reported no digest")
            if (self.store / f"{name}-{version}{keep}" / name / "Chart.yaml").is_file():
                shutil.rmtree(partial, ignore_errors=True)  # this digest was pulled before: kept as it was
                return digest
        target = self.store / f"{name}-{version}{keep}"
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        return digest

    def _pull_verified(self, name: str, version: str, spec: config.ChartVerify) -> str:
        """Pull chart ``name`` ``version`` and check its digest's cosign signature (:mod:`agent.sources.cosign`);
        ``<version>@<digest>``, the store's name for it. A chart that does not verify is not kept. Pulled at every
        fetch: a tag re-pushed since shows as another digest. Raises FetchError ``Unverified (...)``."""
        digest = self._pull(name, version, keep="@")
        if digest in self._verified:
            return f"{version}@{digest}"
        try:
            cosign.verify(spec, self._ref(name).removeprefix("oci://"), digest, where=f"source {self.source.url}",
                          what=f"chart {name} {version}", home=self.dir / "helm", plain_http=self.source.insecure,
                          timeout=self._deadline - time.monotonic())  # fmt: skip
        except errors.FetchError:
            shutil.rmtree(self.store / f"{name}-{version}@{digest}", ignore_errors=True)
            raise
        self._verified.add(digest)
        return f"{version}@{digest}"

    def _helm(self, args: list[str], what: str, stdin: str = "") -> str:
        """Run ``helm`` with this source's Helm home; its stdout. Raises FetchError with Helm's message."""
        home = self.dir / "helm"
        env = {
            **os.environ,
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_DATA_HOME": str(home / "data"),
            "HELM_REGISTRY_CONFIG": str(home / "docker" / "config.json"),  # a Docker config: cosign reads it too
            "HELM_REPOSITORY_CONFIG": str(home / "config" / "repositories.yaml"),
            "HELM_REPOSITORY_CACHE": str(home / "cache" / "repository"),
        }
        binary = helm.binary()
        if binary is None:
            raise errors.FetchError(f"source {self.source.url}: helm is not installed (or set GITOPS_AGENT_HELM)")
        left = self._deadline - time.monotonic()
        try:
            if left <= 0:
                raise subprocess.TimeoutExpired(args, 0)
            done = subprocess.run(  # the pinned helm, arguments from the validated config
                [binary, *args], input=stdin, env=env, capture_output=True, text=True, timeout=left, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise errors.FetchError(
                f"source {self.source.url}: {what}: the fetch took over {self.source.timeout:g} s (timeout)"
            ) from None
        except OSError as e:
            raise errors.FetchError(f"source {self.source.url}: cannot run helm: {e.strerror or e}") from None
        if done.returncode != 0:
            message = (done.stderr.strip() or done.stdout.strip()).splitlines()
            raise errors.FetchError(
                f"source {self.source.url}: {what}: {(message[-1] if message else '?').removeprefix('Error: ')}"
            )
        return done.stdout


def make(source: config.SourceConfig, chart_refs: Sequence[config.ChartRef] = ()) -> ChartSource:
    """The chart source of ``source`` with the charts ``chart_refs`` (:data:`agent.source_kinds.KINDS`' entry
    point for ``helm`` and ``oci``)."""
    return ChartSource(source, chart_refs)

"""A local directory as the source (developer mode), and the choice between it and git.

``LocalSource`` serves a plain directory (not a git repository): its revision is a digest of every file's path
and content (``Revision(sha=<sha256>, ref="local")``), and each revision is read from a snapshot copy, so a file
saved halfway through a reconcile never mixes two versions. ``agent.runtime.fleet`` watches the directory with
watchfiles and reconciles within a second of a save. :func:`open_source` picks the source type from
``source.type`` (``auto``: a local directory that is not a git repository is local, anything else is git).
Used by ``agent.cli`` and ``agent.runtime.fleet``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import shutil
import threading
from collections.abc import Iterator, Sequence

from agent import config
from agent.sources import charts, git, trees
from reconcilers import errors, resources

_KEEP_SNAPSHOTS = 3


class LocalSource:
    """A directory of desired state read as it is on disk. Same interface as :class:`git.GitSource`."""

    def __init__(self, source: config.SourceConfig) -> None:
        self.source = source
        self.path = pathlib.Path(source.url).expanduser().resolve()
        self.dir = source.clone_dir()
        self.last_good: resources.Revision | None = None
        self.last_error: str | None = None
        self.trees = trees.Trees(self.dir.parent / f"{self.dir.name}-local", _KEEP_SNAPSHOTS)
        self._lock = threading.Lock()

    def fetch(self, stop: threading.Event | None = None) -> resources.Revision:
        """Digest the directory into a revision (local: ``stop`` is not needed). Raises FetchError when it cannot
        be read."""
        with self._lock:
            try:
                revision = resources.Revision(_digest(self.path), "local")
            except OSError as e:
                self.last_error = f"local source {self.path}: {e.strerror or e}"
                raise errors.FetchError(self.last_error) from e
            self.last_good, self.last_error = revision, None
            return revision

    def resolve(self, ref: str) -> resources.Revision:
        """A local source keeps no history: only its current content can be previewed. Raises FetchError."""
        raise errors.FetchError(f"source {self.path} is a local directory: it has no revision {ref!r}")

    @contextlib.contextmanager
    def tree(self, revision: resources.Revision) -> Iterator[pathlib.Path]:
        """A snapshot of the directory for ``revision`` (taken now), held until the block ends."""

        def write(into: pathlib.Path) -> None:
            shutil.copytree(self.path, into, symlinks=True, ignore=shutil.ignore_patterns(".git"))

        with self.trees.hold(revision.sha, write) as path:
            yield path


def _digest(path: pathlib.Path) -> str:
    if not path.is_dir():
        raise FileNotFoundError(2, "not a directory", str(path))
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for name in sorted(filenames):
            file = pathlib.Path(dirpath) / name
            h.update(file.relative_to(path).as_posix().encode() + b"\0")
            h.update(os.readlink(file).encode() if file.is_symlink() else file.read_bytes())
            h.update(b"\0")
    return h.hexdigest()


Source = git.GitSource | LocalSource | charts.ChartSource


def is_local(source: config.SourceConfig) -> bool:
    """True when ``source`` is served as a local directory (see the module docstring)."""
    if source.type != "auto":
        return source.type == "local"
    if "://" in source.url or ("@" in source.url and ":" in source.url):
        return False
    path = pathlib.Path(source.url).expanduser()
    is_repo = (path / ".git").exists() or ((path / "HEAD").is_file() and (path / "objects").is_dir())
    return path.is_dir() and not is_repo


def open_source(source: config.SourceConfig, chart_refs: Sequence[config.ChartRef] = ()) -> Source:
    """The source object for ``source``; ``chart_refs``: the charts apps name from it (chart sources only)."""
    if source.charts:
        return charts.ChartSource(source, chart_refs)
    return LocalSource(source) if is_local(source) else git.GitSource(source)


def open_all(cfg: config.AgentConfig) -> dict[str, Source]:
    """Every source of ``cfg`` by name, each chart source with the charts its apps name."""
    return {n: open_source(s, cfg.charts_of(n)) for n, s in cfg.all_sources().items()}


def checkouts(
    cfg: config.AgentConfig, held: contextlib.ExitStack
) -> tuple[dict[str, pathlib.Path], dict[str, errors.FetchError]]:
    """Every git and local source of ``cfg`` fetched once and checked out, each tree held by ``held`` (released
    when it closes): the trees by source name, and the fetch error of each source that failed (bounded by its
    ``timeout``). Chart repositories are left out: their charts are fetched by name at sync time. For commands
    that read the sources without syncing (``config validate``, ``clusters check``)."""
    found: dict[str, pathlib.Path] = {}
    failed: dict[str, errors.FetchError] = {}
    for name, source in open_all(cfg).items():
        if cfg.all_sources()[name].charts:
            continue
        try:
            found[name] = held.enter_context(source.tree(source.fetch()))
        except errors.FetchError as e:
            failed[name] = e
    return found, failed

"""A local directory as the source (developer mode).

``LocalSource`` serves a plain directory (not a git repository): its revision is a digest of every file's path
and content (``Revision(sha=<sha256>, ref="local")``), and each revision is read from a snapshot copy, so a file
saved halfway through a reconcile never mixes two versions. ``agent.runtime.fleet`` watches the directory with
watchfiles (:attr:`LocalSource.watched`) and reconciles within a second of a save. Opened by
:mod:`agent.sources.registry`.
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
from agent.sources import trees
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

    @property
    def watched(self) -> pathlib.Path:
        """The directory itself: a save is fetched at once."""
        return self.path

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


def make(source: config.SourceConfig, chart_refs: Sequence[config.ChartRef] = ()) -> LocalSource:
    """The local source of ``source`` (:data:`agent.source_kinds.KINDS`' entry point; ``chart_refs`` unused)."""
    return LocalSource(source)

"""The git source: a local bare clone fetched on demand, refs resolved to a :class:`Revision`, and read-only
trees of revisions for the manifest loader.

The clone lives in ``source.cacheDir``. A fetch runs in a child process bounded by ``source.timeout``
(:mod:`agent.sources.gitfetch`), so a remote that never answers costs one timeout, never a wedged agent; no lock
that a reader needs is held while it runs. A failed fetch keeps the last good revision (``last_good``) and raises
:class:`FetchError`, so callers keep the deployed state and report the source as stale. Trees are held while read
(:mod:`agent.sources.trees`) and never removed under a reader. Thread-safe. Used by ``agent.runtime``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import threading
import time
from collections.abc import Iterator, Sequence

import pygit2

from agent import config
from agent.sources import gitfetch, trees, verify
from reconcilers import errors, resources

log = logging.getLogger(__name__)

_KEEP_CHECKOUTS = 3
REFUSAL_KEPT = 60.0
"""Seconds an unverified revision's refusal is given again without running ``ssh-keygen`` or ``gpg`` (the status
polls resolve pinned refs every few seconds)."""


class GitSource:
    """A git repository of desired state, cloned once into ``source.clone_dir()``, then fetched."""

    def __init__(self, source: config.SourceConfig) -> None:
        self.source = source
        self.dir = source.clone_dir()
        self.last_good: resources.Revision | None = None
        self.last_error: str | None = None
        self.trees = trees.Trees(self.dir.parent / f"{self.dir.name}-trees", _KEEP_CHECKOUTS)
        self._fetching = threading.Lock()  # one fetch at a time from this process; readers never take it
        self._verified: set[tuple[str, str]] = set()  # (sha, ""): its own signature checked; (sha, tag or since)
        self._refused: dict[tuple[str, str], tuple[str, float]] = {}  # key -> (why, when: monotonic seconds)
        self._lock = threading.Lock()  # guards _verified and _refused; never held while a tool runs

    @property
    def watched(self) -> None:
        """None: a git source is fetched on its interval (and on a webhook's push)."""
        return None

    def fetch(self, stop: threading.Event | None = None) -> resources.Revision:
        """Fetch the remote and resolve ``source.ref``, within ``source.timeout`` seconds (or until ``stop``).

        Raises FetchError (``last_good`` is kept)."""
        with self._fetching:
            try:
                revision = gitfetch.fetch(self.source, stop)
                self._verify(revision.sha, self.source.ref)
            except errors.FetchError as e:
                self.last_error = str(e)
                raise
            self.last_good, self.last_error = revision, None
            return revision

    def resolve(self, ref: str) -> resources.Revision:
        """A branch, tag or commit of the fetched clone as a revision (call :meth:`fetch` first); with
        ``verify``, only a signed one (:mod:`agent.sources.verify`). Raises FetchError."""
        try:
            repo = pygit2.Repository(str(self.dir))
        except pygit2.GitError as e:
            raise errors.FetchError(f"no clone at {self.dir}: fetch first ({e})") from e
        revision = resources.Revision(str(gitfetch.resolve(repo, ref)), ref)
        self._verify(revision.sha, ref)
        return revision

    def _verify(self, sha: str, ref: str) -> None:
        """With ``verify``: raise FetchError ``Unverified (...)`` unless ``sha`` (reached by ``ref``) is signed by
        a key of it; a success is remembered (the tools run once per revision), a refusal for
        :data:`REFUSAL_KEPT` seconds."""
        spec = self.source.verify
        if not isinstance(spec, config.SourceVerify):  # none (a chart source's is checked by agent.sources.charts)
            return
        key = (sha, ref if spec.mode == "tag" else f"since {spec.since}" if spec.mode == "all-since" else "")
        with self._lock:
            if key in self._verified:
                return
            refused = self._refused.get(key)
            if refused is not None and time.monotonic() - refused[1] < REFUSAL_KEPT:
                raise errors.FetchError(refused[0])  # status polls resolve pinned refs: no tool run for each
            known = {s for s, r in self._verified if not r}  # commits whose own signature was checked
        try:
            repo = pygit2.Repository(str(self.dir))
        except pygit2.GitError as e:
            raise errors.FetchError(f"no clone at {self.dir}: fetch first ({e})") from e
        try:
            checked = verify.verify(repo, sha, ref, spec, f"source {gitfetch.redact(self.source.url)}", known)
        except errors.FetchError as e:
            with self._lock:
                self._refused[key] = (str(e), time.monotonic())
            raise
        with self._lock:
            self._verified |= {(s, "") for s in checked} | {key}
            self._refused.pop(key, None)

    @contextlib.contextmanager
    def tree(self, revision: resources.Revision) -> Iterator[pathlib.Path]:
        """A read-only directory holding the tree of ``revision``, held (never removed) until the block ends.

        Symlinks are kept only when they point inside the tree; others are left out (never followed).
        Raises FetchError when the clone does not hold the commit (e.g. gone after a force-push and a re-clone).
        """

        def write(into: pathlib.Path) -> None:
            try:
                repo = pygit2.Repository(str(self.dir))
                commit = repo.get(revision.sha)
            except (pygit2.GitError, ValueError) as e:
                raise errors.FetchError(f"revision {revision.short}: {e}") from e
            if not isinstance(commit, pygit2.Commit):
                raise errors.FetchError(f"revision {revision.sha} is not a commit of the clone (force-pushed away?)")
            _write_tree(repo, commit.tree, into, into)

        with self.trees.hold(revision.sha, write) as path:
            yield path


def _write_tree(repo: pygit2.Repository, tree: pygit2.Tree, root: pathlib.Path, into: pathlib.Path) -> None:
    into.mkdir(exist_ok=True)
    for entry in tree:
        assert entry.name is not None
        path = into / entry.name
        if entry.filemode == pygit2.enums.FileMode.TREE:
            subtree = repo[entry.id]
            assert isinstance(subtree, pygit2.Tree)
            _write_tree(repo, subtree, root, path)
        elif entry.filemode == pygit2.enums.FileMode.LINK:
            link = _blob(repo, entry.id).decode("utf-8", "replace")
            resolved = os.path.normpath(os.path.join(into, link))
            if not os.path.isabs(link) and resolved.startswith(str(root) + os.sep):
                os.symlink(link, path)
            else:
                log.warning("skipped symlink %s -> %s: it points outside the repository", path.relative_to(root), link)
        elif entry.filemode in (pygit2.enums.FileMode.BLOB, pygit2.enums.FileMode.BLOB_EXECUTABLE):
            path.write_bytes(_blob(repo, entry.id))


def _blob(repo: pygit2.Repository, oid: pygit2.Oid) -> bytes:
    blob = repo[oid]
    assert isinstance(blob, pygit2.Blob)
    return blob.data


def make(source: config.SourceConfig, chart_refs: Sequence[config.ChartRef] = ()) -> GitSource:
    """The git source of ``source`` (:data:`agent.source_kinds.KINDS`' entry point; ``chart_refs`` unused)."""
    return GitSource(source)

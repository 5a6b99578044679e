"""The git source: a local clone (pygit2) fetched on demand, refs resolved to a :class:`Revision`, and read-only
checkouts of a revision's tree for the manifest loader.

The clone lives in ``source.cacheDir`` as a bare repository; a clone that cannot be opened is removed and cloned
again. A failed fetch keeps the last good revision (``last_good``) and raises :class:`FetchError`, so callers can
keep the deployed state and report the source as stale. Thread-safe: one lock serializes fetch and checkout.
Used by ``agent.runtime.runner`` and ``agent.runtime.fleet``.
"""

from __future__ import annotations

import logging
import os
import pathlib
import shutil
import tempfile
import threading

import pygit2

from agent import config
from reconcilers import errors, resources

log = logging.getLogger(__name__)

_REFSPECS = ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"]
_KEEP_CHECKOUTS = 3


class _Callbacks(pygit2.RemoteCallbacks):
    """Credentials for HTTPS (token from the environment) and SSH (key file); never logged."""

    def __init__(self, source: config.SourceConfig) -> None:
        super().__init__()
        self._source = source

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: pygit2.enums.CredentialType
    ) -> pygit2.Username | pygit2.UserPass | pygit2.Keypair:
        src = self._source
        if src.ssh_key_file and allowed_types & pygit2.enums.CredentialType.SSH_KEY:
            key = os.path.expanduser(src.ssh_key_file)
            return pygit2.Keypair(username_from_url or "git", key + ".pub", key, "")
        if src.token_env and allowed_types & pygit2.enums.CredentialType.USERPASS_PLAINTEXT:
            token = os.environ.get(src.token_env)
            if not token:
                raise errors.FetchError(f"source.tokenEnv: environment variable {src.token_env} is not set")
            return pygit2.UserPass(username_from_url or "x-access-token", token)
        raise errors.FetchError(f"{_redact(url)} asks for credentials: set source.tokenEnv or source.sshKeyFile")


class GitSource:
    """A git repository of desired state, cloned once into ``source.clone_dir()``, then fetched."""

    def __init__(self, source: config.SourceConfig) -> None:
        self.source = source
        self.dir = source.clone_dir()
        self.last_good: resources.Revision | None = None
        self.last_error: str | None = None
        self._lock = threading.Lock()

    def fetch(self) -> resources.Revision:
        """Fetch the remote and resolve ``source.ref``. Raises FetchError (``last_good`` is kept)."""
        with self._lock:
            try:
                repo = self._open_or_clone()
                repo.remotes["origin"].fetch(_REFSPECS, callbacks=_Callbacks(self.source))
                revision = resources.Revision(str(_resolve(repo, self.source.ref)), self.source.ref)
            except errors.FetchError as e:
                self.last_error = str(e)
                raise
            except (pygit2.GitError, KeyError, ValueError, OSError) as e:
                # A damaged clone fails here too: clone again beside it and swap only if that works, so an
                # unreachable remote costs nothing and a corrupt cache heals itself.
                try:
                    revision = self._reclone()
                except (pygit2.GitError, KeyError, ValueError, OSError):
                    self.last_error = f"fetch {_redact(self.source.url)} ({self.source.ref}): {e}"
                    raise errors.FetchError(self.last_error) from e
                log.warning("clone cache %s failed (%s): cloned it again", self.dir, e)
            self.last_good, self.last_error = revision, None
            return revision

    def _reclone(self) -> resources.Revision:
        fresh = self.dir.parent / f".{self.dir.name}.reclone"
        shutil.rmtree(fresh, ignore_errors=True)
        try:
            repo = pygit2.init_repository(str(fresh), bare=True)
            repo.remotes.create("origin", self.source.url)
            repo.remotes["origin"].fetch(_REFSPECS, callbacks=_Callbacks(self.source))
            revision = resources.Revision(str(_resolve(repo, self.source.ref)), self.source.ref)
        except BaseException:
            shutil.rmtree(fresh, ignore_errors=True)
            raise
        shutil.rmtree(self.dir, ignore_errors=True)
        os.rename(fresh, self.dir)
        return revision

    def resolve(self, ref: str) -> resources.Revision:
        """A branch, tag or commit of the fetched clone as a revision (call :meth:`fetch` first).
        Raises FetchError."""
        with self._lock:
            try:
                repo = pygit2.Repository(str(self.dir))
            except pygit2.GitError as e:
                raise errors.FetchError(f"no clone at {self.dir}: fetch first ({e})") from e
            return resources.Revision(str(_resolve(repo, ref)), ref)

    def checkout(self, revision: resources.Revision) -> pathlib.Path:
        """A read-only directory holding the tree of ``revision`` (made once per SHA, the last few kept).

        Symlinks are kept only when they point inside the tree; others are left out (never followed).
        """
        with self._lock:
            root = self.dir.parent / f"{self.dir.name}-trees"
            target = root / revision.sha
            if target.is_dir():
                return target
            root.mkdir(parents=True, exist_ok=True)
            repo = pygit2.Repository(str(self.dir))
            commit = repo.get(revision.sha)
            if not isinstance(commit, pygit2.Commit):
                raise errors.FetchError(f"{revision.sha} is not a commit")
            tmp = pathlib.Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
            _write_tree(repo, commit.tree, tmp, tmp)
            os.rename(tmp, target)
            for old in sorted(root.iterdir(), key=lambda p: p.stat().st_mtime)[:-_KEEP_CHECKOUTS]:
                if old != target:
                    shutil.rmtree(old, ignore_errors=True)
            return target

    def _open_or_clone(self) -> pygit2.Repository:
        if self.dir.exists():
            try:
                repo = pygit2.Repository(str(self.dir))
                if "origin" in [r.name for r in repo.remotes]:
                    if repo.remotes["origin"].url != self.source.url:  # source.url changed: follow it
                        log.info("source url changed: fetching from %s now", _redact(self.source.url))
                        repo.remotes.set_url("origin", self.source.url)
                    return repo
            except pygit2.GitError:
                pass
            log.warning("clone cache %s is unusable: cloned it again", self.dir)
            shutil.rmtree(self.dir)
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        repo = pygit2.init_repository(str(self.dir), bare=True)
        repo.remotes.create("origin", self.source.url)
        return repo


def _resolve(repo: pygit2.Repository, ref: str) -> pygit2.Oid:
    """The commit of a branch, tag, full ref name or (abbreviated) commit SHA. Raises FetchError."""
    for name in (f"refs/remotes/origin/{ref}", f"refs/tags/{ref}", ref):
        try:
            reference = repo.references.get(name)
        except pygit2.InvalidSpecError:
            reference = None
        if reference is not None:
            return reference.peel(pygit2.Commit).id
    try:
        return repo.revparse_single(ref).peel(pygit2.Commit).id
    except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
        raise errors.FetchError(f"ref {ref!r} is not a branch, tag or commit of the source") from None


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


def _redact(url: str) -> str:
    """``url`` without any userinfo (``https://user:token@host`` -> ``https://host``)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url

"""Read-only trees of revisions on disk, held while read and never removed under a reader.

A source writes each revision it serves once into ``<root>/<sha>`` (a git commit's tree, a local directory's
snapshot). A reader holds a tree with :meth:`Trees.hold` for as long as it reads it: a shared ``flock`` on
``<root>/<sha>.lock``. Eviction (after a new tree is written, all but the newest ``keep``) takes an exclusive,
non-blocking ``flock`` on a tree's lock file and skips the tree when any reader holds it, in this process or in
another one sharing the cache directory (a ``gitops-agent sync`` beside ``run``). flock locks belong to open
file descriptions, so two readers in one process are two holders, as across processes (flock(2)).

A tree removed between a reader opening the lock file and locking it is detected (the lock file's inode changed)
and written again. Used by :mod:`agent.sources.git` and :mod:`agent.sources.local`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator

Writer = Callable[[pathlib.Path], None]
"""Writes a revision's tree into the (new, empty) directory it is given."""


class Trees:
    """The trees of one source under ``root``; at most ``keep`` unheld trees are kept after each write."""

    def __init__(self, root: pathlib.Path, keep: int = 3) -> None:
        self.root = root
        self.keep = keep
        self._lock = threading.Lock()  # local only: writing and evicting trees, never across the network

    @contextlib.contextmanager
    def hold(self, sha: str, write: Writer) -> Iterator[pathlib.Path]:
        """The tree of ``sha`` (written with ``write`` when absent), held until the block ends.

        Raises whatever ``write`` raises (the partial tree is removed), or OSError when the cache directory cannot
        be written."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock_path = self.root / f"{sha}.lock"
        while True:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                try:
                    same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
                except FileNotFoundError:
                    same = False
                if not same:  # evicted between open and lock: take the new lock file
                    continue
                target = self.root / sha
                if not target.is_dir():
                    self._write(target, write)
                yield target
                return
            finally:
                os.close(fd)  # releases the shared lock

    def _write(self, target: pathlib.Path, write: Writer) -> None:
        with self._lock:
            if target.is_dir():
                return
            tmp = pathlib.Path(tempfile.mkdtemp(dir=self.root, prefix=".tmp-"))
            try:
                write(tmp / "tree")
                os.rename(tmp / "tree", target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            self._evict(keep=target)

    def _evict(self, keep: pathlib.Path) -> None:
        """Remove the oldest trees beyond ``self.keep`` that nobody holds (call with ``_lock`` held)."""
        trees = [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        for old in sorted(trees, key=lambda p: p.stat().st_mtime)[: -self.keep or None]:
            if old == keep:
                continue
            lock_path = self.root / f"{old.name}.lock"
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a reader holds it: keep it for now
                shutil.rmtree(old, ignore_errors=True)
                lock_path.unlink(missing_ok=True)
            finally:
                os.close(fd)

    def held(self, sha: str) -> bool:
        """True when some reader holds the tree of ``sha`` now (for tests and the status)."""
        lock_path = self.root / f"{sha}.lock"
        if not lock_path.exists():
            return False
        fd = os.open(lock_path, os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False
        finally:
            os.close(fd)

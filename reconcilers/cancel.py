"""Cancellation of a sync in flight: one :class:`Token` per sync, checked between stages and before every write.

Whoever starts a sync keeps its token and may :meth:`Token.cancel` it (a lost Lease, a removed cluster,
SIGTERM); a token may also carry a ``guard``, asked before every write, that names a reason the writer may no
longer write (a Lease not renewed within ``renewDeadline``: a replica frozen and resumed learns it before its
first write, not at its lease loop's next round). The engine checks :meth:`Token.check` before each stage, before
each apply, delete and inventory write, and sleeps with :meth:`Token.wait`, so a cancelled sync writes nothing
more once the requests already sent have returned (each is bounded by ``sync.requestTimeout``). The same idea as
Flux passing a ``context.Context`` through its ``ssa`` package, and gitops-engine's ``Terminate()``.
Used by :mod:`reconcilers.engine`, :mod:`reconcilers.apply`, :mod:`reconcilers.prune`, :mod:`reconcilers.inventory`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from reconcilers import errors

Guard = Callable[[], str | None]
"""Returns why writing must stop now (e.g. ``"lease of cluster a not renewed for 11.2s"``), or None."""


class Token:
    """A sync's cancellation: set once by :meth:`cancel` (the first reason wins) or found by the ``guard``."""

    def __init__(self, guard: Guard | None = None) -> None:
        self._event = threading.Event()
        self._reason: str | None = None
        self._guard = guard

    def cancel(self, reason: str) -> None:
        """Cancel the sync (idempotent: the first reason is kept)."""
        if not self._event.is_set():
            self._reason = reason
            self._event.set()

    @property
    def reason(self) -> str | None:
        """Why the sync is cancelled, or None while it may go on (asks the guard)."""
        if not self._event.is_set() and self._guard is not None:
            found = self._guard()
            if found:
                self.cancel(found)
        return self._reason if self._event.is_set() else None

    def check(self) -> None:
        """Raise :class:`errors.CancelledError` when the sync is cancelled (call before every write)."""
        reason = self.reason
        if reason is not None:
            raise errors.CancelledError(reason)

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, ending early on :meth:`cancel`; returns True when cancelled."""
        self._event.wait(seconds)
        return self.reason is not None


def never() -> Token:
    """A token nobody cancels (one-shot syncs without a guard, tests)."""
    return Token()

"""Retries of apps whose sync failed, with backoff (Argo CD's ``syncPolicy.retry``: ``limit``, ``backoff.duration``,
``factor``, ``maxDuration``; :class:`agent.config.Retry`).

After each sync of a cluster its worker hands the result here: an app that failed (not one that waits, was
cancelled, was held by the write gate, or whose cluster could not be reached: the cluster's own backoff covers
that) gets its next attempt scheduled ``Retry.delay(n)`` seconds later, up to ``limit`` attempts at one revision;
a success, or a new revision of the app, starts the count anew. The worker then syncs the cluster again when the
earliest attempt is due (the cluster's other apps resync as they are: nothing holds them). Owned by one worker
and changed on its thread only; :meth:`Retries.snapshot` is an immutable mapping any thread may read (the status).
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Mapping

from agent import config
from reconcilers import engine

_NOT_RETRIED = (engine.ErrorKind.WAITING, engine.ErrorKind.CANCELLED, engine.ErrorKind.CLUSTER)


@dataclasses.dataclass(frozen=True)
class Pending:
    """An app's next attempt: ``attempt`` (1 for the first retry) of ``limit``, ``due`` (monotonic seconds),
    ``delay`` (seconds it waits), ``error`` (the failure it retries), ``sha`` (the revision)."""

    app: str
    attempt: int
    limit: int
    due: float
    delay: float
    error: str
    sha: str

    def text(self, now: float) -> str:
        """``Retrying (attempt 2 of 5, next in 10s): <error>`` at monotonic time ``now``."""
        return (
            f"Retrying (attempt {self.attempt} of {self.limit}, next in {max(0, round(self.due - now))}s): {self.error}"
        )


class Retries:
    """The retries of one cluster's apps (see the module docstring)."""

    def __init__(self) -> None:
        self._counts: dict[str, tuple[str, int]] = {}  # app -> (revision sha, failures at it)
        self._pending: Mapping[str, Pending] = types.MappingProxyType({})
        self.version = 0
        """Counts the changes of :meth:`snapshot` (a status cache keys on it)."""

    def after(
        self, result: engine.ReconcileResult, policy: Callable[[str], config.Retry | None], now: float
    ) -> list[Pending]:
        """Take a finished sync's ``result`` (``policy(app)``: the app's retry settings, None when it is not
        placed any more) at monotonic time ``now``; returns the attempts it scheduled."""
        if result.error_kind in _NOT_RETRIED and not result.apps:
            return []  # the cluster was not reached, or the sync cancelled: nothing to say about its apps
        pending = dict(self._pending)
        scheduled: list[Pending] = []
        seen = set()
        for r in result.apps:
            seen.add(r.app)
            if r.ok or r.held or r.dry_run:
                if r.ok and not r.held and not r.dry_run:
                    self._counts.pop(r.app, None)
                    pending.pop(r.app, None)
                continue
            if r.error_kind in _NOT_RETRIED:
                continue
            rule = policy(r.app)
            if rule is None or rule.limit == 0:
                pending.pop(r.app, None)
                continue
            sha = r.revision.sha if r.revision else ""
            before = self._counts.get(r.app)
            failures = before[1] + 1 if before is not None and before[0] == sha else 1
            self._counts[r.app] = (sha, failures)
            if failures > rule.limit:  # spent: it stays failed until a new revision (or its next interval)
                pending.pop(r.app, None)
                continue
            delay = rule.delay(failures)
            found = Pending(r.app, failures, rule.limit, now + delay, delay, _why(r), sha)
            pending[r.app] = found
            scheduled.append(found)
        for gone in [a for a in pending if a not in seen]:  # an app no longer placed, or not in this result
            if policy(gone) is None:
                pending.pop(gone)
                self._counts.pop(gone, None)
        if pending != self._pending:
            self._pending = types.MappingProxyType(pending)
            self.version += 1
        return scheduled

    def due(self) -> float | None:
        """When the earliest attempt is due (monotonic seconds), or None."""
        found = self._pending
        return min((p.due for p in found.values()), default=None)

    def snapshot(self) -> Mapping[str, Pending]:
        """The attempts scheduled, by app (immutable; safe from any thread)."""
        return self._pending


def _why(r: engine.ReconcileResult) -> str:
    """What failed in ``r``: its error, else its first failed object and the API server's words."""
    if r.error:
        return r.error
    failed = r.failed
    if not failed:
        return "sync failed"
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    return f"{failed[0].key}: {failed[0].message}{more}"

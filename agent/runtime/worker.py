"""One worker per cluster: the thread that owns the cluster's runner, its schedule, backoff, pending triggers and
the cancellation of its sync in flight.

Lifecycle (``Worker.state``): ``starting`` -> ``idle`` <-> ``syncing`` -> ``stopping`` -> ``stopped``. Everything
that wants a sync goes through the worker and never waits on another cluster:

- :meth:`Worker.trigger` (schedule, API call, webhook or new revision, Lease gained, config reload): one sync
  as soon as the current one (if any) ends; triggers that arrive meanwhile coalesce into that one sync; one an
  operator asked for (``requested``, for the cluster or one app) makes that sync a ``requested`` one for the write
  gate (:mod:`agent.sync.gate`), the others are ``scheduled``;
- :meth:`Worker.run_to` (a rollout step): a sync to a given revision with a health wait, its result returned to
  the caller;
- the worker's own schedule: every ``sync.interval`` (10% jitter) after the last sync started, or after 1, 2,
  4, ... s (at most :data:`BACKOFF_CAP`, or ``sync.interval`` when shorter) while the cluster is unreachable;
- :meth:`Worker.cancel` ends the sync in flight before its next write (a Lease lost); :meth:`Worker.pause`
  cancels, waits for the sync to end and closes the runner (watches, self-heal) until :meth:`Worker.resume`;
  :meth:`Worker.stop` cancels, waits and ends the thread (cluster removed, SIGTERM).

A sync cancelled writes nothing after the requests already sent have returned, so ``pause`` and ``stop`` return
within about one ``sync.requestTimeout`` (the bound is documented in docs/architecture.md). The worker never
raises out of its thread: an unexpected error is logged, counted in the status and the worker goes on.
Created, started and stopped by :mod:`agent.runtime.fleet`, which reads :meth:`Worker.status_json`.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import enum
import logging
import pathlib
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from typing import Any, Protocol

from agent import threads
from agent.runtime import history, retries, triggers
from agent.sync import cluster as cluster_sync
from agent.sync import view as view_
from reconcilers import cancel as cancel_
from reconcilers import engine, errors, resources

log = logging.getLogger(__name__)

BACKOFF_CAP = 60.0
"""The longest wait (seconds) before an unreachable cluster is tried again."""
JITTER = 0.1
"""Each scheduled sync comes up to this fraction of ``sync.interval`` later, so clusters do not sync in step."""


class State(enum.Enum):
    """Where a worker is in its life."""

    STARTING = "starting"
    IDLE = "idle"
    SYNCING = "syncing"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Host(Protocol):
    """What a worker needs from the fleet (:class:`agent.runtime.fleet.Fleet` implements it)."""

    def revisions_for(self, cluster: str) -> dict[str, resources.Revision]:
        """The revision of each source ``cluster``'s apps read that it should be at now (empty: nothing to sync
        yet; a source without a revision yet is left out, and its apps wait)."""
        ...

    def trees(
        self, revisions: Mapping[str, resources.Revision]
    ) -> contextlib.AbstractContextManager[dict[str, pathlib.Path]]:
        """The tree of each revision (by source name), held while the block runs. Raises FetchError."""
        ...

    def record(self, result: engine.ReconcileResult, healed: int) -> None:
        """Keep a finished sync's result (status, metrics)."""
        ...

    def late(self, cluster: str, seconds: float) -> None:
        """A scheduled sync of ``cluster`` started ``seconds`` after it was due (metrics)."""
        ...

    def started(self, cluster: str, revision: resources.Revision) -> None:
        """A sync of ``cluster`` to ``revision`` starts (commit status)."""
        ...

    def retrying(self, cluster: str, pending: retries.Pending) -> None:
        """An app of ``cluster`` failed and is retried (``pending``: when and why; the events)."""
        ...


@dataclasses.dataclass
class _Step:
    """A rollout step waiting for the worker: the revisions (by source) and where its result goes."""

    revisions: dict[str, resources.Revision]
    done: futures.Future[engine.ReconcileResult]


class Worker:
    """The worker of cluster ``name``; ``make_runner(guard)`` builds its runner (the guard fences its writes)."""

    def __init__(
        self,
        name: str,
        host: Host,
        make_runner: Callable[[cancel_.Guard], cluster_sync.ClusterSync],
        interval: float,
        *,
        guard: cancel_.Guard | None = None,
        active: bool = True,
    ) -> None:
        self.name = name
        self.host = host
        self.interval = interval
        self.state = State.STARTING
        self.last_finished: float | None = None  # monotonic end of the last sync that ran to a result
        self.last_lateness = 0.0  # seconds the last scheduled sync started after it was due
        self.errors = 0  # unexpected errors caught in the loop
        self._make_runner = make_runner
        self._guard = guard
        self._runner: cluster_sync.ClusterSync | None = None
        self._active = active
        self._pending = triggers.Pending()
        self.retries = retries.Retries()  # failed apps' next attempts (this thread changes it; any thread reads)
        self.history = history.History()  # each app's last syncs (this thread changes it; any thread reads)
        self._steps: collections.deque[_Step] = collections.deque()
        self._due = time.monotonic() + self._jittered()
        self._failures = 0
        self._token: cancel_.Token | None = None
        self._stop = False
        self._started = time.monotonic()
        self._since = time.monotonic()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    # -- control (any thread) ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker thread (``worker-<cluster>``, owned by the fleet's ``cluster/<name>/worker``)."""
        self._thread = threads.start(f"worker-{self.name}", f"cluster/{self.name}/worker", self._loop)

    def trigger(
        self,
        reason: str,
        *,
        requested: bool = False,
        app: str | None = None,
        objects: Sequence[resources.ResourceKey] = (),
    ) -> None:
        """Sync as soon as possible (coalesced with other triggers until the sync starts). ``requested``: an
        operator asked (for ``app`` only, or every app of the cluster): the sync is a requested one for those apps
        (:class:`agent.sync.gate.SyncKind`). ``objects`` (with ``app``): a selective sync of that app writes only
        them (a whole sync of it asked for before the sync starts wins)."""
        with self._cond:
            self._pending.add(reason, requested=requested, app=app, objects=objects)
            self._cond.notify_all()

    def run_to(self, revisions: dict[str, resources.Revision], timeout: float | None = None) -> engine.ReconcileResult:
        """Sync to ``revisions`` (by source name) now, wait for health, and return the result (a rollout step).

        Raises :class:`errors.CancelledError` when the worker stops or pauses before the step ran, or
        TimeoutError after ``timeout`` seconds."""
        step = _Step(revisions, futures.Future())
        with self._cond:
            if self._stop or not self._active:
                raise errors.CancelledError(f"cluster {self.name}: worker {self.state.value}, not reconciling")
            self._steps.append(step)
            self._cond.notify_all()
        return step.done.result(timeout)

    def cancel(self, reason: str) -> None:
        """Cancel the sync in flight (it ends before its next write); the worker goes on."""
        with self._cond:
            if self._token is not None:
                self._token.cancel(reason)

    def pause(self, reason: str, timeout: float) -> bool:
        """Stop reconciling: cancel the sync in flight, wait up to ``timeout`` seconds for it to end, then close
        the runner (watches, self-heal). Returns False when the sync had not ended in time (it sends no write
        either way: its token is cancelled)."""
        self.deactivate(reason)
        ended = self._quiesce(reason, timeout)
        self._close_runner()
        return ended

    def deactivate(self, reason: str) -> None:
        """The first half of :meth:`pause`, without waiting: no new sync starts, the one in flight is
        cancelled."""
        with self._cond:
            self._active = False
            self._fail_steps(reason)
            if self._token is not None:
                self._token.cancel(reason)

    def resume(self) -> None:
        """Reconcile again (a fresh runner), starting with a sync now."""
        with self._cond:
            self._active = True
            self._pending.add("resumed")
            self._cond.notify_all()

    def stop(self, reason: str, timeout: float) -> bool:
        """Cancel the sync in flight, end the thread (waiting up to ``timeout`` seconds) and close the runner.
        Returns False when the thread had not ended in time (it writes nothing more either way)."""
        with self._cond:
            self._stop = True
            self.state = State.STOPPING if self.state is not State.STOPPED else self.state
            self._fail_steps(reason)
            if self._token is not None:
                self._token.cancel(reason)
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout)
        ended = thread is None or not thread.is_alive()
        self._close_runner()
        with self._cond:
            self.state = State.STOPPED
        return ended

    @property
    def active(self) -> bool:
        """False while paused (sharding: another replica holds the cluster's Lease)."""
        with self._cond:
            return self._active

    def view(self) -> view_.ClusterView:
        """The cluster's sync as other threads may read it (:class:`agent.sync.view.ClusterView`; the empty view
        before the first sync or while paused). The worker's ClusterSync itself is never handed out."""
        found = self._runner
        return found.view() if found is not None else view_.UNWATCHED

    def status_json(self) -> dict[str, Any]:
        """``{"state", "since", "active", "pendingTriggers", "lastLatenessSeconds", "errors"}`` for the status."""
        with self._cond:
            since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=time.monotonic() - self._since)
            return {
                "state": self.state.value,
                "since": since.isoformat(),
                "active": self._active,
                "pendingTriggers": self._pending.reasons(),
                "lastLatenessSeconds": round(self.last_lateness, 3),
                "errors": self.errors,
            }

    def overdue(self, now: float | None = None) -> float | None:
        """Seconds since the last sync ended (or the worker started) when that is over twice ``sync.interval``,
        else None."""
        now = time.monotonic() if now is None else now
        age = now - (self.last_finished if self.last_finished is not None else self._started)
        return age if age > 2 * self.interval and self._active else None

    # -- the thread ---------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        self._set(State.IDLE)
        while True:
            with self._cond:
                while not self._stop and not self._ready_to_sync():
                    self._cond.wait(max(0.0, self._due - time.monotonic()) if self._active else None)
                if self._stop:
                    return
                step = self._steps.popleft() if self._steps else None
                late = step is None and not self._pending
                if late:
                    self.last_lateness = max(0.0, time.monotonic() - self._due)
                taken = self._pending.take()
                self._due = time.monotonic() + self._jittered()
                token = self._token = cancel_.Token(self._guard)
            self._set(State.SYNCING)
            if late:
                self.host.late(self.name, self.last_lateness)
            try:
                self._sync(step, token, taken)
            except Exception as e:  # a bug: report it, keep the worker
                self.errors += 1
                log.exception("cluster %s: worker error", self.name)
                if step is not None and not step.done.done():
                    step.done.set_exception(e)
            finally:
                with self._cond:
                    self._token = None
                self._set(State.IDLE)

    def _ready_to_sync(self) -> bool:
        return self._active and bool(self._steps or self._pending or time.monotonic() >= self._due)

    def _sync(self, step: _Step | None, token: cancel_.Token, taken: triggers.Taken) -> None:
        reasons, selected = taken.reasons, taken.selected
        revisions = step.revisions if step else self.host.revisions_for(self.name)
        if not revisions:
            return  # nothing fetched yet, or (rollout) not reached yet
        revision = revisions.get("default") or next(
            (r for k, r in revisions.items() if r.sha and not k.startswith("@")),
            next(r for r in revisions.values() if r.sha),
        )
        if self._runner is None:
            self._runner = self._make_runner(self._guard or _unguarded)
        log.debug("cluster %s: sync (%s)", self.name, ", ".join(reasons))
        self.host.started(self.name, revision)
        kinds = taken.kinds(step is not None)
        try:
            with self.host.trees(revisions) as trees:
                result = self._runner.reconcile(
                    revisions,
                    trees,
                    wait=True if step else None,
                    cancel=token,
                    kind=kinds,
                    selected=None if step else selected,  # never a selective sync in a rollout step
                )
        except errors.FetchError as e:
            now = datetime.datetime.now(datetime.UTC)
            result = engine.ReconcileResult(self.name, revision, (), now, 0.0, error=str(e), error_kind=_SOURCE)
        if result.error_kind is not engine.ErrorKind.CANCELLED:
            self.last_finished = time.monotonic()
        with self._cond:
            stopped = self._stop  # removed by a reload or shutting down: a removed cluster leaves no ghost status
        if not stopped:
            self.host.record(result, int(self._runner.status().get("healed", 0)) if self._runner else 0)
        self._backoff(result)
        self._retry(result)
        if self._runner is not None and not stopped and result.error_kind is not engine.ErrorKind.SOURCE:
            trigger = "rollout step" if step else ", ".join(reasons)
            self.history.after(result, trigger, lambda app: kinds(app).value, self._runner.kube, self._runner.cfg)
        if selected and not stopped:  # the app's other objects are compared (a manual app's: diffed) right away
            self.trigger("after a selective sync")
        if step is not None:
            step.done.set_result(result)

    def _backoff(self, result: engine.ReconcileResult) -> None:
        with self._cond:
            if result.error_kind is not engine.ErrorKind.CLUSTER:
                self._failures = 0
                return
            self._failures += 1
            delay = min(2.0 ** (self._failures - 1), BACKOFF_CAP, self.interval)
            self._due = time.monotonic() + delay
        log.warning("cluster %s: unreachable (%d in a row); retrying in %.0fs", self.name, self._failures, delay)

    def _retry(self, result: engine.ReconcileResult) -> None:
        """Schedule the failed apps' next attempts (:mod:`agent.runtime.retries`): the next sync comes when the
        earliest is due, if that is before the interval's."""
        found = self._runner
        if found is None:
            return
        for pending in self.retries.after(result, found.retry_of, time.monotonic()):
            log.info("cluster %s: app %s: %s", self.name, pending.app, pending.text(time.monotonic()))
            self.host.retrying(self.name, pending)
        due = self.retries.due()
        if due is not None:
            with self._cond:
                self._due = min(self._due, due)
                self._cond.notify_all()

    def _quiesce(self, reason: str, timeout: float) -> bool:
        """Cancel the sync in flight and wait up to ``timeout`` seconds until none runs."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._token is not None:
                self._token.cancel(reason)
            while self.state is State.SYNCING and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            return self.state is not State.SYNCING

    def _fail_steps(self, reason: str) -> None:
        while self._steps:
            step = self._steps.popleft()
            step.done.set_exception(errors.CancelledError(f"cluster {self.name}: {reason}"))

    def _close_runner(self) -> None:
        found, self._runner = self._runner, None
        if found is not None:
            found.close()

    def _set(self, state: State) -> None:
        with self._cond:
            if self.state in (State.STOPPING, State.STOPPED) and state is not State.STOPPED:
                return
            self.state = state
            self._since = time.monotonic()
            self._cond.notify_all()

    def _jittered(self) -> float:
        return self.interval * (1 + random.random() * JITTER)  # noqa: S311 - spreading load, not security


_SOURCE = engine.ErrorKind.SOURCE


def _unguarded() -> str | None:
    return None

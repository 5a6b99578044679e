"""Delivery of one configured provider, the same for every kind: a bounded queue, coalescing, a rate limit,
retries, and the thread that sends.

:meth:`Provider.event` and :meth:`Provider.status` only enqueue. A message waits :data:`COALESCE` seconds before it
is sent, and a newer one of the same key (cluster, path, reason; or commit status context, revision and state)
replaces it meanwhile (so a pending status is still posted before the success that follows it). Beyond
:data:`QUEUE` messages the oldest is dropped. Sending is rate limited (:data:`RATE` per second). A 5xx answer, a
timeout or a refused connection is retried after 1, 2 and 4 s, then dropped; a 4xx is logged once per status and
dropped. Every outcome is counted in ``gitops_agent_notifications_total{provider, result}`` (sent, retried,
dropped). Provider URLs may be secrets: no log line names them (the provider's name stands in).
"""

from __future__ import annotations

import collections
import dataclasses
import importlib
import logging
import threading
import time

import urllib3

from agent import config, notifier_kinds, threads
from agent.runtime import events, metrics
from agent.runtime.notify import protocol, statuses

log = logging.getLogger("agent.runtime.notify")

QUEUE = 100
"""Messages waiting per provider; beyond it the oldest is dropped (counted)."""
COALESCE = 2.0
"""Seconds a message waits for a newer one of the same key to replace it."""
FLUSH = 3.0
"""Seconds a stopping agent spends sending what is queued (SIGTERM: events of the last moments still go out)."""
RATE = 2.0
"""Messages per second per provider at most."""
BACKOFF = (1.0, 2.0, 4.0)
"""Seconds before each retry of a 5xx, a timeout or a refused connection; then the message is dropped."""


@dataclasses.dataclass
class _Message:
    request: protocol.Request
    due: float


def format_of(spec: config.Notification, source_url: str, instance: str) -> protocol.Format:
    """The :class:`protocol.Format` of ``spec``'s kind (its module from :data:`agent.notifier_kinds.KINDS`).
    Raises ConfigError when a secret it needs cannot be read."""
    module = importlib.import_module(notifier_kinds.KINDS[spec.type].module)
    made: protocol.Format = module.make(spec, source_url, instance)
    return made


class Provider:
    """One configured provider: its format, queue and delivery thread (started by :meth:`start`, ended by
    :meth:`stop`; the :class:`agent.runtime.notify.Notifier` that holds it owns both). Raises ConfigError when a
    secret it needs cannot be read."""

    def __init__(self, spec: config.Notification, source_url: str, instance: str, counts: metrics.Metrics) -> None:
        self.spec = spec
        self.name = spec.name
        self.kind = notifier_kinds.KINDS[spec.type]
        self.format = format_of(spec, source_url, instance)
        self.counts = counts
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(5.0, spec.timeout), read=spec.timeout), retries=False
        )
        self._queue: collections.OrderedDict[tuple[str, ...], _Message] = collections.OrderedDict()
        self._told_4xx: set[int] = set()
        self._flushing = False
        self._aggregate = statuses.Aggregate()
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the delivery thread (``notify-<name>``)."""
        self._thread = threads.start(f"notify-{self.name}", "fleet/notify", self._loop)

    # -- what is wanted ------------------------------------------------------------------------------------------
    def wants(self, event: events.Event) -> bool:
        """True when ``event`` passes this provider's filters."""
        if self.spec.clusters and event.cluster and event.cluster not in self.spec.clusters:
            return False
        return not self.spec.events or event.reason in self.spec.events

    @property
    def commit_status(self) -> bool:
        """True for commit status kinds (GitHub, GitLab): they get commit statuses, not events."""
        return self.kind.commit_status

    # -- enqueue -------------------------------------------------------------------------------------------------
    def event(self, event: events.Event) -> None:
        """Queue ``event``."""
        request = self.format.event(event)
        if request is not None:
            self._offer(request)

    def status(self, cluster: str, sha: str, state: str, description: str, clusters: frozenset[str]) -> None:
        """Queue a commit status (``state``: pending, success or failure) for ``sha`` on ``cluster``'s context, or,
        ``aggregated``, on the one context of the revision (``clusters``: every cluster it must reach)."""
        if self.spec.commit_status == "aggregated":
            found = self._aggregate.after(cluster, sha, state, description, clusters)
            if found is None:
                return
            state, description = found
            context = "gitops-agent"
        else:
            context = f"gitops-agent/{cluster}"
        request = self.format.status(context, sha, state, description)
        if request is not None:
            self._offer(request)

    def _offer(self, request: protocol.Request) -> None:
        message = _Message(request, time.monotonic() + COALESCE)
        key = request.key
        with self._cond:
            if key in self._queue:  # coalesced: the newer one replaces it, in its place
                self._queue[key] = dataclasses.replace(message, due=self._queue[key].due)
                return
            self._queue[key] = message
            if len(self._queue) > QUEUE:
                self._queue.popitem(last=False)
                self.counts.notified(self.name, "dropped")
                log.warning("notifications %s: queue full, the oldest message dropped", self.name)
            self._cond.notify()

    # -- delivery ------------------------------------------------------------------------------------------------
    def stop(self, flush: float = FLUSH) -> None:
        """Send what is queued now (no more coalescing wait) for up to ``flush`` seconds, then end the thread;
        what is still queued then is dropped (counted)."""
        deadline = time.monotonic() + flush
        with self._cond:
            self._flushing = True
            self._cond.notify()
            while self._queue and self._alive() and time.monotonic() < deadline:
                self._cond.wait(max(0.0, deadline - time.monotonic()))
            left = len(self._queue)
            self._queue.clear()
        for _ in range(left):
            self.counts.notified(self.name, "dropped")
        self._stop.set()
        with self._cond:
            self._cond.notify()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(max(0.0, deadline - time.monotonic()) + 0.5)

    def _alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        last_sent = 0.0
        while not self._stop.is_set():
            with self._cond:
                while not self._queue and not self._stop.is_set():
                    self._cond.wait()
                if self._stop.is_set():
                    return
                first = next(iter(self._queue.values()))
                due = time.monotonic() if self._flushing else first.due
                wait = max(due - time.monotonic(), last_sent + 1 / RATE - time.monotonic())
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                message = self._queue.pop(first.request.key)
            self._deliver(message.request)
            last_sent = time.monotonic()
            with self._cond:
                self._cond.notify_all()  # a flush waits for the queue to empty

    def _deliver(self, request: protocol.Request) -> None:
        reason = ""
        for attempt in range(len(BACKOFF) + 1):
            try:
                resp = self._http.request(
                    "POST",
                    self.format.base + request.path,
                    body=request.body,
                    headers={**request.headers, "User-Agent": "gitops-agent"},
                )
                status, reason = resp.status, f"HTTP {resp.status}"
            except urllib3.exceptions.HTTPError as e:
                status, reason = 0, type(e).__name__
            if 200 <= status < 300:
                self.counts.notified(self.name, "sent")
                return
            if 400 <= status < 500:
                if status not in self._told_4xx:
                    self._told_4xx.add(status)
                    log.error("notifications %s: refused with %s; dropped (said once per status)", self.name, reason)
                self.counts.notified(self.name, "dropped")
                return
            if attempt < len(BACKOFF):
                self.counts.notified(self.name, "retried")
                if self._stop.wait(BACKOFF[attempt]):
                    return
        log.warning("notifications %s: %s after %d attempts; dropped", self.name, reason, len(BACKOFF) + 1)
        self.counts.notified(self.name, "dropped")

"""Notifications: events and commit statuses sent to Slack, webhooks (CloudEvents), GitHub and GitLab, never in
the way of a sync.

Each configured provider has its own thread and bounded queue (:data:`QUEUE`, the oldest dropped beyond it).
:meth:`Notifier.event` and :meth:`Notifier.commit_status` only enqueue. A message waits :data:`COALESCE` seconds
before it is sent, and a newer one for the same (cluster, path, reason), or the same commit status context,
revision and state, replaces it meanwhile (so a pending status is still posted before the success that follows
it). Sending is rate limited (:data:`RATE` per second per provider). A 5xx answer, a timeout or a refused
connection is retried after 1, 2 and 4 s, then dropped; a 4xx is logged once per status and dropped. Every
outcome is counted in ``gitops_agent_notifications_total{provider, result}`` (sent, retried, dropped). Webhook and
Slack URLs are secrets: no log line names them (the provider's name stands in).

Formats, from each service's documentation: Slack incoming webhooks (``text`` and Block Kit ``blocks``);
CloudEvents 1.0 structured mode (``application/cloudevents+json``, HMAC-SHA256 of the body in
``X-Signature-256``); GitHub "Create a commit status" (``POST /repos/{owner}/{repo}/statuses/{sha}``, ``state``,
``target_url``, ``description`` up to 140 characters, ``context``); GitLab "Set the pipeline status of a commit"
(``POST /api/v4/projects/:id/statuses/:sha``, ``state`` pending/running/success/failed, ``name``,
``target_url``, ``description``). Used by :mod:`agent.runtime.fleet`.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.parse
import uuid
from typing import Any

import urllib3

from agent import config
from agent.runtime import events, metrics

log = logging.getLogger(__name__)

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
COMMIT_STATES = {"github": {"failure": "failure"}, "gitlab": {"failure": "failed"}}


AGGREGATED_REVISIONS = 50
"""Revisions whose aggregated commit status is followed."""


@dataclasses.dataclass
class _Aggregate:
    pending: bool = False
    failed: bool = False
    healthy: set[str] = dataclasses.field(default_factory=set)


@dataclasses.dataclass
class _Message:
    key: tuple[str, ...]
    body: bytes
    path: str
    headers: dict[str, str]
    due: float


class Provider:
    """One configured provider: its queue and delivery thread."""

    def __init__(self, spec: config.Notification, source_url: str, instance: str, counts: metrics.Metrics) -> None:
        self.spec = spec
        self.name = spec.name
        self.instance = instance
        self.counts = counts
        where = f"notifications[{spec.name}]"
        url = spec.url.value(f"{where}.url").decode() if isinstance(spec.url, config.SecretRef) else spec.url
        self._secret = spec.secret.value(f"{where}.secret") if spec.secret else None
        self._token = spec.token.value(f"{where}.token").decode() if spec.token else None
        default_api = {"github": "https://api.github.com", "gitlab": "https://gitlab.com"}.get(spec.type, "")
        self._base = (url or spec.api_url or default_api).rstrip("/")
        self._repository = spec.repository or repository_of(source_url)
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(5.0, spec.timeout), read=spec.timeout), retries=False
        )
        self._queue: collections.OrderedDict[tuple[str, ...], _Message] = collections.OrderedDict()
        self._told_4xx: set[int] = set()
        self._flushing = False
        self._revisions: dict[str, _Aggregate] = {}  # aggregated commit statuses, by revision
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name=f"notify-{spec.name}", daemon=True)
        self._thread.start()

    # -- what is wanted ------------------------------------------------------------------------------------------
    def wants(self, event: events.Event) -> bool:
        """True when ``event`` passes this provider's filters."""
        if self.spec.clusters and event.cluster and event.cluster not in self.spec.clusters:
            return False
        return not self.spec.events or event.reason in self.spec.events

    @property
    def commit_status(self) -> bool:
        """True for GitHub and GitLab: they get commit statuses, not events."""
        return self.spec.type in ("github", "gitlab")

    # -- enqueue -------------------------------------------------------------------------------------------------
    def event(self, event: events.Event) -> None:
        """Queue ``event`` (Slack or webhook)."""
        if self.spec.type == "slack":
            body = json.dumps(slack_payload(event, self.spec.target_url)).encode()
            self._offer((event.cluster, event.path, event.reason), "", body, {"Content-Type": "application/json"})
            return
        body = json.dumps(cloudevent(event, self.instance), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/cloudevents+json"}
        if self._secret is not None:
            headers["X-Signature-256"] = "sha256=" + hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        self._offer((event.cluster, event.path, event.reason), "", body, headers)

    def status(self, cluster: str, sha: str, state: str, description: str, clusters: frozenset[str]) -> None:
        """Queue a commit status (``state``: pending, success or failure) for ``sha`` on ``cluster``'s context, or,
        ``aggregated``, on the one context of the revision (``clusters``: every cluster it must reach)."""
        if self.spec.commit_status == "aggregated":
            found = self._aggregated(cluster, sha, state, description, clusters)
            if found is None:
                return
            state, description = found
            context = "gitops-agent"
        else:
            context = f"gitops-agent/{cluster}"
        state = COMMIT_STATES[self.spec.type].get(state, state)
        short = description if len(description) <= 140 else description[:137] + "..."
        if self.spec.type == "github":
            path = f"/repos/{self._repository}/statuses/{sha}"
            doc = {"state": state, "description": short, "context": context}
            headers = {
                "Authorization": f"Bearer {self._token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            }
        else:
            project = urllib.parse.quote(self._repository, safe="")
            path = f"/api/v4/projects/{project}/statuses/{sha}"
            doc = {"state": state, "description": short, "name": context}
            headers = {"PRIVATE-TOKEN": self._token or ""}
        if self.spec.target_url:
            doc["target_url"] = self.spec.target_url
        headers["Content-Type"] = "application/json"
        self._offer(("status", context, sha, state), path, json.dumps(doc).encode(), headers)

    def _aggregated(
        self, cluster: str, sha: str, state: str, description: str, clusters: frozenset[str]
    ) -> tuple[str, str] | None:
        """The revision's one status after ``cluster`` reached ``state``, or None when it does not change."""
        seen = self._revisions.setdefault(sha, _Aggregate())
        while len(self._revisions) > AGGREGATED_REVISIONS:
            self._revisions.pop(next(iter(self._revisions)))
        if seen.failed:
            return None
        if state == "failure":
            seen.failed = True
            return "failure", f"{cluster}: {description}"
        if state == "pending":
            if seen.pending:
                return None
            seen.pending = True
            return "pending", f"syncing {sha[:12]} to {len(clusters)} cluster(s)"
        seen.healthy.add(cluster)
        if clusters <= seen.healthy:
            return "success", f"Synced and Healthy on all {len(clusters)} cluster(s)"
        return None

    def _offer(self, key: tuple[str, ...], path: str, body: bytes, headers: dict[str, str]) -> None:
        message = _Message(key, body, path, headers, time.monotonic() + COALESCE)
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
            while self._queue and time.monotonic() < deadline:
                self._cond.wait(max(0.0, deadline - time.monotonic()))
            left = len(self._queue)
            self._queue.clear()
        for _ in range(left):
            self.counts.notified(self.name, "dropped")
        self._stop.set()
        with self._cond:
            self._cond.notify()
        self._thread.join(max(0.0, deadline - time.monotonic()) + 0.5)

    def _loop(self) -> None:
        last_sent = 0.0
        while not self._stop.is_set():
            with self._cond:
                while not self._queue and not self._stop.is_set():
                    self._cond.wait()
                if self._stop.is_set():
                    return
                _, first = next(iter(self._queue.items()))
                due = time.monotonic() if self._flushing else first.due
                wait = max(due - time.monotonic(), last_sent + 1 / RATE - time.monotonic())
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                message = self._queue.pop(first.key)
            self._deliver(message)
            last_sent = time.monotonic()
            with self._cond:
                self._cond.notify_all()  # a flush waits for the queue to empty

    def _deliver(self, message: _Message) -> None:
        for attempt in range(len(BACKOFF) + 1):
            try:
                resp = self._http.request(
                    "POST",
                    self._base + message.path,
                    body=message.body,
                    headers={**message.headers, "User-Agent": "gitops-agent"},
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


class Notifier:
    """Every configured provider; events and commit statuses fan out to those that want them."""

    def __init__(self, cfg: config.AgentConfig, counts: metrics.Metrics) -> None:
        self.providers = [Provider(n, cfg.default_source.url, cfg.instance, counts) for n in cfg.notifications]

    def event(self, event: events.Event) -> None:
        """Send ``event`` to the event providers that want it."""
        for p in self.providers:
            if not p.commit_status and p.wants(event):
                p.event(event)

    def commit_status(self, cluster: str, sha: str, state: str, description: str, clusters: frozenset[str]) -> None:
        """Set ``state`` (pending, success, failure) on ``sha`` for ``cluster`` at every commit status provider
        (``clusters``: every cluster the revision must reach, for aggregated statuses)."""
        for p in self.providers:
            if p.commit_status and (not p.spec.clusters or cluster in p.spec.clusters):
                wanted = clusters & frozenset(p.spec.clusters) if p.spec.clusters else clusters
                p.status(cluster, sha, state, description, wanted)

    def stop(self) -> None:
        """Flush and end every provider's thread (:data:`FLUSH` seconds in all at most, providers in parallel)."""
        threads = [threading.Thread(target=p.stop, daemon=True) for p in self.providers]
        for th in threads:
            th.start()
        for th in threads:
            th.join(FLUSH + 1)


def slack_payload(event: events.Event, link: str | None) -> dict[str, Any]:
    """A Slack incoming-webhook message: ``text`` (the notification's plain text) and Block Kit ``blocks``."""
    where = event.cluster or "the source"
    text = f"{event.reason} on {where}: {event.message}"
    context = f"revision `{event.revision[:12] or '-'}` · {event.time.isoformat()}" + (
        f" · <{link}|status>" if link else ""
    )
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{event.reason}* on `{where}`\n{event.message}"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    }


def cloudevent(event: events.Event, instance: str) -> dict[str, Any]:
    """The event as a CloudEvents 1.0 structured-mode JSON document."""
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": f"gitops-agent/{instance}",
        "type": f"io.gitops-agent.{event.reason}",
        "subject": event.cluster or "source",
        "time": event.time.isoformat(),
        "datacontenttype": "application/json",
        "data": event.json(),
    }


def repository_of(url: str) -> str:
    """``owner/repo`` (GitLab: the whole project path) from a git URL: ``https://host/owner/repo.git``,
    ``ssh://git@host/owner/repo``, ``git@host:owner/repo.git``, or a local path (its last two segments)."""
    if "://" in url:
        path = url.split("://", 1)[1].partition("/")[2]
    elif "@" in url and ":" in url:
        path = url.partition(":")[2]
    else:
        path = "/".join(url.rstrip("/").split("/")[-2:])
    return path.strip("/").removesuffix(".git")

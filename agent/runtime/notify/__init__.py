"""Notifications: events and commit statuses sent to Slack, Microsoft Teams, webhooks (CloudEvents), GitHub and
GitLab, never in the way of a sync.

One module per provider kind formats (:mod:`.slack`, :mod:`.teams`, :mod:`.webhook`, :mod:`.github`,
:mod:`.gitlab`, each a :class:`.protocol.Format`, registered in :data:`agent.notifier_kinds.KINDS`); delivery is
shared (:mod:`.channel`: queue, coalescing, rate limit, retries, one thread per provider). Used by
:mod:`agent.runtime.fleet`, which owns the :class:`Notifier` and starts and stops its threads.
"""

from __future__ import annotations

from agent import config, threads
from agent.runtime import events, metrics
from agent.runtime.notify.channel import FLUSH, Provider

__all__ = ["Notifier", "Provider"]


class Notifier:
    """Every configured provider; events and commit statuses fan out to those that want them. Built without
    threads (a provider's secret that cannot be read raises ConfigError here); :meth:`start` starts them."""

    def __init__(self, cfg: config.AgentConfig, counts: metrics.Metrics) -> None:
        self.providers = [Provider(n, cfg.default_source.url, cfg.instance, counts) for n in cfg.notifications]

    def start(self) -> None:
        """Start every provider's delivery thread."""
        for p in self.providers:
            p.start()

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
        stopping = [threads.start(f"notify-stop-{p.name}", "fleet/notify", p.stop) for p in self.providers]
        for th in stopping:
            th.join(FLUSH + 1)

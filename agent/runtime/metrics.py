"""Prometheus metrics of the agent (prometheus_client), one registry per agent, served on ``GET /metrics``.

| metric | type | labels | meaning |
|---|---|---|---|
| ``gitops_agent_reconcile_duration_seconds`` | histogram | cluster | wall time of one reconcile |
| ``gitops_agent_syncs_total`` | counter | cluster, result | reconciles by result (succeeded, failed) |
| ``gitops_agent_drifted_objects`` | gauge | cluster | objects the last reconcile created, configured or failed |
| ``gitops_agent_managed_objects`` | gauge | cluster | objects in the cluster's desired state |
| ``gitops_agent_cluster_reachable`` | gauge | cluster | 1 when the last reconcile reached the cluster |
| ``gitops_agent_app_syncs_total`` | counter | app, cluster, result | an app's syncs (succeeded, failed, waiting) |
| ``gitops_agent_app_managed_objects`` | gauge | app, cluster | objects in the app's desired state on the cluster |
| ``gitops_agent_app_sync_ok`` | gauge | app, cluster | 1 when the app's last sync on the cluster succeeded |
| ``gitops_agent_app_drifted_objects`` | gauge | app, cluster | the app's objects that do not match git now (live
  edits since the last sync, :mod:`agent.sync.drift`; read at each scrape) |
| ``gitops_agent_hook_runs_total`` | counter | app, cluster, phase, result | hook runs (Succeeded, Failed) |
| ``gitops_agent_git_fetches_total`` | counter | result | source fetches by result (success, failure) |
| ``gitops_agent_revision_info`` | gauge | sha, ref | 1 for the revision the source is at |
| ``gitops_agent_self_heals_total`` | counter | cluster | objects re-applied by self-heal |
| ``gitops_agent_sync_lateness_seconds`` | histogram | (none) | how late a scheduled sync started after it was due |
| ``gitops_agent_helm_renders_total`` | counter | (none) | ``helm template`` runs (cached renders are not counted) |
| ``gitops_agent_notifications_total`` | counter | provider, result | notifications sent, retried or dropped |

Labels carry names and revisions only, never object contents or credentials. A cluster removed from the config
loses every series labelled with it (:meth:`Metrics.forget`). Used by ``agent.runtime.fleet`` and
``agent.api.server``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import prometheus_client
import prometheus_client.core
import prometheus_client.registry

from reconcilers import engine, resources

_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """The agent's metrics in their own registry (so several agents can live in one process, as tests do)."""

    def __init__(self) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        self._heals_seen: dict[str, int] = {}
        r = self.registry
        self.duration = prometheus_client.Histogram(
            "gitops_agent_reconcile_duration_seconds",
            "Wall time of one reconcile.",
            ["cluster"],
            registry=r,
            buckets=_BUCKETS,
        )
        self.syncs = prometheus_client.Counter(
            "gitops_agent_syncs", "Reconciles by result.", ["cluster", "result"], registry=r
        )
        self.api_retries = prometheus_client.Counter(
            "gitops_agent_api_retries",
            "Requests sent again because the API server asked to wait (429, or 5xx with Retry-After), by status.",
            ["cluster", "code"],
            registry=r,
        )
        self.drifted = prometheus_client.Gauge(
            "gitops_agent_drifted_objects",
            "Objects the last reconcile created, configured or failed.",
            ["cluster"],
            registry=r,
        )
        self.managed = prometheus_client.Gauge(
            "gitops_agent_managed_objects", "Objects in the cluster's desired state.", ["cluster"], registry=r
        )
        self.reachable = prometheus_client.Gauge(
            "gitops_agent_cluster_reachable", "1 when the last reconcile reached the cluster.", ["cluster"], registry=r
        )
        self.fetches = prometheus_client.Counter(
            "gitops_agent_git_fetches", "Source fetches by result.", ["result"], registry=r
        )
        self.revision = prometheus_client.Gauge(
            "gitops_agent_revision_info", "1 for the revision the source is at.", ["sha", "ref"], registry=r
        )
        self.heals = prometheus_client.Counter(
            "gitops_agent_self_heals", "Objects re-applied by self-heal.", ["cluster"], registry=r
        )

        self.app_syncs = prometheus_client.Counter(
            "gitops_agent_app_syncs", "An app's syncs on a cluster by result.", ["app", "cluster", "result"], registry=r
        )
        self.app_managed = prometheus_client.Gauge(
            "gitops_agent_app_managed_objects",
            "Objects in the app's desired state on the cluster.",
            ["app", "cluster"],
            registry=r,
        )
        self.app_ok = prometheus_client.Gauge(
            "gitops_agent_app_sync_ok",
            "1 when the app's last sync on the cluster succeeded.",
            ["app", "cluster"],
            registry=r,
        )
        self.hook_runs = prometheus_client.Counter(
            "gitops_agent_hook_runs",
            "Hook runs of an app on a cluster by phase and result.",
            ["app", "cluster", "phase", "result"],
            registry=r,
        )
        # cluster -> app -> its series, so a removed app's are dropped; ``labels()`` checks and locks on every
        # call, and a cluster of 100 apps would ask for 300 children per sync. Each cluster's entry is touched by
        # its worker's thread only (and by :meth:`forget` once that worker stopped).
        self._app_series: dict[str, dict[str, _AppSeries]] = {}

        self.renders = prometheus_client.Counter(
            "gitops_agent_helm_renders", "helm template runs (cached renders are not counted).", registry=r
        )
        self._renders_seen = 0
        self.notifications = prometheus_client.Counter(
            "gitops_agent_notifications", "Notifications by outcome.", ["provider", "result"], registry=r
        )
        self.lateness = prometheus_client.Histogram(
            "gitops_agent_sync_lateness_seconds",
            "How late a scheduled sync started after it was due (a worker busy or starved).",
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )

    def watch_drift(self, drifted: Callable[[], Mapping[str, Mapping[str, int]]]) -> None:
        """Serve ``gitops_agent_app_drifted_objects`` from ``drifted`` (cluster -> app -> drifted objects), called
        at each scrape: the value is the drift now, not at the last sync."""
        self.registry.register(_DriftCollector(drifted))

    def notified(self, provider: str, result: str) -> None:
        """Count one notification outcome: ``sent``, ``retried`` or ``dropped``."""
        self.notifications.labels(provider, result).inc()

    def rendered(self, total: int) -> None:
        """Count the ``helm template`` runs up to ``total`` (the process's count so far)."""
        self.renders.inc(max(0, total - self._renders_seen))
        self._renders_seen = max(self._renders_seen, total)

    def reconciled(self, result: engine.ReconcileResult, healed_total: int) -> None:
        """Record a finished reconcile; ``healed_total`` is the cluster's self-heal count so far."""
        c = result.counts
        self.duration.labels(result.cluster).observe(result.duration)
        self.syncs.labels(result.cluster, "succeeded" if result.ok else "failed").inc()
        self.drifted.labels(result.cluster).set(c["created"] + c["configured"] + c["recreated"] + c["failed"])
        self.managed.labels(result.cluster).set(len(result.desired))
        self.reachable.labels(result.cluster).set(0 if result.error_kind is engine.ErrorKind.CLUSTER else 1)
        self._apps(result)
        seen = self._heals_seen.get(result.cluster, 0)
        self.heals.labels(result.cluster).inc(max(0, healed_total - seen))
        self._heals_seen[result.cluster] = max(seen, healed_total)

    def _apps(self, result: engine.ReconcileResult) -> None:
        """Per-app series of a cluster's result; the gauges of apps no longer in it are removed."""
        if result.error_kind in (engine.ErrorKind.CLUSTER, engine.ErrorKind.CANCELLED) and not result.apps:
            return  # the cluster was not reached: what its apps are is not known now
        cluster = result.cluster
        held = self._app_series.setdefault(cluster, {})
        for a in result.apps:
            series = held.get(a.app)
            if series is None:
                series = held[a.app] = _AppSeries(
                    self.app_managed.labels(a.app, cluster), self.app_ok.labels(a.app, cluster)
                )
            ok = a.ok
            outcome = "waiting" if a.error_kind is engine.ErrorKind.WAITING else "succeeded" if ok else "failed"
            counter = series.syncs.get(outcome)
            if counter is None:
                counter = series.syncs[outcome] = self.app_syncs.labels(a.app, cluster, outcome)
            counter.inc()
            managed, good = len(a.desired), 1 if ok else 0
            if series.values != (managed, good):  # gauges set only when their value changes
                series.managed.set(managed)
                series.ok.set(good)
                series.values = managed, good
            for h in a.hooks if not a.dry_run else ():
                self.hook_runs.labels(a.app, cluster, h.phase.value, h.result).inc()
        if len(held) != len(result.apps):
            for gone in held.keys() - {a.app for a in result.apps}:
                del held[gone]
                for gauge in (self.app_managed, self.app_ok):
                    with contextlib.suppress(KeyError):
                        gauge.remove(gone, cluster)

    def forget(self, cluster: str) -> None:
        """Drop every series labelled ``cluster`` (a config reload removed it). Kept, its gauges would go on
        saying what its last sync found (``cluster_reachable 1``, its apps' ``app_sync_ok``) of a cluster the
        agent no longer syncs. Called once the cluster's worker stopped."""
        for metric in (
            self.duration, self.syncs, self.api_retries, self.drifted, self.managed, self.reachable, self.heals,
            self.app_syncs, self.app_managed, self.app_ok, self.hook_runs,
        ):  # fmt: skip
            metric.remove_by_labels({"cluster": cluster})
        self._app_series.pop(cluster, None)
        self._heals_seen.pop(cluster, None)

    def retried(self, cluster: str, code: int) -> None:
        """A request to ``cluster`` is sent again: the API server answered ``code`` with ``Retry-After``."""
        self.api_retries.labels(cluster, str(code)).inc()

    def fetched(self, revision: resources.Revision | None) -> None:
        """Record a fetch (None: it failed)."""
        self.fetches.labels("success" if revision else "failure").inc()
        if revision is not None:
            self.revision.clear()
            self.revision.labels(revision.sha, revision.ref).set(1)

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return bytes(prometheus_client.generate_latest(self.registry))


class _AppSeries:
    """One app's series on one cluster: its gauges' children, the values they were set to, its sync counters."""

    __slots__ = ("managed", "ok", "syncs", "values")

    def __init__(self, managed: Any, ok: Any) -> None:
        self.managed, self.ok = managed, ok
        self.values: tuple[int, int] | None = None
        self.syncs: dict[str, Any] = {}  # result -> counter child


class _DriftCollector(prometheus_client.registry.Collector):
    """``gitops_agent_app_drifted_objects`` as it is at the scrape (a custom collector, prometheus_client's way to
    serve a value read when asked)."""

    def __init__(self, drifted: Callable[[], Mapping[str, Mapping[str, int]]]) -> None:
        self.drifted = drifted

    def collect(self) -> Iterator[prometheus_client.core.Metric]:
        family = prometheus_client.core.GaugeMetricFamily(
            "gitops_agent_app_drifted_objects",
            "An app's objects on a cluster that do not match git now (changed or deleted live since its last sync).",
            labels=["app", "cluster"],
        )
        for cluster, by_app in sorted(self.drifted().items()):
            for app, count in sorted(by_app.items()):
                family.add_metric([app, cluster], count)
        yield family

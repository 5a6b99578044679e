"""A cluster's session: its connection and what follows the cluster between syncs.

:class:`Session` holds one cluster's :class:`agent.clusters.connection.KubeCluster` (the agent's identity, its
request limits, the Lease fence), the live cache (:mod:`agent.clusters.cache`) and, with ``watch``, the watches
fed from it: self-heal (:mod:`agent.sync.selfheal`), the drift monitor (:mod:`agent.sync.drift`) and the inventory
watch (:mod:`agent.clusters.inventories`). It is opened on the first sync that needs the cluster (never in the
constructor, which starts no thread) and closed by its owner, the cluster's :class:`agent.sync.cluster.ClusterSync`
(itself created, owned and closed by one :class:`agent.runtime.worker.Worker`, or by a one-shot sync).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from agent import apps, config
from agent.clusters import cache, connection, inventories, kubeconfig
from agent.sync import drift, selfheal
from agent.sync import options as options_
from agent.sync import view as view_
from reconcilers import cancel as cancel_
from reconcilers import client, engine, errors, resources
from reconcilers import health as health_


class Session:
    """One cluster's connection, live cache and watches (see the module doc). ``refused_heal(key)`` says why the
    write gate refuses a self-heal of ``key`` now (None: allowed); ``heal_client(key)`` is the client self-heal
    corrects ``key`` with (its app's service account when it has one)."""

    def __init__(
        self,
        cfg: config.AgentConfig,
        cluster: config.ClusterConfig,
        *,
        watch: bool,
        guard: cancel_.Guard | None,
        on_event: selfheal.OnEvent | None,
        on_retry: Callable[[int], None] | None,
        rules: health_.Rules,
        refused_heal: Callable[[resources.ResourceKey], str | None],
        heal_client: Callable[[resources.ResourceKey], client.KubeClient],
    ) -> None:
        self.cfg = cfg
        self.cluster = cluster
        self.watch = watch
        self.guard = guard
        self.on_event = on_event
        self.on_retry = on_retry
        self.rules = rules
        self._refused_heal = refused_heal
        self._heal_client = heal_client
        self.kube: connection.KubeCluster | None = None
        self.live: cache.LiveCache | None = None
        self.healer: selfheal.Healer | None = None
        self.drift: drift.DriftMonitor | None = None  # with ``watch``: the apps self-heal does not correct
        self.inventories: inventories.InventoryWatch | None = None  # with ``watch``: the inventories, watched

    def connect(self) -> tuple[connection.KubeCluster, cache.LiveCache]:
        """The cluster's connection and live cache, opened (and the watches started) on the first call. Raises
        ClusterError when the kubeconfig or credentials cannot be read."""
        if self.kube is None or self.live is None:
            cfg = self.cfg
            kube = kubeconfig.connect(
                self.cluster, cfg.sync.concurrency, cfg.sync.request_timeout, options_.user_agent(cfg)
            )
            kube.fence = self.guard
            kube.on_retry = self.on_retry
            kube.limiter = options_.rate_limit(cfg, self.cluster)
            tracking = engine.Tracking(cfg.instance, self.cluster.name)
            heal = self.watch and any(u.self_heal for u in apps.units(cfg, self.cluster))
            options = engine.ApplyOptions(field_manager=cfg.sync.field_manager, concurrency=cfg.sync.concurrency)
            if heal:
                self.healer = selfheal.Healer(
                    self.cluster.name, kube, options, self.guard, self.on_event, self._refused_heal, self._heal_client
                )
            if self.watch:
                self.drift = drift.DriftMonitor(
                    self.cluster.name, lambda u: kube.impersonating(u) if u else kube, options, self.on_event
                )
            self.live = cache.LiveCache(kube, tracking.selector, options.field_manager, self.notify, self.rules)
            for watcher in (self.healer, self.drift):
                if watcher is not None:
                    watcher.live = self.live
            if self.healer:
                self.healer.start()
            if self.drift:
                self.drift.start()
            if self.watch:
                self.inventories = inventories.InventoryWatch(kube, cfg.instance, cfg.sync.inventory_namespace)
                self.inventories.start()
            self.kube = kube
        return self.kube, self.live

    def notify(self, key: resources.ResourceKey, obj: resources.Body | None) -> None:
        """A watch event of the live cache, told to self-heal and to the drift monitor."""
        if self.healer:
            self.healer.notify(key, obj)
        if self.drift:
            self.drift.notify(key, obj)

    def facts(self) -> tuple[str, tuple[str, ...]]:
        """The cluster's version and served API versions, for Helm's ``.Capabilities`` (read only: no write).
        Raises ClusterError."""
        return self.connect()[0].facts()

    def discovery_generation(self) -> int | None:
        """The connection's discovery generation (None before the first connect)."""
        return self.kube.discovery_generation if self.kube is not None else None

    def health(self, keys: Sequence[resources.ResourceKey]) -> dict[resources.ResourceKey, health_.HealthStatus]:
        """The health of ``keys`` from the live cache (Unknown for all when the cluster was never reached)."""
        if self.live is None:
            return {k: health_.HealthStatus(health_.Health.UNKNOWN, "cluster not reached yet") for k in keys}
        return {k: self.live.health(k) for k in keys}

    def health_now(self, keys: Sequence[resources.ResourceKey]) -> dict[resources.ResourceKey, health_.HealthStatus]:
        """Health read with a GET per object (one-shot syncs have no watches). Raises ClusterError."""
        kube = self.connect()[0]
        return {k: self.rules.assess(k, kube.get(k)) for k in keys}

    def status(self) -> dict[str, Any]:
        """Self-heal status (``{}`` when self-heal is off) for the status API."""
        return self.healer.status() if self.healer else {}

    def view(self, throttled: str) -> view_.ClusterView:
        """The session as other threads may read it (:class:`agent.sync.view.ClusterView`); ``throttled``: the
        sync's own note on ``Retry-After`` waits. Safe from any thread."""
        kube, live = self.kube, self.live
        if kube is None or live is None:
            return view_.EMPTY
        return view_.ClusterView(
            heal=self.status(),
            fighting=tuple(self.healer.fighting()) if self.healer else (),
            drift=self.drift.snapshot() if self.drift else drift.EMPTY,
            throttled=throttled,
            requests=dict(kube.requests),
            reached=True,
            changes=live.changes,
            health=self.health,
            read=self.read,
        )

    def read(self, key: resources.ResourceKey) -> resources.Body | None:
        """The live object ``key``: from the live cache when it holds it with its ``managedFields``, else one GET
        (None: missing, or the cluster not reachable). Safe from any thread; sends no write."""
        kube, live = self.kube, self.live
        if kube is None:
            return None
        cached = live.get(key) if live is not None else None
        if cached is not None and (cached.get("metadata") or {}).get("managedFields"):
            return dict(cached)
        try:
            found: resources.Body | None = kube.get(key)
            return found
        except errors.ClusterError:
            return None

    def read_now(self, key: resources.ResourceKey) -> resources.Body | None:
        """The object ``key`` as the cluster holds it now (one GET; None: not found). Raises ClusterError (the
        cluster unreachable, the read refused). Safe from any thread; sends no write."""
        kube, _ = self.connect()
        return kube.get(key)

    def close(self) -> None:
        """Stop watches and self-heal (waiting for a correction in flight), release the connection. Call when no
        sync runs (the worker cancels and waits for its sync first)."""
        if self.healer:
            self.healer.stop()
        if self.drift:
            self.drift.stop()
        if self.live:
            self.live.stop()
        if self.inventories:
            self.inventories.stop()
        if self.kube:
            self.kube.close()

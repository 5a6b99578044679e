"""What one cluster sync shares among its apps: :class:`Context` (the config, the cluster, its connection and live
cache, how to load and wait, the sync's options and what the last sync left), and the shapes of its loader and
health waiter. Built by :class:`agent.sync.cluster.ClusterSync` for :mod:`agent.sync.appsync` and
:mod:`agent.sync.appruns`.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Mapping

from agent import apps, config
from agent.clusters import cache, connection
from agent.sync import gate, noop, ownership
from reconcilers import cancel as cancel_
from reconcilers import engine, resources

Loader = Callable[[apps.Unit, Mapping[str, pathlib.Path]], list[resources.Manifest]]
"""Loads one unit's manifests from the trees of the sources (its own; others for values files), decrypted and
substituted, each with ``source_path`` set to the unit's inventory key. Raises ConfigError/SourceError."""
Waiter = Callable[[engine.ReconcileResult, cancel_.Token], engine.ReconcileResult]
"""Waits for a synced unit's objects to be Healthy; returns the result with ``health`` set."""


@dataclasses.dataclass(frozen=True)
class Context:
    """What one cluster sync shares among its units: the config, the cluster, its connection (the agent's
    identity) and live cache, how to load and wait, and the sync's options."""

    cfg: config.AgentConfig
    cluster: config.ClusterConfig
    kube: connection.KubeCluster
    live: cache.LiveCache
    options: Callable[[apps.Unit], engine.ReconcileOptions]
    load: Loader
    wait_healthy: Waiter
    mask: Callable[[str], str]
    dry_run: bool
    wait: bool | None
    watch: bool
    prune: engine.PruneOptions
    """The top-level prune settings (``sync.prune`` and the sync's flags): for removed apps and orphans."""
    previous: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """App -> the revision (sha) its last successful sync applied on this cluster: such an app resyncs inline."""
    last: Mapping[str, noop.Last] = dataclasses.field(default_factory=dict)
    """App -> what its last good sync applied (for :func:`noop.unchanged`)."""
    remember: dict[str, noop.Last] = dataclasses.field(default_factory=dict)
    """Filled by this sync: app -> what its good sync applied (the runner keeps it for the next sync)."""
    claims: ownership.Memo = dataclasses.field(default_factory=ownership.Memo)
    """The claims of the cluster's last sync, for this one (the runner keeps one per cluster)."""
    proof: noop.ClusterMemo = dataclasses.field(default_factory=noop.ClusterMemo)
    """The cluster's last sync in which every unit was proven unchanged (the runner keeps one per cluster)."""
    watched: Callable[[], Mapping[str, resources.Body] | None] | None = None
    """The cluster's inventory ConfigMaps by key as a watch holds them, None while it is not current
    (:meth:`agent.clusters.inventories.InventoryWatch.snapshot`); None: no watch (every sync LISTs them)."""
    admit: Callable[[apps.Unit], gate.Decision] = lambda u: gate.ALLOWED
    """The write gate's answer for a unit in this sync (:mod:`agent.sync.gate`): a refused unit runs as a dry
    run, its result ``held`` with the reason."""
    config: str = ""
    """The config's digest (:func:`agent.sync.keys.config_digest`), part of what a no-op proof is keyed by."""
    selected: Mapping[str, tuple[resources.ResourceKey, ...]] = dataclasses.field(default_factory=dict)
    """App -> the objects a selective sync writes of it (Argo CD's selective sync: no hook, no prune, the app's
    other objects left as they are); such an app's result is never a no-op proof's, nor remembered as one."""
    digest: Callable[[str], str] = lambda app: ""
    """The digest of the manifests app ``app`` last loaded (:func:`agent.sync.keys.manifests_digest`; "" when it
    never loaded: nothing is proven from it)."""

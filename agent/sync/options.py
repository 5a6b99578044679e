"""The engine's options for one unit on one cluster, from the config (:mod:`agent.config`): apply, prune, ignore
rules, health and wave settings, and the User-Agent of the agent's requests. Used by :mod:`agent.sync.cluster`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from agent import apps, config
from agent.clusters import connection, ratelimit
from reconcilers import engine, health


def ignore_rules(rules: Sequence[config.IgnoreDifference]) -> tuple[engine.IgnoreRule, ...]:
    """The engine's form of configured ignore rules."""
    return tuple(
        engine.IgnoreRule(
            r.json_pointers,
            r.group,
            r.kind,
            r.name,
            r.namespace,
            dict(r.label_selector.match_labels) if r.label_selector else {},
        )
        for r in rules
    )


def user_agent(cfg: config.AgentConfig) -> str:
    """The User-Agent of this agent's requests, naming the agent, its ``instance`` and, with sharding, the replica
    (``gitops-agent/0.1.0 (instance prod; replica web-0)``), so audit logs tell agents and replicas apart."""
    replica = f"; replica {cfg.sharding.identity}" if cfg.sharding else ""
    return f"{connection.USER_AGENT} (instance {cfg.instance}{replica})"


def rate_limit(cfg: config.AgentConfig, cluster: config.ClusterConfig) -> ratelimit.TokenBucket | None:
    """``cluster``'s client-side rate limit: its own ``qps``/``burst``, else ``sync.qps``/``sync.burst``; None when
    the qps is 0 (no limit)."""
    qps = cluster.qps if cluster.qps is not None else cfg.sync.qps
    burst = cluster.burst if cluster.burst is not None else cfg.sync.burst
    return ratelimit.TokenBucket(qps, burst) if qps > 0 else None


def prune_options(cfg: config.AgentConfig, *, force: bool, orphans: bool) -> engine.PruneOptions:
    """The top-level prune settings under ``cfg`` with the sync's ``--force-prune`` and ``--prune-orphans``."""
    sync = cfg.sync
    return engine.PruneOptions(
        enabled=sync.prune,
        allow_empty=sync.allow_empty,
        budget=sync.prune_budget,
        force=force,
        orphans=orphans,
        propagation=sync.prune_propagation_policy,
    )


def options_for(
    cfg: config.AgentConfig,
    cluster: config.ClusterConfig,
    unit: apps.Unit,
    *,
    dry_run: bool,
    force_prune: bool = False,
    prune_orphans: bool = False,
    rules: health.Rules | None = None,
) -> engine.ReconcileOptions:
    """The engine options of ``unit`` on ``cluster`` under ``cfg`` (one inventory: the unit's); ``rules``: the
    health rules of wave gates and hooks (default the built-in ones)."""
    sync = cfg.sync
    return engine.ReconcileOptions(
        apply=engine.ApplyOptions(
            field_manager=sync.field_manager,
            dry_run=dry_run,
            concurrency=sync.concurrency,
            recreate=unit.recreate,
            recreate_timeout=sync.timeout,
        ),
        prune=dataclasses.replace(prune_options(cfg, force=force_prune, orphans=prune_orphans), enabled=unit.prune),
        ignore=ignore_rules(unit.ignore),
        default_namespace=unit.namespace,
        timeout=sync.timeout,
        instance=cfg.instance,
        paths=(unit.inventory,),
        inventory_namespace=sync.inventory_namespace,
        scan_orphans=False,
        rules=rules or health.BUILT_IN,
        wave_timeout=sync.wave_timeout if sync.wave_timeout is not None else sync.timeout,
        hooks_on_noop=sync.hooks_on_noop,
    )

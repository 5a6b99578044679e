"""One-shot syncs (``gitops-agent sync`` and ``diff``): fetch the sources once, reconcile the clusters once,
concurrently, each with a fresh :class:`agent.sync.cluster.ClusterSync` (no watches). Used by
:mod:`agent.cli`.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from typing import Any

from agent import apps, config, threads
from agent.appsets import expand
from agent.sources import registry
from agent.sync import gate, holds
from agent.sync.cluster import ClusterSync, ReconcileResult
from reconcilers import errors, resources

log = logging.getLogger(__name__)


def sync_fleet(
    cfg: config.AgentConfig,
    sources: Mapping[str, registry.Source],
    names: Sequence[str] | None = None,
    *,
    app: str | None = None,
    dry_run: bool = False,
    force_prune: bool = False,
    prune_orphans: bool = False,
    revision: str | None = None,
    wait: bool | None = None,
    objects: Sequence[resources.ResourceKey] = (),
    generated: Callable[[expand.Generation], None] = lambda g: None,
) -> list[ReconcileResult]:
    """Fetch the sources and reconcile the named clusters (all when None; with ``app``, those it is placed on,
        and that app only) once, concurrently, in config order, at each source's ``ref`` or, for the source named
        ``default``, at ``revision`` (a branch, tag or commit). ``wait``: each app then waits up to ``sync.timeout`` for
    its objects to be Healthy (None: as each app's ``sync.wait`` says).

        A source that cannot be fetched leaves its apps unsynced (their results say so); raises
        :class:`errors.FetchError` when no source could be fetched or the revision not resolved (nothing is written)
        and :class:`errors.ConfigError` for an unknown cluster or app name, or ``objects`` without ``app``.
        ``objects``: a selective sync of ``app``: only these objects are written (no hook, no prune).

        App sets (``appSets``) generate their apps first, from the sources their git generators read, fetched
        here too; ``generated`` is told the outcome (an app set that fails keeps nothing from being synced: its
        apps are simply not there, and nothing it made before is pruned).
    """
    if objects and app is None:
        raise errors.ConfigError("--resource selects objects of one app: give --app too")
    revisions: dict[str, resources.Revision] = {}
    failures: list[errors.FetchError] = []

    def fetch(name: str) -> None:
        if name in revisions or name not in sources:
            return
        try:
            head = sources[name].fetch()
            revisions[name] = sources[name].resolve(revision) if revision and name == "default" else head
        except errors.FetchError as e:
            log.error("source %s: %s", name, e)
            failures.append(e)

    with contextlib.ExitStack() as stack:
        trees: dict[str, pathlib.Path] = {}
        if cfg.generates:
            for name in cfg.generator_sources():
                fetch(name)
            trees = {name: stack.enter_context(sources[name].tree(rev)) for name, rev in revisions.items()}
            generation = expand.generate(cfg, trees)
            generated(generation)
            sources = _with_charts(sources, cfg, generation.config)
            cfg = generation.config
        selected = [cfg.cluster(n) for n in dict.fromkeys(names)] if names else list(cfg.clusters)  # each once
        if app is not None:
            selected = [c for c in selected if apps.select(apps.units(cfg, c), app)]
            if not selected:
                raise errors.ConfigError(f"app {app!r} is placed on none of the clusters named")
        for name in dict.fromkeys(s for c in selected for s in apps.sources_of(cfg, c)):
            fetch(name)
        if failures and not revisions:
            raise failures[0]
        fetched = dict(revisions)

        def resolve(source: str, ref: str) -> resources.Revision | None:
            return _resolved(sources, fetched, source, ref)

        for c in selected:  # apps with a ref of their own: pinned to it
            revisions |= apps.ref_pins(apps.placement(cfg, c).units, resolve)
        for key, rev in revisions.items():
            if key not in trees and rev.sha:
                source = key.removeprefix(apps.PIN_PREFIX)
                if key.startswith(apps.PIN_PREFIX):
                    source = next(a.source for a in cfg.apps if a.name == source)
                trees[key] = stack.enter_context(sources[source].tree(rev))

        def one(cluster: config.ClusterConfig) -> ReconcileResult:
            return reconcile_once(
                cfg,
                cluster,
                revisions,
                trees,
                app=app,
                dry_run=dry_run,
                force_prune=force_prune,
                prune_orphans=prune_orphans,
                wait=wait,
                selected={app: tuple(objects)} if app is not None and objects else None,
            )

        with futures.ThreadPoolExecutor(
            max(1, len(selected)), thread_name_prefix=threads.pool("cluster", "sync (one-shot)")
        ) as pool:
            return list(pool.map(one, selected))


def reconcile_once(
    cfg: config.AgentConfig,
    cluster: config.ClusterConfig,
    revisions: Mapping[str, resources.Revision],
    trees: Mapping[str, pathlib.Path],
    **options: Any,
) -> ReconcileResult:
    """Reconcile ``cluster`` once with a fresh :class:`agent.sync.cluster.ClusterSync` of its own (new
    connections, no watch), closed after: ``options`` are those of :meth:`ClusterSync.reconcile` (``dry_run``,
    ``cancel``, ...). Suspended apps and clusters are read from the cluster as the sync starts (a suspended app is
    diffed, never written). Never raises (as ``reconcile``)."""
    book = holds.Book()
    runner = ClusterSync(cfg, cluster, gate=gate.Gate([gate.HoldRule(book)]), book=book)
    try:
        return runner.reconcile(revisions, trees, **options)
    finally:
        runner.close()


def _resolved(
    sources: Mapping[str, registry.Source], fetched: Mapping[str, resources.Revision], source: str, ref: str
) -> resources.Revision | None:
    """``ref`` in the clone of ``source`` when it was fetched, or None."""
    if source not in fetched:
        return None
    try:
        return sources[source].resolve(ref)
    except errors.FetchError:
        return None


def _with_charts(
    sources: Mapping[str, registry.Source], before: config.AgentConfig, after: config.AgentConfig
) -> dict[str, registry.Source]:
    """``sources``, with each chart source whose charts generated apps name changed opened again for them (a
    chart source fetches the charts its apps name)."""
    found = dict(sources)
    for name, spec in after.all_sources().items():
        if spec.charts and before.charts_of(name) != after.charts_of(name):
            found[name] = registry.open_source(spec, after.charts_of(name))
    return found

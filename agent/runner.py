"""One reconcile of one cluster, and one sync of the fleet: load the cluster's manifests from a checkout,
connect, and run ``reconcilers.engine.reconcile``.

``reconcile_cluster`` never raises: every failure becomes a :class:`ReconcileResult` with ``error`` and
``error_kind`` set, so a failing cluster never stops the others. ``sync_fleet`` fetches the source once and
reconciles the selected clusters concurrently (one thread per cluster). Used by ``agent.cli`` and
``agent.scheduler``.
"""

from __future__ import annotations

import datetime
import logging
import pathlib
import time
from collections.abc import Sequence
from concurrent import futures

from agent import clusters, config
from agent.sources import git, manifests
from reconcilers import apply, engine, errors, resources

log = logging.getLogger(__name__)

ReconcileResult = engine.ReconcileResult


def options_for(cfg: config.AgentConfig, cluster: config.ClusterConfig, *, dry_run: bool) -> engine.ReconcileOptions:
    """The engine options of ``cluster`` under ``cfg``."""
    return engine.ReconcileOptions(
        apply=apply.ApplyOptions(
            field_manager=cfg.sync.field_manager, dry_run=dry_run, concurrency=cfg.sync.concurrency
        ),
        default_namespace=cluster.namespace,
        timeout=cfg.sync.timeout,
    )


def reconcile_cluster(
    cfg: config.AgentConfig,
    cluster: config.ClusterConfig,
    revision: resources.Revision,
    checkout: pathlib.Path,
    *,
    dry_run: bool = False,
) -> ReconcileResult:
    """Reconcile ``cluster`` to ``revision`` (whose tree is at ``checkout``). Never raises."""
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.monotonic()

    def failed(kind: engine.ErrorKind, message: str) -> ReconcileResult:
        log.error("cluster %s: %s", cluster.name, message)
        return ReconcileResult(cluster.name, revision, (), started, time.monotonic() - t0, dry_run, message, kind)

    try:
        desired = manifests.load_paths(checkout, cluster.paths)
        kube = clusters.connect(cluster, cfg.sync.concurrency)
        try:
            result = engine.reconcile(
                kube, desired, options_for(cfg, cluster, dry_run=dry_run), cluster=cluster.name, revision=revision
            )
        finally:
            kube.close()
    except errors.ConfigError as e:
        return failed(engine.ErrorKind.CONFIG, str(e))
    except errors.SourceError as e:
        return failed(engine.ErrorKind.SOURCE, str(e))
    except errors.ClusterError as e:
        return failed(engine.ErrorKind.CLUSTER, f"cluster {cluster.name}: {e}")
    except Exception as e:  # a bug: report it, never let it stop the other clusters
        log.exception("cluster %s: unexpected error", cluster.name)
        return failed(engine.ErrorKind.INTERNAL, f"internal error: {type(e).__name__}: {e}")
    log.info(
        "cluster %s: revision %s: %s%s",
        cluster.name,
        revision.short,
        ", ".join(f"{v} {k}" for k, v in result.counts.items() if v),
        f"; error: {result.error}" if result.error else "",
    )
    return result


def sync_fleet(
    cfg: config.AgentConfig,
    source: git.GitSource,
    names: Sequence[str] | None = None,
    *,
    dry_run: bool = False,
) -> list[ReconcileResult]:
    """Fetch the source and reconcile the named clusters (all when None) concurrently, in config order.

    Raises :class:`errors.FetchError` when the source cannot be fetched (nothing is written) and
    :class:`errors.ConfigError` for an unknown cluster name.
    """
    selected = [cfg.cluster(n) for n in names] if names else list(cfg.clusters)
    revision = source.fetch()
    checkout = source.checkout(revision)
    with futures.ThreadPoolExecutor(len(selected), thread_name_prefix="cluster") as pool:
        return list(pool.map(lambda c: reconcile_cluster(cfg, c, revision, checkout, dry_run=dry_run), selected))

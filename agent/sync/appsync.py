"""One sync of a cluster's apps, each an isolated unit (Argo CD's Application, Flux's Kustomization).

:func:`sync_units` runs the story for the units of one cluster (:mod:`agent.apps`):

0. a cluster whose every input is as its last sync left it, when that sync proved every unit unchanged, is
   proven again in one pass (:func:`noop.again`: no per-unit load, claims, scheduling or result checks) and its
   orphans scanned; any doubt, and every other sync, takes the steps below;
1. load every unit from its source's tree; a unit that fails to load fails alone;
2. claim objects in unit order: an object a second unit also renders fails that second unit (naming both apps
   and documents); the first keeps it. A unit whose objects leave the ``namespaces`` allow-list fails before any
   write;
3. sync the units, each with its own ``reconcilers.engine.reconcile`` (own inventory, prune, stages): resyncs
   one after the other, new revisions beside each other (see :func:`_run`), an app only after the apps it
   ``dependsOn`` are Synced and Healthy on the cluster (else it is ``Waiting``; health waits run beside the other
   apps' syncs); objects another unit desires are never pruned by this one (they moved);
4. prune the inventories of apps no longer placed on the cluster (removed from the config, or the cluster left
   their selector) when ``sync.prune`` is on and every unit loaded; keep them (and say so) otherwise;
5. scan for orphans once for the whole cluster.

The cluster's result is the units' results together (:func:`agent.sync.appresults.aggregate`). Called by
:mod:`agent.sync.cluster`.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import pathlib
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures

from agent import apps, config, threads
from agent.clusters import cache, connection
from agent.sync import gate, helmreleases, keys, namespaces, noop, ownership, removed
from reconcilers import cancel as cancel_
from reconcilers import engine, errors, health, resources

log = logging.getLogger(__name__)

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
    digest: Callable[[str], str] = lambda app: ""
    """The digest of the manifests app ``app`` last loaded (:func:`agent.sync.keys.manifests_digest`; "" when it
    never loaded: nothing is proven from it)."""


def sync_units(
    ctx: Context,
    units: Sequence[apps.Unit],
    revisions: Mapping[str, resources.Revision],
    trees: Mapping[str, pathlib.Path],
    token: cancel_.Token,
    *,
    only: str | None = None,
) -> tuple[list[engine.ReconcileResult], list[engine.ChangeSetEntry]]:
    """Sync ``units`` (every unit of the cluster, dependencies first) at ``revisions`` (source name -> revision)
    from ``trees`` (source name -> checkout); with ``only``, just the unit of that name (the others are loaded
    for the object claims, not synced; its dependencies are not waited for). Returns one result per synced unit
    (``app`` set) and, for a full sync, one per removed app with an inventory left; and the orphans found (a full
    sync in which every unit succeeded). Never raises for a unit's failure; raises CancelledError and ClusterError
    (the caller ends the cluster's sync)."""
    if only is None and not ctx.dry_run and not ctx.wait and all(ctx.admit(u).allowed for u in units):
        proven = _again(ctx, units, revisions, trees, token)
        if proven is not None:
            return proven
    ctx.proof.last = None  # made again below when every unit is proven
    loaded: dict[str, list[resources.Manifest]] = {}
    failed: dict[str, engine.ReconcileResult] = {}
    given, revisions, trees = (revisions, trees), dict(revisions), dict(trees)
    for u in units:
        pin = apps.PIN_PREFIX + u.name
        if revisions.get(pin) is apps.NOT_REACHED:
            why = f"Waiting (the rollout of {u.name} has not reached this cluster)"
            failed[u.name] = _result(ctx, u, None, why, engine.ErrorKind.WAITING)
            continue
        revision = revisions.get(pin) or revisions.get(u.source)
        tree = trees.get(pin) or trees.get(u.source)
        if revision is None or tree is None:
            why = f"Waiting (source {u.source} has no revision yet: its first fetch is pending or failing)"
            failed[u.name] = _result(ctx, u, revision, why, engine.ErrorKind.WAITING)
            continue
        revisions[pin], trees[pin] = revision, tree  # the unit's own revision and tree, from here on
        try:
            # its tree as its source's (a pinned one differs): no copy of the sources' map when it is the same
            loaded[u.name] = ctx.load(u, trees if keys.same(trees.get(u.source), tree) else {**trees, u.source: tree})
        except (errors.CancelledError, errors.ClusterError):
            raise  # the whole sync's verdict (cancelled, cluster unreachable), not this app's
        except errors.GitOpsError as e:
            failed[u.name] = _failed(ctx, u, revision, e)
        except Exception as e:  # a bug in loading or rendering one app: that app fails alone
            failed[u.name] = _internal(ctx, u, revision, "loading", e)
    claims = _claim(ctx, units, loaded, revisions, failed)
    stored, fresh = _inventories(ctx, units, loaded, only)
    kinds = {(m.key.group, m.key.kind) for found in loaded.values() for m in found}
    ctx.live.ensure(kinds, watch=ctx.watch)
    selected = [u for u in units if only is None or u.name == only]
    results = _run(ctx, selected, loaded, claims, revisions, failed, token, only is not None, stored, fresh)
    if ctx.watch:
        ctx.live.ensure(kinds, watch=True)  # kinds whose CRDs this sync created are served now
    orphaned: list[engine.ChangeSetEntry] = []
    if only is None and token.reason is None:  # a cancelled sync ends here: no prune of removed apps, no scan
        complete = len(loaded) == len(units)
        prune_options = ctx.prune
        if stored is not None:  # without the LIST, apps that left are not seen
            results += removed.sync_removed(
                ctx.kube, ctx.cfg, ctx.cluster, units, stored, set(claims), complete, prune_options, ctx.dry_run, token,
                admit=lambda name: _admit_name(ctx, name),
            )  # fmt: skip
        if all(r.ok for r in results):
            known = {k for r in results for k in r.known} | set(claims)
            tracking = engine.Tracking(ctx.cfg.instance, ctx.cluster.name)
            orphaned = engine.orphans(
                ctx.kube, ctx.live, known, tracking, prune_options, dry_run=_orphans_dry(ctx), cancel=token
            )
            if stored is not None and not fresh and len(results) == len(units) and not any(r.held for r in results):
                ctx.proof.last = noop.cluster_proof(
                    units, *given, stored, ctx.remember, ctx.wait, ctx.config, ctx.prune, frozenset(known),
                    field_manager=lambda u: ctx.options(u).apply.field_manager,
                )  # fmt: skip
    return results, orphaned


def _again(
    ctx: Context,
    units: Sequence[apps.Unit],
    revisions: Mapping[str, resources.Revision],
    trees: Mapping[str, pathlib.Path],
    token: cancel_.Token,
) -> tuple[list[engine.ReconcileResult], list[engine.ChangeSetEntry]] | None:
    """The sync of a cluster proven as its last sync left it (:func:`noop.again`), in one pass: its units'
    results and the orphans found; None when it is not (the caller syncs unit by unit). The API server must
    answer (:meth:`connection.KubeCluster.ping`), as for any sync proven from the watches."""
    proof = ctx.proof.last
    stored = ctx.watched() if ctx.watched is not None and proof is not None else None

    def digest(u: apps.Unit) -> str:
        ctx.load(u, trees)  # from the memory while its inputs are the same
        return ctx.digest(u.name)

    found = noop.again(proof, units, ctx.config, revisions, trees, stored, ctx.prune, digest, ctx.live)
    if found is None or proof is None:
        return None
    ctx.kube.ping()
    if token.reason is not None:
        return found, []
    tracking = engine.Tracking(ctx.cfg.instance, ctx.cluster.name)
    return found, engine.orphans(
        ctx.kube, ctx.live, proof.known, tracking, ctx.prune, dry_run=_orphans_dry(ctx), cancel=token
    )


def _admit_name(ctx: Context, name: str) -> gate.Decision:
    """The write gate's answer for writes of this sync that belong to no current unit: the prune of app ``name``,
    which left the cluster (its hold, the windows covering its name, the cluster's hold, manual mode as
    ``sync.auto`` says), or, as ``*``, the cluster's orphans."""
    unit = apps.Unit(name, "", "", "", "", cluster=ctx.cluster.name, auto=ctx.cfg.sync.auto)
    return ctx.admit(unit)


def _orphans_dry(ctx: Context) -> bool:
    """True when deleting orphans (``--prune-orphans``) must not write: a dry run, or the gate refuses the
    cluster's writes (suspended, a sync window)."""
    return ctx.dry_run or (ctx.prune.orphans and not _admit_name(ctx, "*").allowed)


def _inventories(
    ctx: Context, units: Sequence[apps.Unit], loaded: Mapping[str, list[resources.Manifest]], only: str | None
) -> tuple[Mapping[str, resources.Body] | None, bool]:
    """The cluster's inventories by key (None: they may not be listed, each app reads its own), and whether they
    are a LIST's of this sync. The watch's (no request) when it is current and this sync is a resync of
    unchanged manifests (each loaded unit has the manifests digest, unit and config its last good sync had, so it
    will most likely be proven unchanged) with no inventory of an app that left, after one small request that
    shows the API server answers (:meth:`connection.KubeCluster.ping`); else one LIST. Raises ClusterError."""
    found = ctx.watched() if ctx.watched is not None and not ctx.dry_run else None
    if found is not None:
        resync = all(
            (last := ctx.last.get(u.name)) is not None
            and last.digest == ctx.digest(u.name)
            and last.config == ctx.config
            and keys.same(last.unit, u)
            for u in units
            if u.name in loaded and (only is None or u.name == only)
        )
        if resync and (only is not None or found.keys() <= {u.inventory for u in units}):
            ctx.kube.ping()  # the watches say nothing of a server gone silent: it must answer this sync
            return found, False
    return removed.list_inventories(ctx.kube, ctx.cfg, ctx.cluster.name), True  # one LIST, not a GET per app


def _claim(
    ctx: Context,
    units: Sequence[apps.Unit],
    loaded: dict[str, list[resources.Manifest]],
    revisions: Mapping[str, resources.Revision],
    failed: dict[str, engine.ReconcileResult],
) -> dict[resources.ResourceKey, tuple[str, resources.Manifest]]:
    """The claims of the loaded units (:func:`ownership.claim`, remembered); a unit refused there fails (a config
    error) and is no longer loaded."""
    found, refused = ctx.claims.claim(ctx.kube, units, loaded, ctx.digest)
    for name, problem in refused.items():
        del loaded[name]
        u = next(u for u in units if u.name == name)
        failed[name] = _result(
            ctx, u, revisions.get(apps.PIN_PREFIX + name), ctx.mask(problem), engine.ErrorKind.CONFIG
        )
    return found


def _run(
    ctx: Context,
    selected: Sequence[apps.Unit],
    loaded: Mapping[str, list[resources.Manifest]],
    claims: Mapping[resources.ResourceKey, tuple[str, resources.Manifest]],
    revisions: Mapping[str, resources.Revision],
    failed: Mapping[str, engine.ReconcileResult],
    token: cancel_.Token,
    alone: bool,
    stored: Mapping[str, resources.Body] | None,
    fresh: bool,
) -> list[engine.ReconcileResult]:
    """Sync the selected units, each once its dependencies are done. A unit already synced at its revision (a
    resync) runs in the caller's thread, one after the other: that work is interpreter-bound (a no-op resync never
    leaves the live cache) and threads would only fight over it. A unit at a new revision (or never synced) is
    likely to write, so it runs on one of ``sync.appConcurrency`` daemon threads of this sync (``app-<cluster>-<n>``)
    beside the others. Every engine run sends its requests through one pool of ``sync.concurrency`` threads
    (``req-<cluster>``): the cluster sees that many requests in flight in all, as with one app of all the objects
    (a pool per engine run made 8 x 8, and their threads fought over the interpreter). A unit's health wait
    (``sync.wait``, or apps depend on it) runs in a daemon thread of its own (``wait-<cluster>-<app>``) while the
    units that do not depend on it go on. Daemon threads, and a request pool whose requests end within
    ``sync.requestTimeout``: a sync cancelled while a request hangs on a frozen API server never holds the
    process's exit for longer. A bug in one unit is raised once the units running beside it have ended."""
    done: dict[str, engine.ReconcileResult] = {}
    needed = {d for u in selected for d in u.depends_on}
    by_name = {u.name: u for u in selected}
    pending = list(selected)
    finished: queue.Queue[tuple[str, str, engine.ReconcileResult | BaseException]] = queue.Queue()
    jobs: queue.Queue[apps.Unit | None] = queue.Queue()
    busy: set[str] = set()  # units syncing on a pool thread or waiting for their health
    started_pool: list[threading.Thread] = []
    problem: BaseException | None = None

    def pool() -> None:  # a pool thread of this sync: units until the sentinel
        while (u := jobs.get()) is not None:
            try:
                finished.put(
                    (
                        "sync",
                        u.name,
                        _sync_one(
                            ctx,
                            u,
                            loaded[u.name],
                            claims,
                            revisions[apps.PIN_PREFIX + u.name],
                            token,
                            stored,
                            fresh,
                            requests,
                        ),
                    )
                )
            except BaseException as e:
                finished.put(("sync", u.name, e))

    def wait(name: str, result: engine.ReconcileResult) -> None:
        try:
            finished.put(("wait", name, ctx.wait_healthy(result, token)))
        except BaseException as e:
            finished.put(("wait", name, e))

    def synced(u: apps.Unit, result: engine.ReconcileResult) -> None:
        wants = ctx.wait if ctx.wait is not None else u.wait
        if (wants or u.name in needed) and not ctx.dry_run and result.ok:
            busy.add(u.name)
            name = f"wait-{ctx.cluster.name}-{u.name}"
            threads.start(name, f"cluster/{ctx.cluster.name}/sync", wait, u.name, result)
        else:
            done[u.name] = result

    here = set(by_name)
    requests = futures.ThreadPoolExecutor(
        max(1, ctx.cfg.sync.concurrency), threads.pool(f"req-{ctx.cluster.name}", f"cluster/{ctx.cluster.name}/sync")
    )
    try:
        while pending or busy:
            started = False
            later: list[apps.Unit] = []  # units whose dependencies are still syncing or waiting for their health
            for u in pending:
                if problem is not None:
                    break
                deps = [] if alone or not u.depends_on else [d for d in u.depends_on if d in here or d in failed]
                if any(d not in done and d not in failed for d in deps):
                    later.append(u)
                    continue
                started = True
                why = _waiting_on(u, deps, done, failed, here, alone) if u.depends_on else ""
                pin = apps.PIN_PREFIX + u.name
                if u.name in failed:
                    done[u.name] = failed[u.name]
                elif why:
                    done[u.name] = _result(ctx, u, revisions.get(pin), why, engine.ErrorKind.WAITING)
                elif ctx.previous.get(u.name) == revisions[pin].sha:
                    synced(u, _sync_one(ctx, u, loaded[u.name], claims, revisions[pin], token, stored, fresh, requests))
                else:
                    busy.add(u.name)
                    jobs.put(u)
                    if len(started_pool) < max(1, ctx.cfg.sync.app_concurrency):
                        name = f"app-{ctx.cluster.name}-{len(started_pool)}"
                        started_pool.append(threads.start(name, f"cluster/{ctx.cluster.name}/sync", pool))
            pending = [] if problem is not None else later
            while busy and (not started or not finished.empty()):
                kind, name, out = finished.get()
                busy.discard(name)
                started = True
                if isinstance(out, BaseException):
                    problem = problem or out
                elif kind == "sync":
                    synced(by_name[name], out)
                else:
                    done[name] = out
            if problem is not None and not busy:
                raise problem
    finally:
        for _ in started_pool:
            jobs.put(None)
        requests.shutdown()  # the requests already sent return (none is left once every unit ended)
    return [done[u.name] for u in selected]


def _waiting_on(
    u: apps.Unit,
    deps: Sequence[str],
    done: Mapping[str, engine.ReconcileResult],
    failed: Mapping[str, engine.ReconcileResult],
    here: set[str],
    alone: bool,
) -> str:
    """Why ``u`` waits ("" when it may sync): ``Waiting (crds not Healthy)``."""
    if alone:
        return ""
    missing = [d for d in u.depends_on if d not in here and d not in failed]
    if missing:
        return f"Waiting ({', '.join(missing)} not placed on this cluster)"
    for d in deps:
        r = done.get(d) or failed[d]
        if not r.ok:
            return f"Waiting ({d} not Synced)"
        if r.health is not health.Health.HEALTHY and not r.dry_run:
            return f"Waiting ({d} not Healthy)"
    return ""


def _sync_one(
    ctx: Context,
    u: apps.Unit,
    manifests: list[resources.Manifest],
    claims: Mapping[resources.ResourceKey, tuple[str, resources.Manifest]],
    revision: resources.Revision,
    token: cancel_.Token,
    stored: Mapping[str, resources.Body] | None,
    fresh: bool,
    requests: futures.Executor,
) -> engine.ReconcileResult:
    """One unit's engine run (as its service account, if any), its namespace created first when asked; none
    when :func:`noop.unchanged` proves it unchanged from ``stored`` (the engine is given ``stored`` only when
    ``fresh``, a LIST of this sync; else it reads the unit's inventory itself). What fails in it fails this unit
    alone (a duplicate identity, an unreadable inventory, a namespace it may not create); only a bug raises."""
    try:
        decision = ctx.admit(u)
        held = "" if decision.allowed or ctx.dry_run else decision.reason
        created = namespaces.create(ctx.kube, ctx.cfg, ctx.cluster.name, u, manifests, ctx.dry_run or bool(held), token)
        options = ctx.options(u)
        if held:  # the gate refused: what a sync would do, written nowhere
            options = dataclasses.replace(options, apply=dataclasses.replace(options.apply, dry_run=True))
        last = None if held else ctx.last.get(u.name)
        proven = noop.unchanged(last, ctx.digest(u.name), u, ctx.config, revision, stored, ctx.live, options, created)
        if proven is not None:
            ctx.remember[u.name] = proven[1]
            return proven[0]
        if any(ctx.kube.resource_type(m.key.group, m.key.kind) is None for m in manifests):
            ctx.kube.refresh_discovery()  # a CRD an app it depends on created may be served now
        kube = ctx.kube.impersonating(u.impersonate) if u.impersonate else ctx.kube
        result = engine.reconcile(
            kube, manifests, dataclasses.replace(options, protected=ownership.OthersObjects(claims, u.name)),
            cluster=ctx.cluster.name, revision=revision, live=ctx.live, cancel=token, store_kube=ctx.kube,
            stored=None if stored is None or not fresh else {u.inventory: stored.get(u.inventory)}, pool=requests,
        )  # fmt: skip
        kept = tuple(helmreleases.left_alone(ctx.kube, u, manifests)) if result.ok else ()
        result = dataclasses.replace(result, app=u.name, entries=(*created, *result.entries, *kept), held=held)
        if result.ok and not ctx.dry_run and not held:
            ctx.remember[u.name] = noop.Last(ctx.digest(u.name), u, ctx.config, result, kept)
        return result
    except errors.GitOpsError as e:
        return _failed(ctx, u, revision, e)
    except Exception as e:  # a bug in one app's sync: that app fails alone, the others go on
        return _internal(ctx, u, revision, "syncing", e)


def _failed(
    ctx: Context, u: apps.Unit, revision: resources.Revision | None, e: errors.GitOpsError
) -> engine.ReconcileResult:
    """The result of an app that ``e`` stopped: its typed problem (:func:`reconcilers.engine.problem`), the message
    masked (a cancellation's reason holds no value of the app's)."""
    found = engine.problem(e, ctx.cluster.name)
    if found.kind is not engine.ErrorKind.CANCELLED:
        found = dataclasses.replace(found, message=ctx.mask(found.message))
    return _result(ctx, u, revision, found.message, found.kind, found)


def _internal(
    ctx: Context, u: apps.Unit, revision: resources.Revision | None, step: str, e: Exception
) -> engine.ReconcileResult:
    """The result of an app whose ``step`` raised an exception no rule expects (a bug), logged with its trace."""
    log.exception("cluster %s: app %s: unexpected error while %s", ctx.cluster.name, u.name, step)
    why = ctx.mask(f"internal error while {step} app {u.name}: {type(e).__name__}: {e}")
    return _result(ctx, u, revision, why, engine.ErrorKind.INTERNAL)


def _result(
    ctx: Context,
    u: apps.Unit,
    revision: resources.Revision | None,
    error: str,
    kind: engine.ErrorKind,
    problem: engine.Problem | None = None,
) -> engine.ReconcileResult:
    now = datetime.datetime.now(datetime.UTC)
    return engine.ReconcileResult(
        ctx.cluster.name, revision, (), now, 0.0, ctx.dry_run, error, kind, app=u.name, problem=problem
    )

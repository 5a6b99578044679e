"""The apps of one cluster sync, run: each unit's engine run (or its no-op proof) once its dependencies are done,
resyncs inline and new revisions on the sync's app threads, health waits beside them (:func:`run`), and the
result of an app that failed (:func:`failed`, :func:`internal`, :func:`result`). Used by
:mod:`agent.sync.appsync`.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent import futures

from agent import apps, threads
from agent.sync import helmreleases, namespaces, noop, ownership
from agent.sync.context import Context
from reconcilers import cancel as cancel_
from reconcilers import engine, errors, health, resources

log = logging.getLogger(__name__)


def run(
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
                    done[u.name] = result(ctx, u, revisions.get(pin), why, engine.ErrorKind.WAITING)
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
        selected = ctx.selected.get(u.name)
        if selected is not None:
            options = dataclasses.replace(options, only=selected)
        last = None if held or selected is not None else ctx.last.get(u.name)
        proven = noop.unchanged(last, ctx.digest(u.name), u, ctx.config, revision, stored, ctx.live, options, created)
        if proven is not None:
            ctx.remember[u.name] = proven[1]
            return proven[0]
        _discover(ctx, u, manifests, token)
        kube = ctx.kube.impersonating(u.impersonate) if u.impersonate else ctx.kube
        result = engine.reconcile(
            kube, manifests, dataclasses.replace(options, protected=ownership.OthersObjects(claims, u.name)),
            cluster=ctx.cluster.name, revision=revision, live=ctx.live, cancel=token, store_kube=ctx.kube,
            stored=None if stored is None or not fresh else {u.inventory: stored.get(u.inventory)}, pool=requests,
        )  # fmt: skip
        kept = tuple(helmreleases.left_alone(ctx.kube, u, manifests)) if result.ok else ()
        result = dataclasses.replace(result, app=u.name, entries=(*created, *result.entries, *kept), held=held)
        if result.ok and not ctx.dry_run and not held and selected is None:
            ctx.remember[u.name] = noop.Last(ctx.digest(u.name), u, ctx.config, result, kept)
        return result
    except errors.GitOpsError as e:
        return failed(ctx, u, revision, e)
    except Exception as e:  # a bug in one app's sync: that app fails alone, the others go on
        return internal(ctx, u, revision, "syncing", e)


def failed(
    ctx: Context, u: apps.Unit, revision: resources.Revision | None, e: errors.GitOpsError
) -> engine.ReconcileResult:
    """The result of an app that ``e`` stopped: its typed problem (:func:`reconcilers.engine.problem`), the message
    masked (a cancellation's reason holds no value of the app's)."""
    found = engine.problem(e, ctx.cluster.name)
    if found.kind is not engine.ErrorKind.CANCELLED:
        found = dataclasses.replace(found, message=ctx.mask(found.message))
    return result(ctx, u, revision, found.message, found.kind, found)


def internal(
    ctx: Context, u: apps.Unit, revision: resources.Revision | None, step: str, e: Exception
) -> engine.ReconcileResult:
    """The result of an app whose ``step`` raised an exception no rule expects (a bug), logged with its trace."""
    log.exception("cluster %s: app %s: unexpected error while %s", ctx.cluster.name, u.name, step)
    why = ctx.mask(f"internal error while {step} app {u.name}: {type(e).__name__}: {e}")
    return result(ctx, u, revision, why, engine.ErrorKind.INTERNAL)


def result(
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


DISCOVERY_LAG = 10.0
"""Seconds an app with ``dependsOn`` waits for the kinds it lacks to show in discovery: the CRDs an app it depends
on just wrote are Established before the API server's discovery serves their kinds (as
:data:`reconcilers.phases.DISCOVERY_LAG` for an app's own CRDs)."""


def _discover(ctx: Context, u: apps.Unit, manifests: Sequence[resources.Manifest], token: cancel_.Token) -> None:
    """Refresh discovery when ``u`` names kinds the cluster does not serve yet (and no CRD of its own defines);
    with ``dependsOn``, again every 0.2 s up to :data:`DISCOVERY_LAG` while some are still missing (ends early on
    ``token``)."""

    if all(ctx.kube.resource_type(m.key.group, m.key.kind) is not None for m in manifests):
        return  # every kind served: the usual case, nothing more read
    own = {  # kinds whose CRD the app carries itself: the engine waits for those (reconcilers.phases)
        (str(m.body.get("spec", {}).get("group", "")), str(m.body.get("spec", {}).get("names", {}).get("kind", "")))
        for m in manifests
        if (m.key.group, m.key.kind) == ("apiextensions.k8s.io", "CustomResourceDefinition")
    }

    def missing() -> bool:
        return any(
            ctx.kube.resource_type(m.key.group, m.key.kind) is None and (m.key.group, m.key.kind) not in own
            for m in manifests
        )

    if not missing():
        return
    ctx.kube.refresh_discovery()  # a CRD an app it depends on created may be served now
    lag = time.monotonic() + DISCOVERY_LAG
    while u.depends_on and missing() and time.monotonic() < lag:
        if token.wait(0.2):
            token.check()
        ctx.kube.refresh_discovery()

"""A cluster's result from its apps' results (:mod:`agent.sync.appsync` makes them, :mod:`agent.sync.cluster`
puts them together here)."""

from __future__ import annotations

import datetime
import itertools
import time
from collections.abc import Sequence

from agent.sync import keys
from reconcilers import engine, health, resources


def aggregate(
    cluster: str,
    revision: resources.Revision | None,
    results: Sequence[engine.ReconcileResult],
    orphaned: Sequence[engine.ChangeSetEntry],
    started: float,
    previous: engine.ReconcileResult | None = None,
) -> engine.ReconcileResult:
    """The cluster's result from its apps' (``apps``): their entries (then the ``orphaned`` ones), desired sets and
    inventories together; ``error`` names the apps that failed (one app: its error and problem as they are), with
    the kind ``cluster`` or ``cancelled`` when one ended that way (the whole cluster is then in doubt), else the
    kind they share, else ``apps``; ``health`` the worst of those that waited. ``previous``: the cluster's last
    result made here; when every app's entries, desired set and inventory are the very ones it was made of (apps
    proven unchanged), its merged ones are taken again instead of copied. An app the write gate held (``held``: it
    ran as a dry run) is in ``apps`` only: its would-be changes are not the cluster's."""
    t0 = min((r.started for r in results), default=datetime.datetime.now(datetime.UTC))
    bad = [r for r in results if not r.ok]
    kinds = {r.error_kind for r in bad}
    kind: engine.ErrorKind | None = next(
        (k for k in (engine.ErrorKind.CLUSTER, engine.ErrorKind.CANCELLED) if k in kinds), None
    )
    if kind is None and bad:
        if len(results) == 1:
            kind = results[0].error_kind
        elif len(kinds) == 1 and None not in kinds:
            kind = next(iter(kinds))  # one way of failing: say which
        else:
            kind = engine.ErrorKind.APPS
    problem = None
    if len(results) == 1:
        error = results[0].error  # one app (one path): its error as it is, typed as it is
        problem = results[0].problem if results[0].error_kind == kind else None
    else:
        error = "; ".join(f"app {r.app}: {r.error or _failed_note(r)}" for r in bad) or None
    healths = [r.health for r in results if r.health is not None]
    written = [r for r in results if not r.held]  # an app the gate held ran as a dry run: its entries say "would"
    if previous is not None and not orphaned and _made_of(previous, results):
        desired, held, entries = previous.desired, previous.inventory, previous.entries
    else:
        desired, held = {}, {}
        for r in written:  # dict.update and chain copy in C: the per-object part of a 10,000-object cluster
            desired.update(r.desired)
            held.update(r.inventory)
        entries = (*itertools.chain.from_iterable(r.entries for r in written), *orphaned)
    return engine.ReconcileResult(
        cluster,
        revision,
        entries,
        t0,
        time.monotonic() - started,
        any(r.dry_run for r in written),
        error,
        kind,
        desired,
        held,
        health.aggregate(healths) if healths else None,
        "; ".join(f"{r.app}: {r.health_message}" for r in results if r.health_message),
        apps=tuple(results),
        problem=problem,
    )


def managed_keys(result: engine.ReconcileResult) -> list[resources.ResourceKey]:
    """Every object the cluster's apps desire, those of apps the write gate held included (their objects are in
    their own results only, :func:`aggregate`): whose health the status shows."""
    return [*result.desired, *(k for a in result.apps if a.held for k in a.desired)]


def _failed_note(r: engine.ReconcileResult) -> str:
    c = r.counts
    return f"{c['failed']} failed, {c['skipped']} skipped"


def _made_of(previous: engine.ReconcileResult, results: Sequence[engine.ReconcileResult]) -> bool:
    """True when ``previous`` was aggregated from results with these very entries, desired sets and inventories
    (and no orphan)."""
    if len(previous.apps) != len(results):
        return False
    for a, b in zip(previous.apps, results, strict=True):
        if not (keys.same(a.entries, b.entries) and keys.same(a.desired, b.desired)) or not keys.same(
            a.inventory, b.inventory
        ):
            return False
    return len(previous.entries) == sum(len(r.entries) for r in results) and not any(r.held for r in results)

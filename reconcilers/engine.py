"""One reconcile of one cluster: place, mark, order, validate, apply and prune the desired objects.

``reconcile(kube, manifests, options)`` reads as the story of a sync:

1. place: namespaced objects without a namespace go to ``options.default_namespace``; a kind neither served by
   the cluster nor defined by a CRD in the same desired set fails with a clear message;
2. check identities: two documents for one object make the whole sync fail (names both documents);
3. normalize each object (:mod:`reconcilers.normalize`), mark it with the tracking label and annotation, find
   its ignored fields, hash it;
4. read the inventory of every path, and record there every object this sync may create before creating it
   (so a crash never leaves an object nobody owns);
5. plan (:mod:`reconcilers.ordering`: phases, waves, stages, hooks; marks read by :mod:`reconcilers.hooks`) and
   run the plan (:mod:`reconcilers.phases`): wave by wave, stage by stage, dry-run and apply
   (:mod:`reconcilers.apply`), hooks run (:mod:`reconcilers.hookrun`), each wave gated on the health of the one
   before. A failed stage, hook or wave stops the sync: later objects are ``skipped``, SyncFail hooks run and
   nothing is pruned;
6. prune what left git (:mod:`reconcilers.prune`, highest wave first), then write each path's inventory (only
   when it changed). Hooks are never in an inventory.

Partial results come back with the error: a cluster that stops answering mid-sync yields the entries so far.
This module is also the engine's facade: everything callers outside ``reconcilers`` use is named here (see the
facade section below). Called by :mod:`agent.sync.appsync`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import time
from collections.abc import Mapping, Sequence
from concurrent import futures

from reconcilers import (
    apply,
    client,
    diff,
    errors,
    hookrun,
    hooks,
    ignore,
    inventory,
    normalize,
    ordering,
    phases,
    prune,
    resources,
    results,
    verdict,
)
from reconcilers import cancel as cancel_

# -- The facade. Callers outside ``reconcilers`` (the agent's sync wing, runtime, CLI and API) import this module and
# the shared vocabulary (resources, errors, cancel, client, health) only: an import-linter contract in
# pyproject.toml. What they need of the steps below the engine is named here.

# results and options (reconcilers.results)
ErrorKind = results.ErrorKind
failure = results.failure
problem = results.problem
Problem = results.Problem
ReconcileOptions = results.ReconcileOptions
ReconcileResult = results.ReconcileResult
Healths = results.Healths

# the vocabulary of a sync: actions, entries, desired objects, options, plans and hook runs, inventory records
Action = apply.Action
ChangeSetEntry = apply.ChangeSetEntry
Desired = apply.Desired
Comparison = apply.Comparison
ApplyOptions = apply.ApplyOptions
PruneOptions = prune.PruneOptions
IgnoreRule = ignore.IgnoreRule
Plan = ordering.Plan
HookRun = hookrun.HookRun
Marks = hooks.Marks
Tracking = inventory.Tracking
InventoryEntry = inventory.Entry
InventoryStore = inventory.Store
TRACKING_ANNOTATION = inventory.TRACKING_ANNOTATION

# single-object steps: self-heal's correction, drift's dry run, the cheap in-sync check and its fingerprint
apply_one = apply.apply_one
compare_one = apply.compare_one
quick_in_sync = diff.quick_in_sync
owned_hash = diff.owned_hash
pointer_text = ignore.pointer_text
hook_marks = hooks.marks

# prune beyond one app's reconcile: the orphan scan across apps, the order objects are deleted in
orphans = prune.orphans
prune_order = ordering.prune_order

# the no-op verdict on a result this engine made (reconcilers.verdict)
replayable = verdict.replayable
inventory_matches = verdict.inventory_matches
in_sync = verdict.in_sync
unchanged_entries = verdict.unchanged_entries


def prune_keys(
    kube: client.KubeClient,
    keys: Sequence[resources.ResourceKey],
    owner: str,
    tracking: inventory.Tracking,
    options: prune.PruneOptions,
    *,
    dry_run: bool,
    cancel: cancel_.Token | None = None,
) -> tuple[list[apply.ChangeSetEntry], set[resources.ResourceKey]]:
    """Delete ``keys`` (in the order given; see :func:`prune_order`) as a reconcile's prune does, each only while
    it is still ours (:func:`reconcilers.prune.execute`: tracking checked, ``Prune=false`` and
    ``Delete=false`` honoured); ``owner`` names the app in the entries. Returns one entry per key and the keys that
    stay ours (kept). Raises ClusterError and CancelledError (``cancel``) as the prune does."""
    plan = prune.Plan([(k, owner) for k in keys], {}, None)
    return prune.execute(kube, plan, tracking, options, dry_run=dry_run, cancel=cancel)


def reconcile(
    kube: client.KubeClient,
    manifests: Sequence[resources.Manifest],
    options: ReconcileOptions,
    *,
    cluster: str,
    revision: resources.Revision | None,
    live: client.LiveView | None = None,
    cancel: cancel_.Token | None = None,
    store_kube: client.KubeClient | None = None,
    stored: Mapping[str, resources.Body | None] | None = None,
    pool: futures.Executor | None = None,
) -> ReconcileResult:
    """Sync ``manifests`` into the cluster behind ``kube``; ``live`` is the cluster's live cache, if any.

    ``cancel`` is checked before each stage and before every write (apply, delete, inventory): a cancelled sync
    returns at once with ``error_kind=CANCELLED`` and the entries so far, and sends no write after the requests
    already in flight have returned. Never raises for cluster errors (they end the result); raises
    :class:`errors.SourceError` for duplicate identities and unreadable inventories, before any request that
    writes. ``store_kube`` reads and writes the inventories (default ``kube``: an app that impersonates a team's
    identity still keeps its inventory with the agent's own). ``pool`` runs the requests of the stages and health
    gates: a cluster sync's apps share one, so the cluster sees ``options.apply.concurrency`` requests in flight in
    all, as one app of all their objects would (its owner shuts it down, with wait); default: a pool of this
    run's own, of that many threads, shut down with wait when the run ends.
    """
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.monotonic()
    token = cancel or cancel_.never()
    entries: list[apply.ChangeSetEntry] = []
    desired: dict[resources.ResourceKey, apply.Desired] = {}
    records: dict[resources.ResourceKey, inventory.Entry] = {}
    dry_run = options.apply.dry_run

    known: set[resources.ResourceKey] = set()
    runs: list[hookrun.HookRun] = []
    plan: ordering.Plan | None = None

    def result(
        error: str | None = None, kind: ErrorKind | None = None, problem: results.Problem | None = None
    ) -> ReconcileResult:
        return ReconcileResult(
            cluster, revision, tuple(entries), started, time.monotonic() - t0, dry_run, error, kind, desired, records,
            known=frozenset(known | set(desired)), hooks=tuple(runs), plan=plan,
            problem=problem if problem is not None and problem.message == error else None,
            selected=tuple(options.only or ()),
        )  # fmt: skip

    try:
        token.check()
        placed, unplaceable = _place(kube, manifests, options.default_namespace)
        marks = _marks(placed)
        _check_unique(placed)
        if options.only is not None:
            placed, unplaceable = _select(placed, unplaceable, marks, options.only)
        plan = ordering.plan(placed, marks)
        tracking = inventory.Tracking(options.instance, cluster)
        synced = plan.synced
        rules = [*options.ignore, *ignore.builtin_rules(synced)]
        for m in synced:
            normalized = normalize.for_apply(m)
            desired[m.key] = apply.Desired(
                normalized,
                inventory.desired_hash(tracking.mark_body(normalized)),
                ignore.pointers_for(m, rules),
                tracking,
            )
        store = inventory.Store(store_kube or kube, tracking, options.inventory_namespace, options.apply.field_manager)
        if stored is not None:
            for p in options.paths:
                store.prime(p, stored.get(p))
        previous = store.read(options.paths)
        previously = {k: e for inv in previous.values() for k, e in inv.entries.items()}
        known.update(previously)
        by_path = {p: [k for k, d in desired.items() if d.manifest.source_path == p] for p in options.paths}
        intent = inventory.Intent(store, by_path, token)  # written before the first write: whatever we create is owned
        entries.extend(unplaceable)
        selective = options.only is not None
        pruning = _prune_plan(previous, by_path, options) if options.prune.enabled and not selective else None
        pending_prune = pruning is not None and bool(pruning.candidates) and not pruning.error
        with contextlib.ExitStack() as owned:
            if pool is None:
                pool = owned.enter_context(
                    futures.ThreadPoolExecutor(max(1, options.apply.concurrency), thread_name_prefix=cluster)
                )
            ctx = phases.Context(
                kube, desired, marks, options.apply, _hook_options(options, cluster), options.wave_timeout,
                options.timeout, options.hooks_on_noop, live, previously, pool, token, entries, records, runs,
                None if dry_run else intent,
            )  # fmt: skip
            stopped = phases.sync(ctx, plan, pending_prune=pending_prune)
        error: str | None = None
        kind: ErrorKind | None = None
        stop: results.Problem | None = None
        if stopped is not None and stopped.kind != "apply":
            error, kind = stopped.message, ErrorKind(stopped.kind)
            stop = results.Problem(kind, error, key=stopped.object)
        gone: set[resources.ResourceKey] = set()
        if pruning is not None and stopped is None and not any(e.action in _STOPS for e in entries):
            error, gone = _prune(kube, pruning, tracking, options, entries, token)
            kind = ErrorKind.PRUNE if error else None
        elif pruning is None and stopped is None and not selective:  # prune off: what left git is named, never deleted
            left, gone = prune.unpruned(kube, prune.left_git(previous, by_path, options.protected), tracking, token)
            entries.extend(left)
        if not dry_run:
            moved = {k for inv in previous.values() for k in inv.entries if k in options.protected}
            for p in options.paths:
                store.merge(p, put=intent.closing(p, records), add=by_path[p], drop=gone | moved, cancel=token)
        if options.scan_orphans and not selective and live is not None and not any(e.action in _STOPS for e in entries):
            entries.extend(
                prune.orphans(kube, live, known | set(desired), tracking, options.prune, dry_run=dry_run, cancel=token)
            )
    except errors.CancelledError as e:
        return result(f"cancelled: {e}", ErrorKind.CANCELLED)
    except errors.ClusterError as e:
        typed = results.problem(e, cluster)
        return result(typed.message, typed.kind, typed)
    return result(error, kind, stop)


def _select(
    placed: Sequence[resources.Manifest],
    unplaceable: Sequence[apply.ChangeSetEntry],
    marks: Mapping[resources.ResourceKey, hooks.Marks],
    only: Sequence[resources.ResourceKey],
) -> tuple[list[resources.Manifest], list[apply.ChangeSetEntry]]:
    """The manifests and unplaceable entries a selective sync keeps: the objects ``only`` names (a key with an
    empty group matches the kind in any group), never a hook (Argo CD runs no hook on a selective sync). Raises
    :class:`errors.ConfigError` naming each selected object the desired state does not hold, before any write."""

    def chosen(key: resources.ResourceKey) -> bool:
        return any(_same_object(s, key) for s in only)

    kept = [m for m in placed if chosen(m.key) and not marks.get(m.key, hooks.PLAIN).hook]
    found = {m.key for m in kept} | {e.key for e in unplaceable}
    missing = [s for s in only if not any(_same_object(s, k) for k in found)]
    if missing:
        names = ", ".join(str(s) for s in missing)
        raise errors.ConfigError(f"selective sync: not in the app's desired state (or a hook): {names}")
    return kept, [e for e in unplaceable if chosen(e.key)]


def _same_object(selected: resources.ResourceKey, key: resources.ResourceKey) -> bool:
    """``selected`` (a key of a selective sync, group optional) names ``key``."""
    same_name = (selected.kind, selected.namespace, selected.name) == (key.kind, key.namespace, key.name)
    return same_name and selected.group in ("", key.group)


def _prune_plan(
    previous: Mapping[str, inventory.Inventory],
    by_path: Mapping[str, Sequence[resources.ResourceKey]],
    options: ReconcileOptions,
) -> prune.Plan:
    """What prune would delete; objects another app desires now moved there and are never candidates."""
    plan = prune.plan(previous, by_path, options.prune)
    return dataclasses.replace(plan, candidates=[c for c in plan.candidates if c[0] not in options.protected])


def _prune(
    kube: client.KubeClient,
    plan: prune.Plan,
    tracking: inventory.Tracking,
    options: ReconcileOptions,
    entries: list[apply.ChangeSetEntry],
    token: cancel_.Token,
) -> tuple[str | None, set[resources.ResourceKey]]:
    """Prune by ``plan``; returns the refusal (None when all went as planned) and the keys no longer ours."""
    if plan.error:
        return plan.error, set()
    done, keep = prune.execute(kube, plan, tracking, options.prune, dry_run=options.apply.dry_run, cancel=token)
    entries.extend(done)
    gone = {k for k, _ in plan.candidates if k not in keep}
    return ("; ".join(plan.held.values()) or None), gone


_STOPS = (apply.Action.FAILED, apply.Action.SKIPPED)


def _marks(manifests: Sequence[resources.Manifest]) -> dict[resources.ResourceKey, hooks.Marks]:
    """The phase/wave/hook marks of every manifest that has any. Raises :class:`errors.ManifestError` naming the
    document for a malformed one (the loader checks them first; this guards other callers)."""
    out = {}
    for m in manifests:
        try:
            found = hooks.marks(m.body)
        except ValueError as e:
            raise errors.ManifestError(m.source_file, m.doc_index, str(e), m.item) from None
        if found is not hooks.PLAIN:
            out[m.key] = found
    return out


def _hook_options(options: ReconcileOptions, cluster: str) -> hookrun.HookOptions:
    return hookrun.HookOptions(
        options.apply.field_manager, options.wave_timeout, options.rules, options.instance, cluster,
        options.apply.dry_run,
    )  # fmt: skip


def _place(
    kube: client.KubeClient,
    manifests: Sequence[resources.Manifest],
    default_namespace: str,
) -> tuple[list[resources.Manifest], list[apply.ChangeSetEntry]]:
    """Default namespaces; return the placeable manifests and a failed entry for each unknown kind. An object
    marked ``SkipDryRunOnMissingResource=true`` whose kind is unknown yet is kept as written: its kind may be
    served by the time its wave comes (Argo CD's sync option of that name)."""
    desired_crds = {
        (str(spec.get("group", "")), str((spec.get("names") or {}).get("kind", ""))): spec.get("scope") == "Namespaced"
        for m in manifests
        if (m.key.group, m.key.kind) == ("apiextensions.k8s.io", "CustomResourceDefinition")
        for spec in [m.body.get("spec") or {}]
    }
    placed, failed = [], []
    for m in manifests:
        rtype = kube.resource_type(m.key.group, m.key.kind)
        namespaced = rtype.namespaced if rtype else desired_crds.get((m.key.group, m.key.kind))
        if namespaced is None and "SkipDryRunOnMissingResource=true" in _marks([m]).get(m.key, hooks.PLAIN).options:
            placed.append(m)
        elif namespaced is None:
            api_version = m.body.get("apiVersion")
            msg = f"unknown kind {m.key.kind} in {api_version}: not served by the cluster and no CRD in desired state"
            failed.append(apply.ChangeSetEntry(m.key, apply.Action.FAILED, msg, m.origin))
        elif namespaced and not m.key.namespace:
            placed.append(m.with_namespace(default_namespace))
        elif not namespaced and m.key.namespace:
            placed.append(_cluster_scoped(m))
        else:
            placed.append(m)
    return placed, failed


def _cluster_scoped(m: resources.Manifest) -> resources.Manifest:
    """Drop a namespace given to a cluster-scoped object (the API server ignores it too)."""
    meta = {k: v for k, v in (m.body.get("metadata") or {}).items() if k != "namespace"}
    return dataclasses.replace(m, key=dataclasses.replace(m.key, namespace=""), body={**m.body, "metadata": meta})


def _check_unique(manifests: Sequence[resources.Manifest]) -> None:
    seen: dict[resources.ResourceKey, resources.Manifest] = {}
    for m in manifests:
        if m.key in seen:
            raise errors.ManifestError(
                m.source_file,
                m.doc_index,
                f"{m.key} is also defined in {seen[m.key].origin}: one object, one document",
                m.item,
            )
        seen[m.key] = m

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
Called by ``agent.runtime.runner``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import enum
import time
from collections.abc import Container, Mapping, Sequence
from concurrent import futures

from reconcilers import (
    apply,
    client,
    errors,
    health,
    hookrun,
    hooks,
    ignore,
    inventory,
    normalize,
    ordering,
    phases,
    prune,
    resources,
)
from reconcilers import cancel as cancel_


class ErrorKind(enum.Enum):
    """Why a reconcile did not run to its end: ``config`` and ``source`` errors write nothing; ``cluster`` errors
    (unreachable, refused credentials) may leave a partial sync; ``prune`` is a prune refused for safety (the
    apply went through); ``cancelled``: stopped before a write (Lease lost, cluster removed, shutdown), what was
    written stays and the inventory already names it; ``internal`` is a bug; ``waiting``: an app did not sync
    because an app it depends on is not Synced and Healthy yet (nothing written); ``apps``: a cluster's result
    when some of its apps failed (each app's own result says how; the others went on); ``hook``: a hook failed
    (SyncFail hooks ran); ``wave``: a wave did not become Healthy within ``sync.waveTimeout``."""

    CONFIG = "config"
    SOURCE = "source"
    CLUSTER = "cluster"
    PRUNE = "prune"
    CANCELLED = "cancelled"
    INTERNAL = "internal"
    WAITING = "waiting"
    APPS = "apps"
    HOOK = "hook"
    WAVE = "wave"


def failure(e: errors.GitOpsError, cluster: str) -> tuple[ErrorKind, str]:
    """The one mapping of an error that ends a sync (or an app's) to its :class:`ErrorKind` and status message:
    ``cancelled: <why>``, a config or source error as it is, a cluster error prefixed ``cluster <name>:``; any
    other :class:`errors.GitOpsError` is ``internal``. The caller masks secrets in the message."""
    if isinstance(e, errors.CancelledError):
        return ErrorKind.CANCELLED, f"cancelled: {e}"
    if isinstance(e, errors.ConfigError):
        return ErrorKind.CONFIG, str(e)
    if isinstance(e, errors.SourceError):
        return ErrorKind.SOURCE, str(e)
    if isinstance(e, errors.ClusterError):
        return ErrorKind.CLUSTER, f"cluster {cluster}: {e}"
    return ErrorKind.INTERNAL, f"internal error: {type(e).__name__}: {e}"


@dataclasses.dataclass(frozen=True)
class ReconcileOptions:
    """Options of one reconcile.

    ``apply`` (see :class:`apply.ApplyOptions`); ``prune`` (see :class:`prune.PruneOptions`); ``ignore``: the
    configured ignore rules (HPA targets are added); ``default_namespace`` for namespaced objects that name none;
    ``timeout`` (seconds) for waits such as CRDs becoming Established; ``instance`` names this agent in tracking
    labels; ``paths`` are the inventory keys of this sync (one inventory each: a ``paths`` entry or ``app:<name>``);
    ``inventory_namespace`` holds them; ``protected``: objects other apps on the cluster desire now: never pruned
    here, and dropped from this sync's inventories (they moved to another app); ``scan_orphans``: report orphans
    (off when the caller scans once for all its apps); ``rules``: health rules for wave gates and hooks;
    ``wave_timeout``: seconds a wave may take to become Healthy, and a hook to complete; ``hooks_on_noop``: run
    hooks on a sync that changes nothing too (default False).
    """

    apply: apply.ApplyOptions = dataclasses.field(default_factory=apply.ApplyOptions)
    prune: prune.PruneOptions = dataclasses.field(default_factory=prune.PruneOptions)
    ignore: tuple[ignore.IgnoreRule, ...] = ()
    default_namespace: str = "default"
    timeout: float = 300.0
    instance: str = "gitops-agent"
    paths: tuple[str, ...] = ()
    inventory_namespace: str = "gitops-agent"
    protected: Container[resources.ResourceKey] = frozenset()
    scan_orphans: bool = True
    rules: health.Rules = health.BUILT_IN
    wave_timeout: float = 300.0
    hooks_on_noop: bool = False


Healths = Mapping[resources.ResourceKey, health.HealthStatus]
"""Each object's health when a sync waited for it (in the result's body, ``health`` names the field)."""


@dataclasses.dataclass(frozen=True)
class ReconcileResult:
    """The outcome of one reconcile of one cluster.

    ``entries`` has one :class:`apply.ChangeSetEntry` per desired object (and per pruned one); ``error`` and
    ``error_kind`` say why the reconcile stopped early or refused to prune (None when it ran to its end);
    ``started`` is UTC, ``duration`` in seconds. ``desired`` and ``inventory`` are what self-heal needs: the
    objects as applied and their inventory entries. ``health`` is set when the sync waited for health (the
    worst object's state when the wait ended, with ``health_message`` saying which object and why, and ``healths``
    each object's). ``app`` names
    the app of a one-app result; a cluster's result made of apps lists them in ``apps`` (its entries, desired and
    inventory are theirs together). ``known``: every object this sync had reason to know (desired, inventoried,
    pruned), for an orphan scan across apps. ``hooks``: the hook runs of this sync, in run order; ``plan``: the
    steps of the sync (phases, waves, hooks), for ``diff`` and ``sync --dry-run``. ``held``: why this app's
    changes were not applied (the write gate refused: suspended, manual sync); the app's sync then ran as a dry
    run, its entries saying what a sync would change.
    """

    cluster: str
    revision: resources.Revision | None
    entries: tuple[apply.ChangeSetEntry, ...]
    started: datetime.datetime
    duration: float
    dry_run: bool = False
    error: str | None = None
    error_kind: ErrorKind | None = None
    desired: Mapping[resources.ResourceKey, apply.Desired] = dataclasses.field(default_factory=dict, repr=False)
    inventory: Mapping[resources.ResourceKey, inventory.Entry] = dataclasses.field(default_factory=dict, repr=False)
    health: health.Health | None = None
    health_message: str = ""
    healths: Healths = dataclasses.field(default_factory=dict, repr=False)
    app: str = ""
    apps: tuple[ReconcileResult, ...] = dataclasses.field(default=(), repr=False)
    known: frozenset[resources.ResourceKey] = dataclasses.field(default=frozenset(), repr=False)
    hooks: tuple[hookrun.HookRun, ...] = ()
    plan: ordering.Plan | None = dataclasses.field(default=None, repr=False)
    held: str = ""

    def again(self, **changes: object) -> ReconcileResult:
        """A copy with ``changes`` (field name -> new value), as ``dataclasses.replace`` makes it but without
        running ``__init__`` again (a frozen dataclass's sets each of its fields through ``object.__setattr__``;
        a no-op resync copies one result per app). Raises TypeError for a name that is not a field."""
        if not changes.keys() <= _RESULT_FIELDS:  # no set made on the way (this is per app and sync)
            unknown = changes.keys() - _RESULT_FIELDS
            raise TypeError(f"ReconcileResult has no field {', '.join(sorted(unknown))}")
        new = object.__new__(ReconcileResult)
        state = new.__dict__
        state.update(self.__dict__)
        if "entries" in changes and changes["entries"] is not self.entries:
            state.pop("_counted", None)  # counted again for the new entries (kept for the same ones)
        state.update(changes)
        return new

    @property
    def counts(self) -> dict[str, int]:
        """Objects per action (see :func:`apply.counts`); a new dict each time."""
        return dict(self._counts)

    @property
    def _counts(self) -> dict[str, int]:
        # Counted once: the status API reads the counts of every cluster on every poll (10,000 entries each).
        # Kept by hand, not with functools.cached_property: on Python 3.11 that takes one lock shared by every
        # instance, and the workers of all clusters would queue on it.
        found: dict[str, int] | None = self.__dict__.get("_counted")
        if found is None:
            found = apply.counts(self.entries)
            object.__setattr__(self, "_counted", found)
        return found

    @property
    def failed(self) -> list[apply.ChangeSetEntry]:
        """Entries that failed."""
        return [e for e in self.entries if e.action is apply.Action.FAILED]

    @property
    def requires_pruning(self) -> int:
        """Objects removed from git that are still live and ours because prune is off (``requires-pruning``)."""
        return self._counts["requires-pruning"]

    @property
    def ok(self) -> bool:
        """True when the reconcile ran to its end and no object failed or was skipped."""
        c = self._counts
        return self.error is None and c["failed"] == 0 and c["skipped"] == 0


_RESULT_FIELDS = frozenset(f.name for f in dataclasses.fields(ReconcileResult))


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

    def result(error: str | None = None, kind: ErrorKind | None = None) -> ReconcileResult:
        return ReconcileResult(
            cluster, revision, tuple(entries), started, time.monotonic() - t0, dry_run, error, kind, desired, records,
            known=frozenset(known | set(desired)), hooks=tuple(runs), plan=plan,
        )  # fmt: skip

    try:
        token.check()
        placed, unplaceable = _place(kube, manifests, options.default_namespace)
        marks = _marks(placed)
        _check_unique(placed)
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
        pruning = _prune_plan(previous, by_path, options) if options.prune.enabled else None
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
        if stopped is not None and stopped.kind != "apply":
            error, kind = stopped.message, ErrorKind(stopped.kind)
        gone: set[resources.ResourceKey] = set()
        if pruning is not None and stopped is None and not any(e.action in _STOPS for e in entries):
            error, gone = _prune(kube, pruning, tracking, options, entries, token)
            kind = ErrorKind.PRUNE if error else None
        elif pruning is None and stopped is None:  # prune off: what left git is named, never deleted
            left, gone = prune.unpruned(kube, prune.left_git(previous, by_path, options.protected), tracking, token)
            entries.extend(left)
        if not dry_run:
            moved = {k for inv in previous.values() for k in inv.entries if k in options.protected}
            for p in options.paths:
                store.merge(p, put=intent.closing(p, records), add=by_path[p], drop=gone | moved, cancel=token)
        if options.scan_orphans and live is not None and not any(e.action in _STOPS for e in entries):
            entries.extend(
                prune.orphans(kube, live, known | set(desired), tracking, options.prune, dry_run=dry_run, cancel=token)
            )
    except errors.CancelledError as e:
        return result(f"cancelled: {e}", ErrorKind.CANCELLED)
    except errors.ClusterError as e:
        return result(f"cluster {cluster}: {e}", ErrorKind.CLUSTER)
    return result(error, kind)


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

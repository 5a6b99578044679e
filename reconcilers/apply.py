"""Validate and apply one stage with server-side apply; every object gets a :class:`ChangeSetEntry`.

For each object, first the cheap check (:func:`reconcilers.diff.quick_in_sync`, from the live cache and the
inventory, no request): a match is ``unchanged``. Every other object is sent as a server-side dry run (and read
live when the dry run shows it exists), in parallel. If the API server rejects any object, nothing of the stage
is written: the rejected objects are ``failed`` with the server's message and the others ``skipped``. Otherwise
the objects whose dry-run result differs from live (:func:`reconcilers.diff.would_change`) are applied in kind
order, in parallel within a kind; unchanged objects cost no write. Before the stage's first write, the caller's
:data:`Intent` is told what the dry runs of its creates foretell. Called by :mod:`reconcilers.engine`.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from typing import Any

from reconcilers import cancel as cancel_
from reconcilers import client, diff, errors, fanout, hooks, ignore, inventory, ordering, resources


class Action(enum.Enum):
    """What a sync did to one object."""

    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"
    PRUNED = "pruned"
    REQUIRES_PRUNING = "requires-pruning"
    """Left git while prune is off (``sync.prune: false``): still live and ours, so the app is OutOfSync, as Argo
    CD's "requires pruning" (sync-options.md: "The app will be out of sync if Argo CD expects a resource to be
    pruned")."""
    RECREATED = "recreated"
    """Deleted and created again: git changed fields the API server refuses to change in place (``field is
    immutable``: a Deployment's ``spec.selector``, a Job's ``spec.template``), and the object opted in (Argo CD's
    ``Replace=true`` or ``Force=true`` sync option, ``gitops-agent.io/sync-options: Recreate=true``, or the app's
    ``sync.recreate``, Flux's ``force``)."""
    KEPT = "kept"
    ORPHANED = "orphaned"
    FAILED = "failed"
    SKIPPED = "skipped"


_ACTIONS = tuple(a.value for a in Action)  # iterating an Enum class builds a list each time


@dataclasses.dataclass(frozen=True, slots=True)
class ChangeSetEntry:
    """The result for one object: its key, the action, a message (the API server's own words for failures)
    and where it came from (``file#doc``); ``generation``: the ``metadata.generation`` the write returned (None
    when nothing was written or the object has none), so that health read from a cache is not taken from a copy
    older than the write."""

    key: resources.ResourceKey
    action: Action
    message: str = ""
    origin: str = ""
    diff: diff.ObjectDiff | None = None
    generation: int | None = None


@dataclasses.dataclass(frozen=True)
class ApplyOptions:
    """How to apply.

    - ``field_manager``: the SSA field manager (default ``gitops-agent``);
    - ``force``: take fields over from other managers on conflict (default True, as GitOps requires);
    - ``dry_run``: validate and compute actions, write nothing (default False);
    - ``concurrency``: requests in flight at once for one cluster (default 8);
    - ``recreate``: delete and create again every object whose change the API server refuses as immutable (the
      app's ``sync.recreate``, Flux's ``force``; default False: only objects that opt in by annotation);
    - ``recreate_timeout``: seconds a recreate waits for the deleted object to be gone (default 300).
    """

    field_manager: str = "gitops-agent"
    force: bool = True
    dry_run: bool = False
    concurrency: int = 8
    recreate: bool = False
    recreate_timeout: float = 300.0


VALIDATE_ATTEMPTS = 3
"""Dry runs per object when its live version keeps moving under it (see ``_validate``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Desired:
    """One desired object as the engine applies it: the manifest as git has it (placed in its namespace, shared
    by every cluster), the hash of the body to apply, its ignored pointers and the ``tracking`` whose marks the
    applied body carries. :attr:`body` builds that body when it is needed, so a cluster's desired state costs no
    copy of each object (self-heal keeps it for the agent's lifetime)."""

    manifest: resources.Manifest
    hash: str
    pointers: tuple[tuple[str, ...], ...] = ()
    tracking: inventory.Tracking | None = None

    @property
    def body(self) -> resources.Body:
        """The body to apply: the manifest with the tracking marks (:meth:`inventory.Tracking.mark_body`)."""
        return self.tracking.mark_body(self.manifest) if self.tracking else self.manifest.body


@dataclasses.dataclass(frozen=True)
class StageResult:
    """Entries in stage order, and the inventory entry of every object now known to match git."""

    entries: list[ChangeSetEntry]
    records: dict[resources.ResourceKey, inventory.Entry]


@dataclasses.dataclass(frozen=True, slots=True)
class _Validated:
    """What the dry run decided for one object, without the live and merged bodies (a stage of 10,000 objects
    must not hold 20,000 full objects): the action, the body to apply, the inventory entry when unchanged (or,
    ``predicted``, the one the dry run of a create foretells, with the owned fields it was hashed from: a part of
    the merged body, kept until the write), the diff when shown, or the API server's error."""

    desired: Desired
    action: Action
    body: resources.Body | None = None
    record: inventory.Entry | None = None
    diff: diff.ObjectDiff | None = None
    error: str | None = None
    predicted: inventory.Entry | None = None
    owned: list[tuple[Any, Any]] | None = None
    """The fields the dry run of a create says it will own (:func:`reconcilers.diff.owned_fields`): a write that
    owns the same keeps ``predicted`` instead of hashing them again."""
    note: str = ""
    uid: str | None = None
    immutable: bool = False
    """Refused only for immutable fields (and not opted in to a recreate): that object fails, its stage goes on."""


Intent = Callable[[Mapping[resources.ResourceKey, inventory.Entry]], None]
"""Called once per stage that writes, after its dry runs passed and before its first write, with the inventory
entries the dry runs of its creates foretell (``{key: Entry}``). The engine records its intent there: every
object it is about to create is in the inventory before it exists."""


def apply_stage(
    kube: client.KubeClient,
    stage: Sequence[Desired],
    name: str,
    options: ApplyOptions,
    pool: futures.Executor,
    live: client.LiveView | None = None,
    known: Mapping[resources.ResourceKey, inventory.Entry] | None = None,
    cancel: cancel_.Token | None = None,
    intent: Intent | None = None,
) -> StageResult:
    """Bring the objects of stage ``name`` in line with git; ``known`` are the inventory entries; ``intent``
    (:data:`Intent`) is called before the stage's first write, and what it raises is raised with nothing of the stage
    written.

    Raises :class:`errors.ClusterUnreachableError` when the cluster stops answering, :class:`errors.CancelledError`
    when ``cancel`` is (checked before each dry run and each write; the caller's pool, shut down with wait as the
    engine's or the cluster sync's is, lets the writes already sent return, and its other tasks check the token
    before sending);
    objects already written stay written (the next sync converges).
    """
    known = known or {}
    token = cancel or cancel_.never()
    fm = options.field_manager
    records: dict[resources.ResourceKey, inventory.Entry] = {}
    todo: list[Desired] = []
    for d in stage:
        key = d.manifest.key
        if live is not None and diff.quick_in_sync(live.get(key), known.get(key), d.hash, fm, d.pointers):
            records[key] = known[key]
        else:
            todo.append(d)
    checked = fanout.map_ordered(pool, lambda d: _validate(kube, d, options, token), todo, options.concurrency)
    validated = {v.desired.manifest.key: v for v in checked}
    rejected = [v for v in validated.values() if v.error is not None and not v.immutable]
    if rejected:
        why = f"not applied: {len(rejected)} object(s) of stage '{name}' were rejected by the API server"
        return StageResult(
            [
                _entry(d, Action.FAILED, v.error)
                if (v := validated.get(d.manifest.key)) and v.error
                else _entry(d, Action.SKIPPED, why)
                for d in stage
            ],
            {},
        )
    results = {key: v.action for key, v in validated.items()}
    messages: dict[resources.ResourceKey, str] = {k: v.error for k, v in validated.items() if v.error is not None}
    records.update({key: v.record for key, v in validated.items() if v.record is not None})
    generations: dict[resources.ResourceKey, int] = {}
    if options.dry_run:
        messages = {key: v.error or v.note or "dry run" for key, v in validated.items()}
    else:
        if intent is not None and any(a not in (Action.UNCHANGED, Action.FAILED) for a in results.values()):
            intent({key: v.predicted for key, v in validated.items() if v.predicted is not None})
        writes = [v.desired for v in validated.values() if v.action not in (Action.UNCHANGED, Action.FAILED)]
        for group in ordering.by_rank(writes):
            written = fanout.map_ordered(
                pool, lambda d: _write(kube, validated[d.manifest.key], options, token), group, options.concurrency
            )
            for d, (record, err, generation) in zip(group, written, strict=True):
                if record is None:
                    results[d.manifest.key], messages[d.manifest.key] = Action.FAILED, err
                else:
                    records[d.manifest.key] = record
                    if validated[d.manifest.key].note:
                        messages[d.manifest.key] = validated[d.manifest.key].note
                    if generation is not None:
                        generations[d.manifest.key] = generation
    return StageResult(
        [
            _entry(
                d,
                results.get(d.manifest.key, Action.UNCHANGED),
                messages.get(d.manifest.key, ""),
                v.diff if (v := validated.get(d.manifest.key)) else None,
                generations.get(d.manifest.key),
            )
            for d in stage
        ],
        records,
    )


def label(key: resources.ResourceKey) -> str:
    """``group/kind/namespace/name`` (``core`` for the core group, ``_`` for no namespace), for diff headers."""
    return f"{key.group or 'core'}/{key.kind}/{key.namespace or '_'}/{key.name}"


def _entry(
    d: Desired,
    action: Action,
    message: str | None,
    change: diff.ObjectDiff | None = None,
    generation: int | None = None,
) -> ChangeSetEntry:
    return ChangeSetEntry(d.manifest.key, action, message or "", d.manifest.origin, change, generation)


def _record(d: Desired, obj: resources.Body | None, field_manager: str) -> inventory.Entry:
    return inventory.Entry(d.manifest.key, d.hash, diff.owned_hash(obj, field_manager, d.pointers))


def _validate(kube: client.KubeClient, d: Desired, options: ApplyOptions, token: cancel_.Token) -> _Validated:
    """Dry-run ``d`` against the live object it is compared with, and decide its action.

    Without ignored fields the dry run goes first: a dry-run create persists nothing and carries no
    ``resourceVersion``, so an object that does not exist yet (every object of a first sync) costs no GET. With
    ignored fields live is read first, as their live values are sent back. The dry-run result is only comparable
    with ``live`` when the server merged into that same version: when a controller wrote the object in between
    (``resourceVersion`` moved), live is read again and the dry run repeated, up to :data:`VALIDATE_ATTEMPTS`
    times, so another writer's change is never taken for drift. The diff is kept for drifted objects (and, in a
    dry run, for objects that would be created).
    """
    fm = options.field_manager
    key = d.manifest.key
    body = d.body
    merged: resources.Body | None = None
    token.check()
    try:
        if d.pointers:
            live = kube.get(key)
        else:
            merged = kube.apply(body, field_manager=fm, force=options.force, dry_run=True)
            live = kube.get(key) if diff.resource_version(merged) else None
        for attempt in range(VALIDATE_ATTEMPTS):
            if merged is None:
                body = ignore.for_apply(d.body, live, d.pointers, fm)
                merged = kube.apply(body, field_manager=fm, force=options.force, dry_run=True)
            if live is None or diff.resource_version(merged) == diff.resource_version(live):
                break
            if attempt + 1 < VALIDATE_ATTEMPTS:
                live, merged = kube.get(key), None
    except errors.ApiError as e:
        if e.immutable:
            return _immutable(kube, d, options, e)
        return _Validated(d, Action.FAILED, error=e.message or str(e))
    assert merged is not None
    if live is None:
        action = Action.CREATED
    else:
        action = Action.CONFIGURED if diff.would_change(live, merged, fm) else Action.UNCHANGED
    if action is Action.UNCHANGED:
        return _Validated(d, action, record=_record(d, live, fm))
    shown = action is Action.CONFIGURED or options.dry_run
    # A dry-run create foretells the fields the create will own (managedFields come from the same admission):
    # only creates, so an entry stored before its write can never vouch for an old live version.
    predicted, owned = None, None
    if action is Action.CREATED:
        owned = diff.owned_fields(merged, fm)
        predicted = _record(d, merged, fm)
    change = diff.object_diff(live, merged, label(key), d.manifest.sensitive) if shown else None
    note = diff.taken_over(live, merged, fm) if action is Action.CONFIGURED else ""
    return _Validated(d, action, body, diff=change, predicted=predicted, owned=owned, note=note)


def _write(
    kube: client.KubeClient, v: _Validated, options: ApplyOptions, token: cancel_.Token
) -> tuple[inventory.Entry | None, str, int | None]:
    """Apply one object; returns (its new inventory entry, "", the ``metadata.generation`` the write made) or
    (None, the API server's message, None). Raises Cancelled (before sending) when the sync is cancelled."""
    assert v.body is not None
    token.check()
    try:
        if v.action is Action.RECREATED:
            gone = _delete_and_wait(kube, v, options, token)
            if gone:
                return None, gone, None
        applied = kube.apply(v.body, field_manager=options.field_manager, force=options.force, dry_run=False)
    except errors.ApiError as e:
        return None, e.message or str(e), None
    generation = (applied.get("metadata") or {}).get("generation")
    generation = generation if isinstance(generation, int) else None
    if v.predicted is not None and diff.owned_fields(applied, options.field_manager) == v.owned:
        return v.predicted, "", generation  # owns what the dry run foretold: the same hash, not computed again
    return _record(v.desired, applied, options.field_manager), "", generation


RECREATE_OPTIONS = frozenset({"Replace=true", "Force=true", "Recreate=true"})
"""Sync options (either annotation, :data:`reconcilers.hooks.SYNC_OPTIONS` or Argo CD's) that let an object be
deleted and created again when a change of it is refused as immutable. Argo CD's ``Replace=true`` alone replaces
(``kubectl replace``), which the API server refuses for immutable fields too (Argo CD issue #14910); ``Force=true``
deletes and recreates: either is read as consent here."""


def _immutable(kube: client.KubeClient, d: Desired, options: ApplyOptions, e: errors.ApiError) -> _Validated:
    """The verdict on an object whose dry run the API server refused as immutable (``e.fields``): recreated when
    it opted in (or the app recreates), else failed with the fields and how to opt in."""
    fields = ", ".join(e.fields)
    opted = options.recreate or bool(hooks.marks(d.manifest.body).options & RECREATE_OPTIONS)
    if not opted:
        how = (
            "to delete and re-create it, annotate it argocd.argoproj.io/sync-options: Force=true,Replace=true (or "
            "gitops-agent.io/sync-options: Recreate=true), or set the app's sync.recreate: true"
        )
        why = f"immutable field(s) {fields} changed: {e.message}; {how}"
        return _Validated(d, Action.FAILED, error=why, immutable=True)
    live = kube.get(d.manifest.key)
    uid = ((live or {}).get("metadata") or {}).get("uid")
    return _Validated(d, Action.RECREATED, d.body, note=f"recreate (immutable: {fields})", uid=uid)


def _delete_and_wait(kube: client.KubeClient, v: _Validated, options: ApplyOptions, token: cancel_.Token) -> str:
    """Delete ``v``'s object (foreground: its dependents first; only the very object the dry run saw, by uid) and
    wait until it is gone, up to ``options.recreate_timeout`` seconds. Returns "" when gone, else why not."""
    key = v.desired.manifest.key
    kube.delete(key, uid=v.uid, propagation="Foreground")
    deadline = time.monotonic() + options.recreate_timeout
    while time.monotonic() < deadline:
        if kube.get(key) is None:
            return ""
        if token.wait(0.25):
            token.check()
    return f"deleted to be re-created (immutable fields) but still there after {options.recreate_timeout:g} s"


def apply_one(kube: client.KubeClient, d: Desired, options: ApplyOptions) -> inventory.Entry:
    """Re-apply one object now (self-heal): read live, keep ignored fields, apply. Returns its new inventory
    entry. Raises :class:`errors.ApiError` when the API server refuses it."""
    live = kube.get(d.manifest.key) if d.pointers else None
    body = ignore.for_apply(d.body, live, d.pointers, options.field_manager)
    applied = kube.apply(body, field_manager=options.field_manager, force=options.force, dry_run=False)
    return _record(d, applied, options.field_manager)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One object compared with git by a dry run: ``action`` (``unchanged``: in line; ``configured``: drifted,
    ``diff`` saying where; ``created``: missing live; ``failed``: the API server refused the dry run, ``error`` its
    words) and, when unchanged, ``record``: its inventory entry from the live object (its owned fields now)."""

    action: Action
    diff: diff.ObjectDiff | None = None
    record: inventory.Entry | None = None
    error: str | None = None


def compare_one(kube: client.KubeClient, d: Desired, options: ApplyOptions) -> Comparison:
    """Compare one object with git now, writing nothing: the dry-run server-side apply a sync would start with
    (see ``_validate``: live read again while a controller moves it). Raises
    :class:`errors.ClusterUnreachableError` when the cluster does not answer."""
    v = _validate(kube, d, dataclasses.replace(options, dry_run=True), cancel_.never())
    return Comparison(v.action, v.diff, v.record, v.error)


def counts(entries: Sequence[ChangeSetEntry]) -> dict[str, int]:
    """Entries per action, every action present: ``{"created": 2, "configured": 0, ...}``."""
    out = dict.fromkeys(_ACTIONS, 0)
    for e in entries:
        out[e.action._value_] += 1  # the member's own attribute: ``.value`` is a descriptor call per entry
    return out

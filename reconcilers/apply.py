"""Validate and apply one stage with server-side apply; every object gets a :class:`ChangeSetEntry`.

A stage is first sent as a server-side dry run, object by object, in parallel. If the API server rejects any
object, nothing of the stage is written: the rejected objects are ``failed`` with the server's message and the
others ``skipped``. Otherwise the objects whose dry-run result differs from live (see :mod:`reconcilers.diff`)
are applied in kind order, in parallel within a kind; unchanged objects cost no write.
Called by :mod:`reconcilers.engine`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Sequence
from concurrent import futures

from reconcilers import client, diff, errors, ordering, resources


class Action(enum.Enum):
    """What a sync did to one object."""

    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclasses.dataclass(frozen=True)
class ChangeSetEntry:
    """The result for one object: its key, the action, a message (the API server's own words for failures)
    and where it came from (``file#doc``)."""

    key: resources.ResourceKey
    action: Action
    message: str = ""
    origin: str = ""


@dataclasses.dataclass(frozen=True)
class ApplyOptions:
    """How to apply.

    - ``field_manager``: the SSA field manager (default ``gitops-agent``);
    - ``force``: take fields over from other managers on conflict (default True, as GitOps requires);
    - ``dry_run``: validate and compute actions, write nothing (default False);
    - ``concurrency``: requests in flight at once for one cluster (default 8).
    """

    field_manager: str = "gitops-agent"
    force: bool = True
    dry_run: bool = False
    concurrency: int = 8


VALIDATE_ATTEMPTS = 3
"""Dry runs per object when its live version keeps moving under it (see ``_validate``)."""

LiveLookup = Callable[[resources.ResourceKey], "resources.Body | None"]


@dataclasses.dataclass(frozen=True)
class _Validated:
    manifest: resources.Manifest
    live: resources.Body | None
    merged: resources.Body | None
    error: str | None


def apply_stage(
    kube: client.KubeClient,
    stage: ordering.Stage,
    options: ApplyOptions,
    pool: futures.ThreadPoolExecutor,
    live: LiveLookup | None = None,
) -> list[ChangeSetEntry]:
    """Dry-run, then apply ``stage``; returns one entry per manifest, in stage order.

    ``live`` reads the live object (default: ``kube.get``). Raises :class:`errors.ClusterUnreachableError` when the
    cluster stops answering; objects already written stay written (the next sync converges).
    """
    lookup = live or kube.get
    validated = list(pool.map(lambda m: _validate(kube, m, options, lookup), stage.manifests))
    rejected = [v for v in validated if v.error is not None]
    if rejected:
        why = f"not applied: {len(rejected)} object(s) of stage '{stage.name}' were rejected by the API server"
        return [
            ChangeSetEntry(v.manifest.key, Action.FAILED, v.error, v.manifest.origin)
            if v.error is not None
            else ChangeSetEntry(v.manifest.key, Action.SKIPPED, why, v.manifest.origin)
            for v in validated
        ]
    results = {
        v.manifest.key: (_plan(v, options.field_manager), "dry run" if options.dry_run else "") for v in validated
    }
    if options.dry_run:
        return [ChangeSetEntry(m.key, *results[m.key], origin=m.origin) for m in stage.manifests]
    for group in stage.by_rank():
        todo = [m for m in group if results[m.key][0] is not Action.UNCHANGED]
        for m, err in zip(todo, pool.map(lambda m: _write(kube, m, options), todo), strict=True):
            if err is not None:
                results[m.key] = (Action.FAILED, err)
    return [ChangeSetEntry(m.key, *results[m.key], origin=m.origin) for m in stage.manifests]


def _validate(
    kube: client.KubeClient, manifest: resources.Manifest, options: ApplyOptions, lookup: LiveLookup
) -> _Validated:
    """Dry-run ``manifest`` against the live object it was compared with.

    The dry-run result is only comparable with ``live`` when the server merged into that same version: when a
    controller wrote the object in between (``resourceVersion`` moved), live is read again and the dry run
    repeated, up to :data:`VALIDATE_ATTEMPTS` times, so another writer's change is never taken for drift.
    """
    try:
        live = lookup(manifest.key)
        for _ in range(VALIDATE_ATTEMPTS):
            merged = kube.apply(manifest.body, field_manager=options.field_manager, force=options.force, dry_run=True)
            if live is None or diff.resource_version(merged) == diff.resource_version(live):
                break
            live = kube.get(manifest.key)
    except errors.ApiError as e:
        return _Validated(manifest, None, None, e.message or str(e))
    return _Validated(manifest, live, merged, None)


def _plan(v: _Validated, field_manager: str) -> Action:
    assert v.merged is not None
    if v.live is None:
        return Action.CREATED
    return Action.CONFIGURED if diff.would_change(v.live, v.merged, field_manager) else Action.UNCHANGED


def _write(kube: client.KubeClient, manifest: resources.Manifest, options: ApplyOptions) -> str | None:
    """Apply one object; returns the API server's message on failure, None on success."""
    try:
        kube.apply(manifest.body, field_manager=options.field_manager, force=options.force, dry_run=False)
    except errors.ApiError as e:
        return e.message or str(e)
    return None


def counts(entries: Sequence[ChangeSetEntry]) -> dict[str, int]:
    """Entries per action, every action present: ``{"created": 2, "configured": 0, ...}``."""
    out = {a.value: 0 for a in Action}
    for e in entries:
        out[e.action.value] += 1
    return out

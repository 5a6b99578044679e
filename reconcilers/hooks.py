"""Sync phases, waves, hooks and sync options, read from an object's annotations.

Three vocabularies mean the same things, read in this order (the first that marks an object wins):

- this agent's ``gitops-agent.io/phase`` (``PreSync``, ``Sync``, ``PostSync``, ``SyncFail``, ``PreDelete``,
  ``PostDelete``; any phase but ``Sync`` makes the object a hook), ``gitops-agent.io/wave``,
  ``gitops-agent.io/hook-delete-policy`` and ``gitops-agent.io/sync-options``;
- Argo CD's ``argocd.argoproj.io/hook`` (the same phases, ``Sync`` included: a Sync hook is run, not synced;
  ``Skip``: never applied), ``argocd.argoproj.io/sync-wave``, ``argocd.argoproj.io/hook-delete-policy`` and
  ``argocd.argoproj.io/sync-options`` (Argo CD docs "Sync Phases and Waves", "Resource Hooks", "Sync Options");
- Helm's ``helm.sh/hook``, mapped as Argo CD maps it (Argo CD docs "Helm", hooks): ``pre-install``/
  ``pre-upgrade`` -> PreSync, ``post-install``/``post-upgrade`` -> PostSync, ``pre-delete`` -> PreDelete,
  ``post-delete`` -> PostDelete, ``crd-install`` -> PreSync; ``pre-rollback``/``post-rollback`` and the ``test``
  hooks never run; ``helm.sh/hook-weight`` is the wave and ``helm.sh/hook-delete-policy``'s ``hook-succeeded``,
  ``hook-failed`` and ``before-hook-creation`` are the delete policies.

A hook may list several phases (``PreSync,PostSync``: it runs in both). Its delete policies default to
``BeforeHookCreation``, as in Argo CD and Helm. An unknown phase, a wave that is not an integer or an unknown
delete policy raises :class:`ValueError` with a message that names the annotation; the loader adds file and
document. Used by ``agent.sources.manifests`` (checks), :mod:`reconcilers.ordering` (the plan) and
:mod:`reconcilers.hookrun` (runs).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from reconcilers import resources


class Phase(enum.Enum):
    """The sync phases in the order one sync runs them (PreDelete and PostDelete only when an app is removed)."""

    PRE_SYNC = "PreSync"
    SYNC = "Sync"
    POST_SYNC = "PostSync"
    SYNC_FAIL = "SyncFail"
    PRE_DELETE = "PreDelete"
    POST_DELETE = "PostDelete"


class DeletePolicy(enum.Enum):
    """When a hook's object is deleted: after it succeeded, after it failed, or before the next run is created."""

    HOOK_SUCCEEDED = "HookSucceeded"
    HOOK_FAILED = "HookFailed"
    BEFORE_HOOK_CREATION = "BeforeHookCreation"


OWN, ARGO, HELM = "gitops-agent.io", "argocd.argoproj.io", "helm.sh"
PHASE = f"{OWN}/phase"
WAVE = f"{OWN}/wave"
DELETE_POLICY = f"{OWN}/hook-delete-policy"
SYNC_OPTIONS = f"{OWN}/sync-options"
ARGO_HOOK = f"{ARGO}/hook"
ARGO_WAVE = f"{ARGO}/sync-wave"
ARGO_DELETE_POLICY = f"{ARGO}/hook-delete-policy"
ARGO_SYNC_OPTIONS = f"{ARGO}/sync-options"
HELM_HOOK = f"{HELM}/hook"
HELM_WEIGHT = f"{HELM}/hook-weight"
HELM_DELETE_POLICY = f"{HELM}/hook-delete-policy"
HELM_RESOURCE_POLICY = f"{HELM}/resource-policy"

_HELM_PHASES: dict[str, Phase | None] = {
    "pre-install": Phase.PRE_SYNC,
    "pre-upgrade": Phase.PRE_SYNC,
    "crd-install": Phase.PRE_SYNC,
    "post-install": Phase.POST_SYNC,
    "post-upgrade": Phase.POST_SYNC,
    "pre-delete": Phase.PRE_DELETE,
    "post-delete": Phase.POST_DELETE,
    "pre-rollback": None,
    "post-rollback": None,
    "test": None,
    "test-success": None,
    "test-failure": None,
}
_HELM_POLICIES = {
    "hook-succeeded": DeletePolicy.HOOK_SUCCEEDED,
    "hook-failed": DeletePolicy.HOOK_FAILED,
    "before-hook-creation": DeletePolicy.BEFORE_HOOK_CREATION,
}
_PHASES = {p.value: p for p in Phase}
_POLICIES = {p.value: p for p in DeletePolicy}
SYNC_OPTION_NAMES = frozenset({"Prune=false", "Delete=false", "SkipDryRunOnMissingResource=true"})
"""The sync options this agent reads (others, such as Argo CD's ``Replace=true``, are accepted and ignored)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Marks:
    """Where one object goes in a sync: its ``phases`` (empty: never applied, as Argo CD's ``Skip`` or a Helm
    rollback/test hook), its ``wave`` (default 0), whether it is a ``hook`` (run, not synced), its delete
    ``policies`` (hooks only) and its sync ``options`` (``Prune=false``, ``Delete=false``,
    ``SkipDryRunOnMissingResource=true``)."""

    phases: tuple[Phase, ...] = (Phase.SYNC,)
    wave: int = 0
    hook: bool = False
    policies: frozenset[DeletePolicy] = frozenset()
    options: frozenset[str] = frozenset()

    @property
    def skipped(self) -> bool:
        """True when the object is never applied."""
        return not self.phases


PLAIN = Marks()
"""The marks of an object without any: synced in the Sync phase, wave 0."""


def _annotations(body: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = body.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    return annotations if isinstance(annotations, dict) else {}


def _split(value: Any) -> list[str]:
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _wave(annotations: Mapping[str, Any], names: tuple[str, ...]) -> int:
    for name in names:
        value = annotations.get(name)
        if value is None:
            continue
        try:
            return int(str(value).strip())
        except ValueError:
            raise ValueError(f"{name}: {value!r} is not an integer wave") from None
    return 0


def _phases(annotations: Mapping[str, Any]) -> tuple[tuple[Phase, ...], bool, str] | None:
    """(phases, is a hook, the annotation read) from the first vocabulary present, or None."""
    for name in (PHASE, ARGO_HOOK):
        if (value := annotations.get(name)) is None:
            continue
        if name == ARGO_HOOK and str(value).strip() == "Skip":
            return (), True, name
        phases = []
        for part in _split(value):
            if part not in _PHASES:
                raise ValueError(f"{name}: unknown phase {part!r} (one of {', '.join(_PHASES)})")
            phases.append(_PHASES[part])
        if not phases:
            raise ValueError(f"{name} is empty")
        hook = name == ARGO_HOOK or phases != [Phase.SYNC]
        return tuple(dict.fromkeys(phases)), hook, name
    if (value := annotations.get(HELM_HOOK)) is not None:
        helm = []
        for part in _split(value):
            if part not in _HELM_PHASES:
                raise ValueError(f"{HELM_HOOK}: unknown Helm hook {part!r} (one of {', '.join(_HELM_PHASES)})")
            helm.append(_HELM_PHASES[part])
        return tuple(dict.fromkeys(p for p in helm if p is not None)), True, HELM_HOOK
    return None


def _policies(annotations: Mapping[str, Any], source: str) -> frozenset[DeletePolicy]:
    if source == HELM_HOOK:
        value, table, name = annotations.get(HELM_DELETE_POLICY), _HELM_POLICIES, HELM_DELETE_POLICY
    else:
        name = DELETE_POLICY if DELETE_POLICY in annotations else ARGO_DELETE_POLICY
        value, table = annotations.get(name), _POLICIES
    if value is None:
        return frozenset({DeletePolicy.BEFORE_HOOK_CREATION})
    out = set()
    for part in _split(value):
        if part not in table:
            raise ValueError(f"{name}: unknown delete policy {part!r} (one of {', '.join(table)})")
        out.add(table[part])
    return frozenset(out) or frozenset({DeletePolicy.BEFORE_HOOK_CREATION})


def marks(body: Mapping[str, Any]) -> Marks:
    """The :class:`Marks` of ``body`` from its annotations (see the module doc). Raises ValueError naming the
    annotation for an unknown phase, Helm hook or delete policy, or a wave that is not an integer."""
    annotations = _annotations(body)
    if not annotations:
        return PLAIN
    options = frozenset(o for name in (SYNC_OPTIONS, ARGO_SYNC_OPTIONS) for o in _split(annotations.get(name, "")) if o)
    found = _phases(annotations)
    if found is None:
        wave = _wave(annotations, (WAVE, ARGO_WAVE))
        return PLAIN if not wave and not options else Marks(wave=wave, options=options)
    phases, hook, source = found
    names = (HELM_WEIGHT,) if source == HELM_HOOK else (WAVE, ARGO_WAVE)
    wave = _wave(annotations, names)
    return Marks(phases, wave, hook, _policies(annotations, source) if hook else frozenset(), options)


def keep_on_prune(live: resources.Body | None) -> str | None:
    """Why the live object ``live`` must never be pruned (its annotation, quoted), or None: ``Prune=false`` or
    ``Delete=false`` in either sync-options annotation, or ``helm.sh/resource-policy: keep``. Read from the live
    object, as Argo CD reads it, so a repository that drops an object with ``Prune=false`` keeps it."""
    annotations = _annotations(live or {})
    for name in (SYNC_OPTIONS, ARGO_SYNC_OPTIONS):
        for option in _split(annotations.get(name, "")):
            if option in ("Prune=false", "Delete=false"):
                return f"{name}: {option}"
    if str(annotations.get(HELM_RESOURCE_POLICY, "")).strip() == "keep":
        return f"{HELM_RESOURCE_POLICY}: keep"
    return None

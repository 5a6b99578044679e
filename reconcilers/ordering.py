"""The one place that says in which order objects are applied, hooks run and objects pruned.

A sync runs :class:`Step` by step (:func:`plan`): phases first (PreSync, Sync, PostSync; SyncFail only when the
sync failed), then waves inside a phase (an integer, default 0, negatives allowed; see :mod:`reconcilers.hooks` for
the annotations), in ascending order. In a step, the synced objects go first, then the hooks of that step. The
objects of one wave are split into two stages, each validated by a server-side dry run before any of it is written:

1. ``prerequisites``: CustomResourceDefinitions, Namespaces, cluster-wide RBAC, PriorityClasses and
   StorageClasses. The engine waits for every CRD to be ``Established`` before the next stage.
2. ``resources``: everything else, in :data:`KIND_ORDER` (ServiceAccount, Secret, ConfigMap, RBAC, Service,
   workloads; custom resources after the built-in kinds; HorizontalPodAutoscaler and PodDisruptionBudget last).

Prune runs after PostSync, in reverse: highest wave first, and within a wave the apply order reversed
(:func:`prune_order`), Argo CD's documented order ("Sync Phases and Waves"). The order follows what
``kubectl apply`` users and Helm's install order taught the field: a kind is applied
after the kinds it references. Within one kind, objects are ordered by key so every run is reproducible.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol, TypeVar

from reconcilers import hooks, resources


class _Manifested(Protocol):
    @property
    def manifest(self) -> resources.Manifest: ...


_HasManifest = TypeVar("_HasManifest", bound=_Manifested)

PREREQUISITE_KINDS = frozenset(
    {
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
        ("", "Namespace"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("scheduling.k8s.io", "PriorityClass"),
        ("storage.k8s.io", "StorageClass"),
    }
)

KIND_ORDER: tuple[str, ...] = (
    "CustomResourceDefinition",
    "Namespace",
    "PriorityClass",
    "StorageClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "ResourceQuota",
    "LimitRange",
    "NetworkPolicy",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Role",
    "RoleBinding",
    "Service",
    "Endpoints",
    "EndpointSlice",
    "DaemonSet",
    "Pod",
    "ReplicaSet",
    "Deployment",
    "StatefulSet",
    "Job",
    "CronJob",
    "Ingress",
    "IngressClass",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
)
_CUSTOM_RANK = len(KIND_ORDER)
_LAST = {"HorizontalPodAutoscaler": _CUSTOM_RANK + 1, "PodDisruptionBudget": _CUSTOM_RANK + 2}
_RANK = {kind: i for i, kind in enumerate(KIND_ORDER)}


def kind_rank(kind: str) -> int:
    """The apply rank of a kind: lower goes first. Unknown kinds (custom resources) come after the built-in
    kinds and before HorizontalPodAutoscaler and PodDisruptionBudget."""
    return _RANK.get(kind, _LAST.get(kind, _CUSTOM_RANK))


@dataclasses.dataclass(frozen=True)
class Stage:
    """A set of objects validated together and applied in ``manifests`` order (sorted by rank, then key)."""

    name: str
    manifests: tuple[resources.Manifest, ...]

    def by_rank(self) -> Iterator[list[resources.Manifest]]:
        """The manifests grouped by kind rank, in apply order; objects of one group may be applied in parallel."""
        for _, group in itertools.groupby(self.manifests, key=lambda m: kind_rank(m.key.kind)):
            yield list(group)


def by_rank(items: Iterable[_HasManifest]) -> list[list[_HasManifest]]:
    """``items`` (anything with a ``manifest``) grouped by kind rank in apply order."""
    ordered = sorted(items, key=lambda d: sort_key(d.manifest))
    return [list(g) for _, g in itertools.groupby(ordered, key=lambda d: kind_rank(d.manifest.key.kind))]


def sort_key(manifest: resources.Manifest) -> tuple[int, resources.ResourceKey]:
    """The apply order of one object."""
    return kind_rank(manifest.key.kind), manifest.key


def stages(manifests: Iterable[resources.Manifest]) -> list[Stage]:
    """Split and order ``manifests`` into the prerequisites and resources stages (empty stages left out)."""
    first: list[resources.Manifest] = []
    rest: list[resources.Manifest] = []
    for m in manifests:
        (first if (m.key.group, m.key.kind) in PREREQUISITE_KINDS else rest).append(m)
    out = [
        Stage("prerequisites", tuple(sorted(first, key=sort_key))),
        Stage("resources", tuple(sorted(rest, key=sort_key))),
    ]
    return [s for s in out if s.manifests]


def prune_order(
    keys: Iterable[resources.ResourceKey], waves: Mapping[resources.ResourceKey, int] | None = None
) -> list[resources.ResourceKey]:
    """The delete order: highest wave first (``waves``, read from the live objects; 0 when absent), then the apply
    order reversed (HPAs first, Namespaces and CRDs last)."""
    w = waves or {}
    return sorted(keys, key=lambda k: (w.get(k, 0), kind_rank(k.kind), k), reverse=True)


@dataclasses.dataclass(frozen=True)
class Step:
    """One wave of one phase: ``synced`` objects (Sync phase only) and ``hooks`` to run after them."""

    phase: hooks.Phase
    wave: int
    synced: tuple[resources.Manifest, ...] = ()
    hooks: tuple[resources.Manifest, ...] = ()

    @property
    def label(self) -> str:
        """``PreSync wave 0``: how messages and the plan name a step."""
        return f"{self.phase.value} wave {self.wave}"


@dataclasses.dataclass(frozen=True)
class Plan:
    """A sync's steps in run order (PreSync, Sync, PostSync; waves ascending), the SyncFail steps run when it fails,
    and the objects never applied (``skipped``: Argo CD's ``Skip``, Helm rollback hooks)."""

    steps: tuple[Step, ...]
    on_fail: tuple[Step, ...] = ()
    skipped: tuple[resources.Manifest, ...] = ()

    @property
    def synced(self) -> list[resources.Manifest]:
        """Every object synced as desired state (in the inventory, diffed, self-healed)."""
        return [m for s in self.steps for m in s.synced]

    @property
    def hooks(self) -> list[resources.Manifest]:
        """Every hook of the steps (SyncFail hooks left out)."""
        return [m for s in self.steps for m in s.hooks]


_RUN_ORDER = (hooks.Phase.PRE_SYNC, hooks.Phase.SYNC, hooks.Phase.POST_SYNC)


def plan(manifests: Iterable[resources.Manifest], marks: Mapping[resources.ResourceKey, hooks.Marks]) -> Plan:
    """The steps of a sync of ``manifests``, whose :class:`hooks.Marks` are ``marks`` (by key; absent: plain).
    A hook listing several phases is in each of their steps. PreDelete and PostDelete hooks have no step here
    (they belong to an app's removal)."""
    cells: dict[tuple[hooks.Phase, int], tuple[list[resources.Manifest], list[resources.Manifest]]] = {}
    skipped: list[resources.Manifest] = []
    for m in manifests:
        mark = marks.get(m.key, hooks.PLAIN)
        if mark.skipped:
            skipped.append(m)
            continue
        for phase in mark.phases:
            synced, run = cells.setdefault((phase, mark.wave), ([], []))
            (run if mark.hook else synced).append(m)
    steps = {
        key: Step(key[0], key[1], tuple(sorted(synced, key=sort_key)), tuple(sorted(run, key=sort_key)))
        for key, (synced, run) in cells.items()
    }
    ordered = sorted(steps, key=lambda k: (_phase_rank(k[0]), k[1]))
    return Plan(
        tuple(steps[k] for k in ordered if k[0] in _RUN_ORDER),
        tuple(steps[k] for k in ordered if k[0] is hooks.Phase.SYNC_FAIL),
        tuple(skipped),
    )


def _phase_rank(phase: hooks.Phase) -> int:
    return list(hooks.Phase).index(phase)

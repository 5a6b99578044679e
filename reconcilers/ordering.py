"""The one place that says in which order objects are applied (and, reversed, pruned).

Objects are split into two stages, each validated by a server-side dry run before any of it is written:

1. ``prerequisites``: CustomResourceDefinitions, Namespaces, cluster-wide RBAC, PriorityClasses and
   StorageClasses. The engine waits for every CRD to be ``Established`` before the next stage.
2. ``resources``: everything else, in :data:`KIND_ORDER` (ServiceAccount, Secret, ConfigMap, RBAC, Service,
   workloads; custom resources after the built-in kinds; HorizontalPodAutoscaler and PodDisruptionBudget last).

The order follows what ``kubectl apply`` users and Helm's install order taught the field: a kind is applied
after the kinds it references. Within one kind, objects are ordered by key so every run is reproducible.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Iterator
from typing import Protocol, TypeVar

from reconcilers import resources


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


def prune_order(keys: Iterable[resources.ResourceKey]) -> list[resources.ResourceKey]:
    """The delete order: the apply order reversed (HPAs first, Namespaces and CRDs last)."""
    return sorted(keys, key=lambda k: (kind_rank(k.kind), k), reverse=True)

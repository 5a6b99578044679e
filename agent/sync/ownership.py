"""Which app owns each object of a cluster: the first unit (in unit order) that renders it.

An object a later unit also renders refuses that later unit (naming both apps and documents); the first keeps it.
A unit whose objects leave its ``namespaces`` allow-list is refused too, before any write. Keys are taken as the
engine will place them (a namespaced object without a namespace in the unit's namespace). Used by
:mod:`agent.sync.appsync`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

from agent import apps, config_apps
from agent.clusters import connection
from agent.sync import keys
from reconcilers import resources

Claims = dict[resources.ResourceKey, tuple[str, resources.Manifest]]
"""Object -> (the app that owns it, its document)."""


def claim(
    kube: connection.KubeCluster, units: Sequence[apps.Unit], loaded: Mapping[str, list[resources.Manifest]]
) -> tuple[Claims, dict[str, str]]:
    """The claims of the loaded units, and why each refused unit is refused (app -> message; it claims nothing)."""
    claims: Claims = {}
    refused: dict[str, str] = {}
    for u in units:
        manifests = loaded.get(u.name)
        if manifests is None:
            continue
        keys = [placed_key(kube, m, u.namespace) for m in manifests]
        problem = outside(u, manifests, keys) or next(
            (
                f"{k} ({m.origin}) is also rendered by app {claims[k][0]} ({claims[k][1].origin}): "
                f"one object, one app; {claims[k][0]} keeps it"
                for k, m in zip(keys, manifests, strict=True)
                if k in claims and claims[k][0] != u.name
            ),
            None,
        )
        if problem:
            refused[u.name] = problem
            continue
        claims.update((k, (u.name, m)) for k, m in zip(keys, manifests, strict=True))
    return claims, refused


class Memo:
    """:func:`claim`, remembered for the next sync of the cluster: the same units, the same manifests (by their
    digests, :func:`agent.sync.keys.manifests_digest`) and the same discovery generation give the same claims (a
    resync of 10,000 objects places every key again otherwise). Used from the cluster's sync thread only."""

    def __init__(self) -> None:
        self._inputs: tuple[tuple[apps.Unit, ...], int, tuple[tuple[str, str], ...]] | None = None
        self._found: tuple[Claims, dict[str, str]] = ({}, {})

    def claim(
        self,
        kube: connection.KubeCluster,
        units: Sequence[apps.Unit],
        loaded: Mapping[str, list[resources.Manifest]],
        digest: Callable[[str], str],
    ) -> tuple[Claims, dict[str, str]]:
        """:func:`claim`'s answer (the same objects as last time when nothing changed: do not change them);
        ``digest(app)``: the digest of the manifests ``loaded`` holds for that app."""
        inputs = (tuple(units), kube.discovery_generation, tuple((n, digest(n)) for n in loaded))
        if self._inputs is None or not keys.same(self._inputs, inputs):
            self._found = claim(kube, units, loaded)
            self._inputs = inputs
        return self._found


def placed_key(kube: connection.KubeCluster, m: resources.Manifest, namespace: str) -> resources.ResourceKey:
    """``m``'s key as the engine will place it: a namespaced object without a namespace gets ``namespace``, a
    cluster-scoped one none (kinds the cluster does not serve yet are taken as written)."""
    rtype = kube.resource_type(m.key.group, m.key.kind)
    if rtype is None:
        return m.key
    k = m.key
    if rtype.namespaced and not k.namespace:
        return resources.ResourceKey(k.group, k.kind, namespace, k.name)
    if not rtype.namespaced and k.namespace:
        return resources.ResourceKey(k.group, k.kind, "", k.name)
    return k


def outside(u: apps.Unit, manifests: Sequence[resources.Manifest], keys: Sequence[resources.ResourceKey]) -> str:
    """Why ``u``'s objects break its ``namespaces`` allow-list ("" when they do not): the first object outside."""
    if not u.namespaces:
        return ""
    rule = f"namespaces {list(u.namespaces)}"
    for k, m in zip(keys, manifests, strict=True):
        if k.kind == "Namespace" and not k.group:
            if not config_apps.allowed(u.namespaces, k.name):
                return f"{k} ({m.origin}) is outside the app's {rule}: refused, nothing written"
        elif not k.namespace:
            return (
                f"{k} ({m.origin}) is cluster-scoped and the app may only write in its {rule}: refused, nothing written"
            )
        elif not config_apps.allowed(u.namespaces, k.namespace):
            return f"{k} ({m.origin}) is in namespace {k.namespace}, outside the app's {rule}: refused, nothing written"
    return ""


@dataclasses.dataclass(frozen=True)
class OthersObjects:
    """The objects other units claim (``key in others``), looked up in the claims: no set built per unit."""

    claims: Mapping[resources.ResourceKey, tuple[str, resources.Manifest]]
    unit: str

    def __contains__(self, key: object) -> bool:
        found = self.claims.get(key) if isinstance(key, resources.ResourceKey) else None
        return found is not None and found[0] != self.unit

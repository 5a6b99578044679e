"""Identity and carriers of desired state: ``ResourceKey``, ``Manifest`` and ``Revision``.

``ResourceKey(group, kind, namespace, name)`` has no version: every map between desired and live state uses it,
so ``apps/v1`` and a future ``apps/v2`` of the same object pair up. Owned here; used by every other module.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from typing import Any

Body = dict[str, Any]
"""A Kubernetes object as plain JSON-compatible data (the shape the API server reads and returns)."""


@dataclasses.dataclass(frozen=True, order=True, slots=True)
class ResourceKey:
    """The identity of one object: API group ("" for the core group), kind, namespace ("" when
    cluster-scoped or not yet known) and name.

    Its strings are interned: the desired state, the live cache and the inventory of every cluster name the same
    objects, and share one copy of each name instead of one per holder.
    """

    group: str
    kind: str
    namespace: str
    name: str
    _hash: int = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for field in ("group", "kind", "namespace", "name"):
            value = getattr(self, field)
            if type(value) is str:
                object.__setattr__(self, field, sys.intern(value))
        object.__setattr__(self, "_hash", hash((self.group, self.kind, self.namespace, self.name)))

    def __hash__(self) -> int:
        # Computed once: keys are hashed in every map of a sync (desired, live, inventory, results), and the
        # generated __hash__ builds and hashes a tuple each time.
        return self._hash

    def __reduce__(self) -> tuple[type[ResourceKey], tuple[str, str, str, str]]:
        # Rebuilt from its fields, so a copy made in another process (string hashes differ) hashes anew.
        return (ResourceKey, (self.group, self.kind, self.namespace, self.name))

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> ResourceKey:
        """The key of an object body. Missing fields become "" (validation reports them, not this); a hook that
        has only a ``generateName`` is keyed by it (a real name never ends with ``-``, so the two never meet)."""
        meta = body.get("metadata") or {}
        return cls(
            group=group_of(str(body.get("apiVersion", ""))),
            kind=str(body.get("kind", "")),
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or meta.get("generateName") or ""),
        )

    def __str__(self) -> str:
        kind = f"{self.kind}.{self.group}" if self.group else self.kind
        return f"{kind} {self.namespace}/{self.name}" if self.namespace else f"{kind} {self.name}"


def group_of(api_version: str) -> str:
    """The API group of an ``apiVersion``: ``"apps/v1"`` -> ``"apps"``, ``"v1"`` -> ``""`` (core)."""
    return api_version.rpartition("/")[0]


@dataclasses.dataclass(frozen=True, slots=True)
class Manifest:
    """One desired object and where it came from.

    ``source_file`` is relative to the repository root (a kustomization directory for rendered objects) and
    ``doc_index`` is the 0-based index of the YAML document in that file (the index in the rendered stream for
    kustomize output), so every error can point at the exact document. ``source_path`` is the cluster's
    ``paths`` entry that loaded it (its inventory is kept per path). ``item`` is where in its document an object
    of a list (``kind: List``, ``ConfigMapList``) stands: ``items[3]``, nested ``items[0].items[2]``; empty for a
    document that is one object. ``sensitive``: the paths (keys and list indices) of string values of ``body``
    that hold a secret value substituted into it: every diff shows them masked on both sides, so neither the value
    nor the one it replaces is shown (:func:`reconcilers.diff.object_diff`).
    """

    key: ResourceKey
    body: Body
    source_file: str
    doc_index: int
    source_path: str = ""
    item: str = ""
    sensitive: tuple[tuple[str | int, ...], ...] = ()

    @property
    def origin(self) -> str:
        """``file#index`` (``file#index.items[i]`` for a list's item), the form every message uses to name a
        document."""
        item = f".{self.item}" if self.item else ""
        return sys.intern(f"{self.source_file}#{self.doc_index}{item}")  # every cluster's results share one copy

    def with_namespace(self, namespace: str) -> Manifest:
        """A copy placed in ``namespace`` (for namespaced objects that did not name one)."""
        meta = dict(self.body.get("metadata") or {})
        meta["namespace"] = namespace
        body = {**self.body, "metadata": meta}
        return dataclasses.replace(self, key=dataclasses.replace(self.key, namespace=namespace), body=body)


@dataclasses.dataclass(frozen=True)
class Revision:
    """A resolved revision of the desired-state source: the commit ``sha`` and the ``ref`` it came from."""

    sha: str
    ref: str

    @property
    def short(self) -> str:
        """The first 12 hex digits of the SHA, for humans."""
        return self.sha[:12]

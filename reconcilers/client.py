"""The ``KubeClient`` protocol: everything ``reconcilers`` needs from a cluster, and nothing more.

Implemented over the official ``kubernetes`` client by ``agent.clusters.KubeCluster``; unit tests of pure functions
may use an in-memory fake. Every method may raise :class:`reconcilers.errors.ClusterUnreachableError`; methods that
talk to the API server raise :class:`reconcilers.errors.ApiError` for error statuses.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from reconcilers import resources


@dataclasses.dataclass(frozen=True)
class ResourceType:
    """One served kind: ``plural`` is the REST resource name, ``versions`` the served versions, preferred first."""

    group: str
    kind: str
    plural: str
    namespaced: bool
    versions: tuple[str, ...]


class KubeClient(Protocol):
    """The cluster seam of the reconcile engine."""

    def resource_type(self, group: str, kind: str) -> ResourceType | None:
        """The served type of ``(group, kind)`` from the discovery cache, or None when the server does not
        serve it (as of the last discovery)."""
        ...

    def refresh_discovery(self) -> None:
        """Re-read the server's discovery documents (after CRDs were established)."""
        ...

    def get(self, key: resources.ResourceKey) -> resources.Body | None:
        """The live object, or None when it does not exist or its kind is not served."""
        ...

    def apply(self, body: resources.Body, *, field_manager: str, force: bool, dry_run: bool) -> resources.Body:
        """Server-side apply ``body`` (``application/apply-patch+yaml``) as ``field_manager``; with ``dry_run``
        the server validates, defaults and merges but persists nothing. Returns the resulting object."""
        ...

    def create(self, body: resources.Body, *, field_manager: str) -> resources.Body:
        """Create ``body`` (POST). Raises ApiError 409 (``AlreadyExists``) when it exists."""
        ...

    def replace(self, body: resources.Body, *, field_manager: str) -> resources.Body:
        """Replace the object with ``body`` (PUT), only if it is still at ``body``'s
        ``metadata.resourceVersion`` (optimistic concurrency, Kubernetes docs "API Concepts", resource versions).
        Raises ApiError 409 (``Conflict``) when another writer changed it since."""
        ...

    def delete(self, key: resources.ResourceKey, *, uid: str | None, propagation: str) -> None:
        """Delete the object, only if its ``uid`` is still ``uid`` (when given), with the propagation policy
        ``Background``, ``Foreground`` or ``Orphan``. A missing object is not an error."""
        ...

    def list_objects(
        self, group: str, kind: str, selector: str, *, metadata_only: bool = False, namespace: str = ""
    ) -> tuple[list[resources.Body], str]:
        """Every object of ``(group, kind)`` matching the label ``selector`` in ``namespace`` ("": all
        namespaces), and the list's resourceVersion. Raises ApiError 404 when the kind is not served."""
        ...


class LiveView(Protocol):
    """Live objects as last seen by a watch (``agent.clusters.cache.LiveCache``); may hold only their metadata."""

    def get(self, key: resources.ResourceKey) -> resources.Body | None:
        """The cached object, or None when the cache does not hold it (absent, or its kind not watched)."""
        ...

    def keys_held(self) -> list[resources.ResourceKey]:
        """Every object the cache holds: the objects carrying this agent instance's label, of the kinds it
        lists (those of the desired state)."""
        ...

"""One cluster's discovery: which kinds it serves, in which versions, and what a chart's ``.Capabilities`` sees.

:class:`Discovery` reads the aggregated discovery documents (``/api`` and ``/apis`` with the
``apidiscovery.k8s.io/v2`` ``APIGroupDiscoveryList`` media type, KEP-3352), or every group version's resource list
from an API server that does not serve them, caches the answer and refreshes it on demand (a CRD created by a sync
is served after its refresh). Thread-safe; no lock is held across the network. Owned by a
:class:`agent.clusters.connection.KubeCluster` (its impersonating copies share it): every request it sends is the
connection's own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from reconcilers import client

AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
"""The Accept header of the aggregated discovery documents, JSON as the fallback."""

Request = Callable[..., Any]
"""``request(method, path, accept=...)``: the connection's request, the decoded JSON answer. Raises ClusterError."""


class Discovery:
    """The discovery cache of one cluster, sent through ``request``."""

    def __init__(self, request: Request) -> None:
        self._request = request
        self._types: dict[tuple[str, str], client.ResourceType] | None = None
        self._facts: tuple[str, tuple[str, ...]] | None = None
        self._lock = threading.Lock()
        self._refreshes = 0  # refreshes started
        self._refreshed = 0  # the newest of them whose answer is in _types

    def resource_type(self, group: str, kind: str) -> client.ResourceType | None:
        """See :meth:`reconcilers.client.KubeClient.resource_type`."""
        return self.served().get((group, kind))

    def served(self) -> dict[tuple[str, str], client.ResourceType]:
        """The discovery cache, discovered on first use. Read without the lock (every request and every object of
        every app asks, from many threads; the map is replaced whole, never changed in place), and discovered
        outside it (no lock is held across the network): threads that meet an empty cache at once may each
        discover, and the first answer stored is kept."""
        types = self._types
        if types is None:
            found = self._discover()
            with self._lock:
                if self._types is None:
                    self._types = found
                types = self._types
        return types

    @property
    def generation(self) -> int:
        """Counts the discovery refreshes that took effect: what the cluster serves (and a chart's
        ``.Capabilities``) may have changed when it moves."""
        return self._refreshed  # one int, read whole (every unit of every sync asks)

    def refresh(self) -> None:
        """See :meth:`reconcilers.client.KubeClient.refresh_discovery`."""
        with self._lock:
            self._refreshes += 1
            mine = self._refreshes
        types = self._discover()
        with self._lock:
            # Refreshes may overlap (apps of one cluster sync side by side): the one started last knows most (a
            # CRD established after an earlier one began); an earlier one that ends later is dropped.
            if mine > self._refreshed:
                self._types, self._refreshed = types, mine
                self._facts = None

    def facts(self) -> tuple[str, tuple[str, ...]]:
        """What a chart's ``.Capabilities`` should see of this cluster: its version (``GET /version``,
        ``gitVersion``) and every served ``group/version`` and ``group/version/Kind`` (as ``helm template
        --api-versions`` takes them), from discovery. Raises like the connection's requests."""
        if self._facts is not None:
            return self._facts
        version = str(self._request("GET", "/version").get("gitVersion", ""))
        types = list(self.served().values())
        served = set()
        for t in types:
            for v in t.versions:
                gv = f"{t.group}/{v}" if t.group else v
                served |= {gv, f"{gv}/{t.kind}"}
        self._facts = version, tuple(sorted(served))  # until discovery is refreshed
        return self._facts

    def _discover(self) -> dict[tuple[str, str], client.ResourceType]:
        types: dict[tuple[str, str], client.ResourceType] = {}
        for path in ("/api", "/apis"):
            doc = self._request("GET", path, accept=AGGREGATED)
            if doc.get("kind") == "APIGroupDiscoveryList":
                for group in doc.get("items") or []:
                    _add_aggregated(types, group)
            else:
                self._discover_legacy(types, path, doc)
        return types

    def _discover_legacy(self, types: dict[tuple[str, str], client.ResourceType], path: str, doc: Any) -> None:
        if path == "/api":
            groups = [("", [str(v) for v in doc.get("versions") or []])]
        else:
            groups = [(g["name"], [v["version"] for v in g.get("versions") or []]) for g in doc.get("groups") or []]
        for name, versions in groups:
            for version in versions:
                url = f"/api/{version}" if not name else f"/apis/{name}/{version}"
                for r in self._request("GET", url).get("resources") or []:
                    if "/" in r["name"]:
                        continue
                    key = (name, r["kind"])
                    old = types.get(key)
                    served = (old.versions if old else ()) + (version,)
                    types[key] = client.ResourceType(name, r["kind"], r["name"], bool(r["namespaced"]), served)


def _add_aggregated(types: dict[tuple[str, str], client.ResourceType], group: dict[str, Any]) -> None:
    name = (group.get("metadata") or {}).get("name", "")
    for version in group.get("versions") or []:
        for r in version.get("resources") or []:
            kind = (r.get("responseKind") or {}).get("kind")
            if not kind:
                continue
            old = types.get((name, kind))
            served = (old.versions if old else ()) + (version["version"],)
            types[(name, kind)] = client.ResourceType(name, kind, r["resource"], r.get("scope") == "Namespaced", served)

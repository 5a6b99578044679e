"""The inventory ConfigMaps of one cluster, kept by a watch, so a no-op resync of many apps reads them from memory
instead of LISTing them all (100 apps: 100 ConfigMaps, 130 KB to serve and decode per cluster per resync).

:class:`InventoryWatch` lists and watches (:class:`agent.clusters.listwatch.ListWatch`) the ConfigMaps labelled
``gitops-agent.io/instance-inventory=<instance>`` in the inventory namespace (a namespaced LIST and WATCH: a Role
there is enough), whole (each a few KB: its payload is gzipped). :meth:`InventoryWatch.snapshot` hands them out only
while the watch is current: listed, and no error since (after an error it lists again). Like the live cache it may
be a moment behind a write, so it is only ever used to prove an app unchanged (:mod:`agent.sync.noop`); a sync
that writes or prunes reads the inventories afresh. Used by :mod:`agent.sync.cluster` and
:mod:`agent.sync.appsync`.
"""

from __future__ import annotations

import logging
import threading

from agent.clusters import connection, listwatch
from reconcilers import engine, errors, resources

log = logging.getLogger(__name__)


class InventoryWatch(listwatch.ListWatch):
    """The inventories of ``instance`` in ``namespace`` of the cluster behind ``kube`` (a daemon thread
    ``inventories-<cluster>``; :meth:`start` it, :meth:`stop` it)."""

    RELIST_AFTER_ERROR = True  # after an error the held ConfigMaps may be stale: no snapshot until a new LIST

    def __init__(self, kube: connection.KubeCluster, instance: str, namespace: str) -> None:
        selector = engine.Tracking(instance, "").inventory_selector
        super().__init__(
            kube, "", "ConfigMap", selector, watch=True, metadata_only=False, stop=threading.Event(),
            name=f"inventories-{kube.name}", namespace=namespace,
        )  # fmt: skip
        self._bodies: dict[str, resources.Body] = {}  # ConfigMap name -> the ConfigMap (this thread writes)
        self._current = False
        self._held: tuple[resources.Body, ...] | None = None  # _bodies' values, until they change
        self._lock = threading.Lock()  # _bodies, _current and _held

    def snapshot(self) -> tuple[resources.Body, ...] | None:
        """The inventory ConfigMaps as the watch last saw them (do not change the bodies), or None while the
        watch is not current (never listed yet, or an error since the last LIST). The same tuple object for as
        long as no ConfigMap changed, so a caller may keep what it worked out from it."""
        with self._lock:
            if not self._current:
                return None
            if self._held is None:
                self._held = tuple(self._bodies.values())
            return self._held

    def stop(self) -> None:
        """End the watch (its thread ends at once; see :meth:`listwatch.ListWatch.close`)."""
        self.stop_event.set()
        self.lost()
        self.close()

    def relist(self) -> str:
        fresh: dict[str, resources.Body] = {}
        rv = ""
        for items, page_rv in self.kube.list_pages("", "ConfigMap", self.selector, namespace=self.namespace):
            rv = page_rv
            for o in items:
                fresh[listwatch.meta(o, "name")] = o
        with self._lock:
            self._bodies, self._current, self._held = fresh, not self.stop_event.is_set(), None
        return rv

    def event(self, kind: str, key: resources.ResourceKey, obj: resources.Body) -> None:
        with self._lock:
            if kind == "DELETED":
                self._bodies.pop(key.name, None)
            else:
                self._bodies[key.name] = obj
            self._held = None

    def lost(self) -> None:
        with self._lock:
            self._current = False

    def gives_up(self, error: errors.ClusterError) -> bool:
        """An identity that may not list ConfigMaps in the inventory namespace (403), or a server without them
        (404), never will: syncs read each app's inventory themselves (no warning every 30 s)."""
        if isinstance(error, errors.ApiError) and error.status in (403, 404):
            log.info("cluster %s: inventories not watched: %s", self.kube.name, error)
            return True
        return False

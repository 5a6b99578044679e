"""LIST then WATCH of one kind of a cluster, by label selector, in a daemon thread: the loop both the live cache
(:mod:`agent.clusters.cache`) and the inventory watch (:mod:`agent.clusters.inventories`) run.

LIST (the subclass's :meth:`ListWatch.relist`) -> WATCH from the list's resourceVersion with bookmarks; a closed
watch resumes from the last resourceVersion seen; ``410 Gone`` (the version fell out of the server's watch
window) lists again (Kubernetes docs, "API Concepts", efficient detection of changes). Other errors back off from
0.5 s to 30 s. :meth:`ListWatch.close` ends an open watch at once, from any thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from agent import threads
from agent.clusters import connection
from reconcilers import errors, resources

log = logging.getLogger(__name__)

WATCH_TIMEOUT = 300
"""Seconds one watch request stays open before it is renewed."""


class ListWatch(threading.Thread):
    """One (group, kind) matching ``selector`` in ``namespace`` ("" for all), listed, then watched when ``watch``
    (else the thread ends after the first LIST). ``stop`` ends the loop (with :meth:`close` for a watch open at
    that moment). Subclasses implement :meth:`relist` and :meth:`event`, and may implement :meth:`lost`."""

    RELIST_AFTER_ERROR = False
    """True: after any error list again, rather than resume watching from the last resourceVersion seen."""

    def __init__(
        self,
        kube: connection.KubeCluster,
        group: str,
        kind: str,
        selector: str,
        *,
        watch: bool,
        metadata_only: bool,
        stop: threading.Event,
        name: str,
        namespace: str = "",
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.kube, self.group, self.kind, self.selector = kube, group, kind, selector
        self.namespace = namespace
        """The namespace watched ("": all namespaces)."""
        self.watch_enabled, self.metadata_only, self.stop_event = watch, metadata_only, stop
        self.listed = threading.Event()
        """Set after the first LIST, or after it failed (readers then fall back to requests of their own)."""
        self._closer: Callable[[], None] | None = None  # ends the open watch (set by the watch, used by close)
        self._closer_lock = threading.Lock()

    def start(self) -> None:
        """Start the thread, registered as owned by ``cluster/<name>/sync`` (:mod:`agent.threads`)."""
        threads.register(self, f"cluster/{self.kube.name}/sync")
        super().start()

    def relist(self) -> str:
        """List every object (paged, :meth:`connection.KubeCluster.list_pages`), take them as the whole truth, and
        return the list's resourceVersion. Raises ClusterError."""
        raise NotImplementedError

    def event(self, kind: str, key: resources.ResourceKey, obj: resources.Body) -> None:
        """One watch event: ``kind`` ADDED, MODIFIED or DELETED; ``obj`` labelled with its apiVersion and kind."""
        raise NotImplementedError

    def lost(self) -> None:
        """The watch broke (an error; it lists again or retries after a back-off): what was listed may be stale
        until the next :meth:`relist`."""

    def gives_up(self, error: errors.ClusterError) -> bool:
        """True to end the thread on ``error`` instead of retrying (default: always retry)."""
        return False

    def _opened(self, closer: Callable[[], None]) -> None:
        with self._closer_lock:
            self._closer = closer
        if self.stop_event.is_set():
            self.close()

    def close(self) -> None:
        """End the open watch, if any (from any thread)."""
        with self._closer_lock:
            closer, self._closer = self._closer, None
        if closer is not None:
            with contextlib.suppress(Exception):  # a response already closed or failing: it ends anyway
                closer()

    def run(self) -> None:
        rv: str | None = None
        backoff = 0.5
        while not self.stop_event.is_set():
            try:
                if rv is None:
                    rv = self.relist()
                    self.listed.set()
                    if not self.watch_enabled:
                        return
                rv = self._watch(rv)
                backoff = 0.5
            except errors.ClusterError as e:
                # A kind that cannot be listed (403, 404, unreachable) must not hold up reconciles: they fall back
                # to reading objects one by one, whose errors name what is wrong.
                self.lost()
                self.listed.set()
                if self.stop_event.is_set() or self.gives_up(e):
                    return
                if isinstance(e, errors.ApiError) and e.status == 410:
                    rv = None  # resourceVersion too old: list again
                    continue
                if self.RELIST_AFTER_ERROR:
                    rv = None
                log.warning("cluster %s: watch %s: %s (retrying in %.1fs)", self.kube.name, self.kind, e, backoff)
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _watch(self, rv: str) -> str:
        rtype = self.kube.resource_type(self.group, self.kind)
        version = rtype.versions[0] if rtype else ""
        api_version = f"{self.group}/{version}" if self.group else version
        events = self.kube.watch(
            self.group, self.kind, self.selector, rv, WATCH_TIMEOUT, metadata_only=self.metadata_only,
            on_open=self._opened, namespace=self.namespace,
        )  # fmt: skip
        for e in events:
            if self.stop_event.is_set():
                break
            kind, obj = e.get("type"), e.get("object") or {}
            if kind == "ERROR":
                raise errors.ApiError(
                    int(obj.get("code", 500)), str(obj.get("reason", "")), str(obj.get("message", ""))
                )
            rv = meta(obj, "resourceVersion") or rv
            if kind == "BOOKMARK":
                continue
            obj["apiVersion"], obj["kind"] = api_version, self.kind
            key = resources.ResourceKey(self.group, self.kind, meta(obj, "namespace"), meta(obj, "name"))
            self.event(str(kind), key, obj)
        return rv


def meta(obj: resources.Body, field: str) -> str:
    """``obj.metadata.<field>`` as a string ("" when missing)."""
    return str((obj.get("metadata") or {}).get(field) or "")

"""The live cache of one cluster: LIST + WATCH of just the kinds the agent manages, filtered by the agent's
instance label, so a reconcile reads live objects from memory (a no-op resync sends no per-object GET) and a
watch event reaches self-heal within milliseconds.

One reflector thread per (group, kind): LIST (paged) -> WATCH from the list's resourceVersion with bookmarks;
a closed watch resumes from the last resourceVersion seen; ``410 Gone`` (the version fell out of the server's
watch window) re-lists and reports every difference as an event, so no drift is missed (Kubernetes docs, "API
Concepts", efficient detection of changes). Errors back off from 0.5 s to 30 s. Entries keep only what drift
detection reads: metadata (name, namespace, uid, resourceVersion, generation, labels, annotations,
deletionTimestamp, and the managedFields of the agent's field manager; other managers' entries without their
fieldsV1), plus status and a few spec fields for kinds with a health rule (``reconcilers.health``). Kinds
without a health rule are listed and watched as metadata only (``PartialObjectMetadata``): the cache never
holds a live Secret's data, and a LIST page of ConfigMaps costs their metadata, not their contents. Used by
``agent.runner``; implements ``reconcilers.client.LiveView``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from agent import clusters
from reconcilers import errors, health, resources

log = logging.getLogger(__name__)

WATCH_TIMEOUT = 300
"""Seconds one watch request stays open before it is renewed."""
_KEPT_METADATA = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "labels",
    "annotations",
    "deletionTimestamp",
)

OnChange = Callable[[resources.ResourceKey, "resources.Body | None"], None]


_KEPT_SPEC = ("replicas", "paused", "suspend", "type")


def lean(obj: resources.Body, group: str, field_manager: str) -> resources.Body:
    """The part of a live object the cache keeps: its metadata with ``field_manager``'s managedFields entries
    whole and the other managers' without their fieldsV1 (self-heal names the last other writer), and for kinds
    with a health rule its status and the spec fields health reads."""
    meta = obj.get("metadata") or {}
    kept = {k: meta[k] for k in _KEPT_METADATA if k in meta}
    if "managedFields" in meta:
        kept["managedFields"] = [
            e if e.get("manager") == field_manager else {k: v for k, v in e.items() if k != "fieldsV1"}
            for e in meta["managedFields"] or []
        ]
    out: resources.Body = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": kept}
    if (group, obj.get("kind")) in health.HEALTH_KINDS:
        spec = obj.get("spec") or {}
        out["spec"] = {k: spec[k] for k in _KEPT_SPEC if k in spec}
        out["status"] = obj.get("status") or {}
    return out


class LiveCache:
    """Live objects of the managed kinds of one cluster, kept current by watches (threads)."""

    def __init__(
        self, kube: clusters.KubeCluster, selector: str, field_manager: str, on_change: OnChange | None = None
    ) -> None:
        self.kube = kube
        self.selector = selector
        self.field_manager = field_manager
        self.on_change = on_change
        self._objects: dict[resources.ResourceKey, resources.Body] = {}
        self._reflectors: dict[tuple[str, str], _Reflector] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def get(self, key: resources.ResourceKey) -> resources.Body | None:
        """See :meth:`reconcilers.client.LiveView.get`."""
        return self._objects.get(key)

    def __len__(self) -> int:
        return len(self._objects)

    def ensure(self, kinds: Iterable[tuple[str, str]], *, watch: bool, timeout: float = 30.0) -> None:
        """Make sure every served kind in ``kinds`` is listed (and watched when ``watch``); waits up to
        ``timeout`` seconds for their first LIST. Kinds the server does not serve are left out."""
        started = []
        with self._lock:
            for group, kind in kinds:
                if (group, kind) in self._reflectors or self.kube.resource_type(group, kind) is None:
                    continue
                r = _Reflector(self, group, kind, watch)
                self._reflectors[(group, kind)] = r
                started.append(r)
        for r in started:
            r.start()
        deadline = time.monotonic() + timeout
        for r in started:
            r.listed.wait(max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        """Stop every watch (threads end within one request's read timeout; they are daemons)."""
        self._stop.set()

    def _store(self, key: resources.ResourceKey, obj: resources.Body | None) -> None:
        if obj is None:
            existed = self._objects.pop(key, None) is not None
            if existed and self.on_change:
                self.on_change(key, None)
            return
        self._objects[key] = obj
        if self.on_change:
            self.on_change(key, obj)


class _Reflector(threading.Thread):
    def __init__(self, cache: LiveCache, group: str, kind: str, watch: bool) -> None:
        super().__init__(name=f"watch-{cache.kube.name}-{kind}", daemon=True)
        self.cache, self.group, self.kind, self.watch_enabled = cache, group, kind, watch
        self.metadata_only = (group, kind) not in health.HEALTH_KINDS
        self.listed = threading.Event()

    def run(self) -> None:
        rv: str | None = None
        backoff = 0.5
        while not self.cache._stop.is_set():
            try:
                if rv is None:
                    rv = self._relist()
                    self.listed.set()
                    if not self.watch_enabled:
                        return
                rv = self._watch(rv)
                backoff = 0.5
            except errors.ClusterError as e:
                # A kind that cannot be listed (403, 404, unreachable) must not hold up reconciles: they fall back
                # to reading objects one by one, whose errors name what is wrong.
                self.listed.set()
                if self.cache._stop.is_set():
                    return
                if isinstance(e, errors.ApiError) and e.status == 410:
                    rv = None  # resourceVersion too old: list again
                    continue
                log.warning("cluster %s: watch %s: %s (retrying in %.1fs)", self.cache.kube.name, self.kind, e, backoff)
                self.cache._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _relist(self) -> str:
        items, rv = self.cache.kube.list_objects(
            self.group, self.kind, self.cache.selector, metadata_only=self.metadata_only
        )
        fm = self.cache.field_manager
        fresh = {resources.ResourceKey.of(o): lean(o, self.group, fm) for o in items}
        mine = [k for k in list(self.cache._objects) if (k.group, k.kind) == (self.group, self.kind)]
        for key in mine:
            if key not in fresh:
                self.cache._store(key, None)
        for key, obj in fresh.items():
            old = self.cache._objects.get(key)
            if old is None or _rv(old) != _rv(obj):
                self.cache._store(key, obj)
        return rv

    def _watch(self, rv: str) -> str:
        rtype = self.cache.kube.resource_type(self.group, self.kind)
        version = rtype.versions[0] if rtype else ""
        api_version = f"{self.group}/{version}" if self.group else version
        events = self.cache.kube.watch(
            self.group, self.kind, self.cache.selector, rv, WATCH_TIMEOUT, metadata_only=self.metadata_only
        )
        for event in events:
            if self.cache._stop.is_set():
                break
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                raise errors.ApiError(
                    int(obj.get("code", 500)), str(obj.get("reason", "")), str(obj.get("message", ""))
                )
            rv = _rv(obj) or rv
            if kind == "BOOKMARK":
                continue
            obj["apiVersion"], obj["kind"] = api_version, self.kind
            key = resources.ResourceKey(self.group, self.kind, _meta(obj, "namespace"), _meta(obj, "name"))
            self.cache._store(key, None if kind == "DELETED" else lean(obj, self.group, self.cache.field_manager))
        return rv


def _meta(obj: resources.Body, field: str) -> str:
    return str((obj.get("metadata") or {}).get(field) or "")


def _rv(obj: Any) -> str:
    return _meta(obj, "resourceVersion")

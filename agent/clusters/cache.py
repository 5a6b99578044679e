"""The live cache of one cluster: LIST + WATCH of just the kinds the agent manages, filtered by the agent's
instance label, so a reconcile reads live objects from memory (a no-op resync sends no per-object GET) and a
watch event reaches self-heal within milliseconds.

One reflector thread per (group, kind) (:class:`agent.clusters.listwatch.ListWatch`): LIST (paged) -> WATCH
from the list's resourceVersion with bookmarks; a closed watch resumes from the last resourceVersion seen; ``410
Gone`` (the version fell out of the server's watch window) re-lists and reports every difference as an event, so
no drift is missed (Kubernetes docs, "API Concepts", efficient detection of changes). Errors back off from 0.5 s
to 30 s. Entries keep only what drift detection and self-heal read, and the object's health verdict
(:class:`Entry`: a few hundred bytes, however large the object). Kinds without a health rule are listed and
watched as metadata only (``PartialObjectMetadata``): the cache never holds a live Secret's data, and a LIST page
of ConfigMaps costs their metadata, not their contents.
Used by ``agent.sync.cluster``; implements ``reconcilers.client.LiveView``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from agent.clusters import connection, listwatch
from reconcilers import health, resources
from reconcilers import health as health_

log = logging.getLogger(__name__)

LIST_PAGE_SIZE = 500
"""Objects per LIST page. Each page is reduced to its entries before the next is asked for, so a (re)list holds
one page of full objects per kind at a time, not the whole kind."""
OnChange = Callable[[resources.ResourceKey, "resources.Body | None"], None]

SHARED_HEALTHS = 4096
"""Distinct health verdicts (status and message) shared by every entry that has them; past this many, a new one
is kept by its entry alone (messages that name an object would otherwise grow the table without bound)."""
_healths: dict[health.HealthStatus, health.HealthStatus] = {}


def _shared(verdict: health.HealthStatus) -> health.HealthStatus:
    """The one shared copy of ``verdict`` (thread-safe: a lost race only keeps a second equal copy)."""
    found = _healths.get(verdict)
    if found is not None:
        return found
    if len(_healths) < SHARED_HEALTHS:
        _healths.setdefault(verdict, verdict)
    return verdict


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One cached object in compact form (a few hundred bytes, where the same data as nested dicts takes about
    three times that): what drift detection, health and self-heal read, and nothing else.

    - ``resource_version``, ``generation``, ``deletion`` (``metadata.deletionTimestamp``, None when absent);
    - ``mine``: ``(apiVersion, fieldsV1 as JSON text)`` per applied entry of our field manager (no subresource);
      the text is ``json.dumps(fieldsV1, sort_keys=True)``, which :func:`reconcilers.diff.owned_hash` hashes as is;
    - ``other``: ``(manager, operation, time)`` of the most recent other writer outside the status subresource
      (self-heal names it when it fights us), or None;
    - ``health``: the object's health (:func:`reconcilers.health.assess`), judged once when the entry is made:
      health rules read only the object, so the verdict holds until the next watch event replaces the entry. A
      status poll then reads 50,000 healths without decoding anything, and the entry keeps no spec or status
      (a Deployment's status alone is about twenty small objects).

    Strings repeated across objects and clusters are interned: apiVersions, managers, operations, write times
    (a burst of writes shares its second) and the fieldsV1 texts (objects made from one template own the same
    fields, and every cluster owns the same as the others); equal health verdicts are one shared object.
    """

    api_version: str
    kind: str
    name: str
    namespace: str
    resource_version: str
    generation: int | None
    deletion: str | None
    mine: tuple[tuple[str, str], ...]
    other: tuple[str, str, str] | None
    health: health.HealthStatus

    @classmethod
    def of(
        cls,
        obj: resources.Body,
        key: resources.ResourceKey,
        field_manager: str,
        rules: health_.Rules = health_.BUILT_IN,
    ) -> Entry:
        """The entry of a live object (or of its ``PartialObjectMetadata``) whose key is ``key``, its health
        judged by ``rules``."""
        meta = obj.get("metadata") or {}
        mine, others = [], []
        for e in meta.get("managedFields") or []:
            if e.get("manager") == field_manager:
                if e.get("operation") == "Apply" and not e.get("subresource"):
                    mine.append(
                        (
                            sys.intern(str(e.get("apiVersion", ""))),
                            sys.intern(json.dumps(e.get("fieldsV1"), sort_keys=True)),
                        )
                    )
            elif e.get("subresource") != "status":
                others.append(e)
        last = max(others, key=lambda e: str(e.get("time", "")), default=None)
        return cls(
            sys.intern(str(obj.get("apiVersion", ""))),
            key.kind,
            key.name,
            key.namespace,
            str(meta.get("resourceVersion", "")),
            meta.get("generation"),
            meta.get("deletionTimestamp"),
            tuple(mine),
            (
                sys.intern(str(last.get("manager", ""))),
                sys.intern(str(last.get("operation", ""))),
                sys.intern(str(last.get("time", ""))),  # a burst of writes shares its second
            )
            if last
            else None,
            _shared(rules.assess(key, obj)),
        )

    def body(self, field_manager: str) -> resources.Body:
        """The entry as an object body whose ``metadata.managedFields`` hold ``field_manager``'s applied entries
        (``fieldsV1`` as text) and the last other writer's (manager, operation, time)."""
        meta: dict[str, Any] = {"name": self.name, "resourceVersion": self.resource_version}
        if self.namespace:
            meta["namespace"] = self.namespace
        if self.generation is not None:
            meta["generation"] = self.generation
        if self.deletion is not None:
            meta["deletionTimestamp"] = self.deletion
        managed: list[dict[str, Any]] = [
            {"manager": field_manager, "operation": "Apply", "apiVersion": v, "fieldsV1": text} for v, text in self.mine
        ]
        if self.other:
            managed.append(dict(zip(("manager", "operation", "time"), self.other, strict=True)))
        meta["managedFields"] = managed
        return {"apiVersion": self.api_version, "kind": self.kind, "metadata": meta}


class LiveCache:
    """Live objects of the managed kinds of one cluster, kept current by watches (threads)."""

    def __init__(
        self,
        kube: connection.KubeCluster,
        selector: str,
        field_manager: str,
        on_change: OnChange | None = None,
        rules: health.Rules = health.BUILT_IN,
    ) -> None:
        self.kube = kube
        self.selector = selector
        self.field_manager = field_manager
        self.on_change = on_change
        self.rules = rules
        """Health rules; kinds with one are watched with their status, the others as metadata only."""
        self._objects: dict[resources.ResourceKey, Entry] = {}
        self.changes = 0
        """Incremented after every entry stored or dropped (watch events, relists). Read it before the entries it
        guards: the same count later means no entry changed since."""
        self._changes_lock = threading.Lock()
        self._reflectors: dict[tuple[str, str], _Reflector] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def get(self, key: resources.ResourceKey) -> resources.Body | None:
        """See :meth:`reconcilers.client.LiveView.get`: the cached :class:`Entry` as a body."""
        entry = self._objects.get(key)
        return entry.body(self.field_manager) if entry is not None else None

    def health(self, key: resources.ResourceKey) -> health.HealthStatus:
        """The health of the cached object ``key`` (Missing when it is not in the cache)."""
        entry = self._objects.get(key)
        return entry.health if entry is not None else self.rules.assess(key, None)

    def generation(self, key: resources.ResourceKey) -> int | None:
        """``metadata.generation`` of the cached object ``key`` (None when it is not cached or has none)."""
        entry = self._objects.get(key)
        return entry.generation if entry is not None else None

    def __len__(self) -> int:
        return len(self._objects)

    def keys_held(self) -> list[resources.ResourceKey]:
        """See :meth:`reconcilers.client.LiveView.keys_held`: every cached object's key (a copy)."""
        return list(self._objects.copy())

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
        """Stop every watch: each open watch is shut down, so its thread ends at once rather than at the next
        event or the watch's timeout (a LIST in flight ends within one request timeout; the threads are
        daemons)."""
        self._stop.set()
        with self._lock:
            reflectors = list(self._reflectors.values())
        for r in reflectors:
            r.close()

    def _store(self, key: resources.ResourceKey, entry: Entry | None) -> None:
        if entry is None:
            existed = self._objects.pop(key, None) is not None
            if existed:
                self._changed()
            if existed and self.on_change:
                self.on_change(key, None)
            return
        self._objects[key] = entry
        self._changed()
        if self.on_change:
            self.on_change(key, entry.body(self.field_manager))

    def _changed(self) -> None:
        with self._changes_lock:  # one reflector thread per kind: increments from two must not be lost
            self.changes += 1


class _Reflector(listwatch.ListWatch):
    def __init__(self, cache: LiveCache, group: str, kind: str, watch: bool) -> None:
        metadata_only = not cache.rules.watches_status(group, kind)
        super().__init__(
            cache.kube, group, kind, cache.selector, watch=watch, metadata_only=metadata_only, stop=cache._stop,
            name=f"watch-{cache.kube.name}-{kind}",
        )  # fmt: skip
        self.cache = cache

    def relist(self) -> str:
        fm = self.cache.field_manager
        fresh: dict[resources.ResourceKey, Entry] = {}
        rv = ""
        for items, page_rv in self.cache.kube.list_pages(
            self.group, self.kind, self.cache.selector, metadata_only=self.metadata_only, limit=LIST_PAGE_SIZE
        ):
            rv = page_rv
            for o in items:
                key = resources.ResourceKey.of(o)
                fresh[key] = Entry.of(o, key, fm, self.cache.rules)
            items.clear()  # a page of full objects is not kept past its entries
        mine = [k for k in list(self.cache._objects) if (k.group, k.kind) == (self.group, self.kind)]
        for key in mine:
            if key not in fresh:
                self.cache._store(key, None)
        for key, entry in fresh.items():
            old = self.cache._objects.get(key)
            if old is None or old.resource_version != entry.resource_version:
                self.cache._store(key, entry)
        return rv

    def event(self, kind: str, key: resources.ResourceKey, obj: resources.Body) -> None:
        entry = None if kind == "DELETED" else Entry.of(obj, key, self.cache.field_manager, self.cache.rules)
        self.cache._store(key, entry)

"""Ownership and the inventory: what this agent applied to a cluster, kept in that cluster.

Every applied object is marked (:meth:`Tracking.mark_body`) with

- the label ``gitops-agent.io/instance: <instance>``: the live cache watches only objects carrying it;
- the annotation ``gitops-agent.io/tracking: <instance>:<cluster>:<path>``: who applied it, for which cluster
  and from which ``paths`` entry. Prune deletes only objects whose annotation names this instance and cluster.

The inventory of each (cluster, path) is a ConfigMap ``gitops-agent-inv-<hash>`` in the inventory namespace of
the target cluster (gzipped JSON in ``binaryData``, so 10,000 entries fit in the 1 MiB object limit), so a
restarted agent still knows what it owns. Each :class:`Entry` also keeps the hash of the desired body last
applied and of the fields our field manager owned afterwards: together they let a resync decide "unchanged"
from the live cache alone (see :func:`reconcilers.diff.quick_in_sync`). Used by :mod:`reconcilers.engine`.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import gzip
import hashlib
import json
import sys
import threading
from collections.abc import Iterable, Mapping

from reconcilers import cancel as cancel_
from reconcilers import client, errors, resources

INSTANCE_LABEL = "gitops-agent.io/instance"
INVENTORY_LABEL = INSTANCE_LABEL + "-inventory"
"""On each inventory ConfigMap: the instance it belongs to."""
TRACKING_ANNOTATION = "gitops-agent.io/tracking"
PRUNE_ANNOTATION = "gitops-agent.io/prune"
"""Set to ``disabled`` on an object (in git or live) to keep prune from ever deleting it."""
PATH_ANNOTATION = "gitops-agent.io/path"
_DATA_KEY = "inventory.json.gz"


@dataclasses.dataclass(frozen=True)
class Tracking:
    """The identity this agent writes into objects: ``instance`` (config ``instance``) and ``cluster``."""

    instance: str
    cluster: str

    @property
    def selector(self) -> str:
        """The label selector of every object this instance applied (in any cluster)."""
        return f"{INSTANCE_LABEL}={self.instance}"

    @property
    def inventory_selector(self) -> str:
        """The label selector of every inventory ConfigMap of this instance (in any cluster)."""
        return f"{INVENTORY_LABEL}={self.instance}"

    def mark_body(self, manifest: resources.Manifest) -> resources.Body:
        """``manifest``'s body with the instance label and the tracking annotation added (a new top level and
        metadata; everything below is shared with the manifest, not copied)."""
        meta = dict(manifest.body.get("metadata") or {})
        meta["labels"] = {**(meta.get("labels") or {}), INSTANCE_LABEL: self.instance}
        meta["annotations"] = {
            **(meta.get("annotations") or {}),
            TRACKING_ANNOTATION: f"{self.instance}:{self.cluster}:{manifest.source_path}",
        }
        return {**manifest.body, "metadata": meta}

    def owns(self, live: resources.Body) -> bool:
        """True when ``live``'s tracking annotation names this instance and cluster."""
        value = ((live.get("metadata") or {}).get("annotations") or {}).get(TRACKING_ANNOTATION, "")
        instance, _, rest = str(value).partition(":")
        cluster, _, _ = rest.partition(":")
        return instance == self.instance and cluster == self.cluster


def prune_disabled(obj: resources.Body | None) -> bool:
    """True when ``obj`` carries ``gitops-agent.io/prune: disabled``."""
    annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(PRUNE_ANNOTATION, "")).lower() == "disabled"


def desired_hash(body: resources.Body) -> str:
    """A stable hash of a desired body (canonical JSON), 16 hex digits."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One object of an inventory: its key and, when known, the hash of the desired body last applied and of
    the fields our manager owned right after (``""`` when unknown)."""

    key: resources.ResourceKey
    desired: str = ""
    owned: str = ""


@dataclasses.dataclass(frozen=True)
class Inventory:
    """The objects applied from one ``path`` of one cluster."""

    path: str
    entries: Mapping[resources.ResourceKey, Entry]

    def encode(self) -> str:
        """The ConfigMap payload: base64 of gzipped JSON rows ``[group, kind, namespace, name, desired, owned]``."""
        rows = [  # by name: dataclasses.astuple deep-copies each field (3% of a first sync's CPU, py-spy --gil)
            [e.key.group, e.key.kind, e.key.namespace, e.key.name, e.desired, e.owned]
            for e in sorted(self.entries.values(), key=_by_key)
        ]
        raw = json.dumps(rows, separators=(",", ":")).encode()
        return base64.b64encode(gzip.compress(raw, mtime=0)).decode()

    @classmethod
    def decode(cls, path: str, payload: str) -> Inventory:
        """Inverse of :meth:`encode`. Raises ValueError for a payload it cannot read."""
        rows = json.loads(gzip.decompress(base64.b64decode(payload)))
        entries = {}
        for group, kind, namespace, name, desired, owned in rows:
            key = resources.ResourceKey(group, kind, namespace, name)
            entries[key] = Entry(key, desired, sys.intern(owned) if isinstance(owned, str) else owned)
        return cls(path, entries)


def _by_key(e: Entry) -> resources.ResourceKey:
    return e.key


DECODED_KEPT = 4096
"""Inventories kept decoded, by ConfigMap UID and resourceVersion (one stored version is one content): a resync
that finds an inventory unchanged does not unzip and parse it again."""
_decoded: collections.OrderedDict[tuple[str, str, str], Inventory] = collections.OrderedDict()
_decoded_lock = threading.Lock()

WRITE_ATTEMPTS = 8
"""Read-merge-write rounds of one inventory write before another writer's 409s make it give up."""


class Store:
    """Reads and writes the inventories of one cluster through the ``KubeClient``.

    ``namespace`` holds the inventory ConfigMaps (created on first write); ``field_manager`` writes them.
    Writes are read-merge-update with the ``resourceVersion`` read as precondition (:meth:`merge`), so two
    writers of one inventory at once (a ``gitops-agent sync`` beside ``run``, a Lease hand-over) never lose each
    other's entries: the second gets 409 Conflict, reads again and merges its change into what the first wrote.
    """

    def __init__(self, kube: client.KubeClient, tracking: Tracking, namespace: str, field_manager: str) -> None:
        self.kube = kube
        self.tracking = tracking
        self.namespace = namespace
        self.field_manager = field_manager
        self._seen: dict[str, tuple[Inventory, resources.Body | None]] = {}  # path -> last read or written
        self._primed: dict[str, resources.Body | None] = {}  # path -> ConfigMap as a LIST just found it

    def key(self, path: str) -> resources.ResourceKey:
        """The key of the ConfigMap holding the inventory of ``path``."""
        digest = hashlib.sha256(f"{self.tracking.instance}\0{self.tracking.cluster}\0{path}".encode()).hexdigest()
        return resources.ResourceKey("", "ConfigMap", self.namespace, f"gitops-agent-inv-{digest[:16]}")

    def read(self, paths: Iterable[str]) -> dict[str, Inventory]:
        """The stored inventory of each path (empty for a path never written).

        Raises :class:`errors.SourceError` when a stored inventory cannot be read: pruning from a damaged
        inventory could delete the wrong objects, so the sync stops instead.
        """
        return {path: self._read(path)[0] for path in paths}

    def prime(self, path: str, found: resources.Body | None) -> None:
        """Take the ConfigMap of ``path`` (None: there is none) as a LIST of this sync just returned it: the next
        :meth:`read` of ``path`` uses it instead of a GET (once; later reads GET again)."""
        self._primed[path] = found

    def _read(self, path: str) -> tuple[Inventory, resources.Body | None]:
        found = self._primed.pop(path) if path in self._primed else self.kube.get(self.key(path))
        payload = ((found or {}).get("binaryData") or {}).get(_DATA_KEY)
        meta = (found or {}).get("metadata") or {}
        version = (path, str(meta.get("uid", "")), str(meta.get("resourceVersion", "")))
        with _decoded_lock:
            inventory = _decoded.get(version) if payload and version[2] else None
        if inventory is None:
            try:
                inventory = Inventory.decode(path, payload) if payload else Inventory(path, {})
            except (ValueError, TypeError, OSError) as e:
                raise errors.SourceError(f"inventory {self.key(path)} of path {path!r} is unreadable: {e}") from e
            if payload and version[2]:
                with _decoded_lock:
                    _decoded[version] = inventory
                    while len(_decoded) > DECODED_KEPT:
                        _decoded.popitem(last=False)
        read = inventory, found
        self._seen[path] = read
        return read

    def merge(
        self,
        path: str,
        *,
        put: Mapping[resources.ResourceKey, Entry] | None = None,
        add: Iterable[resources.ResourceKey] = (),
        drop: Iterable[resources.ResourceKey] = (),
        cancel: cancel_.Token | None = None,
    ) -> Inventory:
        """Change the stored inventory of ``path``: set the entries ``put``, add an empty entry for each key of
        ``add`` not there yet, remove the keys ``drop``; everything else stored (another writer's entries) stays.
        Starts from the version this store last read or wrote (so a sync that changes nothing costs no request
        beyond its first read) and writes only when the merge changes something, with that version's
        ``resourceVersion`` as precondition; on 409 (another writer came between) reads again and merges again,
        up to :data:`WRITE_ATTEMPTS` times. Returns the inventory as stored.

        Raises :class:`errors.CancelledError` (checked before each write), :class:`errors.ApiError` (409 after every
        attempt, or any other refusal), :class:`errors.SourceError` for an unreadable stored inventory.
        """
        put, dropped = dict(put or {}), set(drop)
        for attempt in range(WRITE_ATTEMPTS):
            stored, found = self._seen[path] if attempt == 0 and path in self._seen else self._read(path)
            entries = {k: e for k, e in stored.entries.items() if k not in dropped}
            entries.update(put)
            for k in add:
                entries.setdefault(k, Entry(k))
            merged = Inventory(path, entries)
            if dict(stored.entries) == entries and found is not None:
                return stored
            if cancel is not None:
                cancel.check()
            try:
                self._seen[path] = merged, self._write(merged, found)
                return merged
            except errors.ApiError as e:
                if e.status != 409 or attempt + 1 == WRITE_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _write(self, inventory: Inventory, found: resources.Body | None) -> resources.Body:
        """Create the ConfigMap (``found`` None; when the create finds no namespace, a 404, the namespace is
        created and the create sent again) or replace ``found`` at its resourceVersion; returns it as stored.
        Raises ApiError 409 when another writer got there first."""
        key = self.key(inventory.path)
        metadata: dict[str, object] = {
            "name": key.name,
            "namespace": key.namespace,
            "labels": {INVENTORY_LABEL: self.tracking.instance},
            "annotations": {PATH_ANNOTATION: inventory.path, TRACKING_ANNOTATION: self._tracking(inventory.path)},
        }
        body: resources.Body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata}
        body["binaryData"] = {_DATA_KEY: inventory.encode()}
        if found is None:
            try:
                return self.kube.create(body, field_manager=self.field_manager)
            except errors.ApiError as e:
                if e.status != 404:  # 404 on a create: the namespace is missing (Kubernetes API conventions)
                    raise
            self._ensure_namespace()
            return self.kube.create(body, field_manager=self.field_manager)
        metadata["resourceVersion"] = (found.get("metadata") or {}).get("resourceVersion")
        return self.kube.replace(body, field_manager=self.field_manager)

    def _tracking(self, path: str) -> str:
        return f"{self.tracking.instance}:{self.tracking.cluster}:{path}"

    def _ensure_namespace(self) -> None:
        ns = resources.ResourceKey("", "Namespace", "", self.namespace)
        try:
            missing = self.kube.get(ns) is None
        except errors.ApiError as e:
            if e.status != 403:
                raise
            return  # a namespace-scoped identity may not read Namespaces: its own is taken to exist
        if missing:
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}}
            self.kube.apply(body, field_manager=self.field_manager, force=True, dry_run=False)


class Intent:
    """One sync's record of intent: before the sync's first write, every object it desires is in the inventory
    of its path, so whatever it creates is owned even if the agent stops before the sync ends. Each create goes
    in with the entry its dry run foretells (:data:`reconcilers.apply.Intent`), so a sync whose writes land as
    foretold (a first sync of one stage) writes its inventory once, not twice.

    Called as a :data:`reconcilers.apply.Intent`: the first call writes (``store.merge`` of every path; raises
    like it), later calls do nothing. ``by_path``: the desired keys of each path. Owned by the sync's thread.
    """

    def __init__(
        self, store: Store, by_path: Mapping[str, Iterable[resources.ResourceKey]], cancel: cancel_.Token
    ) -> None:
        self.store = store
        self.by_path = {p: list(keys) for p, keys in by_path.items()}
        self.cancel = cancel
        self.written = False
        self._foretold: set[resources.ResourceKey] = set()

    def __call__(self, foretold: Mapping[resources.ResourceKey, Entry]) -> None:
        if self.written:
            return
        self.written = True
        self._foretold = set(foretold)
        for path, keys in self.by_path.items():
            put = {k: foretold[k] for k in keys if k in foretold}
            self.store.merge(path, put=put, add=keys, cancel=self.cancel)

    def closing(self, path: str, records: Mapping[resources.ResourceKey, Entry]) -> dict[resources.ResourceKey, Entry]:
        """The entries the sync's closing write of ``path`` sets: ``records`` (what the sync applied or found
        unchanged) of its keys, and an unknown entry for each create foretold whose write did not land (a
        foretold entry must not outlive a failed write)."""
        put = {k: records[k] for k in self.by_path[path] if k in records}
        for k in self.by_path[path]:
            if k in self._foretold and k not in records:
                put[k] = Entry(k)
        return put

"""Drift between syncs: which managed objects no longer match git, known within seconds of a live edit.

A sync's result says what it applied; a ``kubectl edit`` a minute later makes it untrue. Argo CD shows an app
OutOfSync within seconds of a live edit whether or not it self-heals; this is that comparison. The live cache
calls :meth:`DriftMonitor.notify` for every watch event. For an object of an app that does not self-heal (self-heal
corrects its objects instead, :mod:`agent.sync.selfheal`), the engine's cheap check
(:func:`reconcilers.diff.quick_in_sync`: the owned fields' fingerprint against the inventory's) clears it at once.
When that check fails the object is only in doubt (a controller may have taken a field over with the same value),
so a worker thread waits :data:`DEBOUNCE` seconds to fold bursts and confirms it with the dry-run server-side
apply a sync starts with (:func:`reconcilers.apply.compare_one`), as the app's identity (its ``serviceAccount``
when it has one). The verdict is kept as a :class:`Drifted` (the changed fields as ``.data.color``, or missing)
until an event shows the object back in line or the next sync takes the app's objects again; an object the dry
run finds unchanged gets its inventory entry from the live object, so its next events pass the cheap check.

Nothing here writes. Read by the status (:mod:`agent.runtime.appstatus`) through :meth:`DriftMonitor.snapshot`.
Used by :mod:`agent.sync.cluster`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence

from agent.clusters import cache
from agent.sync import keyqueue, keys
from reconcilers import client, engine, errors, resources

log = logging.getLogger(__name__)

DEBOUNCE = 0.2
"""Seconds an object in doubt waits for more events before its dry run."""


@dataclasses.dataclass(frozen=True)
class Drifted:
    """A managed object that does not match git now: its ``app``, the ``fields`` that differ (kubectl's JSONPath
    form, ``.data.color``; empty when it is missing or could not be compared) and ``why`` in words."""

    key: resources.ResourceKey
    app: str
    fields: tuple[str, ...]
    why: str

    def text(self) -> str:
        """``ConfigMap ns/name: .data.color`` (or its ``why`` when no field is named)."""
        return f"{self.key}: {', '.join(self.fields) if self.fields else self.why}"


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The drifted objects by app at one moment (``version`` counts the changes: the same version, the same
    verdicts). Immutable: the API thread reads it while the monitor goes on."""

    version: int
    by_app: Mapping[str, tuple[Drifted, ...]]


EMPTY = Snapshot(0, {})

OnEvent = Callable[[str, str], None]
"""Told ``("OutOfSync", message)`` when an app's first object drifts (once until the app is back in line)."""

Client = Callable[[str | None], client.KubeClient]
"""The cluster's client acting as a user (None: the agent itself)."""


class DriftMonitor:
    """The drift of one cluster's apps that do not self-heal: a worker thread fed by the live cache. Started by
    :meth:`start`, ended by :meth:`stop`, both by the runner that owns it."""

    def __init__(
        self, cluster: str, kube: Client, options: engine.ApplyOptions, on_event: OnEvent | None = None
    ) -> None:
        self.cluster = cluster
        self.on_event = on_event
        self.kube = kube
        self.options = options
        self.live: cache.LiveCache | None = None
        self.confirmed = 0
        """Dry runs sent (objects whose cheap check failed)."""
        self._desired: dict[resources.ResourceKey, engine.Desired] = {}
        self._entries: dict[resources.ResourceKey, engine.InventoryEntry] = {}
        self._owner: dict[resources.ResourceKey, tuple[str, str | None]] = {}  # key -> (app, user)
        self._taken: dict[str, tuple[object, object]] = {}  # app -> the (desired, inventory) maps last taken (held)
        self._drifted: dict[resources.ResourceKey, Drifted] = {}
        self._judged: dict[resources.ResourceKey, str | None] = {}  # key -> its _writes() when judged drifted
        self._snapshot = EMPTY
        self._held: set[resources.ResourceKey] = set()
        self._reconciling = False
        self._lock = threading.Lock()
        self._queue = keyqueue.KeyQueue(f"drift-{cluster}", self._confirm, DEBOUNCE, f"cluster/{cluster}/sync")

    def start(self) -> None:
        """Start the worker thread (``drift-<cluster>``)."""
        self._queue.start()

    def stop(self, timeout: float = 60.0) -> None:
        """End the worker thread, waiting up to ``timeout`` seconds for a dry run in flight."""
        self._queue.stop(timeout)

    def begin_reconcile(self) -> None:
        """Hold events while a sync runs: it compares every object itself; :meth:`update` checks them after."""
        with self._lock:
            self._reconciling = True

    def update(self, result: engine.ReconcileResult | None, watched: Mapping[str, str | None]) -> None:
        """Take the objects of a finished sync (None: it failed early) for the apps in ``watched`` (app -> the
        user it acts as, None for the agent). An app's objects are taken again only when its maps are new ones;
        an app no longer watched is forgotten. Objects the sync took are in line; those events were held for during
        the sync are checked again (the cheap check now, a dry run when it fails)."""
        check: set[resources.ResourceKey] = set()
        with self._lock:
            self._reconciling = False
            for gone in [a for a in self._taken if a not in watched]:
                self._forget(gone)
            for r in result.apps if result is not None and not result.dry_run else ():
                taken = self._taken.get(r.app)
                same = taken is not None and keys.same(taken, (r.desired, r.inventory))
                if r.app not in watched or same:
                    continue  # a resync proven unchanged hands over the same maps: nothing to take again
                check |= self._take(r, watched[r.app])
            check |= self._held
            self._held = set()
            self._publish()
        for key in check:
            self.notify(key, self.live.get(key) if self.live else None)

    def notify(self, key: resources.ResourceKey, obj: resources.Body | None) -> None:
        """A watch event (called from watch threads): clear ``key`` when it is back in line, queue it for a dry run
        when in doubt."""
        with self._lock:
            if self._reconciling:
                self._held.add(key)
                return
            if key not in self._desired:
                return
            if self._in_sync(key, obj):
                if self._drifted.pop(key, None) is not None:
                    self._publish()
                return
            if key in self._drifted and (seen := _writes(obj)) is not None and self._judged.get(key) == seen:
                return  # judged drifted already, and only its status moved since: no dry run per status update
        self._queue.put(key)

    def snapshot(self) -> Snapshot:
        """The drifted objects now (safe from any thread)."""
        return self._snapshot

    def _take(self, r: engine.ReconcileResult, user: str | None) -> set[resources.ResourceKey]:
        """Hold app ``r.app``'s objects as ``r`` left them; returns the keys to check (under the lock): those it
        held drifted that the sync did not take again (the sync compared every object: what it took is in line)."""
        self._taken[r.app] = (r.desired, r.inventory)
        old = {k for k, (app, _) in self._owner.items() if app == r.app}
        check: set[resources.ResourceKey] = set()
        for key in old - r.desired.keys():
            self._drop(key)
        for key, d in r.desired.items():
            entry = r.inventory.get(key)
            if key not in old or self._desired[key].hash != d.hash or self._entries.get(key) != entry:
                # the sync just compared (or wrote) it: in line as of now; an event since was held
                self._drifted.pop(key, None)
            elif key in self._drifted:
                check.add(key)  # drifted before a sync that found it unchanged: look again
            self._desired[key], self._owner[key] = d, (r.app, user)
            if entry is not None:
                self._entries[key] = entry
            else:
                self._entries.pop(key, None)
        return check

    def _forget(self, app: str) -> None:
        del self._taken[app]
        for key in [k for k, (a, _) in self._owner.items() if a == app]:
            self._drop(key)

    def _drop(self, key: resources.ResourceKey) -> None:
        self._desired.pop(key, None)
        self._entries.pop(key, None)
        self._owner.pop(key, None)
        self._drifted.pop(key, None)
        self._judged.pop(key, None)

    def _publish(self) -> None:
        """A new snapshot from ``_drifted`` (under the lock)."""
        by_app: dict[str, list[Drifted]] = {}
        for found in sorted(self._drifted.values(), key=lambda f: str(f.key)):
            by_app.setdefault(found.app, []).append(found)
        self._snapshot = Snapshot(self._snapshot.version + 1, {a: tuple(f) for a, f in by_app.items()})

    def _in_sync(self, key: resources.ResourceKey, obj: resources.Body | None) -> bool:
        d = self._desired[key]
        fm = self.options.field_manager
        return engine.quick_in_sync(obj, self._entries.get(key), d.hash, fm, d.pointers)

    def _confirm(self, key: resources.ResourceKey) -> None:
        """Compare ``key`` with git by a dry run when the cheap check still fails on the newest cache entry."""
        with self._lock:
            obj = self.live.get(key) if self.live else None
            if self._reconciling or key not in self._desired or self._in_sync(key, obj):
                if not self._reconciling and self._drifted.pop(key, None) is not None:
                    self._publish()
                return
            d = self._desired[key]
            app, user = self._owner[key]
            self.confirmed += 1
        try:
            found = engine.compare_one(self.kube(user), d, self.options)
        except errors.CancelledError as e:  # fenced: this replica does not hold the cluster now; its holder judges
            log.info("cluster %s: drift of %s not checked: %s", self.cluster, key, e)
            return
        except errors.ClusterError as e:
            log.warning("cluster %s: drift of %s not checked: %s", self.cluster, key, e)
            found = engine.Comparison(engine.Action.FAILED, error=f"not compared: {e}")
        first: Drifted | None = None
        with self._lock:
            now = self._desired.get(key)
            if self._reconciling or now is None or now.hash != d.hash:
                return  # a sync took it meanwhile: it judges the object itself
            if found.action is engine.Action.UNCHANGED:
                if found.record is not None:
                    self._entries[key] = found.record
                changed = self._drifted.pop(key, None) is not None
            else:
                verdict = _verdict(key, app, found)
                if app not in self._snapshot.by_app:
                    first = verdict
                changed = self._drifted.get(key) != verdict
                self._drifted[key] = verdict
                self._judged[key] = _writes(obj)
            if changed:
                self._publish()
        if first is not None and self.on_event is not None:
            self.on_event("OutOfSync", f"app {app}: {first.text()} ({first.why})")


def _writes(obj: resources.Body | None) -> str | None:
    """What says who last wrote ``obj`` outside its status, for an object with a ``generation`` (the kinds with a
    spec and a status, whose controllers update the status all the time): the generation (every spec write moves
    it) and the ``managedFields`` entries outside the status subresource, times included. The same text again means
    only its status moved. None for an object without a generation (no status churn: every event is looked at)."""
    meta = (obj or {}).get("metadata") or {}
    if meta.get("generation") is None:
        return None
    entries = [e for e in meta.get("managedFields") or [] if e.get("subresource") != "status"]
    return json.dumps([meta["generation"], entries], sort_keys=True, default=str)


def _verdict(key: resources.ResourceKey, app: str, found: engine.Comparison) -> Drifted:
    if found.action is engine.Action.CREATED:
        return Drifted(key, app, (), "missing (deleted since the last sync)")
    if found.action is engine.Action.FAILED:
        return Drifted(key, app, (), f"cannot be compared: {found.error}")
    return Drifted(key, app, found.diff.paths if found.diff else (), "changed since the last sync")


def watched_apps(units: Iterable[tuple[str, bool, str | None]]) -> dict[str, str | None]:
    """The apps whose drift is watched, from ``(name, self_heal, impersonate)`` per unit: every app that self-heal
    does not correct (``selfHeal`` off, or the write gate holds it), with the user it acts as (its dry runs
    impersonate it)."""
    return {name: user for name, heal, user in units if not heal}


def texts(found: Sequence[Drifted], limit: int = 3) -> str:
    """``N object(s) drifted: ConfigMap ns/a: .data.color; ...`` naming at most ``limit`` of them."""
    shown = "; ".join(f.text() for f in found[:limit])
    more = f"; and {len(found) - limit} more" if len(found) > limit else ""
    return f"{len(found)} object(s) drifted: {shown}{more}"

"""Self-heal: re-apply a managed object as soon as a watch event shows it drifted.

The live cache calls :meth:`Healer.notify` for every event. An event on an object of the last sync's desired
set that fails the cheap in-sync check (:func:`reconcilers.diff.quick_in_sync`: edited, scaled, relabelled or
deleted) queues its key; a worker thread waits :data:`DEBOUNCE` seconds to fold bursts, checks again against the
newest cache entry, and re-applies just that object (server-side apply, forced).

Fights: an object corrected more than :data:`FIGHT_LIMIT` times within :data:`FIGHT_WINDOW` seconds is no
longer corrected and is reported as Fighting, with the name of the other field manager (the most recent writer
in its managedFields). A new desired body for it (a new commit) ends the fight. While a full reconcile runs,
events are held and checked against its result. Used by ``agent.sync.cluster``.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from agent.clusters import cache
from agent.sync import keyqueue, keys
from reconcilers import cancel, client, engine, errors, resources

log = logging.getLogger(__name__)

DEBOUNCE = 0.05
"""Seconds a drift event waits for more events on the same object before it is healed."""
FIGHT_LIMIT = 5
"""Corrections of one object allowed within :data:`FIGHT_WINDOW` before it is reported as Fighting."""
FIGHT_WINDOW = 60.0
"""Seconds over which corrections are counted."""


@dataclasses.dataclass(frozen=True)
class Fight:
    """An object the agent stopped correcting: the other field manager and the corrections counted."""

    key: resources.ResourceKey
    manager: str
    corrections: int
    since: float


OnEvent = Callable[[str, str], None]
"""Called with (reason, message) when self-heal corrects an object (``DriftCorrected``) or gives up on one
(``Fighting``)."""


class Healer:
    """Self-heal of one cluster: a worker thread fed by the live cache. ``refused(key)``: the write gate's refusal
    of a correction (asked before each write, with the Lease ``guard``)."""

    def __init__(
        self,
        cluster: str,
        kube: client.KubeClient,
        options: engine.ApplyOptions,
        guard: cancel.Guard | None = None,
        on_event: OnEvent | None = None,
        refused: Callable[[resources.ResourceKey], str | None] | None = None,
        client_for: Callable[[resources.ResourceKey], client.KubeClient] | None = None,
    ) -> None:
        self.cluster = cluster
        self.guard = guard
        self.refused = refused
        """Why the write gate refuses a correction of a key now (:mod:`agent.sync.gate`), or None."""
        self.client_for = client_for
        """The client a key's correction is written with: its app's identity (an app with a ``serviceAccount``
        impersonates it, as its syncs do), else ``kube``."""
        self.on_event = on_event
        self.kube = kube
        self.options = options
        self.live: cache.LiveCache | None = None
        self.healed = 0
        self.fights: dict[resources.ResourceKey, Fight] = {}
        self._desired: Mapping[resources.ResourceKey, engine.Desired] = {}
        self._entries: dict[resources.ResourceKey, engine.InventoryEntry] = {}
        self._taken: tuple[object, object] = (None, None)  # the (desired, inventory) maps last taken
        self._corrections: dict[resources.ResourceKey, collections.deque[float]] = {}
        self._queue = keyqueue.KeyQueue(f"selfheal-{cluster}", self._heal, DEBOUNCE, f"cluster/{cluster}/sync")
        self._held: set[resources.ResourceKey] = set()
        self._reconciling = False
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the correcting thread (``selfheal-<cluster>``; its owner, the runner, ends it with :meth:`stop`)."""
        self._queue.start()

    def begin_reconcile(self) -> None:
        """Hold events while a full reconcile runs (it handles them, or :meth:`update` re-checks them)."""
        with self._lock:
            self._reconciling = True

    def update(self, result: engine.ReconcileResult | None) -> None:
        """Take the desired set and inventory entries of a finished reconcile (None: it failed early)."""
        with self._lock:
            self._reconciling = False
            taken = self._taken
            same = result is not None and keys.same(result.desired, taken[0]) and keys.same(result.inventory, taken[1])
            if result is not None and not result.dry_run and (result.desired or result.ok) and not same:
                # (the very maps taken last time, from a resync proven unchanged, change nothing: skipped)
                self._taken = (result.desired, result.inventory)
                desired = result.desired
                for key, d in desired.items():
                    old = self._desired.get(key)
                    if old is None or old.hash != d.hash:
                        self.fights.pop(key, None)  # a new desired body ends a fight
                        self._corrections.pop(key, None)
                # Objects that left git leave every map: no fight outlives its object, and the maps stay bounded
                # by the desired set (kustomize's hash-suffixed ConfigMaps come and go).
                self.fights = {k: f for k, f in self.fights.items() if k in desired}
                self._corrections = {k: c for k, c in self._corrections.items() if k in desired}
                entries = {**self._entries, **result.inventory}
                self._entries = {k: e for k, e in entries.items() if k in desired}
                self._desired = desired  # the reconcile's own mapping, never changed after it
            held, self._held = self._held, set()
        for key in held:
            self.notify(key, self.live.get(key) if self.live else None)

    def notify(self, key: resources.ResourceKey, obj: resources.Body | None) -> None:
        """A watch event: queue ``key`` when it is managed and drifted (called from watch threads)."""
        with self._lock:
            if self._reconciling:
                self._held.add(key)
                return
            if self._in_sync(key, obj) or key in self.fights:
                return
        self._queue.put(key)

    def stop(self, timeout: float = 60.0) -> None:
        """End the worker thread and wait (up to ``timeout`` seconds: one request) for a correction in flight."""
        self._queue.stop(timeout)

    def _in_sync(self, key: resources.ResourceKey, obj: resources.Body | None) -> bool:
        d = self._desired.get(key)
        if d is None:
            return True  # not managed: nothing to heal
        return engine.quick_in_sync(obj, self._entries.get(key), d.hash, self.options.field_manager, d.pointers)

    def _heal(self, key: resources.ResourceKey) -> None:
        refused = self.refused(key) if self.refused else None
        if refused:  # counted as no correction: a held app's drift is shown, not fought
            log.info("cluster %s: self-heal of %s not sent: %s", self.cluster, key, refused)
            return
        with self._lock:
            obj = self.live.get(key) if self.live else None
            if self._reconciling or key in self.fights or self._in_sync(key, obj):
                return
            d = self._desired[key]
            now = time.monotonic()
            recent = self._corrections.setdefault(key, collections.deque())
            while recent and now - recent[0] > FIGHT_WINDOW:
                recent.popleft()
            if len(recent) >= FIGHT_LIMIT:
                fight = Fight(key, other_manager(obj, self.options.field_manager), len(recent), now)
                self.fights[key] = fight
                log.warning(
                    "cluster %s: %s: Fighting with field manager %r (%d corrections in %.0fs); no longer correcting it",
                    self.cluster,
                    key,
                    fight.manager,
                    len(recent),
                    FIGHT_WINDOW,
                )
                if self.on_event:
                    self.on_event(
                        "Fighting", f"{key}: {fight.manager} keeps changing it ({len(recent)} corrections); left alone"
                    )
                return
            recent.append(now)
        fenced = self.guard() if self.guard else None
        if fenced:
            log.warning("cluster %s: self-heal of %s not sent: %s", self.cluster, key, fenced)
            return
        try:
            writer = self.client_for(key) if self.client_for else self.kube
            entry = engine.apply_one(writer, d, self.options)
        except (errors.ClusterError, errors.CancelledError) as e:
            log.error("cluster %s: self-heal of %s failed: %s", self.cluster, key, e)
            return
        with self._lock:
            self._entries[key] = entry
            self.healed += 1
        log.info("cluster %s: self-healed %s", self.cluster, key)
        if self.on_event:
            self.on_event(
                "DriftCorrected", f"{key}: changed by {other_manager(obj, self.options.field_manager)}, corrected"
            )

    def fighting(self) -> list[Fight]:
        """The objects no longer corrected (safe from any thread)."""
        with self._lock:
            return list(self.fights.values())

    def status(self) -> dict[str, Any]:
        """``{"healed": N, "fighting": [...]}`` for the status API."""
        with self._lock:
            fights = [
                {
                    "group": f.key.group,
                    "kind": f.key.kind,
                    "namespace": f.key.namespace,
                    "name": f.key.name,
                    "status": "Fighting",
                    "manager": f.manager,
                    "corrections": f.corrections,
                }
                for f in self.fights.values()
            ]
            return {"healed": self.healed, "fighting": fights}


def other_manager(obj: resources.Body | None, field_manager: str) -> str:
    """The most recent field manager of ``obj`` other than ``field_manager`` ("unknown" when none)."""
    entries = [
        e
        for e in ((obj or {}).get("metadata") or {}).get("managedFields") or []
        if e.get("manager") != field_manager and e.get("subresource") != "status"
    ]
    if not entries:
        return "unknown (object deleted or field removed)"
    return str(max(entries, key=lambda e: str(e.get("time", ""))).get("manager", "unknown"))

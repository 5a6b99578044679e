"""What one cluster's sync remembers for the next one: :class:`SyncMemory`, keyed by content.

A resync of unchanged inputs must cost little: no file read, no object placed, hashed or planned again, no
request beyond the cluster's watches. Each thing remembered is reused only when what it depends on is the same by
content (:mod:`agent.sync.keys`):

==================  ===================================================  ==========================================
remembered          keyed by                                             used by
==================  ===================================================  ==========================================
``units``           the config (fixed for the memory's life)             every sync: the cluster's apps
``loads``           the unit, its sources' trees (one per revision       :class:`agent.sync.desired.DesiredState`
                    SHA), the discovery generation, jsonnet's env
``lasts``           the unit, the config digest, the manifests digest,   :func:`agent.sync.noop.unchanged`
                    the revision, the inventory's ``resourceVersion``
``proof``           the units, config digest, revisions, trees, prune    :func:`agent.sync.noop.again`
                    settings, the inventories' versions, each unit's
                    manifests digest
``claims``          the units, the discovery generation, each unit's     :class:`agent.sync.ownership.Memo`
                    manifests digest
``options``         the unit and the sync's flags                        the engine's options per unit
``synced``          (app -> the SHA its last sync applied completely)    resyncs run inline
``aggregated``      (the cluster's last result)                          a result made again only when it changed
==================  ===================================================  ==========================================

A changed config makes a new :class:`agent.sync.cluster.ClusterSync` (:meth:`agent.runtime.fleet.Fleet.apply_config`)
and so a new memory; ``config`` (its digest) is still part of every key that depends on it. Owned by one
ClusterSync: changed on its sync's thread only, except :meth:`SyncMemory.keep_load`, which app threads may call
at once (under a lock).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable

from agent import apps
from agent.sync import noop, ownership
from reconcilers import engine, resources


@dataclasses.dataclass(frozen=True)
class Loaded:
    """One unit's manifests as last loaded: the unit, the inputs they were loaded from (None: not reusable, as a
    unit that substitutes variables read each sync), the manifests and their digest
    (:func:`agent.sync.keys.manifests_digest`)."""

    unit: apps.Unit
    inputs: tuple[object, ...] | None
    manifests: list[resources.Manifest]
    digest: str


class SyncMemory:
    """One cluster's memory between syncs (see the module doc); ``config``: the digest of the config its
    ClusterSync runs with."""

    def __init__(self, config: str) -> None:
        self.config = config
        self.units: list[apps.Unit] | None = None
        self.synced: dict[str, str] = {}
        self.lasts: dict[str, noop.Last] = {}
        self.claims = ownership.Memo()
        self.proof = noop.ClusterMemo()
        self.options: dict[tuple[str, bool, bool, bool], tuple[apps.Unit, engine.ReconcileOptions]] = {}
        self.aggregated: engine.ReconcileResult | None = None
        self._loads: dict[str, Loaded] = {}
        self._lock = threading.Lock()  # _loads only

    def loaded(self, app: str) -> Loaded | None:
        """App ``app``'s last load (None: not loaded yet)."""
        with self._lock:
            return self._loads.get(app)

    def keep_load(self, app: str, found: Loaded) -> None:
        """Remember app ``app``'s load (any thread)."""
        with self._lock:
            self._loads[app] = found

    def digest(self, app: str) -> str:
        """The manifests digest of app ``app``'s last load ("" when it never loaded)."""
        found = self.loaded(app)
        return found.digest if found is not None else ""

    def forget_except(self, placed: Iterable[str]) -> None:
        """Forget what is remembered of apps not in ``placed`` (no longer on this cluster)."""
        kept = set(placed)
        with self._lock:
            if self._loads.keys() - kept:
                self._loads = {n: v for n, v in self._loads.items() if n in kept}
        if self.lasts.keys() - kept:
            self.lasts = {n: v for n, v in self.lasts.items() if n in kept}

"""One rollout per app (``rollout:`` with ``apps:``): each app's source revisions go through the clusters the app is
placed on, batch by batch in rollout order, gated on that app's own health (:class:`agent.runtime.rollout.Rollout`
with ``app``), its state kept in ConfigMap ``<instance>-rollout-<app>`` of each of those clusters.

:meth:`AppRollouts.pins` tells a cluster's sync which revision each app is pinned to there (``@<app>``, see
:data:`agent.apps.PIN_PREFIX`), or that its rollout has not reached the cluster (:data:`agent.apps.NOT_REACHED`).
Owned by :mod:`agent.runtime.fleet`; each rollout has its thread (``rollout-<app>``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from agent import apps, config
from agent.runtime import rollout, rollout_store
from reconcilers import engine, resources

log = logging.getLogger(__name__)

RunApp = Callable[[str, str, resources.Revision], engine.ReconcileResult]
"""Sync (app, cluster) to a revision and wait for its health (``Fleet.reconcile_app_to``)."""


class AppRollouts:
    """The rollouts of every configured app (none without ``rollout``)."""

    def __init__(
        self,
        cfg: config.AgentConfig,
        run_app: RunApp,
        restored: Callable[[], None],
        on_event: rollout.OnEvent,
    ) -> None:
        self.run_app = run_app
        self.restored = restored
        self.on_event = on_event
        self.cfg = cfg
        self.by_app: dict[str, rollout.Rollout] = self._build(cfg)

    def _build(self, cfg: config.AgentConfig) -> dict[str, rollout.Rollout]:
        if not cfg.rollout:
            return {}
        return {a.name: self._one(cfg, a.name) for a in cfg.apps}

    def _one(self, cfg: config.AgentConfig, app: str) -> rollout.Rollout:
        def run(cluster: str, revision: resources.Revision) -> engine.ReconcileResult:
            return self.run_app(app, cluster, revision)

        store = rollout_store.RolloutStore(cfg, app)
        return rollout.Rollout(cfg, run, store, self.restored, self.on_event, app=app)

    def start(self) -> None:
        """Start every app's rollout thread."""
        for r in self.by_app.values():
            r.start()

    def stop(self) -> None:
        """Stop every rollout after its current step."""
        for r in self.by_app.values():
            r.stop()

    def reconfigure(self, new: config.AgentConfig, last_good: Callable[[str], resources.Revision | None]) -> None:
        """A reload: apps whose source, placement or rollout settings changed (or that were added) get a new
        rollout, told at once the last good revision of their source (``last_good(source name)``); removed apps'
        rollouts stop; the others take the new config."""
        old, self.cfg = self.cfg, new
        before = {a.name: a for a in old.apps} if old.rollout else {}
        after = {a.name: a for a in new.apps} if new.rollout else {}
        for name in list(self.by_app):
            if name not in after or before.get(name) != after[name] or old.rollout != new.rollout:
                self.by_app.pop(name).stop()
        for name, a in after.items():
            if name in self.by_app:
                self.by_app[name].reconfigure(new)
                continue
            self.by_app[name] = self._one(new, name)
            self.by_app[name].start()
            if (revision := last_good(a.source)) is not None:
                self.by_app[name].notify(revision)

    def notify(self, source: str, revision: resources.Revision) -> bool:
        """Source ``source`` is at ``revision``: every app reading it rolls it out. True when some app does."""
        found = [a.name for a in self.cfg.apps if a.source == source and a.name in self.by_app]
        for name in found:
            self.by_app[name].notify(revision)
        return bool(found)

    def pins(self, cluster: config.ClusterConfig) -> dict[str, resources.Revision]:
        """``@<app>`` -> the revision each rolled-out app placed on ``cluster`` should be at there, or
        :data:`apps.NOT_REACHED` before its rollout reached the cluster."""
        if not self.by_app:  # no app rolls out (asked for every cluster on every status poll)
            return {}
        out = {}
        for a in apps.placed(self.cfg, cluster):
            r = self.by_app.get(a.name)
            if r is not None:
                out[apps.PIN_PREFIX + a.name] = r.target(cluster.name) or apps.NOT_REACHED
        return out

    def status_json(self) -> dict[str, Any]:
        """Each app's rollout (see :meth:`rollout.Rollout.status_json`)."""
        return {name: r.status_json() for name, r in self.by_app.items()}

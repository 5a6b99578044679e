"""Suspended apps and clusters ("holds"), kept in the target clusters so a restart, a reload or a second replica
keeps them (as the rollout state is, :mod:`agent.runtime.rollout_store`).

Each target cluster holds a ConfigMap ``<instance>-holds`` in ``sync.inventoryNamespace``: one data key per hold,
``cluster`` (the whole cluster) or ``app.<name>`` (that app on this cluster), whose value is JSON ``{"by", "at",
"reason"}``. Suspending an app everywhere writes its key to every cluster it is placed on. Each key is written by
a field manager of its own (``<fieldManager>-hold-<key>``, server-side apply), so two operators suspending two
apps at once through two replicas never overwrite each other, and resuming is applying that manager's part empty
(the key goes, nothing else does).

The :class:`Book` is the agent's copy, read again at the start of every sync of the cluster (one GET) and updated
at once by the suspend and resume this replica serves; :class:`agent.runtime.gate.HoldRule` reads it.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import threading
from collections.abc import Mapping
from typing import Any

from agent import config
from reconcilers import client, errors, resources

log = logging.getLogger(__name__)

CLUSTER = "*"
"""The app name of a hold on the whole cluster."""


@dataclasses.dataclass(frozen=True)
class Hold:
    """One suspension: ``by`` (who), ``at`` (UTC, ISO 8601), ``reason`` (free text, may be empty), ``app`` (the
    app, or :data:`CLUSTER`)."""

    by: str
    at: str
    reason: str
    app: str = CLUSTER

    def text(self) -> str:
        """``Suspended (app web) by alice at 2026-12-06T12:00:00+00:00: maintenance`` for the status."""
        what = "cluster" if self.app == CLUSTER else f"app {self.app}"
        return f"Suspended ({what}) by {self.by} at {self.at}" + (f": {self.reason}" if self.reason else "")

    def json(self) -> dict[str, str]:
        """``{"app", "by", "at", "reason"}`` for the API."""
        return {"app": self.app, "by": self.by, "at": self.at, "reason": self.reason}


def now() -> str:
    """The current UTC time as the holds write it."""
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


class Book:
    """The holds of every cluster as last read or written (``cluster -> app -> Hold``; the whole cluster's under
    :data:`CLUSTER`). Safe from any thread; the map is replaced, never changed in place."""

    def __init__(self) -> None:
        self._by_cluster: dict[str, Mapping[str, Hold]] = {}
        self._lock = threading.Lock()

    def held(self, cluster: str, app: str) -> Hold | None:
        """The hold that stops ``app`` on ``cluster`` (the cluster's first), or None."""
        with self._lock:
            found = self._by_cluster.get(cluster, {})
        return found.get(CLUSTER) or found.get(app)

    def of(self, cluster: str) -> Mapping[str, Hold]:
        """The holds of ``cluster`` by app (:data:`CLUSTER`: the whole cluster)."""
        with self._lock:
            return self._by_cluster.get(cluster, {})

    def replace(self, cluster: str, found: Mapping[str, Hold]) -> None:
        """Take ``cluster``'s holds as read from it."""
        with self._lock:
            self._by_cluster = {**self._by_cluster, cluster: dict(found)}

    def change(self, cluster: str, app: str, hold: Hold | None) -> None:
        """Record one hold written (``None``: removed) on ``cluster``."""
        with self._lock:
            held = dict(self._by_cluster.get(cluster, {}))
            if hold is None:
                held.pop(app, None)
            else:
                held[app] = hold
            self._by_cluster = {**self._by_cluster, cluster: held}

    def forget(self, cluster: str) -> None:
        """Drop a cluster removed from the config."""
        with self._lock:
            self._by_cluster = {k: v for k, v in self._by_cluster.items() if k != cluster}


def _name(cfg: config.AgentConfig) -> str:
    return f"{cfg.instance}-holds"


def _key(app: str) -> str:
    return "cluster" if app == CLUSTER else f"app.{app}"


def read(kube: client.KubeClient, cfg: config.AgentConfig) -> dict[str, Hold]:
    """The holds kept in the cluster of ``kube`` (none when its ConfigMap does not exist). Raises ClusterError;
    a value that is not a hold is logged and left out."""
    key = resources.ResourceKey("", "ConfigMap", cfg.sync.inventory_namespace, _name(cfg))
    found = kube.get(key)
    out: dict[str, Hold] = {}
    for k, text in ((found or {}).get("data") or {}).items():
        app = CLUSTER if k == "cluster" else k.removeprefix("app.") if k.startswith("app.") else None
        try:
            doc: Any = json.loads(text)
            out[app or ""] = Hold(str(doc["by"]), str(doc["at"]), str(doc.get("reason", "")), app or "")
        except (ValueError, TypeError, KeyError):
            log.warning("holds: %s/%s: key %s is not a hold; ignored", key.namespace, key.name, k)
    return {a: h for a, h in out.items() if a}


def write(kube: client.KubeClient, cfg: config.AgentConfig, app: str, hold: Hold | None) -> None:
    """Write ``hold`` for ``app`` (:data:`CLUSTER`: the whole cluster) to the cluster of ``kube``, or remove it
    (``None``), with the key's own field manager (server-side apply; the namespace is created when missing).
    Raises ClusterError."""
    manager = f"{cfg.sync.field_manager}-hold-{_key(app)}"[:128]
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": _name(cfg),
            "namespace": cfg.sync.inventory_namespace,
            "labels": {"gitops-agent.io/holds": cfg.instance},
        },
        "data": {_key(app): json.dumps({"by": hold.by, "at": hold.at, "reason": hold.reason})} if hold else {},
    }
    try:
        kube.apply(body, field_manager=manager, force=True, dry_run=False)
    except errors.ApiError as e:
        if not e.not_found:
            raise
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": cfg.sync.inventory_namespace}}
        kube.apply(namespace, field_manager=cfg.sync.field_manager, force=True, dry_run=False)
        kube.apply(body, field_manager=manager, force=True, dry_run=False)

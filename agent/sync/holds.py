"""Suspended apps and clusters ("holds") and apps pinned to an earlier revision (rollback), kept in the target
clusters so a restart, a reload or a second replica
keeps them (as the rollout state is, :mod:`agent.runtime.rollout_store`).

Each target cluster holds a ConfigMap ``<instance>-holds`` in ``sync.inventoryNamespace``: one data key per hold,
``cluster`` (the whole cluster) or ``app.<name>`` (that app on this cluster), whose value is JSON ``{"by", "at",
"reason"}``. Suspending an app everywhere writes its key to every cluster it is placed on. Each key is written by
a field manager of its own (``<fieldManager>-hold-<key>``, server-side apply); a pin is the key ``pin.<app>``
(``{"sha", "ref", "by", "at", "untilNewRevision", "head"}``), so two operators suspending two
apps at once through two replicas never overwrite each other, and resuming is applying that manager's part empty
(the key goes, nothing else does).

The :class:`Book` is the agent's copy, read again at the start of every sync of the cluster (one GET) and updated
at once by the suspend and resume this replica serves; :class:`agent.sync.gate.HoldRule` reads it.
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


@dataclasses.dataclass(frozen=True)
class Pin:
    """An app pinned on a cluster to an earlier revision (``gitops-agent rollback``): ``sha`` and ``ref`` (as the
    operator named it), ``by``, ``at``, ``until_new`` (released once the source's head moves past ``head``, its
    head when pinned)."""

    app: str
    sha: str
    ref: str
    by: str
    at: str
    until_new: bool = False
    head: str = ""

    def text(self, head: str | None) -> str:
        """``Pinned to <sha12> (by alice, <at>); git's head is <sha12>`` for the status."""
        tail = f"; git's head is {head[:12]}" if head else ""
        until = ", until a new revision" if self.until_new else ""
        return f"Pinned to {self.sha[:12]} (by {self.by}, {self.at}{until}){tail}"

    def json(self) -> dict[str, Any]:
        """The pin for the API."""
        return {"sha": self.sha, "ref": self.ref, "by": self.by, "at": self.at, "untilNewRevision": self.until_new}


@dataclasses.dataclass(frozen=True)
class Kept:
    """What a cluster keeps: its holds by app (:data:`CLUSTER` for the whole cluster) and its pins by app."""

    holds: Mapping[str, Hold] = dataclasses.field(default_factory=dict)
    pins: Mapping[str, Pin] = dataclasses.field(default_factory=dict)


class Book:
    """The holds of every cluster as last read or written (``cluster -> app -> Hold``; the whole cluster's under
    :data:`CLUSTER`). Safe from any thread; the map is replaced, never changed in place."""

    def __init__(self) -> None:
        self._by_cluster: dict[str, Mapping[str, Hold]] = {}
        self._pins: dict[str, Mapping[str, Pin]] = {}
        self._lock = threading.Lock()

    def pins(self, cluster: str) -> Mapping[str, Pin]:
        """The pins of ``cluster`` by app."""
        with self._lock:
            return self._pins.get(cluster, {})

    def change_pin(self, cluster: str, app: str, pin: Pin | None) -> None:
        """Record one pin written (``None``: removed) on ``cluster``."""
        with self._lock:
            pins = {a: p for a, p in self._pins.get(cluster, {}).items() if a != app}
            if pin is not None:
                pins[app] = pin
            self._pins = {**self._pins, cluster: pins}

    def held(self, cluster: str, app: str) -> Hold | None:
        """The hold that stops ``app`` on ``cluster`` (the cluster's first), or None."""
        with self._lock:
            found = self._by_cluster.get(cluster, {})
        return found.get(CLUSTER) or found.get(app)

    def of(self, cluster: str) -> Mapping[str, Hold]:
        """The holds of ``cluster`` by app (:data:`CLUSTER`: the whole cluster)."""
        with self._lock:
            return self._by_cluster.get(cluster, {})

    def replace(self, cluster: str, found: Kept) -> None:
        """Take ``cluster``'s holds and pins as read from it."""
        with self._lock:
            self._by_cluster = {**self._by_cluster, cluster: dict(found.holds)}
            self._pins = {**self._pins, cluster: dict(found.pins)}

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
            self._pins = {k: v for k, v in self._pins.items() if k != cluster}


def pinned(
    pins: Mapping[str, Pin], sources: Mapping[str, str], heads: Mapping[str, resources.Revision]
) -> dict[str, resources.Revision]:
    """The revisions pins set, by app (``sources``: the source of each app placed on the cluster; ``heads``: each
    source's revision now). A pin of an app not placed here is left out, and so is one ``until_new`` whose source's
    head moved past the head it was pinned at (released)."""
    out = {}
    for app, pin in pins.items():
        source = sources.get(app)
        head = heads.get(source) if source is not None else None
        if source is None or (pin.until_new and head is not None and head.sha != pin.head):
            continue
        out[app] = resources.Revision(pin.sha, pin.ref)
    return out


def _name(cfg: config.AgentConfig) -> str:
    return f"{cfg.instance}-holds"


def _key(app: str) -> str:
    return "cluster" if app == CLUSTER else f"app.{app}"


def read(kube: client.KubeClient, cfg: config.AgentConfig) -> Kept:
    """The holds and pins kept in the cluster of ``kube`` (none when its ConfigMap does not exist). Raises
    ClusterError. A hold whose value cannot be read still holds (its reason says so: nothing is written on a
    guess); a pin that cannot be read is logged and left out (the app follows its source)."""
    key = resources.ResourceKey("", "ConfigMap", cfg.sync.inventory_namespace, _name(cfg))
    found = kube.get(key)
    out: dict[str, Hold] = {}
    pins: dict[str, Pin] = {}
    for k, text in ((found or {}).get("data") or {}).items():
        try:
            doc: Any = json.loads(text)
            if k.startswith("pin."):
                app = k.removeprefix("pin.")
                pins[app] = Pin(
                    app, str(doc["sha"]), str(doc.get("ref", "")), str(doc["by"]), str(doc["at"]),
                    bool(doc.get("untilNewRevision")), str(doc.get("head", "")),
                )  # fmt: skip
                continue
            app = CLUSTER if k == "cluster" else k.removeprefix("app.") if k.startswith("app.") else ""
            if app:
                out[app] = Hold(str(doc["by"]), str(doc["at"]), str(doc.get("reason", "")), app)
        except (ValueError, TypeError, KeyError) as e:
            where = f"{key.namespace}/{key.name}"
            app = CLUSTER if k == "cluster" else k.removeprefix("app.") if k.startswith("app.") else ""
            if app:  # a hold nobody can read still holds: writing would be a guess
                why = f"the hold {k} in ConfigMap {where} cannot be read ({type(e).__name__}); fix or remove the key"
                out[app] = Hold("unknown", "unknown", why, app)
            log.warning("holds: %s: key %s cannot be read (%s)%s", where, k, e, "; held" if app else "; ignored")
    return Kept(out, pins)


def write(kube: client.KubeClient, cfg: config.AgentConfig, app: str, hold: Hold | None) -> None:
    """Write ``hold`` for ``app`` (:data:`CLUSTER`: the whole cluster) to the cluster of ``kube``, or remove it
    (``None``), with the key's own field manager (server-side apply; the namespace is created when missing).
    Raises ClusterError."""
    value = json.dumps({"by": hold.by, "at": hold.at, "reason": hold.reason}) if hold else None
    _write(kube, cfg, _key(app), value)


def write_pin(kube: client.KubeClient, cfg: config.AgentConfig, app: str, pin: Pin | None) -> None:
    """Write ``pin`` for ``app`` to the cluster of ``kube``, or remove it (``None``), as :func:`write` does.
    Raises ClusterError."""
    value = json.dumps({**pin.json(), "head": pin.head}) if pin else None
    _write(kube, cfg, f"pin.{app}", value)


def _write(kube: client.KubeClient, cfg: config.AgentConfig, key: str, value: str | None) -> None:
    manager = f"{cfg.sync.field_manager}-hold-{key}"[:128]
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": _name(cfg),
            "namespace": cfg.sync.inventory_namespace,
            "labels": {"gitops-agent.io/holds": cfg.instance},
        },
        "data": {key: value} if value is not None else {},
    }
    try:
        kube.apply(body, field_manager=manager, force=True, dry_run=False)
    except errors.ApiError as e:
        if not e.not_found:
            raise
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": cfg.sync.inventory_namespace}}
        kube.apply(namespace, field_manager=cfg.sync.field_manager, force=True, dry_run=False)
        kube.apply(body, field_manager=manager, force=True, dry_run=False)

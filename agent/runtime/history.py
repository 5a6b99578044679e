"""The sync history of each app on each cluster (Argo CD's application history): its last :data:`KEEP` syncs that
meant something (a change written, a new failure; a sync that changed nothing is not history, and so an agent that
starts writes nothing), each with the
revision, start, duration, result, what triggered it and the kind of sync, kept in the target cluster so a restart
or another replica keeps it: one ConfigMap per app (``<instance>-history-<app>`` in ``sync.inventoryNamespace``,
label ``gitops-agent.io/history``), written by server-side apply.

Owned by one worker: read from the cluster at its first sync (one LIST), changed on its thread after each sync;
:meth:`History.snapshot` is immutable for the API. A history that cannot be read or written is logged and never
fails a sync.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import types
from collections.abc import Callable, Mapping
from typing import Any

from agent import config
from reconcilers import client, engine, errors

log = logging.getLogger(__name__)

KEEP = 10
"""Syncs kept per app and cluster."""
LABEL = "gitops-agent.io/history"
_SKIPPED = (engine.ErrorKind.WAITING, engine.ErrorKind.CANCELLED, engine.ErrorKind.CLUSTER)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One sync: ``revision`` (sha) and ``ref``, ``started`` (UTC, ISO 8601), ``duration`` (seconds), ``result``
    (Succeeded or Failed), ``changes`` (objects created, configured, recreated or pruned), ``trigger`` (what asked
    for it: a new revision, a schedule, an operator's request), ``kind`` (scheduled, requested, rollout), ``error``."""

    revision: str
    ref: str
    started: str
    duration: float
    result: str
    changes: int
    trigger: str
    kind: str
    error: str | None = None

    def json(self) -> dict[str, Any]:
        """The entry as the API serves it and the ConfigMap keeps it."""
        return dataclasses.asdict(self)


def name_of(cfg: config.AgentConfig, app: str) -> str:
    """The ConfigMap of ``app``'s history: ``<instance>-history-<app>`` (a path app's ``/`` as ``-``, with a short
    hash when the name had to change)."""
    slug = re.sub(r"[^a-z0-9-]", "-", app.lower()).strip("-")
    if slug != app:
        slug = f"{slug}-{hashlib.sha256(app.encode()).hexdigest()[:8]}"
    return f"{cfg.instance}-history-{slug}"[:253]


class History:
    """The histories of one cluster's apps."""

    def __init__(self) -> None:
        self._by_app: Mapping[str, tuple[Entry, ...]] = types.MappingProxyType({})
        self._loaded = False

    def snapshot(self) -> Mapping[str, tuple[Entry, ...]]:
        """App -> its syncs, newest first (immutable; safe from any thread)."""
        return self._by_app

    def after(
        self,
        result: engine.ReconcileResult,
        trigger: str,
        kind: Callable[[str], str],
        kube: client.KubeClient | None,
        cfg: config.AgentConfig,
    ) -> None:
        """Take a finished sync: each app with something to say gets an entry (written to the cluster of
        ``kube``). ``kind(app)``: the kind of the app's sync."""
        if kube is None or (result.error_kind in _SKIPPED and not result.apps):
            return
        if not self._loaded:
            self._load(kube, cfg)
        by_app = dict(self._by_app)
        for r in result.apps:
            if r.held or r.dry_run or r.error_kind in _SKIPPED:
                continue
            c = r.counts
            changes = c["created"] + c["configured"] + c["recreated"] + c["pruned"]
            sha = r.revision.sha if r.revision else ""
            entry = Entry(
                sha, r.revision.ref if r.revision else "", r.started.isoformat(), round(r.duration, 3),
                "Succeeded" if r.ok else "Failed", changes, trigger, kind(r.app), r.error,
            )  # fmt: skip
            before = by_app.get(r.app, ())
            last = before[0] if before else None
            if not changes and (r.ok or (last is not None and last.error == r.error)):
                continue  # a sync that changed nothing (a resync, a restart), or the same failure again: not history
            by_app[r.app] = (entry, *before)[:KEEP]
            self._write(kube, cfg, r.app, by_app[r.app])
        self._by_app = types.MappingProxyType(by_app)

    def _load(self, kube: client.KubeClient, cfg: config.AgentConfig) -> None:
        try:
            items, _ = kube.list_objects(
                "", "ConfigMap", f"{LABEL}={cfg.instance}", namespace=cfg.sync.inventory_namespace
            )
        except errors.GitOpsError as e:  # unreachable, or fenced: the Lease moved (CancelledError)
            log.warning("history: not read (%s); kept from now on", e)
            self._loaded = True
            return
        found: dict[str, tuple[Entry, ...]] = {}
        for item in items:
            data = item.get("data") or {}
            try:
                entries = tuple(Entry(**e) for e in json.loads(data.get("history.json", "[]")))
                found[str(data["app"])] = entries[:KEEP]
            except (ValueError, TypeError, KeyError):
                log.warning("history: %s is not a history; ignored", (item.get("metadata") or {}).get("name"))
        self._by_app = types.MappingProxyType(found)
        self._loaded = True

    def _write(self, kube: client.KubeClient, cfg: config.AgentConfig, app: str, entries: tuple[Entry, ...]) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name_of(cfg, app),
                "namespace": cfg.sync.inventory_namespace,
                "labels": {LABEL: cfg.instance},
            },
            "data": {"app": app, "history.json": json.dumps([e.json() for e in entries])},
        }
        try:
            kube.apply(body, field_manager=cfg.sync.field_manager, force=True, dry_run=False)
        except errors.GitOpsError as e:  # unreachable, or fenced: the Lease moved (CancelledError)
            log.warning("history of app %s: not written (%s)", app, e)

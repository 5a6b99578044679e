"""Trace: who manages a live object (``flux trace``; Argo CD's resource view). For each cluster asked about it
answers which app manages the object, from which source, revision, file and document, what its last sync did to
it, whether it drifted since and its health; for an object no app manages, that it is not managed, with the field
managers found on the live object (its ``managedFields``: who does write it).

Read from what the workers published (the last sync's result, the drift snapshot, the live cache), and, for an
object not in the live cache, one GET bounded by ``sync.requestTimeout``. Used by :mod:`agent.api.server`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent import apps
from agent.runtime import appstatus, state
from agent.sync import view as view_
from reconcilers import errors, resources

if TYPE_CHECKING:  # the running agent is only passed in: a one-shot ``sync --resource`` never loads its scheduler
    from agent.runtime import fleet


def parse(ref: str) -> resources.ResourceKey:
    """``Kind[.group]/namespace/name`` (``Kind[.group]/name`` for a cluster-scoped object), as kubectl names
    objects: ``Deployment.apps/web/frontend``, ``ConfigMap/web/settings``, ``Namespace/web``. Raises ConfigError
    naming the form."""
    parts = ref.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise errors.ConfigError(f"{ref!r}: give Kind[.group]/namespace/name, or Kind[.group]/name")
    kind, _, group = parts[0].partition(".")
    namespace = parts[1] if len(parts) == 3 else ""
    return resources.ResourceKey(group, kind, namespace, parts[-1])


def trace(agent: fleet.Fleet, key: resources.ResourceKey, cluster: str | None = None) -> dict[str, Any]:
    """``{"object": {group, kind, namespace, name}, "clusters": [...]}``: per cluster (every one, or ``cluster``)
    the app managing ``key`` there and what is known of it (see the module docstring). Raises ConfigError for an
    unknown cluster."""
    names = [agent.cfg.cluster(cluster).name] if cluster else [c.name for c in agent.cfg.clusters]
    return {"object": appstatus.key_json(key), "clusters": [_on(agent, name, key) for name in names]}


def _on(agent: fleet.Fleet, cluster: str, key: resources.ResourceKey) -> dict[str, Any]:
    last = agent.state.last(cluster)
    w = agent.worker_of(cluster)
    view = w.view() if w is not None else None
    found = next((a for a in (last.apps if last is not None else ()) if key in a.desired), None)
    if found is None or last is None:
        out: dict[str, Any] = {"cluster": cluster, "managed": False}
        if last is None:
            out["reason"] = "no sync of this cluster finished yet: not known"
            return out
        live = view.read(key) if view is not None else None
        if live is None:
            out["reason"] = "no app of this agent manages it, and it does not exist on the cluster"
            return out
        out["reason"] = "no app of this agent manages it"
        out["fieldManagers"] = _managers(live)
        return out
    entry = next((e for e in found.entries if e.key == key), None)
    unit = next((u for u in apps.units(agent.cfg, agent.cfg.cluster(cluster)) if u.name == found.app), None)
    origin = entry.origin if entry is not None else ""
    file, _, document = origin.partition("#")
    snap, _ = appstatus.drifted_of(agent, cluster)
    drifted = [d for d in snap.by_app.get(found.app, ()) if d.key == key]
    health = view.health([key]).get(key) if view is not None and view is not view_.UNWATCHED else None
    return {
        "cluster": cluster,
        "managed": True,
        "app": found.app,
        "source": unit.source if unit is not None else None,
        "path": unit.path if unit is not None else None,
        "revision": state.revision_json(found.revision),
        "file": file,
        "document": document,
        "lastSync": {
            "started": found.started.isoformat(),
            "action": entry.action.value if entry is not None else None,
            "message": entry.message if entry is not None else "",
        },
        "drifted": [{"fields": list(d.fields), "reason": d.why} for d in drifted],
        "health": {"status": health.status.value, "message": health.message} if health is not None else None,
        "held": found.held or None,
    }


def _managers(live: resources.Body) -> list[dict[str, str]]:
    """The field managers of ``live`` (its ``managedFields``): manager, operation and time, newest first."""
    entries = (live.get("metadata") or {}).get("managedFields") or []
    found = [
        {"manager": str(e.get("manager", "")), "operation": str(e.get("operation", "")), "time": str(e.get("time", ""))}
        for e in entries
        if isinstance(e, dict)
    ]
    return sorted(found, key=lambda e: e["time"], reverse=True)

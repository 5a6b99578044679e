"""What the agent knows about its clusters and source, for the status API: the last reconcile of each cluster,
its recent history, and the source's revision and fetch errors. Thread-safe; written by ``agent.runtime.fleet``,
read by ``agent.api.server``.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import threading
from typing import Any

from reconcilers import engine, resources

HISTORY = 10
"""Reconciles kept per cluster: the last one whole (its per-object entries), the ones before it as the summaries
the status API shows (:func:`result_json` without objects), so the history costs the same at 10 or 10,000
objects."""


def result_json(
    r: engine.ReconcileResult, *, objects: bool = True, apps: bool = False, app_objects: bool = False
) -> dict[str, Any]:
    """The JSON form of one reconcile (``objects`` adds the per-object entries, each naming its ``app``); with
    ``apps``, a cluster's result lists its ``apps`` (each one's result, with its entries when ``app_objects``).
    The status API leaves the apps out here: it shows them as cells (:mod:`agent.runtime.appstatus`)."""
    out: dict[str, Any] = {
        "revision": revision_json(r.revision),
        "started": r.started.isoformat(),
        "durationSeconds": round(r.duration, 3),
        "result": "Succeeded" if r.ok else "Failed",
        "dryRun": r.dry_run,
        "counts": r.counts,
        "error": r.error,
        "errorKind": r.error_kind.value if r.error_kind else None,
    }
    if r.problem is not None:
        out["problem"] = r.problem.as_json()
    if r.app:
        out["app"] = r.app
    if r.held:
        out["held"] = r.held
    if r.health is not None:  # the sync waited for health
        out["health"], out["healthMessage"] = r.health.value, r.health_message
    runs = [(r.app, h) for h in r.hooks] + [(a.app, h) for a in r.apps for h in a.hooks]
    if runs:
        out["hooks"] = [{**h.as_json(), **({"app": app} if app else {})} for app, h in runs]
    plans = {a.app: plan_json(a.plan) for a in (r.apps or (r,)) if a.plan is not None and phased(a.plan)}
    if plans:
        out["plans"] = plans  # by app: the steps of each app that has hooks or more than one wave
    if apps and r.apps:
        out["apps"] = [result_json(a, objects=app_objects) for a in r.apps]
    if objects:
        out["objects"] = [_entry_json(e, app) for e, app in zip(r.entries, owners(r), strict=True)]
        healths = r.healths if not r.apps else {k: h for a in r.apps for k, h in a.healths.items()}
        for o, e in zip(out["objects"], r.entries, strict=True) if healths else ():
            if (h := healths.get(e.key)) is not None:
                o["health"], o["healthMessage"] = h.status.value, h.message
    return out


def owners(r: engine.ReconcileResult) -> list[str]:
    """The app of each of ``r``'s entries, in order (``""`` for an orphan). A cluster's entries are its written
    apps' (:func:`agent.sync.appresults.aggregate`: an app the gate held ran as a dry run, its entries are in
    its own result only)."""
    found = [a.app for a in r.apps if not a.held for _ in a.entries] if r.apps else [r.app] * len(r.entries)
    return found + [""] * (len(r.entries) - len(found))


def _entry_json(e: engine.ChangeSetEntry, app: str) -> dict[str, Any]:
    return {
        "group": e.key.group,
        "kind": e.key.kind,
        "namespace": e.key.namespace,
        "name": e.key.name,
        "action": e.action.value,
        "source": e.origin,
        "message": e.message,
        **({"app": app} if app else {}),
        **({"diff": e.diff.unified, "changedPaths": list(e.diff.paths)} if e.diff else {}),
    }


def phased(plan: engine.Plan) -> bool:
    """True when ``plan`` has hooks or more than one step (worth showing)."""
    return len(plan.steps) > 1 or bool(plan.on_fail) or any(s.hooks for s in plan.steps)


def plan_json(plan: engine.Plan) -> list[dict[str, Any]]:
    """The steps of a sync: ``[{"phase": "PreSync", "wave": 0, "objects": 0, "hooks": ["Job ns/migrate-"]}, ...]``
    (SyncFail steps last, run only when the sync fails)."""
    return [
        {"phase": s.phase.value, "wave": s.wave, "objects": len(s.synced), "hooks": [str(m.key) for m in s.hooks]}
        for s in (*plan.steps, *plan.on_fail)
    ]


def revision_json(rev: resources.Revision | None) -> dict[str, str] | None:
    """``{"sha": ..., "ref": ...}`` or None."""
    return {"sha": rev.sha, "ref": rev.ref} if rev else None


class AgentState:
    """The status of the source and of every cluster."""

    def __init__(self, cluster_names: list[str], source_names: list[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._history: dict[str, collections.deque[dict[str, Any]]] = {
            n: collections.deque(maxlen=HISTORY - 1) for n in cluster_names
        }
        self._last: dict[str, engine.ReconcileResult] = {}
        self._summaries: dict[str, dict[str, Any]] = {}  # cluster -> result_json(its last result, objects=False)
        self._hook_runs: dict[tuple[str, str], tuple[resources.Revision | None, tuple[engine.HookRun, ...]]] = {}
        self._sources: dict[str, SourceState] = {n: SourceState() for n in source_names or ["default"]}
        self.config_error: str | None = None
        self.config_loaded = datetime.datetime.now(datetime.UTC)

    def record_config(self, error: str | None) -> None:
        """Record a config reload: None when the file was valid (and applied), else why it was refused."""
        with self._lock:
            self.config_error = error
            if error is None:
                self.config_loaded = datetime.datetime.now(datetime.UTC)

    def set_sources(self, names: list[str]) -> None:
        """Track the sources ``names`` (a reload): new ones start unfetched, removed ones are forgotten."""
        with self._lock:
            self._sources = {n: self._sources.get(n) or SourceState() for n in names}

    def record_fetch(self, revision: resources.Revision | None, error: str | None, source: str = "default") -> None:
        """Record a fetch of ``source``: the new revision (None keeps the last good one) and its error, if any."""
        with self._lock:
            found = self._sources.setdefault(source, SourceState())
            found.last_fetch = datetime.datetime.now(datetime.UTC)
            if revision is not None:
                found.revision = revision
            found.error = error

    def stale(self, source: str) -> str | None:
        """Why ``source`` is stale (its last fetch failed), or None."""
        with self._lock:
            found = self._sources.get(source)
            return found.error if found else None

    def record(self, result: engine.ReconcileResult) -> None:
        """Record a finished reconcile (its summary, :func:`result_json` without objects, is made here once: a
        status poll reads it for every cluster)."""
        summary = result_json(result, objects=False)
        with self._lock:
            history = self._history.setdefault(result.cluster, collections.deque(maxlen=HISTORY - 1))
            previous = self._summaries.get(result.cluster)
            if previous is not None:
                history.append(previous)
            self._last[result.cluster] = result
            self._summaries[result.cluster] = summary
            for r in result.apps or (result,):
                if r.hooks and not r.dry_run:
                    self._hook_runs[(result.cluster, r.app)] = (r.revision, r.hooks)

    def hook_runs(self, cluster: str, app: str) -> dict[str, Any] | None:
        """The hook runs of the last sync of ``app`` on ``cluster`` that ran hooks (resyncs with nothing to change
        run none, and keep these): ``{"revision": {...}, "runs": [...]}``, or None when none ran yet."""
        with self._lock:
            found = self._hook_runs.get((cluster, app))
        if found is None:
            return None
        return {"revision": revision_json(found[0]), "runs": [h.as_json() for h in found[1]]}

    def add(self, name: str) -> None:
        """Start tracking cluster ``name`` (a config reload added it)."""
        with self._lock:
            self._history.setdefault(name, collections.deque(maxlen=HISTORY - 1))

    def forget(self, name: str) -> None:
        """Stop tracking cluster ``name`` (a config reload removed it)."""
        with self._lock:
            self._history.pop(name, None)
            self._last.pop(name, None)
            self._summaries.pop(name, None)
            self._hook_runs = {k: v for k, v in self._hook_runs.items() if k[0] != name}

    def last(self, name: str) -> engine.ReconcileResult | None:
        """The last reconcile of cluster ``name`` (None before the first)."""
        with self._lock:
            return self._last.get(name)

    def cluster_json(self, name: str, *, objects: bool = True) -> dict[str, Any] | None:
        """The status of one cluster (None when unknown); ``objects=False`` leaves out the last sync's
        per-object entries."""
        with self._lock:
            history = self._history.get(name)
            if history is None:
                return None
            earlier = list(history)
            last = self._last.get(name)
            summary = self._summaries.get(name)
        if last is None or summary is None:
            return {"name": name, "lastSync": None, "history": earlier[::-1]}
        return {
            "name": name,
            "lastSync": result_json(last, objects=True) if objects else dict(summary),
            "history": [dict(summary), *earlier[::-1]],
        }

    def names(self) -> list[str]:
        """The clusters tracked, in config order."""
        with self._lock:
            return list(self._history)

    def source_json(self) -> dict[str, Any]:
        """The sources (each: revision, last fetch, error, stale; ``source`` is the one named ``default``, else
        the first) and the config file (loaded, error)."""
        with self._lock:
            sources = {n: s.json() for n, s in self._sources.items()}
            return {
                "source": sources.get("default") or next(iter(sources.values()), SourceState().json()),
                "sources": sources,
                "config": {"loaded": self.config_loaded.isoformat(), "error": self.config_error},
            }


@dataclasses.dataclass
class SourceState:
    """One source's last fetch: the revision last fetched well, when, and the error of the last attempt."""

    revision: resources.Revision | None = None
    last_fetch: datetime.datetime | None = None
    error: str | None = None

    def json(self) -> dict[str, Any]:
        """``{"revision", "lastFetch", "error", "stale"}``."""
        return {
            "revision": revision_json(self.revision),
            "lastFetch": self.last_fetch.isoformat() if self.last_fetch else None,
            "error": self.error,
            "stale": self.error is not None,
        }

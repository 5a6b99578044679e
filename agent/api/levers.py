"""The operators' levers on the HTTP API (behind the same bearer token as the rest of it):

- ``POST /api/v1/apps/{app}/suspend`` and ``/resume`` (body ``{"cluster", "reason", "by"}``, all optional): the
  app everywhere it is placed, or on one cluster;
- ``POST /api/v1/clusters/{name}/suspend`` and ``/resume``: the whole cluster;
- ``POST /api/v1/apps/{app}/sync`` (body ``{"cluster", "resources"}``, optional): sync the app now as an
  operator's request (an app with ``sync.auto: false`` is written only so); with ``resources``, a selective sync
  of those objects only (400 for a reference not of the form ``Kind[.group]/namespace/name``);
- ``GET /api/v1/apps/{app}/history``: its last syncs per cluster, newest first;
- ``POST /api/v1/apps/{app}/rollback`` (body ``{"cluster", "to", "by", "untilNewRevision"}``) and ``/unpin``
  (``{"cluster", "by"}``): pin the app on a cluster to an earlier revision of its source, or release it (409
  for a revision not in the source).

A suspend or resume answers 200 with the clusters written and those that could not be (``failed``), 404 for an
unknown app or cluster. An app's sync a sync window blocks (without ``manualSync: true``) is refused with 409
naming the window. See :mod:`agent.runtime.levers`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fastapi
import pydantic

from agent.api import guard
from agent.runtime import fleet, levers, trace
from reconcilers import errors


class HoldRequest(pydantic.BaseModel):
    """A suspend or resume: ``cluster`` (only there; default every cluster the app is placed on), ``reason``
    (shown in the status), ``by`` (who asks, shown in the status and events; default ``api``)."""

    model_config = pydantic.ConfigDict(extra="forbid")
    cluster: str | None = None
    reason: str = pydantic.Field(default="", max_length=500)
    by: str = pydantic.Field(default="api", min_length=1, max_length=100)


class RollbackRequest(pydantic.BaseModel):
    """A rollback: pin the app on ``cluster`` to ``to`` (a SHA, tag or branch of its source), as ``by``; with
    ``untilNewRevision``, released once the source's head moves on."""

    model_config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)
    cluster: str
    to: str = pydantic.Field(min_length=1, max_length=200)
    by: str = pydantic.Field(default="api", min_length=1, max_length=100)
    until_new_revision: bool = pydantic.Field(default=False, alias="untilNewRevision")


class UnpinRequest(pydantic.BaseModel):
    """An unpin: the app on ``cluster`` goes back to its source's head."""

    model_config = pydantic.ConfigDict(extra="forbid")
    cluster: str
    by: str = pydantic.Field(default="api", min_length=1, max_length=100)


class SyncRequest(pydantic.BaseModel):
    """An app's sync asked for: ``cluster`` (only there; default every cluster it is placed on); ``resources``: a
    selective sync (Argo CD's) writing only these objects, each ``Kind[.group]/namespace/name`` (no hook runs,
    nothing is pruned; an object the app does not render fails the app's sync, naming it)."""

    model_config = pydantic.ConfigDict(extra="forbid")
    cluster: str | None = None
    resources: list[str] = []


def router(agent: fleet.Fleet, authorized: Callable[..., Any]) -> fastapi.APIRouter:
    """The levers' routes, each behind ``authorized``."""
    api = fastapi.APIRouter(dependencies=[fastapi.Depends(authorized)])

    def hold(
        request: fastapi.Request, app: str | None, cluster: str | None, body: HoldRequest, resume: bool
    ) -> dict[str, Any]:
        try:
            author = guard.by(request, body.by)
            done = levers.suspend(agent, app, cluster, by=author, reason=body.reason, resume=resume)
        except errors.ConfigError as e:
            raise fastapi.HTTPException(404, str(e)) from None
        return done.json()

    @api.post("/api/v1/apps/{app:path}/suspend")
    def suspend_app(request: fastapi.Request, app: str, body: HoldRequest | None = None) -> dict[str, Any]:
        body = body or HoldRequest()
        return hold(request, app, body.cluster, body, False)

    @api.post("/api/v1/apps/{app:path}/resume")
    def resume_app(request: fastapi.Request, app: str, body: HoldRequest | None = None) -> dict[str, Any]:
        body = body or HoldRequest()
        return hold(request, app, body.cluster, body, True)

    @api.post("/api/v1/clusters/{name}/suspend")
    def suspend_cluster(request: fastapi.Request, name: str, body: HoldRequest | None = None) -> dict[str, Any]:
        return hold(request, None, name, body or HoldRequest(), False)

    @api.post("/api/v1/clusters/{name}/resume")
    def resume_cluster(request: fastapi.Request, name: str, body: HoldRequest | None = None) -> dict[str, Any]:
        return hold(request, None, name, body or HoldRequest(), True)

    @api.post("/api/v1/apps/{app:path}/sync", status_code=202)
    def sync_app(app: str, body: SyncRequest | None = None) -> dict[str, list[str]]:
        asked = body or SyncRequest()
        try:
            objects = [trace.parse(ref) for ref in asked.resources]
        except errors.ConfigError as e:
            raise fastapi.HTTPException(400, f"resources: {e}") from None
        try:
            names = levers.targets(agent, app, asked.cluster)
        except errors.ConfigError as e:
            raise fastapi.HTTPException(404, str(e)) from None
        refused = levers.refused_by_window(agent, app, names)
        if refused:
            raise fastapi.HTTPException(409, refused)
        for name in names:
            what = f"selective sync of app {app} requested" if objects else f"sync of app {app} requested"
            agent.trigger_now(name, reason=what, requested=True, app=app, objects=objects)
        return {"triggered": names}

    @api.get("/api/v1/apps/{app:path}/history")
    def history_of(app: str) -> dict[str, Any]:
        """The app's last syncs on each cluster it is placed on, newest first (:mod:`agent.runtime.history`)."""
        try:
            names = levers.targets(agent, app, None)
        except errors.ConfigError as e:
            raise fastapi.HTTPException(404, str(e)) from None
        clusters = []
        for name in names:
            w = agent.worker_of(name)
            entries = w.history.snapshot().get(app, ()) if w is not None else ()
            clusters.append({"cluster": name, "history": [e.json() for e in entries]})
        return {"app": app, "clusters": clusters}

    @api.post("/api/v1/apps/{app:path}/rollback")
    def rollback_app(request: fastapi.Request, app: str, body: RollbackRequest) -> dict[str, Any]:
        author = guard.by(request, body.by)
        try:
            pin = levers.rollback(agent, app, body.cluster, body.to, by=author, until_new=body.until_new_revision)
        except levers.Refused as e:
            raise fastapi.HTTPException(409, str(e)) from None
        except errors.ConfigError as e:
            raise fastapi.HTTPException(404, str(e)) from None
        except errors.ClusterError as e:
            raise fastapi.HTTPException(502, f"cluster {body.cluster}: {e}") from None
        return {"cluster": body.cluster, "pinned": pin.json() if pin else None}

    @api.post("/api/v1/apps/{app:path}/unpin")
    def unpin_app(request: fastapi.Request, app: str, body: UnpinRequest) -> dict[str, Any]:
        try:
            levers.rollback(agent, app, body.cluster, None, by=guard.by(request, body.by))
        except errors.ConfigError as e:
            raise fastapi.HTTPException(404, str(e)) from None
        except errors.ClusterError as e:
            raise fastapi.HTTPException(502, f"cluster {body.cluster}: {e}") from None
        return {"cluster": body.cluster, "pinned": None}

    return api

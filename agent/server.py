"""The agent's HTTP server (FastAPI on uvicorn): liveness, readiness and the status API.

- ``GET /healthz``: 200 while the process serves;
- ``GET /readyz``: 200 once the first fetch is done and the scheduler runs, else 503;
- ``GET /api/v1/status``: the source and every cluster (revision, last sync start, duration, per-action
  counts, errors, per-object results, the last 10 syncs);
- ``GET /api/v1/clusters/{name}``: one cluster; ``POST /api/v1/sync`` and ``/api/v1/sync/{name}``: reconcile now.

The OpenAPI document is served at ``/openapi.json``. Used by ``agent.cli run``.
"""

from __future__ import annotations

import signal
from typing import Any

import fastapi
import uvicorn

from agent import scheduler
from reconcilers import errors


def create_app(agent: scheduler.Agent) -> fastapi.FastAPI:
    """The FastAPI application serving ``agent``'s status."""
    app = fastapi.FastAPI(title="gitops-agent", version="v1")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz(response: fastapi.Response) -> dict[str, str]:
        if agent.ready:
            return {"status": "ready"}
        response.status_code = 503
        return {"status": "not ready: first fetch pending or scheduler stopped"}

    @app.get("/api/v1/status")
    def status() -> dict[str, Any]:
        return agent.status_json()

    @app.get("/api/v1/clusters/{name}")
    def cluster(name: str) -> dict[str, Any]:
        found = agent.cluster_json(name)
        if found is None:
            raise fastapi.HTTPException(404, f"no cluster named {name!r}")
        return found

    @app.post("/api/v1/sync", status_code=202)
    def sync_all() -> dict[str, list[str]]:
        return {"triggered": agent.trigger_now()}

    @app.post("/api/v1/sync/{name}", status_code=202)
    def sync_one(name: str) -> dict[str, list[str]]:
        try:
            return {"triggered": agent.trigger_now(name)}
        except errors.ConfigError as e:
            raise fastapi.HTTPException(404, str(e)) from None

    return app


def serve(agent: scheduler.Agent) -> None:
    """Serve ``agent`` on ``server.listen`` until SIGTERM or SIGINT, then return (a graceful stop).

    uvicorn drains connections on the signal and then re-raises it to the handler that was installed before it
    ran; a no-op SIGTERM handler makes that re-raise the clean return it is, so ``run`` exits 0 on SIGTERM.
    """
    server = agent.cfg.server
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        uvicorn.run(create_app(agent), host=server.host, port=server.port, log_level="warning", access_log=False)
    finally:
        signal.signal(signal.SIGTERM, previous)

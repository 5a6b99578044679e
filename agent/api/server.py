"""The agent's HTTP server (FastAPI on uvicorn): liveness, readiness, the status API and push webhooks.

- ``GET /``: the dashboard, one HTML page (``agent/dashboard.html``) that polls the fleet summary every 3 s: every
  cluster with revision, sync status and health, and a drill-down (the selected cluster's status, fetched with
  it) to its objects, their health and diffs.
- ``GET /healthz``: 200 while the process serves; ``GET /readyz``: 200 while the agent can make progress, else
  503 with the reasons (first fetch pending, scheduler stopped, source failing, no cluster finished a sync within
  twice ``sync.interval``). Both stay open.
- ``GET /api/v1/status``, ``GET /api/v1/clusters/{name}``: the source and every cluster (revision, sync status,
  health and health counts, last sync, per-object results, the last 10 syncs); ``GET /api/v1/status?objects=false``
  is the fleet summary without the per-object results (what the dashboard and ``gitops-agent status`` poll: its
  size does not grow with the objects); ``POST /api/v1/sync`` and ``/api/v1/sync/{name}``: reconcile now. These
  need ``Authorization: Bearer`` with ``server.token`` or one of ``server.apiTokens`` when one is configured, and
  the role the route's rule asks (:mod:`agent.api.access`, :mod:`agent.api.guard`); ``GET /api/v1/me`` says who
  a token is and what it may do; ``GET /api/v1/audit`` is the audit trail (:mod:`agent.api.audit`).
- ``GET /api/v1/events[?cluster=NAME&limit=N]``: the last 100 events, newest first (see
  ``agent.runtime.events``).
- ``GET /metrics``: Prometheus metrics (see ``agent.runtime.metrics``), behind the bearer token too.
- ``POST /api/v1/webhooks/{github,gitlab,generic}``: a push to the tracked ref fetches at once (see
  ``agent.api.webhooks``); authenticated by the provider's signature, never by the bearer token; bodies over
  ``server.maxBodyBytes`` get 413 before they are read.

The OpenAPI document is served at ``/openapi.json``. Used by ``agent.cli run``.
"""

from __future__ import annotations

import importlib.resources
import json
import signal
import ssl
from typing import Any

import fastapi
import uvicorn

from agent import config, threads
from agent.api import access, audit, guard, levers, oidc, sso, tls, webhooks
from agent.runtime import appquery, appstatus, fleet, trace
from agent.runtime import events as events_
from agent.runtime import levers as levers_
from reconcilers import errors, resources

OBJECTS = fastapi.Query(True, description="include the per-object results of the last sync (false: the summary)")


def create_app(agent: fleet.Fleet) -> fastapi.FastAPI:
    """The FastAPI application serving ``agent``. Raises ConfigError when a configured secret is missing, or when
    ``server.listen`` is not a loopback address and no ``server.token`` protects the API (unless
    ``server.allowUnauthenticated: true`` says that is meant: ``POST /api/v1/sync`` and the status would be open
    to anyone who can reach the port)."""
    server = agent.cfg.server
    protected = server.token or server.api_tokens or server.oidc
    if not protected and not server.allow_unauthenticated and not config.is_loopback(server.host):
        raise errors.ConfigError(
            f"server.listen {server.listen!r} is reachable from other hosts but neither server.token, "
            "server.apiTokens nor server.oidc is set: set one, listen on 127.0.0.1, or set "
            "server.allowUnauthenticated: true"
        )
    hooks = {
        name: ref.value(f"server.webhooks.{name}")
        for name in webhooks.PROVIDERS
        if (ref := getattr(server.webhooks, name)) is not None
    }

    def placed(app: str) -> list[str]:
        try:
            return levers_.targets(agent, app, None)
        except errors.ConfigError:
            return []

    gate = access.Access(agent.cfg, placed)
    login = sso.SingleSignOn(gate, oidc.Provider(server.oidc) if server.oidc else None)
    trail = audit.AuditLog(lambda e: agent.events.emit(events_.Event("ActionTaken", "", "", e.message())))
    authorized = guard.dependency(gate, login)

    app = fastapi.FastAPI(title="gitops-agent", version="v1")
    api = fastapi.APIRouter(dependencies=[fastapi.Depends(authorized)])
    guard.install(app, trail)
    app.include_router(login.router())

    files = importlib.resources.files("agent.api")
    page = files.joinpath("dashboard.html").read_bytes()
    script, style = files.joinpath("dashboard.js").read_bytes(), files.joinpath("dashboard.css").read_bytes()

    @app.get("/", response_class=fastapi.responses.HTMLResponse, include_in_schema=False)
    def dashboard() -> fastapi.Response:
        # The page holds no data: it asks the API (with the token the user types, when one is required).
        return fastapi.Response(page, media_type="text/html; charset=utf-8")

    @app.get("/dashboard.js", include_in_schema=False)
    def dashboard_script() -> fastapi.Response:
        return fastapi.Response(script, media_type="text/javascript; charset=utf-8")

    @app.get("/dashboard.css", include_in_schema=False)
    def dashboard_style() -> fastapi.Response:
        return fastapi.Response(style, media_type="text/css; charset=utf-8")

    @api.get("/api/v1/me")
    async def me(request: fastapi.Request) -> dict[str, Any]:
        """Who the token or session is (subject, groups, token name: ``session`` for single sign-on) and, per
        resource, the actions it may take on some of its objects (what the dashboard shows); a session's
        ``csrfToken``, which its changes must carry in ``X-CSRF-Token``."""
        who: access.Identity = request.state.identity
        may = {r: [a for a in config.ACTIONS if gate.may(who, r, a)] for r in config.RESOURCES}
        found = await login.session(request) if who.token == access.VIA_SESSION else None
        return {"subject": who.subject, "groups": list(who.groups), "token": who.token, "may": may,
                "csrfToken": found.csrf if found else None}  # fmt: skip

    @api.get("/api/v1/audit", response_class=fastapi.responses.JSONResponse)
    def audit_trail(
        limit: int = fastapi.Query(100, ge=1, le=audit.KEEP), subject: str | None = None
    ) -> fastapi.Response:
        """The audit trail, newest first: every mutating request and every refused one (:mod:`agent.api.audit`)."""
        return _json({"audit": trail.json(limit, subject)})

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        responses={503: {"description": "cannot make progress (the reasons are in the body)"}},
    )
    def readyz(response: fastapi.Response) -> dict[str, Any]:
        reasons = agent.not_ready()
        if not reasons:
            return {"status": "ready"}
        response.status_code = 503
        return {"status": "not ready", "reasons": reasons}

    @api.get("/api/v1/status", response_class=fastapi.responses.JSONResponse)
    def status(objects: bool = OBJECTS, apps: bool = True) -> fastapi.Response:
        return _json(agent.status_json(objects=objects, apps=apps))

    @api.get("/api/v1/clusters/{name}", response_class=fastapi.responses.JSONResponse)
    def cluster(name: str, objects: bool = OBJECTS) -> fastapi.Response:
        found = agent.cluster_json(name, objects=objects)
        if found is None:
            raise fastapi.HTTPException(404, f"no cluster named {name!r}")
        return _json(found)

    @api.get("/api/v1/apps", response_class=fastapi.responses.JSONResponse)
    def apps_all(
        sync: str | None = None,
        health: str | None = None,
        cluster: str | None = None,
        app_set: str | None = fastapi.Query(None, alias="appSet"),
        q: str | None = None,
        limit: int | None = fastapi.Query(None, ge=1, le=10_000),
        after: str | None = fastapi.Query(None, alias="continue"),
        label: str | None = None,
    ) -> fastapi.Response:
        """Every app (filtered and paged when asked: :class:`appquery.AppQuery`; ``label``: a label selector in
        kubectl's syntax), ``total`` how many match, and ``continue`` the token of the next page (absent on the
        last). 400 for a label selector that cannot be read."""
        try:
            selector = config.parse_selector(label) if label else ()
        except ValueError as e:
            raise fastapi.HTTPException(400, str(e)) from None
        query = appquery.AppQuery(sync, health, cluster, app_set, q, limit, after, selector)
        try:
            found, total, more = appquery.page(appstatus.apps_json(agent, compact=True), query)
        except appquery.ExpiredContinueError as e:
            raise fastapi.HTTPException(410, str(e)) from None
        return _json({"apps": found, "total": total, **({"continue": more} if more else {})})

    @api.get("/api/v1/apps/{name:path}", response_class=fastapi.responses.JSONResponse)  # a path app: apps/dev
    def app_one(name: str, objects: bool = OBJECTS) -> fastapi.Response:
        found = appstatus.apps_json(agent, app=name, objects=objects)
        if not found:
            raise fastapi.HTTPException(404, f"no app named {name!r}")
        return _json(found[0])

    @api.get("/api/v1/appsets", response_class=fastapi.responses.JSONResponse)
    def appsets_all() -> fastapi.Response:
        """Each app set: its generators, the apps it made, its last generation and error."""
        return _json({"appSets": agent.appsets.status_json()})

    @api.get("/api/v1/appsets/{name}", response_class=fastapi.responses.JSONResponse)
    def appset_one(name: str) -> fastapi.Response:
        found = [s for s in agent.appsets.status_json() if s["name"] == name]
        if not found:
            raise fastapi.HTTPException(404, f"no app set named {name!r}")
        return _json(found[0])

    @api.get("/api/v1/events", response_class=fastapi.responses.JSONResponse)
    def events(cluster: str | None = None, limit: int = fastapi.Query(100, ge=0, le=100)) -> fastapi.Response:
        return _json({"events": agent.events.json(cluster, limit)})

    @api.get("/api/v1/trace", response_class=fastapi.responses.JSONResponse)
    def trace_object(
        kind: str, name: str, namespace: str = "", group: str = "", cluster: str | None = None
    ) -> fastapi.Response:
        """Which app manages a live object, from which source, revision, file and document (or its field managers
        when no app does), per cluster (:mod:`agent.runtime.trace`)."""
        try:
            found = trace.trace(agent, resources.ResourceKey(group, kind, namespace, name), cluster)
        except errors.ConfigError as e:
            raise fastapi.HTTPException(404, str(e)) from None
        return _json(found)

    @api.get("/api/v1/debug/threads")
    def debug_threads() -> dict[str, Any]:
        """Every thread of the agent process: name, owner (:mod:`agent.threads`), state and age."""
        return {"threads": threads.table()}

    @api.get("/metrics", response_class=fastapi.responses.PlainTextResponse)
    def prometheus() -> fastapi.Response:
        return fastapi.Response(agent.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @api.post("/api/v1/sync", status_code=202)
    def sync_all() -> dict[str, list[str]]:
        return {"triggered": agent.trigger_now(requested=True)}

    @api.post("/api/v1/sync/{name}", status_code=202)
    def sync_one(name: str) -> dict[str, list[str]]:
        try:
            return {"triggered": agent.trigger_now(name, requested=True)}
        except errors.ConfigError as e:
            raise fastapi.HTTPException(404, str(e)) from None

    @app.post("/api/v1/webhooks/{provider}")
    async def webhook(provider: str, request: fastapi.Request, response: fastapi.Response) -> dict[str, Any]:
        secret = hooks.get(provider)
        if secret is None:
            raise fastapi.HTTPException(404, f"no {provider!r} webhook is configured")
        body = await _read_capped(request, server.max_body_bytes)
        if body is None:
            raise fastapi.HTTPException(413, f"body over {server.max_body_bytes} bytes")
        sources = {n: (s.url, s.ref) for n, s in agent.cfg.all_sources().items()}
        verdict = webhooks.judge(provider, secret, request.headers, body, sources)
        if verdict.status >= 400:
            raise fastapi.HTTPException(verdict.status, verdict.reason)
        if verdict.pull_requests:
            agent.appsets.refresh_pull_requests()
        if verdict.trigger and verdict.sources:
            agent.fetch_soon(list(verdict.sources))
        response.status_code = verdict.status
        return {"triggered": verdict.trigger, "reason": verdict.reason, "sources": list(verdict.sources)}

    app.include_router(levers.router(agent, authorized))  # before the GET apps/{name:path} catch-all, distinct verb
    app.include_router(api)
    return app


def _json(doc: dict[str, Any]) -> fastapi.Response:
    """``doc`` as compact JSON, encoded once: the status of 50,000 objects is not copied through FastAPI's
    response-model validation and ``jsonable_encoder`` first (it is plain JSON data already)."""
    return fastapi.Response(json.dumps(doc, separators=(",", ":")).encode(), media_type="application/json")


async def _read_capped(request: fastapi.Request, cap: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed ``cap`` bytes (by Content-Length or while reading)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > cap:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def serve(agent: fleet.Fleet) -> None:
    """Serve ``agent`` on ``server.listen`` until SIGTERM or SIGINT, then return (a graceful stop).

    uvicorn drains connections on the signal and then re-raises it to the handler that was installed before it
    ran; a no-op SIGTERM handler makes that re-raise the clean return it is, so ``run`` exits 0 on SIGTERM. With
    ``server.tls``, HTTPS with the certificate reloaded when its files change (:mod:`agent.api.tls`); raises
    ConfigError when they do not load.
    """
    server = agent.cfg.server
    app = create_app(agent)
    settings = uvicorn.Config(app, host=server.host, port=server.port, log_level="warning", access_log=False)
    reloader = None
    if server.tls is not None:  # uvicorn makes its context from files: this one is loaded and reloaded by us
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load(context, server.tls)
        settings.load()
        settings.ssl = context
        reloader = tls.Reloader(context, server.tls)
        reloader.start()
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        uvicorn.Server(settings).run()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if reloader is not None:
            reloader.stop()

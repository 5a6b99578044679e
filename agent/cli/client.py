"""The commands that ask a running agent (``gitops-agent run``) over its HTTP API: ``status``, ``get``,
``events`` and ``reconcile``.

The agent is found as ``--url`` says, else at the config's ``server.listen`` (``--config`` or
``$GITOPS_AGENT_CONFIG``; a wildcard address is asked on loopback), else at 127.0.0.1:8080; the bearer token comes
from ``--token-env`` (default ``$GITOPS_AGENT_TOKEN``), else from the config's ``server.token``. Every request has
a 10 s timeout. An agent that cannot be asked is an error (exit 2) with a hint. Used by :mod:`agent.cli`.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import pathlib
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import rich.markup

from agent import config, kubeyaml
from agent.cli import output
from reconcilers import errors

TIMEOUT = 10.0
"""Seconds one request to the agent may take."""


class AgentError(Exception):
    """The agent could not be asked, or refused: the message and a hint for the user."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


@dataclasses.dataclass(frozen=True)
class Client:
    """The agent at ``base`` (``http://host:port``), with its bearer ``token`` (None: none sent), and where the
    address came from (for hints)."""

    base: str
    token: str | None
    origin: str

    @classmethod
    def of(cls, url: str | None, config_path: str | None, token_env: str) -> Client:
        """The client the flags describe (see the module doc). Raises :class:`errors.ConfigError` for a ``--url``
        that is not http(s) and for a config that does not load."""
        token = os.environ.get(token_env) or None
        if url:
            if not url.startswith(("http://", "https://")):
                raise errors.ConfigError(f"--url must be an http:// or https:// address, not {url!r}")
            return cls(url.rstrip("/"), token, "--url")
        if not config_path:
            return cls(
                "http://127.0.0.1:8080", token, "the default address (no --url, --config or GITOPS_AGENT_CONFIG)"
            )
        server = _server_of(config_path)
        host = server.host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host  # noqa: S104
        port = server.listen.rpartition(":")[2]
        if token is None and server.token is not None:
            token = server.token.value("server.token").decode()
        shown = f"[{host}]" if ":" in host else host
        scheme = "https" if server.tls is not None else "http"
        return cls(f"{scheme}://{shown}:{port}", token, f"server.listen of {config_path}")

    def get(self, path: str) -> Any:
        """GET ``path`` (``/api/v1/...``) as JSON. Raises :class:`AgentError`."""
        return self._call("GET", path)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """POST ``path`` (with ``body`` as JSON when given), the answer as JSON. Raises :class:`AgentError`."""
        return self._call("POST", path, body)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)  # noqa: S310 - http(s) checked
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:  # noqa: S310 - the user's own agent
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            detail = _detail(e)
            if e.code == 401:
                raise AgentError(
                    f"{self.base} refused the request (401): {detail}",
                    "give the agent's token: $GITOPS_AGENT_TOKEN (or --token-env), or server.token in --config",
                ) from None
            if e.code == 404:
                raise AgentError(detail or f"{path}: not found") from None
            raise AgentError(f"{self.base}{path} answered {e.code}: {detail}") from None
        except (OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise AgentError(
                f"cannot reach the agent at {self.base}: {reason}",
                f"is `gitops-agent run` running and listening there? the address came from {self.origin}",
            ) from None


def _server_of(path: str) -> config.ServerConfig:
    """The ``server`` section of the config at ``path``, also when the rest of it is refused (an edit the running
    agent refused to reload is what ``status`` must then show). Raises :class:`errors.ConfigError` when even that
    section cannot be read."""
    try:
        return config.load_config(path).server
    except errors.ConfigError as whole:
        try:
            raw = kubeyaml.load_own(pathlib.Path(path).read_text(encoding="utf-8"))
            return config.ServerConfig.model_validate((raw or {}).get("server") or {})
        except Exception:  # the whole file's error says more
            raise whole from None


def _detail(e: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(e.read() or b"{}")
    except ValueError:
        return e.reason or ""
    return str(body.get("detail") or e.reason or "") if isinstance(body, dict) else str(body)


def quoted(name: str) -> str:
    """``name`` for a URL path."""
    return urllib.parse.quote(name, safe="")


def cells(client: Client, app: str | None) -> list[dict[str, Any]]:
    """The (app, cluster) cells of every app (or of ``app``), each with its app's name."""
    if app is not None:
        found = [client.get(f"/api/v1/apps/{quoted(app)}?objects=false")]
    else:
        found = client.get("/api/v1/apps").get("apps") or []
    return [{**c, "app": a["name"]} for a in found for c in a["clusters"]]


def reconcile(client: Client, app: str | None, cluster: str | None, timeout: float) -> int:
    """``gitops-agent reconcile``: ask the agent to sync the clusters ``app`` is placed on (or ``cluster``) now,
    wait up to ``timeout`` seconds for those syncs to finish, and print each app's sync status and health there.
    0 when every cell asked about is Synced and Healthy, 1 when one is not or the wait timed out."""
    targets = [cluster] if cluster else sorted({c["cluster"] for c in cells(client, app)})
    if not targets:
        raise AgentError(f"app {app!r} is on no cluster", "see `gitops-agent get apps`")
    before = {t: _last_started(client, t) for t in targets}
    if app is not None:  # the app's own sync: an app with sync.auto false is written only so
        client.post(f"/api/v1/apps/{quoted(app)}/sync", {"cluster": cluster} if cluster else {})
    else:
        for t in targets:
            client.post(f"/api/v1/sync/{quoted(t)}")
    out = output.console()
    waiting = (
        f"sync of cluster {', '.join(targets)} requested; waiting for it (at most {output.human_duration(timeout)})"
    )
    output.console(stderr=True).print(waiting, style="dim")  # what it does while it waits: stdout keeps the table
    deadline = time.monotonic() + timeout
    pending = set(targets)
    while pending and time.monotonic() < deadline:
        for t in sorted(pending):
            if _last_started(client, t) not in (None, before[t]):
                pending.discard(t)
        if pending:
            time.sleep(0.5)
    for t in sorted(pending):
        out.print(f"[bold red]cluster {t}: no sync finished within {output.human_duration(timeout)}[/]")
    shown = [c for c in cells(client, app) if c["cluster"] in targets and (cluster is None or c["cluster"] == cluster)]
    rows = [
        [c["app"], c["cluster"], sync_text(c), health_text(c), sha_text(c.get("revision")), reason_text(c)]
        for c in shown
    ]
    output.table(["app", "cluster", "sync", "health", "revision", "reason"], rows, out)
    counted = [c for c in shown if c.get("placed", True)]
    good = not pending and all(c["syncStatus"] == "Synced" and c["health"] == "Healthy" for c in counted)
    return output.EXIT_OK if good else output.EXIT_FAILED


def _last_started(client: Client, cluster: str) -> str | None:
    found = client.get(f"/api/v1/clusters/{quoted(cluster)}?objects=false")
    return (found.get("lastSync") or {}).get("started")


def sha_text(revision: Any) -> str:
    """A revision as the API gives it (a SHA, or ``{"sha": ...}``) as 12 characters ("-" when none)."""
    if isinstance(revision, dict):
        revision = revision.get("sha")
    return str(revision or "-")[:12]


def sync_text(cell: dict[str, Any]) -> str:
    return output.coloured(cell["syncStatus"], cell["syncStatus"] == "Synced")


def health_text(cell: dict[str, Any]) -> str:
    return output.coloured(cell["health"], cell["health"] == "Healthy", "yellow")


def reason_text(cell: dict[str, Any]) -> str:
    """Why a cell is what it is: its reason, its source's staleness, or that the app left the cluster."""
    if cell.get("placed") is False:
        return "left this cluster (not counted: its objects were pruned or kept, see its last sync)"
    found = cell.get("syncStatusReason") or ""
    if cell.get("stale"):
        found = (found + "; " if found else "") + f"source stale: {cell['stale']}"
    return rich.markup.escape(found)


def rollback(client: Client, app: str, cluster: str, to: str | None, *, until_new: bool) -> int:
    """``gitops-agent rollback APP --cluster C --to REV`` (``to=None``: ``unpin``) as the local user. Prints the
    pin; 0, or raises AgentError with the agent's reason (a revision not in the source)."""
    who = getpass.getuser()
    if to is None:
        client.post(f"/api/v1/apps/{quoted(app)}/unpin", {"cluster": cluster, "by": who})
        output.console().print(f"app {app} on cluster {cluster}: unpinned, back to its source's head")
        return output.EXIT_OK
    body = {"cluster": cluster, "to": to, "by": who, "untilNewRevision": until_new}
    done = client.post(f"/api/v1/apps/{quoted(app)}/rollback", body)
    pin = done.get("pinned") or {}
    output.console().print(f"app {app} on cluster {cluster}: pinned to {str(pin.get('sha', ''))[:12]} ({to})")
    return output.EXIT_OK


def hold(client: Client, app: str | None, cluster: str | None, reason: str, *, resume: bool) -> int:
    """``gitops-agent suspend|resume``: suspend (resume) ``app`` everywhere (or on ``cluster``), or the whole
    ``cluster``, as the local user, with ``reason``. Prints the clusters written; 0 when every one was, 1 when one
    could not be."""
    verb = "resume" if resume else "suspend"
    who = getpass.getuser()
    body: dict[str, Any] = {"by": who, "reason": reason} if not resume else {"by": who}
    if app is not None:
        body |= {"cluster": cluster} if cluster else {}
        done = client.post(f"/api/v1/apps/{quoted(app)}/{verb}", body)
        what = f"app {app}"
    else:
        done = client.post(f"/api/v1/clusters/{quoted(cluster or '')}/{verb}", body)
        what = f"cluster {cluster}"
    out = output.console()
    past = "resumed" if resume else "suspended"
    for name in done.get("clusters") or []:
        out.print(f"{what}: {past} on cluster {name}")
    for name, why in (done.get("failed") or {}).items():
        out.print(f"[bold red]{what}: not {past} on cluster {name}: {rich.markup.escape(why)}[/]")
    return output.EXIT_FAILED if done.get("failed") else output.EXIT_OK

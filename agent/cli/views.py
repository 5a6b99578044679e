"""What a running agent shows: ``status``, ``get apps|clusters|sources [NAME]`` and ``events``, as kubectl shows
objects (plain tables with AGE, ``-o wide``, ``-o json|yaml`` with the API's own JSON). Used by
:mod:`agent.cli`."""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

import rich.markup

from agent.cli import output
from agent.cli.client import AgentError, Client, cells, health_text, quoted, reason_text, sha_text, sync_text
from agent.runtime import trace as trace_


def status(client: Client, app: str | None, cluster: str | None, fmt: str) -> int:
    """``gitops-agent status``: the clusters, then every (app, cluster) with its sync status, health and why; the
    sources and the config when they fail. 0 when everything shown is Synced and Healthy, else 1."""
    found = client.get("/api/v1/status?objects=false")
    clusters = [c for c in found.get("clusters") or [] if cluster is None or c["name"] == cluster]
    shown = [c for c in cells(client, app) if cluster is None or c["cluster"] == cluster]
    if app is not None:
        clusters = [c for c in clusters if c["name"] in {s["cluster"] for s in shown}]
    placed = [c for c in shown if c.get("placed", True)]  # an app that left a cluster is no verdict on it
    good = all(c.get("syncStatus") == "Synced" and c.get("health") == "Healthy" for c in clusters) and all(
        c["syncStatus"] == "Synced" and c["health"] == "Healthy" for c in placed
    )
    if fmt in ("json", "yaml"):
        output.dump({"clusters": clusters, "apps": shown, "sources": found.get("sources") or {}}, fmt)
        return output.EXIT_OK if good else output.EXIT_FAILED
    out = output.console()
    output.table(*_clusters_table(clusters, wide=fmt == "wide"), out)
    if shown:
        out.print()
        rows = [[c["app"], c["cluster"], sync_text(c), health_text(c), reason_text(c)] for c in shown]
        output.table(["app", "cluster", "sync", "health", "reason"], rows, out)
    for name, source in (found.get("sources") or {}).items():
        if source.get("error"):
            out.print(f"[bold red]source {name}:[/] {rich.markup.escape(source['error'])}")
    refused = (found.get("config") or {}).get("error")
    if refused:
        out.print(f"[bold red]config reload refused[/] (the last valid config runs): {rich.markup.escape(refused)}")
    return output.EXIT_OK if good else output.EXIT_FAILED


def _clusters_table(clusters: list[dict[str, Any]], *, wide: bool) -> tuple[list[str], list[list[str]]]:
    headers = ["name", "sync", "health", "revision", "last sync", "result"]
    headers += ["duration", "objects", "reason"] if wide else ["reason"]
    rows = []
    for c in clusters:
        last = c.get("lastSync") or {}
        sync, health = c.get("syncStatus", "Unknown"), c.get("health", "Unknown")
        row = [
            c["name"],
            output.coloured(sync, sync == "Synced"),
            output.coloured(health, health == "Healthy", "yellow"),
            ((last.get("revision") or {}).get("sha") or "-")[:12],
            output.age(last.get("started")) if last else "-",
            last.get("result", "-"),
        ]
        if wide:
            counts = ",".join(f"{n} {a}" for a, n in (last.get("counts") or {}).items() if n) or "-"
            row += [f"{last.get('durationSeconds', 0):.2f}s" if last else "-", counts]
        throttled = (c.get("worker") or {}).get("throttled")  # a sync in flight waiting out the API server
        reasons = [throttled, last.get("error") or c.get("syncStatusReason")]
        row.append(rich.markup.escape("; ".join(r for r in reasons if r)))
        rows.append(row)
    return headers, rows


def get(client: Client, kind: str, name: str | None, fmt: str) -> int:
    """``gitops-agent get apps|clusters|sources|appsets [NAME]``: a table, or the API's JSON with ``-o json|yaml``.
    0, or 2 (an :class:`agent.cli.client.AgentError`) for an unknown name."""
    if kind == "appsets":
        return _appsets(client, name, fmt)
    if kind == "apps":
        found: Any = (
            client.get(f"/api/v1/apps/{quoted(name)}?objects={'true' if fmt in ('json', 'yaml') else 'false'}")
            if name
            else client.get("/api/v1/apps").get("apps") or []
        )
    elif kind == "clusters":
        found = (
            client.get(f"/api/v1/clusters/{quoted(name)}?objects={'true' if fmt in ('json', 'yaml') else 'false'}")
            if name
            else client.get("/api/v1/status?objects=false").get("clusters") or []
        )
    else:
        sources = client.get("/api/v1/status?objects=false").get("sources") or {}
        if name is not None and name not in sources:
            raise AgentError(f"no source named {name!r}", f"the sources are: {', '.join(sorted(sources)) or 'none'}")
        found = [{"name": n, **s} for n, s in sources.items() if name is None or n == name]
    if fmt in ("json", "yaml"):
        output.dump(found, fmt)
        return output.EXIT_OK
    wide = fmt == "wide"
    if kind == "apps" and name:
        rows = [
            [c["cluster"], sync_text(c), health_text(c), sha_text(c.get("revision")), reason_text(c)]
            for c in found["clusters"]
        ]
        output.table(["cluster", "sync", "health", "revision", "reason"], rows)
    elif kind == "apps":
        output.table(*_apps_table(found, wide=wide))
    elif kind == "clusters":
        output.table(*_clusters_table([found] if name else found, wide=wide))
    else:
        rows = [_source_row(s) for s in found]
        output.table(["name", "revision", "ref", "last fetch", "error"], rows)
    return output.EXIT_OK


def _appsets(client: Client, name: str | None, fmt: str) -> int:
    found: list[dict[str, Any]] = (
        [client.get(f"/api/v1/appsets/{quoted(name)}")] if name else client.get("/api/v1/appsets")["appSets"]
    )
    if fmt in ("json", "yaml"):
        output.dump(found[0] if name else found, fmt)
        return output.EXIT_OK
    rows = [
        [
            s["name"],
            ", ".join(s["generators"]),
            str(len(s["apps"])),
            str(s["parameterSets"]),
            output.age(s.get("generated")),
            rich.markup.escape(s.get("error") or ""),
        ]
        for s in found
    ]
    output.table(["name", "generators", "apps", "parameter sets", "generated", "error"], rows)
    return output.EXIT_OK


def _source_row(s: dict[str, Any]) -> list[str]:
    ref = (s.get("revision") or {}).get("ref") or "-"
    return [
        s["name"],
        sha_text(s.get("revision")),
        ref,
        output.age(s.get("lastFetch")),
        rich.markup.escape(s.get("error") or ""),
    ]


def _apps_table(found: list[dict[str, Any]], *, wide: bool) -> tuple[list[str], list[list[str]]]:
    headers = ["name", "clusters", "synced", "healthy"] + (["source", "path"] if wide else [])
    rows = []
    for a in found:
        counts = a.get("summary") or {}
        total = counts.get("clusters", 0)
        synced = (counts.get("syncStatus") or {}).get("Synced", 0)
        healthy = (counts.get("health") or {}).get("Healthy", 0)
        row = [
            a["name"],
            str(total),
            output.coloured(f"{synced}/{total}", synced == total),
            output.coloured(f"{healthy}/{total}", healthy == total, "yellow"),
        ]
        rows.append(row + ([a.get("source") or "-", a.get("path") or "-"] if wide else []))
    return headers, rows


FOLLOW_EVERY = 2.0
"""Seconds between two reads of ``events --follow``."""


def events(client: Client, app: str | None, cluster: str | None, follow: bool, fmt: str) -> int:
    """``gitops-agent events``: the agent's newest events, oldest first (of ``cluster``; of ``app``: those whose
    message names it); with ``follow``, then each new one as it comes, until interrupted. 0."""
    query = f"?cluster={quoted(cluster)}" if cluster else ""
    seen: set[tuple[str, str, str, str]] = set()
    out = output.console()
    first = True
    while True:
        found = [e for e in reversed(client.get(f"/api/v1/events{query}").get("events") or []) if _about(e, app)]
        new = [e for e in found if _key(e) not in seen]
        seen.update(_key(e) for e in new)
        if fmt in ("json", "yaml") and follow:
            for e in new:  # one JSON object per line, as ``kubectl get -w -o json`` streams
                print(json.dumps(e), flush=True)
        elif fmt in ("json", "yaml"):
            output.dump(new, fmt)
        else:
            rows = [
                [output.age(e["time"]), e["type"], e["reason"], e["cluster"] or "-", rich.markup.escape(e["message"])]
                for e in new
            ]
            if first:
                output.table(["last seen", "type", "reason", "cluster", "message"], rows, out)
            for row in rows if not first else ():
                out.print("   ".join(row), soft_wrap=True)
        first = False
        if not follow:
            return output.EXIT_OK
        time.sleep(FOLLOW_EVERY)


def _about(event: dict[str, Any], app: str | None) -> bool:
    return app is None or event.get("path") == app or f"app {app}:" in event.get("message", "")


def _key(event: dict[str, Any]) -> tuple[str, str, str, str]:
    return event["time"], event["reason"], event["cluster"], event["message"]


def trace(client: Client, ref: str, cluster: str | None, fmt: str) -> int:
    """``gitops-agent trace Kind[.group]/namespace/name``: per cluster, the app managing the object, its source,
    revision, file and document, the last sync's action, drift and health; or that no app manages it and its field
    managers. 0 when an app manages it everywhere asked, 1 when not (or it drifted). Raises AgentError, and
    ConfigError for a reference that is not ``Kind[.group]/namespace/name``."""
    key = trace_.parse(ref)
    query = {"kind": key.kind, "group": key.group, "namespace": key.namespace, "name": key.name}
    query |= {"cluster": cluster} if cluster else {}
    found = client.get("/api/v1/trace?" + urllib.parse.urlencode(query))
    if fmt in ("json", "yaml"):
        output.dump(found, fmt)
    else:
        out = output.console()
        for c in found["clusters"]:
            if not c["managed"]:
                managers = ", ".join(f"{m['manager']} ({m['operation']})" for m in c.get("fieldManagers") or [])
                out.print(f"[bold]cluster {c['cluster']}[/]: not managed: {rich.markup.escape(c['reason'])}")
                if managers:
                    out.print(f"  field managers: {rich.markup.escape(managers)}")
                continue
            drift = "; ".join(", ".join(d["fields"]) or d["reason"] for d in c["drifted"]) or "none"
            health = c["health"] or {}
            lines = [
                f"[bold]cluster {c['cluster']}[/]: app {c['app']} (source {c['source']}, path {c['path']})",
                f"  revision {sha_text(c.get('revision'))}, file {c['file']}, document {c['document']}",
                f"  last sync {c['lastSync']['started']}: {c['lastSync']['action']} {c['lastSync']['message']}",
                f"  drift: {drift}; health: {health.get('status', 'Unknown')} {health.get('message', '')}".rstrip(),
            ]
            if c.get("held"):
                lines.append(f"  held: {c['held']}")
            for line in lines:
                out.print(rich.markup.escape(line) if not line.startswith("[bold]") else line)
    good = all(c["managed"] and not c["drifted"] for c in found["clusters"])
    return output.EXIT_OK if good else output.EXIT_FAILED


def history(client: Client, app: str, cluster: str | None, fmt: str) -> int:
    """``gitops-agent history APP``: its last syncs on each cluster, newest first (a table, or the API's JSON).
    0; raises AgentError for an unknown app."""
    found = client.get(f"/api/v1/apps/{quoted(app)}/history")
    clusters = [c for c in found["clusters"] if cluster is None or c["cluster"] == cluster]
    if fmt in ("json", "yaml"):
        output.dump({**found, "clusters": clusters}, fmt)
        return output.EXIT_OK
    rows = [
        [c["cluster"], e["started"], sha_text(e["revision"]), e["result"], str(e["changes"]), e["kind"], e["trigger"]]
        for c in clusters
        for e in c["history"]
    ]
    output.table(["cluster", "started", "revision", "result", "changes", "kind", "trigger"], rows)
    return output.EXIT_OK

"""The ``gitops-agent`` command line.

- ``gitops-agent sync --config FILE [--cluster NAME ...] [--dry-run] [--json]``: one reconcile of every (or the
  named) cluster, a table of what was done. Exit 0 when every object applied, 1 when any object failed or a
  cluster could not be reached, 2 on a config or source error (bad config, fetch failure, malformed manifests).
- ``gitops-agent diff --config FILE [--cluster NAME ...] [--revision REV]``: per drifted object a unified diff
  and the changed paths, Secret values masked; exit 0 in sync, 1 drift, 2 error (like ``kubectl diff``).
  ``--revision`` shows what a commit not yet deployed would change in every cluster.
- ``gitops-agent run --config FILE``: the scheduler and the HTTP status server until SIGTERM; the config file
  is watched and reloaded (an invalid version is refused and the last valid one kept).
- ``gitops-agent clusters check --config FILE [--cluster NAME ...]``: per cluster reachable, authenticated as
  whom, server version, and every permission the desired state needs that is missing; exit 1 when any is.
- ``gitops-agent status [--url URL]``: a table of every cluster of a running agent; exit 1 when any is not
  Synced and Healthy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pathlib
import sys
import urllib.request
from collections.abc import Sequence
from typing import Any

import rich.console
import rich.syntax
import rich.table

from agent import __version__, config, malloc
from agent.runtime import oneshot, state
from agent.sources import local
from reconcilers import apply, engine, errors, ignore

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2

_STYLE = {
    "created": "green",
    "configured": "yellow",
    "unchanged": "dim",
    "pruned": "magenta",
    "kept": "cyan",
    "requires-pruning": "bold magenta",
    "orphaned": "bold magenta",
    "failed": "bold red",
    "skipped": "red",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="gitops-agent", description="Keep Kubernetes clusters in the state git describes."
    )
    parser.add_argument("--version", action="version", version=f"gitops-agent {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = parser.add_subparsers(dest="command", required=True)
    p_sync = sub.add_parser("sync", help="reconcile every (or the named) cluster once")
    p_sync.add_argument("--config", required=True, help="the agent config file")
    p_sync.add_argument("--cluster", action="append", help="only this cluster (repeatable)")
    p_sync.add_argument("--app", help="only this app (on the clusters it is placed on, or the --cluster ones)")
    p_sync.add_argument("--dry-run", action="store_true", help="validate and show what would change; write nothing")
    p_sync.add_argument("--json", action="store_true", help="print the results as JSON")
    p_sync.add_argument("--force-prune", action="store_true", help="prune even beyond the prune budget")
    p_sync.add_argument(
        "--prune-orphans",
        action="store_true",
        help="also delete orphans: objects with this agent's tracking annotation in neither git nor the inventory",
    )
    p_diff = sub.add_parser("diff", help="show what a sync would change (exit 0 in sync, 1 drift, 2 error)")
    p_diff.add_argument("--config", required=True, help="the agent config file")
    p_diff.add_argument("--cluster", action="append", help="only this cluster (repeatable)")
    p_diff.add_argument("--app", help="only this app")
    p_diff.add_argument("--revision", help="a commit, branch or tag of the source not yet deployed")
    p_status = sub.add_parser(
        "status", help="a table of every cluster from a running agent (exit 1 unless all are Synced and Healthy)"
    )
    p_status.add_argument("--url", default="http://127.0.0.1:8080", help="the agent's address")
    p_status.add_argument(
        "--token-env",
        default="GITOPS_AGENT_TOKEN",
        help="environment variable holding the bearer token, if the agent requires one",
    )
    p_clusters = sub.add_parser("clusters", help="cluster registration commands")
    clusters_sub = p_clusters.add_subparsers(dest="clusters_command", required=True)
    p_check = clusters_sub.add_parser(
        "check",
        help="reachable, identity, version and permissions per cluster (exit 1 when any cluster lacks something)",
    )
    p_check.add_argument("--config", required=True, help="the agent config file")
    p_check.add_argument("--cluster", action="append", help="only this cluster (repeatable)")
    p_run = sub.add_parser("run", help="run the scheduler and the HTTP status server")
    p_run.add_argument("--config", required=True, help="the agent config file")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    malloc.tune()  # before any thread allocates
    if args.command == "status":
        return _status(args.url, os.environ.get(args.token_env))
    try:
        cfg = config.load_config(args.config)
        if args.command == "sync":
            return _sync(
                cfg,
                args.cluster,
                app=args.app,
                dry_run=args.dry_run,
                as_json=args.json,
                force_prune=args.force_prune,
                prune_orphans=args.prune_orphans,
            )
        if args.command == "diff":
            return _diff(cfg, args.cluster, args.app, args.revision)
        if args.command == "clusters":
            return _clusters_check(cfg, args.cluster)
        return _run(cfg, pathlib.Path(args.config))
    except errors.GitOpsError as e:
        rich.console.Console(stderr=True).print(f"[bold red]error:[/] {e}", highlight=False)
        return EXIT_ERROR


def _sync(
    cfg: config.AgentConfig,
    names: list[str] | None,
    *,
    app: str | None,
    dry_run: bool,
    as_json: bool,
    force_prune: bool,
    prune_orphans: bool,
) -> int:
    results = oneshot.sync_fleet(
        cfg, _sources(cfg), names, app=app, dry_run=dry_run, force_prune=force_prune, prune_orphans=prune_orphans
    )
    if as_json:
        print(
            json.dumps({r.cluster: state.result_json(r, apps=True, app_objects=True) for r in results})
        )  # the C encoder
    else:
        _print(results)
    return exit_code(results)


_CHANGES = (
    apply.Action.CREATED,
    apply.Action.CONFIGURED,
    apply.Action.PRUNED,
    apply.Action.REQUIRES_PRUNING,
    apply.Action.ORPHANED,
)


def _sources(cfg: config.AgentConfig) -> dict[str, local.Source]:
    return local.open_all(cfg)


def _diff(cfg: config.AgentConfig, names: list[str] | None, app: str | None, revision: str | None) -> int:
    """Like ``kubectl diff``: 0 when every cluster is in sync, 1 when something would change, 2 on any error."""
    results = oneshot.sync_fleet(cfg, _sources(cfg), names, app=app, dry_run=True, revision=revision)
    out = rich.console.Console(highlight=False)
    if not out.is_terminal:
        out = rich.console.Console(width=200, highlight=False)
    drift = False
    for r in results:
        rev = r.revision.short if r.revision else "-"
        changed = [e for e in r.entries if e.action in _CHANGES]
        drift = drift or bool(changed)
        out.print(f"[bold]cluster {r.cluster}[/] @ {rev}: {len(changed)} object(s) would change")
        for e in changed:
            verb = {
                "configured": "drifted",
                "created": "missing (would create)",
                "pruned": "would prune",
                "requires-pruning": "requires pruning (removed from git; sync.prune is off, so a sync keeps it)",
                "orphaned": "orphan (in neither git nor the inventory; sync --prune-orphans deletes it)",
            }
            out.print(f"[bold]{verb[e.action.value]}[/] {e.key} ({e.origin})")
            if e.diff:
                out.print(rich.syntax.Syntax(e.diff.unified.rstrip("\n"), "diff", theme="ansi_dark"))
                out.print("  changed: " + ", ".join(e.diff.paths), style="dim")
        for e in r.failed:
            out.print(f"[bold red]failed[/] {e.key} ({e.origin}): {e.message}")
        for key, d in sorted(r.desired.items(), key=lambda kd: str(kd[0])):
            if d.pointers:  # ignore rules (configured, an HPA's replicas, an aggregated ClusterRole's rules)
                shown = ", ".join(ignore.pointer_text(p) for p in d.pointers)
                out.print(f"ignored {key}: {shown} (not compared, not applied over)", style="dim")
        _print_plan(out, r)
        if r.error:
            out.print(f"[bold red]error:[/] {r.error}")
    if any(r.error or r.failed for r in results):
        return EXIT_ERROR
    return EXIT_FAILED if drift else EXIT_OK


def _print_plan(out: rich.console.Console, r: engine.ReconcileResult) -> None:
    """Each app's steps (phases, waves, hooks) when it has hooks or more than one wave, with its hook runs."""
    for a in r.apps or (r,):
        plan = a.plan
        if plan is None or not state.phased(plan):
            continue
        runs = {(h.phase, h.origin): h for h in a.hooks}
        idle = "not run: nothing to change" if a.ok and not any(e.action in _CHANGES for e in a.entries) else "not run"
        out.print(f"  plan of app [bold]{a.app}[/]:", highlight=False)
        for step in (*plan.steps, *plan.on_fail):
            parts = [f"{len(step.synced)} object(s)"] if step.synced else []
            for m in step.hooks:
                run = runs.get((step.phase, m.origin))
                if run is None:
                    parts.append(f"hook {m.key} ({'on failure' if step in plan.on_fail else idle})")
                else:
                    parts.append(f"hook {run.key} ({run.result}{': ' + run.message if run.message else ''})")
            out.print(f"    {step.label}: " + "; ".join(parts), highlight=False)


def _status(url: str, token: str | None) -> int:
    """Print every cluster's sync status and health; 0 when all are Synced and Healthy, 1 otherwise, 2 when the
    agent cannot be asked."""
    err = rich.console.Console(stderr=True, highlight=False)
    if not url.startswith(("http://", "https://")):
        err.print(f"[bold red]error:[/] --url must be an http:// or https:// address, not {url!r}")
        return EXIT_ERROR
    request = urllib.request.Request(url.rstrip("/") + "/api/v1/status?objects=false")  # noqa: S310 - scheme checked above
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - the user's own agent URL
            status = json.loads(resp.read())
        request = urllib.request.Request(url.rstrip("/") + "/api/v1/apps", headers=request.headers)  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - the user's own agent URL
            found_apps = json.loads(resp.read()).get("apps") or []
    except (OSError, ValueError) as e:
        err.print(f"[bold red]error:[/] cannot read {request.full_url}: {e}")
        return EXIT_ERROR
    table = rich.table.Table(title=f"gitops-agent at {url}", title_justify="left")
    for col in ("cluster", "revision", "sync", "health", "last sync", "duration", "result", "objects", "error"):
        table.add_column(col, overflow="fold")
    healthy = True
    for c in status.get("clusters") or []:
        last = c.get("lastSync") or {}
        sync, health = c.get("syncStatus", "Unknown"), c.get("health", "Unknown")
        healthy = healthy and sync == "Synced" and health == "Healthy"
        rev = ((last.get("revision") or {}).get("sha") or "-")[:12]
        counts = ", ".join(f"{n} {a}" for a, n in (last.get("counts") or {}).items() if n)
        table.add_row(
            c["name"],
            rev,
            f"[{'green' if sync == 'Synced' else 'red'}]{sync}[/]",
            f"[{'green' if health == 'Healthy' else 'yellow'}]{health}[/]",
            last.get("started", "-"),
            f"{last.get('durationSeconds', 0):.2f}s" if last else "-",
            last.get("result", "-"),
            counts,
            last.get("error") or "",
        )
    out = rich.console.Console(highlight=False)
    if not out.is_terminal:
        out = rich.console.Console(width=200, highlight=False)
    out.print(table)
    if found_apps:
        out.print(_apps_matrix(found_apps, [c["name"] for c in status.get("clusters") or []]))
        healthy = healthy and all(
            c["syncStatus"] == "Synced" and c["health"] == "Healthy" for a in found_apps for c in a["clusters"]
        )
    sources: dict[str, Any] = status.get("sources") or {"default": status.get("source") or {}}
    for source_name, source in sources.items():
        if source.get("error"):
            out.print(f"[bold red]source {source_name}:[/] {source['error']}")
    return EXIT_OK if healthy else EXIT_FAILED


def _apps_matrix(found: list[dict[str, Any]], clusters: list[str]) -> rich.table.Table:
    """Apps x clusters: each cell the app's sync status and health there ("-" where it is not placed)."""
    table = rich.table.Table(title="apps", title_justify="left")
    table.add_column("app", overflow="fold")
    for cluster in clusters:
        table.add_column(cluster, overflow="fold")
    for a in found:
        cells: dict[str, dict[str, Any]] = {c["cluster"]: c for c in a["clusters"]}
        row = []
        for name in clusters:
            cell = cells.get(name)
            if cell is None:
                row.append("-")
                continue
            good = cell["syncStatus"] == "Synced" and cell["health"] == "Healthy"
            note = f"\n{cell['syncStatusReason']}" if cell.get("syncStatusReason") else ""
            row.append(f"[{'green' if good else 'red'}]{cell['syncStatus']} {cell['health']}[/]{note}")
        table.add_row(a["name"], *row)
    return table


def _clusters_check(cfg: config.AgentConfig, names: list[str] | None) -> int:
    """0 when every cluster is reachable and allows all the desired state needs, 1 otherwise."""
    from agent.clusters import checks

    source = local.open_source(cfg.default_source)
    with contextlib.ExitStack() as held:
        try:
            checkout: pathlib.Path | None = held.enter_context(source.tree(source.fetch()))
        except errors.FetchError as e:
            err = rich.console.Console(stderr=True)
            err.print(f"[yellow]source:[/] {e}; permissions are not checked", highlight=False)
            checkout = None
        results = checks.check_all(cfg, names, checkout)
    out = rich.console.Console(highlight=False)
    if not out.is_terminal:
        out = rich.console.Console(width=200, highlight=False)
    table = rich.table.Table(title="clusters check", title_justify="left")
    for col in ("cluster", "server", "version", "authenticated as", "permissions", "problem"):
        table.add_column(col, overflow="fold")
    for r in results:
        perms = (
            "-" if r.error else ("all " + str(r.checked) + " checked" if not r.missing else f"{len(r.missing)} missing")
        )
        problem = r.error or "\n".join(r.missing)
        table.add_row(
            r.cluster, r.server, r.version, r.user, perms, f"[red]{problem}[/]" if problem else "[green]ok[/]"
        )
    out.print(table)
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


def exit_code(results: Sequence[engine.ReconcileResult]) -> int:
    """2 when any cluster or app had a config or source error, else 1 when any result is not ok, else 0."""
    bad = (engine.ErrorKind.CONFIG, engine.ErrorKind.SOURCE)
    if any(r.error_kind in bad or any(a.error_kind in bad for a in r.apps) for r in results):
        return EXIT_ERROR
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


def _print(results: Sequence[engine.ReconcileResult]) -> None:
    out = rich.console.Console()
    if not out.is_terminal:
        out = rich.console.Console(width=200)
    for r in results:
        rev = r.revision.short if r.revision else "-"
        title = f"cluster [bold]{r.cluster}[/] @ {rev}{' (dry run)' if r.dry_run else ''}"
        table = rich.table.Table(title=title, title_justify="left", show_lines=False)
        several = len(r.apps) > 1
        for col in (
            ("app", "action", "object", "source", "message") if several else ("action", "object", "source", "message")
        ):
            table.add_column(col, overflow="fold")
        owners = [a.app for a in r.apps for _ in a.entries]
        owners += [""] * (len(r.entries) - len(owners))  # orphans belong to no app
        for e, app in zip(r.entries, owners, strict=True):
            style = _STYLE.get(e.action.value, "")
            row = (f"[{style}]{e.action.value}[/]", str(e.key), e.origin, e.message)
            table.add_row(*((app, *row) if several else row))
        if r.entries:
            out.print(table)
        else:
            out.print(title)
        counts = ", ".join(f"{n} {a}" for a, n in r.counts.items() if n) or "no objects"
        out.print(f"  {counts} in {r.duration:.2f}s", highlight=False)
        for a in r.apps if len(r.apps) > 1 else ():
            app_counts = ", ".join(f"{n} {k}" for k, n in a.counts.items() if n) or "no objects"
            mark = "[green]ok[/]" if a.ok else f"[bold red]{a.error_kind.value if a.error_kind else 'failed'}[/]"
            out.print(f"  app [bold]{a.app}[/]: {mark} ({app_counts})", highlight=False)
        _print_plan(out, r)
        if r.error:
            out.print(
                f"  [bold red]error ({r.error_kind.value if r.error_kind else '?'}):[/] {r.error}", highlight=False
            )
    failed = sum(1 for r in results if not r.ok)
    out.print(f"{len(results) - failed}/{len(results)} clusters synced", style="bold" if not failed else "bold red")


def _run(cfg: config.AgentConfig, path: pathlib.Path) -> int:
    # The long-running parts load only for ``run``: a one-shot ``sync`` starts faster without them.
    from agent.api import server
    from agent.runtime import fleet, reload

    agent = fleet.Fleet(cfg)
    server.create_app(agent)  # fails fast (exit 2) on a missing token or webhook secret
    agent.start()
    stop_reload = reload.start(agent, path)
    try:
        server.serve(agent)
    finally:
        stop_reload.set()
        agent.shutdown()
    return EXIT_OK


def entrypoint() -> None:
    """The console script."""
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()

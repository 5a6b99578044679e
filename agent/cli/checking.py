"""``gitops-agent clusters check``: per cluster, reachable, authenticated as whom, server version, and every
permission the desired state needs that is missing. Used by :mod:`agent.cli`."""

from __future__ import annotations

import contextlib
import pathlib

import rich.markup

from agent import config
from agent.cli import output
from agent.sources import local
from reconcilers import errors


def clusters_check(cfg: config.AgentConfig, names: list[str] | None) -> int:
    """0 when every cluster is reachable and allows all the desired state needs, 1 otherwise."""
    from agent.clusters import checks

    source = local.open_source(cfg.default_source)
    with contextlib.ExitStack() as held:
        try:
            checkout: pathlib.Path | None = held.enter_context(source.tree(source.fetch()))
        except errors.FetchError as e:
            output.console(stderr=True).print(
                f"[yellow]source:[/] {rich.markup.escape(str(e))}; permissions are not checked"
            )
            checkout = None
        results = checks.check_all(cfg, names, checkout)
    rows = []
    for r in results:
        perms = "-" if r.error else (f"all {r.checked} checked" if not r.missing else f"{len(r.missing)} missing")
        problem = r.error or "; ".join(r.missing)
        shown = f"[red]{rich.markup.escape(problem)}[/]" if problem else "[green]ok[/]"
        rows.append([r.cluster, r.server, r.version, r.user, perms, shown])
    output.table(["cluster", "server", "version", "authenticated as", "permissions", "problem"], rows)
    return output.EXIT_OK if all(r.ok for r in results) else output.EXIT_FAILED

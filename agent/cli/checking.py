"""``gitops-agent clusters check [--print-rbac]``: per cluster, reachable, authenticated as whom, server version,
and every permission its apps need that is missing (required) or would help (optional); with ``--print-rbac``, the
RBAC objects that grant them, as YAML to apply. Used by :mod:`agent.cli`."""

from __future__ import annotations

import contextlib
import sys

import rich.markup
import yaml

from agent import config
from agent.cli import output
from agent.sources import registry


def clusters_check(cfg: config.AgentConfig, names: list[str] | None, *, print_rbac: bool = False) -> int:
    """0 when every cluster is reachable and allows all its apps need, 1 otherwise (with ``print_rbac``: the RBAC
    YAML on stdout, the table on stderr)."""
    from agent.clusters import checks

    err = output.console(stderr=True)
    with contextlib.ExitStack() as held:
        trees, failed = registry.checkouts(cfg, held)
        for name, e in failed.items():
            err.print(f"[yellow]source {name}:[/] {rich.markup.escape(str(e))}; its apps' objects are not checked")
        results = checks.check_all(cfg, names, trees)
    rows = []
    for r in results:
        perms = "-" if r.error else (f"all {r.checked} checked" if not r.missing else f"{len(r.missing)} missing")
        problems = [f"[red]{rich.markup.escape(p)}[/]" for p in ([r.error] if r.error else list(r.missing))]
        problems += [f"[yellow]{rich.markup.escape(w)}[/]" for w in r.warnings]
        rows.append([r.cluster, r.server, r.version, r.user, perms, problems[0] if problems else "[green]ok[/]"])
        rows += [["", "", "", "", "", p] for p in problems[1:]]
    output.table(
        ["cluster", "server", "version", "authenticated as", "permissions", "problem"],
        rows,
        err if print_rbac else None,
    )
    if print_rbac:
        docs = [doc for r in results if not r.error for doc in checks.rbac(r)]
        sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False))
    return output.EXIT_OK if all(r.ok for r in results) else output.EXIT_FAILED

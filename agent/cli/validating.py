"""``gitops-agent config validate``: the config checked without a cluster.

The file is loaded as ``run`` would load it (keys, types, bounds, references between sources, apps and clusters:
any error is exit 2, naming the key); then every source is fetched once, the app sets generate their apps (an app
set that cannot is named, exit 1), and each app placed on a cluster is looked up in its source at the current
revision: a path that does not exist there, or holds no file a renderer reads, is named (exit 1). No cluster is
contacted. Used by :mod:`agent.cli`.
"""

from __future__ import annotations

import contextlib
import pathlib

import rich.markup

from agent import apps, config
from agent.appsets import expand
from agent.cli import output
from agent.sources import registry

READ = (".yaml", ".yml", ".json")
"""What a plain path renders (kustomize and Helm directories are told by their kustomization.yaml, Chart.yaml)."""


def validate(path: str) -> int:
    """0 when the config loads and every placed app's path is in its source; 1 when a source cannot be fetched or
    a path is missing or empty; 2 (raised :class:`errors.ConfigError`) when the config itself is wrong."""
    cfg = config.load_config(path)
    out = output.console()
    rows: list[list[str]] = []
    with contextlib.ExitStack() as held:
        fetched, failed = registry.checkouts(cfg, held)
        for name, e in failed.items():
            out.print(f"[bold red]source {name}:[/] {rich.markup.escape(str(e))}")
        good = not failed
        if cfg.generates:
            generation = expand.generate(cfg, fetched)
            for r in generation.results.values():
                shown = f"[red]{rich.markup.escape(r.error)}[/]" if r.error else f"{len(r.apps)} app(s)"
                out.print(f"app set [bold]{r.name}[/]: {shown}")
                good = good and not r.error
            cfg = generation.config
        trees: dict[str, pathlib.Path | None] = {**fetched, **dict.fromkeys(failed)}
        for cluster in cfg.clusters:
            for u in apps.units(cfg, cluster):
                if u.source not in trees:
                    continue
                problem = _problem(trees[u.source], u.path)
                good = good and not problem
                shown = f"[red]{rich.markup.escape(problem)}[/]" if problem else "[green]ok[/]"
                rows.append([u.name, cluster.name, u.source, u.path or ".", shown])
    output.table(["app", "cluster", "source", "path", "check"], rows, out)
    out.print(f"{path}: {'valid' if good else 'not valid'}", style="bold" if good else "bold red")
    return output.EXIT_OK if good else output.EXIT_FAILED


def _problem(tree: pathlib.Path | None, rel: str) -> str:
    if tree is None:
        return "not checked: its source was not fetched"
    where = tree / rel
    if not where.exists():
        return f"{rel or '.'} does not exist in the source"
    if where.is_file():
        return ""
    if not any(p.suffix in READ for p in where.rglob("*") if p.is_file() and ".git" not in p.parts):
        return f"{rel or '.'} holds no YAML or JSON file"
    return ""

"""The one-shot commands that reconcile from this process: ``sync`` and ``diff``.

Each fetches the sources once and reconciles the clusters once, concurrently (:mod:`agent.runtime.oneshot`),
with no agent running. Used by :mod:`agent.cli`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import rich.console
import rich.markup

from agent import config, config_types
from agent.appsets import expand
from agent.cli import output
from agent.runtime import oneshot, state
from agent.runtime import trace as trace_
from agent.sources import registry
from reconcilers import engine, errors, health

_STYLE = {
    "created": "green",
    "configured": "yellow",
    "recreated": "bold yellow",
    "unchanged": "dim",
    "pruned": "magenta",
    "kept": "cyan",
    "requires-pruning": "bold magenta",
    "orphaned": "bold magenta",
    "failed": "bold red",
    "skipped": "red",
}

CHANGES = (
    engine.Action.CREATED,
    engine.Action.CONFIGURED,
    engine.Action.RECREATED,
    engine.Action.PRUNED,
    engine.Action.REQUIRES_PRUNING,
    engine.Action.ORPHANED,
)
"""What ``diff`` counts as a difference between git and the cluster."""

_VERBS = {
    "configured": "drifted",
    "created": "missing (would create)",
    "recreated": "would recreate (immutable fields changed; it opted in)",
    "pruned": "would prune",
    "requires-pruning": "requires pruning (removed from git; sync.prune is off, so a sync keeps it)",
    "orphaned": "orphan (in neither git nor the inventory; sync --prune-orphans deletes it)",
}


def parse_timeout(text: str) -> float:
    """``--timeout`` (``20s``, ``5m``, ``1h``) in seconds. Raises :class:`errors.ConfigError` naming the flag for
    a value that is not a positive duration."""
    try:
        seconds = config_types.parse_duration(text)
    except (TypeError, ValueError) as e:
        raise errors.ConfigError(f"--timeout {text!r}: {e}") from None
    if seconds <= 0:
        raise errors.ConfigError(f"--timeout {text!r}: must be longer than 0s")
    return seconds


def with_timeout(cfg: config.AgentConfig, text: str) -> config.AgentConfig:
    """``cfg`` with ``sync.timeout`` from ``--timeout`` (see :func:`parse_timeout`)."""
    seconds = parse_timeout(text)
    return cfg.model_copy(update={"sync": cfg.sync.model_copy(update={"timeout": seconds})})


def sync(
    cfg: config.AgentConfig,
    names: list[str] | None,
    *,
    app: str | None,
    dry_run: bool,
    fmt: str,
    force_prune: bool,
    prune_orphans: bool,
    wait: bool | None = None,
    selected: Sequence[str] = (),
) -> int:
    """``gitops-agent sync``: reconcile once and print what was done (``fmt``: table, wide, json or yaml); see
    :func:`exit_code`. ``selected``: ``Kind[.group]/namespace/name`` references of a selective sync of ``app``.
    Raises ConfigError for a reference not of that form, or without ``app``. An app set that could not generate
    its apps is printed as an error, and the exit code is then 2."""
    failed = AppSetErrors()
    results = oneshot.sync_fleet(
        cfg,
        registry.open_all(cfg),
        names,
        app=app,
        dry_run=dry_run,
        force_prune=force_prune,
        prune_orphans=prune_orphans,
        wait=wait,
        objects=[trace_.parse(ref) for ref in selected],
        generated=failed.record,
    )
    if fmt in ("json", "yaml"):
        found: dict[str, Any] = {r.cluster: state.result_json(r, apps=True, app_objects=True) for r in results}
        if fmt == "json":
            print(json.dumps(found))  # one line, by the C encoder: a sync of 10,000 objects prints fast
        else:
            output.dump(found, fmt)
    else:
        _print(results)
    return failed.report() or exit_code(results)


class AppSetErrors:
    """Collects the app sets that could not generate their apps in a one-shot sync or diff."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def record(self, generation: expand.Generation) -> None:
        """Take ``generation``'s failed app sets."""
        self.errors += [f"app set {r.name}: {r.error}" for r in generation.results.values() if r.error]

    def report(self) -> int:
        """Print each on stderr; :data:`output.EXIT_ERROR` when there was one, else 0."""
        for message in self.errors:
            output.error(message)
        return output.EXIT_ERROR if self.errors else output.EXIT_OK


def exit_code(results: Sequence[engine.ReconcileResult]) -> int:
    """2 when any cluster or app had a config or source error, else 1 when any result is not ok, an app the write
    gate held (suspended, a sync window) has changes waiting, or a sync waited for health that did not come
    (Progressing at the timeout, Degraded, Missing: as ``argocd app wait`` and ``kubectl rollout status`` fail),
    else 0."""
    bad = (engine.ErrorKind.CONFIG, engine.ErrorKind.SOURCE)
    if any(r.error_kind in bad or any(a.error_kind in bad for a in r.apps) for r in results):
        return output.EXIT_ERROR
    unhealthy = any(a.health not in (None, health.Health.HEALTHY) for r in results for a in (*r.apps, r))
    waiting = any(a.held and _pending(a) for r in results for a in r.apps)  # changes the gate held back
    return output.EXIT_OK if all(r.ok for r in results) and not unhealthy and not waiting else output.EXIT_FAILED


def _pending(a: engine.ReconcileResult) -> int:
    """The changes an app's dry run found (what a held app would write)."""
    c = a.counts
    return c["created"] + c["configured"] + c["recreated"] + c["pruned"]


def _print(results: Sequence[engine.ReconcileResult]) -> None:
    out = output.console()
    for r in results:
        rev = r.revision.short if r.revision else "-"
        out.print(f"cluster [bold]{r.cluster}[/] @ {rev}{' (dry run)' if r.dry_run else ''}")
        rows = []
        for e, app in zip(r.entries, state.owners(r), strict=True):
            action = f"[{_STYLE.get(e.action.value, '')}]{e.action.value}[/]"
            rows.append([app, action, rich.markup.escape(str(e.key)), rich.markup.escape(e.origin), _message(e)])
        if rows:
            output.table(["app", "action", "object", "source", "message"], rows, out)
        counts = ", ".join(f"{n} {a}" for a, n in r.counts.items() if n) or "no objects"
        out.print(f"  {counts} in {r.duration:.2f}s")
        for a in r.apps if len(r.apps) > 1 else ():
            app_counts = ", ".join(f"{n} {k}" for k, n in a.counts.items() if n) or "no objects"
            mark = "[green]ok[/]" if a.ok else f"[bold red]{a.error_kind.value if a.error_kind else 'failed'}[/]"
            out.print(f"  app [bold]{a.app}[/]: {mark} ({app_counts})")
        for a in r.apps:
            if a.held:  # refused by the write gate: its sync ran as a dry run
                pending = _pending(a)
                out.print(f"  app [bold]{a.app}[/]: [yellow]held[/]: {rich.markup.escape(a.held)}; nothing written"
                          + (f", {pending} change(s) waiting" if pending else ""))  # fmt: skip
        for a in r.apps or (r,):
            if a.health is not None:
                said = output.coloured(a.health.value, a.health is health.Health.HEALTHY, "bold red")
                why = f": {rich.markup.escape(a.health_message)}" if a.health_message else ""
                out.print(f"  app [bold]{a.app}[/] health: {said}{why}")
        print_plan(out, r)
        if r.error:
            kind = r.error_kind.value if r.error_kind else "?"
            out.print(f"  [bold red]error ({kind}):[/] {rich.markup.escape(r.error)}")
    failed = sum(1 for r in results if not r.ok)
    done = "checked (dry run)" if results and all(r.dry_run for r in results) else "synced"
    out.print(f"{len(results) - failed}/{len(results)} clusters {done}", style="bold" if not failed else "bold red")
    waited = [a for r in results for a in (r.apps or (r,)) if a.health is not None]
    if waited:
        healthy = sum(1 for a in waited if a.health is health.Health.HEALTHY)
        out.print(f"{healthy}/{len(waited)} apps Healthy", style="bold" if healthy == len(waited) else "bold red")


def _message(e: engine.ChangeSetEntry) -> str:
    text = e.message
    if e.diff is not None and e.diff.paths and e.action is engine.Action.CONFIGURED:
        text = (text + "; " if text else "") + "changed " + ", ".join(e.diff.paths)
    return rich.markup.escape(text)


def diff(cfg: config.AgentConfig, names: list[str] | None, app: str | None, revision: str | None) -> int:
    """``gitops-agent diff``, like ``kubectl diff``: 0 when every cluster is in sync, 1 when something would
    change (or requires pruning), 2 on any error."""
    failed = AppSetErrors()
    results = oneshot.sync_fleet(
        cfg, registry.open_all(cfg), names, app=app, dry_run=True, revision=revision, generated=failed.record
    )
    out = output.console()
    drift = False
    for r in results:
        rev = r.revision.short if r.revision else "-"
        changed = [e for e in r.entries if e.action in CHANGES]
        drift = drift or bool(changed)
        out.print(f"[bold]cluster {r.cluster}[/] @ {rev}: {len(changed)} object(s) would change")
        for e in changed:
            out.print(f"[bold]{_VERBS[e.action.value]}[/] {rich.markup.escape(f'{e.key} ({e.origin})')}")
            if e.diff:
                from rich.syntax import Syntax  # and pygments: loaded by the first diff shown, not every command

                out.print(Syntax(e.diff.unified.rstrip("\n"), "diff", theme="ansi_dark"))
                out.print("  changed: " + ", ".join(e.diff.paths), style="dim")
        for e in r.failed:
            out.print(f"[bold red]failed[/] {rich.markup.escape(f'{e.key} ({e.origin}): {e.message}')}")
        for key, d in sorted(r.desired.items(), key=lambda kd: str(kd[0])):
            if d.pointers:  # ignore rules (configured, an HPA's replicas, an aggregated ClusterRole's rules)
                shown = ", ".join(engine.pointer_text(p) for p in d.pointers)
                out.print(rich.markup.escape(f"ignored {key}: {shown} (not compared, not applied over)"), style="dim")
        print_plan(out, r)
        if r.error:
            out.print(f"[bold red]error:[/] {rich.markup.escape(r.error)}")
    if failed.report() or any(r.error or r.failed for r in results):
        return output.EXIT_ERROR
    return output.EXIT_FAILED if drift else output.EXIT_OK


def print_plan(out: rich.console.Console, r: engine.ReconcileResult) -> None:
    """Each app's steps (phases, waves, hooks) when it has hooks or more than one wave, with its hook runs."""
    for a in r.apps or (r,):
        plan = a.plan
        if plan is None or not state.phased(plan):
            continue
        runs = {(h.phase, h.origin): h for h in a.hooks}
        idle = "not run: nothing to change" if a.ok and not any(e.action in CHANGES for e in a.entries) else "not run"
        out.print(f"  plan of app [bold]{a.app}[/]:")
        for step in (*plan.steps, *plan.on_fail):
            parts = [f"{len(step.synced)} object(s)"] if step.synced else []
            for m in step.hooks:
                run = runs.get((step.phase, m.origin))
                if run is None:
                    parts.append(f"hook {m.key} ({'on failure' if step in plan.on_fail else idle})")
                else:
                    parts.append(f"hook {run.key} ({run.result}{': ' + run.message if run.message else ''})")
            out.print(rich.markup.escape(f"    {step.label}: " + "; ".join(parts)))

"""App sets into apps: :func:`generate` runs every app set of a config and returns the config with their apps.

Each app set stands alone: its generators run, its template renders once per parameter set (one run of the
template helper for all of them), and each rendered app is checked as an entry of ``apps`` would be (a DNS-label
name, its source, its clusters), then against every app made so far (names are unique across ``apps`` and every
app set; ``dependsOn`` names apps that exist, with no cycle). Any failure fails that app set alone, with a message
naming it and, where one is to blame, the generator or the parameter set: its apps are then those of its previous
generation (``previous``), or none, and it is listed in :attr:`agent.config.AgentConfig.app_set_errors` so that
nothing it made before is pruned (:mod:`agent.sync.removed`). An app set whose git generator reads a source not
fetched yet is waiting, and is listed the same way.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import pydantic

from agent import config
from agent.appsets import generators, nested, pullrequests, template
from agent.appsets.generators import base
from agent.appsets.params import Params
from reconcilers import errors

SHOWN_PARAMS = 160
"""Characters of a parameter set an error message shows."""


@dataclasses.dataclass(frozen=True)
class AppSetResult:
    """One app set's last generation: ``apps`` (names, in order; kept from the generation before when this one
    failed), ``parameter_sets`` (how many its generators gave; 0 on failure), ``error`` (None when it generated)."""

    name: str
    apps: tuple[str, ...]
    parameter_sets: int
    error: str | None


@dataclasses.dataclass(frozen=True)
class Generation:
    """Every app set's outcome (:class:`AppSetResult` by name, config order) and the config with their apps."""

    results: dict[str, AppSetResult]
    config: config.AgentConfig


PullRequests = Callable[[config.PullRequestGenerator], list[pullrequests.PullRequest]]
"""The open pull requests a generator names. Raises GenerateError."""


def list_now(spec: config.PullRequestGenerator) -> list[pullrequests.PullRequest]:
    """:data:`PullRequests` that asks the API now (one-shot commands)."""
    return pullrequests.Lister(spec).fetch()


def generate(
    cfg: config.AgentConfig,
    trees: Mapping[str, pathlib.Path],
    previous: Generation | None = None,
    pull_requests: PullRequests = list_now,
) -> Generation:
    """``cfg`` (a config as loaded, without generated apps) with every app set's apps, reading git generators'
    sources from ``trees`` (source name -> its fetched revision's directory, held by the caller) and pull request
    generators' lists from ``pull_requests``. Never raises for an app set's failure: see the module docstring."""
    made: list[config.AppConfig] = []
    results: dict[str, AppSetResult] = {}
    failed: dict[str, str] = {}
    for app_set in cfg.app_sets:
        waiting = [s for s in app_set.sources() if s not in trees]
        try:
            if waiting:
                raise errors.GenerateError(f"waiting for source {', '.join(waiting)} to be fetched")
            found, count = _one(app_set, cfg, trees, pull_requests)
            _check_together(cfg, made, found, app_set.name)
        except errors.GenerateError as e:
            message = str(e)
            kept = _kept(previous, app_set.name, cfg, made)
            made += kept
            failed[app_set.name] = message
            results[app_set.name] = AppSetResult(app_set.name, tuple(a.name for a in kept), 0, message)
            continue
        made += found
        results[app_set.name] = AppSetResult(app_set.name, tuple(a.name for a in found), count, None)
    _apps_of_apps(cfg, trees, previous, made, results, failed)
    return Generation(results, cfg.with_generated(tuple(made), failed))


MAX_DEPTH = 8
"""How deep apps of apps may nest (a Flux tree is a few levels; a loop of parents rendering each other stops)."""


def _apps_of_apps(
    cfg: config.AgentConfig,
    trees: Mapping[str, pathlib.Path],
    previous: Generation | None,
    made: list[config.AppConfig],
    results: dict[str, AppSetResult],
    failed: dict[str, str],
) -> None:
    """The children of every app with ``appOfApps`` (:mod:`agent.appsets.nested`), theirs in turn, into ``made``;
    each parent's outcome into ``results`` (by the parent's name) and, when it failed, ``failed`` (its children of
    the previous generation kept)."""
    queue = [(a, 0) for a in (*cfg.apps, *made) if a.app_of_apps]
    while queue:
        parent, depth = queue.pop(0)
        try:
            if parent.name in results:
                raise errors.GenerateError(f"app {parent.name} is an app of apps and an app set has its name")
            if depth >= MAX_DEPTH:
                raise errors.GenerateError(f"apps of apps nest deeper than {MAX_DEPTH} levels")
            if parent.source not in trees:
                raise errors.GenerateError(f"waiting for source {parent.source} to be fetched")
            found = nested.children(parent, cfg, trees)
            _check_together(cfg, made, found, parent.name)
        except errors.GenerateError as e:
            kept = _kept(previous, parent.name, cfg, made)
            made += kept
            failed[parent.name] = str(e)
            results[parent.name] = AppSetResult(parent.name, tuple(a.name for a in kept), 0, failed[parent.name])
            queue += [(a, depth + 1) for a in kept if a.app_of_apps]
            continue
        made += found
        results[parent.name] = AppSetResult(parent.name, tuple(a.name for a in found), len(found), None)
        queue += [(a, depth + 1) for a in found if a.app_of_apps]
    _inherit_dependencies(cfg, made, results)


def _inherit_dependencies(
    cfg: config.AgentConfig, made: list[config.AppConfig], results: dict[str, AppSetResult]
) -> None:
    """Children of apps of apps wait for their parent (what it applies, a Namespace say, comes first) and for what
    it waits for, and an app waits for every descendant of an app of apps it depends on (Flux: a Kustomization
    that depends on another waits for all the latter applied, its HelmReleases included). Rewrites ``made`` in
    place; left as they were if that made a cycle."""
    parents = {name for name, r in results.items() if r.error is None or r.apps} - {a.name for a in cfg.app_sets}
    by_name = {a.name: a for a in (*cfg.apps, *made)}
    children: dict[str, list[str]] = {}
    for a in made:
        if a.app_set in parents:
            children.setdefault(str(a.app_set), []).append(a.name)

    def descendants(name: str, seen: frozenset[str] = frozenset()) -> list[str]:
        found = []
        for child in children.get(name, ()):
            if child not in seen:
                found += [child, *descendants(child, seen | {child})]
        return found

    def waits_for(app: config.AppConfig, seen: frozenset[str] = frozenset()) -> list[str]:
        found = [n for d in app.depends_on for n in (d, *descendants(d))]
        parent = by_name.get(str(app.app_set)) if app.app_set in parents else None
        if parent is not None and parent.name not in seen:
            found += [parent.name, *waits_for(parent, seen | {parent.name})]
        return list(dict.fromkeys(found))

    rewritten = [a.model_copy(update={"depends_on": tuple(waits_for(a))}) if a.app_set in parents else a for a in made]
    rewritten = [r.generated_by(a.app_set) if a.app_set else r for r, a in zip(rewritten, made, strict=True)]
    try:
        config.check_dependencies((*cfg.apps, *rewritten))
    except ValueError:
        return
    made[:] = rewritten


def _one(
    app_set: config.AppSetConfig,
    cfg: config.AgentConfig,
    trees: Mapping[str, pathlib.Path],
    pull_requests: PullRequests,
) -> tuple[list[config.AppConfig], int]:
    """The apps of ``app_set`` and how many parameter sets made them. Raises GenerateError."""
    options = app_set.go_template_options

    def render(value: Any, found: list[Params]) -> list[template.Rendered]:
        return template.render(value, found, go_template=app_set.go_template, options=options)

    ctx = base.Context(cfg.clusters, trees, app_set.go_template, options, generators.run, render, pull_requests)
    found: list[Params] = []
    for i, g in enumerate(app_set.generators):
        try:
            found += generators.run(g, ctx)
        except errors.GenerateError as e:
            raise errors.GenerateError(f"generators[{i}] ({g.kind}): {e}") from None
    apps: list[config.AppConfig] = []
    first_of: dict[str, int] = {}
    for i, (params, (value, error)) in enumerate(zip(found, render(app_set.template, found), strict=True)):
        where = f"parameter set {i} {_shown(params)}"
        if error is not None:
            raise errors.GenerateError(f"template with {where}: {error}")
        try:
            app = config.AppConfig.model_validate(value)
        except pydantic.ValidationError as e:
            raise errors.GenerateError(
                f"{where}: the app it renders is invalid: {'; '.join(config.describe(x) for x in e.errors())}"
            ) from None
        problem = cfg.app_problem(app)
        if problem:
            raise errors.GenerateError(f"{where}: app {app.name}: {problem}")
        if app.name in first_of:
            raise errors.GenerateError(f"parameter sets {first_of[app.name]} and {i} both render app {app.name}")
        first_of[app.name] = i
        apps.append(app.generated_by(app_set.name))
    return apps, len(found)


def _check_together(
    cfg: config.AgentConfig, made: list[config.AppConfig], found: list[config.AppConfig], app_set: str
) -> None:
    """``found`` (the apps of ``app_set``) beside the config's apps and ``made`` (earlier app sets'): unique names,
    dependencies that exist without a cycle, no name that is also a ``paths`` entry of a cluster it is placed on.
    Raises GenerateError."""
    owner = {a.name: "apps" for a in cfg.apps} | {a.name: f"app set {a.app_set}" for a in made}
    for a in found:
        if a.name in owner:
            raise errors.GenerateError(f"app {a.name} is already an app of {owner[a.name]}")
        for c in cfg.clusters:
            if a.name in c.paths and a.clusters.selects(c.name, c.labels):
                raise errors.GenerateError(f"app {a.name} is also a path of cluster {c.name}")
    try:
        config.check_dependencies((*cfg.apps, *made, *found))
    except ValueError as e:
        raise errors.GenerateError(str(e)) from None


def _kept(
    previous: Generation | None, name: str, cfg: config.AgentConfig, made: list[config.AppConfig]
) -> list[config.AppConfig]:
    """The apps ``name`` made last time, as long as they still fit beside the others (else none)."""
    if previous is None or name not in previous.results:
        return []
    names = set(previous.results[name].apps)
    kept = [a for a in previous.config.apps if a.app_set == name and a.name in names]
    try:
        _check_together(cfg, made, kept, name)
    except errors.GenerateError:
        return []
    return kept


def _shown(params: Params) -> str:
    text = json.dumps(params, sort_keys=True, default=str)
    return text if len(text) <= SHOWN_PARAMS else text[: SHOWN_PARAMS - 3] + "..."

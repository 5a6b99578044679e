"""Opening the configured sources: each by its kind's module (:data:`agent.source_kinds.KINDS`), ``auto`` resolved
to ``local`` for a local directory that is not a git repository and to ``git`` otherwise. Used by ``agent.cli`` and
``agent.runtime``."""

from __future__ import annotations

import contextlib
import importlib
import pathlib
from collections.abc import Sequence

from agent import config, source_kinds
from agent.sources import protocol
from reconcilers import errors

Source = protocol.Source


def kind_of(source: config.SourceConfig) -> source_kinds.Kind:
    """The kind ``source`` is served as: its ``type``, or for ``auto`` ``local`` (a local directory that is not a
    git repository) or ``git``."""
    if source.type != "auto":
        return source_kinds.KINDS[source.type]
    return source_kinds.KINDS["local" if is_local(source) else "git"]


def is_local(source: config.SourceConfig) -> bool:
    """True when ``source`` is served as a local directory (see the module docstring)."""
    if source.type != "auto":
        return source.type == "local"
    if "://" in source.url or ("@" in source.url and ":" in source.url):
        return False
    path = pathlib.Path(source.url).expanduser()
    is_repo = (path / ".git").exists() or ((path / "HEAD").is_file() and (path / "objects").is_dir())
    return path.is_dir() and not is_repo


def open_source(source: config.SourceConfig, chart_refs: Sequence[config.ChartRef] = ()) -> Source:
    """The source object for ``source``; ``chart_refs``: the charts apps name from it (chart sources only)."""
    module = importlib.import_module(kind_of(source).module)
    opened: Source = module.make(source, chart_refs)
    return opened


def open_all(cfg: config.AgentConfig) -> dict[str, Source]:
    """Every source of ``cfg`` by name, each chart source with the charts its apps name."""
    return {n: open_source(s, cfg.charts_of(n)) for n, s in cfg.all_sources().items()}


def checkouts(
    cfg: config.AgentConfig, held: contextlib.ExitStack
) -> tuple[dict[str, pathlib.Path], dict[str, errors.FetchError]]:
    """Every git and local source of ``cfg`` fetched once and checked out, each tree held by ``held`` (released
    when it closes): the trees by source name, and the fetch error of each source that failed (bounded by its
    ``timeout``). Chart repositories are left out: their charts are fetched by name at sync time. For commands
    that read the sources without syncing (``config validate``, ``clusters check``)."""
    found: dict[str, pathlib.Path] = {}
    failed: dict[str, errors.FetchError] = {}
    for name, source in open_all(cfg).items():
        if cfg.all_sources()[name].charts:
            continue
        try:
            found[name] = held.enter_context(source.tree(source.fetch()))
        except errors.FetchError as e:
            failed[name] = e
    return found, failed

"""What every generator gets and gives: the :class:`Generator` protocol and its :class:`Context`."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from agent import config
from agent.appsets import pullrequests
from agent.appsets.params import Params
from reconcilers import errors


@dataclasses.dataclass(frozen=True)
class Context:
    """What a generator may read: ``clusters`` (the config's), ``trees`` (source name -> the directory of its
    fetched revision, held by the caller; a source absent here was not fetched), ``go_template`` and ``options``
    (the app set's template syntax: parameters are nested for Go templates, flat otherwise), ``generate`` (runs a
    nested generator: matrix and merge), ``render`` (renders a JSON-able value with parameter sets:
    :func:`agent.appsets.template.render` bound to the app set's syntax) and ``pull_requests`` (the open pull
    requests a ``pullRequest`` generator names; raises GenerateError when they could not be listed)."""

    clusters: tuple[config.ClusterConfig, ...]
    trees: Mapping[str, pathlib.Path]
    go_template: bool
    options: tuple[str, ...]
    generate: Callable[[config.Generator, Context], list[Params]]
    render: Callable[[Any, list[Params]], list[tuple[Any, str | None]]]
    pull_requests: Callable[[config.PullRequestGenerator], list[pullrequests.PullRequest]]


class Generator(Protocol):
    """One kind of generator (a module of this package). Raises GenerateError naming what failed."""

    def __call__(self, spec: Any, ctx: Context) -> list[Params]:
        """The parameter sets ``spec`` (the generator's settings, a config model) yields, in a stable order."""
        ...


def with_values(found: list[Params], values: Mapping[str, str], ctx: Context, *, what: str) -> list[Params]:
    """``found`` with ``values`` (a generator's extra parameters, each templated with the set it joins) added as
    ``values`` (nested) or ``values.<key>`` (flat), as Argo CD's cluster and git generators do. Raises
    GenerateError naming ``what`` and the failing set."""
    if not values:
        return found
    rendered = ctx.render(dict(values), found)
    out = []
    for i, (params, (value, error)) in enumerate(zip(found, rendered, strict=True)):
        if error is not None:
            raise errors.GenerateError(f"{what}: values of parameter set {i}: {error}")
        if ctx.go_template:
            out.append({**params, "values": value})
        else:
            out.append({**params, **{f"values.{k}": str(v) for k, v in value.items()}})
    return out

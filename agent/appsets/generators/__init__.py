"""App set generators: the :class:`~agent.appsets.generators.base.Generator` protocol and one module per kind
(Argo CD's names): :mod:`.list_`, :mod:`.clusters`, :mod:`.git`, :mod:`.pull_request`, :mod:`.matrix`,
:mod:`.merge`.
:func:`run` picks the module for a :class:`agent.config.Generator`."""

from __future__ import annotations

from typing import Any

from agent import config
from agent.appsets.generators import base, clusters, git, list_, matrix, merge, pull_request
from agent.appsets.params import Params

KINDS: dict[str, base.Generator] = {
    "list": list_.generate,
    "clusters": clusters.generate,
    "git": git.generate,
    "pullRequest": pull_request.generate,
    "matrix": matrix.generate,
    "merge": merge.generate,
}
"""The generator of each kind (:data:`agent.config.GENERATOR_KINDS`)."""


def run(generator: config.Generator, ctx: base.Context) -> list[Params]:
    """The parameter sets of ``generator``. Raises GenerateError naming what failed."""
    spec: Any = generator.of(generator.kind)
    return KINDS[generator.kind](spec, ctx)

"""The ``matrix`` generator: every parameter set of the first generator combined with every set of the second
(Argo CD's Generators-Matrix.md). The second generator's strings may hold templates of the first's parameters
(``files: [{path: "{{.path.path}}/config.json"}]``): it is rendered, then run, once per set of the first."""

from __future__ import annotations

import json

import pydantic

from agent import config
from agent.appsets import params as params_
from agent.appsets.generators.base import Context
from reconcilers import errors


def generate(spec: config.MatrixGenerator, ctx: Context) -> list[params_.Params]:
    """The combined sets, first generator's order outermost. Raises GenerateError when a combined set would give
    one fasttemplate parameter two values, or the second generator does not render."""
    first, second = spec.generators
    outer = ctx.generate(first, ctx)
    raw = second.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    if "{{" not in json.dumps(raw):
        inner = ctx.generate(second, ctx)
        return [_combined(p1, p2, ctx.go_template) for p1 in outer for p2 in inner]
    out = []
    for i, (p1, (rendered, error)) in enumerate(zip(outer, ctx.render(raw, outer), strict=True)):
        if error is not None:
            raise errors.GenerateError(f"matrix: the second generator with parameter set {i} of the first: {error}")
        try:
            child = config.Generator.model_validate(rendered)
        except pydantic.ValidationError as e:
            where = f"the second generator, rendered with parameter set {i} of the first"
            raise errors.GenerateError(f"matrix: {where}: {e}") from None
        out += [_combined(p1, p2, ctx.go_template) for p2 in ctx.generate(child, ctx)]
    return out


def _combined(p1: params_.Params, p2: params_.Params, go_template: bool) -> params_.Params:
    if go_template:
        return params_.merged(p1, p2)
    clash = sorted(k for k in p1.keys() & p2.keys() if p1[k] != p2[k])
    if clash:
        raise errors.GenerateError(f"matrix: both generators give parameter {clash[0]!r}, with different values")
    return {**p1, **p2}

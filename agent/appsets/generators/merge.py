"""The ``merge`` generator: the first generator's parameter sets, each updated by the sets of the later
generators that agree with it on every merge key (Argo CD's Generators-Merge.md: a later set that matches no
base set is dropped; two sets of one generator with the same merge key values are an error)."""

from __future__ import annotations

import json
from typing import Any

from agent import config
from agent.appsets import params as params_
from agent.appsets.generators.base import Context
from reconcilers import errors


def generate(spec: config.MergeGenerator, ctx: Context) -> list[params_.Params]:
    """The base sets, merged, in the base generator's order. Raises GenerateError for a set without a merge key
    or two sets of one generator with the same merge key values."""
    base = ctx.generate(spec.generators[0], ctx)
    _by_keys(base, spec.merge_keys, 0)  # checks uniqueness
    for i, g in enumerate(spec.generators[1:], start=1):
        overrides = _by_keys(ctx.generate(g, ctx), spec.merge_keys, i)
        for j, params in enumerate(base):
            found = overrides.get(_key(params, spec.merge_keys, 0))
            if found is not None:
                base[j] = params_.merged(params, found) if ctx.go_template else {**params, **found}
    return base


def _key(params: params_.Params, keys: tuple[str, ...], generator: int) -> str:
    values: list[Any] = []
    for k in keys:
        value = params_.lookup(params, k)
        if value is None:
            raise errors.GenerateError(f"merge: a parameter set of generator {generator} has no merge key {k!r}")
        values.append(value)
    return json.dumps(values, sort_keys=True)


def _by_keys(found: list[params_.Params], keys: tuple[str, ...], generator: int) -> dict[str, params_.Params]:
    out: dict[str, params_.Params] = {}
    for params in found:
        key = _key(params, keys, generator)
        if key in out:
            raise errors.GenerateError(f"merge: generator {generator} gives two parameter sets with merge keys {key}")
        out[key] = params
    return out

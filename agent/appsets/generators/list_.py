"""The ``list`` generator: literal parameter sets (Argo CD's Generators-List.md): ``elements`` as written, and
``elementsYaml``, a YAML list in a string (templated by an outer matrix before it is read)."""

from __future__ import annotations

from typing import Any

import yaml

from agent import config
from agent.appsets import params as params_
from agent.appsets.generators.base import Context
from reconcilers import errors


def generate(spec: config.ListGenerator, ctx: Context) -> list[params_.Params]:
    """The elements, each one parameter set (flattened for fasttemplate). Raises GenerateError when
    ``elementsYaml`` is not a YAML list of mappings or an element is not a mapping."""
    elements: list[Any] = list(spec.elements)
    if spec.elements_yaml is not None:
        try:
            parsed = yaml.safe_load(spec.elements_yaml)
        except yaml.YAMLError as e:
            raise errors.GenerateError(f"list: elementsYaml is not YAML: {e}") from None
        if not isinstance(parsed, list):
            raise errors.GenerateError("list: elementsYaml must be a YAML list of mappings")
        elements += parsed
    out = []
    for i, element in enumerate(elements):
        if not isinstance(element, dict):
            raise errors.GenerateError(f"list: element {i} is not a mapping")
        out.append(dict(element) if ctx.go_template else params_.flatten(element))
    return out

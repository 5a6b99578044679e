"""The config file's keys checked before validation, so that a typo gets a suggestion and a snake_case key a clear
error instead of pydantic's "Extra inputs are not permitted" (or, for ``depends_on``, silent acceptance).

:func:`unknown_keys` walks the raw YAML beside the models (:class:`agent.config.AgentConfig` down through
lists, mappings and optional fields) and returns one message per key the model at that place does not have:
``sync.intervall: unknown key; did you mean sync.interval?`` (the nearest keys by ``difflib``'s ratio, 0.6 or
more, as ``kubectl`` and git suggest commands) or ``apps[0].depends_on: config keys are camelCase: use
apps[0].dependsOn``. Used by :func:`agent.config.load_config`.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterator
from typing import Any

import pydantic
from pydantic import alias_generators


def unknown_keys(raw: Any, model: type[pydantic.BaseModel]) -> list[str]:
    """One message per key of ``raw`` that ``model`` (and the models under it) does not know, in file order."""
    return list(_walk(raw, model, ""))


def _walk(raw: Any, model: type[pydantic.BaseModel], where: str) -> Iterator[str]:
    if not isinstance(raw, dict):
        return
    by_alias = {(f.alias or name): (name, f) for name, f in model.model_fields.items()}
    extra_allowed = model.model_config.get("extra") != "forbid"
    for key, value in raw.items():
        here = f"{where}.{key}" if where else str(key)
        found = by_alias.get(key) if isinstance(key, str) else None
        if found is None:
            if not extra_allowed:
                yield _unknown(str(key), where, by_alias)
            continue
        yield from _value(value, found[1].annotation, here)


def _value(value: Any, annotation: Any, where: str) -> Iterator[str]:
    """Walk ``value`` as the type ``annotation`` describes it (models, lists, mappings, unions: a mapping is
    read as the union's model it fits best, the one with the fewest unknown keys)."""
    kinds = list(models_in(annotation))
    if isinstance(value, dict):
        fits = [list(_walk(value, k[1], where)) for k in kinds if k[0] == "model"]
        if fits:
            yield from min(fits, key=len)
            return
    for kind in kinds:
        if isinstance(value, list) and kind[0] == "list":
            for i, item in enumerate(value):
                yield from _walk(item, kind[1], f"{where}[{i}]")
            return
        if isinstance(value, dict) and kind[0] == "dict":
            for k, item in value.items():
                yield from _walk(item, kind[1], f"{where}.{k}")
            return


def models_in(annotation: Any) -> Iterator[tuple[str, type[pydantic.BaseModel]]]:
    """``("model", M)``, ``("list", M)`` or ``("dict", M)`` for each way ``annotation`` (a field's type: models,
    lists and tuples of them, mappings to them, unions, ``Annotated``) holds a model ``M``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        yield from models_in(typing.get_args(annotation)[0])
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            yield from models_in(arg)
    elif origin in (list, tuple) and typing.get_args(annotation):
        item = typing.get_args(annotation)[0]
        if _is_model(item):
            yield "list", item
    elif origin is dict and len(typing.get_args(annotation)) == 2:
        item = typing.get_args(annotation)[1]
        if _is_model(item):
            yield "dict", item
    elif _is_model(annotation):
        yield "model", annotation


def _is_model(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, pydantic.BaseModel)


def _unknown(key: str, where: str, by_alias: dict[str, Any]) -> str:
    prefix = f"{where}." if where else ""
    camel = alias_generators.to_camel(key)
    if "_" in key and camel in by_alias:
        return f"{prefix}{key}: config keys are camelCase: use {prefix}{camel}"
    near = difflib.get_close_matches(key, list(by_alias), n=2, cutoff=0.6)
    hint = "; did you mean " + " or ".join(f"{prefix}{n}" for n in near) + "?" if near else ""
    keys = f" (the keys here: {', '.join(sorted(by_alias))})" if not near else ""
    return f"{prefix}{key}: unknown key{hint}{keys}"

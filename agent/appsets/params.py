"""The shapes of app set parameters, as Argo CD's generators make them.

With ``goTemplate`` a parameter set is nested (``{"path": {"basename": "a", "segments": [...]}}``, read as
``{{.path.basename}}``); with fasttemplate it is flat, every key a dotted name and every value a string
(``{"path.basename": "a", "path[0]": "apps"}``, read as ``{{path.basename}}``). Generators build the nested form;
:func:`flatten` makes the flat one. Argo CD's documentation: operator-manual/applicationset/Generators-*.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

Params = dict[str, Any]
"""One parameter set."""

_INVALID_DNS = re.compile(r"[^-a-z0-9.]")


def normalize(name: str) -> str:
    """``name`` as a DNS subdomain, as Argo CD's ``normalize`` (``basenameNormalized``, ``nameNormalized``):
    lower case, every character outside ``[-a-z0-9.]`` replaced by ``-``, at most 253 characters, without leading
    or trailing ``-`` and ``.``."""
    return _INVALID_DNS.sub("-", name.lower())[:253].strip("-.")


def scalar(value: Any) -> str:
    """A parameter value as fasttemplate prints it: strings as they are, booleans and null as JSON writes them,
    numbers as Go's ``%v`` of a float64 would for integral values."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``params`` with nested mappings and lists as dotted keys (``a.b``, ``a.0``: the dot style of the flattening
    Argo CD's git files generator uses) and every value a string, as Argo CD's generators give fasttemplate."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    out.update(flatten(item, f"{name}.{i}."))
                else:
                    out[f"{name}.{i}"] = scalar(item)
        else:
            out[name] = scalar(value)
    return out


def lookup(params: Mapping[str, Any], key: str) -> Any:
    """The value of ``key`` in ``params``: a flat key as it is, else a dotted path through nested mappings
    (``values.env``); None when absent."""
    if key in params:
        return params[key]
    found: Any = params
    for part in key.split("."):
        if not isinstance(found, Mapping) or part not in found:
            return None
        found = found[part]
    return found


def merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> Params:
    """``base`` with ``override`` merged in, nested mappings merged key by key and ``override`` winning
    elsewhere (``mergo.Merge`` with ``WithOverride``, which Argo CD's matrix and merge generators use for Go
    template parameters)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out

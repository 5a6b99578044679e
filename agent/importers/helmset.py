"""Helm values as Argo CD's ``helm.parameters`` and Flux's values merging give them: deep merges and ``--set``
style names.

Only plain dotted names are read (``image.tag``, ``a.b.c``); list indices (``a[0]``) and escaped dots (``a\\.b``)
are reported instead, so nothing is set somewhere other than Helm would set it. Values are read as ``helm --set``
reads them (``true``/``false`` booleans, integers, else strings) unless ``forceString``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_INT = re.compile(r"-?(0|[1-9][0-9]*)")


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``: mappings merged key by key, anything else replaced (Helm's
    coalescing of values files)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def set_value(values: dict[str, Any], name: str, value: Any, force_string: bool = False) -> str:
    """Set ``name`` (dotted) to ``value`` in ``values`` as ``helm --set`` would; "" when done, else why not."""
    if not name or "[" in name or "\\" in name or ".." in name or name.startswith(".") or name.endswith("."):
        return f"parameter name {name!r}: only plain dotted names (a.b.c) are mapped"
    target = values
    *parents, last = name.split(".")
    for key in parents:
        found = target.get(key)
        if not isinstance(found, dict):
            found = target[key] = {}
        target = found
    target[last] = _scalar(value, force_string)
    return ""


def _scalar(value: Any, force_string: bool) -> Any:
    if not isinstance(value, str) or force_string:
        return "" if value is None else (str(value) if force_string else value)
    if value in ("true", "false"):
        return value == "true"
    if value == "null":
        return None
    return int(value) if _INT.fullmatch(value) else value

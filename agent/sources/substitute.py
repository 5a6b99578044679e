"""``${VAR}`` substitution in desired state, from the agent's side, so secrets such as a delegate token never sit
in git.

Opt-in per cluster (``substitute: true``; off by default, because manifests carry shell scripts with ``${...}``
of their own). Every ``${NAME}`` in a string value (not in keys) is replaced by the variable ``NAME`` declared
in the config's ``variables`` (from an environment variable or a file); ``$${NAME}`` stands for a literal
``${NAME}``. A variable that is not declared, or whose source is unset, is an error naming the file, the document
and the variable, and the cluster gets no writes. The values substituted are returned, so every place that
shows data (logs, diffs, status) can mask them. Used by ``agent.sync.cluster``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

from agent import config
from reconcilers import errors, resources

_PATTERN = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")


def resolve(variables: Mapping[str, config.SecretRef]) -> dict[str, str | errors.ConfigError]:
    """Each declared variable's value, or the error that says why it has none (raised only when used)."""
    out: dict[str, str | errors.ConfigError] = {}
    for name, ref in variables.items():
        try:
            out[name] = ref.value(f"variables.{name}").decode("utf-8")
        except errors.ConfigError as e:
            out[name] = e
        except UnicodeDecodeError:
            out[name] = errors.ConfigError(f"variables.{name}: the value is not UTF-8")
    return out


def apply(
    manifests: Sequence[resources.Manifest], values: Mapping[str, str | errors.ConfigError]
) -> tuple[list[resources.Manifest], set[str]]:
    """``manifests`` with every ``${NAME}`` substituted, and the set of values used (to mask them).

    Raises :class:`errors.ManifestError` naming file, document and variable for an undeclared or unset one.
    """
    used: set[str] = set()
    out = []
    for m in manifests:

        def replace(match: re.Match[str], m: resources.Manifest = m) -> str:
            escaped, name = match.group(1), match.group(2)
            if escaped:
                return "${" + name + "}"
            value = values.get(name)
            if value is None:
                raise errors.ManifestError(
                    m.source_file,
                    m.doc_index,
                    f"${{{name}}} is not a declared variable (add it under variables in the agent config)",
                    m.item,
                )
            if isinstance(value, errors.ConfigError):
                raise errors.ManifestError(m.source_file, m.doc_index, f"${{{name}}} has no value: {value}", m.item)
            used.add(value)
            return value

        body = _walk(m.body, lambda s: _PATTERN.sub(replace, s) if "$" in s else s)
        out.append(dataclasses.replace(m, body=body, key=resources.ResourceKey.of(body)))
    return out, used


def _walk(value: Any, fn: Any) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {k: _walk(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, fn) for v in value]
    return value

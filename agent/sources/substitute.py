"""``${VAR}`` substitution in desired state, from the agent's side, so secrets such as a delegate token never sit
in git.

Opt-in per cluster (``substitute: true``; off by default, because manifests carry shell scripts with ``${...}``
of their own). Every ``${NAME}`` in a string value (not in keys) is replaced by the variable ``NAME`` declared
in the config's ``variables`` (from an environment variable or a file); ``$${NAME}`` stands for a literal
``${NAME}``; ``${NAME:=default}`` (Flux's form) gives ``default`` when ``NAME`` has no value. A variable that is not
declared (and has no default), or whose source is unset, is an error naming the file, the document and the
variable, and the cluster gets no writes (as Flux's ``StrictPostBuildSubstitutions``: a typo never deploys an
empty value). The values substituted are returned, so every place that
shows data (logs, diffs, status) can mask them. Used by ``agent.sync.cluster``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

from agent import config
from reconcilers import errors, resources

_PATTERN = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::=([^}]*))?\}")


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
    manifests: Sequence[resources.Manifest],
    values: Mapping[str, str | errors.ConfigError],
    secret: set[str] | frozenset[str] = frozenset(),
) -> tuple[list[resources.Manifest], set[str]]:
    """``manifests`` with every ``${NAME}`` substituted, and the set of values used (to mask them). A string that
    took a value of ``secret`` has its path added to the manifest's ``sensitive`` paths (masked in every diff).

    Raises :class:`errors.ManifestError` naming file, document and variable for an undeclared or unset one.
    """
    used: set[str] = set()
    return [_substituted(m, values, secret, used) for m in manifests], used


def _substituted(
    m: resources.Manifest,
    values: Mapping[str, str | errors.ConfigError],
    secret: set[str] | frozenset[str],
    used: set[str],
) -> resources.Manifest:
    """``m`` substituted (see :func:`apply`); the values it took added to ``used``."""
    took: set[str] = set()
    sensitive: list[tuple[str | int, ...]] = []

    def replace(match: re.Match[str]) -> str:
        escaped, name, default = match.group(1), match.group(2), match.group(3)
        if escaped:
            return match.group(0)[1:]
        value = values.get(name)
        if value is None and default is not None:
            return default  # Flux's ${NAME:=default}
        if value is None:
            raise errors.ManifestError(
                m.source_file,
                m.doc_index,
                f"${{{name}}} is not a declared variable (add it to the config's or the app's variables, or give "
                "a default: ${NAME:=value})",
                m.item,
            )
        if isinstance(value, errors.ConfigError):
            raise errors.ManifestError(m.source_file, m.doc_index, f"${{{name}}} has no value: {value}", m.item)
        used.add(value)
        took.add(value)
        return value

    def one(text: str, path: tuple[str | int, ...]) -> str:
        if "$" not in text:
            return text
        took.clear()
        done = _PATTERN.sub(replace, text)
        if took & secret:
            sensitive.append(path)
        return done

    body = _walk(m.body, one, ())
    key = resources.ResourceKey.of(body)
    return dataclasses.replace(m, body=body, key=key, sensitive=(*m.sensitive, *sensitive))


def _walk(value: Any, fn: Any, path: tuple[str | int, ...]) -> Any:
    if isinstance(value, str):
        return fn(value, path)
    if isinstance(value, dict):
        return {k: _walk(v, fn, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, fn, (*path, i)) for i, v in enumerate(value)]
    return value

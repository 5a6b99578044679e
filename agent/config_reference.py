"""docs/config-reference.md and docs/config.schema.json, generated from the config models so that they cannot drift
from them.

Each section is one model (:class:`agent.config.AgentConfig` first, then the models under it in the order its
fields reach them), with its docstring and a table of its keys: the camelCase key, its type in the config's words,
and its default. ``python -m agent.config_reference > docs/config-reference.md`` writes it; a unit test fails when
the committed file differs.
"""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any

import pydantic
import pydantic_core

from agent import config, config_keys

HEADER = """# Config reference

Generated from the config models (`python -m agent.config_reference > docs/config-reference.md`; a test fails when
this file differs from them). Keys are camelCase; durations are written `30s`, `5m`, `1h`; sizes `512Mi`, `1Gi`.
See [config.example.yaml](../config.example.yaml) for a commented example, and `gitops-agent config validate`.
Editors check a config as you type with [config.schema.json](config.schema.json) (`gitops-agent config schema`):
put `# yaml-language-server: $schema=<path or URL of config.schema.json>` at the top of the file.
"""


SCHEMA_ID = "https://json-schema.org/draft/2020-12/schema"


def schema() -> dict[str, Any]:
    """The config file's JSON Schema (draft 2020-12, pydantic's, keys camelCase, unknown keys refused), for editors:
    a ``# yaml-language-server: $schema=...`` line at the top of a config makes VS Code (and any editor with the
    YAML language server) check keys, types and values as you type. ``gitops-agent config schema`` prints it."""
    found = config.AgentConfig.model_json_schema(by_alias=True)
    return {"$schema": SCHEMA_ID, "title": "gitops-agent config", **{k: v for k, v in found.items() if k != "title"}}


def reference() -> str:
    """The whole page, as Markdown."""
    parts = [HEADER]
    for model in _models(config.AgentConfig):
        parts.append(_section(model))
    return "\n".join(parts)


def _models(root: type[pydantic.BaseModel]) -> list[type[pydantic.BaseModel]]:
    """``root`` and every model its fields reach, each once, in the order first reached (depth first)."""
    seen: list[type[pydantic.BaseModel]] = []

    def visit(model: type[pydantic.BaseModel]) -> None:
        if model in seen:
            return
        seen.append(model)
        for field in model.model_fields.values():
            for _, inner in config_keys.models_in(field.annotation):
                visit(inner)

    visit(root)
    return seen


def _section(model: type[pydantic.BaseModel]) -> str:
    doc = inspect.cleandoc(model.__doc__ or "").replace(":class:", "").replace(":mod:", "").replace(":func:", "")
    rows = ["| key | type | default |", "|---|---|---|"]
    for name, field in model.model_fields.items():
        key = field.alias or name
        rows.append(f"| `{key}` | {_type(field.annotation)} | {_default(field)} |")
    return f"## {model.__name__}\n\n{doc}\n\n" + "\n".join(rows) + "\n"


def _type(annotation: Any) -> str:
    """A type in the config's words: ``string``, ``duration``, ``list of ClusterConfig``, ``one of a, b``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        base, *marks = args
        text = " ".join(str(m) for m in marks)
        if "parse_duration" in text:
            return "duration"
        if "parse_size" in text:
            return "size"
        return _type(base)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        return " or ".join(_type(a) for a in kept) + (" (optional)" if len(kept) < len(args) else "")
    if origin in (list, tuple):
        return f"list of {_type(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {_type(args[0])} to {_type(args[1])}" if args else "mapping"
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if annotation is Any:
        return "any"
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None and field.default_factory not in (dict, list, tuple, set):
        return "computed at start (see above)"  # a host name, a process id: not the same on every machine
    value = field.default_factory() if field.default_factory is not None else field.default
    if value is None:
        return "none"
    if isinstance(value, pydantic.BaseModel):
        return "(its defaults)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == () or value == {} or value == []:
        return "empty"
    shown = pydantic_core.to_json(value).decode()
    return f"`{shown}`"


if __name__ == "__main__":
    import json
    import sys

    if sys.argv[1:] == ["schema"]:
        print(json.dumps(schema(), indent=2))
    else:
        print(reference(), end="")

"""The documents an import reads: YAML (or JSON) files and folders, as ``kubectl apply -f`` would take them.

A file may hold many documents (``---``) and a document may be a ``kind: List`` (its ``items`` are read, each
named ``<n>.items[<i>]``); a folder is read recursively in name order, and a folder (or subfolder) that holds a
kustomization is rendered with the real ``kustomize build`` first (bounded like every render,
:mod:`agent.sources.tools`) and its output read, as Flux's kustomize-controller and Argo CD would see it. YAML is
read as Kubernetes reads it (:mod:`agent.kubeyaml`). Empty documents are skipped.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterator, Sequence
from typing import Any

import yaml

from agent import kubeyaml
from agent.importers import report
from agent.sources.render import kustomize
from reconcilers import errors

SUFFIXES = (".yaml", ".yml", ".json")
"""The files of a folder that are read."""


@dataclasses.dataclass(frozen=True)
class Document:
    """One object of the input: ``body`` (a mapping) and where it was read (``where``)."""

    where: report.Where
    body: dict[str, Any]


def read(paths: Sequence[str]) -> list[Document]:
    """Every document of ``paths`` (files or folders), in order.

    Raises :class:`errors.ConfigError` naming the path for one that does not exist, a file that is not YAML, or
    a document that is not a mapping; :class:`errors.ManifestError` for a kustomize build that fails."""
    found: list[Document] = []
    for given in paths:
        path = pathlib.Path(given)
        if path.is_dir():
            found += _folder(path)
        elif path.is_file():
            found += _documents(given, _text(path))
        else:
            raise errors.ConfigError(f"{given}: no such file or folder")
    return found


def _folder(folder: pathlib.Path) -> list[Document]:
    """The documents of ``folder``: built with kustomize when it is a kustomization, else its files and
    subfolders in name order."""
    if kustomize.is_kustomization(folder):
        root = folder.resolve()
        return _documents(f"{folder} (kustomize build)", kustomize.build(root, root, None))
    found: list[Document] = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and not entry.name.startswith("."):
            found += _folder(entry)
        elif entry.suffix in SUFFIXES and entry.is_file():
            found += _documents(str(entry), _text(entry))
    return found


def _text(file: pathlib.Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise errors.ConfigError(f"{file}: cannot read: {e}") from e


def _documents(file: str, text: str) -> list[Document]:
    try:
        loaded = list(kubeyaml.load_all(text))
    except yaml.YAMLError as e:
        raise errors.ConfigError(f"{file}: not valid YAML: {e}") from e
    return list(_flatten(file, loaded))


def _flatten(file: str, loaded: list[Any]) -> Iterator[Document]:
    for i, body in enumerate(loaded):
        if body is None:
            continue
        if not isinstance(body, dict):
            raise errors.ConfigError(f"{file}: document {i}: not a mapping (a Kubernetes object)")
        if body.get("kind") == "List" and isinstance(body.get("items"), list):
            for j, item in enumerate(body["items"]):
                if not isinstance(item, dict):
                    raise errors.ConfigError(f"{file}: document {i}.items[{j}]: not a mapping (a Kubernetes object)")
                yield Document(_where(file, f"{i}.items[{j}]", item), item)
            continue
        yield Document(_where(file, str(i), body), body)


def _where(file: str, index: str, body: dict[str, Any]) -> report.Where:
    meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    return report.Where(
        file, index, str(body.get("kind") or ""), str(meta.get("namespace") or ""), str(meta.get("name") or "")
    )

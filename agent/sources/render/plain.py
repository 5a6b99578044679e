"""Plain manifests: ``*.yaml``, ``*.yml`` and ``*.json`` files read as kubectl reads them.

- multi-document YAML read as kubectl reads it (:mod:`agent.kubeyaml`: go-yaml v2's scalars on libyaml's C
  parser); empty documents are skipped; ``kind: List`` and every typed list (``ConfigMapList``, ``RoleList``: a
  kind ending in ``List`` with ``items``) are unwrapped as kubectl's resource builder does, nested lists
  flattened, each item named ``file#doc.items[i]`` in errors;
- every object needs ``apiVersion``, ``kind`` and ``metadata.name``;
- a file carrying SOPS metadata is decrypted first (:mod:`agent.sources.sops`), or refused where decryption is off;
- files over :data:`MAX_FILE_BYTES`, files that are not UTF-8, and symlinks leading outside the checkout are
  refused.

A file is parsed once per content: the objects of the last files read (up to :data:`PARSE_CACHE_BYTES` of
source) are kept by the cluster path that loaded them and the SHA-256 of their bytes, so a new commit re-parses
only the files it changed and the clusters of one sync share one parse, down to the same ``Manifest`` objects. A
file one thread is parsing is waited for by the others, not parsed again: clusters reconcile concurrently, and at
10,001 generated objects each private parse would cost 13.5 MiB. Short strings are interned as they are read
(:data:`agent.kubeyaml.INTERN_MAX_CHARS`). Manifests are immutable by convention (every step of a reconcile
builds new bodies), which is what makes sharing them safe.

The other renderers parse their output with :func:`parse_stream` and check objects with :func:`expand`.
"""

from __future__ import annotations

import collections
import hashlib
import pathlib
import threading
from collections.abc import Iterator
from typing import Any

import yaml

from agent import kubeyaml
from agent.sources import sops
from agent.sources.render import protocol
from reconcilers import engine, errors, resources

MAX_FILE_BYTES = 4 * 1024 * 1024
"""The largest manifest file read (bytes)."""

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

PARSE_CACHE_BYTES = 64 * 1024 * 1024
"""Source bytes whose parsed objects are kept (least recently used files are dropped first)."""
_Key = tuple[str, str, bytes]
"""A parsed file: (the cluster path that loaded it, its path in the repository, the SHA-256 of its bytes)."""
_parsed: collections.OrderedDict[_Key, tuple[int, list[resources.Manifest]]] = collections.OrderedDict()
_parsed_bytes = 0
_parsed_lock = threading.Lock()
_parsing: dict[_Key, threading.Event] = {}
"""Files being parsed now, by key: set when the parse ends (stored or failed)."""


def load_file(
    root: pathlib.Path, file: pathlib.Path, source_path: str, decrypt: sops.Decryptor | None = None
) -> list[resources.Manifest]:
    """The objects of ``file`` (inside the checkout ``root``), decrypted first when it carries SOPS metadata (refused
    without ``decrypt``), parsed once per content (see above). Raises ManifestError naming the file."""
    rel = file.relative_to(root).as_posix()  # as named in the repository (a symlink by its own name)
    file = protocol.inside(root, file, rel)
    size = file.stat().st_size
    if size > MAX_FILE_BYTES:
        raise errors.ManifestError(rel, None, f"file is {size} bytes, over the {MAX_FILE_BYTES}-byte limit")
    data = file.read_bytes()
    if sops.is_encrypted(data):  # never parsed (nor cached) as ciphertext; decrypted per cluster that may
        if decrypt is None:
            raise sops.refuse(rel)
        return parse_stream(decrypt.decrypt(data, rel), rel, source_path)
    key = (source_path, rel, hashlib.sha256(data).digest())
    while True:
        with _parsed_lock:
            hit = _parsed.get(key)
            if hit is not None:
                _parsed.move_to_end(key)
                return list(hit[1])
            busy = _parsing.get(key)
            if busy is None:
                done = _parsing[key] = threading.Event()
                break
        busy.wait()  # another cluster parses this file: share its result (or, if it failed, parse it here)
    try:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise errors.ManifestError(rel, None, f"not UTF-8 (byte {e.start}): {e.reason}") from None
        parsed = parse_stream(text, rel, source_path)
        _remember(key, len(data), parsed)
        return list(parsed)
    finally:
        with _parsed_lock:
            del _parsing[key]
        done.set()


def _remember(key: _Key, size: int, parsed: list[resources.Manifest]) -> None:
    global _parsed_bytes
    with _parsed_lock:
        if key in _parsed:
            return
        _parsed[key] = (size, parsed)
        _parsed_bytes += size
        while _parsed_bytes > PARSE_CACHE_BYTES and _parsed:
            _, (dropped, _) = _parsed.popitem(last=False)
            _parsed_bytes -= dropped


def parse_stream(text: str, source_file: str, source_path: str = "") -> list[resources.Manifest]:
    """The objects of a multi-document YAML (or JSON) stream named ``source_file``, loaded by the cluster path
    ``source_path``, read as kubectl reads them (:mod:`agent.kubeyaml`). Raises ManifestError, naming the
    document, and the line and key of a value JSON cannot carry."""
    out: list[resources.Manifest] = []
    index = 0  # documents are composed one at a time: on an error, ``index`` is the one being read
    try:
        for doc in kubeyaml.load_all(text):
            _check_expansion(doc, source_file, index)
            if doc is not None:
                for item, body in expand(doc, source_file, index):
                    key = resources.ResourceKey.of(body)
                    out.append(resources.Manifest(key, body, source_file, index, source_path, item))
            index += 1
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        if isinstance(e, kubeyaml.NotJSONError):
            context = f"{e.context}: " if e.context else ""
            raise errors.ManifestError(source_file, index, f"unreadable value{where}: {context}{problem}") from None
        raise errors.ManifestError(source_file, index, f"malformed YAML{where}: {problem}") from None
    return out


MAX_EXPANDED_VALUES = 1_000_000
"""A document whose aliases expand it to more values than this (and to ten times its own size) is refused."""


def _check_expansion(doc: Any, source_file: str, index: int) -> None:
    """Refuse a YAML alias bomb ("billion laughs"): the expanded size is computed once per distinct node, so the
    check costs the document's own size, not its expansion."""
    sizes: dict[int, int] = {}
    unique = 0

    def size(node: Any) -> int:
        nonlocal unique
        if not isinstance(node, dict | list):
            return 1
        if id(node) in sizes:
            return sizes[id(node)]
        unique += 1
        children = node.values() if isinstance(node, dict) else node
        total = 1 + sum(size(c) for c in children)
        sizes[id(node)] = total
        return total

    try:
        expanded = size(doc)
    except RecursionError:
        raise errors.ManifestError(source_file, index, "nested too deeply to be a manifest") from None
    if expanded > MAX_EXPANDED_VALUES and expanded > 10 * max(unique, 1):
        raise errors.ManifestError(
            source_file, index, f"YAML aliases expand this document to {expanded} values (alias bomb?): refused"
        )


def is_list(body: Any) -> bool:
    """True for a list kubectl unwraps: ``kind: List`` or a typed list (``ConfigMapList``, ``RoleBindingList``:
    a kind ending in ``List``) whose ``items`` is a sequence (kubectl's resource builder, ``FlattenListVisitor``
    with ``meta.IsListType``; the kind check keeps a custom resource that merely has ``items`` an object)."""
    kind = body.get("kind")
    return isinstance(kind, str) and kind.endswith("List") and isinstance(body.get("items"), list)


def expand(doc: Any, source_file: str, index: int, prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """The objects of one document with where they stand in it (``""``, or ``items[i]`` of a list, nested lists
    flattened: ``items[0].items[2]``)."""
    if not isinstance(doc, dict):
        if prefix:
            raise errors.ManifestError(source_file, index, f"not an object ({_type_name(doc)})", prefix[:-1])
        raise errors.ManifestError(
            source_file, index, f"a document must be a mapping (an object), not {_type_name(doc)}"
        )
    if is_list(doc):
        for i, item in enumerate(doc["items"]):
            yield from expand(item, source_file, index, f"{prefix}items[{i}].")
        return
    yield prefix[:-1], _checked(doc, source_file, index, prefix)


def _type_name(value: Any) -> str:
    """A YAML type's name for an error (never a Python class name)."""
    names = {str: "a string", int: "a number", float: "a number", bool: "a boolean", list: "a list"}
    return "null" if value is None else names.get(type(value), "a scalar")


def _checked(body: dict[str, Any], source_file: str, index: int, prefix: str) -> dict[str, Any]:
    item = prefix[:-1]
    for field in ("apiVersion", "kind"):
        if not isinstance(body.get(field), str) or not body[field]:
            raise errors.ManifestError(
                source_file, index, f"{field} is missing: every object needs apiVersion and kind", item
            )
    try:
        marks = engine.hook_marks(body)
    except ValueError as e:
        raise errors.ManifestError(source_file, index, str(e), item) from None
    meta = body.get("metadata")
    named = isinstance(meta, dict) and isinstance(meta.get("name"), str) and meta["name"]
    generated = marks.hook and isinstance(meta, dict) and isinstance(meta.get("generateName"), str)
    if not named and not generated:
        also = " (a hook may have a generateName instead)" if marks.hook else ""
        raise errors.ManifestError(source_file, index, f"metadata.name is missing ({body['kind']}){also}", item)
    return body


class Plain:
    """:class:`agent.sources.render.protocol.Renderer` of ``*.yaml``, ``*.yml`` and ``*.json`` files."""

    name = "YAML"
    patterns = tuple(f"*{s}" for s in MANIFEST_SUFFIXES)

    def whole(self, directory: pathlib.Path) -> bool:
        """Never: plain files are read one by one."""
        return False

    def reads(self, file: pathlib.Path) -> bool:
        """True for a file named ``*.yaml``, ``*.yml`` or ``*.json``."""
        return file.suffix in MANIFEST_SUFFIXES

    def inputs(self, file: pathlib.Path) -> bool:
        """Never: a plain file is never only an input."""
        return False

    def render(self, ctx: protocol.Context, target: pathlib.Path, source_path: str) -> list[resources.Manifest]:
        """The objects of the file ``target`` (:func:`load_file`)."""
        return load_file(ctx.root, target, source_path, ctx.decrypt)

"""YAML read as Kubernetes reads it: the one reader for everything the agent turns into objects.

kubectl, kustomize's consumers, Helm, Argo CD and Flux turn YAML into JSON with ``sigs.k8s.io/yaml``, which
decodes with go-yaml v2 (``resolve.go``) into ``interface{}`` and converts the result to JSON. PyYAML's default
resolver follows YAML 1.1 instead, and the two disagree on everyday scalars. This module reads with libyaml's C
parser (PyYAML's ``CSafeLoader``; the pure-Python parser where libyaml is missing) but resolves and constructs
plain scalars by go-yaml v2's rules, so the agent applies the object kubectl applies:

=====================================  ==========================  ==========================
plain scalar                           PyYAML (YAML 1.1)           here (go-yaml v2, kubectl)
=====================================  ==========================  ==========================
``=``                                  error (``!!value``)         ``"="``
``22:22``, ``1:20:30`` (base 60)       ``1342``, ``4830``          ``"22:22"``, ``"1:20:30"``
``y``, ``Y``, ``n``, ``N``             ``"y"``, ``"n"``            ``true``, ``false``
``1e3``, ``1.``, ``08``                ``"1e3"``, ``1.0``, error   ``1000``, ``1``, ``8``
``0o17``, ``0755``, ``0b101``          ``"0o17"``, ``493``, ``5``  ``15``, ``493``, ``5``
``2001-12-14`` (dates, timestamps)     ``datetime.date``           ``"2001-12-14"``
=====================================  ==========================  ==========================

The rules, from go-yaml v2's ``resolve.go`` (``resolve``, ``resolveTable``, ``resolveMapList``):

- a plain scalar is looked up by its first character: ``yYnNtTfFoO~`` may be a word, ``+-0-9`` a number, ``.`` a
  float; anything else (and every quoted scalar) is a string;
- words: ``y Y yes Yes YES true True TRUE on On ON`` are true, ``n N no No NO false False FALSE off Off OFF``
  false, the empty scalar, ``~ null Null NULL`` null, ``.inf .nan`` (with case and sign forms) infinite and NaN;
- numbers: with every ``_`` removed, Go's ``strconv.ParseInt(s, 0, 64)`` (decimal, ``0x``, ``0o``, ``0b``, a
  leading ``0`` for octal, an optional sign), then ``ParseUint`` (no sign), then a float of the form
  ``[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?``; else a string;
- dates and timestamps decoded into ``interface{}`` stay the scalar's text (go-yaml v2's ``decode.go``);
- tags: ``!!str`` and ``!!binary`` (base64, decoded) are strings, ``!!set`` a mapping of nulls, ``!!omap`` and
  ``!!pairs`` sequences, any tag go-yaml does not resolve (``!!null``, ``!Ref``, ``!!python/...``) the node as it
  is (a scalar's text); an explicit ``!!int``, ``!!float`` or ``!!bool`` whose text is not one is an error;
- merge keys (``<<``) apply where they stand: a later key, merged or explicit, overrides an earlier one, and of a
  sequence of merged mappings the earlier wins (go-yaml v2's ``decoder.mapping`` and ``decoder.merge``).

And the JSON conversion of ``sigs.k8s.io/yaml`` (``convertToJSONableObject``): mapping keys that are integers or
booleans become their text (``1: a`` is ``{"1": "a"}``, ``y: 1`` is ``{"true": 1}``); a float whose value is a
whole number below 1e21 becomes an integer (Go's ``encoding/json`` prints ``1e3`` as ``1000``, which a typed
``int32`` field accepts). What JSON cannot carry raises :class:`NotJSONError` naming the line and the key: a null or
structured mapping key, ``.inf`` and ``.nan``.

:func:`load_all` and :func:`load` are the readers; :func:`load_own` reads the agent's own config file with
PyYAML's usual rules on the same C parser. Used by :mod:`agent.sources` (manifests, kustomize, Helm and SOPS
output, values files, Chart.yaml), :mod:`agent.clusters.kubeconfig`, :mod:`agent.config` and the tests.
"""

from __future__ import annotations

import base64
import binascii
import decimal
import math
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import yaml
from yaml import constructor, nodes

OWN_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader with PyYAML's own rules: the agent's config file (its format is ours)."""

INTERN_MAX_CHARS = 64
"""Strings up to this length are interned as they are read: keys (``apiVersion``, ``containerPort``) and common
values (``apps/v1``, ``TCP``) recur in every document of a repo, and the desired state keeps one object each, not
one per use (at 10,001 generated objects the parsed bodies took 13.5 MiB instead of 23.4)."""

_Y = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL = _Y + "str", _Y + "int", _Y + "float", _Y + "bool", _Y + "null"
MAP, SEQ, MERGE = _Y + "map", _Y + "seq", _Y + "merge"
_NUMBER, _NULL = "tag:gitops-agent.io,2026:number", "tag:gitops-agent.io,2026:null"
"""Private tags of plain scalars resolved as numbers and nulls: an explicit ``!!int``, ``!!float`` or ``!!null``
is read by go-yaml v2 differently from the same text left plain."""

_WORDS: dict[str, tuple[str, Any]] = {}
for _tag, _value, _words in (
    (BOOL, True, "y Y yes Yes YES true True TRUE on On ON"),
    (BOOL, False, "n N no No NO false False FALSE off Off OFF"),
    (_NULL, None, "~ null Null NULL"),
    (FLOAT, float("nan"), ".nan .NaN .NAN"),
    (FLOAT, float("inf"), ".inf .Inf .INF +.inf +.Inf +.INF"),
    (FLOAT, float("-inf"), "-.inf -.Inf -.INF"),
):
    for _word in _words.split():
        _WORDS[_word] = (_tag, _value)
_WORDS[""] = (_NULL, None)

_HINTS = {c: "M" for c in "yYnNtTfFoO~"} | {c: "D" for c in "+-0123456789"} | {".": "."}
"""go-yaml v2's ``resolveTable``: what a plain scalar may be, by its first character (absent: a string)."""

_GO_INT = re.compile(r"[-+]?(?:0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)\Z")
"""Go's integer literal as ``strconv.ParseInt(s, 0, 64)`` reads it, underscores already removed."""
_YAML_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?\Z")
"""go-yaml v2's ``yamlStyleFloat``."""
_DOT_FLOAT = re.compile(r"\.[0-9]+(?:[eE][-+]?[0-9]+)?\Z")
"""A plain scalar starting with ``.`` that Go's ``strconv.ParseFloat`` reads."""
_INT64 = (-(2**63), 2**63)
_UINT64 = 2**64
_JSON_INT_FLOAT = 1e21
"""Go's ``encoding/json`` prints a float64 below this magnitude without an exponent."""


class NotJSONError(constructor.ConstructorError):
    """A value the YAML holds that JSON (and so the API server) cannot: a null or structured mapping key,
    ``.inf``, ``.nan``, or an explicit tag whose text is not of its type. ``problem_mark`` is its place."""


def _go_number(text: str) -> int | float | str:
    """A plain scalar that starts like a number, as go-yaml v2 resolves it: an int, a float, or the text."""
    plain = text.replace("_", "")
    if _GO_INT.match(plain):
        sign = plain[0] if plain[0] in "+-" else ""
        body = plain[len(sign) :]
        prefix = body[:2].lower()
        if prefix in ("0x", "0o", "0b"):
            n = int(body[2:], {"0x": 16, "0o": 8, "0b": 2}[prefix])
        elif len(body) > 1 and body[0] == "0":
            n = int(body[1:], 8)
        else:
            n = int(body)
        n = -n if sign == "-" else n
        if _INT64[0] <= n < _INT64[1] or (not sign and 0 <= n < _UINT64):
            return n
    if _YAML_FLOAT.match(plain):
        return _json_float(float(plain))
    return text


def _json_float(value: float) -> int | float:
    """``value`` as Go's ``encoding/json`` writes it: a whole number below 1e21 as an integer."""
    if value.is_integer() and abs(value) < _JSON_INT_FLOAT:
        # Go prints the shortest digits that read back as the same float64, padded with zeros: from 2**53 on,
        # that differs from the float's exact value (1.2345678901234567e17 is 123456789012345670, not ...664)
        return int(value) if abs(value) < 2**53 else int(decimal.Decimal(repr(value)))
    return value


def _plain_tag(value: str) -> str:
    """The tag of a plain scalar by go-yaml v2's first-character hint: ``_NUMBER`` for whatever may be a number
    (its constructor parses it once, and keeps the text when it is none: ``1.2.3``), else the word's tag or a
    string."""
    hint = _HINTS.get(value[:1])
    if hint is None:
        return _NULL if value == "" else (MERGE if value == "<<" else STR)
    word = _WORDS.get(value)
    if word is not None:
        return _NUMBER if word[0] == FLOAT else word[0]
    return STR if hint == "M" else _NUMBER


class KubeLoader(OWN_LOADER):  # type: ignore[misc]
    """libyaml's safe loader with go-yaml v2's resolution and ``sigs.k8s.io/yaml``'s JSON conversion (see the
    module docstring). Not thread-safe per instance (PyYAML loaders never are): one per stream."""

    def resolve(self, kind: Any, value: Any, implicit: tuple[bool, bool]) -> str:
        """The tag of a node without an explicit one (PyYAML's resolver hook, called by the parser)."""
        if kind is nodes.ScalarNode:
            return _plain_tag(value) if implicit[0] else STR
        return SEQ if kind is nodes.SequenceNode else MAP

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[str, Any]:
        """A mapping with string keys; merge keys applied where they stand (go-yaml v2's ``decoder.mapping``)."""
        if not isinstance(node, nodes.MappingNode):
            raise constructor.ConstructorError(None, None, f"expected a mapping, found {node.id}", node.start_mark)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE:
                self._merge(out, value_node)
                continue
            key = self.construct_object(key_node, deep=deep)
            if type(key) is not str:
                key = _json_key(key, key_node)
            try:
                out[key] = self.construct_object(value_node, deep=deep)
            except NotJSONError as e:
                if e.context is None:
                    e.context = f"key {key!r}"
                raise
        return out

    def construct_document(self, node: Any) -> Any:
        """One document (PyYAML's hook, called per document of a stream): merged mappings are not shared
        between documents."""
        self._merged: dict[nodes.Node, dict[str, Any]] = {}
        return super().construct_document(node)

    def _merge(self, out: dict[str, Any], node: Any) -> None:
        merged = node.value if isinstance(node, nodes.SequenceNode) else [node]
        for each in reversed(merged):  # of a sequence, the earlier mapping wins
            if not isinstance(each, nodes.MappingNode):
                raise constructor.ConstructorError(
                    None, None, f"a merge key (<<) takes mappings, found {each.id}", each.start_mark
                )
            if each not in self._merged:  # an alias merged again is not built again (chained merges stay linear)
                self._merged[each] = self.construct_mapping(each, deep=True)
            out.update(self._merged[each])


def _json_key(key: Any, node: Any) -> str:
    """A mapping key as ``sigs.k8s.io/yaml`` turns it into a JSON key. Raises NotJSONError."""
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return str(key)
    if isinstance(key, float) and key == key and abs(key) != float("inf"):
        return repr(key)
    shown = "null" if key is None else type(key).__name__
    raise NotJSONError(None, None, f"a mapping key must be a string, number or boolean, not {shown}", node.start_mark)


def _construct_str(loader: Any, node: Any) -> str:
    value: str = loader.construct_scalar(node)
    return sys.intern(value) if len(value) <= INTERN_MAX_CHARS else value


def _scalar_number(value: str) -> int | float | str:
    """A scalar that may be a number, as go-yaml v2 reads it (``.inf`` and ``.nan`` included): its value, or its
    text when it is none."""
    word = _WORDS.get(value)
    if word is not None and word[0] == FLOAT:
        found: float = word[1]
        return found
    if value[:1] == ".":
        return _json_float(float(value)) if _DOT_FLOAT.match(value) else value
    return _go_number(value)


def _number(loader: Any, node: Any) -> int | float | str:
    """A scalar read as go-yaml v2 reads a number: an int, a finite float, or its text when it is none.
    Raises NotJSONError for ``.inf`` and ``.nan``."""
    value: str = loader.construct_scalar(node)
    found = _scalar_number(value)
    if isinstance(found, float) and not math.isfinite(found):
        raise NotJSONError(
            None, None, f"{value} is not a number JSON can carry (kubectl refuses it too); quote it", node.start_mark
        )
    return found


def _construct_plain_number(loader: Any, node: Any) -> int | float | str:
    found = _number(loader, node)
    if isinstance(found, str):  # it looked like one (v1.2 does not; 1.2.3 does)
        return sys.intern(found) if len(found) <= INTERN_MAX_CHARS else found
    return found


def _construct_int(loader: Any, node: Any) -> int:
    found = _number(loader, node)
    if not isinstance(found, int):
        raise NotJSONError(None, None, f"{node.value!r} is not an integer (!!int)", node.start_mark)
    return found


def _construct_float(loader: Any, node: Any) -> int | float:
    found = _number(loader, node)
    if isinstance(found, str):
        raise NotJSONError(None, None, f"{node.value!r} is not a number (!!float)", node.start_mark)
    return found


def _construct_bool(loader: Any, node: Any) -> bool:
    word = _WORDS.get(loader.construct_scalar(node))
    if word is None or word[0] != BOOL:
        raise NotJSONError(None, None, f"{node.value!r} is not a boolean (!!bool)", node.start_mark)
    result: bool = word[1]
    return result


def _construct_null(loader: Any, node: Any) -> None:
    return None


def _construct_binary(loader: Any, node: Any) -> str:
    value: str = loader.construct_scalar(node)
    try:
        return base64.b64decode("".join(value.split()), validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        raise NotJSONError(None, None, "!!binary holds no valid base64", node.start_mark) from None


def _construct_set(loader: Any, node: Any) -> Iterator[dict[str, Any]]:
    data: dict[str, Any] = {}
    yield data
    data.update(loader.construct_mapping(node))


def _construct_as_is(loader: Any, node: Any) -> Any:
    """A tag go-yaml v2 does not resolve (``!Ref``, ``!!python/...``, ``!!timestamp``, ``!!null``): the node as
    it is (a scalar's text)."""
    if isinstance(node, nodes.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, nodes.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


_CONSTRUCTORS: tuple[tuple[str | None, Any], ...] = (
    (STR, _construct_str),
    (_NUMBER, _construct_plain_number),
    (_NULL, _construct_null),
    (INT, _construct_int),
    (FLOAT, _construct_float),
    (BOOL, _construct_bool),
    (_Y + "binary", _construct_binary),
    (_Y + "set", _construct_set),
    (_Y + "omap", KubeLoader.construct_yaml_seq),
    (_Y + "pairs", KubeLoader.construct_yaml_seq),
    (None, _construct_as_is),
    (NULL, _construct_as_is),
    (_Y + "timestamp", _construct_as_is),
)
for _each, _fn in _CONSTRUCTORS:
    KubeLoader.add_constructor(_each, _fn)


class KubeDumper(yaml.SafeDumper):
    """PyYAML's safe dumper, deciding which strings to quote by go-yaml v2's rules: a string that a Kubernetes
    reader would take for something else (``y``, ``1e3``, ``0o17``, ``08``) is quoted, so what :func:`dump_all`
    writes, :func:`load_all`, kubectl and Helm read back unchanged. (PyYAML's own dumper quotes by YAML 1.1 and
    writes those plain.)"""

    def resolve(self, kind: Any, value: Any, implicit: tuple[bool, bool]) -> str:
        """The tag a reader resolves ``value`` to: the emitter writes a scalar plain only when it is its own."""
        if kind is not nodes.ScalarNode:
            return SEQ if kind is nodes.SequenceNode else MAP
        if not implicit[0]:
            return STR
        tag = _plain_tag(value)
        if tag == _NULL:
            return NULL
        if tag == _NUMBER:  # by its form: 1.0 is a float here, though JSON then writes it 1
            if isinstance(_scalar_number(value), str):
                return STR
            return INT if _GO_INT.match(value.replace("_", "")) else FLOAT
        return tag


def dump_all(documents: Iterable[Any]) -> str:
    """YAML of ``documents`` (dicts, lists, str, int, float, bool, None) that every Kubernetes reader reads back as
    they are (see :class:`KubeDumper`); keys in the order given."""
    return yaml.dump_all(documents, Dumper=KubeDumper, sort_keys=False, allow_unicode=True)


def load_all(text: str | bytes) -> Iterator[Any]:
    """The documents of a YAML (or JSON) stream as ``sigs.k8s.io/yaml`` reads them: dicts with string keys,
    lists, str, int, float, bool and None only. Documents are composed one at a time, so a generator can say
    which one failed. Raises yaml.YAMLError (NotJSONError for values JSON cannot carry)."""
    return yaml.load_all(text, Loader=KubeLoader)


def load(text: str | bytes) -> Any:
    """One YAML document as ``sigs.k8s.io/yaml`` reads it (see :func:`load_all`). Raises yaml.YAMLError."""
    return yaml.load(text, Loader=KubeLoader)  # noqa: S506 (a SafeConstructor: unknown tags are plain values)


def load_own(text: str | bytes) -> Any:
    """One YAML document of the agent's own formats (its config file), with PyYAML's usual rules on libyaml's C
    parser. Raises yaml.YAMLError."""
    return yaml.load(text, Loader=OWN_LOADER)  # noqa: S506 (CSafeLoader: the safe constructor)

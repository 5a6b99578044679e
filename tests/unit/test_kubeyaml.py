"""The YAML reader's rules (go-yaml v2's resolve.go and sigs.k8s.io/yaml's JSON conversion), without a cluster:
what each scalar form becomes, what JSON cannot carry and how it is named, lists as kubectl unwraps them. The same
forms are compared with what the real kubectl stores in tests/e2e/test_kubectl_reading.py."""

from __future__ import annotations

import json
import pathlib

import pytest
import yaml

from agent import kubeyaml
from agent.sources import manifests
from reconcilers import errors


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("=", "="),
        ("=~", "=~"),
        ("22:22", "22:22"),
        ("1:20:30", "1:20:30"),
        ("y", True),
        ("Y", True),
        ("n", False),
        ("yes", True),
        ("No", False),
        ("on", True),
        ("OFF", False),
        ("True", True),
        ("FALSE", False),
        ("NULL", None),
        ("~", None),
        ("", None),
        ("1e3", 1000),
        ("1e+3", 1000),
        ("0o17", 15),
        ("0755", 493),
        ("012345", 5349),
        ("08", 8),
        ("0x1F", 31),
        ("0b101", 5),
        ("-0b11", -3),
        ("1_000", 1000),
        ("+12", 12),
        ("-0", 0),
        (".5", 0.5),
        ("1.", 1),
        ("1.5", 1.5),
        ("1e-7", 1e-7),
        ("18446744073709551615", 18446744073709551615),
        ("+18446744073709551615", 18446744073709552000),
        ("99999999999999999999", 100000000000000000000),
        ("0xFFFFFFFFFFFFFFFFFF", "0xFFFFFFFFFFFFFFFFFF"),
        ("1.2345678901234567e17", 123456789012345660),
        ("2001-12-14", "2001-12-14"),
        ("2001-12-14t21:59:43.10-05:00", "2001-12-14t21:59:43.10-05:00"),
        ("'quoted'", "quoted"),
        ('"1e3"', "1e3"),
        ("'y'", "y"),
        ("!!str 123", "123"),
        ("!!binary aGVsbG8=", "hello"),
        ("!!timestamp 2001-12-14", "2001-12-14"),
        ("!!null ~", "~"),
        ("!!float 1", 1),
        ("!Ref foo", "foo"),
        ("v1.2", "v1.2"),
        ("1.2.3", "1.2.3"),
        ("-x", "-x"),
        ("0x", "0x"),
        ("nope", "nope"),
    ],
)
def test_scalars_read_as_go_yaml_v2(text: str, value: object) -> None:
    found = kubeyaml.load(f"v: {text}\n")["v"]
    assert found == value
    assert type(found) is type(value)
    json.dumps(found)  # every value is one JSON carries


def test_what_the_dumper_writes_reads_back_unchanged() -> None:
    """Strings a Kubernetes reader would take for something else are quoted (PyYAML's dumper writes them plain)."""
    words = ["y", "n", "on", "1e3", "0o17", "0755", "08", "0x1F", "1_000", "+12", ".5", "1.", "~", "", "=", "22:22"]
    doc = {**{w: w for w in words}, "int": 1000, "float": 0.5, "big": 1e21, "bool": True, "null": None, "list": words}
    text = kubeyaml.dump_all([doc, {"y": "n"}])
    assert list(kubeyaml.load_all(text)) == [doc, {"y": "n"}]
    assert kubeyaml.load(yaml.safe_dump({"y": "1e3"})) == {"true": 1000}  # why the agent does not use safe_dump


def test_keys_become_json_keys_and_merges_apply_where_they_stand() -> None:
    doc = kubeyaml.load(
        "1: integer\ny: boolean\nbase: &b {a: 1, b: 2}\n"
        "early: {<<: *b, b: 3}\nlate: {b: 3, <<: *b}\nseq: {<<: [{a: 1}, {a: 2, c: 3}]}\n"
        "set: !!set {x, z}\nomap: !!omap [{a: 1}, {b: 2}]\n"
    )
    assert doc == {
        "1": "integer",
        "true": "boolean",
        "base": {"a": 1, "b": 2},
        "early": {"a": 1, "b": 3},
        "late": {"a": 1, "b": 2},  # go-yaml v2: a merge overrides the keys before it
        "seq": {"a": 1, "c": 3},  # of a merged sequence, the earlier mapping wins
        "set": {"x": None, "z": None},
        "omap": [{"a": 1}, {"b": 2}],
    }


def test_merges_are_not_shared_between_documents() -> None:
    text = "a: &x {p: 1}\nb: {<<: *x, q: 2}\n---\na: &x {p: 3}\nb: {<<: *x}\n"
    assert list(kubeyaml.load_all(text)) == [{"a": {"p": 1}, "b": {"p": 1, "q": 2}}, {"a": {"p": 3}, "b": {"p": 3}}]


def test_chained_merges_are_built_once() -> None:
    lines = ["l0: &l0 {k0: 0}"]
    for i in range(1, 40):  # each level merges the one before twice: rebuilt each time, 2**40 merges
        lines.append(f"l{i}: &l{i} {{<<: [*l{i - 1}, *l{i - 1}], k{i}: {i}}}")
    doc = kubeyaml.load("\n".join(lines))
    assert doc["l39"] == {f"k{i}": i for i in range(40)}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 1\nratio: .inf\n", "line 2, column 8: key 'ratio': .inf is not a number JSON can carry"),
        ("a:\n  b: [1, -.Inf]\n", "line 2, column 10: -.Inf is not a number JSON can carry"),  # in a list
        ("a:\n  b: .NaN\n", "line 2, column 6: key 'b': .NaN is not a number"),
        ("~: 1\n", "line 1, column 1: a mapping key must be a string, number or boolean, not null"),
        ("? [1]\n: 2\n", "line 1, column 3: a mapping key must be a string, number or boolean, not list"),
        ("a: !!int abc\n", "line 1, column 4: key 'a': 'abc' is not an integer (!!int)"),
        ("a: !!bool maybe\n", "line 1, column 4: key 'a': 'maybe' is not a boolean (!!bool)"),
    ],
)
def test_what_json_cannot_carry_is_refused_with_line_and_key(text: str, message: str) -> None:
    with pytest.raises(kubeyaml.NotJSONError) as exc:
        kubeyaml.load(text)
    e = exc.value
    assert e.problem_mark is not None
    shown = f"line {e.problem_mark.line + 1}, column {e.problem_mark.column + 1}: "
    shown += f"{e.context}: {e.problem}" if e.context else str(e.problem)
    assert shown.startswith(message), shown


def test_the_agent_config_keeps_yaml_1_1() -> None:
    """The config file is the agent's own format: read with PyYAML's rules (on the same C parser)."""
    assert kubeyaml.load_own("a: 22:22\nb: y\nc: on\n") == {"a": 1342, "b": "y", "c": True}


def _write(root: pathlib.Path, rel: str, text: str) -> None:
    (root / rel).write_text(text)


def test_typed_lists_are_unwrapped_as_kubectl_does(tmp_path: pathlib.Path) -> None:
    _write(
        tmp_path,
        "lists.yaml",
        "apiVersion: v1\nkind: ConfigMapList\nitems:\n"
        "- {apiVersion: v1, kind: ConfigMap, metadata: {name: one}}\n"
        "- apiVersion: v1\n  kind: List\n  items: [{apiVersion: v1, kind: Secret, metadata: {name: two}}]\n"
        "---\napiVersion: example.com/v1\nkind: Basket\nmetadata: {name: kept}\nitems: [apple]\n",
    )
    loaded = manifests.load_paths(tmp_path, ["lists.yaml"])
    assert [(m.key.kind, m.key.name, m.origin) for m in loaded] == [
        ("ConfigMap", "one", "lists.yaml#0.items[0]"),
        ("Secret", "two", "lists.yaml#0.items[1].items[0]"),
        ("Basket", "kept", "lists.yaml#1"),  # an object with items whose kind is not a list's is one object
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleList\nitems:\n- {apiVersion: v1, kind: Role}\n",
            "bad.yaml#0.items[0]: metadata.name is missing (Role)",
        ),
        ("apiVersion: v1\nkind: List\nitems: [{kind: A, metadata: {name: a}}]\n", "bad.yaml#0.items[0]: apiVersion"),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {when: 2001-12-14, ratio: .nan}\n",
            "bad.yaml#0: unreadable value at line 4, column 33: key 'ratio': .nan is not a number JSON can carry",
        ),
    ],
)
def test_list_items_and_values_are_named_in_errors(tmp_path: pathlib.Path, text: str, message: str) -> None:
    _write(tmp_path, "bad.yaml", text)
    with pytest.raises(errors.ManifestError) as exc:
        manifests.load_paths(tmp_path, ["bad.yaml"])
    assert str(exc.value).startswith(message), str(exc.value)


def test_prometheus_operator_crds_read_their_bare_equals_as_strings() -> None:
    from tests.conftest import CORPORA

    setup = CORPORA / "prometheus-operator-kube-prometheus" / "manifests" / "setup"
    crd = setup / "0alertmanagerConfigCustomResourceDefinition.yaml"
    with pytest.raises(yaml.YAMLError, match=r"tag:yaml\.org,2002:value"):
        yaml.safe_load(crd.read_text())  # YAML 1.1, as the agent read it before
    text = json.dumps(kubeyaml.load(crd.read_text()))
    assert '"enum": ["!=", "=", "=~", "!~"]' in text


def test_the_dumper_writes_numbers_plain() -> None:
    """A whole float is written as a float (not ``!!float '1.0'``); text that only looks numeric stays plain."""
    text = kubeyaml.dump_all([{"a": 1.0, "b": -2.0, "c": 0.5, "d": 3, "e": "1.2.3", "f": "v1.2"}])
    assert text == "a: 1.0\nb: -2.0\nc: 0.5\nd: 3\ne: 1.2.3\nf: v1.2\n"
    assert kubeyaml.load(text) == {"a": 1, "b": -2, "c": 0.5, "d": 3, "e": "1.2.3", "f": "v1.2"}

"""``${VAR}`` substitution: declared variables replaced, ``$${VAR}`` kept literal, and every missing one an error
naming file, document and variable."""

from __future__ import annotations

import pathlib

import pytest

from agent import config
from agent.sources import manifests, substitute
from agent.sources.render import plain
from reconcilers import errors

DOC = """apiVersion: v1
kind: Secret
metadata: {name: token, namespace: ns}
stringData: {TOKEN: "${DELEGATE_TOKEN}", SCRIPT: "echo $${HOME}", PLAIN: "$HOME"}
"""


def load(text: str) -> list[manifests.resources.Manifest]:
    return plain.parse_stream(text, "delegate/delegate.yaml")


def test_declared_variables_are_substituted(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.setenv("TOKEN_ENV", "s3cret")
    (tmp_path / "tok").write_text("from-file\n")
    values = substitute.resolve(
        {"DELEGATE_TOKEN": config.SecretRef(env="TOKEN_ENV"), "OTHER": config.SecretRef(file=str(tmp_path / "tok"))}
    )
    assert values["OTHER"] == "from-file"
    out, used = substitute.apply(load(DOC), values)
    assert out[0].body["stringData"] == {"TOKEN": "s3cret", "SCRIPT": "echo ${HOME}", "PLAIN": "$HOME"}
    assert used == {"s3cret"}


def test_an_undeclared_variable_names_file_document_and_variable() -> None:
    with pytest.raises(errors.ManifestError) as e:
        substitute.apply(load("---\n" + DOC), {})
    assert str(e.value) == (
        "delegate/delegate.yaml#0: ${DELEGATE_TOKEN} is not a declared variable "
        "(add it to the config's or the app's variables, or give a default: ${NAME:=value})"
    )


def test_an_unset_variable_names_its_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SURELY_UNSET_TOKEN", raising=False)
    values = substitute.resolve({"DELEGATE_TOKEN": config.SecretRef(env="SURELY_UNSET_TOKEN")})
    with pytest.raises(
        errors.ManifestError,
        match=r"#0: \$\{DELEGATE_TOKEN\} has no value: variables.DELEGATE_TOKEN: "
        r"environment variable SURELY_UNSET_TOKEN is not set",
    ):
        substitute.apply(load(DOC), values)


def test_defaults_and_the_paths_a_secret_went_to() -> None:
    doc = """apiVersion: v1
kind: ConfigMap
metadata: {name: c, namespace: ns}
data: {env: "${ENV}", tier: "${TIER:=gold}", kept: "$${TIER:=x}", url: "postgres://app:${PW}@db"}
"""
    out, used = substitute.apply(load(doc), {"ENV": "prod", "PW": "pw-1"}, secret={"pw-1"})
    assert out[0].body["data"] == {"env": "prod", "tier": "gold", "kept": "${TIER:=x}", "url": "postgres://app:pw-1@db"}
    assert out[0].sensitive == (("data", "url"),)  # only where a secret went: the diff masks it on both sides
    assert used == {"prod", "pw-1"}


def test_a_diff_masks_sensitive_paths_on_both_sides() -> None:
    from reconcilers import diff

    live = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"url": "old-pw", "a": "1"}}
    merged = {**live, "data": {"url": "new-pw", "a": "2"}}
    shown = diff.object_diff(live, merged, "c", [("data", "url")])
    assert "old-pw" not in shown.unified
    assert "new-pw" not in shown.unified
    assert "*** (before)" in shown.unified
    assert "*** (after)" in shown.unified
    assert "+  a: '2'" in shown.unified
    same = diff.object_diff({**live, "data": {"url": "pw", "a": "1"}}, {**live, "data": {"url": "pw", "a": "2"}}, "c",
                            [("data", "url")])  # fmt: skip
    assert "url: '***'" in same.unified


def test_a_forced_apply_says_which_fields_it_took_from_whom() -> None:
    from reconcilers import diff

    def obj(*entries: tuple[str, str, dict[str, object]]) -> dict[str, object]:
        fields = [{"manager": m, "operation": op, "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": f}
                  for m, op, f in entries]  # fmt: skip
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "managedFields": fields}}

    argo = {"f:data": {"f:a": {}, "f:b": {}}}
    live = obj(("argocd-controller", "Apply", argo))
    merged = obj(
        ("argocd-controller", "Apply", {"f:data": {"f:b": {}}}), ("gitops-agent", "Apply", {"f:data": {"f:a": {}}})
    )
    assert diff.taken_over(live, merged, "gitops-agent") == "fields taken over from argocd-controller: .data.a"
    assert diff.taken_over(merged, merged, "gitops-agent") == ""
    assert diff.taken_over(None, merged, "gitops-agent") == ""
    keyed = {"f:spec": {"f:containers": {'k:{"name":"web"}': {".": {}, "f:image": {}}}}}
    assert diff._leaves(keyed) == [".spec.containers[name=web]", ".spec.containers[name=web].image"]

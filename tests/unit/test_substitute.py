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
        "(add it under variables in the agent config)"
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

"""docs/config-reference.md is what the config models say now (regenerate it with
``python -m agent.config_reference > docs/config-reference.md``), and every key of config.example.yaml is in it."""

from __future__ import annotations

import pathlib

from agent import config, config_keys, config_reference, kubeyaml

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_the_committed_reference_is_generated_from_the_models() -> None:
    committed = (REPO / "docs" / "config-reference.md").read_text()
    assert committed == config_reference.reference(), (
        "docs/config-reference.md differs from the models: python -m agent.config_reference > docs/config-reference.md"
    )


def test_config_example_has_no_unknown_key_and_loads() -> None:
    raw = kubeyaml.load_own((REPO / "config.example.yaml").read_text())
    assert config_keys.unknown_keys(raw, config.AgentConfig) == []
    reference = config_reference.reference()
    for model in config_reference._models(config.AgentConfig):
        assert f"## {model.__name__}" in reference


def test_the_committed_schema_is_generated_from_the_models_and_checks_what_the_agent_checks() -> None:
    import json

    import jsonschema_rs  # schemathesis's validator, a dev dependency already

    schema = config_reference.schema()
    committed = json.loads((REPO / "docs" / "config.schema.json").read_text())
    assert committed == schema, "docs/config.schema.json differs: gitops-agent config schema > docs/config.schema.json"
    validator = jsonschema_rs.Draft202012Validator(schema)
    example = kubeyaml.load_own((REPO / "config.example.yaml").read_text())
    assert validator.is_valid(example), [e.message for e in validator.iter_errors(example)][:5]
    typo = {**example, "sync": {**example["sync"], "intervall": "5m"}}
    assert not validator.is_valid(typo)  # an unknown key, as the agent refuses it
    sizes = {
        **example,
        "server": {**example["server"], "maxBodyBytes": "10Mi"},
        "sync": {**example["sync"], "interval": 90},
    }
    assert validator.is_valid(sizes)  # sizes with units, durations as seconds: what the agent reads
    wrong = {**example, "sync": {**example["sync"], "interval": "soon"}}
    assert not validator.is_valid(wrong)

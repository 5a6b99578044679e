"""Errors typed end to end, against a real test cluster through ``gitops-agent sync --json``: a failed sync's
``problem`` names its kind, the object a wave waited for or the hook that failed, and the document of a malformed
manifest, beside the ``error`` text."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.test_phases import app, cm, deployment, job, sync  # noqa: F401 (app is a fixture)


def test_a_wave_that_never_becomes_healthy_names_the_object_it_waited_for(
    app: Any,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, repo, config, ns = app
    repo.write_objects("app/first.yaml", cm("first", ns, wave=0))
    repo.write_objects("app/web.yaml", deployment("web", ns, "web:broken", wave=1))
    repo.write_objects("app/last.yaml", cm("last", ns, wave=2))
    repo.commit("the second of three waves broken")
    code, result = sync(config, capsys)
    assert code == 1
    problem = result["problem"]
    assert (problem["kind"], problem["message"]) == ("wave", result["error"])
    assert problem["object"] == {"group": "apps", "kind": "Deployment", "namespace": ns, "name": "web"}


def test_a_failed_hook_and_a_malformed_manifest_are_named_in_the_problem(
    app: Any,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, repo, config, ns = app
    repo.write_objects("app/config.yaml", cm("config", ns))
    repo.write_objects("app/migrate.yaml", job("migrate-", ns, "PreSync", image="migrate:fail"))
    repo.commit("a migration that fails")
    code, result = sync(config, capsys)
    assert code == 1
    problem = result["problem"]
    assert problem["kind"] == "hook"
    assert problem["object"]["kind"] == "Job"
    assert problem["object"]["name"].startswith("migrate-")

    repo.write("app/broken.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: [not, a, mapping]\n")
    repo.commit("a malformed manifest")
    code, result = sync(config, capsys)
    assert code == 2  # a source error: nothing could be synced
    assert result["problem"]["kind"] == "source"
    assert result["problem"]["document"] == "app/broken.yaml#0"
    assert result["problem"]["message"] == result["error"]

"""``gitops-agent diff`` against a real cluster: exit 0 in sync, 1 on drift, 2 on error (like ``kubectl diff``);
a readable unified diff with the changed paths; ``--revision`` previews a commit not yet deployed; a Secret's
values never appear in the output."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from agent import cli
from tests.conftest import GitRepo, cluster_entry, dynamic_client

SECRET_VALUE = "s3cr3t-do-not-print-9f2c"
NEW_SECRET_VALUE = "n3w-s3cr3t-also-hidden-71ab"


def objects(ns: str, *, replicas: int = 2, secret: str = SECRET_VALUE) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds", "namespace": ns},
            "stringData": {"token": secret},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {"name": "web", "image": "example/web:1", "resources": {"requests": {"cpu": "0.5"}}}
                        ]
                    },
                },
            },
        },
    ]


def diff(config: Any, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = cli.main(["diff", "--config", str(config), *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture
def synced(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> Any:
    (tc,) = clusters(1)
    git_repo.write_objects("app/all.yaml", *objects(namespace))
    git_repo.commit("v1")
    config = make_config(git_repo, [cluster_entry(tc, "a", ["app"])])
    assert cli.main(["sync", "--config", str(config)]) == 0
    capsys.readouterr()
    return tc, git_repo, config, namespace


def test_in_sync_exits_0(synced: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _, _, config, _ = synced
    code, out = diff(config, capsys)
    assert code == 0, out
    assert "0 object(s) would change" in out


def test_out_of_band_drift_shows_a_unified_diff_and_exits_1(synced: Any, capsys: pytest.CaptureFixture[str]) -> None:
    tc, _, config, ns = synced
    api = dynamic_client(tc).resources.get(api_version="apps/v1", kind="Deployment")
    api.patch(
        name="web",
        namespace=ns,
        body={"spec": {"replicas": 7}},
        content_type="application/merge-patch+json",
        field_manager="someone",
    )
    secret = base64.b64encode(b"tampered-value-0042").decode()
    dynamic_client(tc).resources.get(api_version="v1", kind="Secret").patch(
        name="creds",
        namespace=ns,
        body={"data": {"token": secret}},
        content_type="application/merge-patch+json",
        field_manager="someone",
    )
    code, out = diff(config, capsys)
    assert code == 1, out
    assert f"drifted Deployment.apps {ns}/web (app/all.yaml#2)" in out
    assert f"--- live/apps/Deployment/{ns}/web" in out
    assert "-  replicas: 7" in out
    assert "+  replicas: 2" in out
    assert ".spec.replicas" in out
    assert f"drifted Secret {ns}/creds" in out
    assert "*** (before)" in out
    assert "*** (after)" in out
    for hidden in (SECRET_VALUE, secret, "tampered-value-0042", base64.b64encode(SECRET_VALUE.encode()).decode()):
        assert hidden not in out


def test_revision_previews_an_undeployed_commit(synced: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _, repo, config, ns = synced
    deployed = repo.git("rev-parse", "HEAD")
    repo.write_objects("app/all.yaml", *objects(ns, replicas=3, secret=NEW_SECRET_VALUE))
    repo.write_objects(
        "app/extra.yaml",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "new", "namespace": ns}, "data": {"a": "b"}},
    )
    candidate = repo.commit("v2")
    code, out = diff(config, capsys, "--revision", candidate)
    assert code == 1, out
    assert f"@ {candidate[:12]}" in out
    assert "+  replicas: 3" in out
    assert f"missing (would create) ConfigMap {ns}/new" in out
    assert NEW_SECRET_VALUE not in out
    assert SECRET_VALUE not in out
    code, out = diff(config, capsys, "--revision", deployed)
    assert code == 0, out


def test_errors_exit_2(synced: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _, repo, config, _ = synced
    code, out = diff(config, capsys, "--revision", "no-such-ref")
    assert code == 2
    assert "ref 'no-such-ref' is not a branch, tag or commit" in out
    repo.write("app/bad.yaml", "kind: [\n")
    repo.commit("broken")
    code, out = diff(config, capsys)
    assert code == 2
    assert "app/bad.yaml#0: malformed YAML" in out

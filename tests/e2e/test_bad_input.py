"""Bad input gets a clear error with the documented exit code (0 ok, 1 an object or cluster failed, 2 config or
source error), writes nothing where it is, and never stops the other clusters."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
import yaml

from agent import cli
from tests.conftest import GitRepo, agent_writes, audit_offset, cluster_entry, live_object


def configmap(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"k": "v"},
    }


def namespace_doc(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


@pytest.fixture
def two_apps(git_repo: GitRepo, namespace: str) -> GitRepo:
    """good/ holds a namespace and a ConfigMap; bad/ is filled by each test."""
    git_repo.write_objects("good/app.yaml", namespace_doc(namespace), configmap("good", namespace))
    return git_repo


def run_sync(config: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], str]:
    code = cli.main(["sync", "--config", str(config), "--json"])
    captured = capsys.readouterr()
    out = json.loads(captured.out) if captured.out.strip() else {}
    return code, out, captured.err


def test_malformed_yaml_names_file_and_document_and_writes_nothing_of_its_path(
    two_apps: GitRepo, clusters: Any, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each path is its own app: the broken one writes nothing, the good one on the same cluster still syncs."""
    a, b = clusters(2)
    two_apps.write_objects("bad/ok.yaml", namespace_doc(namespace + "-bad"))
    two_apps.write("bad/broken.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\nkind: [unclosed\n")
    two_apps.commit()
    config = make_config(two_apps, [cluster_entry(a, "a", ["bad", "good"]), cluster_entry(b, "b", ["good"])])
    offset = audit_offset(a)

    code, out, _ = run_sync(config, capsys)

    assert code == 2
    assert out["a"]["errorKind"] == "source"
    assert "bad/broken.yaml#1: malformed YAML at line 6, column 1: did not find expected" in out["a"]["error"]
    written = {e["objectRef"].get("name") for e in agent_writes(a, offset)}
    assert namespace + "-bad" not in written
    assert "x" not in written
    assert live_object(a, "v1", "Namespace", namespace + "-bad") is None
    assert live_object(a, "v1", "ConfigMap", "good", namespace) is not None
    assert out["b"]["error"] is None
    assert live_object(b, "v1", "ConfigMap", "good", namespace) is not None


def test_duplicate_objects_across_files_name_both_documents_and_write_nothing(
    two_apps: GitRepo, clusters: Any, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (a,) = clusters(1)
    two_apps.write_objects("good/copy.yaml", configmap("good", namespace))  # the same object as good/app.yaml#1
    two_apps.commit()
    config = make_config(two_apps, [cluster_entry(a, "a", ["good"])])
    offset = audit_offset(a)

    code, out, _ = run_sync(config, capsys)

    assert code == 2
    assert out["a"]["errorKind"] == "source"
    assert out["a"]["error"] == (
        f"good/copy.yaml#0: ConfigMap {namespace}/good is also defined in good/app.yaml#1: one object, one document"
    )
    assert agent_writes(a, offset) == []


def test_one_object_in_two_paths_fails_the_second_path_and_the_first_keeps_it(
    two_apps: GitRepo, clusters: Any, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (a,) = clusters(1)
    two_apps.write_objects("bad/copy.yaml", configmap("good", namespace), configmap("other", namespace))
    two_apps.commit()
    config = make_config(two_apps, [cluster_entry(a, "a", ["good", "bad"])])
    offset = audit_offset(a)

    code, out, _ = run_sync(config, capsys)

    assert code == 2
    assert out["a"]["errorKind"] == "config"
    assert out["a"]["error"] == (
        f"app bad: ConfigMap {namespace}/good (bad/copy.yaml#0) is also rendered by app good "
        "(good/app.yaml#1): one object, one app; good keeps it"
    )
    assert "other" not in {e["objectRef"].get("name") for e in agent_writes(a, offset)}
    assert live_object(a, "v1", "ConfigMap", "good", namespace) is not None


def test_unknown_kind_fails_its_stage_and_other_clusters_sync(
    two_apps: GitRepo, clusters: Any, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = clusters(2)
    two_apps.write_objects(
        "bad/widget.yaml",
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": namespace}},
    )
    two_apps.commit()
    config = make_config(two_apps, [cluster_entry(a, "a", ["good", "bad"]), cluster_entry(b, "b", ["good"])])

    code, out, _ = run_sync(config, capsys)

    assert code == 1
    failed = [o for o in out["a"]["objects"] if o["action"] == "failed"]
    assert [(o["kind"], o["source"]) for o in failed] == [("Widget", "bad/widget.yaml#0")]
    assert "unknown kind Widget in example.com/v1" in failed[0]["message"]
    assert out["b"]["error"] is None
    assert live_object(b, "v1", "ConfigMap", "good", namespace) is not None


def test_missing_kubeconfig_is_a_config_error_and_other_clusters_sync(
    two_apps: GitRepo,
    clusters: Any,
    make_config: Any,
    namespace: str,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (b,) = clusters(1)
    two_apps.commit()
    missing = tmp_path / "nowhere" / "kubeconfig"
    config = make_config(
        two_apps, [{"name": "a", "kubeconfig": str(missing), "paths": ["good"]}, cluster_entry(b, "b", ["good"])]
    )

    code, out, _ = run_sync(config, capsys)

    assert code == 2
    assert out["a"]["errorKind"] == "config"
    assert out["a"]["error"] == f"cluster a: kubeconfig {missing}: file not found"
    assert out["b"]["error"] is None
    assert live_object(b, "v1", "ConfigMap", "good", namespace) is not None


def test_unreachable_cluster_fails_alone(
    two_apps: GitRepo,
    clusters: Any,
    make_config: Any,
    namespace: str,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (b,) = clusters(1)
    two_apps.commit()
    kubeconfig = yaml.safe_load(b.kubeconfig.read_text())
    kubeconfig["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"  # nothing listens on port 1
    dead = tmp_path / "dead-kubeconfig"
    dead.write_text(yaml.safe_dump(kubeconfig))
    config = make_config(
        two_apps, [{"name": "a", "kubeconfig": str(dead), "paths": ["good"]}, cluster_entry(b, "b", ["good"])]
    )

    code, out, _ = run_sync(config, capsys)

    assert code == 1
    assert out["a"]["errorKind"] == "cluster"
    assert out["a"]["error"].startswith("cluster a: https://127.0.0.1:1: ")
    assert "refused" in out["a"]["error"].lower()
    assert out["b"]["error"] is None
    assert live_object(b, "v1", "ConfigMap", "good", namespace) is not None


def test_bad_ref_is_a_source_error_and_nothing_is_written(
    two_apps: GitRepo, clusters: Any, make_config: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    (a,) = clusters(1)
    two_apps.commit()
    config = make_config(two_apps, [cluster_entry(a, "a", ["good"])])
    cfg = yaml.safe_load(config.read_text())
    cfg["source"]["ref"] = "no-such-branch"
    config.write_text(yaml.safe_dump(cfg))
    offset = audit_offset(a)

    code, out, err = run_sync(config, capsys)

    assert code == 2
    assert out == {}
    assert "ref 'no-such-branch' is not a branch, tag or commit of the source" in err
    assert agent_writes(a, offset) == []


def test_invalid_config_names_the_key(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("source: {url: /x}\nclusters:\n  - name: Bad_Name\n    paths: [/abs]\nsync: {interval: soon}\n")
    code = cli.main(["sync", "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 2
    assert str(config) in err
    assert "clusters[0].name" in err
    assert "clusters[0].paths" in err
    assert "sync.interval" in err

"""``gitops-agent config validate`` without a cluster: the config's own errors (exit 2, naming the key), and each
placed app's path looked up in its source at the current revision (a git repository served from a directory)."""

from __future__ import annotations

import pathlib
import subprocess

import pytest

from agent import cli


def _repo(path: pathlib.Path) -> None:
    (path / "good").mkdir(parents=True)
    (path / "good" / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    (path / "empty").mkdir()
    (path / "empty" / "README.md").write_text("no manifests here\n")
    for command in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "one"]):
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *command]
        subprocess.run(git, cwd=path, check=True, capture_output=True, timeout=30)


def test_a_missing_or_empty_path_is_named_without_a_cluster(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _repo(tmp_path / "repo")
    config = tmp_path / "agent.yaml"
    kubeconfig = tmp_path / "nowhere.kubeconfig"  # never read: no cluster is contacted
    config.write_text(
        f"source: {{url: {tmp_path / 'repo'}, ref: main, cacheDir: {tmp_path / 'cache'}}}\n"
        f"clusters: [{{name: dev, kubeconfig: {kubeconfig}}}]\n"
        "apps:\n"
        "  - {name: good, path: good, clusters: {names: [dev]}}\n"
        "  - {name: typo, path: goood, clusters: {names: [dev]}}\n"
        "  - {name: docs, path: empty, clusters: {names: [dev]}}\n"
    )
    assert cli.main(["config", "validate", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[1:4]}
    assert rows["good"].endswith("ok")
    assert rows["typo"].endswith("goood does not exist in the source")
    assert rows["docs"].endswith("empty holds no YAML or JSON file")
    assert f"{config}: not valid" in out

    config.write_text(config.read_text().replace("goood", "good").replace("path: empty", "path: good"))
    assert cli.main(["config", "validate", "--config", str(config)]) == 0
    assert f"{config}: valid" in capsys.readouterr().out


def test_a_config_error_is_exit_2_naming_the_key(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("source: {url: /r}\nsync: {intervall: 5m}\nclusters: [{name: a, paths: [x]}]\n")
    assert cli.main(["config", "validate", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "sync.intervall: unknown key; did you mean sync.interval?" in err
    assert err.count("error:") == 1


def test_a_local_repository_path_that_does_not_exist_is_named(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"source: {{url: {tmp_path / 'nope'}, type: git, cacheDir: {tmp_path / 'cache'}}}\n"
        "clusters: [{name: a, kubeconfig: k, paths: [x]}]\n"
    )
    assert cli.main(["config", "validate", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path / 'nope'} does not exist (a local repository path" in out
    assert "unsupported URL protocol" not in out

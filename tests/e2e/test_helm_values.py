"""An app's chart with values (issue 16) against real clusters: values files per cluster (``${CLUSTER_NAME}``), an
optional one missing, one from another source (``valuesFrom``), inline values, and a SOPS-encrypted values file
(issue 18) whose value reaches the cluster and never the output; a missing values file is a clear error."""

from __future__ import annotations

import base64
import json
import pathlib
from typing import Any

import pytest
import yaml

from agent import cli
from tests.conftest import GitRepo, agent_writes, audit_offset, live_object
from tests.e2e.test_sops import age_key, encrypt
from tests.e2e.test_sync_corpora import ensure_namespace

TOKEN = "tok-5e1f-only-in-git-encrypted"


def _chart(repo: GitRepo) -> None:
    repo.write("charts/web/Chart.yaml", "apiVersion: v2\nname: web\nversion: 0.1.0\n")
    repo.write("charts/web/values.yaml", "greeting: default\ncluster: unknown\nreplicas: 1\ntoken: ''\ninline: 'no'\n")
    repo.write(
        "charts/web/templates/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\ndata:\n"
        "  greeting: {{ .Values.greeting | quote }}\n  cluster: {{ .Values.cluster | quote }}\n"
        "  replicas: {{ .Values.replicas | quote }}\n  inline: {{ .Values.inline | quote }}\n",
    )
    repo.write(
        "charts/web/templates/token.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {{ .Release.Name }}-token\n"
        "stringData:\n  token: {{ .Values.token | quote }}\n",
    )


def _sync(config: pathlib.Path, capsys: pytest.CaptureFixture[str], env: dict[str, str]) -> tuple[int, Any, str]:
    capsys.readouterr()
    code = cli.main(["sync", "--config", str(config), "--json"])
    out = capsys.readouterr()
    return code, json.loads(out.out or "{}"), out.out + out.err


def test_values_per_cluster_from_two_sources_inline_and_encrypted(
    git_repo: GitRepo,
    clusters: Any,
    make_config: Any,
    namespace: str,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = clusters(2)
    for tc in (a, b):
        ensure_namespace(tc, namespace)
    key, recipient = age_key(tmp_path, "values")
    monkeypatch.setenv("SOPS_AGE_KEY", key)
    _chart(git_repo)
    git_repo.write("values/common.yaml", "greeting: hello\n")
    git_repo.write("values/a.yaml", "cluster: alpha\n")
    git_repo.write("values/b.yaml", "cluster: beta\n")
    encrypt(git_repo.write("values/secret.yaml", yaml.safe_dump({"token": TOKEN})), recipient)
    git_repo.commit()
    platform = GitRepo(tmp_path / "platform")
    platform.write("values/web.yaml", "replicas: 3\n")
    platform.commit()
    app = {
        "name": "web",
        "path": "charts/web",
        "namespace": namespace,
        "decryption": {"sops": True},
        "helm": {
            "releaseName": "site",
            "valuesFiles": [
                "values/common.yaml",
                "values/${CLUSTER_NAME}.yaml",
                {"path": "values/${CLUSTER_LABEL_tier}.yaml", "optional": True},
                "values/secret.yaml",
            ],
            "valuesFrom": [{"source": "platform", "path": "values/web.yaml"}],
            "values": {"inline": "yes"},
        },
    }
    clusters_cfg = [
        {"name": "a", "kubeconfig": str(a.kubeconfig), "namespace": namespace, "labels": {"tier": "gold"}},
        {"name": "b", "kubeconfig": str(b.kubeconfig), "namespace": namespace, "labels": {"tier": "silver"}},
    ]
    config = make_config(
        git_repo,
        clusters_cfg,
        apps=[app],
        sources={"platform": {"url": str(platform.path), "cacheDir": str(tmp_path / "cache-platform")}},
        decryption={"sops": {"ageKeys": [{"env": "SOPS_AGE_KEY"}]}},
    )

    code, results, printed = _sync(config, capsys, {})

    assert code == 0, printed
    for name, tc, cluster in (("a", a, "alpha"), ("b", b, "beta")):
        settings = live_object(tc, "v1", "ConfigMap", "site-settings", namespace)
        assert settings["data"] == {"greeting": "hello", "cluster": cluster, "replicas": "3", "inline": "yes"}
        secret = live_object(tc, "v1", "Secret", "site-token", namespace)
        assert base64.b64decode(secret["data"]["token"]).decode() == TOKEN
        assert {o["source"] for o in results[name]["objects"]} == {
            "charts/web/templates/settings.yaml#0",
            "charts/web/templates/token.yaml#0",
        }
    assert TOKEN not in printed

    offsets = {n: audit_offset(tc) for n, tc in (("a", a), ("b", b))}
    code, _, printed = _sync(config, capsys, {})
    assert code == 0, printed
    assert all(agent_writes(tc, offsets[n]) == [] for n, tc in (("a", a), ("b", b)))


def test_a_missing_values_file_fails_the_app_naming_it_and_writes_nothing(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (a,) = clusters(1)
    ensure_namespace(a, namespace)
    _chart(git_repo)
    git_repo.commit()
    app = {"name": "web", "path": "charts/web", "helm": {"valuesFiles": ["values/${CLUSTER_NAME}.yaml"]}}
    config = make_config(git_repo, [{"name": "a", "kubeconfig": str(a.kubeconfig), "namespace": namespace}], apps=[app])
    offset = audit_offset(a)

    code, results, printed = _sync(config, capsys, {})

    assert code == 2, printed
    assert results["a"]["error"] == ("values/a.yaml: helm.valuesFiles[0]: values file not found in source default")
    assert agent_writes(a, offset) == []

"""``gitops-agent import argocd`` against a real test cluster: Argo CD's declarative setup (a cluster Secret with a
bearer token in clear, a repository Secret, an AppProject), an Application and an ApplicationSet written after
Argo CD's operator manual, and one Application with a Config Management Plugin. The import writes a config that
loads, reports the plugin app with file, document and field (exit 1), writes and prints no credential, and the
config it wrote syncs on the cluster what Argo CD would: the Application's path, not its subfolder (Argo CD's
``directory.recurse`` is false by default), in the namespace its project allows, and one app per list element;
an object Argo CD had applied (another field manager) is taken over by server-side apply, its UID unchanged."""

from __future__ import annotations

import base64
import json
import pathlib
from typing import Any

import pytest
import yaml

from agent import cli
from tests.conftest import GitRepo, dynamic_client, live_object, target_identity
from tests.e2e.test_sync_corpora import ensure_namespace

REPO_URL = "https://git.example.com/org/guestbook.git"


def _configmap(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"a": "1"},
    }


def _argocd_files(folder: pathlib.Path, server: str, ca: str, token: str, namespace: str) -> None:
    secrets = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "dev-cluster",
                "namespace": "argocd",
                "labels": {"argocd.argoproj.io/secret-type": "cluster", "env": "dev"},
            },
            "type": "Opaque",
            "stringData": {
                "name": "dev",
                "server": server,
                "config": json.dumps({"bearerToken": token, "tlsClientConfig": {"insecure": False, "caData": ca}}),
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "guestbook-repo",
                "namespace": "argocd",
                "labels": {"argocd.argoproj.io/secret-type": "repository"},
            },
            "stringData": {"type": "git", "url": REPO_URL, "password": "s3cr3t-repo-password", "username": "bot"},
        },
    ]
    project = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": {"name": "team", "namespace": "argocd"},
        "spec": {
            "description": "the team's project",
            "sourceRepos": ["https://git.example.com/org/*"],
            "destinations": [{"namespace": namespace, "server": server}],
        },
    }
    app = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": "guestbook",
            "namespace": "argocd",
            "labels": {"team": "web"},
            "finalizers": ["resources-finalizer.argocd.argoproj.io"],
        },
        "spec": {
            "project": "team",
            "source": {"repoURL": REPO_URL, "targetRevision": "main", "path": "guestbook"},
            "destination": {"server": server, "namespace": namespace},
            "syncPolicy": {
                "automated": {"prune": True, "selfHeal": True},
                "syncOptions": ["CreateNamespace=true", "ServerSideApply=true"],
                "retry": {"limit": 2, "backoff": {"duration": "5s", "factor": 2, "maxDuration": "3m"}},
            },
            "ignoreDifferences": [{"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]}],
            "revisionHistoryLimit": 10,
        },
    }
    plugin = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "plugged", "namespace": "argocd"},
        "spec": {
            "source": {"repoURL": REPO_URL, "path": "plugged", "plugin": {"name": "cdk8s"}},
            "destination": {"name": "dev", "namespace": namespace},
        },
    }
    app_set = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {"name": "sets", "namespace": "argocd"},
        "spec": {
            "goTemplate": True,
            "goTemplateOptions": ["missingkey=error"],
            "generators": [{"list": {"elements": [{"set": "one"}, {"set": "two"}]}}],
            "template": {
                "metadata": {"name": "set-{{.set}}"},
                "spec": {
                    "project": "default",
                    "source": {"repoURL": REPO_URL, "targetRevision": "HEAD", "path": "sets/{{.set}}"},
                    "destination": {"name": "dev", "namespace": namespace},
                    "syncPolicy": {"automated": {}},
                },
            },
        },
    }
    (folder / "secrets.yaml").write_text(yaml.safe_dump_all(secrets))
    (folder / "apps.yaml").write_text(yaml.safe_dump_all([project, app, plugin]))
    (folder / "appset.yaml").write_text(yaml.safe_dump(app_set))


def test_an_argocd_setup_imports_and_syncs_what_argocd_would(
    clusters: Any,
    make_config: Any,
    namespace: str,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tc,) = clusters(1)
    _, token = target_identity(tc, make_config, tmp_path)
    kube = yaml.safe_load(tc.kubeconfig.read_text())["clusters"][0]["cluster"]
    repo = GitRepo(tmp_path / "guestbook")
    repo.write_objects("guestbook/cm.yaml", _configmap("guestbook", namespace))
    repo.write_objects("guestbook/nested/cm.yaml", _configmap("nested", namespace))
    for s in ("one", "two"):
        repo.write_objects(f"sets/{s}/cm.yaml", _configmap(f"set-{s}", namespace))
    repo.commit("guestbook")
    argo = tmp_path / "argocd"
    argo.mkdir()
    _argocd_files(argo, kube["server"], kube["certificate-authority-data"], token, namespace)
    out = tmp_path / "imported.yaml"

    capsys.readouterr()
    code = cli.main(["import", "argocd", str(argo), "--out", str(out), "--map-url", f"{REPO_URL}={repo.path}"])
    printed = capsys.readouterr()
    assert code == 1, printed.err  # the plugin app could not be mapped
    written = out.read_text()
    for secret in (token, "s3cr3t-repo-password", base64.b64encode(token.encode()).decode()):
        assert secret not in written
        assert secret not in printed.err
        assert secret not in printed.out
    plugin = [line for line in printed.err.splitlines() if line.startswith("not mapped")]
    assert plugin == [
        f"not mapped {argo / 'apps.yaml'}: document 2 (Application argocd/plugged) spec.source.plugin: a Config "
        "Management Plugin: the agent renders plain YAML, kustomize, Helm and jsonnet only (render it to one of "
        "those in git)"
    ], printed.err
    assert "set $ARGOCD_CLUSTER_DEV_TOKEN to it" in printed.err
    assert f"{argo / 'secrets.yaml'}: document 0 (Secret argocd/dev-cluster) config.bearerToken" in printed.err

    cfg = yaml.safe_load(written)
    (cluster,) = cfg["clusters"]
    assert cluster == {
        "name": "dev",
        "server": kube["server"],
        "labels": {"env": "dev"},
        "token": {"env": "ARGOCD_CLUSTER_DEV_TOKEN"},
        "certificateAuthorityData": kube["certificate-authority-data"],
    }
    (app,) = cfg["apps"]
    assert app["namespaces"] == [namespace]
    assert app["createNamespace"] is True
    assert app["sync"] == {
        "auto": True,
        "prune": True,
        "selfHeal": True,
        "retry": {"limit": 2, "backoff": {"duration": "5s", "factor": 2, "maxDuration": "3m"}},
    }
    assert app["directory"] == {"recurse": False}
    assert cfg["sources"] == {"guestbook": {"url": str(repo.path), "tokenEnv": "ARGOCD_REPO_GUESTBOOK_TOKEN"}}

    # Argo CD had deployed the guestbook already: the agent takes its fields over by server-side apply, no delete
    ensure_namespace(tc, namespace)
    configmaps = dynamic_client(tc).resources.get(api_version="v1", kind="ConfigMap")
    before = configmaps.server_side_apply(
        body={**_configmap("guestbook", namespace), "data": {"a": "0"}},
        namespace=namespace,
        field_manager="argocd-controller",
    )
    # what the operator does next: name this agent, give the token, sync
    cfg["instance"] = f"import-{namespace}"
    cfg["sources"]["guestbook"]["cacheDir"] = str(tmp_path / "cache")
    out.write_text(yaml.safe_dump(cfg))
    monkeypatch.setenv("ARGOCD_CLUSTER_DEV_TOKEN", token)
    monkeypatch.setenv("ARGOCD_REPO_GUESTBOOK_TOKEN", "unused-for-a-local-path")
    code = cli.main(["sync", "--config", str(out), "--json"])
    synced = capsys.readouterr()
    assert code == 0, synced
    for name in ("guestbook", "set-one", "set-two"):
        assert live_object(tc, "v1", "ConfigMap", name, namespace) is not None, name
    assert live_object(tc, "v1", "ConfigMap", "nested", namespace) is None  # recurse: false, as Argo CD reads it
    adopted = live_object(tc, "v1", "ConfigMap", "guestbook", namespace)
    assert adopted["metadata"]["uid"] == before.metadata.uid  # taken over, not deleted and created again
    assert adopted["data"] == {"a": "1"}
    managers = {m["manager"] for m in adopted["metadata"]["managedFields"]}
    assert "gitops-agent" in managers, managers
    entries = {o["name"]: o for a in json.loads(synced.out)["dev"]["apps"] for o in a["objects"]}
    assert entries["guestbook"]["action"] == "configured"
    assert entries["guestbook"]["message"] == "fields taken over from argocd-controller: .data.a"  # the adoption
    assert token not in synced.out + synced.err

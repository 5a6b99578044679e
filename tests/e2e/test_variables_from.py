"""An app's ``variables`` and ``variablesFrom`` (Flux's ``postBuild.substitute`` and ``substituteFrom``) against
a real test cluster: values from a ConfigMap and a Secret of the cluster, inline values over them, and
``${NAME:=default}``; a Secret's value is masked in what the agent prints (a diff of a change of it too); a
ConfigMap that is missing fails its app alone, naming it, and another app on the cluster syncs."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from agent import cli
from tests.conftest import GitRepo, dynamic_client, live_object
from tests.e2e.test_sync_corpora import ensure_namespace

PASSWORD = "s3cret-db-pw-81f2"


def _create(tc: Any, body: dict[str, Any]) -> None:
    dynamic_client(tc).resources.get(api_version="v1", kind=body["kind"]).create(body=body)


def test_variables_from_a_configmap_and_a_secret_of_the_cluster(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tc,) = clusters(1)
    ensure_namespace(tc, namespace)
    meta = {"namespace": namespace}
    _create(tc, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "vars", **meta},
                 "data": {"cluster_env": "prod", "region": "us"}})  # fmt: skip
    _create(tc, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "secret-vars", **meta},
                 "data": {"db_password": base64.b64encode(PASSWORD.encode()).decode()}})  # fmt: skip
    settings = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": namespace},
        "data": {"env": "${cluster_env}", "region": "${region}", "password": "${db_password}", "tier": "${tier:=gold}",
                 "literal": "$${cluster_env}"},
    }  # fmt: skip
    git_repo.write_objects("app/settings.yaml", settings)
    git_repo.write_objects("other/cm.yaml", {**settings, "metadata": {"name": "other", "namespace": namespace},
                                             "data": {"a": "1"}})  # fmt: skip
    git_repo.commit("settings")
    app = {
        "name": "site",
        "path": "app",
        "namespace": namespace,
        "variables": {"region": "eu"},
        "variablesFrom": [{"kind": "ConfigMap", "name": "vars"}, {"kind": "Secret", "name": "secret-vars"}],
    }
    config = make_config(git_repo, [{"name": "c", "kubeconfig": str(tc.kubeconfig)}], apps=[app])
    capsys.readouterr()
    code = cli.main(["sync", "--config", str(config), "--json"])
    out = capsys.readouterr()
    assert code == 0, out.out
    live = live_object(tc, "v1", "ConfigMap", "settings", namespace)
    assert live["data"] == {"env": "prod", "region": "eu", "password": PASSWORD, "tier": "gold",
                            "literal": "${cluster_env}"}  # fmt: skip
    assert PASSWORD not in out.out + out.err

    dynamic_client(tc).resources.get(api_version="v1", kind="Secret").patch(
        name="secret-vars", namespace=namespace, body={"stringData": {"db_password": "n3w-pw-c0ffee"}},
        content_type="application/merge-patch+json",
    )  # fmt: skip
    code = cli.main(["diff", "--config", str(config)])
    shown = capsys.readouterr()
    assert code == 1, shown.out
    assert "password" in shown.out
    assert "n3w-pw-c0ffee" not in shown.out + shown.err
    assert PASSWORD not in shown.out + shown.err

    missing = {**app, "variablesFrom": [{"kind": "ConfigMap", "name": "absent"}]}
    other = {"name": "other", "path": "other", "namespace": namespace}
    config = make_config(git_repo, [{"name": "c", "kubeconfig": str(tc.kubeconfig)}], apps=[missing, other])
    code = cli.main(["sync", "--config", str(config), "--json"])
    result = json.loads(capsys.readouterr().out)
    apps = {a["app"]: a for a in result["c"]["apps"]}
    assert code == 2  # a config error of an app: exit 2, as a missing values file
    assert apps["site"]["error"] == (
        f"app site: variablesFrom[0] (ConfigMap {namespace}/absent): not found in the cluster (optional: true to go "
        "on without it)"
    ), apps["site"]["error"]
    assert apps["other"]["result"] == "Succeeded"
    assert live_object(tc, "v1", "ConfigMap", "settings", namespace)["data"]["password"] == PASSWORD  # kept

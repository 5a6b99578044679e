"""Apps of apps against a real test cluster, without Argo CD's or Flux's CRDs there.

- Argo CD's app of apps: a Helm chart whose templates are Applications (as argocd-example-apps' ``apps`` chart,
  its repository and destination from values) and one ConfigMap: with ``appOfApps: true`` the Applications become
  child apps ``root-<name>`` that sync their paths, the ConfigMap is applied by the parent, and no Application is
  sent to the cluster; an Application dropped from the chart takes its child and the child's objects away (prune).
- In the running agent, an Application added to the parent's folder becomes a child app on the next fetch, and
  the parent is listed with its children in ``/api/v1/appsets`` (``appOfApps``) and filters ``/api/v1/apps``.
- Flux: the production overlay of Flux's reference layout (../shared, as it is) as the parent's path: its
  HelmRelease becomes a chart app of the config's source named like its HelmRepository (podinfo's chart served on
  loopback), with the overlay's values; its Namespace is applied by the parent.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest
import yaml

from agent import cli
from tests.chartservers import ChartRepo
from tests.conftest import CORPORA, GitRepo, agent_writes, audit_offset, live_object, wait_until
from tests.e2e.test_faults import Agent
from tests.e2e.test_import_argocd import _configmap
from tests.e2e.test_import_flux import PODINFO, _gateway_api
from tests.e2e.test_push_to_deploy import request
from tests.e2e.test_run_status import free_port
from tests.e2e.test_sync_corpora import ensure_namespace

APPLICATION = """\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: {name}
  namespace: argocd
spec:
  project: default
  source:
    repoURL: {{{{ .Values.spec.source.repoURL }}}}
    targetRevision: {{{{ .Values.spec.source.targetRevision }}}}
    path: {path}
  destination:
    server: {{{{ .Values.spec.destination.server }}}}
    namespace: {{{{ .Values.namespace }}}}
  syncPolicy:
    automated:
      prune: true
"""


def _sync(config: Any, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    code = cli.main(["sync", "--config", str(config), "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return dict(json.loads(out))


def test_argocd_app_of_apps_chart_syncs_its_applications_as_child_apps(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tc,) = clusters(1)
    git_repo.write("apps/Chart.yaml", "apiVersion: v2\nname: apps\nversion: 0.1.0\n")
    git_repo.write("apps/values.yaml", yaml.safe_dump({
        "namespace": namespace,
        "spec": {"destination": {"server": "https://kubernetes.default.svc"},
                 "source": {"repoURL": str(git_repo.path), "targetRevision": "HEAD"}},
    }))  # fmt: skip
    git_repo.write("apps/templates/guestbook.yaml", APPLICATION.format(name="guestbook", path="guestbook"))
    git_repo.write("apps/templates/settings.yaml", APPLICATION.format(name="settings", path="settings"))
    git_repo.write("apps/templates/own.yaml", yaml.safe_dump(_configmap("root-own", "{{ .Values.namespace }}")))
    git_repo.write_objects("guestbook/cm.yaml", _configmap("guestbook-ui", namespace))
    git_repo.write_objects("settings/cm.yaml", _configmap("settings", namespace))
    git_repo.commit("app of apps")
    root = {"name": "root", "path": "apps", "namespace": namespace, "createNamespace": True, "appOfApps": True}
    config = make_config(git_repo, [{"name": "c", "kubeconfig": str(tc.kubeconfig)}], apps=[root],
                         sync={"prune": True})  # fmt: skip
    since = audit_offset(tc)

    first = _sync(config, capsys)
    apps = {a["app"]: a for a in first["c"]["apps"]}
    assert set(apps) == {"root", "root-guestbook", "root-settings"}, set(apps)
    kinds = {(o["kind"], o["name"]) for o in apps["root"]["objects"]}
    assert kinds == {("Namespace", namespace), ("ConfigMap", "root-own")}, kinds  # its Applications are not applied
    for name in ("guestbook-ui", "settings", "root-own"):
        assert live_object(tc, "v1", "ConfigMap", name, namespace) is not None, name
    assert not [w for w in agent_writes(tc, since) if "argoproj.io" in w["requestURI"]]

    git_repo.remove("apps/templates/settings.yaml")
    git_repo.commit("settings leaves")
    second = _sync(config, capsys)
    left = {a["app"]: [(o["name"], o["action"]) for o in a["objects"]] for a in second["c"]["apps"]}
    assert left["root-settings"] == [("settings", "pruned")], left  # a removed app: its objects pruned
    assert live_object(tc, "v1", "ConfigMap", "settings", namespace) is None  # its child left: pruned
    assert live_object(tc, "v1", "ConfigMap", "guestbook-ui", namespace) is not None


def test_flux_objects_of_a_path_become_child_apps(
    git_repo: GitRepo, clusters: Any, make_config: Any, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    (tc,) = clusters(1)
    _gateway_api(tc)
    shutil.copytree(CORPORA / "fluxcd-flux2-kustomize-helm-example" / "apps", git_repo.path / "apps")
    git_repo.commit("flux apps")
    charts = ChartRepo(tmp_path / "charts", tmp_path / "helm-home")
    charts.add(PODINFO)
    try:
        podinfo = {"type": "helm", "url": charts.url, "cacheDir": str(tmp_path / "cache-charts")}
        parent = {"name": "apps", "path": "apps/production", "appOfApps": True}
        config = make_config(git_repo, [{"name": "c", "kubeconfig": str(tc.kubeconfig)}], apps=[parent],
                             sources={"podinfo": podinfo})  # fmt: skip
        result = _sync(config, capsys)
        apps = {a["app"]: a for a in result["c"]["apps"]}
        assert set(apps) == {"apps", "apps-podinfo"}, set(apps)
        assert [(o["kind"], o["name"]) for o in apps["apps"]["objects"]] == [("Namespace", "podinfo")]
        route = live_object(tc, "gateway.networking.k8s.io/v1", "HTTPRoute", "podinfo", "podinfo")
        assert route is not None
        assert route["spec"]["hostnames"] == ["podinfo.production"]  # the overlay's values
    finally:
        charts.unreachable()


def _plain_application(name: str, repo: GitRepo, namespace: str) -> dict[str, Any]:
    return yaml.safe_load(
        APPLICATION.format(name=name, path=name)
        .replace("{{ .Values.spec.source.repoURL }}", str(repo.path))
        .replace("{{ .Values.spec.source.targetRevision }}", "main")
        .replace("{{ .Values.spec.destination.server }}", "https://kubernetes.default.svc")
        .replace("{{ .Values.namespace }}", namespace)
    )


def test_the_running_agent_makes_a_new_application_a_child_app_on_the_next_fetch(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, tmp_path: Any
) -> None:
    (tc,) = clusters(1)
    ensure_namespace(tc, namespace)
    for name in ("one", "two"):
        git_repo.write_objects(f"{name}/cm.yaml", _configmap(f"cm-{name}", namespace))
    git_repo.write_objects("apps/one.yaml", _plain_application("one", git_repo, namespace))
    git_repo.commit("one")
    root = {"name": "root", "path": "apps", "appOfApps": True}
    config = make_config(git_repo, [{"name": "c", "kubeconfig": str(tc.kubeconfig)}], apps=[root],
                         sync={"interval": "1h"}, server={"listen": f"127.0.0.1:{free_port()}"})  # fmt: skip
    raw = yaml.safe_load(config.read_text())
    raw["source"]["interval"] = "1s"
    config.write_text(yaml.safe_dump(raw))
    agent = Agent(config, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        wait_until(lambda: live_object(tc, "v1", "ConfigMap", "cm-one", namespace) is not None, timeout=60)
        git_repo.write_objects("apps/two.yaml", _plain_application("two", git_repo, namespace))
        git_repo.commit("two")
        wait_until(lambda: live_object(tc, "v1", "ConfigMap", "cm-two", namespace) is not None, timeout=60)
        _, body = request(f"{agent.base}/api/v1/appsets")
        (found,) = json.loads(body)["appSets"]
        assert (found["name"], found["generators"], found["apps"], found["error"]) == (
            "root", ["appOfApps"], ["root-one", "root-two"], None,
        )  # fmt: skip
        listed = json.loads(request(f"{agent.base}/api/v1/apps?appSet=root")[1])
        assert sorted(a["name"] for a in listed["apps"]) == ["root-one", "root-two"]
    finally:
        assert agent.stop() == 0, agent.log.read_text()[-3000:]

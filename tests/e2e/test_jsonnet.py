"""Jsonnet apps against real clusters, rendered as Argo CD renders them: a folder of ``*.jsonnet`` files with a
``libsonnet`` import beside it and one from the app's ``libs``, an ext var and top-level arguments (given as Argo
CD's list form and as our mapping form) renders exactly the objects the reference ``jsonnet`` CLI (go-jsonnet,
``build/jsonnet``) prints for the same inputs, syncs, and resyncs with zero writes. A folder of files no renderer
reads, and a jsonnet file that never ends, each fail their app alone (naming the files, and the render and its
``renderTimeout``) while another app on the cluster syncs."""

from __future__ import annotations

import json
import pathlib
import subprocess
import time
from typing import Any

import pytest

from agent import cli, config
from agent.sources import manifests
from agent.sources.render import jsonnet
from tests.conftest import GitRepo, agent_writes, audit_offset, cluster_entry, live_object

REFERENCE = pathlib.Path(__file__).resolve().parents[2] / "build" / "jsonnet"

GUESTBOOK = """local params = import 'params.libsonnet';
local labels = import 'labels.libsonnet';
function(replicas, tag)
[
  {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: params.name + '-config', labels: labels.common },
    data: { env: std.extVar('env'), tag: tag, replicas: std.toString(replicas) },
  },
  {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: params.name, labels: labels.common },
    spec: {
      replicas: replicas,
      selector: { matchLabels: { app: params.name } },
      template: {
        metadata: { labels: { app: params.name } },
        spec: { containers: [{ name: 'ui', image: params.image + ':' + tag, ports: [{ containerPort: 80 }] }] },
      },
    },
  },
  [{ apiVersion: 'v1', kind: 'List', items: [
    { apiVersion: 'v1', kind: 'Service', metadata: { name: params.name },
      spec: { selector: { app: params.name }, ports: [{ port: 80, targetPort: 80 }] } },
  ] }],
]
"""
PARAMS = "{ name: 'guestbook-ui', image: 'registry.example/guestbook' }\n"
LABELS = "{ common: { 'app.kubernetes.io/part-of': 'guestbook', team: std.extVar('team') } }\n"
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\ndata: {a: b}\n"


def _sync(path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = cli.main(["sync", "--config", str(path), "--json"])
    return code, json.loads(capsys.readouterr().out)


def _flatten(value: Any) -> list[Any]:
    """The objects of a jsonnet value as Argo CD reads them (arrays flattened, ``kind: List`` unwrapped); written
    here, independently of the agent's code."""
    if isinstance(value, list):
        return [o for v in value for o in _flatten(v)]
    if isinstance(value, dict) and value.get("kind") == "List":
        return _flatten(value["items"])
    return [] if value is None else [value]


def test_a_jsonnet_app_renders_what_the_reference_cli_prints_syncs_and_resyncs_for_free(
    clusters: Any,
    git_repo: GitRepo,
    make_config: Any,
    namespace: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tc,) = clusters(1)
    git_repo.write("jsonnet/guestbook/guestbook-ui.jsonnet", GUESTBOOK)
    git_repo.write("jsonnet/guestbook/params.libsonnet", PARAMS)
    git_repo.write("jsonnet/guestbook/README.md", "read by no renderer, ignored beside objects\n")
    git_repo.write("jsonnet-lib/labels.libsonnet", LABELS)
    git_repo.commit()
    monkeypatch.setenv("GUESTBOOK_TEAM", "team-blue")
    argo_form = {  # Argo CD's directory.jsonnet, as written in an Application
        "extVars": [{"name": "env", "value": "prod"}, {"name": "team", "value": "team-blue"}],
        "tlas": [{"name": "replicas", "value": "2", "code": True}, {"name": "tag", "value": "v1.2"}],
        "libs": ["jsonnet-lib"],
    }
    ours = {
        "extVars": {"env": "prod", "team": {"env": "GUESTBOOK_TEAM"}},
        "tlas": {"replicas": {"code": "2"}, "tag": "v1.2"},
        "libs": ["jsonnet-lib"],
    }
    entry = [{**cluster_entry(tc, "a", [], namespace), "labels": {}}]
    app = {"name": "guestbook", "path": "jsonnet/guestbook", "createNamespace": True}
    argo = config.load_config(make_config(git_repo, entry, apps=[{**app, "jsonnet": argo_form}])).apps[0].jsonnet
    path = make_config(git_repo, entry, apps=[{**app, "jsonnet": ours}])
    mapping = config.load_config(path).apps[0].jsonnet
    assert argo is not None
    assert mapping is not None
    assert argo.ext_vars["team"] == config.JsonnetValue(value="team-blue")
    assert argo.model_copy(update={"ext_vars": {**argo.ext_vars, "team": mapping.ext_vars["team"]}}) == mapping

    reference = subprocess.run(
        [str(REFERENCE), "--ext-str", "env=prod", "--ext-str", "team=team-blue", "--tla-code", "replicas=2",
         "--tla-str", "tag=v1.2", "-J", str(git_repo.path / "jsonnet-lib"),
         str(git_repo.path / "jsonnet/guestbook/guestbook-ui.jsonnet")],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    expected = _flatten(json.loads(reference.stdout))
    inputs, revealed = jsonnet.inputs(mapping, "jsonnet/guestbook", {"GUESTBOOK_TEAM": "team-blue"})
    rendered = manifests.load_paths(git_repo.path, ["jsonnet/guestbook"], jsonnet=inputs)
    assert [m.body for m in rendered] == expected
    assert [m.source_file for m in rendered] == ["jsonnet/guestbook/guestbook-ui.jsonnet"] * 3
    assert revealed == {"team-blue"}

    code, results = _sync(path, capsys)
    assert code == 0, results
    assert sorted((o["kind"], o["name"]) for o in results["a"]["objects"]) == [
        ("ConfigMap", "guestbook-ui-config"), ("Deployment", "guestbook-ui"), ("Namespace", namespace),
        ("Service", "guestbook-ui"),
    ]  # fmt: skip
    live = live_object(tc, "v1", "ConfigMap", "guestbook-ui-config", namespace)
    assert live["data"] == {"env": "prod", "tag": "v1.2", "replicas": "2"}
    assert live["metadata"]["labels"]["team"] == "team-blue"
    assert live_object(tc, "apps/v1", "Deployment", "guestbook-ui", namespace)["spec"]["replicas"] == 2

    offset = audit_offset(tc)
    code, results = _sync(path, capsys)
    assert code == 0, results
    assert agent_writes(tc, offset) == []


def test_unread_files_and_a_jsonnet_file_that_never_ends_fail_their_app_alone(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tc,) = clusters(1)
    git_repo.write("loop/main.jsonnet", "local f(x) = f(x + 1) tailstrict;\nf(0)\n")
    git_repo.write("unread/README.md", "# notes\n")
    git_repo.write("unread/values.txt", "a=b\n")
    git_repo.write("unread/lib/params.libsonnet", "{}\n")
    git_repo.write("plain/cm.yaml", CM)
    git_repo.commit()
    path = make_config(
        git_repo,
        [{**cluster_entry(tc, "a", [], namespace), "labels": {}}],
        apps=[
            {"name": "loop", "path": "loop", "renderTimeout": "3s"},
            {"name": "unread", "path": "unread"},
            {"name": "plain", "path": "plain", "createNamespace": True},
        ],
    )

    started = time.monotonic()
    code, results = _sync(path, capsys)
    took = time.monotonic() - started

    apps = {a["app"]: a for a in results["a"]["apps"]}
    assert apps["loop"]["error"] == (
        "loop/main.jsonnet: jsonnet of loop/main.jsonnet did not finish in 3 s (renderTimeout): stopped"
    )
    assert apps["unread"]["error"] == (
        "unread: holds no object: no renderer reads unread/lib/params.libsonnet, unread/values.txt "
        "(read are a directory with Chart.yaml, a directory with kustomization.yaml, *.yaml, *.yml, *.json, "
        "*.jsonnet; a jsonnet library only when a .jsonnet file imports it)"
    )
    assert apps["plain"]["error"] is None
    assert live_object(tc, "v1", "ConfigMap", "plain", namespace)["data"] == {"a": "b"}
    assert code != 0
    assert took < 3 + 30, took
    found = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert "jsonnet_eval" not in found  # the evaluation was killed with its process group

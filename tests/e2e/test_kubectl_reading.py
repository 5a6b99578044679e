"""Manifests read exactly as kubectl reads them, against real API servers and the real kubectl of the same
release (build/kubectl): YAML edge scalars stored alike through a preserve-unknown-fields CRD, plain, through
kustomize and through a Helm chart; kube-prometheus (bare ``=`` in its CRDs' enums, typed lists) installed as
two apps; a value JSON cannot carry failing its app alone; an aggregated ClusterRole never fought over."""

from __future__ import annotations

import json
import pathlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from agent import cli
from tests.conftest import (
    CORPORA,
    REPO,
    GitRepo,
    agent_writes,
    audit_offset,
    cluster_entry,
    live_object,
    wait_until,
)

KUBECTL = REPO / "build" / "kubectl"
GROUP = "yaml.gitops-agent.test"
CRD = f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: scalars.{GROUP}}}
spec:
  group: {GROUP}
  names: {{kind: Scalars, plural: scalars, singular: scalars, listKind: ScalarsList}}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
"""
# Every form below is read by go-yaml v2 (kubectl, Helm, kustomize's consumers) one way; many by YAML 1.1
# (PyYAML's default) another. The object stores what the reader made of each, as the API server keeps it.
SCALARS = f"""apiVersion: {GROUP}/v1
kind: Scalars
metadata:
  name: edge
spec:
  eq: =
  enum: ['!=', =, =~, '!~']
  ports: 22:22
  time: 1:20:30
  y1: y
  n1: n
  Y1: Y
  yes1: yes
  no1: no
  on1: on
  off1: off
  True1: True
  FALSE1: FALSE
  NULL1: NULL
  tilde: ~
  empty:
  float: 1e3
  floatPlus: 1e+3
  octal12: 0o17
  octalLead: 0755
  hex: 0x1F
  under: 1_000
  plus: +12
  negZero: -0
  dotFive: .5
  oneDot: 1.
  leadZero: 012345
  binary: 0b101
  eight: 08
  date: 2001-12-14
  timestamp: 2001-12-14t21:59:43.10-05:00
  spaced: 2001-12-14 21:59:43.10
  quoted: 'quoted'
  quotedNumber: "1e3"
  literal: |
    line one
    line two
  folded: >-
    folded
    text
  base: &base {{a: 1, b: two}}
  merged:
    <<: *base
    b: three
  mergedLate:
    b: three
    <<: *base
  mergedList:
    <<: [{{a: 1}}, {{a: 2, c: 3}}]
  alias: *base
  1: integer key
  y: boolean key
  uint64: 18446744073709551615
  huge: 99999999999999999999
  hexHuge: 0xFFFFFFFFFFFFFFFFFF
  negBinary: -0b11
  bigFloat: 1.2345678901234567e17
  small: 1e-7
  taggedStr: !!str 123
  binaryTag: !!binary aGVsbG8=
  custom: !Ref foo
  set: !!set {{a, b}}
  taggedTimestamp: !!timestamp 2001-12-14
"""
EXPECTED = {  # the table, and a few more, as kubectl stores them
    "eq": "=",
    "enum": ["!=", "=", "=~", "!~"],
    "ports": "22:22",
    "time": "1:20:30",
    "y1": True,
    "n1": False,
    "float": 1000,
    "octal12": 15,
    "octalLead": 493,
    "date": "2001-12-14",
    "timestamp": "2001-12-14t21:59:43.10-05:00",
    "true": "boolean key",
    "1": "integer key",
}


def kubectl(tc: Any, *args: str, stdin: str | None = None) -> str:
    """Run the real kubectl of the test clusters' release against ``tc``; returns stdout. Raises on failure."""
    assert KUBECTL.is_file(), f"{KUBECTL} is missing: run 'make kubectl'"
    done = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(tc.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def _sync(config: pathlib.Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = cli.main(["sync", "--config", str(config), "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def _apps(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["app"]: a for a in result["apps"]}


@pytest.fixture
def crd_cluster(clusters: Any) -> Any:
    (tc,) = clusters(1)
    kubectl(tc, "apply", "--server-side", "-f", "-", stdin=CRD)
    kubectl(tc, "wait", "--for=condition=Established", f"crd/scalars.{GROUP}", "--timeout=60s")
    return tc


def _kustomization(repo: GitRepo, rel: str) -> pathlib.Path:
    # kustomize itself refuses a mapping key that is not a string ("json: unsupported type"): not that one
    repo.write(f"{rel}/scalars.yaml", SCALARS.replace("  1: integer key\n", ""))
    return repo.write(f"{rel}/kustomization.yaml", "resources: [scalars.yaml]\n")


def _chart(repo: GitRepo, rel: str) -> pathlib.Path:
    repo.write(f"{rel}/Chart.yaml", "apiVersion: v2\nname: scalars\nversion: 0.1.0\n")
    # values are read by Helm as Kubernetes reads YAML, then printed into the template and read again
    repo.write(f"{rel}/values.yaml", 'port: "22:22"\nword: "y"\nratio: 1e3\n')
    extra = (
        "  fromValues: {{ .Values.port }}\n"
        "  fromValuesWord: {{ .Values.word }}\n"
        "  fromValuesRatio: {{ .Values.ratio }}\n"
    )
    return repo.write(f"{rel}/templates/scalars.yaml", SCALARS + extra)


@pytest.mark.parametrize("form", ["plain", "kustomize", "helm"])
def test_edge_scalars_are_stored_as_kubectl_stores_them(
    form: str,
    crd_cluster: Any,
    git_repo: GitRepo,
    make_config: Any,
    namespace: str,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tc = crd_cluster
    by_kubectl, by_agent = f"{namespace}-k", f"{namespace}-a"
    for ns in (by_kubectl, by_agent):
        kubectl(tc, "create", "namespace", ns)
    if form == "plain":
        git_repo.write("app/scalars.yaml", SCALARS)
        kubectl(tc, "apply", "--server-side", "-n", by_kubectl, "-f", str(git_repo.path / "app" / "scalars.yaml"))
    elif form == "kustomize":
        # Argo CD and Flux read kustomize's output as text with sigs.k8s.io/yaml, as `kubectl apply -f` does
        # (`kubectl apply -k` decodes kustomize's yaml.v3 nodes instead: `y` stays "y", an integer key fails)
        _kustomization(git_repo, "app")
        kustomize = REPO / ".venv" / "bin" / "kustomize"
        build = [str(kustomize), "build", str(git_repo.path / "app")]
        built = subprocess.run(build, capture_output=True, text=True, timeout=60, check=True).stdout
        kubectl(tc, "apply", "--server-side", "-n", by_kubectl, "-f", "-", stdin=built)
    else:
        _chart(git_repo, "app")
        helm = REPO / ".venv" / "bin" / "helm"
        rendered = subprocess.run(
            [str(helm), "template", "app", str(git_repo.path / "app"), "--namespace", by_kubectl],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        kubectl(tc, "apply", "--server-side", "-n", by_kubectl, "-f", "-", stdin=rendered)
    git_repo.commit()
    config = make_config(git_repo, [cluster_entry(tc, "a", ["app"], by_agent)])

    code, results = _sync(config, capsys)
    assert code == 0, results
    assert [(o["name"], o["action"]) for o in results["a"]["objects"]] == [("edge", "created")]

    expected = live_object(tc, f"{GROUP}/v1", "Scalars", "edge", by_kubectl)["spec"]
    stored = live_object(tc, f"{GROUP}/v1", "Scalars", "edge", by_agent)["spec"]
    assert stored == expected
    # kustomize rewrites some scalars itself (it reads YAML 1.2: `y` comes out quoted, dates as timestamps)
    rewritten = ("y1", "n1", "date", "timestamp", "true", "1") if form == "kustomize" else ()
    expect = {k: v for k, v in EXPECTED.items() if k not in rewritten}
    assert {k: stored.get(k) for k in expect} == expect
    if form == "helm":
        assert (stored["fromValues"], stored["fromValuesWord"], stored["fromValuesRatio"]) == ("22:22", True, 1000)

    # A resync writes nothing: what the agent read is what the API server keeps.
    offset = audit_offset(tc)
    code, again = _sync(config, capsys)
    assert code == 0
    assert [o["action"] for o in again["a"]["objects"]] == ["unchanged"]
    assert agent_writes(tc, offset) == []


def test_a_value_json_cannot_carry_fails_its_app_alone(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tc,) = clusters(1)
    kubectl(tc, "create", "namespace", namespace)
    git_repo.write(
        "bad/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine}\ndata: {a: b}\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ratio}\ndata:\n  when: 2001-12-14\n  ratio: .inf\n",
    )
    git_repo.write(
        "good/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: good}\ndata: {when: 2001-12-14}\n"
    )
    git_repo.commit()
    config = make_config(
        git_repo,
        [{**cluster_entry(tc, "a", [], namespace), "labels": {}}],
        apps=[{"name": "bad", "path": "bad"}, {"name": "good", "path": "good"}],
    )

    code, results = _sync(config, capsys)

    apps = _apps(results["a"])
    assert apps["bad"]["error"] == (
        "bad/cm.yaml#1: unreadable value at line 11, column 10: key 'ratio': .inf is not a number JSON can carry "
        "(kubectl refuses it too); quote it"
    )
    assert apps["good"]["error"] is None
    assert code != 0
    assert live_object(tc, "v1", "ConfigMap", "good", namespace)["data"] == {"when": "2001-12-14"}
    assert live_object(tc, "v1", "ConfigMap", "fine", namespace) is None  # a broken file writes nothing of it


def test_kube_prometheus_installs_as_two_apps_and_resyncs_with_no_write(
    clusters: Any, git_repo: GitRepo, make_config: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """kube-prometheus as upstream documents it (``kubectl apply --server-side -f manifests/setup``, then
    ``-f manifests/``): its setup folder as one app, the rest as another that depends on it."""
    (tc,) = clusters(1)
    published = CORPORA / "prometheus-operator-kube-prometheus" / "manifests"
    git_repo.copy_tree(published / "setup", "setup")
    for f in published.glob("*.yaml"):
        git_repo.write(f"stack/{f.name}", f.read_bytes())
    git_repo.commit()
    config = make_config(
        git_repo,
        [{**cluster_entry(tc, "a", []), "labels": {}}],
        apps=[{"name": "setup", "path": "setup"}, {"name": "stack", "path": "stack", "dependsOn": ["setup"]}],
    )

    code, results = _sync(config, capsys)

    assert code == 0, [a["error"] for a in results["a"]["apps"]]
    apps = _apps(results["a"])
    assert {o["kind"] for o in apps["setup"]["objects"]} == {"CustomResourceDefinition", "Namespace"}
    stack = apps["stack"]["objects"]
    assert not [o for o in stack if o["action"] not in ("created", "configured", "unchanged")]
    assert len(stack) >= 90
    # the typed lists are unwrapped and each item named by its place in the document
    bindings = sorted(o["source"] for o in stack if o["name"] == "prometheus-k8s" and o["kind"] == "RoleBinding")
    assert bindings == [f"stack/prometheus-roleBindingSpecificNamespaces.yaml#0.items[{i}]" for i in range(3)]
    assert live_object(tc, "v1", "ConfigMap", "grafana-dashboard-alertmanager-overview", "monitoring") is not None
    crd = live_object(
        tc, "apiextensions.k8s.io/v1", "CustomResourceDefinition", "alertmanagerconfigs.monitoring.coreos.com"
    )
    assert "=" in json.dumps(crd["spec"])  # the bare `=` of its enums, stored as the string kubectl stores

    offset = audit_offset(tc)
    code, again = _sync(config, capsys)
    assert code == 0
    assert {o["action"] for a in again["a"]["apps"] for o in a["objects"]} == {"unchanged"}
    assert agent_writes(tc, offset) == []
    assert cli.main(["diff", "--config", str(config)]) == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str) -> Any:
    """The JSON at ``url``; None while the agent's server is not listening yet."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read())
    except urllib.error.URLError as e:
        if isinstance(e.reason, ConnectionRefusedError):
            return None
        raise


def test_an_aggregated_cluster_role_is_never_fought_over(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An aggregated ClusterRole written as the Kubernetes docs show it (``rules: []``): the aggregation
    controller fills its rules; they are the controller's, never drift, and are never applied over."""
    (tc,) = clusters(1)
    label = {"gitops-agent.test/aggregate-to": namespace}
    git_repo.write_objects(
        "rbac/roles.yaml",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": f"{namespace}-aggregate"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": label}]},
            "rules": [],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": f"{namespace}-part", "labels": label},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
        },
    )
    git_repo.commit()
    port = _free_port()
    config = make_config(
        git_repo,
        [cluster_entry(tc, "a", ["rbac"])],
        sync={"selfHeal": True, "interval": "5s"},
        server={"listen": f"127.0.0.1:{port}"},
    )

    code, results = _sync(config, capsys)
    assert code == 0, results

    def aggregated() -> Any:
        role = live_object(tc, "rbac.authorization.k8s.io/v1", "ClusterRole", f"{namespace}-aggregate")
        return role if role.get("rules") else None

    role = wait_until(aggregated, timeout=30)
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]

    offset = audit_offset(tc)
    code, again = _sync(config, capsys)
    assert code == 0
    assert [o["action"] for o in again["a"]["objects"]] == ["unchanged", "unchanged"]
    assert agent_writes(tc, offset) == []
    capsys.readouterr()
    assert cli.main(["diff", "--config", str(config)]) == 0
    assert f"ignored ClusterRole.rbac.authorization.k8s.io {namespace}-aggregate: /rules" in capsys.readouterr().out

    # The agent running with self-heal on, for a minute of 5 s syncs: no write, no correction, no fight.
    offset = audit_offset(tc)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        first = wait_until(lambda: (_get(f"{base}/api/v1/clusters/a") or {}).get("lastSync"), timeout=60, interval=0.5)
        time.sleep(60)
        cluster = _get(f"{base}/api/v1/clusters/a")
        events = _get(f"{base}/api/v1/events")["events"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert cluster["lastSync"]["started"] > first["started"]  # it kept resyncing
    assert cluster["syncStatus"] == "Synced"
    reasons = {e["reason"] for e in events}
    assert not reasons & {"DriftCorrected", "Fighting", "SyncFailed"}, events
    assert agent_writes(tc, offset) == []


def test_inline_helm_values_reach_the_chart_as_written(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An app's inline ``helm.values`` go to Helm as a values file, which Helm reads as Kubernetes reads YAML:
    strings such as ``y`` and ``1e3`` must arrive as strings, not as true and 1000."""
    (tc,) = clusters(1)
    kubectl(tc, "create", "namespace", namespace)
    git_repo.write("chart/Chart.yaml", "apiVersion: v2\nname: words\nversion: 0.1.0\n")
    git_repo.write(
        "chart/templates/words.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: words}\ndata:\n"
        "{{- range $k, $v := .Values.words }}\n  {{ $k | quote }}: {{ $v | quote }}\n{{- end }}\n",
    )
    git_repo.commit()
    words = {"word": "y", "ratio": "1e3", "mode": "0o17", "n": "off"}
    config = make_config(
        git_repo,
        [{**cluster_entry(tc, "a", [], namespace), "labels": {}}],
        apps=[{"name": "words", "path": "chart", "helm": {"values": {"words": words}}}],
    )

    code, results = _sync(config, capsys)

    assert code == 0, results
    assert live_object(tc, "v1", "ConfigMap", "words", namespace)["data"] == words


def test_a_bug_in_one_apps_loading_fails_that_app_alone(
    clusters: Any,
    git_repo: GitRepo,
    make_config: Any,
    namespace: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An exception no rule expects (a bug, as the date that once failed a whole cluster's sync with "Object of
    type date is not JSON serializable") fails the app it happened in, not the cluster's other apps."""
    from agent.sources import manifests

    (tc,) = clusters(1)
    kubectl(tc, "create", "namespace", namespace)
    for app in ("broken", "fine"):
        git_repo.write(f"{app}/cm.yaml", f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {app}}}\n")
    git_repo.commit()
    load_paths = manifests.load_paths

    def buggy(root: pathlib.Path, paths: Any, *args: Any, **kwargs: Any) -> Any:
        if list(paths) == ["broken"]:
            raise TypeError("a bug in loading")
        return load_paths(root, paths, *args, **kwargs)

    monkeypatch.setattr(manifests, "load_paths", buggy)
    config = make_config(
        git_repo,
        [{**cluster_entry(tc, "a", [], namespace), "labels": {}}],
        apps=[{"name": "broken", "path": "broken"}, {"name": "fine", "path": "fine"}],
    )

    code, results = _sync(config, capsys)

    apps = _apps(results["a"])
    assert apps["broken"]["error"] == "internal error while loading app broken: TypeError: a bug in loading"
    assert apps["fine"]["error"] is None
    assert code != 0
    assert live_object(tc, "v1", "ConfigMap", "fine", namespace) is not None


def test_an_unreachable_cluster_while_loading_is_the_clusters_verdict_not_an_apps_bug(
    clusters: Any,
    git_repo: GitRepo,
    make_config: Any,
    namespace: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Loading may read the cluster (a chart's ``.Capabilities``): when that finds it unreachable, the sync
    says so for the cluster (``cluster``, Unknown), as before the per-app catch of unexpected errors."""
    from agent.sources import manifests
    from reconcilers import errors

    (tc,) = clusters(1)
    git_repo.write("chart/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    git_repo.commit()

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise errors.ClusterUnreachableError("https://127.0.0.1:1: connection refused")

    monkeypatch.setattr(manifests, "load_paths", unreachable)
    config = make_config(
        git_repo,
        [{**cluster_entry(tc, "a", [], namespace), "labels": {}}],
        apps=[{"name": "chart", "path": "chart"}],
    )

    code, results = _sync(config, capsys)

    assert results["a"]["errorKind"] == "cluster", results["a"]
    assert results["a"]["error"] == "cluster a: https://127.0.0.1:1: connection refused"
    assert code != 0

"""Apps (issue 15) against real test clusters: each (app, cluster) an isolated unit, placed by name and label,
from several sources, with createNamespace, dependsOn, a namespace allow-list and impersonation."""

from __future__ import annotations

import hashlib
import hmac
import json
import pathlib
import shutil
from typing import Any

import pytest
import yaml

from agent import cli
from tests.conftest import (
    GitRepo,
    agent_writes,
    audit_events,
    audit_offset,
    dynamic_client,
    live_object,
    wait_until,
)
from tests.e2e.test_faults import Agent
from tests.e2e.test_push_to_deploy import request
from tests.e2e.test_run_status import free_port
from tests.e2e.test_sync_corpora import HARNESS, HARNESS_FILE, corpus_paths, ensure_namespace


def _sync(config: pathlib.Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = cli.main(["sync", "--config", str(config), "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def _cluster(tc: Any, name: str, labels: dict[str, str] | None = None, namespace: str = "default") -> dict[str, Any]:
    return {"name": name, "kubeconfig": str(tc.kubeconfig), "namespace": namespace, "labels": labels or {}}


def _cm(name: str, namespace: str | None = None, **data: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data or {"k": "v"}}


def _apps_of(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["app"]: a for a in result["apps"]}


def test_four_corpus_apps_fail_alone_on_two_clusters(
    corpora_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = clusters(2)
    folders = {
        "shop": "GoogleCloudPlatform-microservices-demo",
        "podinfo": "stefanprodan-podinfo",
        "kopf": "nolar-kopf",
        "delegate": HARNESS,
    }
    apps = []
    for app, folder in folders.items():
        for i, path in enumerate(corpus_paths(folder)):
            apps.append(
                {"name": f"{app}-{i}", "path": path, "namespace": f"{namespace}-{app}", "createNamespace": True}
            )
    config = make_config(corpora_repo, [_cluster(a, "a"), _cluster(b, "b")], apps=apps)

    code, results = _sync(config, capsys)

    assert code == 1, [
        (x["app"], x["errorKind"], x["error"]) for r in results.values() for x in r["apps"] if x["error"]
    ]
    for name, tc in (("a", a), ("b", b)):
        by_app = _apps_of(results[name])
        assert set(by_app) == {x["name"] for x in apps}
        delegate = by_app["delegate-0"]
        failed = [o for o in delegate["objects"] if o["action"] == "failed"]
        assert sorted((o["kind"], o["source"]) for o in failed) == [
            ("ConfigMap", f"{HARNESS_FILE}#9"),
            ("Secret", f"{HARNESS_FILE}#2"),
            ("Secret", f"{HARNESS_FILE}#8"),
        ]
        assert results[name]["errorKind"] == "apps"
        assert "app delegate-0" in results[name]["error"]
        for app, r in by_app.items():
            if app.startswith("delegate"):
                continue
            assert r["result"] == "Succeeded", (
                app,
                r["error"],
                [
                    (o["kind"], o["name"], o["action"], o.get("message"))
                    for o in r["objects"]
                    if o["action"] != "created"
                ],
            )
            actions = {o["action"] for o in r["objects"]}
            assert actions <= {"created", "configured", "unchanged"}, (app, actions)
            for o in r["objects"]:
                if o["source"] == "createNamespace":
                    continue
                api = _api_version(tc, o)
                assert live_object(tc, api, o["kind"], o["name"], o["namespace"] or None) is not None, o
        # createNamespace made the namespaces, and they carry no tracking annotation (never pruned)
        ns = live_object(tc, "v1", "Namespace", f"{namespace}-podinfo")
        assert ns is not None
        assert "gitops-agent.io/tracking" not in (ns["metadata"].get("annotations") or {})

    offsets = {n: audit_offset(tc) for n, tc in (("a", a), ("b", b))}
    code2, again = _sync(config, capsys)
    assert code2 == 1
    for name, tc in (("a", a), ("b", b)):
        assert agent_writes(tc, offsets[name]) == []
        assert _apps_of(again[name])["podinfo-0"]["result"] == "Succeeded"


def _api_version(tc: Any, o: dict[str, Any]) -> str:
    group = o["group"]
    if not group:
        return "v1"
    found = dynamic_client(tc).resources.search(group=group, kind=o["kind"])
    return str(found[0].group_version)


def test_placement_by_name_and_label_and_moving_an_app_prunes_or_keeps(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = clusters(2)
    for tc in (a, b):
        ensure_namespace(tc, namespace)
    git_repo.write_objects("base/cm.yaml", _cm("base-1"), _cm("base-2"))  # so one app leaving is within budget
    git_repo.write_objects("web/cm.yaml", _cm("web"))
    git_repo.write_objects("named/cm.yaml", _cm("named"))
    git_repo.write_objects("regional/cm.yaml", _cm("regional"))
    git_repo.commit()

    def config(a_labels: dict[str, str], b_labels: dict[str, str], prune: bool) -> pathlib.Path:
        return make_config(
            git_repo,
            [_cluster(a, "a", a_labels, namespace), _cluster(b, "b", b_labels, namespace)],
            apps=[
                {"name": "base", "path": "base"},
                {"name": "web", "path": "web", "clusters": {"matchLabels": {"env": "prod"}}},
                {"name": "named", "path": "named", "clusters": {"names": ["b"]}},
                {
                    "name": "regional",
                    "path": "regional",
                    "clusters": {"matchExpressions": [{"key": "region", "operator": "In", "values": ["eu"]}]},
                },
            ],
            sync={"prune": prune},
            instance=f"i-{namespace}",  # one agent across the three configs
        )

    code, results = _sync(config({"env": "prod", "region": "us"}, {"env": "dev", "region": "eu"}, True), capsys)
    assert code == 0
    assert set(_apps_of(results["a"])) == {"base", "web"}
    assert set(_apps_of(results["b"])) == {"base", "named", "regional"}
    assert live_object(a, "v1", "ConfigMap", "web", namespace)
    assert not live_object(b, "v1", "ConfigMap", "web", namespace)
    assert live_object(b, "v1", "ConfigMap", "regional", namespace)

    # Relabel: web moves from a to b; with prune on it is deleted from a.
    code, results = _sync(config({"env": "dev", "region": "us"}, {"env": "prod", "region": "eu"}, True), capsys)
    assert code == 0, json.dumps(results)
    assert live_object(b, "v1", "ConfigMap", "web", namespace) is not None
    assert live_object(a, "v1", "ConfigMap", "web", namespace) is None, results["a"]
    gone = _apps_of(results["a"])["web"]
    assert [(o["name"], o["action"]) for o in gone["objects"]] == [("web", "pruned")]

    # Relabel back with prune off: web comes to a, and stays on b, kept and said so.
    code, results = _sync(config({"env": "prod", "region": "us"}, {"env": "dev", "region": "eu"}, False), capsys)
    assert code == 0, json.dumps(results)
    assert live_object(a, "v1", "ConfigMap", "web", namespace) is not None
    assert live_object(b, "v1", "ConfigMap", "web", namespace) is not None
    kept = _apps_of(results["b"])["web"]
    assert [(o["name"], o["action"]) for o in kept["objects"]] == [("web", "kept")]
    assert "sync.prune is off" in kept["objects"][0]["message"]


def test_depends_on_orders_apps_and_waits_for_a_failed_dependency(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tc,) = clusters(1)
    ensure_namespace(tc, namespace)
    group = f"{namespace}.example.com"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }
    widget = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 1}}
    git_repo.write_objects("crds/crd.yaml", crd)
    git_repo.write_objects("widgets/w.yaml", widget)
    git_repo.commit()
    apps = [
        {"name": "widgets", "path": "widgets", "dependsOn": ["crds"]},  # listed first: order comes from dependsOn
        {"name": "crds", "path": "crds"},
    ]
    config = make_config(git_repo, [_cluster(tc, "a", namespace=namespace)], apps=apps)
    offset = audit_offset(tc)

    code, results = _sync(config, capsys)

    assert code == 0, json.dumps(results)
    by_app = _apps_of(results["a"])
    assert by_app["crds"]["result"] == by_app["widgets"]["result"] == "Succeeded"
    writes = [
        e
        for e in agent_writes(tc, offset)
        if e["objectRef"].get("resource") in ("customresourcedefinitions", "widgets")
    ]
    order = [e["objectRef"]["resource"] for e in writes]
    assert order.index("customresourcedefinitions") < order.index("widgets"), order
    assert live_object(tc, f"{group}/v1", "Widget", "w1", namespace) is not None

    # A dependency that fails leaves its dependents Waiting, with no write for them.
    git_repo.write("crds/crd.yaml", "kind: [broken\n")
    git_repo.write_objects("widgets/w.yaml", {**widget, "spec": {"size": 2}})
    git_repo.commit()
    offset = audit_offset(tc)
    code, results = _sync(config, capsys)
    by_app = _apps_of(results["a"])
    assert by_app["crds"]["errorKind"] == "source"
    assert by_app["widgets"]["errorKind"] == "waiting"
    assert by_app["widgets"]["error"] == "Waiting (crds not Synced)"
    assert not [e for e in agent_writes(tc, offset) if e["objectRef"].get("resource") == "widgets"]
    assert code == 2


def test_a_cycle_in_depends_on_is_a_config_error(tmp_path: pathlib.Path) -> None:
    from agent import config
    from reconcilers import errors

    path = tmp_path / "agent.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "source": {"url": str(tmp_path)},
                "clusters": [{"name": "a", "kubeconfig": "k"}],
                "apps": [
                    {"name": "x", "path": "x", "dependsOn": ["y"]},
                    {"name": "y", "path": "y", "dependsOn": ["x"]},
                ],
            }
        )
    )
    with pytest.raises(errors.ConfigError, match="dependsOn forms a cycle: x -> y -> x"):
        config.load_config(path)


def test_two_apps_rendering_one_object_fail_the_second_and_a_namespace_rule_refuses_before_any_write(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tc,) = clusters(1)
    ensure_namespace(tc, namespace)
    git_repo.write_objects("one/cm.yaml", _cm("shared"), _cm("only-one"))
    git_repo.write_objects("two/cm.yaml", _cm("shared"), _cm("only-two"))
    git_repo.write_objects("team/cm.yaml", _cm("inside"), _cm("outside", "kube-system"))
    git_repo.commit()
    apps = [
        {"name": "one", "path": "one"},
        {"name": "two", "path": "two"},
        {"name": "team", "path": "team", "namespaces": [f"{namespace}*"]},
    ]
    config = make_config(git_repo, [_cluster(tc, "a", namespace=namespace)], apps=apps)
    offset = audit_offset(tc)

    code, results = _sync(config, capsys)

    by_app = _apps_of(results["a"])
    assert by_app["one"]["result"] == "Succeeded"
    assert by_app["two"]["errorKind"] == "config"
    assert "is also rendered by app one" in by_app["two"]["error"]
    assert "one keeps it" in by_app["two"]["error"]
    assert "one/cm.yaml#0" in by_app["two"]["error"]
    assert "two/cm.yaml#0" in by_app["two"]["error"]
    assert by_app["team"]["errorKind"] == "config"
    assert "app team: ConfigMap kube-system/outside (team/cm.yaml#1)" in results["a"]["error"]
    assert "kube-system" in by_app["team"]["error"]
    assert f"namespaces ['{namespace}*']" in by_app["team"]["error"]
    written = {
        e["objectRef"].get("name") for e in agent_writes(tc, offset) if e["objectRef"].get("resource") == "configmaps"
    }
    assert {"shared", "only-one"} <= written
    assert not written & {"only-two", "inside", "outside"}
    assert code == 2


def test_a_service_account_app_writes_only_where_its_role_allows(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tc,) = clusters(1)
    allowed, other = f"{namespace}-team", f"{namespace}-other"
    for ns in (allowed, other):
        ensure_namespace(tc, ns)
    client = dynamic_client(tc)
    client.resources.get(api_version="v1", kind="ServiceAccount").create(
        body={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "deployer"}}, namespace=allowed
    )
    client.resources.get(api_version="rbac.authorization.k8s.io/v1", kind="Role").create(
        body={
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "deployer"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
                }
            ],
        },
        namespace=allowed,
    )
    client.resources.get(api_version="rbac.authorization.k8s.io/v1", kind="RoleBinding").create(
        body={
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "deployer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployer"},
            "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": allowed}],
        },
        namespace=allowed,
    )
    git_repo.write_objects("here/cm.yaml", _cm("team-cm", allowed))
    git_repo.write_objects("there/cm.yaml", _cm("team-cm", other))
    git_repo.commit()
    sa = f"{allowed}/deployer"
    apps = [
        {"name": "here", "path": "here", "serviceAccount": sa},
        {"name": "there", "path": "there", "serviceAccount": sa},
    ]
    config = make_config(git_repo, [_cluster(tc, "a", namespace=namespace)], apps=apps)
    offset = audit_offset(tc)

    code, results = _sync(config, capsys)

    by_app = _apps_of(results["a"])
    assert by_app["here"]["result"] == "Succeeded", by_app["here"]
    assert live_object(tc, "v1", "ConfigMap", "team-cm", allowed) is not None
    failed = [o for o in by_app["there"]["objects"] if o["action"] == "failed"]
    assert [(o["name"], o["namespace"]) for o in failed] == [("team-cm", other)]
    assert "forbidden" in failed[0]["message"].lower()
    assert f"system:serviceaccount:{allowed}:deployer" in failed[0]["message"]
    assert live_object(tc, "v1", "ConfigMap", "team-cm", other) is None
    user = f"system:serviceaccount:{allowed}:deployer"
    impersonated = [e for e in audit_events(tc, offset) if (e.get("impersonatedUser") or {}).get("username") == user]
    assert any(e["objectRef"].get("namespace") == allowed and e["verb"] == "patch" for e in impersonated)
    assert code == 1


def test_two_sources_a_push_deploys_only_its_apps_and_a_broken_remote_marks_only_its_apps_stale(
    clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    (tc,) = clusters(1)
    ensure_namespace(tc, namespace)
    platform = GitRepo(tmp_path / "platform")
    team = GitRepo(tmp_path / "team")
    platform.write_objects("infra/cm.yaml", _cm("platform", v="1"))
    platform.commit()
    team.write_objects("app/cm.yaml", _cm("team", v="1"))
    team.commit()
    port = free_port()
    secret = "s3cret"
    (tmp_path / "hook").write_text(secret)
    config = make_config(
        platform,
        [_cluster(tc, "a", namespace=namespace)],
        sources={
            "team": {
                "url": str(team.path),
                "ref": "main",
                "interval": "1h",
                "timeout": "5s",
                "cacheDir": str(tmp_path / "cache-team"),
            }
        },
        apps=[
            {"name": "infra", "path": "infra"},
            {"name": "web", "source": "team", "path": "app"},
        ],
        sync={"interval": "1h"},
        server={"listen": f"127.0.0.1:{port}", "webhooks": {"generic": {"file": str(tmp_path / "hook")}}},
    )
    doc = yaml.safe_load(config.read_text())
    doc["source"]["interval"] = "1h"
    config.write_text(yaml.safe_dump(doc))
    agent = Agent(config, tmp_path / "agent.log")
    try:
        agent.wait_ready()

        def data(name: str) -> Any:
            return (live_object(tc, "v1", "ConfigMap", name, namespace) or {}).get("data")

        wait_until(lambda: data("platform") == {"v": "1"} and data("team") == {"v": "1"}, timeout=60)
        platform.write_objects("infra/cm.yaml", _cm("platform", v="2"))
        platform.commit()
        team.write_objects("app/cm.yaml", _cm("team", v="2"))
        team.commit()

        def push(url: str) -> Any:
            body = json.dumps({"ref": "refs/heads/main", "repository": {"url": url}}).encode()
            sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            return request(
                f"{agent.base}/api/v1/webhooks/generic", method="POST", body=body, headers={"X-Signature-256": sig}
            )

        code, answer = push(str(team.path))
        assert code == 202, answer
        assert json.loads(answer)["sources"] == ["team"], answer
        wait_until(lambda: data("team") == {"v": "2"}, timeout=30)
        assert data("platform") == {"v": "1"}  # its source was not fetched: its apps did not move

        shutil.move(team.path, tmp_path / "team-gone")
        code, answer = push(str(team.path))
        assert code == 202

        def stale_cells() -> Any:
            cells = {
                c["app"]: c
                for app in json.loads(request(f"{agent.base}/api/v1/apps")[1])["apps"]
                for c in app["clusters"]
            }
            return cells if cells["web"].get("stale") else None

        cells = wait_until(stale_cells, timeout=30)
        assert "stale" not in cells["infra"]
        assert cells["web"]["syncStatus"] == "Synced"  # at the last good revision it could fetch
        status = agent.status()
        assert status["sources"]["team"]["stale"]
        assert not status["sources"]["default"]["stale"]
        assert [a["name"] for a in status["apps"]] == ["infra", "web"]  # the fleet summary's per-app counts
        assert status["apps"][1]["syncStatus"] == {"Synced": 1}
        metrics = request(f"{agent.base}/metrics")[1]
        assert 'gitops_agent_app_sync_ok{app="web",cluster="a"} 1.0' in metrics
        assert 'gitops_agent_app_managed_objects{app="infra",cluster="a"} 1.0' in metrics
        app = json.loads(request(f"{agent.base}/api/v1/apps/web")[1])
        assert app["clusters"][0]["cluster"] == "a"
        assert "objects" in app["clusters"][0]["lastSync"]
    finally:
        agent.stop()


def test_depends_on_waits_for_a_custom_resource_healthy_by_its_cel_rule(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 18: dependsOn waits on CEL health. The cert-manager-style Certificate is Healthy only once its status
    (set through the status subresource) says Ready True (its CEL rule); while it is False the app that depends on
    it is Waiting and writes nothing, then it syncs."""
    from tests.e2e.test_health_rules import CRD, RULE

    (tc,) = clusters(1)
    ensure_namespace(tc, namespace)
    git_repo.write_objects("crds/crd.yaml", CRD)
    certificate = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "web"},
        "spec": {"secretName": "web-tls", "dnsNames": ["web.example.com"]},
    }
    git_repo.write_objects("certs/web.yaml", certificate)
    git_repo.write_objects("consumer/cm.yaml", _cm("consumer"))
    git_repo.commit()
    apps = [
        {"name": "crds", "path": "crds"},
        {"name": "certs", "path": "certs", "dependsOn": ["crds"]},
        {"name": "consumer", "path": "consumer", "dependsOn": ["certs"]},
    ]
    config = make_config(
        git_repo, [_cluster(tc, "a", namespace=namespace)], apps=apps, healthChecks=[RULE], sync={"timeout": "3s"}
    )
    offset = audit_offset(tc)

    code, results = _sync(config, capsys)  # no status yet: Unknown (CEL's error), not Healthy

    by_app = _apps_of(results["a"])
    assert by_app["certs"]["result"] == "Succeeded"
    assert by_app["consumer"]["errorKind"] == "waiting"
    assert by_app["consumer"]["error"] == "Waiting (certs not Healthy)"
    assert code == 1

    certificates = dynamic_client(tc).resources.get(api_version="cert-manager.io/v1", kind="Certificate")

    def set_ready(status: str) -> None:
        certificates.status.patch(
            name="web",
            namespace=namespace,
            body={"status": {"conditions": [{"type": "Ready", "status": status}]}},
            content_type="application/merge-patch+json",
        )

    set_ready("False")  # Degraded by the rule's failed expression
    code, results = _sync(config, capsys)
    assert _apps_of(results["a"])["consumer"]["error"] == "Waiting (certs not Healthy)"
    assert "consumer" not in {e["objectRef"].get("name") for e in agent_writes(tc, offset)}

    set_ready("True")
    code, results = _sync(config, capsys)
    assert code == 0, json.dumps(results)
    assert _apps_of(results["a"])["consumer"]["result"] == "Succeeded"
    assert live_object(tc, "v1", "ConfigMap", "consumer", namespace) is not None


def _deployment(name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
        },
    }


def test_each_app_rolls_out_on_its_own_and_one_apps_bad_commit_halts_only_that_app(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    """Rollout per app: with three clusters in order, a commit that breaks app `web` (an image that never gets
    Ready) and changes app `api` halts web at the first cluster and rolls it back there (the other two never see
    it), while api's rollout of the same commit completes everywhere."""
    tcs = clusters(3)
    for tc in tcs:
        ensure_namespace(tc, namespace)
    git_repo.write_objects("web/deploy.yaml", _deployment("web", "example/web:1"))
    git_repo.write_objects("api/cm.yaml", _cm("api", v="1"))
    first = git_repo.commit("v1")
    port = free_port()
    config = make_config(
        git_repo,
        [_cluster(tc, f"c{i}", namespace=namespace) for i, tc in enumerate(tcs)],
        apps=[{"name": "web", "path": "web"}, {"name": "api", "path": "api"}],
        rollout={"order": ["c0", "c1", "c2"]},
        sync={"interval": "1h", "timeout": "8s"},
        server={"listen": f"127.0.0.1:{port}"},
    )
    doc = yaml.safe_load(config.read_text())
    doc["source"]["interval"] = "1s"
    config.write_text(yaml.safe_dump(doc))
    agent = Agent(config, tmp_path / "agent.log")

    def rollouts() -> Any:
        return agent.status().get("appRollouts") or {}

    def states(sha: str) -> Any:
        found = rollouts()
        return {a: (r["revision"] == sha, r["state"]) for a, r in found.items()}

    def image(tc: Any) -> str:
        d = live_object(tc, "apps/v1", "Deployment", "web", namespace)
        return str(d["spec"]["template"]["spec"]["containers"][0]["image"])

    try:
        agent.wait_ready()
        wait_until(lambda: states(first) == {"web": (True, "Complete"), "api": (True, "Complete")}, timeout=90)
        assert all(image(tc) == "example/web:1" for tc in tcs)

        git_repo.write_objects("web/deploy.yaml", _deployment("web", "example/web:broken"))
        git_repo.write_objects("api/cm.yaml", _cm("api", v="2"))
        second = git_repo.commit("web broken, api v2")
        wait_until(lambda: states(second) == {"web": (True, "Halted"), "api": (True, "Complete")}, timeout=120)

        for tc in tcs:  # api everywhere
            assert live_object(tc, "v1", "ConfigMap", "api", namespace)["data"] == {"v": "2"}
        assert image(tcs[0]) == "example/web:1"  # rolled back at the first cluster
        for tc in tcs[1:]:  # never saw the broken image
            assert image(tc) == "example/web:1"
            rs = dynamic_client(tc).resources.get(api_version="apps/v1", kind="ReplicaSet")
            seen = {
                i["spec"]["template"]["spec"]["containers"][0]["image"]
                for i in rs.get(namespace=namespace).to_dict()["items"]
            }
            assert "example/web:broken" not in seen
        web = rollouts()["web"]
        assert [s["cluster"] for s in web["steps"] if s["revision"] == second] == ["c0"]
        assert {s["cluster"] for s in rollouts()["api"]["steps"] if s["revision"] == second} == {"c0", "c1", "c2"}
        events = json.loads(request(f"{agent.base}/api/v1/events")[1])["events"]
        assert any(e["reason"] == "RolloutHalted" and e["message"].startswith("app web: ") for e in events)
    finally:
        agent.stop()

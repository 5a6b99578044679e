"""Charts from a chart repository (``type: helm``) and an OCI registry (``type: oci``), both on loopback behind
basic auth, synced to real test clusters: the public corpus's podinfo (``values-prod.yaml`` from the chart, its
pre-install hook Job on) and ingress-nginx (Helm hooks, ``.Capabilities``), packaged with the real ``helm package``
and served by ``helm repo index`` + an HTTP server and by go-containerregistry's registry (``helm push``). Version
ranges resolve with Helm's rules, a new version is picked up by the next fetch, the credentials work and never
show, and a resync writes nothing. Bad input (a version no chart has, a values file that is not YAML, a wrong
password) fails that app alone with a clear error and zero writes."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
import yaml

from agent import cli
from tests.chartservers import ChartRepo, Registry, copy_chart, package
from tests.conftest import CORPORA, agent_writes, audit_offset, live_object, wait_until
from tests.e2e.test_sync_corpora import ensure_namespace

PODINFO = CORPORA / "stefanprodan-podinfo/charts/podinfo"
INGRESS = CORPORA / "kubernetes-ingress-nginx/charts/ingress-nginx"
REPO_PASSWORD = "repo-pw-7f3a91-never-shown"
OCI_PASSWORD = "oci-pw-c0ffee-never-shown"


@pytest.fixture
def servers(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    home = tmp_path / "helm-home"
    repo = ChartRepo(tmp_path / "repo", home, "alice", REPO_PASSWORD)
    for version in ("6.13.0", "6.14.1"):
        repo.add(PODINFO, version)
    repo.add(PODINFO, "7.0.0-rc.1")  # a prerelease: never picked by a range without one
    registry = Registry(home, "bob", OCI_PASSWORD)
    registry.push(package(INGRESS, tmp_path / "packages", home))
    monkeypatch.setenv("REPO_USER", "alice")
    monkeypatch.setenv("REPO_PASS", REPO_PASSWORD)
    monkeypatch.setenv("REG_USER", "bob")
    try:
        yield repo, registry, home
    finally:
        registry.stop()
        repo.unreachable()


def chart_sources(tmp_path: pathlib.Path, repo: ChartRepo, registry: Registry) -> dict[str, Any]:
    return {
        "charts": {"type": "helm", "url": repo.url, "usernameEnv": "REPO_USER", "passwordEnv": "REPO_PASS",
                   "cacheDir": str(tmp_path / "cache-charts"), "timeout": "30s"},
        "registry": {"type": "oci", "url": registry.url, "usernameEnv": "REG_USER",
                     "passwordFile": str(password_file(tmp_path, OCI_PASSWORD)),
                     "insecure": True, "cacheDir": str(tmp_path / "cache-registry"), "timeout": "30s"},
    }  # fmt: skip


def password_file(tmp_path: pathlib.Path, password: str) -> pathlib.Path:
    """The registry's password in a file (as a mounted Secret would hold it)."""
    path = tmp_path / "registry-password"
    if not path.exists():
        path.write_text(password + "\n")
    return path


def sync(config: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], str]:
    code = cli.main(["sync", "--config", str(config), "--json"])
    out = capsys.readouterr()
    return code, json.loads(out.out or "{}"), out.out + out.err


def apps_of(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["app"]: a for a in result.get("apps") or []}


def test_charts_from_a_repository_and_a_registry_sync_and_follow_new_versions(
    servers: Any, clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    repo, registry, _ = servers
    a, b = clusters(2)
    for tc in (a, b):
        ensure_namespace(tc, namespace)
    podinfo = {
        "name": "podinfo",
        "source": "charts",
        "chart": {"name": "podinfo", "version": "6.x"},
        "namespace": namespace,
        "helm": {
            "valuesFiles": ["values-prod.yaml"],  # from the chart, as Argo CD reads a chart source's valueFiles
            "values": {"hooks": {"preInstall": {"job": {"enabled": True}}}, "redis": {"enabled": False}},
        },
    }
    ingress = {
        "name": "ingress",
        "source": "registry",
        "chart": {"name": "ingress-nginx", "version": "~4.15.0"},
        "namespace": namespace,
        "helm": {"values": {"controller": {"service": {"type": "ClusterIP"}}}},
    }
    entries = [{"name": n, "kubeconfig": str(tc.kubeconfig), "namespace": namespace} for n, tc in (("a", a), ("b", b))]
    config = make_config(
        "/nonexistent", entries, apps=[podinfo, ingress], sources=chart_sources(tmp_path, repo, registry),
        sync={"waveTimeout": "60s"},
    )  # fmt: skip
    raw = yaml.safe_load(config.read_text())
    del raw["source"]  # chart sources only
    config.write_text(yaml.safe_dump(raw))

    code, results, printed = sync(config, capsys)
    assert code == 0, printed
    for name, tc in (("a", a), ("b", b)):
        found = apps_of(results[name])
        assert found["podinfo"]["revision"]["ref"] == "podinfo 6.14.1"  # the newest 6.x, not the prerelease
        assert found["ingress"]["revision"]["ref"] == "ingress-nginx 4.15.1"
        hooks = [(h["app"], h["phase"], h["name"], h["result"]) for h in results[name]["hooks"]]
        assert ("podinfo", "PreSync", "podinfo-pre-install", "Succeeded") in hooks
        assert any(h[0] == "ingress" and h[1] == "PostSync" and h[3] == "Succeeded" for h in hooks)
        deployment = live_object(tc, "apps/v1", "Deployment", "podinfo", namespace)
        assert deployment["metadata"]["labels"]["helm.sh/chart"] == "podinfo-6.14.1"
        assert live_object(tc, "batch/v1", "Job", "podinfo-pre-install", namespace) is None  # hook-succeeded
        assert live_object(tc, "apps/v1", "Deployment", "ingress-ingress-nginx-controller", namespace)
    assert REPO_PASSWORD not in printed
    assert OCI_PASSWORD not in printed
    assert not any(REPO_PASSWORD in line for line in (tmp_path / "cache-charts").rglob("*.log"))

    offsets = {n: audit_offset(tc) for n, tc in (("a", a), ("b", b))}
    code, again, printed = sync(config, capsys)
    assert code == 0, printed
    for name, tc in (("a", a), ("b", b)):
        assert "hooks" not in again[name]
        assert agent_writes(tc, offsets[name]) == []

    repo.add(PODINFO, "6.15.0")  # a new version in the range
    code, results, printed = sync(config, capsys)
    assert code == 0, printed
    for name, tc in (("a", a), ("b", b)):
        assert apps_of(results[name])["podinfo"]["revision"]["ref"] == "podinfo 6.15.0"
        deployment = live_object(tc, "apps/v1", "Deployment", "podinfo", namespace)
        assert deployment["metadata"]["labels"]["helm.sh/chart"] == "podinfo-6.15.0"


def test_bad_chart_input_fails_that_app_alone_and_writes_nothing(
    servers: Any, clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A version no chart has, a values file that is not YAML, a wrong password: each app fails with a message
    naming source, chart or file, and the cluster gets no write from it."""
    repo, registry, _ = servers
    (a,) = clusters(1)
    ensure_namespace(a, namespace)
    broken = copy_chart(PODINFO, tmp_path / "broken-values")
    (broken / "values-bad.yaml").write_text("replicaCount: [1\n")
    repo.add(broken, "6.14.2-bad.1")
    entry = [{"name": "a", "kubeconfig": str(a.kubeconfig), "namespace": namespace}]

    def only(app: dict[str, Any], **extra: Any) -> pathlib.Path:
        config = make_config("/nonexistent", entry, apps=[app], sources=chart_sources(tmp_path, repo, registry),
                             **extra)  # fmt: skip
        raw = yaml.safe_load(config.read_text())
        del raw["source"]
        config.write_text(yaml.safe_dump(raw))
        return config

    cases = [
        ({"name": "nine", "source": "charts", "chart": {"name": "podinfo", "version": "9.x"}, "namespace": namespace},
         "chart podinfo 9.x"),
        ({"name": "notyaml", "source": "charts", "chart": {"name": "podinfo", "version": "6.14.2-bad.1"},
          "namespace": namespace, "helm": {"valuesFiles": ["values-bad.yaml"]}},
         "helm.valuesFiles[0]: not YAML at line 2"),
    ]  # fmt: skip
    for app, expected in cases:
        offset = audit_offset(a)
        code, _, printed = sync(only(app), capsys)
        assert code != 0, printed
        assert expected in printed, printed
        assert agent_writes(a, offset) == []

    (tmp_path / "registry-password").write_text("wrong-password\n")
    app = {"name": "ingress", "source": "registry", "chart": {"name": "ingress-nginx"}, "namespace": namespace}
    offset = audit_offset(a)
    code, _, printed = sync(only(app), capsys)
    assert code != 0
    assert "401" in printed
    assert "wrong-password" not in printed
    assert agent_writes(a, offset) == []


def test_a_chart_in_git_with_a_dependency_from_a_chart_repository(
    git_repo: Any, clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """``Chart.yaml`` names podinfo 6.x from a loopback chart repository and nothing is vendored: the dependency is
    built (``helm dependency build``, on a copy) and rendered with the parent's values; the checkout is never
    written."""
    deps = ChartRepo(tmp_path / "deps", tmp_path / "helm-home")
    try:
        deps.add(PODINFO, "6.14.1")
        git_repo.write(
            "charts/shop/Chart.yaml",
            "apiVersion: v2\nname: shop\nversion: 1.0.0\ndependencies:\n"
            f"  - name: podinfo\n    version: 6.x\n    repository: {deps.url}\n",
        )
        git_repo.write("charts/shop/values.yaml", "podinfo:\n  replicaCount: 2\n")
        git_repo.write(
            "charts/shop/templates/settings.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\ndata:\n  k: v\n",
        )
        git_repo.commit("a chart with a dependency")
        (a,) = clusters(1)
        ensure_namespace(a, namespace)
        app = {"name": "shop", "path": "charts/shop", "namespace": namespace}
        config = make_config(git_repo, [{"name": "a", "kubeconfig": str(a.kubeconfig), "namespace": namespace}],
                             apps=[app])  # fmt: skip
        code, results, printed = sync(config, capsys)
        assert code == 0, printed
        deployment = live_object(a, "apps/v1", "Deployment", "shop-podinfo", namespace)
        assert deployment["spec"]["replicas"] == 2
        assert live_object(a, "v1", "ConfigMap", "shop-settings", namespace) is not None
        sources = {o["source"] for o in results["a"]["objects"]}
        assert "charts/shop/charts/podinfo/templates/deployment.yaml#0" in sources
        assert not (git_repo.path / "charts/shop/charts").exists()
        assert any("/index.yaml" in r for r in deps.requests)
    finally:
        deps.unreachable()


def test_the_agent_follows_a_chart_repository_on_its_interval_and_keeps_the_last_good_chart(
    servers: Any, clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    """``gitops-agent run``: a new version in the range is deployed on the source's interval with no trigger; once
    the repository stops answering, the source is stale (naming it), the app stays Synced at the last good
    chart, nothing is written, and the password is in no log line."""
    from tests.e2e.test_faults import Agent
    from tests.e2e.test_push_to_deploy import request
    from tests.e2e.test_run_status import free_port

    repo, registry, _ = servers
    (a,) = clusters(1)
    ensure_namespace(a, namespace)
    app = {"name": "podinfo", "source": "charts", "chart": {"name": "podinfo", "version": "6.x"},
           "namespace": namespace, "helm": {"values": {"redis": {"enabled": False}}}}  # fmt: skip
    sources = chart_sources(tmp_path, repo, registry)
    sources["charts"]["interval"] = "1s"
    port = free_port()
    config = make_config("/nonexistent", [{"name": "a", "kubeconfig": str(a.kubeconfig), "namespace": namespace}],
                         apps=[app], sources=sources, server={"listen": f"127.0.0.1:{port}"},
                         sync={"interval": "1h"})  # fmt: skip
    raw = yaml.safe_load(config.read_text())
    del raw["source"]
    config.write_text(yaml.safe_dump(raw))
    agent = Agent(config, tmp_path / "agent.log")

    def chart_label() -> str:
        found = live_object(a, "apps/v1", "Deployment", "podinfo", namespace) or {"metadata": {"labels": {}}}
        return str(found["metadata"]["labels"].get("helm.sh/chart", ""))

    def cell() -> dict[str, Any]:
        apps = json.loads(request(f"{agent.base}/api/v1/apps")[1])["apps"]
        return dict(apps[0]["clusters"][0])

    try:
        agent.wait_ready()
        wait_until(lambda: chart_label() == "podinfo-6.14.1", timeout=60)
        repo.add(PODINFO, "6.15.0")
        wait_until(lambda: chart_label() == "podinfo-6.15.0", timeout=60)  # on the interval, no trigger
        repo.unreachable()
        offset = audit_offset(a)
        stale = wait_until(lambda: (c := cell()).get("stale") and c, timeout=30)
        assert repo.url in stale["stale"]
        assert stale["syncStatus"] == "Synced"
        assert agent.status()["sources"]["charts"]["revision"]["ref"] == "podinfo 6.15.0"
        assert chart_label() == "podinfo-6.15.0"
        assert [e for e in agent_writes(a, offset) if (e.get("objectRef") or {}).get("namespace") == namespace] == []
    finally:
        agent.stop()
    log = (tmp_path / "agent.log").read_text()
    assert REPO_PASSWORD not in log
    assert OCI_PASSWORD not in log


def test_a_chart_repository_that_accepts_and_never_answers_fails_the_fetch_within_its_timeout(
    tmp_path: pathlib.Path,
) -> None:
    """A server that takes the connection and never answers (not one that refuses it) costs the source's
    ``timeout`` for the whole fetch, then a clear error; nothing hangs."""
    import socket
    import threading
    import time

    from agent import config
    from agent.sources import charts
    from reconcilers import errors

    held: list[socket.socket] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])  # kept open, never read, never answered
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    source = config.SourceConfig(url=url, type="helm", timeout=2, cacheDir=str(tmp_path / "cache"))
    fetcher = charts.ChartSource(source, [config.ChartRef(name="podinfo", version="6.x")])
    t0 = time.monotonic()
    try:
        with pytest.raises(errors.FetchError, match=r"took over 2 s \(timeout\)"):
            fetcher.fetch()
        assert time.monotonic() - t0 < 6
        assert held  # it did connect: the server accepted and stayed silent
    finally:
        stop.set()
        listener.close()
        for conn in held:
            conn.close()

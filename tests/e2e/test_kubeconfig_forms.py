"""The ways users reach a cluster, each syncing to a real one: kubeconfig file with context, inline kubeconfig,
server + bearer token from env or file with a CA (data or file), insecureSkipTLSVerify when explicitly asked,
exec credential plugins (client.authentication.k8s.io v1 and v1beta1); and clear errors for an unknown context,
a TLS failure and rejected credentials. Client certificates are what every other test uses."""

from __future__ import annotations

import base64
import json
import pathlib
import ssl
import stat
from typing import Any

import pytest
import yaml

from tests.conftest import GitRepo, runner_for, target_identity


@pytest.fixture
def setup(git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path) -> Any:
    (tc,) = clusters(1)
    _, token = target_identity(tc, make_config, tmp_path)
    git_repo.write_objects(
        "app/all.yaml",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "reached", "namespace": namespace}},
    )
    git_repo.commit()
    admin = yaml.safe_load(tc.kubeconfig.read_text())
    return tc, token, admin, git_repo, make_config, tmp_path


def sync(make_config: Any, repo: GitRepo, entry: dict[str, Any], **top: Any) -> Any:
    runner, revision, checkout = runner_for(make_config(repo, [{"name": "x", "paths": ["app"], **entry}], **top), "x")
    try:
        return runner.reconcile(revision, checkout)
    finally:
        runner.close()


def exec_plugin(tmp: pathlib.Path, api_version: str, token: str) -> pathlib.Path:
    script = tmp / f"plugin-{api_version.rsplit('/', 1)[1]}.sh"
    credential = {"apiVersion": api_version, "kind": "ExecCredential", "status": {"token": token}}
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(credential)}\nEOF\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_every_form_reaches_the_cluster(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    tc, token, admin, repo, make_config, tmp = setup
    server = admin["clusters"][0]["cluster"]["server"]
    ca_data = admin["clusters"][0]["cluster"]["certificate-authority-data"]
    (tmp / "ca.crt").write_bytes(base64.b64decode(ca_data))
    (tmp / "token").write_text(token + "\n")
    monkeypatch.setenv("X_CLUSTER_TOKEN", token)
    forms: dict[str, dict[str, Any]] = {
        "kubeconfig file + context": {"kubeconfig": str(tc.kubeconfig), "context": "testcluster"},
        "inline kubeconfig": {"kubeconfigData": tc.kubeconfig.read_text()},
        "token from env + CA data": {
            "server": server,
            "token": {"env": "X_CLUSTER_TOKEN"},
            "certificateAuthorityData": ca_data,
        },
        "token from file + CA file": {
            "server": server,
            "token": {"file": str(tmp / "token")},
            "certificateAuthority": str(tmp / "ca.crt"),
        },
        "insecureSkipTLSVerify, explicitly": {
            "server": server,
            "token": {"env": "X_CLUSTER_TOKEN"},
            "insecureSkipTLSVerify": True,
        },
    }
    for api_version in ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"):
        kubeconfig = json.loads(json.dumps(admin))
        user: dict[str, Any] = {"apiVersion": api_version, "command": str(exec_plugin(tmp, api_version, token))}
        if api_version.endswith("/v1"):
            user["interactiveMode"] = "Never"
        kubeconfig["users"] = [{"name": "plugin", "user": {"exec": user}}]
        kubeconfig["contexts"][0]["context"]["user"] = "plugin"
        path = tmp / f"exec-{api_version.rsplit('/', 1)[1]}.kubeconfig"
        path.write_text(yaml.safe_dump(kubeconfig))
        forms[f"exec plugin {api_version}"] = {"kubeconfig": str(path)}
    for form, entry in forms.items():
        result = sync(make_config, repo, entry)
        assert result.ok, (form, result.error, [e.message for e in result.failed])


def test_in_cluster_service_account(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``inCluster: true`` reads the pod's token and CA (here from a directory standing in for the mount) and
    ``$KUBERNETES_SERVICE_HOST``/``PORT``, through the official client's in-cluster loader."""
    from agent.clusters import kubeconfig

    _, token, admin, repo, make_config, tmp = setup
    mount = tmp / "serviceaccount"
    mount.mkdir()
    (mount / "token").write_text(token)
    (mount / "ca.crt").write_bytes(base64.b64decode(admin["clusters"][0]["cluster"]["certificate-authority-data"]))
    host, port = admin["clusters"][0]["cluster"]["server"].removeprefix("https://").rsplit(":", 1)
    monkeypatch.setattr(kubeconfig, "SERVICE_ACCOUNT_DIR", str(mount))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    result = sync(make_config, repo, {"inCluster": True})
    assert result.ok, (result.error, [e.message for e in result.failed])


def test_clear_errors(setup: Any) -> None:
    tc, token, admin, repo, make_config, tmp = setup
    server = admin["clusters"][0]["cluster"]["server"]
    result = sync(make_config, repo, {"kubeconfig": str(tc.kubeconfig), "context": "no-such-context"})
    assert result.error_kind is not None
    assert result.error_kind.value == "config"
    assert "no-such-context" in (result.error or "")

    (tmp / "tok").write_text(token)
    result = sync(make_config, repo, {"server": server, "token": {"file": str(tmp / "tok")}})  # no CA, not insecure
    assert result.error_kind is not None
    assert result.error_kind.value == "cluster"
    assert "TLS verification failed" in (result.error or "")

    (tmp / "bad").write_text("not-a-valid-token")
    result = sync(
        make_config, repo, {"server": server, "token": {"file": str(tmp / "bad")}, "insecureSkipTLSVerify": True}
    )
    assert result.error_kind is not None
    assert "rejected the credentials" in (result.error or "")


def test_a_ca_that_is_no_certificate_fails_that_cluster_as_config(setup: Any) -> None:
    _, token, admin, repo, make_config, tmp = setup
    server = admin["clusters"][0]["cluster"]["server"]
    (tmp / "tok").write_text(token)
    (tmp / "garbage.crt").write_text(
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    )
    entry = {"server": server, "token": {"file": str(tmp / "tok")}, "certificateAuthority": str(tmp / "garbage.crt")}
    result = sync(make_config, repo, entry)
    assert result.error_kind is not None
    assert result.error_kind.value == "config", result.error
    assert "cluster x" in (result.error or "")
    assert "CA or client certificate" in (result.error or "")


def test_the_connections_of_a_cluster_share_one_tls_context(setup: Any) -> None:
    """Client certificate and CA loaded once (agent.clusters.tls), not per connection; what is verified is unchanged:
    every connection still presents the client certificate and checks the server's."""
    from concurrent import futures

    from agent import config
    from agent.clusters import kubeconfig

    tc, *_ = setup
    kube = kubeconfig.connect(config.ClusterConnection.model_validate({"name": "x", "kubeconfig": str(tc.kubeconfig)}))
    try:
        with futures.ThreadPoolExecutor(6) as pool:  # concurrent requests: several connections
            versions = list(pool.map(lambda _: kube.request("GET", "/version"), range(24)))
        assert all(v.get("gitVersion") for v in versions)
        review = kube.request(
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
        assert review["status"]["userInfo"]["username"]  # the client certificate was presented
        pool_ = kube._pool()
        socks = [c.sock for c in list(pool_.pool.queue) if c is not None and c.sock is not None]  # type: ignore[union-attr]
        assert len(socks) > 1
        assert len({id(s.context) for s in socks}) == 1
        assert socks[0].context.verify_mode == ssl.CERT_REQUIRED
    finally:
        kube.close()


def test_a_cluster_needs_exactly_one_way_in(tmp_path: pathlib.Path) -> None:
    from agent import config
    from reconcilers import errors

    path = tmp_path / "agent.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "source": {"url": "/r"},
                "clusters": [
                    {"name": "a", "paths": ["x"], "kubeconfig": "k", "server": "https://h", "token": {"env": "T"}},
                    {"name": "b", "paths": ["x"], "server": "https://h"},
                    {"name": "c", "paths": ["x"], "server": "http://h", "token": {"env": "T"}},
                ],
            }
        )
    )
    with pytest.raises(errors.ConfigError) as e:
        config.load_config(path)
    message = str(e.value)
    assert "clusters[0]: Value error, give one of kubeconfig, kubeconfigData, server" in message or (
        "give one of kubeconfig, kubeconfigData, server (with token) or inCluster" in message
    )
    assert "server needs a token" in message
    assert "must be an https:// URL" in message

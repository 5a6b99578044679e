"""No credential is ever printed or served: a full scenario with known secret values (git token, SSH key, cluster
bearer token, the delegate token, a webhook secret, the API token), then a scan of every byte the agent printed
(logs, `sync`, `diff` and `status` output) or served (status, cluster, metrics, OpenAPI, dashboard). The delegate
token also sits in a ConfigMap, where a corrected drift's diff would otherwise show it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import yaml

from tests.conftest import GitRepo, dynamic_client, live_object, target_identity, wait_until
from tests.e2e.test_faults import Agent
from tests.e2e.test_push_to_deploy import request
from tests.e2e.test_run_status import free_port

SECRETS = {
    "GIT_TOKEN": "git-token-9b8a7c6d",
    "DELEGATE_TOKEN": "delegate-token-1a2b3c4d",
    "HOOK_SECRET": "hook-secret-5e6f7a8b",
    "API_TOKEN": "api-token-0c1d2e3f",
}
SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nssh-key-material-4f5e6d7c\n-----END OPENSSH PRIVATE KEY-----\n"


def test_no_secret_in_anything_printed_or_served(
    tmp_path: pathlib.Path, clusters: Any, make_config: Any, namespace: str
) -> None:
    (tc,) = clusters(1)
    # the cluster's credential: a ServiceAccount token with the least-privilege target role
    kubeconfig_path, cluster_token = target_identity(tc, make_config, tmp_path)
    (tmp_path / "id_ed25519").write_text(SSH_KEY)

    repo = GitRepo(tmp_path / "fleet")
    repo.write_objects(
        "app/all.yaml",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "token", "namespace": namespace},
            "stringData": {"TOKEN": "${DELEGATE_TOKEN}"},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "leaky", "namespace": namespace},
            "data": {"banner": "token is ${DELEGATE_TOKEN}"},
        },
    )
    repo.commit()
    port = free_port()
    config = make_config(
        repo,
        [{"name": "a", "kubeconfig": str(kubeconfig_path), "paths": ["app"], "substitute": True}],
        variables={"DELEGATE_TOKEN": {"env": "DELEGATE_TOKEN"}},
        sync={"interval": "1h", "prune": True},
        server={
            "listen": f"127.0.0.1:{port}",
            "token": {"env": "API_TOKEN"},
            "webhooks": {"generic": {"env": "HOOK_SECRET"}},
        },
    )
    cfg = yaml.safe_load(config.read_text())
    cfg["source"].update(tokenEnv="GIT_TOKEN", sshKeyFile=str(tmp_path / "id_ed25519"))
    config.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, **SECRETS, "GITOPS_AGENT_TOKEN": SECRETS["API_TOKEN"]}
    seen: list[str] = []

    def cli(*args: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "agent.cli", *args], env=env, capture_output=True, text=True, timeout=120
        )
        seen.append(done.stdout + done.stderr)

    cli("sync", "--config", str(config), "--json")
    agent = Agent(config, tmp_path / "agent.log", env=env)
    try:
        agent.wait_ready()
        get = lambda path: request(agent.base + path, token=SECRETS["API_TOKEN"])  # noqa: E731
        wait_until(
            lambda: get("/api/v1/status")[0] == 200 and json.loads(get("/api/v1/status")[1])["clusters"][0]["lastSync"]
        )
        # drift on the ConfigMap that carries the token: the correction's diff must be masked
        dynamic_client(tc).resources.get(api_version="v1", kind="ConfigMap").patch(
            name="leaky",
            namespace=namespace,
            body={"data": {"banner": "edited"}},
            content_type="application/merge-patch+json",
            field_manager="someone",
        )
        cli("diff", "--config", str(config))
        assert "***" in seen[-1]
        body = b'{"ref": "refs/heads/main"}'
        signature = "sha256=" + hmac.new(SECRETS["HOOK_SECRET"].encode(), body, hashlib.sha256).hexdigest()
        assert (
            request(
                f"{agent.base}/api/v1/webhooks/generic",
                method="POST",
                body=body,
                headers={"X-Signature-256": signature},
            )[0]
            == 202
        )
        assert get("/api/v1/sync/a")[0] == 405  # only POST triggers
        assert request(f"{agent.base}/api/v1/sync/a", method="POST", token=SECRETS["API_TOKEN"])[0] == 202
        wait_until(
            lambda: (
                live_object(tc, "v1", "ConfigMap", "leaky", namespace)["data"]["banner"]
                == f"token is {SECRETS['DELEGATE_TOKEN']}"
            )
        )
        wait_until(lambda: "configured" in get("/api/v1/clusters/a")[1])
        for path in ("/api/v1/status", "/api/v1/clusters/a", "/metrics", "/openapi.json", "/"):
            seen.append(get(path)[1])
        assert '"diff":"--- live/core/ConfigMap' in seen[-4]  # the corrected drift is shown, masked
        cli("status", "--url", agent.base)
    finally:
        assert agent.stop() == 0
    seen.append(agent.log.read_text(errors="replace"))
    values = [*SECRETS.values(), cluster_token, "ssh-key-material-4f5e6d7c"]
    values += [base64.b64encode(v.encode()).decode() for v in values]
    for output in seen:
        for value in values:
            assert value not in output, f"a secret leaked: {value[:6]}... in {output[:200]!r}"


def test_a_secret_adopted_from_client_side_apply_shows_no_value(
    tmp_path: pathlib.Path, clusters: Any, make_config: Any, namespace: str
) -> None:
    """A Secret first created by ``kubectl apply`` (client-side) keeps its old data in the
    ``last-applied-configuration`` annotation. Neither its old value nor git's new one appears in ``sync --json``,
    ``sync --dry-run``, ``diff``, a dry-run prune, the status API or the logs."""
    (tc,) = clusters(1)
    old, new = "old-password-7d3e9a", "new-password-2c8f41"
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    dynamic_client(tc).resources.get(api_version="v1", kind="Namespace").create(body=ns)
    applied = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "adopted", "namespace": namespace, "annotations": {}},
        "data": {"password": base64.b64encode(old.encode()).decode()},
    }
    # What `kubectl apply` (client-side) sends for a new object: the object with its own last-applied copy.
    created = json.loads(json.dumps(applied))
    created["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": json.dumps(applied, separators=(",", ":")) + "\n"
    }
    dynamic_client(tc).resources.get(api_version="v1", kind="Secret").create(
        body=created, namespace=namespace, field_manager="kubectl-client-side-apply"
    )
    repo = GitRepo(tmp_path / "fleet")
    repo.write_objects(
        "app/all.yaml",
        ns,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "adopted", "namespace": namespace},
            "stringData": {"password": new},
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain", "namespace": namespace}},
    )
    repo.commit()
    port = free_port()
    config = make_config(
        repo,
        [{"name": "a", "kubeconfig": str(tc.kubeconfig), "paths": ["app"]}],
        sync={"interval": "1h", "prune": True},
        server={"listen": f"127.0.0.1:{port}"},
    )
    seen: list[str] = []

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "agent.cli", *args, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        seen.append(done.stdout + done.stderr)
        return done

    assert "***" in cli("diff").stdout  # the drift is shown, masked
    cli("sync", "--dry-run", "--json")
    assert cli("sync", "--json").returncode == 0
    live = live_object(tc, "v1", "Secret", "adopted", namespace)
    assert base64.b64decode(live["data"]["password"]).decode() == new
    assert base64.b64encode(old.encode()).decode() in json.dumps(live)  # the annotation keeps the old value
    agent = Agent(config, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        wait_until(lambda: (agent.cluster("a").get("lastSync") or {}).get("result") == "Succeeded")
        seen += [request(agent.base + p)[1] for p in ("/api/v1/status", "/api/v1/clusters/a", "/metrics")]
    finally:
        assert agent.stop() == 0
    seen.append(agent.log.read_text(errors="replace"))
    repo.write_objects(
        "app/all.yaml",
        ns,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain", "namespace": namespace}},
    )
    repo.commit("the Secret leaves git")
    dry = cli("sync", "--dry-run", "--json", "--force-prune")
    assert '"action": "pruned"' in dry.stdout
    assert "live/core/Secret" in dry.stdout
    cli("diff")
    values = [old, new, base64.b64encode(old.encode()).decode(), base64.b64encode(new.encode()).decode()]
    for output in seen:
        for value in values:
            assert value not in output, f"a secret value leaked: {value[:6]}... in {output[:300]!r}"

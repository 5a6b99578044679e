"""SOPS-encrypted files in git (issue 18), encrypted here with the real ``sops`` and a generated age key, synced
to a real cluster: whole-file and ``encrypted_regex`` encryption, live values right, a resync writes nothing, and
no decrypted value in anything printed or served; a wrong key, a tampered file and an encrypted file where
decryption is off are each refused with a clear error and zero writes."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import re
import subprocess
import sys
from typing import Any

import pytest
import yaml

from tests.conftest import (
    REPO,
    GitRepo,
    agent_writes,
    audit_offset,
    cluster_entry,
    dynamic_client,
    live_object,
    wait_until,
)
from tests.e2e.test_faults import Agent
from tests.e2e.test_push_to_deploy import request
from tests.e2e.test_run_status import free_port
from tests.e2e.test_sync_corpora import ensure_namespace

BIN = REPO / ".venv" / "bin"
WHOLE, REGEX, CM = "whole-file-value-7c1d", "regex-value-5e2a", "configmap-value-9b3f"
KZ, ENV = "kustomize-input-value-3d8e", "dotenv-value-6a4c"
HELM = "helm-values-7b2e-secret"


def age_key(tmp: pathlib.Path, name: str) -> tuple[str, str]:
    """A new age identity from the real age-keygen: (secret key, public recipient)."""
    path = tmp / f"{name}.agekey"
    subprocess.run([str(BIN / "age-keygen"), "-o", str(path)], check=True, capture_output=True)
    text = path.read_text()
    return re.search(r"AGE-SECRET-KEY-\S+", text).group(0), re.search(r"public key: (\S+)", text).group(1)  # type: ignore[union-attr]


def encrypt(file: pathlib.Path, recipient: str, regex: str | None = None) -> None:
    """Encrypt ``file`` in place with the real sops (no key of the user's involved)."""
    args = [str(BIN / "sops"), "--encrypt", "--age", recipient, "--in-place"]
    if regex:
        args += ["--encrypted-regex", regex]
    env = {"PATH": os.environ["PATH"], "HOME": str(file.parent)}
    subprocess.run([*args, str(file)], check=True, capture_output=True, env=env)


def write_encrypted(repo: GitRepo, namespace: str, recipient: str) -> None:
    repo.write_objects("app/ns.yaml", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    whole = repo.write_objects(
        "app/db.yaml",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db", "namespace": namespace},
            "stringData": {"password": WHOLE},
        },
    )
    encrypt(whole, recipient)
    api = repo.write_objects(
        "app/api.yaml",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "api", "namespace": namespace},
            "stringData": {"key": REGEX},
        },
    )
    encrypt(api, recipient, "^(data|stringData)$")
    settings = repo.write_objects(
        "app/settings.yaml",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": namespace},
            "data": {"token": CM},
        },
    )
    encrypt(settings, recipient, "^data$")
    # a kustomization with an encrypted resource and an encrypted secretGenerator .env input
    repo.write(
        "kz/kustomization.yaml",
        f"namespace: {namespace}\nresources: [token.yaml]\n"
        "secretGenerator: [{name: creds, envs: [creds.env]}]\ngeneratorOptions: {disableNameSuffixHash: true}\n",
    )
    token = repo.write_objects(
        "kz/token.yaml",
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kz-token"}, "stringData": {"token": KZ}},
    )
    encrypt(token, recipient, "^(data|stringData)$")
    encrypt(repo.write("kz/creds.env", f"PASSWORD={ENV}\n"), recipient)
    repo.commit("encrypted")


def cli(config: pathlib.Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def test_encrypted_files_sync_and_no_decrypted_value_shows(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    (tc,) = clusters(1)
    key, recipient = age_key(tmp_path, "fleet")
    write_encrypted(git_repo, namespace, recipient)
    assert WHOLE not in (git_repo.path / "app/db.yaml").read_text()  # really encrypted in git
    from tests.e2e.test_helm_values import _chart

    _chart(git_repo)  # and a chart app whose values file is encrypted
    encrypt(git_repo.write("values/secret.yaml", yaml.safe_dump({"token": HELM})), recipient)
    git_repo.commit("a chart with an encrypted values file")
    chart_app = {
        "name": "site",
        "path": "charts/web",
        "namespace": namespace,
        "decryption": {"sops": True},
        "helm": {"valuesFiles": ["values/secret.yaml"]},
    }
    port = free_port()
    config = make_config(
        git_repo,
        [{**cluster_entry(tc, "a", ["app", "kz"], namespace), "decryption": {"sops": True}}],
        apps=[chart_app],
        decryption={"sops": {"ageKeys": [{"env": "SOPS_AGE_KEY"}]}},
        sync={"interval": "1h"},
        server={"listen": f"127.0.0.1:{port}"},
    )
    # The chart app and kz write into the namespace the app "app" creates; apps at a new revision sync side by
    # side, so it is made here before the sync (otherwise whichever renders first may write before it exists).
    ensure_namespace(tc, namespace)
    env = {"SOPS_AGE_KEY": key}
    seen: list[str] = []
    first = cli(config, env, "sync", "--json")
    seen.append(first.stdout + first.stderr)
    assert first.returncode == 0, first.stdout + first.stderr
    db = live_object(tc, "v1", "Secret", "db", namespace)
    assert base64.b64decode(db["data"]["password"]).decode() == WHOLE
    assert base64.b64decode(live_object(tc, "v1", "Secret", "api", namespace)["data"]["key"]).decode() == REGEX
    assert live_object(tc, "v1", "ConfigMap", "settings", namespace)["data"] == {"token": CM}
    assert "sops" not in db  # the metadata is not applied
    assert base64.b64decode(live_object(tc, "v1", "Secret", "kz-token", namespace)["data"]["token"]).decode() == KZ
    assert base64.b64decode(live_object(tc, "v1", "Secret", "creds", namespace)["data"]["PASSWORD"]).decode() == ENV
    assert not list((tmp_path / "cache-trees").glob(".decrypted-*"))  # the decrypted copy is gone
    helm_token = live_object(tc, "v1", "Secret", "site-token", namespace)
    assert base64.b64decode(helm_token["data"]["token"]).decode() == HELM

    offset = audit_offset(tc)
    again = cli(config, env, "sync", "--json")
    seen.append(again.stdout + again.stderr)
    assert again.returncode == 0
    assert {o["action"] for o in json.loads(again.stdout)["a"]["objects"]} == {"unchanged"}
    assert agent_writes(tc, offset) == []

    # drift on the ConfigMap whose value was decrypted: the diff shows it masked
    dynamic_client(tc).resources.get(api_version="v1", kind="ConfigMap").patch(
        name="settings",
        namespace=namespace,
        body={"data": {"token": "edited"}},
        content_type="application/merge-patch+json",
        field_manager="someone",
    )
    drift = cli(config, env, "diff")
    seen.append(drift.stdout + drift.stderr)
    assert drift.returncode == 1
    assert "***" in drift.stdout
    agent = Agent(config, tmp_path / "agent.log", env=env)
    try:
        agent.wait_ready()
        wait_until(lambda: live_object(tc, "v1", "ConfigMap", "settings", namespace)["data"] == {"token": CM})
        wait_until(lambda: (agent.cluster("a").get("lastSync") or {}).get("result") == "Succeeded")
        seen += [request(agent.base + p)[1] for p in ("/api/v1/status", "/api/v1/clusters/a", "/metrics")]
    finally:
        assert agent.stop() == 0
    seen.append(agent.log.read_text(errors="replace"))
    values = [WHOLE, REGEX, CM, KZ, ENV, HELM]
    values += [base64.b64encode(v.encode()).decode() for v in values]
    for output in seen:
        for value in values:
            assert value not in output, f"a decrypted value leaked: {value[:6]}... in {output[:300]!r}"


@pytest.mark.parametrize("case", ["wrong key", "tampered", "decryption off", "kustomize input, decryption off"])
def test_undecryptable_files_are_refused_and_nothing_is_written(
    case: str, git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    (tc,) = clusters(1)
    key, recipient = age_key(tmp_path, "fleet")
    write_encrypted(git_repo, namespace, recipient)
    if case == "tampered":  # one ciphertext changed: sops's MAC check fails
        db = git_repo.path / "app/db.yaml"
        text = db.read_text()
        value = re.search(r"ENC\[AES256_GCM,data:([A-Za-z0-9+/=]{8})", text).group(1)  # type: ignore[union-attr]
        db.write_text(text.replace(value, value[::-1], 1))
        git_repo.commit("tampered")
    if case == "wrong key":
        key, _ = age_key(tmp_path, "other")
    paths = ["kz"] if case.startswith("kustomize") else ["app", "kz"]
    cluster = cluster_entry(tc, "a", paths, namespace)
    if "decryption off" not in case:
        cluster["decryption"] = {"sops": True}
    config = make_config(git_repo, [cluster], decryption={"sops": {"ageKeys": [{"env": "SOPS_AGE_KEY"}]}})
    offset = audit_offset(tc)
    done = cli(config, {"SOPS_AGE_KEY": key}, "sync", "--json")
    assert done.returncode == 2, done.stdout + done.stderr
    error = json.loads(done.stdout)["a"]["error"]
    # each path is an app: with two, the cluster's error names the app first
    assert error.startswith((paths[0] + "/", f"app {paths[0]}: {paths[0]}/")), error
    expected = {
        "wrong key": "cannot be decrypted",
        "tampered": "cannot be decrypted",
        "decryption off": "is SOPS-encrypted but decryption is off here",
        "kustomize input, decryption off": "is SOPS-encrypted but decryption is off here",
    }[case]
    assert expected in error, error
    # nothing is written: with two apps, the other one's writes fail too (its namespace is the refused app's);
    # it still records its intent in its inventory (in the agent's own namespace) before acting
    written = [
        (e["verb"], e["objectRef"])
        for e in agent_writes(tc, offset)
        if (e.get("responseStatus") or {}).get("code", 0) < 400
        and "gitops-agent" not in (e["objectRef"].get("namespace"), e["objectRef"].get("name"))
    ]
    assert written == []
    assert live_object(tc, "v1", "Secret", "db", namespace) is None

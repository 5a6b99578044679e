"""An OCI chart source that requires cosign signatures (``verify: {provider: cosign, keys}``), in the running agent
against a real test cluster: charts pushed with the real ``helm push`` to go-containerregistry's registry on
loopback (behind basic auth, so the credentials must reach cosign too) and signed with the real cosign over their
digest. A signed chart is deployed; an unsigned newer version, one signed by another key, and a signed version
re-pushed with other content under the same tag never are: the cluster keeps the last verified chart, the source
says why (``Unverified (chart <name> <version> @ <digest>: ...)``), an event is sent."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import subprocess
from typing import Any

import yaml

from tests.chartservers import Registry, helm, package
from tests.conftest import REPO, cluster_entry, live_object, wait_until
from tests.e2e.test_faults import Agent
from tests.e2e.test_run_status import free_port
from tests.e2e.test_sync_corpora import ensure_namespace

COSIGN = str(REPO / ".venv" / "bin" / "cosign")
PASSWORD = "oci-pw-51e9-never-shown"


class Signer:
    """cosign key pairs (``keys[i]``: the directory holding ``cosign.key`` and ``cosign.pub``) and signing with
    them, logged in to ``registry`` through a Docker config of the test's own."""

    def __init__(self, tmp: pathlib.Path, registry: Registry) -> None:
        self.registry = registry
        auth = base64.b64encode(f"bob:{PASSWORD}".encode()).decode()
        self.docker = tmp / "docker"
        self.docker.mkdir()
        (self.docker / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
        self.env = {**os.environ, "COSIGN_PASSWORD": "", "DOCKER_CONFIG": str(self.docker), "HOME": str(tmp)}
        self.keys = []
        for i in range(2):
            where = tmp / f"key-{i}"
            where.mkdir()
            self._cosign(["generate-key-pair"], cwd=where)
            self.keys.append(where)

    def sign(self, name: str, digest: str, key: int) -> None:
        ref = f"{self.registry.host}/charts/{name}@{digest}"
        # no transparency log on loopback: the signature goes to the registry alone (the agent checks it offline)
        offline = ["--use-signing-config=false", "--tlog-upload=false"]
        self._cosign(["sign", "--key", str(self.keys[key] / "cosign.key"), *offline, "--allow-http-registry",
                      "--allow-insecure-registry", "-y", ref])  # fmt: skip

    def _cosign(self, args: list[str], cwd: pathlib.Path | None = None) -> None:
        done = subprocess.run([COSIGN, *args], env=self.env, cwd=cwd, capture_output=True, text=True, timeout=60,
                              check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr


def test_only_charts_signed_by_a_known_key_reach_the_cluster(
    clusters: Any, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    (tc,) = clusters(1)
    ensure_namespace(tc, namespace)
    home = tmp_path / "helm-home"
    registry = Registry(home, "bob", PASSWORD)
    signer = Signer(tmp_path, registry)
    chart = tmp_path / "signed-demo"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: signed-demo\nversion: 0.0.0\n")

    def push(version: str, key: int | None, content: str = "") -> str:
        """Push ``version`` (its ConfigMap saying ``version`` and ``content``) and sign it with ``keys[key]``."""
        (chart / "templates" / "cm.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: signed-demo}\n"
            f"data: {{version: '{version}', content: '{content}'}}\n"
        )
        archive = package(chart, tmp_path / "packages" / f"{version}-{content}", home, version)
        helm("registry", "login", registry.host, "--username", "bob", "--password-stdin", "--plain-http",
             home=home, stdin=PASSWORD)  # fmt: skip
        said = helm("push", str(archive), registry.url, "--plain-http", home=home)
        digest = said.split("Digest: ")[1].split()[0]
        if key is not None:
            signer.sign("signed-demo", digest, key)
        return digest

    def live() -> dict[str, str]:
        return dict((live_object(tc, "v1", "ConfigMap", "signed-demo", namespace) or {}).get("data") or {})

    push("1.0.0", key=0)
    source = {"type": "oci", "url": registry.url, "usernameEnv": "REG_USER", "passwordEnv": "REG_PASS",
              "insecure": True, "interval": "1s", "timeout": "60s", "cacheDir": str(tmp_path / "cache"),
              "verify": {"provider": "cosign", "keys": [{"file": str(signer.keys[0] / "cosign.pub")}]}}  # fmt: skip
    app = {"name": "demo", "source": "signed", "chart": {"name": "signed-demo", "version": "1.x"},
           "namespace": namespace}  # fmt: skip
    config = make_config("/nonexistent", [cluster_entry(tc, "a", [], namespace)], apps=[app],
                         sources={"signed": source}, server={"listen": f"127.0.0.1:{free_port()}"})  # fmt: skip
    raw = yaml.safe_load(config.read_text())
    del raw["source"]  # the chart source alone
    config.write_text(yaml.safe_dump(raw))
    agent = Agent(config, tmp_path / "agent.log", env={"REG_USER": "bob", "REG_PASS": PASSWORD})
    try:
        wait_until(lambda: live().get("version") == "1.0.0", timeout=90)
        first = agent.status()["source"]["revision"]["sha"]
        refusals = [
            ("1.1.0", None, "", "not signed by a key of verify.keys"),  # unsigned
            ("1.2.0", 1, "", "not signed by a key of verify.keys"),  # signed by a key the source does not trust
        ]
        for version, key, content, reason in refusals:
            digest = push(version, key, content)
            stale = wait_until(
                lambda d=digest: (s := agent.status()["source"])["stale"] and d[7:19] in (s["error"] or "") and s,
                timeout=60,
            )
            assert stale["error"].startswith(f"Unverified (chart signed-demo {version} @ {digest[7:19]}: {reason}")
            assert stale["revision"]["sha"] == first
            assert live() == {"version": "1.0.0", "content": ""}
        # a signed version is deployed; the same version re-pushed with other content (and no signature) is not
        push("1.3.0", key=0)
        wait_until(lambda: live().get("version") == "1.3.0", timeout=60)
        tampered = push("1.3.0", key=None, content="tampered")
        stale = wait_until(lambda: (s := agent.status()["source"])["stale"] and tampered[7:19] in (s["error"] or "")
                           and s, timeout=60)  # fmt: skip
        assert "not signed by a key of verify.keys" in stale["error"]
        assert live() == {"version": "1.3.0", "content": ""}
        events = agent.status()["events"]
        assert any("Unverified (chart signed-demo" in e["message"] for e in events), events
        assert PASSWORD not in agent.log.read_text()
    finally:
        assert agent.stop() == 0, agent.log.read_text()[-3000:]
        registry.stop()

"""``make demo``: the agent's main job on local parts.

Starts two test clusters (``build/testcluster``), makes a local git repository from examples/fleet and the
delegate bundle of manifests/delegate (its token substituted from the environment, never in git), syncs it to
both clusters with ``gitops-agent sync``, syncs again to show that nothing is rewritten, then runs
``gitops-agent run`` and prints what its status endpoint reports (sync status and health per cluster).
Everything lives under .demo/ and every process it started is stopped at the end.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.cluster.launcher import TestCluster  # noqa: E402

WORK = REPO / ".demo"
AGENT = [sys.executable, "-m", "agent.cli"]
os.environ.setdefault("DELEGATE_TOKEN", "demo-token-from-the-environment")  # substituted into the delegate


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def make_repo() -> pathlib.Path:
    """examples/fleet (a small app) plus our delegate bundle (manifests/delegate) as the desired-state repo."""
    repo = WORK / "fleet"
    shutil.copytree(REPO / "examples" / "fleet", repo)
    shutil.copytree(REPO / "manifests" / "delegate", repo / "delegate")
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.name=demo", "-c", "user.email=demo@example.com", "commit", "-q", "-m", "desired state"],
    ):
        subprocess.run(["git", *args], cwd=repo, check=True)
    return repo


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    say("starting two local Kubernetes clusters (etcd + kube-apiserver + controllers + fake kubelet)")
    started = time.monotonic()
    clusters = [TestCluster.start(name, WORK / "clusters" / name) for name in ("dev", "prod")]
    agent = None
    try:
        for c in clusters:
            print(f"  {c.name}: {c.server}  kubeconfig={c.kubeconfig}")
        print(f"  ready in {time.monotonic() - started:.1f}s")
        repo = make_repo()
        port = free_port()
        config = WORK / "config.yaml"
        config.write_text(
            f"source:\n  url: {repo}\n  ref: main\n  interval: 30s\n  cacheDir: {WORK / 'cache'}\n"
            "clusters:\n"
            f"  - name: dev\n    kubeconfig: {clusters[0].kubeconfig}\n    paths: [delegate, apps]\n"
            "    substitute: true\n"
            f"  - name: prod\n    kubeconfig: {clusters[1].kubeconfig}\n    paths: [delegate]\n"
            "    substitute: true\n"
            "variables:\n  DELEGATE_TOKEN: {env: DELEGATE_TOKEN}\n"
            f"sync:\n  interval: 5m\n  prune: true\n  selfHeal: true\nserver:\n  listen: 127.0.0.1:{port}\n"
        )
        say(f"gitops-agent sync --config {config.relative_to(REPO)}")
        first = subprocess.run([*AGENT, "sync", "--config", str(config)], check=False)
        say("gitops-agent sync again: every object unchanged, nothing written")
        second = subprocess.run([*AGENT, "sync", "--config", str(config)], check=False)
        say(f"gitops-agent run (status on http://127.0.0.1:{port})")
        agent = subprocess.Popen([*AGENT, "run", "--config", str(config)], stderr=subprocess.DEVNULL)
        status = wait_status(f"http://127.0.0.1:{port}/api/v1/status")
        for c in status["clusters"]:
            last = c["lastSync"]
            counts = ", ".join(f"{n} {a}" for a, n in last["counts"].items() if n)
            print(
                f"  {c['name']}: {c['syncStatus']}, {c['health']}, at {last['revision']['sha'][:12]} ({counts}) "
                f"in {last['durationSeconds']}s"
            )
        print(f"  full status: curl http://127.0.0.1:{port}/api/v1/status")
        return 0 if first.returncode == 0 and second.returncode == 0 else 1
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(30)
        for c in clusters:
            c.stop()
        say("stopped the agent and the clusters")


def wait_status(url: str, timeout: float = 60.0) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                status = json.loads(resp.read())
            if all(c["lastSync"] for c in status["clusters"]):
                return status  # type: ignore[no-any-return]
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"no status from {url} within {timeout:.0f}s")


if __name__ == "__main__":
    sys.exit(main())

"""``make demo``: the agent's main job on local parts.

Starts two test clusters (``build/testcluster``) labelled ``env: dev`` and ``env: prod``, makes two local git
repositories (the sources): ``platform`` with the delegate bundle of manifests/delegate (its token substituted
from the environment, never in git) and ``team`` with the guestbook app of examples/fleet. Two apps are placed by
label: the delegate on every cluster, the guestbook (its namespace created by ``createNamespace``, a PreSync
migration Job, its Deployment one wave after its ConfigMap and Service) on the clusters labelled ``tier: apps``,
and the ``hello`` chart (examples/fleet/charts, rendered with ``helm template``) on both with per-cluster values
(``values/hello-${CLUSTER_NAME}.yaml``: three replicas on prod).
It syncs once with ``gitops-agent sync``, again to show that nothing is
rewritten, then runs ``gitops-agent run``, prints the apps x clusters matrix, edits an object out of band and shows
the agent heal it. It then keeps the agent running with the dashboard URL printed until Ctrl-C (``DEMO_EXIT=1``
ends at once). Everything lives under .demo/ and every process it started is stopped at the end.
"""

from __future__ import annotations

import contextlib
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


def make_repo(name: str, parts: dict[str, pathlib.Path]) -> pathlib.Path:
    """A git repository ``.demo/<name>`` holding each of ``parts`` (folder name -> directory to copy)."""
    repo = WORK / name
    for folder, src in parts.items():
        shutil.copytree(src, repo / folder)
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
        platform = make_repo("platform", {"delegate": REPO / "manifests" / "delegate"})
        fleet_dir = REPO / "examples" / "fleet"
        team = make_repo(
            "team",
            {
                "guestbook": fleet_dir / "apps" / "guestbook",
                "charts": fleet_dir / "charts",
                "values": fleet_dir / "values",
            },
        )
        port = free_port()
        config = WORK / "config.yaml"
        config.write_text(
            "sources:\n"
            f"  platform: {{url: {platform}, ref: main, interval: 30s, cacheDir: {WORK / 'cache-platform'}}}\n"
            f"  team: {{url: {team}, ref: main, interval: 30s, cacheDir: {WORK / 'cache-team'}}}\n"
            "clusters:\n"
            f"  - name: dev\n    kubeconfig: {clusters[0].kubeconfig}\n    labels: {{env: dev, tier: apps}}\n"
            f"  - name: prod\n    kubeconfig: {clusters[1].kubeconfig}\n    labels: {{env: prod}}\n"
            "apps:\n"
            "  - name: delegate\n    source: platform\n    path: delegate\n    substitute: true\n"
            "  - name: guestbook\n    source: team\n    path: guestbook\n    namespace: guestbook\n"
            "    createNamespace: true\n    clusters: {matchLabels: {tier: apps}}\n"
            "  - name: hello\n    source: team\n    path: charts/hello\n    namespace: hello\n"
            "    createNamespace: true\n    helm: {valuesFiles: ['values/hello-${CLUSTER_NAME}.yaml']}\n"
            "variables:\n  DELEGATE_TOKEN: {env: DELEGATE_TOKEN}\n"
            f"sync:\n  interval: 5m\n  prune: true\n  selfHeal: true\nserver:\n  listen: 127.0.0.1:{port}\n"
        )
        say(f"gitops-agent sync --config {config.relative_to(REPO)}")
        first = subprocess.run([*AGENT, "sync", "--config", str(config)], check=False)
        say("gitops-agent sync again: every object unchanged, nothing written, no hook run")
        second = subprocess.run([*AGENT, "sync", "--config", str(config)], check=False)
        base = f"http://127.0.0.1:{port}"
        say(f"gitops-agent run (dashboard and status on {base}/)")
        agent = subprocess.Popen([*AGENT, "run", "--config", str(config)], stderr=subprocess.DEVNULL)
        wait_status(f"{base}/api/v1/status")
        subprocess.run([*AGENT, "status", "--url", base], check=False)
        say("an out-of-band edit on dev: kubectl-style patch of ConfigMap guestbook/guestbook")
        edit_out_of_band(clusters[0].kubeconfig)
        healed = wait_event(f"{base}/api/v1/events?cluster=dev", "DriftCorrected")
        print(f"  {healed['reason']}: {healed['message']}")
        ok = first.returncode == 0 and second.returncode == 0
        if os.environ.get("DEMO_EXIT") == "1":
            return 0 if ok else 1
        say(f"the agent keeps running: open {base}/ (apps x clusters, objects, events); Ctrl-C ends the demo")
        with contextlib.suppress(KeyboardInterrupt):
            agent.wait()
        return 0 if ok else 1
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(30)
        for c in clusters:
            c.stop()
        say("stopped the agent and the clusters")


def edit_out_of_band(kubeconfig: pathlib.Path) -> None:
    """Change a field git owns, as someone with kubectl would."""
    import kubernetes

    api = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(str(kubeconfig)))
    api.patch_namespaced_config_map("guestbook", "guestbook", {"data": {"GREETING": "edited by hand"}})
    print("  GREETING: hello from git -> edited by hand")


def wait_event(url: str, reason: str, timeout: float = 30.0) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url, timeout=2) as resp:
            found = [e for e in json.loads(resp.read())["events"] if e["reason"] == reason]
        if found:
            return found[0]  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise SystemExit(f"no {reason} event within {timeout:.0f}s")


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

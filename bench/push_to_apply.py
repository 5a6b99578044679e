"""Push-to-applied latency: from `git commit` in a working clone (then `git push` to the local bare repo the
agent tracks, then the signed GitHub webhook) until the new object is visible in every cluster, read by an
independent client polling each cluster every 10 ms. Compared, in the same run and on the same clusters, with
polling alone at the default ``source.interval`` (1 minute, 10% jitter), each polled push made at a random
phase of the interval.

Usage: .venv/bin/python bench/push_to_apply.py [--clusters 3] [--pushes 20] [--polled 5]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator

import yaml
from common import REPO, TestCluster, percentile, wait_ready

sys.path.insert(0, str(REPO))

from kubernetes import config as kconfig
from kubernetes import dynamic
from kubernetes.dynamic import exceptions

SECRET = "bench-secret"


def git(cwd: pathlib.Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@example.com", *args], cwd=cwd, check=True)


@contextlib.contextmanager
def agent(tmp: pathlib.Path, bare: pathlib.Path, clusters: list[TestCluster], webhook: bool) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = {
        "instance": f"bench-{'hook' if webhook else 'poll'}",
        "source": {"url": str(bare), "cacheDir": str(tmp / f"cache-{webhook}")},
        "clusters": [{"name": c.name, "kubeconfig": str(c.kubeconfig), "paths": ["app"]} for c in clusters],
        "server": {"listen": f"127.0.0.1:{port}", "webhooks": {"github": {"env": "BENCH_SECRET"}}},
    }
    if webhook:
        cfg["source"]["interval"] = "1h"  # only the webhook may trigger
    path = tmp / f"agent-{webhook}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(path)],
        env={**os.environ, "BENCH_SECRET": SECRET},
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def measure(work: pathlib.Path, clients: list[object], base: str, label: str, n: int, webhook: bool) -> list[float]:
    out = []
    rng = random.Random(11)
    for i in range(n):
        name = f"{label}-{i}"
        if not webhook:  # push at a random phase of the poll interval, as real pushes do
            time.sleep(rng.uniform(0, 60))
        (work / "app" / f"{name}.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": "bench-push"},
                    "data": {"i": str(i)},
                }
            )
        )
        t0 = time.perf_counter()
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", name)
        git(work, "push", "-q", "origin", "main")
        if webhook:
            body = b'{"ref": "refs/heads/main"}'
            sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            req = urllib.request.Request(
                f"{base}/api/v1/webhooks/github",
                data=body,
                method="POST",
                headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": sig},
            )
            urllib.request.urlopen(req, timeout=10).close()
        pending = list(clients)
        while pending:
            still = []
            for c in pending:
                try:
                    c.get(name=name, namespace="bench-push")  # type: ignore[attr-defined]
                except exceptions.NotFoundError:
                    still.append(c)
            pending = still
            if pending:
                time.sleep(0.01)
            if time.perf_counter() - t0 > 180:
                raise SystemExit(f"{name} not applied everywhere within 180 s")
        out.append(time.perf_counter() - t0)
        print(f"{label} {i}: {out[-1]:.3f}s", file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clusters", type=int, default=3)
    ap.add_argument("--pushes", type=int, default=20)
    ap.add_argument("--polled", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = pathlib.Path(tmp_)
        clusters = [TestCluster.start(f"push{i}", tmp / f"c{i}") for i in range(args.clusters)]
        try:
            bare = tmp / "fleet.git"
            subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
            work = tmp / "work"
            (work / "app").mkdir(parents=True)
            (work / "app" / "ns.yaml").write_text(
                yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench-push"}})
            )
            git(work, "init", "-q", "-b", "main")
            git(work, "remote", "add", "origin", str(bare))
            git(work, "add", "-A")
            git(work, "commit", "-q", "-m", "ns")
            git(work, "push", "-q", "origin", "main")
            clients = [
                dynamic.DynamicClient(kconfig.new_client_from_config(str(c.kubeconfig))).resources.get(
                    api_version="v1", kind="ConfigMap"
                )
                for c in clusters
            ]
            with agent(tmp, bare, clusters, webhook=True) as base:
                time.sleep(2)
                hooked = measure(work, clients, base, "webhook", args.pushes, webhook=True)
            with agent(tmp, bare, clusters, webhook=False) as base:
                time.sleep(2)
                polled = measure(work, clients, base, "poll", args.polled, webhook=False)
        finally:
            for c in clusters:
                c.stop()
    print("| trigger | clusters | pushes | p50 (s) | p95 (s) | max (s) |")
    print("|---|---|---|---|---|---|")
    for label, xs in (("webhook", hooked), ("polling, source.interval 1m", polled)):
        print(
            f"| {label} | {args.clusters} | {len(xs)} | {percentile(xs, 0.5):.2f} | {percentile(xs, 0.95):.2f} | "
            f"{max(xs):.2f} |"
        )
    print(f"ratio webhook / polling p50: {percentile(hooked, 0.5) / percentile(polled, 0.5):.3f}")


if __name__ == "__main__":
    main()

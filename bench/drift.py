"""What watching for drift costs a running agent whose apps do not self-heal, and how soon a live edit shows.

Baseline: the same agent at ``--baseline`` (default 29e3c36, the commit before the drift monitor), run from a git
worktree of that commit, in the same run on the same machine. Each round starts every contender on a fresh test
cluster with one app of ``--objects`` ConfigMaps (``selfHeal`` off, ``sync.interval`` 1h):

- ``first sync``: from ``gitops-agent run`` starting to its status saying Synced (the agent's wall clock of that
  sync, from the status API, and the agent's CPU seconds from start, /proc);
- ``no-op resync``: one ``POST /api/v1/sync`` on the synced cluster (its duration, the agent's CPU seconds);
- ``peak RSS`` of the agent after both;
- this tree only: ``--edits`` live edits (a merge patch of one ConfigMap's data by another field manager), each
  timed from the patch's answer to ``GET /api/v1/apps`` saying OutOfSync (polled every 20 ms), then a resync.

Usage: .venv/bin/python bench/drift.py [--objects 2000] [--edits 20] [--rounds 2] [--baseline REV]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

import yaml
from common import REPO, TestCluster, make_repo, peak_rss, percentile, proc_cpu, wait_ready


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.load(resp)


def _post(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=30).close()


def _cluster(base: str) -> dict[str, Any]:
    return dict(_get(f"{base}/api/v1/status?objects=false")["clusters"][0])


def contender(tree: pathlib.Path, repo: pathlib.Path, tmp: pathlib.Path, tc: TestCluster, edits: int) -> dict[str, Any]:
    """One agent from ``tree`` on ``tc``: its figures (and, with ``edits``, the drift latencies in seconds)."""
    port = 19000 + os.getpid() % 500
    config = tmp / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "instance": "drift",
                "source": {"url": str(repo), "cacheDir": str(tmp / "cache"), "interval": "1h"},
                "clusters": [{"name": "c", "kubeconfig": str(tc.kubeconfig), "paths": ["app"]}],
                "sync": {"concurrency": 32, "interval": "1h"},
                "server": {"listen": f"127.0.0.1:{port}"},
            }
        )
    )
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
        cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=(tmp / "agent.log").open("wb"),
    )  # fmt: skip
    try:
        wait_ready(base, timeout=120)
        deadline = time.monotonic() + 600
        while (c := _cluster(base))["syncStatus"] != "Synced" and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.0)  # the watch events of the first sync delivered and checked
        found: dict[str, Any] = {"first": c["lastSync"]["durationSeconds"], "first_cpu": proc_cpu(agent.pid)}
        cpu0, t0 = proc_cpu(agent.pid), datetime.datetime.now(datetime.UTC).isoformat()
        _post(f"{base}/api/v1/sync")
        while not ((c := _cluster(base))["lastSync"]["started"] > t0 and c["syncStatus"] == "Synced"):
            time.sleep(0.1)
        found |= {"resync": c["lastSync"]["durationSeconds"], "resync_cpu": proc_cpu(agent.pid) - cpu0}
        found["rss"] = peak_rss(agent.pid)
        latencies = []
        if edits:
            from kubernetes import client
            from kubernetes import config as kconfig

            api = client.CoreV1Api(kconfig.new_client_from_config(str(tc.kubeconfig)))
            for i in range(edits):
                api.patch_namespaced_config_map(
                    f"cm-{i}", "bench", {"data": {"mode": f"edited-{i}"}}, field_manager="kubectl-edit"
                )
                t = time.monotonic()
                while _get(f"{base}/api/v1/apps")["apps"][0]["clusters"][0]["syncStatus"] != "OutOfSync":
                    time.sleep(0.02)
                latencies.append(time.monotonic() - t)
                t0 = datetime.datetime.now(datetime.UTC).isoformat()
                _post(f"{base}/api/v1/sync")  # back in line for the next edit
                while not ((c := _cluster(base))["lastSync"]["started"] > t0 and c["syncStatus"] == "Synced"):
                    time.sleep(0.05)
        found["latencies"] = latencies
        return found
    finally:
        agent.terminate()
        agent.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=2000)
    ap.add_argument("--edits", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--baseline", default="29e3c36")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = pathlib.Path(tmp_)
        baseline = tmp / "baseline"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(baseline), args.baseline],
                       check=True)  # fmt: skip
        try:
            repo = make_repo(tmp / "repo", "bench", args.objects, 0)
            rows: dict[str, list[dict[str, Any]]] = {"baseline": [], "this tree": []}
            for r in range(args.rounds):
                for name, tree in (("baseline", baseline), ("this tree", REPO)):
                    work = tmp / f"{name.replace(' ', '-')}-{r}"
                    work.mkdir()
                    tc = TestCluster.start("c", work / "cluster")
                    time.sleep(3.0)
                    try:
                        rows[name].append(contender(tree, repo, work, tc, args.edits if name == "this tree" else 0))
                    finally:
                        tc.stop()
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(baseline)], check=False)
            shutil.rmtree(baseline, ignore_errors=True)
    print(f"objects: {args.objects + 1}; rounds: {args.rounds} (medians); baseline: {args.baseline}")
    print("| agent | first sync (s) | agent CPU to Synced (s) | no-op resync (s) | resync CPU (s) | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|")
    med: dict[str, dict[str, float]] = {}
    keys = ("first", "first_cpu", "resync", "resync_cpu", "rss")
    for name, found in rows.items():
        med[name] = m = {k: percentile([f[k] for f in found], 0.5) for k in keys}
        cells = [f"{m['first']:.2f}", f"{m['first_cpu']:.2f}", f"{m['resync']:.3f}", f"{m['resync_cpu']:.2f}"]
        print(f"| {name} | " + " | ".join(cells) + f" | {m['rss']:.0f} |")
    b, t = med["baseline"], med["this tree"]
    ratios = {k: t[k] / b[k] if b[k] else float("nan") for k in keys}
    print(
        f"this tree / baseline: first sync {ratios['first']:.2f}x, CPU to Synced {ratios['first_cpu']:.2f}x, "
        f"no-op resync {ratios['resync']:.2f}x, resync CPU {ratios['resync_cpu']:.2f}x, peak RSS {ratios['rss']:.2f}x"
    )
    latencies = [x for f in rows["this tree"] for x in f["latencies"]]
    if latencies:
        p50, p95 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.95) * 1000
        print(
            f"live edit to OutOfSync in the status API ({len(latencies)} edits): p50 {p50:.0f} ms, "
            f"p95 {p95:.0f} ms, max {max(latencies) * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()

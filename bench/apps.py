"""What the app model costs: 100 apps x 5 clusters against the same objects as one path (issue 15).

Five test clusters per setup (started in parallel, audit logs off; each setup gets fresh ones, so neither LISTs
through the other's objects). Two setups of the same 2,000 ConfigMaps per cluster, run one after the other in the
same process, each by a real in-process ``Fleet`` (one worker per cluster, live caches
and watches, as ``gitops-agent run``):

- ``one path``: each cluster's ``paths: [all]``, one app of 2,000 objects (the single-path setup of before apps);
- ``100 apps``: ``apps:`` of 100 apps, each a directory of 20 ConfigMaps, placed on every cluster by a label
  selector.

For each: the first sync (the slowest cluster's sync, all five running at once), a no-op resync (median of
ROUNDS, the slowest cluster each time, with the requests it sent), and the status poll
(``Fleet.status_json(objects=False)``, the fleet summary the dashboard polls; median of 20 calls, its size).

Usage: .venv/bin/python bench/apps.py [--clusters 5] [--apps 100] [--objects 20] [--rounds 5]
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import yaml
from common import REPO, TestCluster, ensure_namespace

sys.path.insert(0, str(REPO))

from agent import config
from agent.runtime import fleet


def make_repo(path: Path, apps: int, objects: int) -> None:
    """``all/`` (every object, one file per app's share) and ``apps/a000..`` (``objects`` ConfigMaps each)."""
    for i in range(apps):
        docs = [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"a{i:03d}-cm{j:02d}"},
                "data": {"value": f"{i}-{j}", "mode": "git"},
            }
            for j in range(objects)
        ]
        for folder in (path / "all", path / "apps" / f"a{i:03d}"):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"a{i:03d}.yaml").write_text(yaml.safe_dump_all(docs))
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.name=b", "-c", "user.email=b@example.com", "commit", "-q", "-m", "bench"],
    ):
        subprocess.run(["git", *args], cwd=path, check=True)


def run_setup(name: str, doc: dict[str, Any], tmp: Path, rounds: int) -> dict[str, Any]:
    path = tmp / f"{name.replace(' ', '-')}.yaml"
    path.write_text(yaml.safe_dump(doc))
    cfg = config.load_config(path)
    agent = fleet.Fleet(cfg)
    names = [c.name for c in cfg.clusters]
    t0 = time.monotonic()
    agent.start()
    try:
        firsts = wait_synced(agent, names, {}, timeout=600)
        first_wall = time.monotonic() - t0
        for r in firsts.values():
            assert r.ok, (r.cluster, r.error)
        resyncs, sent = [], collections.Counter[str]()
        previous = firsts
        for _ in range(rounds):
            before = requests(agent, names)
            agent.trigger_now(reason="bench")
            previous = wait_synced(agent, names, previous, timeout=300)
            assert all(r.counts["unchanged"] == sum(r.counts.values()) for r in previous.values()), "not a no-op"
            resyncs.append(max(r.duration for r in previous.values()))
            sent += requests(agent, names) - before
        polls, size = [], 0
        for _ in range(20):
            p0 = time.perf_counter()
            body = json.dumps(agent.status_json(objects=False), separators=(",", ":"))
            polls.append(time.perf_counter() - p0)
            size = len(body)
        return {
            "setup": name,
            "first": max(r.duration for r in firsts.values()),
            "first_wall": first_wall,
            "resync": statistics.median(resyncs),
            "requests": {k: v / rounds / len(names) for k, v in sent.items()},
            "poll": statistics.median(polls),
            "size": size,
        }
    finally:
        agent.shutdown()


def requests(agent: fleet.Fleet, names: list[str]) -> collections.Counter[str]:
    total: collections.Counter[str] = collections.Counter()
    for n in names:
        w = agent.worker_of(n)
        if w is not None and w.runner is not None and w.runner.kube is not None:
            total += w.runner.kube.requests
    return total


def wait_synced(agent: fleet.Fleet, names: list[str], previous: dict[str, Any], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = {n: agent.state.last(n) for n in names}
        if all(r is not None and (n not in previous or r.started != previous[n].started) for n, r in found.items()):
            return found
        time.sleep(0.02)
    raise SystemExit("clusters did not sync in time")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clusters", type=int, default=5)
    parser.add_argument("--apps", type=int, default=100)
    parser.add_argument("--objects", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-apps-") as t:
        tmp = Path(t)
        make_repo(tmp / "repo", args.apps, args.objects)
        base = {
            "source": {"url": str(tmp / "repo"), "ref": "main", "interval": "1h", "cacheDir": str(tmp / "cache")},
            "sync": {"interval": "1h", "prune": True},
            "server": {"listen": "127.0.0.1:0"},
        }

        def single(clusters: list[TestCluster]) -> dict[str, Any]:
            return {
                **base,
                "instance": "one-path",
                "clusters": [
                    {"name": f"b{i}", "kubeconfig": str(tc.kubeconfig), "namespace": "bench", "paths": ["all"]}
                    for i, tc in enumerate(clusters)
                ],
            }

        def many(clusters: list[TestCluster]) -> dict[str, Any]:
            return {
                **base,
                "instance": "apps",
                "clusters": [
                    {
                        "name": f"b{i}",
                        "kubeconfig": str(tc.kubeconfig),
                        "namespace": "bench",
                        "labels": {"bench": "yes"},
                    }
                    for i, tc in enumerate(clusters)
                ],
                "apps": [
                    {"name": f"a{i:03d}", "path": f"apps/a{i:03d}", "clusters": {"matchLabels": {"bench": "yes"}}}
                    for i in range(args.apps)
                ],
            }

        rows = []
        for name, make in (("one path", single), (f"{args.apps} apps", many)):
            # Each setup on fresh clusters: the other setup's objects in the same API servers would slow its LISTs.
            with futures.ThreadPoolExecutor(args.clusters) as pool:
                clusters = list(
                    pool.map(
                        lambda i, n=name: TestCluster.start(
                            f"b{i}", tmp / n.replace(" ", "-") / f"c{i}", ["--audit=false"]
                        ),
                        range(args.clusters),
                    )
                )
            try:
                for tc in clusters:
                    ensure_namespace(tc, "bench")
                rows.append(run_setup(name, make(clusters), tmp, args.rounds))
            finally:
                for tc in clusters:
                    tc.stop()
    n = args.apps * args.objects
    print(f"{args.clusters} clusters x {n} objects; no-op resync median of {args.rounds}; status poll median of 20\n")
    print(
        "| setup | first sync (s) | x one path | no-op resync (s) | x one path | requests per cluster resync | "
        "status poll (ms) | x one path | status bytes |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    ref = rows[0]
    for r in rows:
        sent = ", ".join(f"{v:g} {k}" for k, v in sorted(r["requests"].items()))
        print(
            f"| {r['setup']} | {r['first']:.2f} | {r['first'] / ref['first']:.2f} | {r['resync']:.3f} | "
            f"{r['resync'] / ref['resync']:.2f} | {sent} | {r['poll'] * 1000:.1f} | {r['poll'] / ref['poll']:.2f} | "
            f"{r['size']} |"
        )


if __name__ == "__main__":
    main()

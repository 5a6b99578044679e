"""What the app model costs: 100 apps x 5 clusters against the same objects as one path (issue 15).

Two setups of the same 2,000 ConfigMaps per cluster, each run by a real in-process ``Fleet`` (one worker per
cluster, live caches and watches, as ``gitops-agent run``) on five test clusters of its own (ten started at
once, audit logs off; neither setup LISTs through the other's objects; the clusters of each have names of their
own, as the status caches are per cluster name):

- ``one path``: each cluster's ``paths: [all]``, one app of 2,000 objects (the single-path setup of before apps);
- ``100 apps``: ``apps:`` of 100 apps, each a directory of 20 ConfigMaps, placed on every cluster by a label
  selector.

Measured: the first sync of each, FIRSTS times (the slowest cluster's sync, all five at once; one setup after the
other, the order swapped every time, each fleet shut down after it, so neither first sync shares the process with
the other fleet; each time into a namespace and an instance of its own, so every object is created again; median),
then, both fleets started again on the first namespace, ROUNDS no-op resyncs of each, interleaved (one setup, then
the other, the order swapped every round; each the slowest cluster's sync, with the requests it sent), then 20
status polls of each, interleaved (``Fleet.status_json(objects=False)``, the fleet summary the dashboard polls,
JSON-encoded; its size). Medians.
Interleaving gives both setups the same machine: on a 2-core machine running ten API servers the medians of two
setups run minutes apart differed by up to 40% run to run.

Usage: .venv/bin/python bench/apps.py [--clusters 5] [--apps 100] [--objects 20] [--rounds 15] [--firsts 3]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import gc
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


@dataclasses.dataclass
class Setup:
    """One setup's fleet and what was measured of it."""

    name: str
    agent: fleet.Fleet
    names: list[str]
    last: dict[str, Any]
    first: float = 0.0
    resyncs: list[float] = dataclasses.field(default_factory=list)
    sent: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    polls: list[float] = dataclasses.field(default_factory=list)
    size: int = 0


def start(name: str, doc: dict[str, Any], tmp: Path) -> Setup:
    """Start the setup's fleet and wait for its first sync."""
    path = tmp / f"{name.replace(' ', '-')}.yaml"
    path.write_text(yaml.safe_dump(doc))
    cfg = config.load_config(path)
    agent = fleet.Fleet(cfg)
    names = [c.name for c in cfg.clusters]
    agent.start()
    firsts = wait_synced(agent, names, {}, timeout=600)
    for r in firsts.values():
        assert r.ok, (r.cluster, r.error)
    return Setup(name, agent, names, firsts, first=max(r.duration for r in firsts.values()))


def resync(s: Setup) -> None:
    """One no-op resync of every cluster of ``s`` at once."""
    before = requests(s.agent, s.names)
    s.agent.trigger_now(reason="bench")
    s.last = wait_synced(s.agent, s.names, s.last, timeout=300)
    assert all(r.counts["unchanged"] == sum(r.counts.values()) for r in s.last.values()), "not a no-op"
    s.resyncs.append(max(r.duration for r in s.last.values()))
    s.sent += requests(s.agent, s.names) - before


def poll(s: Setup) -> None:
    """One status poll of ``s``."""
    p0 = time.perf_counter()
    body = json.dumps(s.agent.status_json(objects=False), separators=(",", ":"))
    s.polls.append(time.perf_counter() - p0)
    s.size = len(body)


def requests(agent: fleet.Fleet, names: list[str]) -> collections.Counter[str]:
    total: collections.Counter[str] = collections.Counter()
    for n in names:
        w = agent.worker_of(n)
        if w is not None:
            total += collections.Counter(w.view().requests)
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
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--firsts", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-apps-") as t:
        tmp = Path(t)
        make_repo(tmp / "repo", args.apps, args.objects)
        base = {
            "source": {"url": str(tmp / "repo"), "ref": "main", "interval": "1h", "cacheDir": str(tmp / "cache")},
            "sync": {"interval": "1h", "prune": True},
            "server": {"listen": "127.0.0.1:0"},
        }

        def single(clusters: list[TestCluster], n: int) -> dict[str, Any]:
            return {
                **base,
                "instance": f"one-path-{n}",
                "clusters": [
                    {"name": f"one-{i}", "kubeconfig": str(tc.kubeconfig), "namespace": f"bench-{n}", "paths": ["all"]}
                    for i, tc in enumerate(clusters)
                ],
            }

        def many(clusters: list[TestCluster], n: int) -> dict[str, Any]:
            return {
                **base,
                "instance": f"apps-{n}",
                "clusters": [
                    {
                        "name": f"apps-{i}",
                        "kubeconfig": str(tc.kubeconfig),
                        "namespace": f"bench-{n}",
                        "labels": {"bench": "yes"},
                    }
                    for i, tc in enumerate(clusters)
                ],
                "apps": [
                    {"name": f"a{i:03d}", "path": f"apps/a{i:03d}", "clusters": {"matchLabels": {"bench": "yes"}}}
                    for i in range(args.apps)
                ],
            }

        setups = (("one path", single), (f"{args.apps} apps", many))
        with futures.ThreadPoolExecutor(2 * args.clusters) as pool:
            started = list(
                pool.map(
                    lambda ij: TestCluster.start(
                        f"b{ij[1]}", tmp / setups[ij[0]][0].replace(" ", "-") / f"c{ij[1]}", ["--audit=false"]
                    ),
                    [(i, j) for i in range(2) for j in range(args.clusters)],
                )
            )
        runs: list[Setup] = []
        try:
            for tc in started:
                for n in range(args.firsts):
                    ensure_namespace(tc, f"bench-{n}")
            part = [started[i * args.clusters : (i + 1) * args.clusters] for i in range(2)]
            firsts: list[list[float]] = [[], []]
            first_sent: list[collections.Counter[str]] = [collections.Counter(), collections.Counter()]
            for n in range(args.firsts):  # each first sync alone in the process, into a namespace of its own
                for i in (0, 1) if n % 2 == 0 else (1, 0):
                    first = start(setups[i][0], setups[i][1](part[i], n), tmp)
                    if n == 0:  # the agent's start (discovery, LIST+WATCH) and its first sync
                        first_sent[i] = requests(first.agent, first.names)
                    first.agent.shutdown()
                    firsts[i].append(first.first)
                    gc.collect()
            for i, (name, make) in enumerate(setups):
                runs.append(start(name, make(part[i], 0), tmp))  # started again: everything is in place
                runs[-1].first = statistics.median(firsts[i])
            for r in range(args.rounds):
                for s in runs if r % 2 == 0 else runs[::-1]:
                    resync(s)
            for r in range(20):
                for s in runs if r % 2 == 0 else runs[::-1]:
                    poll(s)
        finally:
            for s in runs:
                s.agent.shutdown()
            for tc in started:
                tc.stop()
        rows = [
            {
                "setup": s.name,
                "first": s.first,
                "resync": statistics.median(s.resyncs),
                "requests": {k: v / args.rounds / len(s.names) for k, v in s.sent.items()},
                "poll": statistics.median(s.polls),
                "size": s.size,
            }
            for s in runs
        ]
    n = args.apps * args.objects
    print(
        f"{args.clusters} clusters x {n} objects; first sync median of {args.firsts}, no-op resync median of "
        f"{args.rounds}, status poll median of 20, the two setups interleaved"
    )
    for (name, _), times in zip(setups, firsts, strict=True):
        print(f"first syncs of {name} (s): {', '.join(f'{t:.2f}' for t in times)}")
    for (name, _), sent in zip(setups, first_sent, strict=True):
        per = ", ".join(f"{v / args.clusters:g} {k}" for k, v in sorted(sent.items()))
        print(f"requests per cluster, start and first sync of {name}: {per}")
    print()
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

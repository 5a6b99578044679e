"""The cost of a no-op resync, by drift method, on the same cluster in the same run:

- ``cache``: the agent's default. Live objects come from the watch cache, and an object is unchanged when its
  desired hash and its owned-fields fingerprint match the inventory (no request per object);
- ``dry-run``: the exact fallback, used alone. One GET and one server-side apply dry run per object.

Both report every object unchanged and write nothing; the table shows wall time and requests sent.

Usage: .venv/bin/python bench/resync.py [--configmaps 1600] [--deployments 400] [--rounds 3]
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import statistics
import sys
import tempfile
import time

from common import REPO, TestCluster, make_repo, write_config

sys.path.insert(0, str(REPO))

from agent import apps, config
from agent.sources import git, manifests
from agent.sync import cluster as runner
from agent.sync import options as runner_options
from reconcilers import engine


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configmaps", type=int, default=1600)
    ap.add_argument("--deployments", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = pathlib.Path(tmp_)
        tc = TestCluster.start("resync", tmp / "cluster")
        try:
            repo = make_repo(tmp / "repo", "bench-resync", args.configmaps, args.deployments)
            cfg = config.load_config(write_config(tmp / "agent.yaml", repo, [tc]))
            source = git.GitSource(cfg.default_source)
            revision = source.fetch()
            checkout = source.tree(revision).__enter__()  # held for the benchmark's life
            r = runner.ClusterSync(cfg, cfg.clusters[0], watch=True)
            t0 = time.perf_counter()
            first = r.reconcile(revision, checkout)
            first_s = time.perf_counter() - t0
            assert first.ok, first.error
            n = len(first.entries)
            time.sleep(3)
            assert r.kube is not None
            rows = []
            for method in ("cache", "dry-run"):
                walls, sent = [], collections.Counter[str]()
                for _ in range(args.rounds):
                    before = collections.Counter(r.kube.requests)
                    t0 = time.perf_counter()
                    if method == "cache":
                        result = r.reconcile(revision, checkout)
                    else:
                        desired = manifests.load_paths(checkout, cfg.clusters[0].paths)
                        unit = apps.units(cfg, cfg.clusters[0])[0]
                        options = runner_options.options_for(cfg, cfg.clusters[0], unit, dry_run=False)
                        result = engine.reconcile(r.kube, desired, options, cluster="resync", revision=revision)
                    walls.append(time.perf_counter() - t0)
                    sent += collections.Counter(r.kube.requests) - before
                    assert result.counts["unchanged"] == n, result.counts
                writes = sent["apply"] + sent["delete"]
                rows.append((method, statistics.median(walls), sent, writes))
            r.close()
        finally:
            tc.stop()
    print(f"objects: {n}; first sync {first_s:.2f} s")
    print(f"| method | no-op resync, median of {args.rounds} (s) | GET per resync | dry runs per resync | writes |")
    print("|---|---|---|---|---|")
    for method, wall, sent, writes in rows:
        print(
            f"| {method} | {wall:.3f} | {sent['get'] / args.rounds:.0f} | {sent['apply-dry-run'] / args.rounds:.0f} "
            f"| {writes} |"
        )
    print(f"ratio cache / dry-run wall time: {rows[0][1] / rows[1][1]:.3f}")


if __name__ == "__main__":
    main()

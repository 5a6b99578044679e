"""Self-heal latency: the time from an out-of-band write to a managed field until the object holds git's value
again, as seen by an independent client polling every 5 ms.

One test cluster, an agent (``ClusterSync`` with ``sync.selfHeal: true``) managing N objects; EDITS edits of
random ConfigMaps (merge patch of a field the agent owns, field manager "intruder"), one at a time, spaced
0.3 s apart (fewer than FIGHT_LIMIT per object per minute, so no fight is declared).

Usage: .venv/bin/python bench/selfheal.py [--configmaps 400] [--deployments 100] [--edits 40]
"""

from __future__ import annotations

import argparse
import pathlib
import random
import statistics
import sys
import tempfile
import time

from common import REPO, TestCluster, make_repo, percentile, write_config

sys.path.insert(0, str(REPO))

from kubernetes import config as kconfig
from kubernetes import dynamic

from agent import config
from agent.sources import git
from agent.sync import cluster as runner


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configmaps", type=int, default=400)
    ap.add_argument("--deployments", type=int, default=100)
    ap.add_argument("--edits", type=int, default=40)
    args = ap.parse_args()
    ns = "bench-heal"
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = pathlib.Path(tmp_)
        tc = TestCluster.start("heal", tmp / "cluster")
        try:
            repo = make_repo(tmp / "repo", ns, args.configmaps, args.deployments)
            cfg = config.load_config(write_config(tmp / "agent.yaml", repo, [tc], selfHeal=True))
            source = git.GitSource(cfg.default_source)
            revision = source.fetch()
            r = runner.ClusterSync(cfg, cfg.clusters[0], watch=True)
            result = r.reconcile(revision, source.tree(revision).__enter__())  # the tree is held for the run
            assert result.ok, result.error
            managed = len(result.entries)
            time.sleep(2)
            api = dynamic.DynamicClient(kconfig.new_client_from_config(str(tc.kubeconfig)))
            cms = api.resources.get(api_version="v1", kind="ConfigMap")
            latencies = []
            rng = random.Random(7)
            for _ in range(args.edits):
                name = f"cm-{rng.randrange(args.configmaps)}"
                t0 = time.perf_counter()
                cms.patch(
                    name=name,
                    namespace=ns,
                    body={"data": {"mode": "tampered"}},
                    content_type="application/merge-patch+json",
                    field_manager="intruder",
                )
                while cms.get(name=name, namespace=ns).data["mode"] != "git":
                    time.sleep(0.005)
                    if time.perf_counter() - t0 > 30:
                        raise SystemExit(f"{name} was not healed within 30 s")
                latencies.append(time.perf_counter() - t0)
                time.sleep(0.3)
            healed = r.status()["healed"]
            r.close()
        finally:
            tc.stop()
    ms = [x * 1000 for x in latencies]
    print("| managed objects | edits | healed | p50 (ms) | p95 (ms) | max (ms) | mean (ms) |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {managed} | {len(ms)} | {healed} | {percentile(ms, 0.5):.0f} | {percentile(ms, 0.95):.0f} | "
        f"{max(ms):.0f} | {statistics.mean(ms):.0f} |"
    )


if __name__ == "__main__":
    main()

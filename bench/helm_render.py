"""Helm charts across a fleet: the public corpus's ingress-nginx chart to 5 clusters (issue 16).

Five test clusters (started in parallel, audit logs off), the chart read from ../shared as published, the same
values everywhere (``controller.service.type: ClusterIP``, release ``ingress`` in namespace ``ingress``):

- ``agent``: one ``ClusterSync`` per cluster with its live cache (``watch=True``, as ``gitops-agent run``), all five
  at once, for the first sync (render, PreSync hooks run and waited on, apply, PostSync hooks after the controller
  is Healthy) and then no-op resyncs (median of ROUNDS). ``helm template`` runs are counted (``helm.renders()``):
  the clusters share one render, a resync renders nothing;
- ``helm template | kubectl apply --server-side`` per cluster, all five at once, the same number of times (its
  "resync" renders and applies again; its hooks are applied as plain objects, never run or waited on); the real
  kubectl of the same release (``make kubectl``).

Usage: .venv/bin/python bench/helm_render.py [--clusters 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
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
from agent.sources import git
from agent.sources.render import helm
from agent.sync import cluster as runner

CHART = REPO.parent / "shared" / "corpora" / "public" / "kubernetes-ingress-nginx" / "charts" / "ingress-nginx"
KUBECTL = REPO / "build" / "kubectl"
HELM = REPO / ".venv" / "bin" / "helm"
VALUES = {"controller": {"service": {"type": "ClusterIP"}}}


def make_repo(path: Path) -> None:
    subprocess.run(["cp", "-r", str(CHART), str(path / "ingress-nginx")], check=True)
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.name=b", "-c", "user.email=b@example.com", "commit", "-q", "-m", "bench"],
    ):
        subprocess.run(["git", *args], cwd=path, check=True)


def pipeline(tc: TestCluster, release: str, values: Path, kube_version: str) -> float:
    """``helm template | kubectl apply --server-side`` into ``tc``; its wall time."""
    t0 = time.perf_counter()
    rendered = subprocess.run(
        [str(HELM), "template", release, str(CHART), "--namespace", "ingress", "--include-crds",
         "--values", str(values), "--kube-version", kube_version],
        capture_output=True, check=True,
    )  # fmt: skip
    subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(tc.kubeconfig), "apply", "--server-side", "--force-conflicts",
         "--namespace", "ingress", "-f", "-"],
        input=rendered.stdout, capture_output=True, check=True,
    )  # fmt: skip
    return time.perf_counter() - t0


def agent_run(tmp: Path, release: str, values: dict[str, Any], cs: list[TestCluster], rounds: int) -> dict[str, Any]:
    """First sync and no-op resyncs of the chart as app ``release`` on ``cs``, five at once."""
    doc = {
        "instance": f"bench-{release}",
        "source": {"url": str(tmp / "repo"), "ref": "main", "interval": "1h", "cacheDir": str(tmp / "cache")},
        "clusters": [{"name": tc.name, "kubeconfig": str(tc.kubeconfig), "namespace": "ingress"} for tc in cs],
        "apps": [{"name": release, "path": "ingress-nginx", "helm": {"values": values}}],
        "sync": {"interval": "1h", "waveTimeout": "120s"},
    }
    (tmp / f"{release}.yaml").write_text(yaml.safe_dump(doc))
    cfg = config.load_config(tmp / f"{release}.yaml")
    source = git.GitSource(cfg.default_source)
    revision = source.fetch()
    with source.tree(revision) as checkout:
        runners = [runner.ClusterSync(cfg, c, watch=True) for c in cfg.clusters]
        revisions, trees = {"default": revision}, {"default": checkout}

        def sync_all() -> tuple[float, int, int]:
            r0, t0 = helm.renders(), time.perf_counter()
            with futures.ThreadPoolExecutor(len(runners)) as pool:
                results = list(pool.map(lambda r: r.reconcile(revisions, trees), runners))
            for res in results:
                assert res.ok, (res.cluster, res.error)
            return time.perf_counter() - t0, helm.renders() - r0, len(results[0].entries)

        first, first_renders, objects = sync_all()
        time.sleep(2)
        resyncs = [sync_all() for _ in range(rounds)]
        for r in runners:
            r.close()
    return {
        "first": first,
        "first_renders": first_renders,
        "objects": objects,
        "resync": statistics.median(w for w, _, _ in resyncs),
        "resync_renders": max(n for _, n, _ in resyncs),
    }


def baseline_run(tmp: Path, release: str, values: dict[str, Any], cs: list[TestCluster], rounds: int) -> list[float]:
    """The pipeline on every cluster at once, ``rounds + 1`` times: the wall time of each."""
    file = tmp / f"{release}-values.yaml"
    file.write_text(yaml.safe_dump(values))
    walls = []
    for _ in range(rounds + 1):
        t0 = time.perf_counter()
        with futures.ThreadPoolExecutor(len(cs)) as pool:
            list(pool.map(lambda tc: pipeline(tc, release, file, "1.34.4"), cs))
        walls.append(time.perf_counter() - t0)
    return walls


VARIANTS = {
    "ingress": ("chart defaults (admission webhook hooks: RBAC and a Job in PreSync and in PostSync)", VALUES),
    "nohooks": ("admissionWebhooks.enabled: false (no hooks)",
                {**VALUES, "controller": {**VALUES["controller"], "admissionWebhooks": {"enabled": False}}}),
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clusters", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not KUBECTL.is_file():
        raise SystemExit("build/kubectl is missing: make kubectl")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-helm-") as t:
        tmp = Path(t)
        (tmp / "repo").mkdir()
        make_repo(tmp / "repo")
        with futures.ThreadPoolExecutor(args.clusters * 2) as pool:
            agent_cs = list(pool.map(lambda i: TestCluster.start(f"a{i}", tmp / f"a{i}", ["--audit=false"]),
                                     range(args.clusters)))  # fmt: skip
            base_cs = list(pool.map(lambda i: TestCluster.start(f"k{i}", tmp / f"k{i}", ["--audit=false"]),
                                    range(args.clusters)))  # fmt: skip
        try:
            for tc in (*agent_cs, *base_cs):
                ensure_namespace(tc, "ingress")
            for release, (label, values) in VARIANTS.items():
                agent = agent_run(tmp, release, values, agent_cs, args.rounds)
                walls = baseline_run(tmp, release, values, base_cs, args.rounds)
                rows.append((label, agent, walls[0], statistics.median(walls[1:])))
        finally:
            for tc in (*agent_cs, *base_cs):
                tc.stop()
    print(f"ingress-nginx to {args.clusters} clusters at once; resyncs: median of {args.rounds}\n")
    print("| values | contender | synced objects | first sync (s) | helm runs | no-op resync (s) | helm runs | "
          "x baseline (first / resync) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for label, a, base_first, base_again in rows:
        print(f"| {label} | agent | {a['objects']} | {a['first']:.2f} | {a['first_renders']} | {a['resync']:.3f} | "
              f"{a['resync_renders']} | {a['first'] / base_first:.2f} / {a['resync'] / base_again:.3f} |")  # fmt: skip
        print(f"| {label} | helm template \\| kubectl apply --server-side | | {base_first:.2f} | {args.clusters} | "
              f"{base_again:.3f} | {args.clusters} | 1 / 1 |")  # fmt: skip


if __name__ == "__main__":
    main()

"""What generating apps costs: an app set making 1,000 apps from 1,000 directories against the same 1,000 apps
listed by hand (issue 31).

Flux's benchmark shape: 1,000 directories ``apps/app-0000..``, each with 4 objects (a Deployment scaled to zero, a
ServiceAccount, a Service, an Ingress), in one namespace. Two configs of one git repository:

- ``listed``: ``apps:`` with the 1,000 apps written out (name, path, namespace);
- ``generated``: one ``appSets`` entry, a git directories generator over ``apps/*`` and a Go template making the
  same names, paths and namespace.

Each round runs ``gitops-agent sync --json`` (one process: fetch, generate, sync every app) of each config on a
fresh test cluster of its own, one after the other, the order swapped every round; wall time, CPU of the process
(children included) and whether every app came out synced. Medians over the rounds, and the ratio generated /
listed of each round. Also timed in-process: ``expand.generate`` of the app set over the fetched tree (median of 5).

Usage: .venv/bin/python bench/appsets.py [--apps 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from common import REPO, TestCluster, ensure_namespace

sys.path.insert(0, str(REPO))

from agent import config
from agent.appsets import expand

NAMESPACE = "bench"


def objects(name: str) -> list[dict[str, Any]]:
    """Flux's benchmark app: a Deployment scaled to zero, a ServiceAccount, a Service, an Ingress."""
    labels = {"app": name}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"serviceAccountName": name, "containers": [{"name": "app", "image": "nginx:1.27"}]},
                },
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": name},
            "spec": {
                "rules": [
                    {
                        "host": f"{name}.example.com",
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": name, "port": {"number": 80}}},
                                }
                            ]
                        },
                    }
                ]
            },
        },
    ]


def make_repo(path: Path, apps: int) -> None:
    for i in range(apps):
        folder = path / "apps" / f"app-{i:04d}"
        folder.mkdir(parents=True)
        (folder / "app.yaml").write_text(yaml.safe_dump_all(objects(f"app-{i:04d}")))
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.name=b", "-c", "user.email=b@example.com", "commit", "-q", "-m", "bench"],
    ):
        subprocess.run(["git", *args], cwd=path, check=True)


def write_config(path: Path, repo: Path, cache: Path, tc: TestCluster, apps: int, generated: bool) -> Path:
    cfg: dict[str, Any] = {
        "instance": "bench",
        "source": {"url": str(repo), "ref": "main", "cacheDir": str(cache)},
        "clusters": [{"name": "c", "kubeconfig": str(tc.kubeconfig)}],
        "sync": {"concurrency": 32},
    }
    if generated:
        cfg["appSets"] = [
            {
                "name": "apps",
                "goTemplate": True,
                "goTemplateOptions": ["missingkey=error"],
                "generators": [{"git": {"directories": [{"path": "apps/*"}]}}],
                "template": {"name": "{{.path.basename}}", "path": "{{.path.path}}", "namespace": NAMESPACE},
            }
        ]
    else:
        cfg["apps"] = [
            {"name": f"app-{i:04d}", "path": f"apps/app-{i:04d}", "namespace": NAMESPACE} for i in range(apps)
        ]
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_sync(cfg: Path) -> tuple[float, int, int]:
    """(wall s, apps synced without error, apps) of one ``gitops-agent sync``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "sync", "--config", str(cfg), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(err.decode()[-2000:])
    result = json.loads(out)["c"]
    ok = sum(1 for a in result["apps"] if not a["error"] and a["counts"]["failed"] == 0)
    return wall, ok, len(result["apps"])


def measured(cfg: Path) -> tuple[float, float, int, int]:
    """:func:`run_sync` with the CPU of the process and its children (``RUSAGE_CHILDREN`` before and after)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, ok, total = run_sync(cfg)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, ok, total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--apps", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        repo = tmp / "repo"
        make_repo(repo, args.apps)
        rows: dict[str, list[tuple[float, float, int, int]]] = {"listed": [], "generated": []}
        for r in range(args.rounds):
            order = ["listed", "generated"] if r % 2 == 0 else ["generated", "listed"]
            for name in order:
                tc = TestCluster.start(f"{name[0]}{r}", tmp / f"{name}{r}", ["--audit=false"])
                try:
                    time.sleep(2.0)  # the controllers' start-up work done
                    ensure_namespace(tc, NAMESPACE)
                    cfg = write_config(tmp / f"{name}{r}.yaml", repo, tmp / f"cache-{name}{r}", tc, args.apps,
                                       name == "generated")  # fmt: skip
                    rows[name].append(measured(cfg))
                finally:
                    tc.stop()
                wall, cpu, ok, total = rows[name][-1]
                print(f"round {r + 1} {name}: wall {wall:.2f} s, CPU {cpu:.2f} s, {ok}/{total} apps synced", flush=True)
        generated = config.load_config(tmp / "generated0.yaml")
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            found = expand.generate(generated, {"default": repo})
            times.append(time.perf_counter() - t0)
        assert len(found.config.apps) == args.apps, found.results
    print()
    print(f"apps: {args.apps} x 4 objects, one cluster, {args.rounds} rounds (medians)")
    print("| config | wall (s) | CPU (s) | apps synced |")
    print("|---|---|---|---|")
    for name, found_rows in rows.items():
        walls = statistics.median(w for w, _, _, _ in found_rows)
        cpus = statistics.median(c for _, c, _, _ in found_rows)
        ok = min(o for _, _, o, _ in found_rows)
        print(f"| {name} | {walls:.2f} | {cpus:.2f} | {ok}/{args.apps} |")
    ratios = [g[0] / ls[0] for g, ls in zip(rows["generated"], rows["listed"], strict=True)]
    cpu_ratios = [g[1] / ls[1] for g, ls in zip(rows["generated"], rows["listed"], strict=True)]
    print(f"generated / listed per round: wall {', '.join(f'{x:.2f}' for x in ratios)}; "
          f"CPU {', '.join(f'{x:.2f}' for x in cpu_ratios)}")  # fmt: skip
    print(f"expand.generate of {args.apps} directories in-process: median {1000 * statistics.median(times):.0f} ms")


if __name__ == "__main__":
    main()

"""A bounded soak: three clusters, `gitops-agent run` (prune, self-heal), a commit every few seconds, random
out-of-band edits and deletions every second, one cluster restarted midway. At the end (after a settle period):
every cluster equals git (`gitops-agent diff` exits 0), each cluster runs the last commit (no lost update), and
the agent's resident memory over time (sampled every 10 s) shows whether it is flat.

Usage: .venv/bin/python bench/soak.py [--seconds 600] [--objects 60]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml
from common import REPO, TestCluster

sys.path.insert(0, str(REPO))

from kubernetes import config as kconfig
from kubernetes import dynamic
from kubernetes.dynamic import exceptions

NS = "soak"


def git(cwd: pathlib.Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=s", "-c", "user.email=s@example.com", *args], cwd=cwd, check=True, capture_output=True
    )


def rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def write_state(work: pathlib.Path, generation: int, objects: int, rng: random.Random) -> None:
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}]
    present = [i for i in range(objects) if rng.random() > 0.1]  # ~10% of objects leave git each commit
    for i in present:
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"cm-{i}", "namespace": NS},
                "data": {"generation": str(generation), "i": str(i)},
            }
        )
    (work / "app" / "all.yaml").write_text(yaml.safe_dump_all(docs))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--objects", type=int, default=60)
    args = ap.parse_args()
    rng = random.Random(3)
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = pathlib.Path(tmp_)
        clusters = [TestCluster.start(f"soak{i}", tmp / f"c{i}") for i in range(3)]
        kubeconfigs = []
        for c in clusters:  # the operator's copies outlive a cluster restart
            kubeconfigs.append(tmp / f"{c.name}.kubeconfig")
            kubeconfigs[-1].write_text(c.kubeconfig.read_text())
        bare = tmp / "fleet.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
        work = tmp / "work"
        (work / "app").mkdir(parents=True)
        git(work, "init", "-q", "-b", "main")
        git(work, "remote", "add", "origin", str(bare))
        write_state(work, 0, args.objects, rng)
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", "gen 0")
        git(work, "push", "-q", "origin", "main")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cfg = {
            "instance": "soak",
            "source": {"url": str(bare), "interval": "2s", "cacheDir": str(tmp / "cache")},
            "clusters": [
                {"name": c.name, "kubeconfig": str(k), "paths": ["app"]}
                for c, k in zip(clusters, kubeconfigs, strict=True)
            ],
            "sync": {"interval": "30s", "prune": True, "selfHeal": True, "requestTimeout": "5s", "pruneBudget": 1.0},
            "server": {"listen": f"127.0.0.1:{port}"},
        }
        config = tmp / "agent.yaml"
        config.write_text(yaml.safe_dump(cfg))
        log = (tmp / "agent.log").open("wb")
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        samples: list[tuple[float, float]] = []
        commits = edits = 0
        restarted = False
        start = time.monotonic()
        next_commit = next_sample = start
        try:
            while time.monotonic() - start < args.seconds:
                now = time.monotonic()
                if now >= next_sample:
                    samples.append((now - start, rss_mib(agent.pid)))
                    next_sample += 10
                if now >= next_commit:
                    commits += 1
                    write_state(work, commits, args.objects, rng)
                    git(work, "add", "-A")
                    git(work, "commit", "-q", "-m", f"gen {commits}")
                    git(work, "push", "-q", "origin", "main")
                    next_commit += rng.uniform(2, 5)
                if not restarted and now - start > args.seconds * 0.4:
                    clusters[1].stop()
                    time.sleep(3)
                    clusters[1] = TestCluster.start(clusters[1].name, clusters[1].data_dir)
                    restarted = True
                c = rng.choice([0, 2] if not restarted else [0, 1, 2])
                api = dynamic.DynamicClient(kconfig.new_client_from_config(str(kubeconfigs[c]))).resources.get(
                    api_version="v1", kind="ConfigMap"
                )
                name = f"cm-{rng.randrange(args.objects)}"
                try:
                    if rng.random() < 0.5:
                        api.patch(
                            name=name,
                            namespace=NS,
                            body={"data": {"generation": "tampered"}},
                            content_type="application/merge-patch+json",
                            field_manager="soak-intruder",
                        )
                    else:
                        api.delete(name=name, namespace=NS)
                    edits += 1
                except exceptions.ApiException:
                    pass
                time.sleep(1)
            head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True).stdout.strip()
            settle = time.monotonic()
            status: dict = {}
            while time.monotonic() - settle < 120:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/status?objects=false", timeout=5) as r:
                    status = json.loads(r.read())
                at_head = all(
                    ((c.get("lastSync") or {}).get("revision") or {}).get("sha") == head
                    and c.get("syncStatus") == "Synced"
                    for c in status["clusters"]
                )
                if at_head:
                    break
                time.sleep(2)
            samples.append((time.monotonic() - start, rss_mib(agent.pid)))
            diff = subprocess.run(
                [sys.executable, "-m", "agent.cli", "diff", "--config", str(config)],
                capture_output=True,
                text=True,
                timeout=300,
            )
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(60)
            for c in clusters:
                c.stop()
    print(
        f"duration {args.seconds}s, {len(clusters)} clusters, {args.objects} objects per commit, {commits} commits, "
        f"{edits} out-of-band edits or deletions, cluster soak1 restarted at {args.seconds * 0.4:.0f}s"
    )
    print(f"every cluster at the last commit and Synced: {at_head}; gitops-agent diff exit code: {diff.returncode}")
    print("| t (s) | agent RSS (MiB) |")
    print("|---|---|")
    for t, rss in samples:
        print(f"| {t:.0f} | {rss:.1f} |")


if __name__ == "__main__":
    main()

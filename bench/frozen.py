"""A fleet with frozen clusters: do the healthy ones keep their schedule and their self-heal?

N test clusters (default 30, started in parallel, audit logs off) of OBJECTS ConfigMaps each, one `gitops-agent
run` (``sync.interval`` INTERVAL, self-heal on). Two phases of PHASE seconds each, in the same run:

1. control: every cluster healthy (after two intervals of settling, so the first sync's length is not counted);
2. frozen: FROZEN clusters stopped with SIGSTOP for the whole phase (their syncs hang until
   ``sync.requestTimeout``), the others untouched.

In each phase, for the healthy clusters: the lateness of every scheduled sync (how long after it was due it
started: the worker's ``lastLatenessSeconds``, read with each sync from the fleet summary polled every 0.5 s), and
self-heal latency (an out-of-band edit of a managed ConfigMap every 3 s on a random healthy cluster, until an
independent client polling every 10 ms sees git's value again). The agent's threads and RSS come from /proc at
the end of each phase.

Usage: .venv/bin/python bench/frozen.py [--clusters 30] [--frozen 5] [--objects 200] [--interval 10] [--phase 120]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent import futures
from typing import Any

import yaml
from common import REPO, TestCluster, make_repo, percentile, wait_ready, write_config

sys.path.insert(0, str(REPO))

from kubernetes import config as kconfig
from kubernetes import dynamic


def status(base: str) -> Any:
    with urllib.request.urlopen(f"{base}/api/v1/status?objects=false", timeout=5) as r:
        return json.loads(r.read())


def proc_figures(pid: int) -> tuple[int, float]:
    """(threads, RSS in MiB) of process ``pid``."""
    fields = dict(
        line.split(":", 1) for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(fields["Threads"].strip()), int(fields["VmRSS"].split()[0]) / 1024


def phase(
    name: str,
    base: str,
    clusters: list[TestCluster],
    healthy: set[str],
    ns: str,
    objects: int,
    seconds: float,
    pid: int,
) -> dict[str, Any]:
    stop = threading.Event()
    seen: dict[tuple[str, str], float] = {}  # (cluster, lastSync.started) -> lateness of the sync that started it

    def poll() -> None:
        while not stop.is_set():
            try:
                for c in status(base)["clusters"]:
                    last = c.get("lastSync") or {}
                    if c["name"] in healthy and last.get("started"):
                        seen.setdefault((c["name"], last["started"]), c["worker"]["lastLatenessSeconds"])
            except OSError:
                pass
            stop.wait(0.5)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    rng = random.Random(name)
    heals: list[float] = []
    by_name = {c.name: c for c in clusters}
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        target = by_name[rng.choice(sorted(healthy))]
        api = dynamic.DynamicClient(kconfig.new_client_from_config(str(target.kubeconfig)))
        cms = api.resources.get(api_version="v1", kind="ConfigMap")
        cm = f"cm-{rng.randrange(objects)}"
        t0 = time.perf_counter()
        cms.patch(
            name=cm,
            namespace=ns,
            body={"data": {"mode": "edited"}},
            content_type="application/merge-patch+json",
            field_manager="intruder",
        )
        while time.perf_counter() - t0 < 30:
            if cms.get(name=cm, namespace=ns).data["mode"] == "git":
                heals.append(time.perf_counter() - t0)
                break
            time.sleep(0.01)
        time.sleep(max(0.0, 3 - (time.perf_counter() - t0)))
    stop.set()
    poller.join()
    threads, rss = proc_figures(pid)
    lateness = [v for (c, _), v in seen.items()]
    return {
        "phase": name,
        "scheduled syncs seen": len(lateness),
        "lateness p50 s": round(percentile(lateness, 0.5), 4) if lateness else None,
        "lateness p95 s": round(percentile(lateness, 0.95), 4) if lateness else None,
        "lateness max s": round(max(lateness), 4) if lateness else None,
        "self-heals": len(heals),
        "self-heal p50 s": round(percentile(heals, 0.5), 3) if heals else None,
        "self-heal p95 s": round(percentile(heals, 0.95), 3) if heals else None,
        "agent threads": threads,
        "agent RSS MiB": round(rss, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clusters", type=int, default=30)
    ap.add_argument("--frozen", type=int, default=5)
    ap.add_argument("--objects", type=int, default=200)
    ap.add_argument("--interval", type=float, default=10)
    ap.add_argument("--phase", type=float, default=120)
    args = ap.parse_args()
    ns = "bench-frozen"
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = pathlib.Path(tmp_)
        t0 = time.monotonic()
        with futures.ThreadPoolExecutor(6) as pool:
            clusters = list(
                pool.map(
                    lambda i: TestCluster.start(f"c{i:02d}", tmp / f"c{i:02d}", ["--audit=false"]),
                    range(args.clusters),
                )
            )
        print(f"{args.clusters} clusters started in {time.monotonic() - t0:.0f}s", flush=True)
        agent = None
        try:
            repo = make_repo(tmp / "repo", ns, args.objects - 1, 0)  # with the Namespace: OBJECTS objects
            port = 18000 + random.randrange(1000)
            config = write_config(
                tmp / "agent.yaml", repo, clusters, interval=args.interval, selfHeal=True, requestTimeout=30
            )
            doc = yaml.safe_load(config.read_text())
            doc["server"] = {"listen": f"127.0.0.1:{port}"}
            config.write_text(yaml.safe_dump(doc))
            base = f"http://127.0.0.1:{port}"
            log = (tmp / "agent.log").open("wb")
            agent = subprocess.Popen(
                [sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
            wait_ready(base, 120)
            t1 = time.monotonic()
            while not all(c.get("syncStatus") == "Synced" for c in status(base)["clusters"]):
                if time.monotonic() - t1 > 600:
                    raise SystemExit("the fleet did not sync within 600s")
                time.sleep(1)
            print(f"first sync of {args.clusters} x {args.objects} in {time.monotonic() - t1:.0f}s", flush=True)
            # The syncs after the first one start late by how long the first one took (creating every object):
            # let two intervals pass so that both phases measure the steady state.
            time.sleep(2 * args.interval)
            names = {c.name for c in clusters}
            rows = [phase("control", base, clusters, names, ns, args.objects - 1, args.phase, agent.pid)]
            frozen = clusters[: args.frozen]
            for c in frozen:
                os.kill(c.process.pid, signal.SIGSTOP)
            try:
                healthy = names - {c.name for c in frozen}
                rows.append(phase("frozen", base, clusters, healthy, ns, args.objects - 1, args.phase, agent.pid))
                stuck = [c for c in status(base)["clusters"] if c["name"] in {f.name for f in frozen}]
                rows[-1]["frozen clusters shown Unknown"] = sum(c["syncStatus"] == "Unknown" for c in stuck)
            finally:
                for c in frozen:
                    os.kill(c.process.pid, signal.SIGCONT)
            print(json.dumps(rows, indent=1))
        finally:
            if agent is not None:
                agent.send_signal(signal.SIGTERM)
                agent.wait(60)
            with futures.ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda c: c.stop(), clusters))


if __name__ == "__main__":
    main()

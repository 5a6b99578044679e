"""Developer mode: from saving a file in the local source directory until its object is visible in the
cluster (agent ``run`` watching the directory with watchfiles; an independent client polls every 10 ms).

Usage: .venv/bin/python bench/local_save.py [--saves 15]
"""

from __future__ import annotations

import argparse
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time

import yaml
from common import REPO, TestCluster, percentile, wait_ready

sys.path.insert(0, str(REPO))

from kubernetes import config as kconfig
from kubernetes import dynamic
from kubernetes.dynamic import exceptions


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--saves", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = pathlib.Path(tmp_)
        tc = TestCluster.start("local", tmp / "cluster")
        try:
            work = tmp / "desired"
            (work / "app").mkdir(parents=True)
            (work / "app" / "ns.yaml").write_text(
                yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench-local"}})
            )
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            cfg = {
                "instance": "bench-local",
                "source": {"url": str(work), "cacheDir": str(tmp / "cache")},
                "clusters": [{"name": "dev", "kubeconfig": str(tc.kubeconfig), "paths": ["app"]}],
                "server": {"listen": f"127.0.0.1:{port}"},
            }
            (tmp / "agent.yaml").write_text(yaml.safe_dump(cfg))
            proc = subprocess.Popen(
                [sys.executable, "-m", "agent.cli", "run", "--config", str(tmp / "agent.yaml")],
                stderr=subprocess.DEVNULL,
            )
            cms = dynamic.DynamicClient(kconfig.new_client_from_config(str(tc.kubeconfig))).resources.get(
                api_version="v1", kind="ConfigMap"
            )
            try:
                wait_ready(f"http://127.0.0.1:{port}")
                time.sleep(2)
                latencies = []
                for i in range(args.saves):
                    name = f"saved-{i}"
                    t0 = time.perf_counter()
                    (work / "app" / f"{name}.yaml").write_text(
                        yaml.safe_dump(
                            {
                                "apiVersion": "v1",
                                "kind": "ConfigMap",
                                "metadata": {"name": name, "namespace": "bench-local"},
                            }
                        )
                    )
                    while True:
                        try:
                            cms.get(name=name, namespace="bench-local")
                            break
                        except exceptions.NotFoundError:
                            time.sleep(0.01)
                        if time.perf_counter() - t0 > 30:
                            raise SystemExit(f"{name} not applied within 30 s")
                    latencies.append(time.perf_counter() - t0)
                    time.sleep(0.5)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
        finally:
            tc.stop()
    ms = [x * 1000 for x in latencies]
    print("| saves | p50 (ms) | p95 (ms) | max (ms) |")
    print("|---|---|---|---|")
    print(f"| {len(ms)} | {percentile(ms, 0.5):.0f} | {percentile(ms, 0.95):.0f} | {max(ms):.0f} |")


if __name__ == "__main__":
    main()

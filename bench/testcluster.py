"""Start-up time and memory of the test clusters: starts N clusters one after another (time until the
kubeconfig is written, i.e. the API server is ready and the node registered), then reads each process's resident
memory once it settled (10 s idle).

Usage: .venv/bin/python bench/testcluster.py [N]   (default 3; `make bench-testcluster`)
"""

from __future__ import annotations

import pathlib
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.cluster.launcher import TestCluster  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    with tempfile.TemporaryDirectory() as tmp:
        starts, clusters = [], []
        try:
            for i in range(n):
                t0 = time.monotonic()
                clusters.append(TestCluster.start(f"b{i}", pathlib.Path(tmp) / f"b{i}"))
                starts.append(time.monotonic() - t0)
            time.sleep(10)
            rss = [rss_mib(c.process.pid) for c in clusters]
        finally:
            for c in clusters:
                c.stop()
    print("| clusters | start-up p50 (s) | start-up max (s) | RSS per cluster, idle, mean (MiB) | RSS max (MiB) |")
    print("|---|---|---|---|---|")
    print(
        f"| {n} | {statistics.median(starts):.2f} | {max(starts):.2f} | {statistics.mean(rss):.0f} | {max(rss):.0f} |"
    )


if __name__ == "__main__":
    main()

"""Helpers shared by the benchmarks: a test cluster, a git repo of generated objects, an agent config."""

from __future__ import annotations

import pathlib
import subprocess
import sys
from typing import Any

import yaml

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.cluster.launcher import TestCluster  # noqa: E402


def wait_ready(base: str, timeout: float = 60.0) -> None:
    """Wait until the agent at ``base`` answers 200 on /readyz. Raises SystemExit after ``timeout`` seconds."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"agent at {base} not ready within {timeout:.0f}s")
        time.sleep(0.1)


def ensure_namespace(tc: TestCluster, name: str) -> None:
    """Create the namespace ``name`` in ``tc`` (with the official client, as an operator would)."""
    from kubernetes import client
    from kubernetes import config as kconfig

    api = client.CoreV1Api(kconfig.new_client_from_config(str(tc.kubeconfig)))
    api.create_namespace({"metadata": {"name": name}})


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far, from ``/proc/PID/stat``."""
    import os

    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss(pid: int) -> float:
    """Process ``pid``'s peak resident memory so far in MiB (``VmHWM`` of ``/proc/PID/status``)."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def make_repo(path: pathlib.Path, namespace: str, configmaps: int, deployments: int) -> pathlib.Path:
    """A git repo whose ``app/`` holds a Namespace, ``configmaps`` ConfigMaps and ``deployments`` Deployments."""
    docs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}]
    for i in range(configmaps):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"cm-{i}", "namespace": namespace},
                "data": {"value": str(i), "mode": "git"},
            }
        )
    for i in range(deployments):
        docs.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": f"web-{i}", "namespace": namespace},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": f"web-{i}"}},
                    "template": {
                        "metadata": {"labels": {"app": f"web-{i}"}},
                        "spec": {
                            "containers": [
                                {"name": "web", "image": "example/web:1", "resources": {"requests": {"cpu": "0.1"}}}
                            ]
                        },
                    },
                },
            }
        )
    (path / "app").mkdir(parents=True)
    (path / "app" / "all.yaml").write_text(yaml.safe_dump_all(docs))
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.name=b", "-c", "user.email=b@example.com", "commit", "-q", "-m", "bench"],
    ):
        subprocess.run(["git", *args], cwd=path, check=True)
    return path


def write_config(path: pathlib.Path, repo: pathlib.Path, clusters: list[TestCluster], **sync: Any) -> pathlib.Path:
    """An agent config syncing ``app/`` of ``repo`` to every cluster."""
    cfg = {
        "instance": "bench",
        "source": {"url": str(repo), "cacheDir": str(path.parent / "cache")},
        "clusters": [{"name": c.name, "kubeconfig": str(c.kubeconfig), "paths": ["app"]} for c in clusters],
        "sync": sync,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path

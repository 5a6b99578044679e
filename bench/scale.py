"""First sync and no-op resync at scale, against the baselines issue #7 names, in the same run on fresh clusters:

- ``kubectl``: ``kubectl apply --server-side --force-conflicts`` of the same files, one cluster after another
  (the CRD file first, so its custom resources can be applied), with the real kubectl of the same release
  (``make kubectl``);
- ``API limit``: the same server-side apply PATCHes from a minimal concurrent client (Python threads over
  urllib3, 32 in flight per cluster, clusters in parallel, no diffing, namespaces and the CRD first);
- ``gitops-agent``: ``gitops-agent sync`` (one process, every cluster), then the same again (a no-op resync).

Each contender gets its own fresh clusters, so every first sync is a first sync. Wall time, CPU seconds and peak
RSS of the process come from ``os.wait4``; writes from the clusters' audit logs.

Usage: .venv/bin/python bench/scale.py [--objects 2000] [--clusters 3]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import pathlib
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from typing import Any

import urllib3
import yaml
from common import REPO, TestCluster

KUBECTL = REPO / "build" / "kubectl"


def generate(n: int) -> list[list[dict[str, Any]]]:
    """Files of objects: the CRD, then one file per namespace with a mix like the public corpora."""
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.bench.example.com"},
        "spec": {
            "group": "bench.example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }
    files: list[list[dict[str, Any]]] = [[crd]]
    per_ns = 50
    for ns_i in range(max(1, n // per_ns)):
        ns = f"bench-{ns_i:03d}"
        docs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}]
        for i in range(per_ns - 1):
            name, kind = f"o{i:02d}", i % 10
            meta = {"name": name, "namespace": ns, "labels": {"app": name}}
            if kind in (0, 1):
                docs.append(
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "metadata": meta,
                        "spec": {
                            "replicas": 1,
                            "selector": {"matchLabels": {"app": name}},
                            "template": {
                                "metadata": {"labels": {"app": name}},
                                "spec": {
                                    "containers": [
                                        {
                                            "name": "app",
                                            "image": f"example/{name}:1",
                                            "resources": {"requests": {"cpu": "0.1"}},
                                        }
                                    ]
                                },
                            },
                        },
                    }
                )
            elif kind in (2, 3):
                docs.append(
                    {
                        "apiVersion": "v1",
                        "kind": "Service",
                        "metadata": meta,
                        "spec": {"selector": {"app": name}, "ports": [{"port": 80}]},
                    }
                )
            elif kind in (4, 5):
                docs.append(
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": meta,
                        "data": {"config.yaml": f"name: {name}\nreplicas: 1\n"},
                    }
                )
            elif kind == 6:
                docs.append(
                    {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "metadata": meta,
                        "data": {"token": base64.b64encode(name.encode()).decode()},
                    }
                )
            elif kind == 7:
                docs.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta})
            elif kind == 8:
                docs.append(
                    {
                        "apiVersion": "rbac.authorization.k8s.io/v1",
                        "kind": "Role",
                        "metadata": meta,
                        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
                    }
                )
            else:
                docs.append(
                    {"apiVersion": "bench.example.com/v1", "kind": "Widget", "metadata": meta, "spec": {"size": i}}
                )
        files.append(docs)
    return files


def measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float, int]:
    """Run ``cmd``; (wall seconds, CPU seconds, peak RSS MiB, exit code)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0 and proc.stderr:
        sys.stderr.write(proc.stderr.read().decode()[-2000:])
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def writes(tc: TestCluster) -> int:
    n = 0
    with (tc.data_dir / "audit.log").open() as f:
        for line in f:
            e = json.loads(line)
            agent = str(e.get("userAgent", ""))
            controller = agent.startswith(("kube-controller-manager", "testcluster"))
            if e.get("stage") == "ResponseComplete" and "dryRun" not in e.get("requestURI", "") and not controller:
                n += 1
    return n


def api_limit(clusters: list[TestCluster], files: list[list[dict[str, Any]]]) -> float:
    """The same SSA PATCHes, no diffing, 32 in flight per cluster, clusters in parallel; wall seconds."""

    def plural(kind: str) -> str:
        return {
            "Deployment": "deployments",
            "Service": "services",
            "ConfigMap": "configmaps",
            "Secret": "secrets",
            "ServiceAccount": "serviceaccounts",
            "Role": "roles",
            "Widget": "widgets",
            "Namespace": "namespaces",
            "CustomResourceDefinition": "customresourcedefinitions",
        }[kind]

    def path(o: dict[str, Any]) -> str:
        av, m = o["apiVersion"], o["metadata"]
        base = f"/apis/{av}" if "/" in av else f"/api/{av}"
        ns = f"/namespaces/{m['namespace']}" if m.get("namespace") else ""
        return f"{base}{ns}/{plural(o['kind'])}/{m['name']}?fieldManager=api-limit&force=true"

    def one_cluster(tc: TestCluster) -> None:
        kc = yaml.safe_load(tc.kubeconfig.read_text())
        c, u = kc["clusters"][0]["cluster"], kc["users"][0]["user"]
        d = pathlib.Path(tempfile.mkdtemp())
        for name, key in (
            ("ca", "certificate-authority-data"),
            ("crt", "client-certificate-data"),
            ("key", "client-key-data"),
        ):
            (d / name).write_bytes(base64.b64decode((c | u)[key]))
        ctx = ssl.create_default_context(cafile=str(d / "ca"))
        ctx.load_cert_chain(str(d / "crt"), str(d / "key"))
        pool = urllib3.HTTPSConnectionPool(
            c["server"].removeprefix("https://").split(":")[0],
            int(c["server"].rsplit(":", 1)[1]),
            maxsize=32,
            ssl_context=ctx,
        )
        headers = {"Content-Type": "application/apply-patch+yaml"}
        first = [o for f in files for o in f if o["kind"] in ("Namespace", "CustomResourceDefinition")]
        rest = [o for f in files for o in f if o["kind"] not in ("Namespace", "CustomResourceDefinition")]

        def send(o: dict[str, Any]) -> int:
            return int(pool.request("PATCH", path(o), body=json.dumps(o), headers=headers).status)

        with futures.ThreadPoolExecutor(32) as ex:
            list(ex.map(send, first))
            time.sleep(1.0)  # the CRD becomes Established, as any client must wait for
            failed = [o for o, status in zip(rest, ex.map(send, rest), strict=True) if status >= 400]
            for o in failed:  # custom resources sent before their kind was served
                send(o)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=one_cluster, args=(tc,)) for tc in clusters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=2000)
    ap.add_argument("--clusters", type=int, default=3)
    args = ap.parse_args()
    files = generate(args.objects)
    total = sum(len(f) for f in files)
    rows: list[tuple[str, float, float, float, int]] = []
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = pathlib.Path(tmp_)
        repo = tmp / "repo"
        (repo / "app").mkdir(parents=True)
        for i, docs in enumerate(files):
            (repo / "app" / f"{i:03d}.yaml").write_text(yaml.safe_dump_all(docs))
        for a in (
            ["init", "-q", "-b", "main"],
            ["add", "-A"],
            ["-c", "user.name=b", "-c", "user.email=b@e", "commit", "-q", "-m", "scale"],
        ):
            subprocess.run(["git", *a], cwd=repo, check=True)

        def fresh(tag: str) -> list[TestCluster]:
            return [TestCluster.start(f"{tag}{i}", tmp / f"{tag}{i}") for i in range(args.clusters)]

        cs = fresh("k")
        try:
            wall = cpu = rss = 0.0
            for tc in cs:  # one cluster after another
                for target in (repo / "app" / "000.yaml", repo / "app"):
                    w, c, r, code = measured(
                        [
                            str(KUBECTL),
                            "--kubeconfig",
                            str(tc.kubeconfig),
                            "apply",
                            "--server-side",
                            "--force-conflicts",
                            "-R",
                            "-f",
                            str(target),
                        ]
                    )
                    wall, cpu, rss = wall + w, cpu + c, max(rss, r)
                    if target.name == "000.yaml":
                        time.sleep(1.0)  # CRD established
            rows.append(
                (
                    "kubectl apply --server-side, clusters one after another",
                    wall,
                    cpu,
                    rss,
                    sum(writes(tc) for tc in cs),
                )
            )
        finally:
            for tc in cs:
                tc.stop()
        cs = fresh("l")
        try:
            rows.append(
                (
                    "API limit: minimal concurrent SSA client",
                    api_limit(cs, files),
                    0.0,
                    0.0,
                    sum(writes(tc) for tc in cs),
                )
            )
        finally:
            for tc in cs:
                tc.stop()
        cs = fresh("g")
        try:
            config = tmp / "agent.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "instance": "scale",
                        "source": {"url": str(repo), "cacheDir": str(tmp / "cache")},
                        "clusters": [
                            {"name": tc.name, "kubeconfig": str(tc.kubeconfig), "paths": ["app"]} for tc in cs
                        ],
                        "sync": {"concurrency": 32},
                    }
                )
            )
            agent = [sys.executable, "-m", "agent.cli", "sync", "--config", str(config), "--json"]
            w, c, r, code = measured(agent)
            first_writes = sum(writes(tc) for tc in cs)
            rows.append(("gitops-agent sync (first)", w, c, r, first_writes))
            w, c, r, code2 = measured(agent)
            rows.append(("gitops-agent sync (no-op resync)", w, c, r, sum(writes(tc) for tc in cs) - first_writes))
            assert code == 0, code
            assert code2 == 0, code2
        finally:
            for tc in cs:
                tc.stop()
    print(f"objects per cluster: {total}; clusters: {args.clusters}")
    print("| run | wall (s) | CPU (s) | peak RSS (MiB) | writes |")
    print("|---|---|---|---|---|")
    for name, w, c, r, n in rows:
        print(f"| {name} | {w:.2f} | {c:.2f} | {r:.0f} | {n} |")
    kubectl, limit, first, noop = (row[1] for row in rows)
    print(
        f"first sync / kubectl: {first / kubectl:.2f}; first sync / API limit: {first / limit:.2f}; "
        f"no-op resync / kubectl: {noop / kubectl:.3f}"
    )


if __name__ == "__main__":
    main()

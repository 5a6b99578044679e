"""What the agent's own code costs on top of the HTTP client and the interpreter, for one checkout of the agent:

- **request path**: CPU per request of ``KubeCluster.apply`` (a server-side dry run, then the apply, of ConfigMaps,
  one thread, one test cluster) against the same requests from a raw urllib3 client on one connection (a JSON
  body, no answer decoded); rounds alternate, each with its own field manager;
- **wire JSON**: CPU of encoding an apply's body and decoding the API server's answer (one read back from the
  test cluster, managed fields included) with the standard library's ``json`` and with the agent's codec
  (``agent.clusters.responses.encode``/``decode``, orjson), medians of 5 timings of 2,000 each;
- **start-up**: CPU of a process that imports the command line (``agent.cli``: what every one-shot command pays
  before it does anything) and of one that imports the git fetch child (``agent.sources.gitfetch``: what every
  fetch pays), medians of ``--starts`` runs, from bytecode as installed (the tree is compiled first).

``--tree PATH`` measures another checkout (a worktree of an older commit: ``git worktree add /tmp/before <sha>``,
with ``.venv`` and ``build`` linked into it), so before and after run in one session on one machine.

Usage: .venv/bin/python bench/overhead.py [--tree PATH] [--objects 1500] [--rounds 3] [--starts 7]
"""

from __future__ import annotations

import argparse
import base64
import compileall
import json
import os
import pathlib
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import urllib3
import yaml
from common import REPO, TestCluster


def raw_client(tc: TestCluster, tmp: pathlib.Path) -> Callable[[dict[str, Any], str], None]:
    """A dry run and an apply of one object on one urllib3 connection with the cluster's client certificate."""
    kc = yaml.safe_load(tc.kubeconfig.read_text())
    c, u = kc["clusters"][0]["cluster"], kc["users"][0]["user"]
    for name, key in (
        ("ca", "certificate-authority-data"),
        ("crt", "client-certificate-data"),
        ("key", "client-key-data"),
    ):
        (tmp / name).write_bytes(base64.b64decode((c | u)[key]))
    ctx = ssl.create_default_context(cafile=str(tmp / "ca"))
    ctx.load_cert_chain(str(tmp / "crt"), str(tmp / "key"))
    host, port = c["server"].removeprefix("https://").rsplit(":", 1)
    pool = urllib3.HTTPSConnectionPool(host, int(port), maxsize=1, ssl_context=ctx)
    headers = {"Content-Type": "application/apply-patch+yaml"}

    def apply(o: dict[str, Any], manager: str) -> None:
        path = f"/api/v1/namespaces/default/configmaps/{o['metadata']['name']}?fieldManager={manager}&force=true"
        body = json.dumps(o)
        for url in (path + "&dryRun=All", path):
            assert pool.request("PATCH", url, body=body, headers=headers).status < 400

    return apply


def agent_client(tc: TestCluster) -> Callable[[dict[str, Any], str], None]:
    """The same through the agent's connection, made as the agent makes it from a kubeconfig."""
    from agent import config
    from agent.clusters import kubeconfig

    kube = kubeconfig.connect(
        config.ClusterConnection.model_validate({"name": tc.name, "kubeconfig": str(tc.kubeconfig)})
    )
    kube.refresh_discovery()

    def apply(o: dict[str, Any], manager: str) -> None:
        for dry_run in (True, False):
            kube.apply(o, field_manager=manager, force=True, dry_run=dry_run)

    return apply


def wire_json(body: dict[str, Any], answer: dict[str, Any]) -> tuple[float, float] | None:
    """(json, the agent's codec) microseconds of CPU to encode ``body`` and decode ``answer``'s bytes once, medians
    of 5 timings of 2,000 each; None for a tree without the codec."""
    from agent.clusters import responses

    if not hasattr(responses, "encode"):
        return None
    data = json.dumps(answer).encode()

    def timed(encode: Callable[[Any], Any], decode: Callable[[bytes], Any]) -> float:
        found = []
        for _ in range(5):
            t0 = time.thread_time()
            for _ in range(2000):
                encode(body)
                decode(data)
            found.append(1e6 * (time.thread_time() - t0) / 2000)
        return statistics.median(found)

    std = timed(lambda b: json.dumps(b, separators=(",", ":")).encode(), lambda d: json.loads(d.decode()))
    return std, timed(responses.encode, responses.decode)


def answer(tc: TestCluster, body: dict[str, Any]) -> dict[str, Any]:
    """The API server's answer to a server-side dry run of ``body`` (what each write reads back)."""
    from agent import config
    from agent.clusters import kubeconfig

    kube = kubeconfig.connect(
        config.ClusterConnection.model_validate({"name": tc.name, "kubeconfig": str(tc.kubeconfig)})
    )
    try:
        kube.refresh_discovery()
        found: dict[str, Any] = kube.apply(body, field_manager="wire", force=True, dry_run=True)
    finally:
        kube.close()
    return found


def request_path(objects: int, rounds: int) -> tuple[float, float, tuple[float, float] | None]:
    """(raw, agent) microseconds of CPU per request, medians of ``rounds``, and :func:`wire_json` of the first
    object and its answer."""
    docs = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"c{i}", "namespace": "default"},
            "data": {"a": str(i)},
        }
        for i in range(objects)
    ]
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = pathlib.Path(tmp_)
        tc = TestCluster.start("overhead", tmp / "cluster")
        try:
            time.sleep(3.0)  # the controllers' start-up work done
            contenders = {"raw": raw_client(tc, tmp), "agent": agent_client(tc)}
            wire = wire_json(docs[0], answer(tc, docs[0]))
            per: dict[str, list[float]] = {name: [] for name in contenders}
            for r in range(rounds):
                for name, apply in contenders.items():
                    t0 = time.thread_time()
                    for o in docs:
                        apply(o, f"{name}{r}")
                    per[name].append(1e6 * (time.thread_time() - t0) / (2 * len(docs)))
        finally:
            tc.stop()
    for name, values in per.items():
        print(f"  {name}: " + ", ".join(f"{v:.0f}" for v in values) + " us per request")
    return statistics.median(per["raw"]), statistics.median(per["agent"]), wire


def start_cpu(tree: pathlib.Path, module: str, starts: int) -> float:
    """Median CPU seconds (user + system, from ``os.wait4``) of a process importing ``module`` from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    found = []
    for _ in range(starts):
        proc = subprocess.Popen([sys.executable, "-c", f"import {module}"], env=env, cwd=tree)
        _, status, usage = os.wait4(proc.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, module
        found.append(usage.ru_utime + usage.ru_stime)
    return statistics.median(found)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", type=pathlib.Path, default=REPO, help="the checkout of the agent to measure")
    ap.add_argument("--objects", type=int, default=1500, help="ConfigMaps applied per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--starts", type=int, default=7, help="processes started per start-up figure")
    args = ap.parse_args()
    tree = args.tree.resolve()
    for package in ("agent", "reconcilers"):  # from bytecode, as installed
        compileall.compile_dir(tree / package, quiet=1)
    sys.path.insert(0, str(tree))  # the agent's modules from the tree measured (before common's REPO)
    for name in [m for m in sys.modules if m.split(".")[0] in ("agent", "reconcilers")]:
        del sys.modules[name]
    print(f"tree: {tree}")
    raw, agent, wire = request_path(args.objects, args.rounds)
    cli, fetch = (start_cpu(tree, m, args.starts) for m in ("agent.cli", "agent.sources.gitfetch"))
    print("| request path: raw urllib3 (us) | agent (us) | agent / raw | start: agent.cli (s) | start: fetch (s) |")
    print("|---|---|---|---|---|")
    print(f"| {raw:.0f} | {agent:.0f} | {agent / raw:.2f} | {cli:.2f} | {fetch:.2f} |")
    if wire is not None:
        std, codec = wire
        print(f"wire JSON, encode + decode of one write: json {std:.1f} us, agent {codec:.1f} us ({codec / std:.2f}x)")


if __name__ == "__main__":
    main()

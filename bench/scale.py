"""First sync and no-op resync at scale, against the baselines issue #7 names, in the same run on fresh clusters:

- ``kubectl``: ``kubectl apply --server-side --force-conflicts`` of the same files, one cluster after another
  (the CRD file first, so its custom resources can be applied), with the real kubectl of the same release
  (``make kubectl``);
- ``API limit``: the same server-side apply PATCHes from a minimal concurrent client (Python threads over
  urllib3, 32 in flight per cluster, clusters in parallel, no diffing, namespaces and the CRD first, then
  polling every 50 ms until the CRD is Established), its sockets blocking (no timeout): the most the API servers
  take;
- ``validated limit``: the same client sending what an agent that validates every object must send: a server-side
  dry run (``dryRun=All``), then the apply, per object, each request with the agent's timeouts
  (:data:`REQUEST_TIMEOUT`: every network call of the agent has one). The agent's first
  sync is judged against it: the same requests, so its wall time and its CPU per request (write requests in the
  audit log, dry runs included) show what the agent itself costs;
- ``gitops-agent sync``: one process, every cluster, then the same again (a one-shot no-op resync, process
  start-up included);
- ``gitops-agent run``: the long-running agent on the synced clusters (watch cache, self-heal on); once it
  reports every cluster Synced, one resync is requested (``POST /api/v1/sync``) and its duration taken from the
  status API (the slowest cluster). Its peak RSS is the agent's memory with every object watched. Then the full
  status and the fleet summary (``?objects=false``) are each read 5 times: their sizes, median wall times and
  the agent's CPU time per read are printed.

Each contender gets its own fresh clusters, so every first sync is a first sync. Wall time, CPU seconds and peak
RSS of a process come from ``os.wait4`` (``/proc`` for the running agent); the clusters' CPU seconds (API
server, etcd, controllers, fake kubelet) from ``/proc/PID/stat``; writes from the clusters' audit logs.

With ``--rounds N`` every contender runs N times, interleaved (kubectl, limit, agent, kubectl, ...), each time on
fresh clusters; the table shows the round with the median wall time of each row and the wall times of all rounds
are printed (the baselines' wall times move by tens of percent between runs on a loaded 2-core machine).

With comma lists (``--objects 500,2000,10000 --clusters 1,3,5``) every size runs in turn, each printing its table,
and a last table shows how each figure grows with the objects and the clusters.

With ``--compare-rate-limit`` the agent's first sync runs with the default client-side rate limit (``sync.qps``,
``sync.burst``) and with none (``sync.qps: 0``), interleaved in each round, and the ratio is printed.

With ``--validated-only`` only the validated limit and the agent's first sync run, interleaved (odd rounds the
agent first), and with ``--rounds N`` each round's ratio of CPU per request is printed with their median; with two
sizes (``--objects 500,2000``) the CPU of each extra request is printed too, start-up costs left out.

With ``--untimed-baseline`` (and ``--validated-only``) the validated limit also runs without timeouts, its sockets
blocking as the API limit's, as it did before (docs/benchmarks.md's older rows), and the agent's ratio to it is
printed too. The two send the same requests with different system calls: in CPython an SSL socket with a timeout
polls before each write and after each read that would block (``_ssl.c``'s ``PySSL_select``), each poll a release
and a re-take of the interpreter lock, where a blocking socket does neither (``perf stat -e
syscalls:sys_enter_poll``: 4 polls per request against 1).

With ``--pin`` the test clusters run on every CPU but the first and the client measured (the validated limit's
threads in this process, the agent's process and its children) on the first alone. Unpinned, a client's CPU time
per request moves with what the clusters' processes do on the same cores at that moment (their controllers
answering the Deployments created, etcd's compactions), which differs from one contender's run to the next.

``--tree PATH`` runs the agent of another checkout (a worktree of an older commit, ``git worktree add /tmp/before
<sha>``), so before and after run in one session on one machine with the same bench; with ``--validated-only``,
``--before PATH`` adds that checkout's first sync to every round, so before, after and the validated limit take
turns on the same machine state and each round gives both ratios.

Usage: .venv/bin/python bench/scale.py [--objects 2000[,N...]] [--clusters 3[,M...]] [--skip-baselines] [--rounds 1]
       [--compare-rate-limit] [--validated-only] [--untimed-baseline] [--pin] [--tree PATH] [--before PATH]
"""

from __future__ import annotations

import argparse
import base64
import compileall
import datetime
import json
import os
import pathlib
import resource
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent import futures
from typing import Any

import urllib3
import yaml
from common import REPO, TestCluster, peak_rss, proc_cpu, wait_ready

KUBECTL = REPO / "build" / "kubectl"
TREE = REPO
"""The checkout of the agent measured (``--tree``); the bench itself and its baselines are this one's."""
BEFORE: pathlib.Path | None = None
"""Another checkout whose agent's first sync runs too, in the same rounds (``--before``, with ``--validated-only``)."""
REQUEST_TIMEOUT = (5.0, 60.0)
"""(connect, read) seconds: the agent's own (``agent.clusters.connection.REQUEST_TIMEOUT``). Not imported: importing
``agent`` sets its garbage collector's thresholds (:mod:`agent.collector`) in this process, whose threads are the
validated limit's client."""
PIN: tuple[set[int], set[int]] | None = None
"""With ``--pin``: (the CPUs of the client measured, the CPUs of the test clusters)."""


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


def measured(
    cmd: list[str], env: dict[str, str] | None = None, cwd: pathlib.Path | None = None
) -> tuple[float, float, float, int]:
    """Run ``cmd`` (in ``cwd``); (wall seconds, CPU seconds, peak RSS MiB, exit code)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0 and proc.stderr:
        sys.stderr.write(proc.stderr.read().decode()[-2000:])
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def cluster_cpu(clusters: list[TestCluster]) -> float:
    """CPU seconds used so far by the clusters' processes (user + system)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for tc in clusters:
        fields = pathlib.Path(f"/proc/{tc.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / ticks


def audited(tc: TestCluster) -> tuple[int, int]:
    """(writes, write requests with dry runs included) the audit log of ``tc`` holds from clients other than the
    cluster's own controllers (the test clusters audit every write request, and no read)."""
    n = sent = 0
    with (tc.data_dir / "audit.log").open() as f:
        for line in f:
            e = json.loads(line)
            agent = str(e.get("userAgent", ""))
            if e.get("stage") != "ResponseComplete" or agent.startswith(("kube-controller-manager", "testcluster")):
                continue
            sent += 1
            n += "dryRun" not in e.get("requestURI", "")
    return n, sent


def api_limit(
    clusters: list[TestCluster], files: list[list[dict[str, Any]]], *, validated: bool = False, timeouts: bool = True
) -> float:
    """The same SSA PATCHes, no diffing, 32 in flight per cluster, clusters in parallel; wall seconds.
    ``validated``: each object is first sent as a server-side dry run (``dryRun=All``), then applied only when the
    dry run passed, as a client that validates every object before it writes must. ``timeouts``: (connect, read)
    seconds of the agent's :data:`REQUEST_TIMEOUT` on every request; without, blocking sockets (no timeout)."""

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
            timeout=urllib3.Timeout(connect=REQUEST_TIMEOUT[0], read=REQUEST_TIMEOUT[1]) if timeouts else None,
        )
        headers = {"Content-Type": "application/apply-patch+yaml"}
        first = [o for f in files for o in f if o["kind"] in ("Namespace", "CustomResourceDefinition")]
        rest = [o for f in files for o in f if o["kind"] not in ("Namespace", "CustomResourceDefinition")]

        def send(o: dict[str, Any]) -> int:
            body = json.dumps(o)
            if validated:
                status = int(pool.request("PATCH", path(o) + "&dryRun=All", body=body, headers=headers).status)
                if status >= 400:
                    return status
            return int(pool.request("PATCH", path(o), body=body, headers=headers).status)

        crd = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.bench.example.com"

        def established() -> bool:
            status = json.loads(pool.request("GET", crd).data).get("status") or {}
            conditions = status.get("conditions") or []  # null until the API server has looked at the CRD
            return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

        with futures.ThreadPoolExecutor(32) as ex:
            list(ex.map(send, first))
            while not established():  # as any client must before sending custom resources
                time.sleep(0.05)
            failed = [o for o, status in zip(rest, ex.map(send, rest), strict=True) if status >= 400]
            for o in failed:  # custom resources sent before discovery caught up
                send(o)

    t0 = time.perf_counter()
    with futures.ThreadPoolExecutor(len(clusters)) as ex:
        list(ex.map(one_cluster, clusters))  # a cluster's failure is raised here, never a row of what did not run
    return time.perf_counter() - t0


Row = tuple[str, float, float | None, float | None, int, float, int]
"""(contender, wall s, CPU s of the client, peak RSS MiB of the client, writes, CPU s of the clusters, write
requests sent with dry runs included)."""


def kubectl_row(repo: pathlib.Path, cs: list[TestCluster]) -> Row:
    wall = cpu = rss = 0.0
    c0 = cluster_cpu(cs)
    for tc in cs:  # one cluster after another
        for target in (repo / "app" / "000.yaml", repo / "app"):
            cmd = [str(KUBECTL), "--kubeconfig", str(tc.kubeconfig), "apply", "--server-side", "--force-conflicts"]
            w, c, r, code = measured([*cmd, "-R", "-f", str(target)])
            assert code == 0, code
            wall, cpu, rss = wall + w, cpu + c, max(rss, r)
            if target.name == "000.yaml":
                time.sleep(1.0)  # CRD established (not counted)
    name = "kubectl apply --server-side, clusters one after another"
    written, sent = total_audited(cs)
    return (name, wall, cpu, rss, written, cluster_cpu(cs) - c0, sent)


def limit_row(
    files: list[list[dict[str, Any]]], cs: list[TestCluster], *, validated: bool = False, timeouts: bool = True
) -> Row:
    c0, r0 = cluster_cpu(cs), resource.getrusage(resource.RUSAGE_SELF)
    wall = api_limit(cs, files, validated=validated, timeouts=timeouts)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    name = (VALIDATED if timeouts else VALIDATED_UNTIMED) if validated else LIMIT
    written, sent = total_audited(cs)
    return (name, wall, cpu, None, written, cluster_cpu(cs) - c0, sent)


LIMIT = "API limit: minimal concurrent SSA client"
VALIDATED = "validated limit: minimal concurrent client, dry run then SSA"
VALIDATED_UNTIMED = "validated limit without timeouts (blocking sockets)"
FIRST = "gitops-agent sync (first)"
FIRST_BEFORE = "gitops-agent sync (first), the --before checkout"


def total_audited(cs: list[TestCluster]) -> tuple[int, int]:
    """(writes, write requests with dry runs included) of every cluster in ``cs``, each audit log read once."""
    counts = [audited(tc) for tc in cs]
    return sum(n for n, _ in counts), sum(sent for _, sent in counts)


def agent_rows(
    repo: pathlib.Path,
    tmp: pathlib.Path,
    cs: list[TestCluster],
    *,
    unlimited: bool = False,
    first_only: bool = False,
    tree: pathlib.Path | None = None,
) -> list[Row]:
    """One-shot first sync and resync, then a running agent's resync; the rows and the running agent's peak RSS.
    ``unlimited``: with no client-side rate limit (``sync.qps: 0``) instead of the default; ``first_only``: the
    first sync's row alone; ``tree``: the agent of that checkout (default :data:`TREE`), its row named
    :data:`FIRST_BEFORE`."""
    tree = tree or TREE
    config = tmp / "agent.yaml"
    port = 18000 + os.getpid() % 1000
    sync_cfg: dict[str, Any] = {"concurrency": 32, "interval": "1h", "selfHeal": True}
    if unlimited:
        sync_cfg["qps"] = 0
    config.write_text(
        yaml.safe_dump(
            {
                "instance": "scale",
                "source": {"url": str(repo), "cacheDir": str(tmp / "cache"), "interval": "1h"},
                "clusters": [{"name": tc.name, "kubeconfig": str(tc.kubeconfig), "paths": ["app"]} for tc in cs],
                "sync": sync_cfg,
                "server": {"listen": f"127.0.0.1:{port}"},
            }
        )
    )
    rows: list[Row] = []
    sync = [sys.executable, "-m", "agent.cli", "sync", "--config", str(config), "--json"]
    names = [FIRST, "gitops-agent sync (no-op resync, one-shot process)"]
    if unlimited:
        names = ["gitops-agent sync (first), no rate limit (sync.qps: 0)"]
    elif tree != TREE:
        names = [FIRST_BEFORE]
    for name in names[:1] if first_only else names:
        (before, s0), c0 = total_audited(cs), cluster_cpu(cs)
        w, c, r, code = measured(sync, env={**os.environ, "PYTHONPATH": str(tree)}, cwd=tree)  # that tree's agent
        assert code == 0, code
        written, sent = total_audited(cs)
        rows.append((name, w, c, r, written - before, cluster_cpu(cs) - c0, sent - s0))
    if first_only:
        return rows
    base = f"http://127.0.0.1:{port}"
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
        env={**os.environ, "PYTHONPATH": str(tree)},
        cwd=tree,  # ``-m`` puts the working directory first on the module path
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "agent.log").open("wb"),
    )
    try:
        wait_ready(base, timeout=120)

        def clusters() -> list[dict[str, Any]]:
            with urllib.request.urlopen(f"{base}/api/v1/status?objects=false", timeout=30) as resp:
                return list(json.load(resp)["clusters"])

        def synced_after(t: str) -> list[dict[str, Any]] | None:
            cl = clusters()
            done = all(c["lastSync"] and c["lastSync"]["started"] > t and c["syncStatus"] == "Synced" for c in cl)
            return cl if done else None

        deadline = time.monotonic() + 600
        while synced_after("") is None and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2.0)  # watches settled
        (before, s0), c0 = total_audited(cs), cluster_cpu(cs)
        cpu0 = proc_cpu(agent.pid)
        t0 = datetime.datetime.now(datetime.UTC).isoformat()
        urllib.request.urlopen(urllib.request.Request(f"{base}/api/v1/sync", method="POST"), timeout=30).close()
        while (cl := synced_after(t0)) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert cl is not None, "the running agent did not finish its resync"
        wall = max(c["lastSync"]["durationSeconds"] for c in cl)
        written, sent = total_audited(cs)
        row = (
            "gitops-agent run: resync in the running agent (watch cache)",
            wall,
            proc_cpu(agent.pid) - cpu0,
            peak_rss(agent.pid),
            written - before,
            cluster_cpu(cs) - c0,
            sent - s0,
        )
        rows.append(row)
        status_polls(base, agent.pid)  # after the row's figures: the full status of 50,000 objects is megabytes
    finally:
        agent.terminate()
        agent.wait(30)
    return rows


def status_polls(base: str, pid: int, times: int = 5) -> None:
    """Print the size, the median wall time and the agent's mean CPU time of ``times`` GETs of the full status
    and of the fleet summary (the clusters may still be busy, so wall time can exceed the agent's CPU time)."""
    for query in ("", "?objects=false"):
        sizes, walls = [], []
        cpu0 = proc_cpu(pid)
        for _ in range(times):
            t0 = time.perf_counter()
            with urllib.request.urlopen(f"{base}/api/v1/status{query}", timeout=60) as resp:
                sizes.append(len(resp.read()))
            walls.append(time.perf_counter() - t0)
        cpu = (proc_cpu(pid) - cpu0) / times
        wall = sorted(walls)[len(walls) // 2]
        print(
            f"GET /api/v1/status{query}: {sizes[-1]} bytes, median of {times}: {1000 * wall:.1f} ms, "
            f"agent CPU {1000 * cpu:.0f} ms per GET",
            flush=True,
        )


def _median(rows: list[Row]) -> Row:
    """The row of the round with the median wall time (its other figures come from that same round)."""
    return sorted(rows, key=lambda r: r[1])[len(rows) // 2]


def run_size(
    objects: int,
    clusters: int,
    rounds: int,
    skip_baselines: bool,
    compare_rate_limit: bool = False,
    validated_only: bool = False,
    untimed: bool = False,
) -> tuple[int, list[Row]]:
    """Every contender ``rounds`` times at one size; (objects per cluster, the median round of each row).
    ``validated_only``: the validated limit and the agent's first sync alone; ``untimed``: with it, the validated
    limit without timeouts too."""
    files = generate(objects)
    total = sum(len(f) for f in files)
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
            for d in [tmp / "cache", *(tmp / f"{tag}{i}" for i in range(clusters))]:
                shutil.rmtree(d, ignore_errors=True)  # every round starts from empty clusters and no clone
            if PIN is not None:  # the clusters' processes inherit the CPUs of the thread that starts them
                os.sched_setaffinity(0, PIN[1])
            try:
                cs = [TestCluster.start(f"{tag}{i}", tmp / f"{tag}{i}") for i in range(clusters)]
            finally:
                if PIN is not None:
                    os.sched_setaffinity(0, PIN[0])
            time.sleep(3.0)  # start-up work of the controllers done
            return cs

        first_only = compare_rate_limit or validated_only
        contenders: list[tuple[str, Any]] = [("g", lambda cs: agent_rows(repo, tmp, cs, first_only=first_only))]
        if validated_only:
            contenders.insert(0, ("v", lambda cs: [limit_row(files, cs, validated=True)]))
            if untimed:
                contenders.insert(1, ("n", lambda cs: [limit_row(files, cs, validated=True, timeouts=False)]))
            if BEFORE is not None:
                before = BEFORE
                contenders.append(("b", lambda cs: agent_rows(repo, tmp, cs, first_only=True, tree=before)))
        elif compare_rate_limit:  # the default rate limit against none, interleaved in each round
            contenders.append(("u", lambda cs: agent_rows(repo, tmp, cs, unlimited=True, first_only=True)))
        if not skip_baselines and not validated_only:
            contenders = [
                ("k", lambda cs: [kubectl_row(repo, cs)]),
                ("l", lambda cs: [limit_row(files, cs, timeouts=False)]),
                ("v", lambda cs: [limit_row(files, cs, validated=True)]),
                *contenders,
            ]
        done_rounds: list[list[Row]] = []
        for r in range(rounds):
            ran: dict[str, list[Row]] = {}
            # With the validated limit alone against the agent, odd rounds run the agent first: whatever drifts
            # through a session (the machine's other load, the page cache) weighs on both sides alike.
            order = contenders[::-1] if validated_only and r % 2 else contenders
            for tag, run in order:
                cs = fresh(tag)
                try:
                    ran[tag] = run(cs)
                finally:
                    for tc in cs:
                        tc.stop()
            done_rounds.append([row for tag, _ in contenders for row in ran[tag]])
    rows = [_median([r[i] for r in done_rounds]) for i in range(len(done_rounds[0]))]
    if rounds > 1:
        print(f"medians of {rounds} rounds; wall times per round:")
        for i, row in enumerate(done_rounds[0]):
            print(f"  {row[0]}: " + ", ".join(f"{r[i][1]:.2f}" for r in done_rounds))
    print(f"objects per cluster: {total}; clusters: {clusters}")
    print(
        "| run | wall (s) | CPU (s) | peak RSS (MiB) | writes | write requests, dry runs included "
        "| client CPU per request (ms) | clusters' CPU (s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, w, c, r, n, cc, sent in rows:
        cpu = f"{c:.2f}" if c is not None else "-"
        rss = f"{r:.0f}" if r is not None else "-"
        per = f"{1000 * c / sent:.3f}" if c is not None and sent else "-"
        print(f"| {name} | {w:.2f} | {cpu} | {rss} | {n} | {sent} | {per} | {cc:.1f} |")
    if validated_only and rounds > 1:
        for base in (VALIDATED, VALIDATED_UNTIMED)[: 1 + untimed]:
            for name in (FIRST, FIRST_BEFORE)[: 1 + (BEFORE is not None)]:
                ratios = [per_request_ratio(done, name, base) for done in done_rounds]
                print(
                    f"CPU per request, {name} / {base}, per round: "
                    + ", ".join(f"{x:.2f}" for x in ratios)
                    + f"; median {statistics.median(ratios):.2f}"
                )
    by = {row[0]: row for row in rows}
    validated, first = by.get(VALIDATED), by.get(FIRST)
    if validated and first and validated[2] and first[2] and validated[6] and first[6]:
        per_v, per_a = validated[2] / validated[6], first[2] / first[6]
        print(
            f"first sync / validated limit: wall {first[1] / validated[1]:.2f}, CPU {first[2] / validated[2]:.2f}, "
            f"CPU per request {per_a / per_v:.2f}"
        )
    if compare_rate_limit:
        limited, free = rows[-2][1], rows[-1][1]
        print(f"first sync with the default rate limit / without one: {limited / free:.3f}")
    elif not skip_baselines and not validated_only:
        kubectl, limit, _, first, noop, running = (row[1] for row in rows)
        print(
            f"first sync / kubectl: {first / kubectl:.2f}; first sync / API limit: {first / limit:.2f}; "
            f"API limit / kubectl: {limit / kubectl:.2f}; no-op resync / kubectl: one-shot {noop / kubectl:.3f}, "
            f"running agent {running / kubectl:.4f}"
        )
    print(flush=True)
    return total, rows


def per_request_ratio(rows: list[Row], name: str = FIRST, base: str = VALIDATED) -> float:
    """The CPU per write request of the row ``name`` over the row ``base``'s (the validated limit), in one round's
    rows."""
    by = {row[0]: row for row in rows}
    (_, _, cpu_v, _, _, _, sent_v), (_, _, cpu_a, _, _, _, sent_a) = by[base], by[name]
    if not (cpu_v and sent_v and cpu_a and sent_a):
        raise ValueError("a round without the CPU or the requests of one side")
    return (cpu_a / sent_a) / (cpu_v / sent_v)


def growth_table(results: list[tuple[int, int, list[Row]]]) -> None:
    """One line per size: wall times, the ratios to the baselines, and milliseconds per object and cluster."""
    print(
        "| objects x clusters | kubectl (s) | API limit (s) | first sync (s) | / kubectl | / limit "
        "| ms per object-cluster | one-shot resync (s) | / kubectl | running resync (s) | resync writes "
        "| agent CPU, first (s) | running agent RSS (MiB) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for total, clusters, rows in results:
        by = {r[0]: r for r in rows}
        first, noop = by["gitops-agent sync (first)"], by["gitops-agent sync (no-op resync, one-shot process)"]
        running = by["gitops-agent run: resync in the running agent (watch cache)"]
        kubectl = next((r[1] for r in rows if r[0].startswith("kubectl")), None)
        limit = next((r[1] for r in rows if r[0].startswith("API limit")), None)

        def ratio(a: float, b: float | None) -> str:
            return f"{a / b:.2f}" if b else "-"

        print(
            f"| {total} x {clusters} | {_seconds(kubectl)} | {_seconds(limit)} | {first[1]:.2f}"
            f" | {ratio(first[1], kubectl)} | {ratio(first[1], limit)}"
            f" | {1000 * first[1] / (total * clusters):.2f} | {noop[1]:.2f}"
            f" | {ratio(noop[1], kubectl)} | {running[1]:.2f} | {noop[4] + running[4]} | {first[2]:.1f}"
            f" | {running[3]:.0f} |"
        )


def marginal_table(results: list[tuple[int, int, list[Row]]]) -> None:
    """The CPU each extra request costs the agent and the validated limit, between the smallest and the largest
    size of the same cluster count: (CPU at the larger - CPU at the smaller) / (requests at the larger - at the
    smaller). What a process pays once (interpreter start, imports, the clone, TLS handshakes) drops out."""
    for clusters in sorted({c for _, c, _ in results}):
        sized = sorted((total, rows) for total, c, rows in results if c == clusters)
        if len(sized) < 2:
            continue
        (small, low), (big, high) = sized[0], sized[-1]
        per = {}
        for name in (VALIDATED, FIRST):
            a, b = next(r for r in low if r[0] == name), next(r for r in high if r[0] == name)
            assert a[2] is not None
            assert b[2] is not None
            per[name] = (b[2] - a[2]) / (b[6] - a[6])
        print(
            f"{clusters} cluster(s), {small} -> {big} objects each: marginal CPU per request, validated limit "
            f"{1e6 * per[VALIDATED]:.0f} us, agent {1e6 * per[FIRST]:.0f} us: {per[FIRST] / per[VALIDATED]:.2f}x"
        )


def _seconds(wall: float | None) -> str:
    return f"{wall:.2f}" if wall is not None else "-"  # a baseline skipped with --skip-baselines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", default="2000", help="objects per cluster; a comma list runs every size")
    ap.add_argument("--clusters", default="3", help="clusters; a comma list runs every count")
    ap.add_argument("--skip-baselines", action="store_true", help="only the agent's rows")
    ap.add_argument("--rounds", type=int, default=1, help="rounds of every contender, interleaved; medians shown")
    ap.add_argument(
        "--validated-only",
        action="store_true",
        help="the validated limit (a dry run, then the apply, per object) and the agent's first sync alone",
    )
    ap.add_argument(
        "--untimed-baseline",
        action="store_true",
        help="with --validated-only: the validated limit without timeouts too (blocking sockets, the older rows)",
    )
    ap.add_argument(
        "--pin",
        action="store_true",
        help="the test clusters on every CPU but the first, the client measured on the first alone",
    )
    ap.add_argument(
        "--compare-rate-limit",
        action="store_true",
        help="the agent's first sync with the default rate limit and with none (sync.qps: 0), interleaved",
    )
    ap.add_argument(
        "--tree",
        type=pathlib.Path,
        default=REPO,
        help="the checkout of the agent to measure (a worktree of an older commit): before and after in one session",
    )
    ap.add_argument(
        "--before",
        type=pathlib.Path,
        help="with --validated-only: another checkout's first sync in the same rounds (before and after interleaved)",
    )
    args = ap.parse_args()
    if args.before and not args.validated_only:
        ap.error("--before runs beside the validated limit: add --validated-only")
    if args.untimed_baseline and not args.validated_only:
        ap.error("--untimed-baseline runs beside the validated limit: add --validated-only")
    global TREE, BEFORE, PIN
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            ap.error("--pin needs two CPUs or more")
        PIN = {cpus[0]}, set(cpus[1:])
        os.sched_setaffinity(0, PIN[0])
    TREE = args.tree.resolve()
    BEFORE = args.before.resolve() if args.before else None
    print(
        f"tree: {TREE}"
        + (f"; before: {BEFORE}" if BEFORE else "")
        + (f"; pinned: client {PIN[0]}, clusters {PIN[1]}" if PIN else "")
    )
    # The agent runs from bytecode, as installed (a wheel's install, the image): a checkout under
    # PYTHONDONTWRITEBYTECODE=1 would compile every module from source at each start (0.13 s of CPU here).
    for package in ("agent", "reconcilers"):
        for tree in (TREE, BEFORE) if BEFORE else (TREE,):
            compileall.compile_dir(tree / package, quiet=1)
    results = []
    for objects in (int(x) for x in args.objects.split(",")):
        for clusters in (int(x) for x in args.clusters.split(",")):
            total, rows = run_size(
                objects,
                clusters,
                args.rounds,
                args.skip_baselines,
                args.compare_rate_limit,
                args.validated_only,
                args.untimed_baseline,
            )
            results.append((total, clusters, rows))
    if len(results) > 1 and args.validated_only:
        marginal_table(results)
    elif len(results) > 1:
        growth_table(results)


if __name__ == "__main__":
    main()

"""Scale-out: three ``gitops-agent run`` replicas share five real clusters through Leases in a home cluster; each
cluster is reconciled by exactly one replica, a killed replica's clusters move to the others within the lease
duration, and a replica stopped with SIGTERM hands its clusters over at once."""

from __future__ import annotations

import datetime
import itertools
import signal
import time
import uuid
from typing import Any

from tests.conftest import GitRepo, audit_events, cluster_entry, live_object, wait_until
from tests.e2e.test_faults import Agent, cm
from tests.e2e.test_run_status import free_port
from tests.e2e.test_sync_corpora import ensure_namespace

LEASE_DURATION, RETRY_PERIOD = 4.0, 0.5


def owned(agents: dict[str, Agent]) -> dict[str, set[str]] | None:
    """Replica -> the clusters its status API says it reconciles; None until every replica sees exactly the
    replicas of ``agents`` as members."""
    views = {r: a.status()["sharding"] for r, a in agents.items()}
    if any(v["members"] != sorted(agents) for v in views.values()):
        return None
    return {r: set(v["owned"]) for r, v in views.items()}


def leases(home: Any, namespace: str) -> dict[str, Any]:
    from tests.conftest import dynamic_client

    api = dynamic_client(home).resources.get(api_version="coordination.k8s.io/v1", kind="Lease")
    return {item.metadata.name: item.to_dict() for item in api.get(namespace=namespace).items}


def writers(tc: Any, namespace: str) -> list[str]:
    """The replicas that wrote objects to ``namespace`` in ``tc``, in time order (from the audit log's user
    agents)."""
    return [replica for _, replica in _writes(tc, namespace, 0)]


def test_three_replicas_share_five_clusters_and_take_over_from_a_killed_one(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, tmp_path: Any
) -> None:
    tcs = clusters(5)
    home = tcs[0]
    ensure_namespace(home, namespace)  # the Leases' namespace
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    git_repo.write_objects("app/app.yaml", ns, cm("shared", namespace, rev="1"))
    git_repo.commit("rev 1")
    names = [f"c{i}" for i in range(5)]
    entries = [cluster_entry(tc, n, ["app"]) for n, tc in zip(names, tcs, strict=True)]
    instance = f"shard-{uuid.uuid4().hex[:8]}"
    agents: dict[str, Agent] = {}
    try:
        for r in ("r1", "r2", "r3"):
            config = make_config(
                git_repo,
                entries,
                instance=instance,
                source={
                    "url": str(git_repo.path),
                    "ref": "main",
                    "cacheDir": str(tmp_path / f"cache-{r}"),
                    "interval": "1s",
                },
                sync={"interval": "1h"},
                server={"listen": f"127.0.0.1:{free_port()}"},
                sharding={
                    "homeCluster": {"kubeconfig": str(home.kubeconfig)},
                    "namespace": namespace,
                    "identity": r,
                    "leaseDuration": f"{LEASE_DURATION}s",
                    "renewDeadline": "3s",
                    "retryPeriod": f"{RETRY_PERIOD * 1000:.0f}ms",
                },
            )
            agents[r] = Agent(config, tmp_path / f"{r}.log")
        for a in agents.values():
            a.wait_ready()

        def settled(live: dict[str, Agent]) -> dict[str, set[str]] | None:
            """Every cluster reconciled by exactly one live replica, Synced, its Lease held by that replica."""
            now = owned(live)
            if now is None:
                return None
            every = [c for cs in now.values() for c in cs]
            if sorted(every) != names:  # each once: no cluster twice, none missing
                return None
            held = {
                lease["metadata"]["name"]: lease["spec"].get("holderIdentity")
                for lease in leases(home, namespace).values()
            }
            for r, cs in now.items():
                for c in cs:
                    if held.get(f"{instance}-cluster-{c}") != r or live[r].cluster(c)["syncStatus"] != "Synced":
                        return None
            return now

        wait_until(lambda: settled(agents) is not None, timeout=90)
        for tc in tcs:
            assert live_object(tc, "v1", "ConfigMap", "shared", namespace)["data"] == {"rev": "1"}
        before = settled(agents)
        assert before is not None
        status = agents["r1"].status()["sharding"]
        assert status["error"] is None

        # SIGKILL the replica holding the most clusters: no release, its Leases must expire.
        victim = max(before, key=lambda r: len(before[r]))
        agents[victim].proc.send_signal(signal.SIGKILL)
        agents[victim].proc.wait(10)
        killed_at = time.monotonic()
        survivors = {r: a for r, a in agents.items() if r != victim}
        wait_until(lambda: settled(survivors) is not None, timeout=60, interval=0.1)
        moved_after = time.monotonic() - killed_at
        print(f"clusters of the killed replica {victim} ({sorted(before[victim])}) moved after {moved_after:.2f}s")
        # A Lease expires leaseDuration after its last change is observed; the takers look every retryPeriod.
        assert moved_after <= LEASE_DURATION + 2 * RETRY_PERIOD + 1.5, moved_after

        # The survivors keep every cluster at the newest commit.
        git_repo.write_objects("app/app.yaml", ns, cm("shared", namespace, rev="2"))
        git_repo.commit("rev 2")
        for tc in tcs:
            wait_until(
                lambda tc=tc: (
                    (live_object(tc, "v1", "ConfigMap", "shared", namespace) or {}).get("data") == {"rev": "2"}
                )
            )

        # SIGTERM releases the Leases: the last replica takes over at its next look, well within leaseDuration.
        leaving, staying = sorted(survivors)
        assert agents[leaving].stop() == 0
        stopped_at = time.monotonic()
        wait_until(lambda: settled({staying: agents[staying]}) is not None, timeout=30, interval=0.1)
        assert time.monotonic() - stopped_at < LEASE_DURATION, time.monotonic() - stopped_at

        # Exactly one writer at a time: in each cluster's audit log the writing replica changes no more often
        # than its Lease changed holders (two replicas writing at once would interleave).
        final = leases(home, namespace)
        for name, tc in zip(names, tcs, strict=True):
            seq = writers(tc, namespace)
            assert seq, name
            changes = sum(1 for a, b in itertools.pairwise(seq) if a != b)
            transitions = final[f"{instance}-cluster-{name}"]["spec"]["leaseTransitions"]
            assert changes <= transitions, (name, seq, transitions)
    finally:
        for a in agents.values():
            if a.proc.poll() is None:
                a.stop()


def test_a_missing_lease_namespace_is_named_and_no_cluster_is_taken(clusters: Any, namespace: str) -> None:
    from agent import config
    from agent.runtime import leases

    (home,) = clusters(1)
    cfg = config.ShardingConfig.model_validate(
        {"homeCluster": {"kubeconfig": str(home.kubeconfig)}, "namespace": namespace, "identity": "r1"}
    )
    taken: list[set[str]] = []
    coordinator = leases.Coordinator(cfg, "missing-ns", ["c0", "c1"], taken.append)
    coordinator.tick()
    status = coordinator.status()
    assert status["owned"] == []
    assert taken == []
    assert f'namespaces "{namespace}" not found' in status["error"]


def _writes(tc: Any, namespace: str, since: int) -> list[tuple[str, str]]:
    """(time received, replica) of every write into ``namespace`` of ``tc`` after byte ``since`` of its audit
    log, in time order (dry runs and the home cluster's Leases, written by every replica, left out)."""
    out = []
    for e in audit_events(tc, since):
        agent, uri = str(e.get("userAgent", "")), str(e.get("requestURI", ""))
        leases_ = "/apis/coordination.k8s.io/" in uri
        if "; replica " in agent and f"/namespaces/{namespace}/" in uri and "dryRun" not in uri and not leases_:
            out.append((str(e["requestReceivedTimestamp"]), agent.split("; replica ", 1)[1].rstrip(")")))
    return sorted(out)


def test_a_frozen_holder_never_writes_once_its_lease_moved(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, tmp_path: Any
) -> None:
    """SIGSTOP the replica holding a cluster in the middle of a sync of 3,000 objects, let its Lease expire and
    the other replica take over, SIGCONT it while the new holder is still syncing: the target's audit log shows no
    write of the old replica between the new holder's first and last write, and the old replica reports its sync
    as cancelled."""
    from agent.runtime import leases as leases_
    from tests.conftest import audit_offset

    home, target = clusters(2)
    ensure_namespace(home, namespace)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    git_repo.write_objects("app/app.yaml", ns, cm("seed", namespace))
    git_repo.commit("seed")
    instance = f"fence-{uuid.uuid4().hex[:8]}"
    agents: dict[str, Agent] = {}
    try:
        for r in ("r1", "r2"):
            config = make_config(
                git_repo,
                [cluster_entry(target, "t", ["app"])],
                instance=instance,
                source={
                    "url": str(git_repo.path),
                    "ref": "main",
                    "cacheDir": str(tmp_path / f"cache-{r}"),
                    "interval": "1s",
                },
                sync={"interval": "1h", "concurrency": 4},
                server={"listen": f"127.0.0.1:{free_port()}"},
                sharding={
                    "homeCluster": {"kubeconfig": str(home.kubeconfig)},
                    "namespace": namespace,
                    "identity": r,
                    "leaseDuration": "4s",
                    "renewDeadline": "3s",
                    "retryPeriod": "500ms",
                },
            )
            agents[r] = Agent(config, tmp_path / f"{r}.log")
        for a in agents.values():
            a.wait_ready()

        def holder() -> str | None:
            """The one replica holding t, once both see both as members (no hand-over pending) and t is Synced."""
            views = {r: a.status() for r, a in agents.items()}
            if any(v["sharding"]["members"] != sorted(agents) for v in views.values()):
                return None
            owners = [r for r, v in views.items() if "t" in v["sharding"]["owned"]]
            if owners != [leases_.owner("t", sorted(agents))]:  # the rendezvous winner: no hand-over pending
                return None
            return owners[0] if views[owners[0]]["clusters"][0]["syncStatus"] == "Synced" else None

        old = wait_until(holder, timeout=60)
        new = next(r for r in agents if r != old)
        since = audit_offset(target)
        git_repo.write_objects(
            "app/app.yaml", ns, cm("seed", namespace), *(cm(f"n-{i:04d}", namespace) for i in range(3000))
        )
        git_repo.commit("3,000 objects")
        wait_until(
            lambda: sum(1 for _, r in _writes(target, namespace, since) if r == old) >= 100, timeout=60, interval=0.02
        )
        agents[old].proc.send_signal(signal.SIGSTOP)
        try:
            wait_until(lambda: any(r == new for _, r in _writes(target, namespace, since)), timeout=60, interval=0.05)
        finally:
            agents[old].proc.send_signal(signal.SIGCONT)  # while the new holder is in the middle of its sync
            resumed = datetime.datetime.now(datetime.UTC)
        # The Lease may come back to the old replica afterwards (rendezvous hashing picks one of the two): any
        # holder will do, once the whole desired set is live and synced.
        wait_until(
            lambda: live_object(target, "v1", "ConfigMap", "n-2999", namespace) is not None and holder(),
            timeout=180,
            interval=0.5,
        )
        writes = _writes(target, namespace, since)
        by_new = [i for i, (_, r) in enumerate(writes) if r == new]
        between = [w for w in writes[by_new[0] : by_new[-1] + 1] if w[1] == old]
        # A request that had passed the fence when SIGSTOP froze the replica (one per request thread at most:
        # sync.concurrency is 4) goes out when it resumes: no client-side fence can call it back. No other may.
        in_flight = resumed + datetime.timedelta(seconds=2)
        late = [w for w in between if datetime.datetime.fromisoformat(w[0]) > in_flight]
        assert late == [], f"{len(late)} write(s) of the old holder while the new one held the Lease"
        assert len(between) <= 4, f"{len(between)} writes of the old holder in flight at the freeze"
        assert sum(1 for _, r in writes if r == old) >= 100
        log = agents[old].log.read_text()
        assert "cancelled: lease of cluster t" in log, log[-3000:]
        for tc_name in ("n-0000", "n-2999"):
            assert live_object(target, "v1", "ConfigMap", tc_name, namespace) is not None
    finally:
        for a in agents.values():
            if a.proc.poll() is None:
                a.stop()

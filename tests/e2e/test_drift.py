"""Drift against real clusters: zero false drift and zero writes on resync for every public corpus folder, the
watch cache answering resyncs without per-object requests, and the cache re-listing after 410 Gone."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import (
    GitRepo,
    agent_writes,
    audit_offset,
    cluster_entry,
    dynamic_client,
    runner_for,
    wait_until,
)
from tests.e2e.test_sync_corpora import FOLDERS, HARNESS, corpus_paths, ensure_namespace


@pytest.mark.parametrize("folder", FOLDERS)
def test_three_resyncs_after_a_sync_report_no_drift_and_write_nothing(
    folder: str, corpora_repo: GitRepo, clusters: Any, make_config: Any, namespace: str
) -> None:
    (tc,) = clusters(1)
    ensure_namespace(tc, namespace)
    config = make_config(
        corpora_repo, [cluster_entry(tc, "a", corpus_paths(folder), namespace)], instance=f"drift-{namespace}"
    )
    runner, revision, checkout = runner_for(config)
    try:
        first = runner.reconcile(revision, checkout)
        assert first.error is None, first.error
        applied = {e.key for e in first.entries if e.action.value in ("created", "configured", "unchanged")}
        wait_until(lambda: all(runner.live.get(k) is not None for k in applied))
        assert runner.kube is not None
        assert runner.inventories is not None
        wait_until(lambda: inventories_caught_up(runner))
        rejected_stage = [e.key for e in first.entries if e.action.value in ("failed", "skipped")]
        # read live before their dry run: objects with ignored fields (an HPA's target); read after it: objects that
        # exist (e.g. made by another test)
        read = sum(1 for k in rejected_stage if first.desired[k].pointers or runner.kube.get(k) is not None)
        offset, before = audit_offset(tc), Counter(runner.kube.requests)
        for _ in range(3):
            again = runner.reconcile(revision, checkout)
            actions = Counter(e.action.value for e in again.entries)
            if folder == HARNESS:  # its rejected stage is validated again, and still rejected
                assert actions == Counter({"unchanged": 2, "failed": 3, "skipped": 6})
            else:
                assert actions == Counter({"unchanged": len(first.entries)}), again.entries
        sent = Counter(runner.kube.requests) - before
        assert agent_writes(tc, offset) == []
        assert sent["apply"] == 0
        assert sent["delete"] == 0
        # An app proven unchanged is proven from the inventory watch: no LIST, one GET of /version instead (the
        # server must answer each sync; counted as discovery). A sync with a rejected stage is not remembered as
        # good, so its resyncs LIST the inventories (one LIST for every path of the cluster). CRDs created by the
        # first sync change discovery, so the first resync loads the app again (a chart's .Capabilities may
        # differ); the manifests it loads are the same by content (their digest), so it is proven all the same.
        assert sent["list"] == (3 if folder == HARNESS else 0)
        pings = 3 - sent["list"]
        if folder == HARNESS:  # the rejected stage's 9 objects are dry-run again, and read live only when needed
            # (a dry-run create needs no GET)
            assert sent["apply-dry-run"] == 3 * 9
            assert sent["get"] == 3 * read
        else:  # no per-object GET, no dry run
            assert sent["get"] == 0
            assert sent["discovery"] == pings
            assert sent["apply-dry-run"] == 0
    finally:
        runner.close()


def inventories_caught_up(runner: Any) -> bool:
    """The runner's inventory watch holds every inventory ConfigMap of its instance at its current version."""
    from reconcilers import inventory

    selector = inventory.Tracking(runner.cfg.instance, "").inventory_selector
    stored = {
        (m["metadata"]["name"], m["metadata"]["resourceVersion"])
        for m in runner.kube.list_objects("", "ConfigMap", selector)[0]
    }
    seen = runner.inventories.snapshot()
    held = {(m["metadata"]["name"], m["metadata"]["resourceVersion"]) for m in seen or ()}
    return bool(stored) and stored <= held


def test_cache_relists_after_410_gone_and_keeps_watching(
    git_repo: GitRepo, make_config: Any, namespace: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster whose etcd is compacted every 2 s and whose API server restarted answers a watch from an old
    resourceVersion with 410 Expired: the cache must LIST again and keep watching."""
    from agent import config
    from agent.clusters import cache
    from agent.clusters import kubeconfig as agent_clusters
    from reconcilers import resources
    from tests.cluster.launcher import TestCluster

    args = ["--apiserver-arg=--etcd-compaction-interval=2s"]
    tc = TestCluster.start("compacting", tmp_path / "compacting", args)
    try:
        ensure_namespace(tc, namespace)
        cms = dynamic_client(tc).resources.get(api_version="v1", kind="ConfigMap")
        for i in range(3):
            cms.create(
                namespace=namespace, body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"}}
            )
        time.sleep(3)  # let a compaction pass
        tc.restart(args)
        cfg = config.load_config(make_config(git_repo, [cluster_entry(tc, "a", ["x"])]))
        kube = agent_clusters.connect(cfg.clusters[0])
        real_list = kube.list_pages
        calls: list[str] = []

        def stale_first(group: str, kind: str, selector: str, **kw: Any) -> Iterator[tuple[list[Any], str]]:
            for items, rv in real_list(group, kind, selector, **kw):
                if rv:  # the last page: the first watch starts before the compacted revision
                    calls.append(rv)
                    rv = "1" if len(calls) == 1 else rv
                yield items, rv

        monkeypatch.setattr(kube, "list_pages", stale_first)
        events: list[Any] = []
        live = cache.LiveCache(kube, f"relist={namespace}", "gitops-agent", lambda k, o: events.append(k))
        try:
            live.ensure([("", "ConfigMap")], watch=True)
            wait_until(lambda: len(calls) >= 2)  # 410 Gone -> LIST again
            cms = dynamic_client(tc).resources.get(api_version="v1", kind="ConfigMap")
            cms.create(
                namespace=namespace,
                body={
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "seen", "labels": {"relist": namespace}},
                },
            )
            key = resources.ResourceKey("", "ConfigMap", namespace, "seen")
            wait_until(lambda: live.get(key) is not None)
            assert key in events
            assert "managedFields" in live.get(key)["metadata"]
            assert "data" not in live.get(key)  # lean entries: metadata only
        finally:
            live.stop()
    finally:
        tc.stop()


def test_the_live_cache_lists_page_by_page(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A LIST larger than a page is read in pages (``limit``/``continue``), each reduced to its entries before
    the next is asked for, and the cache ends with every object and a watch from the list's resourceVersion."""
    from agent.clusters import cache
    from reconcilers import resources

    (tc,) = clusters(1)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    cms = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}", "namespace": namespace}}
        for i in range(7)
    ]
    git_repo.write_objects("app/app.yaml", ns, *cms)
    git_repo.commit()
    config = make_config(git_repo, [cluster_entry(tc, "a", ["app"])])
    runner, revision, checkout = runner_for(config)
    try:
        assert runner.reconcile(revision, checkout).ok
    finally:
        runner.close()
    monkeypatch.setattr(cache, "LIST_PAGE_SIZE", 3)
    runner, revision, checkout = runner_for(config)
    kube, live = runner._connect()
    real_pages = kube.list_pages
    pages: list[tuple[int, str, int]] = []  # (page size, resourceVersion, entries cached before the page)

    def recorded(group: str, kind: str, selector: str, **kw: Any) -> Iterator[tuple[list[Any], str]]:
        for items, rv in real_pages(group, kind, selector, **kw):
            if kind == "ConfigMap":
                pages.append((len(items), rv, sum(k.kind == "ConfigMap" for k in list(live._objects))))
            yield items, rv

    monkeypatch.setattr(kube, "list_pages", recorded)
    try:
        live.ensure([("", "ConfigMap")], watch=True)
        assert [(n, bool(rv)) for n, rv, _ in pages] == [(3, False), (3, False), (1, True)]
        assert all(before == 0 for _, _, before in pages)  # entries are stored once the whole list is read
        assert len(live) == 7
        key = resources.ResourceKey("", "ConfigMap", namespace, "c0")
        listed = live.get(key)
        assert listed is not None
        dynamic_client(tc).resources.get(api_version="v1", kind="ConfigMap").patch(
            name="c0", namespace=namespace, body={"data": {"k": "v"}}, content_type="application/merge-patch+json"
        )  # the watch, started from the last page's resourceVersion, sees the edit
        wait_until(lambda: live.get(key)["metadata"]["resourceVersion"] != listed["metadata"]["resourceVersion"])
    finally:
        runner.close()


def test_the_live_cache_keeps_metadata_only_for_kinds_without_health_and_still_sees_drift(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str
) -> None:
    """Secrets and ConfigMaps are watched as PartialObjectMetadata: the cache holds no live data of theirs, keeps
    only our field manager's fieldsV1, and an out-of-band edit of a Secret is still drift (self-heal restores it)."""
    from reconcilers import diff, resources

    (tc,) = clusters(1)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": namespace},
        "data": {"token": "Z2l0"},
    }
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    git_repo.write_objects("app/app.yaml", ns, secret)
    git_repo.commit()
    config = make_config(git_repo, [cluster_entry(tc, "a", ["app"])], sync={"selfHeal": True})
    runner, revision, checkout = runner_for(config)
    key = resources.ResourceKey("", "Secret", namespace, "s")
    try:
        assert runner.reconcile(revision, checkout).ok
        cached = wait_until(lambda: runner.live.get(key))
        assert "data" not in cached
        assert (cached["apiVersion"], cached["kind"]) == ("v1", "Secret")
        assert runner.kube is not None
        assert runner.live is not None
        items, _ = runner.kube.list_objects("", "Secret", runner.live.selector, metadata_only=True)
        assert [(i["apiVersion"], i["kind"], "data" in i) for i in items] == [("v1", "Secret", False)]
        entries = cached["metadata"]["managedFields"]
        assert [e["manager"] for e in entries if "fieldsV1" in e] == ["gitops-agent"]
        # lean entries: no labels, annotations or uid; our fieldsV1 kept as its JSON text, hashed like the object's
        assert set(cached["metadata"]) <= {"name", "namespace", "resourceVersion", "generation", "managedFields"}
        assert all(isinstance(e["fieldsV1"], str) for e in entries if "fieldsV1" in e)
        full = runner.kube.get(key)
        assert diff.owned_hash(cached, "gitops-agent") == diff.owned_hash(full, "gitops-agent") != ""
        assert diff.owned_hash(cached, "gitops-agent", [("data", "token")]) == diff.owned_hash(
            full, "gitops-agent", [("data", "token")]
        )
        secrets = dynamic_client(tc).resources.get(api_version="v1", kind="Secret")
        secrets.patch(
            name="s",
            namespace=namespace,
            body={"data": {"token": "b3V0"}},
            content_type="application/merge-patch+json",
            field_manager="intruder",
        )
        wait_until(lambda: secrets.get(name="s", namespace=namespace).data.token == "Z2l0")
    finally:
        runner.close()


def test_stopping_the_live_cache_ends_its_watches_at_once(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str
) -> None:
    """A stopped cache shuts its open watches down: the watch threads end at once, not at the next event or the
    watch's timeout (a removed cluster or a shut-down fleet leaves no thread holding its cache)."""
    import threading

    from agent import config
    from agent.clusters import cache
    from agent.clusters import kubeconfig as agent_clusters

    (tc,) = clusters(1)
    git_repo.write_objects("x/cm.yaml", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
    git_repo.commit()
    cfg = config.load_config(make_config(git_repo, [cluster_entry(tc, "a", ["x"])]))
    kube = agent_clusters.connect(cfg.clusters[0])
    live = cache.LiveCache(kube, f"quiet={namespace}", "gitops-agent", None)
    live.ensure([("", "ConfigMap"), ("apps", "Deployment")], watch=True)

    def watching() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("watch-a-") and t.is_alive()]

    wait_until(lambda: len(watching()) == 2)
    time.sleep(0.5)  # the watches are open and idle: nothing matches the selector
    t0 = time.monotonic()
    live.stop()
    wait_until(lambda: not watching(), timeout=5)
    assert time.monotonic() - t0 < 3


def test_a_proven_no_op_resync_skips_the_engine_and_any_doubt_takes_the_full_path(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A running agent's resync of an unchanged app is proven from what it knows (same manifests, inventory as
    recorded, every object passing the quick check in the live cache) without the engine; an out-of-band edit,
    an inventory written by someone else, or a new commit sends it down the engine's full path, which sees the
    drift and corrects it."""
    from agent import config
    from agent.sources import git as git_
    from agent.sync import cluster as runner_
    from reconcilers import engine as engine_
    from reconcilers import resources
    from tests.conftest import live_object

    (tc,) = clusters(1)
    cms = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}", "namespace": namespace},
            "data": {"v": "git"}} for i in range(3)]  # fmt: skip
    git_repo.write_objects("app/ns.yaml", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    git_repo.write_objects("app/cms.yaml", *cms)
    git_repo.commit()
    cfg = config.load_config(make_config(git_repo, [cluster_entry(tc, "a", ["app"])]))
    source = git_.GitSource(cfg.default_source)
    revision = source.fetch()
    engine_runs: list[str] = []
    real = engine_.reconcile

    def counted(*args: Any, **kwargs: Any) -> Any:
        engine_runs.append("run")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine_, "reconcile", counted)
    r = runner_.ClusterSync(cfg, cfg.clusters[0], watch=True)
    try:
        with source.tree(revision) as tree:
            assert r.reconcile(revision, tree).ok
            time.sleep(1)  # the watch has seen the writes
            for _ in range(2):
                before, sent = len(engine_runs), Counter(r.kube.requests)
                again = r.reconcile(revision, tree)
                assert again.ok
                assert again.counts["unchanged"] == 4
                assert len(engine_runs) == before  # proven unchanged: no engine run
                # from the watches: no request but the one that shows the API server answers
                assert Counter(r.kube.requests) - sent == Counter({"discovery": 1})
            # the second resync proved the cluster in one pass (as the first left it); an object deleted out of
            # band since is not in the live cache, so that proof fails and the unit's engine run creates it again
            assert r.memory.proof.last is not None
            dynamic_client(tc).resources.get(api_version="v1", kind="ConfigMap").delete(name="c2", namespace=namespace)
            c2 = resources.ResourceKey("", "ConfigMap", namespace, "c2")
            wait_until(lambda: r.live.get(c2) is None)
            before = len(engine_runs)
            recreated = r.reconcile(revision, tree)
            assert len(engine_runs) == before + 1
            assert [(e.key.name, e.action.value) for e in recreated.entries if e.action.value != "unchanged"] == [
                ("c2", "created")
            ]
            wait_until(lambda: r.live.get(c2) is not None and inventories_caught_up(r))
            assert r.reconcile(revision, tree).counts["unchanged"] == 4  # proven unit by unit, then in one pass
            assert r.memory.proof.last is not None
            assert r.inventories is not None
            r.inventories.lost()  # as after a watch error: until it lists again, a resync LISTs the inventories
            before, sent = len(engine_runs), Counter(r.kube.requests)
            assert r.reconcile(revision, tree).counts["unchanged"] == 4
            assert len(engine_runs) == before
            assert Counter(r.kube.requests) - sent == Counter({"list": 1})
            dynamic_client(tc).resources.get(api_version="v1", kind="ConfigMap").patch(
                name="c1", namespace=namespace, body={"data": {"v": "edited"}},
                content_type="application/merge-patch+json", field_manager="someone",
            )  # fmt: skip
            key = resources.ResourceKey("", "ConfigMap", namespace, "c1")
            wait_until(lambda: (r.live.get(key) or {}).get("metadata", {}).get("managedFields") and any(
                f.get("manager") == "someone" for f in r.live.get(key)["metadata"]["managedFields"]))  # fmt: skip
            before = len(engine_runs)
            healed = r.reconcile(revision, tree)
            assert len(engine_runs) == before + 1
            assert [(e.key.name, e.action.value) for e in healed.entries if e.action.value != "unchanged"] == [
                ("c1", "configured")
            ]
            assert live_object(tc, "v1", "ConfigMap", "c1", namespace)["data"] == {"v": "git"}
            inventories = dynamic_client(tc).resources.get(api_version="v1", kind="ConfigMap")
            (found,) = inventories.get(
                namespace="gitops-agent", label_selector=f"gitops-agent.io/instance-inventory={cfg.instance}"
            ).items
            inventories.delete(name=found.metadata.name, namespace="gitops-agent")  # someone else's write
            # the inventory watch, like the live cache, sees it a moment later
            assert r.inventories is not None
            wait_until(
                lambda: not any(m["metadata"]["name"] == found.metadata.name for m in r.inventories.snapshot() or [])
            )
            before = len(engine_runs)
            assert r.reconcile(revision, tree).ok
            assert len(engine_runs) == before + 1
            assert live_object(tc, "v1", "ConfigMap", found.metadata.name, "gitops-agent") is not None
    finally:
        r.close()

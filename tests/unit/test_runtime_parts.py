"""The runtime's parts that need no cluster: the bounded git fetch against a server that accepts and never
answers (and one that refuses), checkout trees held while read, the cancellation token, the CA file, and the
refusal to serve the API unauthenticated on a non-loopback address."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agent import config
from agent.clusters import kubeconfig
from agent.sources import git, trees
from reconcilers import cancel, errors
from tests.conftest import wait_until


@pytest.fixture
def stalled_server() -> Iterator[int]:
    """A TCP server on loopback that accepts every connection and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.parametrize("scheme", ["http", "git"])
def test_a_fetch_from_a_server_that_never_answers_ends_at_the_timeout(
    stalled_server: int, tmp_path: pathlib.Path, scheme: str
) -> None:
    source = git.GitSource(
        config.SourceConfig(
            url=f"{scheme}://127.0.0.1:{stalled_server}/fleet.git", timeout=2, cache_dir=str(tmp_path / "c")
        )
    )
    started = time.monotonic()
    with pytest.raises(errors.FetchError, match=r"no answer within source.timeout \(2s\)"):
        source.fetch()
    took = time.monotonic() - started
    assert 2 <= took < 5, took
    assert source.last_good is None
    assert "no answer" in (source.last_error or "")


def test_a_refused_connection_fails_at_once_with_the_reason(tmp_path: pathlib.Path) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now: connection refused
    source = git.GitSource(
        config.SourceConfig(url=f"http://127.0.0.1:{port}/fleet.git", timeout=30, cache_dir=str(tmp_path / "c"))
    )
    started = time.monotonic()
    with pytest.raises(errors.FetchError) as caught:
        source.fetch()
    assert time.monotonic() - started < 10
    assert "no answer within" not in str(caught.value)
    assert f"127.0.0.1:{port}" in str(caught.value)


def test_a_stop_ends_a_stalled_fetch_at_once(stalled_server: int, tmp_path: pathlib.Path) -> None:
    source = git.GitSource(
        config.SourceConfig(url=f"http://127.0.0.1:{stalled_server}/f.git", timeout=60, cache_dir=str(tmp_path / "c"))
    )
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    with pytest.raises(errors.FetchError, match="shutting down"):
        source.fetch(stop)
    assert time.monotonic() - started < 3


def _write(into: pathlib.Path) -> None:
    into.mkdir()
    (into / "a.yaml").write_text("a: 1\n")


def test_a_held_tree_is_never_evicted_in_this_process_or_another(tmp_path: pathlib.Path) -> None:
    cache = trees.Trees(tmp_path / "trees", keep=1)
    with cache.hold("held-here", _write) as here:
        # Another process holds a second tree (as a `gitops-agent sync` beside `run` would).
        with cache.hold("held-there", _write):
            pass
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_SH);"
                " print('held', flush=True); time.sleep(60)",
                str(tmp_path / "trees" / "held-there.lock"),
            ],
            stdout=subprocess.PIPE,
        )
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == b"held"
            for i in range(4):  # each new tree evicts all but the newest unheld one
                with cache.hold(f"new-{i}", _write):
                    pass
            assert (here / "a.yaml").read_text() == "a: 1\n"
            assert (tmp_path / "trees" / "held-there" / "a.yaml").exists()
            assert cache.held("held-there")
            assert cache.held("held-here")
            assert not (tmp_path / "trees" / "new-0").exists()
        finally:
            holder.kill()
            holder.wait()
    with cache.hold("last", _write):
        pass
    assert not (tmp_path / "trees" / "held-here").exists()  # let go: evicted like any other
    assert not (tmp_path / "trees" / "held-there").exists()


def test_a_failed_tree_write_leaves_nothing_behind(tmp_path: pathlib.Path) -> None:
    cache = trees.Trees(tmp_path / "trees")

    def broken(into: pathlib.Path) -> None:
        into.mkdir()
        raise errors.FetchError("revision gone")

    with pytest.raises(errors.FetchError), cache.hold("gone", broken):
        pass
    assert sorted(p.name for p in (tmp_path / "trees").iterdir() if not p.name.endswith(".lock")) == []


def test_the_token_names_the_first_reason_and_asks_its_guard() -> None:
    fenced: list[str] = []
    token = cancel.Token(lambda: fenced[0] if fenced else None)
    token.check()
    fenced.append("lease of cluster a not renewed for 11.0s")
    with pytest.raises(errors.CancelledError, match="not renewed"):
        token.check()
    token.cancel("shutting down")
    assert token.reason == "lease of cluster a not renewed for 11.0s"
    other = cancel.Token()
    threading.Timer(0.1, other.cancel, ["stop"]).start()
    started = time.monotonic()
    assert other.wait(10)
    assert time.monotonic() - started < 2


def test_the_ca_file_is_private_random_and_complete() -> None:
    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    path = kubeconfig._ca_file(pem)
    assert path.read_bytes() == pem
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.parent.name.startswith("gitops-agent-ca-")
    assert path.parent.name != "gitops-agent-ca-"
    assert kubeconfig._ca_file(pem) == path
    assert os.stat(path).st_uid == os.getuid()


@pytest.mark.parametrize(
    ("listen", "extra", "refused"),
    [
        ("0.0.0.0:8080", {}, True),
        ("[::]:8080", {}, True),
        ("agent.example.com:8080", {}, True),
        ("0.0.0.0:8080", {"allowUnauthenticated": True}, False),
        ("0.0.0.0:8080", {"token": {"env": "T"}}, False),
        ("0.0.0.0:8080", {"apiTokens": [{"name": "ci", "token": {"env": "T"}}]}, False),
        ("0.0.0.0:8080", {"oidc": {"issuer": "https://dex.example.com", "clientID": "agent"}}, False),
        ("127.0.0.1:8080", {}, False),
        ("localhost:8080", {}, False),
        ("[::1]:8080", {}, False),
    ],
)
def test_an_open_listen_address_needs_a_token(
    listen: str, extra: dict[str, object], refused: bool, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.api import server
    from agent.runtime import fleet

    monkeypatch.setenv("T", "secret")
    cfg = config.AgentConfig.model_validate(
        {
            "source": {"url": str(tmp_path), "cacheDir": str(tmp_path / "c")},
            "clusters": [{"name": "a", "kubeconfig": str(tmp_path / "k"), "paths": ["x"]}],
            "server": {"listen": listen, **extra},
        }
    )
    if refused:
        with pytest.raises(errors.ConfigError, match=r"neither server\.token, server\.apiTokens nor server\.oidc"):
            server.create_app(fleet.Fleet(cfg))
    else:
        server.create_app(fleet.Fleet(cfg))


def test_self_heal_forgets_objects_that_left_git() -> None:
    """A fight (and the counters and inventory entries) of an object git no longer holds ends with it: its
    status is no longer OutOfSync for ever, and the maps stay bounded by the desired set (kustomize's
    hash-suffixed ConfigMaps come and go)."""
    import datetime

    from agent.sync import selfheal
    from reconcilers import apply, engine, inventory, resources

    def desired(name: str) -> tuple[resources.ResourceKey, apply.Desired]:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "n"}}
        m = resources.Manifest(resources.ResourceKey.of(body), body, "app/a.yaml", 0, "app")
        return m.key, apply.Desired(m, f"hash-{name}")

    def result(*names: str) -> engine.ReconcileResult:
        pairs = dict(desired(n) for n in names)
        now = datetime.datetime.now(datetime.UTC)
        entries = {k: inventory.Entry(k, d.hash, "owned") for k, d in pairs.items()}
        return engine.ReconcileResult("a", None, (), now, 0.0, desired=pairs, inventory=entries)

    healer = selfheal.Healer("a", None, apply.ApplyOptions())  # type: ignore[arg-type]  # never writes here
    try:
        healer.update(result("cm-1", "cm-2"))
        gone, _ = desired("cm-2")
        healer.fights[gone] = selfheal.Fight(gone, "kubectl", 6, 0.0)
        assert healer.status()["fighting"]
        healer.update(result("cm-1", "cm-3"))  # cm-2 left git
        assert healer.status()["fighting"] == []
        assert set(healer._entries) == {desired("cm-1")[0], desired("cm-3")[0]}
    finally:
        healer.stop()


class _Host:
    """A fleet stand-in for one worker: a fixed revision, a tree, and the results recorded."""

    def __init__(self) -> None:
        from reconcilers import resources

        self.revision = resources.Revision("a" * 40, "main")
        self.recorded: list[Any] = []

    def revisions_for(self, cluster: str) -> Any:
        return {"default": self.revision}

    @contextlib.contextmanager
    def trees(self, revisions: Any) -> Iterator[dict[str, pathlib.Path]]:
        yield {"default": pathlib.Path("/nonexistent")}

    def record(self, result: Any, healed: int) -> None:
        self.recorded.append(result)

    def late(self, cluster: str, seconds: float) -> None:
        pass

    def started(self, cluster: str, revision: Any) -> None:
        pass


class _BlockingRunner:
    """Syncs until its token is cancelled (a cluster frozen mid-sync), counting its syncs."""

    def __init__(self, started: threading.Semaphore) -> None:
        self.started = started
        self.syncs = 0
        self.closed = False

    kube = None
    cfg = None

    def retry_of(self, app: str) -> None:
        return None

    def reconcile(
        self,
        revisions: Any,
        checkout: Any,
        *,
        wait: Any = None,
        cancel: Any = None,
        kind: Any = None,
        selected: Any = None,
    ) -> Any:
        import datetime

        from reconcilers import engine

        revision = revisions["default"]
        self.syncs += 1
        self.started.release()
        now = datetime.datetime.now(datetime.UTC)
        if cancel.wait(0.3):
            return engine.ReconcileResult(
                "a", revision, (), now, 0.0, error=f"cancelled: {cancel.reason}", error_kind=engine.ErrorKind.CANCELLED
            )
        return engine.ReconcileResult("a", revision, (), now, 0.3)

    def status(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        self.closed = True


def test_a_worker_coalesces_triggers_and_pause_cancels_its_sync() -> None:
    from agent.runtime import worker
    from reconcilers import engine

    host, started = _Host(), threading.Semaphore(0)
    made: list[_BlockingRunner] = []

    def make(guard: Any) -> Any:
        made.append(_BlockingRunner(started))
        return made[-1]

    w = worker.Worker("a", host, make, interval=3600)
    w.start()
    try:
        w.trigger("api")
        assert started.acquire(timeout=5)
        for _ in range(5):  # five triggers during a sync: one more sync, not five
            w.trigger("webhook")
        assert started.acquire(timeout=5)
        assert not started.acquire(timeout=1)
        assert made[0].syncs == 2
        w.trigger("api")
        assert started.acquire(timeout=5)
        t0 = time.monotonic()
        assert w.pause("lease lost", timeout=5)
        assert time.monotonic() - t0 < 1
        assert made[0].closed
        assert host.recorded[-1].error_kind is engine.ErrorKind.CANCELLED
        assert host.recorded[-1].error == "cancelled: lease lost"
        w.trigger("api")  # paused: nothing runs until resumed
        assert not started.acquire(timeout=0.5)
        w.resume()
        assert started.acquire(timeout=5)
        assert len(made) == 2  # a fresh runner after the pause
    finally:
        assert w.stop("test over", timeout=5)
    assert w.state is worker.State.STOPPED


def test_sops_files_are_recognized_and_their_values_revealed_for_masking() -> None:
    from agent.sources import sops

    ciphertext = (
        b"apiVersion: ENC[AES256_GCM,data:AAAA,type:str]\nkind: ENC[AES256_GCM,data:BBBB,type:str]\n"
        b"metadata:\n  name: ENC[AES256_GCM,data:CCCC,type:str]\n"
        b"data:\n  token: ENC[AES256_GCM,data:DDDD,type:str]\n  plain: visible\n"
        b"sops:\n  mac: ENC[AES256_GCM,data:EEEE,type:str]\n  lastmodified: '2026-11-29T00:00:00Z'\n"
    )
    plaintext = (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  token: czNjcmV0LXZhbHVl\n  plain: visible\n"
    )
    assert sops.is_encrypted(ciphertext)
    assert sops.is_encrypted(b'{"data": {"a": "ENC[...]"}, "sops": {"mac": "ENC[...]"}}')
    assert not sops.is_encrypted(b"apiVersion: v1\nkind: ConfigMap\ndata:\n  sops: not metadata\n")
    revealed = set(sops._revealed(ciphertext, plaintext))
    # the encrypted value, its base64 form and (a Secret's data) its decoded form; never the object's identity
    assert revealed == {"czNjcmV0LXZhbHVl", "Y3pOamNtVjBMWFpoYkhWbA==", "s3cret-value"}
    assert "v1" not in revealed
    assert "db" not in revealed
    assert "visible" not in revealed


def test_decrypted_booleans_and_numbers_are_masked_as_json_shows_them() -> None:
    from agent.sources import sops

    ciphertext = b"spec:\n  pin: ENC[AES256_GCM,data:AAAA,type:int]\n  on: ENC[AES256_GCM,data:BBBB,type:bool]\n"
    revealed = set(sops._revealed(ciphertext, "spec:\n  pin: 4711\n  on: true\n"))
    assert {"4711", "true"} <= revealed  # what a diff or status prints of them


def test_decryption_on_a_cluster_needs_keys(tmp_path: pathlib.Path) -> None:
    base = {
        "source": {"url": str(tmp_path)},
        "clusters": [{"name": "a", "kubeconfig": "k", "paths": ["x"], "decryption": {"sops": True}}],
    }
    with pytest.raises(ValueError, match=r"decryption\.sops\.ageKeys"):
        config.AgentConfig.model_validate(base)
    cfg = config.AgentConfig.model_validate({**base, "decryption": {"sops": {"ageKeys": [{"env": "K"}]}}})
    assert cfg.clusters[0].decryption.sops


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"type": "slack", "url": "https://hooks.slack.com/services/T/B/x"}, "is a secret"),
        ({"type": "webhook"}, "needs url"),
        ({"type": "github"}, "needs token"),
        ({"type": "msteams", "url": "https://prod.westeurope.logic.azure.com/workflows/x"}, "Microsoft Teams webhook"),
        ({"type": "teams", "url": {"env": "X"}}, r"unknown notification type 'teams' \(known: slack, webhook, github"),
    ],
)
def test_a_notification_says_what_it_lacks(spec: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        config.Notification.model_validate({"name": "n", **spec})


def test_every_notification_kind_is_a_module_whose_format_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry's one line per kind is all it takes: each names a module whose ``make`` gives a Format."""
    from agent import notifier_kinds
    from agent.runtime.notify import channel

    monkeypatch.setenv("N_SECRET", "https://receiver.example/hook")
    for kind in notifier_kinds.KINDS.values():
        spec = config.Notification.model_validate(
            {"name": "n", "type": kind.name, "url": {"env": "N_SECRET"}, "token": {"env": "N_SECRET"}}
        )
        made = channel.format_of(spec, "https://git.example/acme/fleet.git", "i")
        assert made.base.startswith("https://"), kind.name


def test_a_reload_whose_notification_secret_is_missing_changes_nothing(tmp_path: pathlib.Path) -> None:
    from agent.runtime import fleet, reload

    base = {
        "source": {"url": str(tmp_path), "cacheDir": str(tmp_path / "c")},
        "clusters": [{"name": "a", "kubeconfig": str(tmp_path / "k"), "paths": ["x"]}],
    }
    path = tmp_path / "agent.yaml"
    path.write_text(json.dumps(base))
    agent = fleet.Fleet(config.load_config(path))
    before = agent.cfg
    hook = {"name": "audit", "type": "webhook", "url": "http://127.0.0.1:9/x", "secret": {"env": "NOT_SET_ANYWHERE"}}
    path.write_text(json.dumps({**base, "notifications": [hook]}))
    assert not reload.reload_once(agent, path)
    assert agent.cfg == before
    assert "NOT_SET_ANYWHERE" in (agent.state.source_json()["config"]["error"] or "")


def _rollout_config(tmp_path: pathlib.Path, rollout: bool) -> config.AgentConfig:
    return config.AgentConfig.model_validate(
        {
            "source": {"url": str(tmp_path), "cacheDir": str(tmp_path / "c")},
            "clusters": [{"name": n, "kubeconfig": str(tmp_path / "none"), "paths": ["x"]} for n in ("a", "b")],
            **({"rollout": {"order": ["a", "b"]}} if rollout else {}),
        }
    )


def test_the_rollout_loop_survives_an_exception_and_goes_on(tmp_path: pathlib.Path) -> None:
    """A step that raises (a bug) halts that rollout with the reason instead of ending the thread: the next
    revision still rolls out."""
    import datetime

    from agent.runtime import rollout
    from reconcilers import engine, health, resources

    calls: list[str] = []

    def run(name: str, revision: resources.Revision) -> engine.ReconcileResult:
        calls.append(f"{name}@{revision.sha[:1]}")
        if revision.sha.startswith("1"):
            raise RuntimeError("boom")
        now = datetime.datetime.now(datetime.UTC)
        return engine.ReconcileResult(name, revision, (), now, 0.0, health=health.Health.HEALTHY)

    r = rollout.Rollout(_rollout_config(tmp_path, True), run)  # no store: nothing to restore
    r.start()
    try:
        r.notify(resources.Revision("1" * 40, "main"))
        wait_until(lambda: r.state == "Halted", timeout=5)
        assert r.status_json()["message"] == "internal error: RuntimeError: boom"
        r.notify(resources.Revision("2" * 40, "main"))
        wait_until(lambda: r.state == "Complete" and r.revision and r.revision.sha.startswith("2"), timeout=5)
        assert calls == ["a@1", "a@2", "b@2"]
    finally:
        r.stop()


def test_a_reload_turns_rollout_off_and_on(tmp_path: pathlib.Path) -> None:
    from agent.runtime import fleet

    agent = fleet.Fleet(_rollout_config(tmp_path, True))
    assert agent.rollout is not None
    agent.apply_config(_rollout_config(tmp_path, False))  # used to trip an assertion
    assert agent.rollout is None
    assert agent.revision_for("a") is None  # the source's revision (none fetched yet), not a rollout target
    agent.apply_config(_rollout_config(tmp_path, True))
    assert agent.rollout is not None
    assert agent.rollout.status_json()["state"] == "Idle"
    agent.shutdown()


def test_pushes_for_a_stalled_source_keep_one_fetch_thread_and_fetch_once_more(tmp_path: pathlib.Path) -> None:
    """A source whose fetch hangs (a stalled remote, up to its timeout) while pushes keep coming: one on-demand
    fetch thread for it, one more fetch after it ends, and the other source's pushes fetch meanwhile."""
    from apscheduler.schedulers.background import BackgroundScheduler

    from agent.runtime import sourcing

    cfg = config.AgentConfig.model_validate(
        {
            "sources": {"slow": {"url": str(tmp_path / "slow")}, "fast": {"url": str(tmp_path / "fast")}},
            "clusters": [{"name": "a", "kubeconfig": "k"}],
            "apps": [{"name": "x", "source": "slow", "path": "."}, {"name": "y", "source": "fast", "path": "."}],
        }
    )
    release = threading.Event()
    calls: list[str] = []
    stopping = threading.Event()
    s = sourcing.Sources(cfg, BackgroundScheduler(), stopping, lambda: 0.01, lambda *a: None)

    def fake(name: str) -> Any:
        def fetch(stop: Any = None) -> Any:
            calls.append(name)
            if name == "slow":
                release.wait(10)
            return None

        return fetch

    for name, source in s.by_name.items():
        source.fetch = fake(name)  # type: ignore[method-assign]
    s.start_fetcher()
    try:
        for _ in range(20):
            s.fetch_soon(["slow"])
            time.sleep(0.02)
        s.fetch_soon(["fast"])
        wait_until(lambda: "fast" in calls, timeout=5)
        assert [t.name for t in threading.enumerate()].count("fetch-slow") == 1
        assert calls.count("slow") == 1
        release.set()
        wait_until(lambda: calls.count("slow") == 2, timeout=5)  # the pushes meanwhile: one fetch more
        time.sleep(0.3)
        assert calls.count("slow") == 2
    finally:
        release.set()
        stopping.set()


def test_a_fetch_cut_short_by_the_agents_stop_is_not_a_source_failure(tmp_path: pathlib.Path) -> None:
    """SIGTERM while a fetch is in flight: the fetch ends with an error because the agent stops, which says nothing
    of the source; no failure is recorded or told (a SourceFailed notification went out at every such stop). A
    fetch that fails while the agent runs is still told."""
    from apscheduler.schedulers.background import BackgroundScheduler

    from agent.runtime import sourcing
    from reconcilers import errors

    cfg = config.AgentConfig.model_validate(
        {"source": {"url": str(tmp_path / "repo")}, "clusters": [{"name": "a", "kubeconfig": "k", "paths": ["."]}]}
    )
    told: list[tuple[str, str | None]] = []
    stopping = threading.Event()
    s = sourcing.Sources(cfg, BackgroundScheduler(), stopping, lambda: 0.01, lambda n, b, r, e: told.append((n, e)))

    def fetch(stop: Any = None) -> Any:
        raise errors.FetchError("git fetch: cancelled" if stopping.is_set() else "git fetch: connection refused")

    for source in s.by_name.values():
        source.fetch = fetch  # type: ignore[method-assign]
    s.fetch()
    assert told == [("default", "git fetch: connection refused")]
    stopping.set()
    s._fetch("default", s.by_name["default"])  # a fetch in flight when the stop came
    assert told == [("default", "git fetch: connection refused")]


def test_an_apps_metrics_go_when_it_leaves_the_cluster() -> None:
    import datetime

    from agent.runtime import metrics
    from reconcilers import engine, resources

    now = datetime.datetime.now(datetime.UTC)
    rev = resources.Revision("a" * 40, "main")

    def cluster(*apps: str) -> engine.ReconcileResult:
        parts = tuple(engine.ReconcileResult("c", rev, (), now, 0.1, app=a) for a in apps)
        return engine.ReconcileResult("c", rev, (), now, 0.1, apps=parts)

    m = metrics.Metrics()
    m.reconciled(cluster("web", "api"), 0)
    text = m.exposition().decode()
    assert 'gitops_agent_app_sync_ok{app="web",cluster="c"} 1.0' in text
    assert 'gitops_agent_app_managed_objects{app="api",cluster="c"} 0.0' in text
    m.reconciled(cluster("api"), 0)
    text = m.exposition().decode()
    assert 'gitops_agent_app_sync_ok{app="web"' not in text
    assert 'gitops_agent_app_sync_ok{app="api",cluster="c"} 1.0' in text
    assert 'gitops_agent_app_syncs_total{app="api",cluster="c",result="succeeded"} 2.0' in text


def test_hook_runs_are_counted_per_app_phase_and_result() -> None:
    import datetime

    from agent.runtime import metrics
    from reconcilers import engine, hookrun, hooks, resources

    now = datetime.datetime.now(datetime.UTC)
    key = resources.ResourceKey("batch", "Job", "ns", "migrate-x1")
    runs = (
        hookrun.HookRun(key, hooks.Phase.PRE_SYNC, 0, "app/migrate.yaml#0", "Failed", "backoff limit"),
        hookrun.HookRun(key, hooks.Phase.SYNC_FAIL, 0, "app/cleanup.yaml#0", "Succeeded"),
    )
    app = engine.ReconcileResult("c", None, (), now, 0.1, app="web", hooks=runs)
    planned = engine.ReconcileResult("c", None, (), now, 0.1, dry_run=True, app="api", hooks=runs)
    m = metrics.Metrics()
    m.reconciled(engine.ReconcileResult("c", None, (), now, 0.1, apps=(app, planned)), 0)
    text = m.exposition().decode()
    assert 'gitops_agent_hook_runs_total{app="web",cluster="c",phase="PreSync",result="Failed"} 1.0' in text
    assert 'gitops_agent_hook_runs_total{app="web",cluster="c",phase="SyncFail",result="Succeeded"} 1.0' in text
    assert 'gitops_agent_hook_runs_total{app="api"' not in text  # a dry run runs no hook


def test_every_source_kind_opens_through_its_module(tmp_path: pathlib.Path) -> None:
    """One line per kind in agent.source_kinds is all it takes: each kind's ``make`` gives a Source; ``auto``
    picks local for a plain directory and git otherwise; an unknown type names the known ones."""
    from agent import source_kinds
    from agent.sources import registry

    urls = {"git": "https://git.example/acme/fleet.git", "local": str(tmp_path), "helm": "https://charts.example",
            "oci": "oci://registry.example/charts"}  # fmt: skip
    for kind in source_kinds.KINDS.values():
        spec = config.SourceConfig(url=urls[kind.name], type=kind.name, cache_dir=str(tmp_path / kind.name))
        opened = registry.open_source(spec)
        assert type(opened).__module__ == kind.module
        assert (opened.watched is not None) == (kind.name == "local")
    assert registry.kind_of(config.SourceConfig(url=str(tmp_path))).name == "local"
    assert registry.kind_of(config.SourceConfig(url=urls["git"])).name == "git"
    with pytest.raises(ValueError, match=r"unknown source type 'svn' \(known: auto, git, local, helm, oci\)"):
        config.SourceConfig(url=urls["git"], type="svn")


@pytest.mark.parametrize("wanted", [True, False], ids=["fetchPullRequestRefs", "branches-only"])
def test_pull_request_heads_from_forks_are_fetched_when_asked(tmp_path: pathlib.Path, wanted: bool) -> None:
    """A fork's pull request lives only under ``refs/pull/<n>/head`` (GitHub) or ``refs/merge-requests/<iid>/head``
    (GitLab) of the repository, on no branch: fetched, over a real git daemon, with ``fetchPullRequestRefs``."""
    from tests.conftest import GitRepo
    from tests.gitserver import GitDaemon

    repo = GitRepo(tmp_path / "served" / "fleet")
    repo.write("app/cm.yaml", "a: 1\n")
    repo.commit("main")
    repo.git("checkout", "-q", "-b", "fork")
    repo.write("app/cm.yaml", "a: 2\n")
    github = repo.commit("from a fork")
    repo.write("app/cm.yaml", "a: 3\n")
    gitlab = repo.commit("from another fork")
    repo.git("checkout", "-q", "main")
    repo.git("update-ref", "refs/pull/7/head", github)
    repo.git("update-ref", "refs/merge-requests/8/head", gitlab)
    repo.git("branch", "-q", "-D", "fork")
    daemon = GitDaemon(tmp_path / "served")
    try:
        source = git.GitSource(
            config.SourceConfig(
                url=f"git://127.0.0.1:{daemon.port}/fleet",
                cache_dir=str(tmp_path / "cache"),
                fetch_pull_request_refs=wanted,
            )
        )
        source.fetch()
        for sha in (github, gitlab):
            if wanted:
                assert source.resolve(sha).sha == sha
            else:
                with pytest.raises(errors.FetchError):
                    source.resolve(sha)
    finally:
        daemon.stop()

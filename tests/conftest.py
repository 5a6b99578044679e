"""Shared fixtures: real test clusters (``build/testcluster`` processes), temporary git repositories of desired
state, and helpers to read what the API server saw.

- ``clusters(n)``: the first ``n`` test clusters of the session, started on demand (session-scoped, always
  stopped at the end);
- ``namespace``: a fresh namespace name per test (the clusters' default namespace for objects that name none),
  so tests sharing a cluster do not see each other's objects;
- ``git_repo``: a :class:`GitRepo` in a temporary directory;
- ``make_config``: writes an agent config file for a repo and clusters, with an instance name of its own (each
  test is a separate agent, so inventories and tracking never mix between tests).
"""

from __future__ import annotations

import itertools
import json
import os
import pathlib
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from agent import kubeyaml
from tests.cluster.launcher import TestCluster

REPO = pathlib.Path(__file__).resolve().parents[1]
CORPORA = pathlib.Path(os.environ.get("GITOPS_AGENT_CORPORA", REPO.parent / "shared" / "corpora" / "public"))


class ClusterPool:
    """Test clusters started on demand and stopped at the end of the session."""

    def __init__(self, base: pathlib.Path) -> None:
        self.base = base
        self.started: list[TestCluster] = []

    def get(self, n: int) -> list[TestCluster]:
        while len(self.started) < n:
            i = len(self.started)
            self.started.append(TestCluster.start(f"tc{i}", self.base / f"tc{i}"))
        return self.started[:n]

    def stop_all(self) -> None:
        for c in self.started:
            c.stop()


@pytest.fixture(scope="session")
def cluster_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterPool]:
    pool = ClusterPool(tmp_path_factory.mktemp("clusters"))
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture
def clusters(cluster_pool: ClusterPool) -> Callable[[int], list[TestCluster]]:
    return cluster_pool.get


@pytest.fixture
def namespace() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


class GitRepo:
    """A git repository (plain git CLI, so the agent's pygit2 code is tested against real git)."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.email", "test@example.com")
        self.git("config", "user.name", "test")

    def git(self, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=self.path, check=True, capture_output=True, text=True).stdout.strip()

    def write(self, rel: str, content: str | bytes) -> pathlib.Path:
        target = self.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
        return target

    def write_objects(self, rel: str, *objects: dict[str, Any]) -> pathlib.Path:
        """Write ``objects`` as multi-document YAML that the agent and kubectl read back as they are."""
        return self.write(rel, kubeyaml.dump_all(objects))

    def copy_tree(self, src: pathlib.Path, rel: str) -> None:
        shutil.copytree(src, self.path / rel, dirs_exist_ok=True)

    def remove(self, rel: str) -> None:
        self.git("rm", "-rq", rel)

    def commit(self, message: str = "change") -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def git_repo(tmp_path: pathlib.Path) -> GitRepo:
    return GitRepo(tmp_path / "fleet")


@pytest.fixture(scope="session")
def corpora_repo(tmp_path_factory: pytest.TempPathFactory) -> GitRepo:
    """One git repo holding every folder of the public corpora, as published (read from ../shared)."""
    repo = GitRepo(tmp_path_factory.mktemp("corpora") / "fleet")
    for folder in sorted(p.name for p in CORPORA.iterdir() if p.is_dir()):
        repo.copy_tree(CORPORA / folder, folder)
    repo.commit("public corpora, as published")
    return repo


@pytest.fixture
def make_config(tmp_path: pathlib.Path) -> Callable[..., pathlib.Path]:
    counter = itertools.count()

    def make(repo: GitRepo | str, clusters: list[dict[str, Any]], **sections: Any) -> pathlib.Path:
        cfg: dict[str, Any] = {
            "instance": f"t-{uuid.uuid4().hex[:12]}",  # one agent identity per test: inventories never mix
            "source": {
                "url": str(repo.path if isinstance(repo, GitRepo) else repo),
                "ref": "main",
                "cacheDir": str(tmp_path / "cache"),
            },
            "clusters": clusters,
            **sections,
        }
        path = tmp_path / f"config-{next(counter)}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    return make


def cluster_entry(tc: TestCluster, name: str, paths: list[str], namespace: str = "default") -> dict[str, Any]:
    """A config ``clusters`` entry for a test cluster."""
    return {"name": name, "kubeconfig": str(tc.kubeconfig), "namespace": namespace, "paths": paths}


def audit_events(tc: TestCluster, since: int = 0) -> Iterator[dict[str, Any]]:
    """The events of ``tc``'s audit log (write requests) after byte offset ``since`` (see :func:`audit_offset`),
    stopping before a line the API server is still writing; a line it was writing when the offset was taken is
    left out (its request came before)."""
    log = tc.data_dir / "audit.log"
    if not log.exists():
        return
    with log.open("rb") as f:
        if since > 0:
            f.seek(since - 1)
            if f.read(1) != b"\n":  # the offset was taken while a line was being written: that event came before
                f.readline()
        else:
            f.seek(0)
        for line in f:
            if not line.endswith(b"\n"):
                return
            yield json.loads(line)


def agent_writes(tc: TestCluster, since: int = 0) -> list[dict[str, Any]]:
    """The write requests (create/update/patch/delete, not dry runs) the agent sent to ``tc``, from its audit
    log after byte offset ``since`` (see :func:`audit_offset`)."""
    return [
        event
        for event in audit_events(tc, since)
        if event.get("stage") == "ResponseComplete"
        and str(event.get("userAgent", "")).startswith("gitops-agent/")
        and "dryRun=All" not in event.get("requestURI", "")
    ]


def audit_offset(tc: TestCluster) -> int:
    """The current size of ``tc``'s audit log (pass it to :func:`agent_writes`)."""
    log = tc.data_dir / "audit.log"
    return log.stat().st_size if log.exists() else 0


def dynamic_client(tc: TestCluster) -> Any:
    """An official ``kubernetes`` DynamicClient for ``tc``: tests read live state through it, independently of
    the agent's own request code."""
    from kubernetes import config as kconfig
    from kubernetes import dynamic

    return dynamic.DynamicClient(kconfig.new_client_from_config(config_file=str(tc.kubeconfig)))


def live_object(tc: TestCluster, api_version: str, kind: str, name: str, namespace: str | None = None) -> Any:
    """The live object as a dict, or None when it does not exist."""
    from kubernetes.dynamic import exceptions

    client = dynamic_client(tc)
    try:
        resource = client.resources.get(api_version=api_version, kind=kind)
        return resource.get(name=name, namespace=namespace).to_dict()
    except (exceptions.NotFoundError, exceptions.ResourceNotFoundError):
        return None


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def runner_for(config_path: pathlib.Path, cluster: str = "a", *, watch: bool = True) -> tuple[Any, Any, Any]:
    """A ClusterSync for one cluster of a config file, with the source fetched: (runner, revision, checkout)."""
    from agent import config
    from agent.sources import git
    from agent.sync import cluster as runner

    cfg = config.load_config(config_path)
    source = git.GitSource(cfg.default_source)
    revision = source.fetch()
    held = source.tree(revision)
    _HELD.append(held)  # held (never evicted) for the rest of the session
    return runner.ClusterSync(cfg, cfg.cluster(cluster), watch=watch), revision, held.__enter__()


_HELD: list[Any] = []


def pytest_sessionfinish() -> None:
    """Let go of the trees :func:`runner_for` held."""
    while _HELD:
        _HELD.pop().__exit__(None, None, None)


def target_identity(
    tc: TestCluster, make_config: Callable[..., pathlib.Path], tmp_path: pathlib.Path
) -> tuple[pathlib.Path, str]:
    """Install manifests/agent-target/rbac.yaml in ``tc`` (as admin, through the agent) and return a kubeconfig
    that authenticates with its ServiceAccount token (a bearer-token kubeconfig), and the token."""
    import base64

    repo = GitRepo(tmp_path / "target-rbac")
    repo.copy_tree(REPO / "manifests" / "agent-target", "rbac")
    repo.commit("target rbac")
    admin, revision, checkout = runner_for(make_config(repo, [cluster_entry(tc, "admin", ["rbac"])]), "admin")
    try:
        assert admin.reconcile(revision, checkout).ok
    finally:
        admin.close()

    def token_secret() -> Any:
        s = live_object(tc, "v1", "Secret", "gitops-agent-token", "gitops-agent")
        return s if s and (s.get("data") or {}).get("token") else None

    token = base64.b64decode(wait_until(token_secret)["data"]["token"]).decode()
    kubeconfig = yaml.safe_load(tc.kubeconfig.read_text())
    kubeconfig["users"] = [{"name": "agent", "user": {"token": token}}]
    kubeconfig["contexts"][0]["context"]["user"] = "agent"
    path = tmp_path / "agent-kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    return path, token

"""Developer mode: a plain directory (no git) as the source. ``run`` watches it with watchfiles, so a saved file
reaches the cluster without a commit; ``sync`` reads it as it is; the revision is a digest of its content."""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys
from typing import Any

import yaml

from agent import config
from agent.sources import local, registry
from tests.conftest import cluster_entry, live_object, wait_until
from tests.e2e.test_push_to_deploy import request
from tests.e2e.test_run_status import free_port


def write(path: pathlib.Path, *docs: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs))


def test_a_saved_file_is_reconciled_without_a_commit(
    tmp_path: pathlib.Path, clusters: Any, make_config: Any, namespace: str
) -> None:
    (tc,) = clusters(1)
    work = tmp_path / "desired"
    write(work / "app" / "ns.yaml", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    port = free_port()
    cfg_path = make_config(
        str(work), [cluster_entry(tc, "a", ["app"])], server={"listen": f"127.0.0.1:{port}"}, sync={"interval": "1h"}
    )
    assert registry.is_local(config.load_config(cfg_path).source)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(cfg_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: live_object(tc, "v1", "Namespace", namespace) is not None, timeout=60)
        write(
            work / "app" / "cm.yaml",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "saved", "namespace": namespace},
                "data": {"v": "1"},
            },
        )
        wait_until(lambda: live_object(tc, "v1", "ConfigMap", "saved", namespace) is not None, timeout=20)
        write(
            work / "app" / "cm.yaml",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "saved", "namespace": namespace},
                "data": {"v": "2"},
            },
        )
        wait_until(lambda: live_object(tc, "v1", "ConfigMap", "saved", namespace)["data"] == {"v": "2"}, timeout=20)
        status = json.loads(request(f"http://127.0.0.1:{port}/api/v1/status")[1])
        assert status["source"]["revision"]["ref"] == "local"
        assert len(status["source"]["revision"]["sha"]) == 64
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_digest_follows_content(tmp_path: pathlib.Path) -> None:
    write(tmp_path / "d" / "a.yaml", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}})
    src = local.LocalSource(config.SourceConfig(url=str(tmp_path / "d"), cache_dir=str(tmp_path / "c")))
    first = src.fetch()
    assert src.fetch() == first
    with src.tree(first) as snapshot:
        (tmp_path / "d" / "a.yaml").write_text("changed: true\n")
        assert src.fetch() != first
        assert "ConfigMap" in (snapshot / "a.yaml").read_text()  # the snapshot of the old revision is untouched

"""Renders that run away fail their app alone, naming the render and the limit, while another app on the cluster
syncs: a chart whose template never ends and a kustomization whose remote resource never answers (a stalled proxy
on loopback) are stopped at the app's ``renderTimeout`` with every process they started; a template that
allocates without bound is stopped by ``render.memoryLimit``."""

from __future__ import annotations

import json
import pathlib
import subprocess
import time
from typing import Any

import pytest

from agent import cli
from tests.conftest import GitRepo, cluster_entry, live_object
from tests.gitserver import StallingProxy

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine}\ndata: {a: b}\n"


def _sync(config: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = cli.main(["sync", "--config", str(config), "--json"])
    return code, json.loads(capsys.readouterr().out)


def _chart(repo: GitRepo, rel: str, template: str) -> None:
    repo.write(f"{rel}/Chart.yaml", f"apiVersion: v2\nname: {rel.rsplit('/', 1)[-1]}\nversion: 0.1.0\n")
    repo.write(f"{rel}/templates/cm.yaml", template)


def _apps(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["app"]: a for a in result["apps"]}


def _running(marker: str) -> list[str]:
    """Command lines of processes still running whose arguments name ``marker``."""
    found = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout.splitlines()
    return [line for line in found if marker in line and "ps -eo" not in line]


@pytest.fixture
def stalled() -> Any:
    proxy = StallingProxy(1)  # nothing behind it: stalled, it accepts and never answers
    proxy.stall()
    yield proxy
    proxy.close()


def test_renders_that_never_end_fail_their_app_alone_within_render_timeout(
    clusters: Any,
    git_repo: GitRepo,
    make_config: Any,
    namespace: str,
    stalled: StallingProxy,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tc,) = clusters(1)
    _chart(git_repo, "charts/loop", "{{- range until 100000 }}{{ range until 100000 }}{{ end }}{{ end }}\n" + CM)
    git_repo.write("remote/kustomization.yaml", f"resources: ['http://127.0.0.1:{stalled.port}/cm.yaml']\n")
    git_repo.write("plain/cm.yaml", CM)
    git_repo.commit()
    config = make_config(
        git_repo,
        [{**cluster_entry(tc, "a", [], namespace), "labels": {}}],
        apps=[
            {"name": "loop", "path": "charts/loop", "renderTimeout": "3s", "createNamespace": True},
            {"name": "remote", "path": "remote", "renderTimeout": "3s"},
            {"name": "plain", "path": "plain", "createNamespace": True},
        ],
    )

    started = time.monotonic()
    code, results = _sync(config, capsys)
    took = time.monotonic() - started

    apps = _apps(results["a"])
    assert apps["loop"]["error"] == (
        "charts/loop: helm template of charts/loop did not finish in 3 s (renderTimeout): stopped"
    )
    assert apps["remote"]["error"] == "remote: kustomize build of remote did not finish in 3 s (renderTimeout): stopped"
    assert apps["plain"]["error"] is None
    assert live_object(tc, "v1", "ConfigMap", "fine", namespace)["data"] == {"a": "b"}
    assert code != 0
    assert took < 3 + 3 + 30, took  # both renders stopped at their timeout, not at a tool's own limit
    assert stalled.accepted_while_stalled >= 1  # kustomize did ask the remote
    assert _running("charts/loop") == []  # stopped with every process it started
    assert _running(f"{git_repo.path}/remote") == []


def test_a_render_that_allocates_without_bound_fails_on_the_memory_limit(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tc,) = clusters(1)
    doubling = '{{- $s := "0123456789abcdef" }}{{- range until 40 }}{{ $s = printf "%s%s" $s $s }}{{- end }}'
    _chart(git_repo, "charts/bomb", doubling + "\n" + CM)
    git_repo.write("plain/cm.yaml", CM)
    git_repo.commit()
    config = make_config(
        git_repo,
        [{**cluster_entry(tc, "a", [], namespace), "labels": {}}],
        apps=[
            {"name": "bomb", "path": "charts/bomb", "createNamespace": True},
            {"name": "plain", "path": "plain", "createNamespace": True},
        ],
        render={"memoryLimit": 256 * 1024 * 1024},
    )

    code, results = _sync(config, capsys)

    apps = _apps(results["a"])
    assert apps["bomb"]["error"] == (
        "charts/bomb: helm template of charts/bomb ran out of memory (render.memoryLimit: 256Mi): stopped"
    )
    assert apps["plain"]["error"] is None
    assert live_object(tc, "v1", "ConfigMap", "fine", namespace) is not None
    assert code != 0

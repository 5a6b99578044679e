"""The test-cluster launcher retries a first start whose ports another process took, and nothing else.

The stand-in binary is a shell script that behaves like ``build/testcluster`` at the edges the launcher sees:
it writes ports.json on a new data dir, then either fails the way a lost bind does or writes the kubeconfig.
"""

from __future__ import annotations

import pathlib
import stat

import pytest

from tests.cluster import launcher

FAKE = """#!/bin/sh
dir="$2"
echo run >> "$dir/runs"
[ -f "$dir/ports.json" ] || echo '{"API": 1}' > "$dir/ports.json"
if [ "$(wc -l < "$dir/runs")" -le "$(cat "$dir/fail_times")" ]; then
  echo "Error: failed to listen on 127.0.0.1:1: bind: $(cat "$dir/failure")"
  exit 1
fi
echo ready > "$dir/kubeconfig"
exec sleep 30
"""


@pytest.fixture
def fake_binary(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    script = tmp_path / "testcluster"
    script.write_text(FAKE)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(launcher, "BINARY", script)
    return script


def prepare(data_dir: pathlib.Path, fail_times: int, failure: str = "address already in use") -> None:
    data_dir.mkdir()
    (data_dir / "fail_times").write_text(str(fail_times))
    (data_dir / "failure").write_text(failure)


def runs(data_dir: pathlib.Path) -> int:
    return len((data_dir / "runs").read_text().splitlines())


def test_a_first_start_that_lost_its_port_is_retried_with_new_ports(
    fake_binary: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    data_dir = tmp_path / "tc0"
    prepare(data_dir, fail_times=2)
    cluster = launcher.TestCluster.start("tc0", data_dir)
    try:
        assert runs(data_dir) == 3
        assert cluster.kubeconfig.read_text() == "ready\n"
    finally:
        cluster.stop()


def test_retries_are_bounded(fake_binary: pathlib.Path, tmp_path: pathlib.Path) -> None:
    data_dir = tmp_path / "tc0"
    prepare(data_dir, fail_times=launcher.PORT_RETRIES + 1)
    with pytest.raises(RuntimeError, match="address already in use"):
        launcher.TestCluster.start("tc0", data_dir)
    assert runs(data_dir) == launcher.PORT_RETRIES + 1


def test_other_failures_and_restarts_are_not_retried(fake_binary: pathlib.Path, tmp_path: pathlib.Path) -> None:
    other = tmp_path / "other"
    prepare(other, fail_times=1, failure="permission denied")
    with pytest.raises(RuntimeError, match="permission denied"):
        launcher.TestCluster.start("other", other)
    assert runs(other) == 1

    restarted = tmp_path / "restarted"
    prepare(restarted, fail_times=1)
    (restarted / "ports.json").write_text('{"API": 6443}')  # a restart must keep its address
    with pytest.raises(RuntimeError, match="address already in use"):
        launcher.TestCluster.start("restarted", restarted)
    assert runs(restarted) == 1
    assert (restarted / "ports.json").read_text() == '{"API": 6443}'

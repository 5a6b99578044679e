"""Start and stop test clusters (``build/testcluster`` processes) from Python: used by the pytest fixtures in
tests/conftest.py and by examples/demo.py.

``TestCluster.start(data_dir)`` launches one process, waits for ``data_dir/kubeconfig`` (written once the API
server is ready and the fake node is registered) and returns; ``stop()`` sends SIGTERM and waits (SIGKILL after
a grace period). Output goes to ``data_dir/testcluster.log``.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
BINARY = pathlib.Path(os.environ.get("GITOPS_AGENT_TESTCLUSTER", REPO / "build" / "testcluster"))
START_TIMEOUT = 120.0
"""Seconds a cluster may take to become ready."""
PORT_RETRIES = 3
"""Times a first start is retried with new ports when another process took one of them first."""


class TestCluster:
    """One running test cluster: ``name``, ``data_dir``, ``kubeconfig`` path and ``process``."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str, data_dir: pathlib.Path, process: subprocess.Popen[bytes]) -> None:
        self.name = name
        self.data_dir = data_dir
        self.kubeconfig = data_dir / "kubeconfig"
        self.process = process

    @classmethod
    def start(cls, name: str, data_dir: pathlib.Path, extra_args: list[str] | None = None) -> TestCluster:
        """Launch a cluster on ``data_dir`` and wait until it is ready. Raises RuntimeError on failure.

        A new data dir gets free ports chosen by the process; another process can bind one of them before this one
        does, so a first start that fails with "address already in use" is retried (up to ``PORT_RETRIES`` times)
        with new ports. A restart keeps its ports.json and is never retried: its address must not change."""
        if not BINARY.is_file():
            raise RuntimeError(f"{BINARY} is missing: run 'make testcluster' first")
        data_dir.mkdir(parents=True, exist_ok=True)
        fresh = not (data_dir / "ports.json").exists()
        for attempt in range(PORT_RETRIES + 1):
            # A killed cluster leaves its kubeconfig behind; its presence must mean "this process is ready".
            (data_dir / "kubeconfig").unlink(missing_ok=True)
            log_start = (data_dir / "testcluster.log").stat().st_size if (data_dir / "testcluster.log").exists() else 0
            with (data_dir / "testcluster.log").open("ab") as log:
                proc = subprocess.Popen(
                    [str(BINARY), "--data-dir", str(data_dir), *(extra_args or [])],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                )
            cluster = cls(name, data_dir, proc)
            try:
                cluster.wait_ready()
                return cluster
            except RuntimeError:
                lost_port = "address already in use" in cluster.log_since(log_start)
                if not (fresh and lost_port and attempt < PORT_RETRIES):
                    raise
                cluster.stop()
                (data_dir / "ports.json").unlink(missing_ok=True)
        raise AssertionError("unreachable")

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait for the kubeconfig to appear. Raises RuntimeError when the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while not self.kubeconfig.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"testcluster {self.name} exited with {self.process.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"testcluster {self.name} not ready within {timeout:.0f}s: {self.log_tail()}")
            time.sleep(0.05)

    @property
    def server(self) -> str:
        """The API server URL from ports.json."""
        import json

        ports = json.loads((self.data_dir / "ports.json").read_text())
        return f"https://127.0.0.1:{ports['API']}"

    def restart(self, extra_args: list[str] | None = None) -> None:
        """Stop this cluster (if it still runs) and start it again on the same data dir, port and certificates;
        the new process replaces the old one in this object, so whoever holds it stops the right process."""
        self.stop()
        self.process = TestCluster.start(self.name, self.data_dir, extra_args).process

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_since(self, offset: int) -> str:
        """The cluster's log from byte ``offset`` on ("" when it cannot be read)."""
        try:
            with (self.data_dir / "testcluster.log").open("rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the cluster's log."""
        try:
            return "\n".join((self.data_dir / "testcluster.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

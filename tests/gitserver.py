"""A real git server on loopback for the runtime tests: ``git daemon`` serving a directory of repositories, and
a TCP proxy in front of it that can stop forwarding while still accepting connections (a stalled proxy or load
balancer: the way remotes commonly fail in production, unlike a refused connection)."""

from __future__ import annotations

import pathlib
import socket
import subprocess
import threading
import time


class GitDaemon:
    """``git daemon`` exporting every repository under ``base`` on a free loopback port."""

    def __init__(self, base: pathlib.Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.proc = subprocess.Popen(
            [
                "git",
                "daemon",
                "--reuseaddr",
                "--export-all",
                f"--base-path={base}",
                "--listen=127.0.0.1",
                f"--port={self.port}",
                str(base),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("git daemon did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class StallingProxy:
    """Forwards loopback TCP connections to ``upstream_port`` until :meth:`stall`; then accepts new connections
    and sends nothing either way (connections already open go silent too) until :meth:`forward`."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = int(self.server.getsockname()[1])
        self.stalled = threading.Event()
        self.accepted_while_stalled = 0
        self._closing = threading.Event()
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def stall(self) -> None:
        self.stalled.set()

    def forward(self) -> None:
        self.stalled.clear()

    def close(self) -> None:
        self._closing.set()
        self.server.close()
        for s in self._held:
            s.close()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self._held.append(client)
            if self.stalled.is_set():
                self.accepted_while_stalled += 1
                continue  # accepted, never answered
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            except OSError:
                client.close()
                continue
            self._held.append(upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                while self.stalled.is_set():  # hold what arrived: the connection goes silent
                    if self._closing.wait(0.1):
                        return
                dst.sendall(data)
        except OSError:
            return

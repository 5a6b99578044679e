"""A connection reset under a request, against a real API server behind a loopback TCP proxy that, once armed,
lets the next request through and resets the client's connection as the answer comes back: a server-side apply and
a DELETE with a UID precondition are sent again on a new connection and succeed; a POST is not (the server did it:
a second one would be refused), and fails naming the cluster."""

from __future__ import annotations

import contextlib
import pathlib
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from agent import config
from agent.clusters import kubeconfig
from reconcilers import errors, resources
from tests.conftest import live_object


class ResettingProxy:
    """Forwards loopback connections to ``target`` (host, port). After :meth:`arm`, the next connection that sends
    a request has it forwarded, and when the server's answer starts coming back the client's side is reset (SO_LINGER
    0: the client reads ECONNRESET) and the answer dropped: the server did the request, the client never learns
    how it ended."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.armed = 0
        self.resets = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, name="resetting-proxy", daemon=True).start()

    def arm(self, times: int = 1) -> None:
        with self._lock:
            self.armed = times

    def close(self) -> None:
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            doomed = threading.Event()  # this connection's request went out armed: reset it at the answer
            threading.Thread(target=self._requests, args=(client, upstream, doomed), daemon=True).start()
            threading.Thread(target=self._answers, args=(upstream, client, doomed), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, doomed: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if len(data) > 100 and self._take():  # a request (a TLS alert, such as close_notify, is ~30 bytes)
                    doomed.set()
                upstream.sendall(data)
            if doomed.is_set():  # woken by _answers: the last reference goes, and with SO_LINGER 0 that is an RST
                client.close()
                upstream.close()
                return
            upstream.shutdown(socket.SHUT_WR)

    def _answers(self, upstream: socket.socket, client: socket.socket, doomed: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if doomed.is_set():  # the answer never reaches the client
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    client.shutdown(socket.SHUT_RD)  # wakes _requests, which closes (a close here would not RST)
                    return
                client.sendall(data)
            client.shutdown(socket.SHUT_WR)

    def _take(self) -> bool:
        with self._lock:
            if self.armed <= 0:
                return False
            self.armed -= 1
            self.resets += 1
            return True


@pytest.fixture
def proxied(clusters: Any, tmp_path: pathlib.Path) -> Iterator[tuple[Any, Any, ResettingProxy]]:
    (tc,) = clusters(1)
    doc = yaml.safe_load(tc.kubeconfig.read_text())
    server = doc["clusters"][0]["cluster"]["server"]
    host, port = server.removeprefix("https://").rsplit(":", 1)
    proxy = ResettingProxy((host, int(port)))
    doc["clusters"][0]["cluster"]["server"] = f"https://{host}:{proxy.port}"  # the serving cert names the IP
    path = tmp_path / "through-proxy"
    path.write_text(yaml.safe_dump(doc))
    kube = kubeconfig.connect(config.ClusterConfig(name="reset", kubeconfig=str(path)))
    yield tc, kube, proxy
    kube.close()
    proxy.close()


def _cm(name: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": {}}


def test_idempotent_requests_are_sent_again_after_a_reset_and_a_post_is_not(
    proxied: tuple[Any, Any, ResettingProxy], namespace: str
) -> None:
    tc, kube, proxy = proxied
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    kube.request("POST", "/api/v1/namespaces", body=ns)
    assert kube.resource_type("", "ConfigMap") is not None  # discovery done: the next request is the one armed for

    proxy.arm()
    applied = kube.apply(_cm("applied", namespace), field_manager="reset-test", force=True, dry_run=False)
    assert applied["metadata"]["name"] == "applied"
    assert proxy.resets == 1
    assert kube.resent == 1
    assert live_object(tc, "v1", "ConfigMap", "applied", namespace) is not None

    proxy.arm()
    with pytest.raises(errors.ClusterUnreachableError, match=r"reset|aborted|closed|disconnected"):
        kube.create(_cm("posted", namespace), field_manager="reset-test")
    assert proxy.resets == 2
    assert kube.resent == 1  # not sent again: the server did create it, and a second POST would be refused
    assert live_object(tc, "v1", "ConfigMap", "posted", namespace) is not None

    proxy.arm()
    key = resources.ResourceKey.of(applied)
    kube.delete(key, uid=applied["metadata"]["uid"], propagation="Background")
    assert proxy.resets == 3
    assert live_object(tc, "v1", "ConfigMap", "applied", namespace) is None

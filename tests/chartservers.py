"""Chart servers on loopback, for the chart source tests: a Helm chart repository and an OCI registry.

- :class:`ChartRepo`: a directory of ``helm package`` archives and the ``index.yaml`` that ``helm repo index`` writes,
  served over HTTP; with ``username``/``password`` every request needs that HTTP basic auth (401 with a
  ``WWW-Authenticate: Basic`` challenge otherwise, as chart repositories behind basic auth answer);
  ``unreachable()`` closes it (connections refused).
- :class:`Registry`: go-containerregistry's registry (``build/registry``, built by ``make registry`` from its Go
  module), in memory, on a free port; charts are pushed with the real ``helm push``. With ``username``/``password``
  a basic-auth gate stands in front of it: requests without the credentials get 401 and
  ``WWW-Authenticate: Basic realm=...`` (the Docker registry v2 auth challenge), the others are forwarded.

Both record every ``Authorization`` header they refused, so tests can tell a request that carried no credentials
from one that carried wrong ones.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import os
import pathlib
import shutil
import socket
import subprocess
import threading
import time

from tests.conftest import REPO

HELM = str(REPO / ".venv" / "bin" / "helm")
REGISTRY = REPO / "build" / "registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def helm(*args: str, home: pathlib.Path, stdin: str = "") -> str:
    """Run the pinned helm with a private Helm home; its stdout (raises on failure, with Helm's message)."""
    env = {**os.environ, "HELM_CONFIG_HOME": str(home / "config"), "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_DATA_HOME": str(home / "data")}  # fmt: skip
    done = subprocess.run([HELM, *args], input=stdin, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def package(chart: pathlib.Path, into: pathlib.Path, home: pathlib.Path, version: str | None = None) -> pathlib.Path:
    """``helm package`` ``chart`` (at ``version`` when given) into ``into``; the archive's path."""
    into.mkdir(parents=True, exist_ok=True)
    out = helm("package", str(chart), "--destination", str(into), *(["--version", version] if version else []),
               home=home)  # fmt: skip
    return pathlib.Path(out.strip().rpartition(": ")[2])


class _Quiet(http.server.ThreadingHTTPServer):
    """A threading server that does not print a client's reset connection (helm closes some early)."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class ChartRepo:
    """A chart repository on a free loopback port serving ``root`` (``url``)."""

    def __init__(self, root: pathlib.Path, home: pathlib.Path, username: str = "", password: str = "") -> None:
        self.root, self.home = root, home
        root.mkdir(parents=True, exist_ok=True)
        self.expected = _basic(username, password) if username else ""
        self.refused: list[str] = []
        self.requests: list[str] = []
        repo = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

            def do_GET(self) -> None:
                repo.requests.append(self.path)
                if repo.expected and self.headers.get("Authorization") != repo.expected:
                    repo.refused.append(self.headers.get("Authorization") or "")
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="charts"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                super().do_GET()

            def log_message(self, *args: object) -> None:
                pass

        self.server = _Quiet(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, chart: pathlib.Path, version: str | None = None) -> pathlib.Path:
        """Package ``chart`` into the repository and index it again (``helm repo index``)."""
        archive = package(chart, self.root, self.home, version)
        helm("repo", "index", str(self.root), "--url", self.url, home=self.home)
        return archive

    def unreachable(self) -> None:
        """Stop serving: connections are refused from now on."""
        self.server.shutdown()
        self.server.server_close()


class Registry:
    """go-containerregistry's in-memory registry on a free loopback port (``host``), behind a basic-auth gate
    when ``username`` is given; ``url`` is ``oci://<host>/charts``."""

    def __init__(self, home: pathlib.Path, username: str = "", password: str = "") -> None:
        self.home = home
        backend = free_port()
        self.proc = subprocess.Popen([str(REGISTRY), "-port", str(backend)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", backend), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("build/registry did not start (make registry)") from None
                time.sleep(0.05)
        self.refused: list[str] = []
        self.gate: http.server.ThreadingHTTPServer | None = None
        port = backend
        if username:
            self.gate = _gate(backend, _basic(username, password), self.refused)
            port = self.gate.server_address[1]
        self.host = f"127.0.0.1:{port}"
        self.url = f"oci://{self.host}/charts"
        self._credentials = (username, password)

    def push(self, archive: pathlib.Path) -> None:
        """``helm push`` ``archive`` to ``url`` (logged in first when the registry wants credentials)."""
        username, password = self._credentials
        if username:
            helm("registry", "login", self.host, "--username", username, "--password-stdin", "--plain-http",
                 home=self.home, stdin=password)  # fmt: skip
        helm("push", str(archive), self.url, "--plain-http", home=self.home)

    def stop(self) -> None:
        if self.gate is not None:
            self.gate.shutdown()
            self.gate.server_close()
        self.proc.terminate()
        self.proc.wait(10)


def _gate(backend: int, expected: str, refused: list[str]) -> http.server.ThreadingHTTPServer:
    """A basic-auth front of the registry on ``backend``: 401 with the registry's challenge without
    ``expected``, else the request forwarded as it is."""

    class Gate(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            if self.headers.get("Authorization") != expected:
                refused.append(self.headers.get("Authorization") or "")
                body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="registry"')
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "authorization")}
            conn = http.client.HTTPConnection("127.0.0.1", backend, timeout=30)
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() in ("transfer-encoding", "connection", "content-length"):
                    continue
                if k.lower() == "location" and v.startswith(f"http://127.0.0.1:{backend}"):
                    v = v.removeprefix(f"http://127.0.0.1:{backend}")
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()

        def do_GET(self) -> None:
            self._forward()

        def do_HEAD(self) -> None:
            self._forward()

        def do_PUT(self) -> None:
            self._forward()

        def do_POST(self) -> None:
            self._forward()

        def do_PATCH(self) -> None:
            self._forward()

        def log_message(self, *args: object) -> None:
            pass

    server = _Quiet(("127.0.0.1", 0), Gate)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def copy_chart(src: pathlib.Path, into: pathlib.Path) -> pathlib.Path:
    """A copy of the chart ``src`` (read from ../shared as published) to change or package."""
    shutil.copytree(src, into)
    return into

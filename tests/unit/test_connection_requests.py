"""KubeCluster's requests as a server behind a path (Rancher's ``/k8s/clusters/<id>``) receives them: the server
URL's own path kept, the query percent-encoded, the client's bearer token and the agent's User-Agent sent, a JSON
body encoded once. A loopback HTTP server records each request as it arrives."""

from __future__ import annotations

import http.server
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any, ClassVar

import kubernetes.client
import pytest

from agent.clusters import connection
from reconcilers import errors


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, Any]]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append(
            {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode(),
            }
        )
        if self.path.startswith("/moved"):  # a server URL that redirects (plain http to https, say)
            self.send_response(301)
            self.send_header("Location", "https://elsewhere.invalid/version")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = json.dumps({"kind": "Status", "ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer()

    def do_PATCH(self) -> None:
        self._answer()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Recorder.seen = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_requests_keep_the_servers_path_query_token_and_user_agent(server: str) -> None:
    cfg = kubernetes.client.Configuration()
    cfg.host = f"{server}/k8s/clusters/c-1/"
    cfg.api_key = {"authorization": "t0ken"}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    api = kubernetes.client.ApiClient(cfg)
    api.user_agent = connection.USER_AGENT
    kube = connection.KubeCluster("c", api)
    try:
        assert kube.request("GET", "/version") == {"kind": "Status", "ok": True}
        kube.request(
            "PATCH",
            "/api/v1/namespaces/ns/configmaps/a",
            query=[("fieldManager", "gitops-agent"), ("labelSelector", "app in (a,b)")],
            body={"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v ü"}},
            content_type="application/apply-patch+yaml",
        )
    finally:
        kube.close()

    first, second = _Recorder.seen
    assert first["path"] == "/k8s/clusters/c-1/version"
    assert first["headers"]["authorization"] == "Bearer t0ken"
    assert first["headers"]["user-agent"] == connection.USER_AGENT
    path, _, query = second["path"].partition("?")
    assert path == "/k8s/clusters/c-1/api/v1/namespaces/ns/configmaps/a"
    assert urllib.parse.parse_qsl(query) == [("fieldManager", "gitops-agent"), ("labelSelector", "app in (a,b)")]
    assert second["headers"]["content-type"] == "application/apply-patch+yaml"
    assert json.loads(second["body"]) == {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v ü"}}


def test_an_http_proxy_without_a_tunnel_is_sent_the_whole_url(server: str) -> None:
    """An API server on plain HTTP behind an HTTP proxy (``proxy-url`` in a kubeconfig): the proxy gets the
    absolute URL in the request line, as urllib3's pool manager sends it (RFC 9112, absolute-form)."""
    cfg = kubernetes.client.Configuration()
    cfg.host = "http://kube.invalid:6443/k8s/clusters/c-1"
    cfg.proxy = server  # the recorder plays the proxy
    kube = connection.KubeCluster("c", kubernetes.client.ApiClient(cfg))
    try:
        kube.request("GET", "/version", query=[("a", "b c")])
    finally:
        kube.close()
    (seen,) = _Recorder.seen
    assert seen["path"] == "http://kube.invalid:6443/k8s/clusters/c-1/version?a=b%20c"


def test_a_redirect_is_an_error_naming_where_it_points_and_is_not_followed(server: str) -> None:
    """Before requests went to the pool directly, urllib3's pool manager followed a redirect; now it is an error
    that says where the server points, and nothing (no credentials) is sent there."""
    cfg = kubernetes.client.Configuration()
    cfg.host = f"{server}/moved"
    cfg.api_key = {"authorization": "t0ken"}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    kube = connection.KubeCluster("c", kubernetes.client.ApiClient(cfg))
    try:
        with pytest.raises(errors.ApiError) as raised:
            kube.request("GET", "/version")
        with pytest.raises(errors.ApiError, match=re.escape("redirects to https://elsewhere.invalid/version")):
            list(kube.watch("", "ConfigMap", "", "1", 5))
    finally:
        kube.close()
    assert raised.value.status == 301
    assert "redirects to https://elsewhere.invalid/version" in str(raised.value)
    assert [r["path"] for r in _Recorder.seen][:1] == ["/moved/version"]


@pytest.mark.parametrize(
    "body",
    [
        {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v ü \u2028 \"q\""}, "n": [1, 2.5, -3e-7, None, True]},
        {"apiVersion": "example.com/v1", "kind": "Big", "spec": {"size": 2**70}},  # past 64 bits: orjson refuses
        {"apiVersion": "example.com/v1", "kind": "Keys", "spec": {1: "a", 2.5: "b", None: "c"}},  # keys not strings
    ],
)
def test_a_body_is_sent_as_the_json_the_standard_library_writes(server: str, body: dict[str, Any]) -> None:
    """Bodies go out through orjson, and what orjson refuses (an integer past 64 bits from a renderer, a key that is
    not a string) through ``json`` as before: every body arrives meaning what ``json.dumps`` would have sent."""
    cfg = kubernetes.client.Configuration()
    cfg.host = server
    kube = connection.KubeCluster("c", kubernetes.client.ApiClient(cfg))
    try:
        assert kube.request("PATCH", "/apis/x/v1/things/a", body=body) == {"kind": "Status", "ok": True}
    finally:
        kube.close()
    (seen,) = _Recorder.seen
    assert json.loads(seen["body"]) == json.loads(json.dumps(body))

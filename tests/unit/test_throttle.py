"""What a busy API server's answer asks of the client (client-go's ``checkWait``), and the retry metric."""

from __future__ import annotations

import dataclasses

import pytest

from agent.clusters import connection, responses
from agent.runtime import metrics


@dataclasses.dataclass
class Answer:
    status: int
    retry_after: str | None = None

    def getheader(self, name: str) -> str | None:
        return self.retry_after if name == "Retry-After" else None


@pytest.mark.parametrize(
    ("answer", "low", "high"),
    [
        (Answer(429, "1"), 1.0, 1.15),
        (Answer(503, "2"), 2.0, 2.25),
        (Answer(500, "0"), 0.0, 0.05),
        (Answer(429, "120"), connection.THROTTLE_WAIT_MAX, connection.THROTTLE_WAIT_MAX * 1.1 + 0.05),
    ],
)
def test_a_retry_after_is_waited_as_told_capped_with_jitter(answer: Answer, low: float, high: float) -> None:
    wait = responses.retry_after(answer)
    assert wait is not None
    assert low <= wait <= high


@pytest.mark.parametrize(
    "answer", [Answer(429), Answer(503), Answer(404, "1"), Answer(200, "1"), Answer(429, "soon"), Answer(429, "-1")]
)
def test_no_wait_is_asked_without_a_retry_after_in_seconds(answer: Answer) -> None:
    assert responses.retry_after(answer) is None


def test_retries_are_counted_per_cluster_and_code_and_forgotten_with_the_cluster() -> None:
    m = metrics.Metrics()
    m.retried("a", 429)
    m.retried("a", 429)
    m.retried("b", 503)
    text = m.exposition().decode()
    assert 'gitops_agent_api_retries_total{cluster="a",code="429"} 2.0' in text
    assert 'gitops_agent_api_retries_total{cluster="b",code="503"} 1.0' in text
    m.forget("a")
    assert 'cluster="a"' not in m.exposition().decode()


def test_a_cancelled_sync_ends_its_retry_after_wait_and_sends_nothing_more() -> None:
    """A loopback server that answers every request 429 with ``Retry-After: 5``, as a throttling API server
    does: the apply waits; when its sync is cancelled the wait ends at once, and nothing is sent again."""
    import http.server
    import threading
    import time

    import kubernetes.client

    from reconcilers import cancel, errors

    received: list[str] = []

    class Busy(http.server.BaseHTTPRequestHandler):
        def do_PATCH(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append(self.path)
            body = b'{"kind":"Status","reason":"TooManyRequests","message":"too many requests"}'
            self.send_response(429)
            self.send_header("Retry-After", "5")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = kubernetes.client.ApiClient(
            kubernetes.client.Configuration(host=f"http://127.0.0.1:{server.server_port}")
        )
        kube = connection.KubeCluster("busy", api, timeout=(5.0, 60.0))
        kube.token = cancel.Token()
        threading.Timer(0.5, kube.token.cancel, ["the agent stops"]).start()
        started = time.monotonic()
        with pytest.raises(errors.CancelledError, match=r"the agent stops \(while waiting out"):
            kube.request("PATCH", "/api/v1/namespaces/x/configmaps/a", body={}, content_type="application/json")
        assert time.monotonic() - started < 4  # not the 5 s the server asked for
        assert len(received) == 1  # nothing sent again after the cancel
        assert kube.retries[429] == 1
    finally:
        server.shutdown()
        server.server_close()

"""Loopback HTTP receivers that check notifications the way the real services do, and record what they accept:

- ``webhook``: CloudEvents 1.0 structured mode (``application/cloudevents+json`` with ``specversion``, ``id``,
  ``source``, ``type``) and the HMAC-SHA256 of the raw body in ``X-Signature-256`` (401 when it does not match);
- ``github``: ``POST /repos/{owner}/{repo}/statuses/{sha}`` (40 hex digits), ``Authorization: Bearer <token>``,
  a JSON body whose ``state`` is error, failure, pending or success, ``context`` set, ``description`` at most 140
  characters (GitHub's REST API, "Create a commit status"; 422 otherwise, 401 for a wrong token);
- ``gitlab``: ``POST /api/v4/projects/{url-encoded path}/statuses/{sha}``, ``PRIVATE-TOKEN``, ``state`` pending,
  running, success, failed or canceled, ``name`` (GitLab's "Set the pipeline status of a commit");
- ``slack``: a JSON body with ``text`` or ``blocks`` (each block a known type), answered ``ok`` as Slack does.

``fail_first`` answers 500 that many times before accepting; ``hang`` accepts connections and never answers.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import re
import threading
import urllib.parse
from typing import Any


class Receiver:
    """One receiver on a free loopback port: ``url``, ``accepted`` (the bodies it took), ``refused`` (count)."""

    def __init__(
        self,
        kind: str,
        *,
        secret: str = "",
        token: str = "",
        repository: str = "",
        fail_first: int = 0,
        hang: bool = False,
    ) -> None:
        self.kind, self.secret, self.token, self.repository = kind, secret, token, repository
        self.fail_first, self.hang = fail_first, hang
        self.accepted: list[dict[str, Any]] = []
        self.requests = 0
        self.problems: list[str] = []
        self._release = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests += 1
                if receiver.hang:
                    receiver._release.wait(120)
                    return
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self._answer(500, b"busy")
                    return
                code, problem = receiver.check(self.path, dict(self.headers.items()), body)
                if problem:
                    receiver.problems.append(problem)
                    self._answer(code, problem.encode())
                    return
                receiver.accepted.append({"path": self.path, "body": json.loads(body), "headers": dict(self.headers)})
                self._answer(201 if receiver.kind in ("github", "gitlab") else 200, b"ok")

            def _answer(self, code: int, text: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def check(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        """(status, problem) for a request the real service would refuse; (200, "") when it is right."""
        try:
            doc = json.loads(body)
        except ValueError:
            return 400, "body is not JSON"
        if self.kind == "webhook":
            if headers.get("Content-Type") != "application/cloudevents+json":
                return 415, "not application/cloudevents+json"
            expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(headers.get("X-Signature-256", ""), expected):
                return 401, "bad signature"
            if doc.get("specversion") != "1.0" or not all(doc.get(k) for k in ("id", "source", "type")):
                return 400, "not a CloudEvent"
            return 200, ""
        if self.kind == "github":
            if not re.fullmatch(rf"/repos/{re.escape(self.repository)}/statuses/[0-9a-f]{{40}}", path):
                return 404, f"no such endpoint {path}"
            if headers.get("Authorization") != f"Bearer {self.token}":
                return 401, "Bad credentials"
            if doc.get("state") not in ("error", "failure", "pending", "success") or not doc.get("context"):
                return 422, "Validation Failed"
            if len(doc.get("description") or "") > 140:
                return 422, "description is too long (maximum is 140 characters)"
            return 200, ""
        if self.kind == "gitlab":
            project = urllib.parse.quote(self.repository, safe="")
            if not re.fullmatch(rf"/api/v4/projects/{re.escape(project)}/statuses/[0-9a-f]{{40}}", path):
                return 404, f"404 Project Not Found {path}"
            if headers.get("Private-Token", headers.get("PRIVATE-TOKEN")) != self.token:
                return 401, "401 Unauthorized"
            if doc.get("state") not in ("pending", "running", "success", "failed", "canceled"):
                return 400, "state does not have a valid value"
            return 200, ""
        if not (doc.get("text") or doc.get("blocks")):
            return 400, "no_text"
        if any(b.get("type") not in ("section", "context", "header", "divider") for b in doc.get("blocks") or []):
            return 400, "invalid_blocks"
        return 200, ""

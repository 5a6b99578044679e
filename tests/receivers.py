"""Loopback HTTP receivers that check notifications the way the real services do, and record what they accept:

- ``webhook``: CloudEvents 1.0 structured mode (``application/cloudevents+json`` with ``specversion``, ``id``,
  ``source``, ``type``) and the HMAC-SHA256 of the raw body in ``X-Signature-256`` (401 when it does not match);
- ``github``: ``POST /repos/{owner}/{repo}/statuses/{sha}`` (40 hex digits), ``Authorization: Bearer <token>``,
  a JSON body whose ``state`` is error, failure, pending or success, ``context`` set, ``description`` at most 140
  characters (GitHub's REST API, "Create a commit status"; 422 otherwise, 401 for a wrong token);
- ``gitlab``: ``POST /api/v4/projects/{url-encoded path}/statuses/{sha}``, ``PRIVATE-TOKEN``, ``state`` pending,
  running, success, failed or canceled, ``name`` (GitLab's "Set the pipeline status of a commit");
- ``slack``: a JSON body with ``text`` or ``blocks`` (each block a known type), answered ``ok`` as Slack does;
- ``msteams``: a Teams workflow webhook ("Post to a channel when a webhook request is received"): a JSON
  ``message`` whose ``attachments`` hold one Adaptive Card (``application/vnd.microsoft.card.adaptive``,
  ``type: AdaptiveCard``, a schema version Teams renders, 1.0 to 1.5), each body element a known type with what
  it needs (a ``TextBlock``'s ``text``, a ``FactSet``'s title/value facts), actions ``Action.OpenUrl`` with an
  http(s) ``url``; answered 202 Accepted as the workflow trigger does, 400 otherwise.

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
                codes = {"github": 201, "gitlab": 201, "msteams": 202}
                self._answer(codes.get(receiver.kind, 200), b"ok")

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
        if self.kind == "msteams":
            return self._check_card(headers, doc)
        if not (doc.get("text") or doc.get("blocks")):
            return 400, "no_text"
        if any(b.get("type") not in ("section", "context", "header", "divider") for b in doc.get("blocks") or []):
            return 400, "invalid_blocks"
        return 200, ""

    @staticmethod
    def _check_card(headers: dict[str, str], doc: Any) -> tuple[int, str]:
        """A Teams workflow's checks of a posted Adaptive Card message."""
        if not headers.get("Content-Type", "").startswith("application/json"):
            return 415, "UnsupportedMediaType"
        attachments = doc.get("attachments") if isinstance(doc, dict) else None
        if doc.get("type") != "message" or not isinstance(attachments, list) or not attachments:
            return 400, "InvalidRequestContent: a message with attachments"
        for attachment in attachments:
            card = attachment.get("content")
            if attachment.get("contentType") != "application/vnd.microsoft.card.adaptive" or not isinstance(card, dict):
                return 400, "InvalidRequestContent: not an Adaptive Card"
            if card.get("type") != "AdaptiveCard" or card.get("version") not in (
                "1.0",
                "1.1",
                "1.2",
                "1.3",
                "1.4",
                "1.5",
            ):
                return 400, "InvalidRequestContent: AdaptiveCard type and version"
            body = card.get("body")
            if not isinstance(body, list) or not body:
                return 400, "InvalidRequestContent: an empty card"
            for element in body:
                kind = element.get("type")
                if kind == "TextBlock" and not (isinstance(element.get("text"), str) and element["text"]):
                    return 400, "InvalidRequestContent: TextBlock without text"
                if kind == "FactSet" and not all(
                    isinstance(f.get("title"), str) and isinstance(f.get("value"), str)
                    for f in element.get("facts", [])
                ):
                    return 400, "InvalidRequestContent: FactSet facts need title and value strings"
                if kind not in (
                    "TextBlock",
                    "FactSet",
                    "Container",
                    "ColumnSet",
                    "Image",
                    "ActionSet",
                    "RichTextBlock",
                ):
                    return 400, f"InvalidRequestContent: unknown element {kind}"
            for action in card.get("actions", []):
                url = action.get("url", "")
                if action.get("type") != "Action.OpenUrl" or not re.match(r"https?://", url):
                    return 400, "InvalidRequestContent: actions are Action.OpenUrl with an http(s) url"
        return 200, ""

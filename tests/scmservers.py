"""Loopback stand-ins for the pull request APIs of GitHub and GitLab, checking requests as the real services do.

- GitHub (REST API, "List pull requests"): ``GET /repos/{owner}/{repo}/pulls?state=open&per_page=N&page=P`` with
  ``Authorization: Bearer <token>`` (401 ``Bad credentials`` otherwise) and ``Accept: application/vnd.github+json``
  (415 otherwise); pull requests as GitHub gives them (``number``, ``title``, ``head.ref``, ``head.sha``,
  ``base.ref``, ``labels[].name``, ``user.login``, ``state``); pages linked by ``Link: <...>; rel="next"``; an
  ``ETag`` per page and ``304 Not Modified`` for a matching ``If-None-Match``.
- GitLab (REST API, "List project merge requests"): ``GET /api/v4/projects/{id or url-encoded path}/merge_requests
  ?state=opened&labels=a,b&per_page=N&page=P`` with ``PRIVATE-TOKEN`` (401 otherwise); merge requests with ``iid``,
  ``title``, ``source_branch``, ``target_branch``, ``sha``, ``labels`` (names), ``author.username``; the label
  filter applied by the server; ``Link`` pages and ``ETag`` as GitHub's.

Faults to set: ``status`` (every answer that status, with a message), ``rate_limit`` (seconds: 403 with
``X-RateLimit-Remaining: 0`` and ``X-RateLimit-Reset`` that far ahead, as GitHub's primary limit), ``hang``
(accept and never answer), ``delay`` (seconds before each answer). ``requests`` records each request's path and headers.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import time
import urllib.parse
from typing import Any


class ScmServer:
    """A fake GitHub (``kind="github"``) or GitLab (``kind="gitlab"``) API on a free loopback port: ``url``."""

    def __init__(self, kind: str, *, token: str, repository: str, page_size: int = 2) -> None:
        self.kind, self.token, self.repository, self.page_size = kind, token, repository, page_size
        self.pulls: list[dict[str, Any]] = []  # open pull requests, in GitHub's shape; GitLab's made from them
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.status = 0
        self.rate_limit = 0.0
        self.hang = False
        self.delay = 0.0
        self._release = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._get(self)

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def open(self, number: int, branch: str, sha: str, labels: tuple[str, ...] = (), title: str = "") -> None:
        """Open pull request ``number`` from ``branch`` at ``sha`` (or move it there when it is open)."""
        pull = {
            "number": number,
            "title": title or f"change {number}",
            "state": "open",
            "head": {"ref": branch, "sha": sha},
            "base": {"ref": "main"},
            "labels": [{"name": label} for label in labels],
            "user": {"login": "octocat"},
        }
        with self._lock:
            self.pulls = [p for p in self.pulls if p["number"] != number] + [pull]

    def close(self, number: int) -> None:
        """Close (or merge) pull request ``number``: it is listed no more."""
        with self._lock:
            self.pulls = [p for p in self.pulls if p["number"] != number]

    def stop(self) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def _get(self, h: http.server.BaseHTTPRequestHandler) -> None:
        self.requests.append((h.path, dict(h.headers)))
        if self.hang:
            self._release.wait(120)
            return
        time.sleep(self.delay)
        parsed = urllib.parse.urlsplit(h.path)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        if self.kind == "github":
            expected = f"/repos/{self.repository}/pulls"
            authorized = h.headers.get("Authorization") == f"Bearer {self.token}"
            unauthorized = {"message": "Bad credentials"}
        else:
            expected = f"/api/v4/projects/{urllib.parse.quote(self.repository, safe='')}/merge_requests"
            authorized = h.headers.get("PRIVATE-TOKEN") == self.token
            unauthorized = {"message": "401 Unauthorized"}
        if parsed.path != expected:
            return self._answer(h, 404, {"message": "Not Found"})
        if not authorized:
            return self._answer(h, 401, unauthorized)
        if self.kind == "github" and h.headers.get("Accept") != "application/vnd.github+json":
            return self._answer(h, 415, {"message": "Unsupported Media Type"})
        if self.rate_limit:
            reset = str(int(time.time() + self.rate_limit))
            headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
            return self._answer(h, 403, {"message": "API rate limit exceeded"}, headers)
        if self.status:
            return self._answer(h, self.status, {"message": "Server Error"})
        with self._lock:
            items = [self._shaped(p) for p in self.pulls]
        if self.kind == "gitlab":
            wanted = {x for x in query.get("labels", "").split(",") if x}
            items = [m for m in items if wanted <= set(m["labels"])]
            if query.get("state") != "opened":
                items = []
        elif query.get("state") != "open":
            items = []
        size = min(int(query.get("per_page", "30")), self.page_size)
        page = int(query.get("page", "1"))
        shown = items[(page - 1) * size : page * size]
        headers = {}
        if page * size < len(items):
            following = urllib.parse.urlencode({**query, "page": str(page + 1)})
            headers["Link"] = f'<{self.url}{parsed.path}?{following}>; rel="next"'
        body = json.dumps(shown).encode()
        etag = '"' + hashlib.sha256(body + headers.get("Link", "").encode()).hexdigest()[:16] + '"'
        if h.headers.get("If-None-Match") == etag:
            h.send_response(304)
            h.send_header("ETag", etag)
            h.end_headers()
            return None
        return self._answer(h, 200, shown, {**headers, "ETag": etag})

    def _shaped(self, pull: dict[str, Any]) -> dict[str, Any]:
        if self.kind == "github":
            return pull
        return {
            "iid": pull["number"],
            "title": pull["title"],
            "state": "opened",
            "source_branch": pull["head"]["ref"],
            "target_branch": pull["base"]["ref"],
            "sha": pull["head"]["sha"],
            "labels": [label["name"] for label in pull["labels"]],
            "author": {"username": pull["user"]["login"]},
        }

    def _answer(
        self, h: http.server.BaseHTTPRequestHandler, status: int, doc: Any, headers: dict[str, str] | None = None
    ) -> None:
        body = json.dumps(doc).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)

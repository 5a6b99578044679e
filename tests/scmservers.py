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

Comments and commit statuses, as the preview writes them:
- GitHub: ``GET /repos/{owner}/{repo}/issues/{number}/comments`` (pages, ``Link``), ``POST`` there with ``{"body"}``
  (422 ``body is too long (maximum is 65536 characters)`` beyond GitHub's limit), ``PATCH
  /repos/{owner}/{repo}/issues/comments/{id}``; ``POST /repos/{owner}/{repo}/statuses/{sha}`` (a 40-hex ``sha``;
  ``state`` one of error, failure, pending, success, and ``context``: 422 otherwise).
- GitLab: ``GET``/``POST /api/v4/projects/{id}/merge_requests/{iid}/notes``, ``PUT .../notes/{note_id}``; ``POST
  /api/v4/projects/{id}/statuses/{sha}`` (``state`` one of pending, running, success, failed, canceled; ``name``).
A comment on a pull request that is not open (nor was) is a 404. ``comments`` (number -> its comments),
``statuses`` (each posted, in order) and ``writes`` ((method, path) of each write) record them.

Faults to set: ``status`` (every answer that status, with a message), ``rate_limit`` (seconds: 403 with
``X-RateLimit-Remaining: 0`` and ``X-RateLimit-Reset`` that far ahead, as GitHub's primary limit), ``hang``
(accept and never answer), ``delay`` (seconds before each answer). ``requests`` records each request's path and headers.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
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
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.statuses: list[dict[str, Any]] = []
        self.writes: list[tuple[str, str]] = []
        self._known: set[int] = set()  # every pull request ever opened
        self._next_id = 1000
        self._release = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._get(self)

            def do_POST(self) -> None:
                server._write(self, "POST")

            def do_PATCH(self) -> None:
                server._write(self, "PATCH")

            def do_PUT(self) -> None:
                server._write(self, "PUT")

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
            self._known.add(number)

    def close(self, number: int) -> None:
        """Close (or merge) pull request ``number``: it is listed no more."""
        with self._lock:
            self.pulls = [p for p in self.pulls if p["number"] != number]

    def stop(self) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def _base(self) -> str:
        if self.kind == "github":
            return f"/repos/{self.repository}"
        return f"/api/v4/projects/{urllib.parse.quote(self.repository, safe='')}"

    def _refused(self, h: http.server.BaseHTTPRequestHandler) -> bool:
        """Answer an unauthorized, wrongly asked, rate limited or faulty request (True when answered)."""
        if self.kind == "github":
            authorized = h.headers.get("Authorization") == f"Bearer {self.token}"
            unauthorized = {"message": "Bad credentials"}
        else:
            authorized = h.headers.get("PRIVATE-TOKEN") == self.token
            unauthorized = {"message": "401 Unauthorized"}
        if not authorized:
            self._answer(h, 401, unauthorized)
        elif self.kind == "github" and h.headers.get("Accept") != "application/vnd.github+json":
            self._answer(h, 415, {"message": "Unsupported Media Type"})
        elif self.rate_limit:
            reset = str(int(time.time() + self.rate_limit))
            headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
            self._answer(h, 403, {"message": "API rate limit exceeded"}, headers)
        elif self.status:
            self._answer(h, self.status, {"message": "Server Error"})
        else:
            return False
        return True

    def _get(self, h: http.server.BaseHTTPRequestHandler) -> None:
        self.requests.append((h.path, dict(h.headers)))
        if self.hang:
            self._release.wait(120)
            return
        time.sleep(self.delay)
        parsed = urllib.parse.urlsplit(h.path)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        comments = self._comments_of(parsed.path)
        if parsed.path != self._base + ("/pulls" if self.kind == "github" else "/merge_requests") and comments is None:
            return self._answer(h, 404, {"message": "Not Found"})
        if self._refused(h):
            return None
        if comments is not None:
            with self._lock:
                items = [dict(c) for c in self.comments.get(comments, [])]
            return self._paged(h, parsed.path, query, items)
        with self._lock:
            items = [self._shaped(p) for p in self.pulls]
        if self.kind == "gitlab":
            wanted = {x for x in query.get("labels", "").split(",") if x}
            items = [m for m in items if wanted <= set(m["labels"])]
            if query.get("state") != "opened":
                items = []
        elif query.get("state") != "open":
            items = []
        return self._paged(h, parsed.path, query, items)

    def _paged(self, h: http.server.BaseHTTPRequestHandler, path: str, query: dict[str, str], items: list[Any]) -> None:
        size = min(int(query.get("per_page", "30")), self.page_size)
        page = int(query.get("page", "1"))
        shown = items[(page - 1) * size : page * size]
        headers = {}
        if page * size < len(items):
            following = urllib.parse.urlencode({**query, "page": str(page + 1)})
            headers["Link"] = f'<{self.url}{path}?{following}>; rel="next"'
        body = json.dumps(shown).encode()
        etag = '"' + hashlib.sha256(body + headers.get("Link", "").encode()).hexdigest()[:16] + '"'
        if h.headers.get("If-None-Match") == etag:
            h.send_response(304)
            h.send_header("ETag", etag)
            h.end_headers()
            return None
        return self._answer(h, 200, shown, {**headers, "ETag": etag})

    def _comments_of(self, path: str) -> int | None:
        """The pull request number whose comments ``path`` lists or creates, or None."""
        found = re.fullmatch(re.escape(self._base) + r"/(?:issues|merge_requests)/(\d+)/(?:comments|notes)", path)
        return int(found.group(1)) if found else None

    def _write(self, h: http.server.BaseHTTPRequestHandler, method: str) -> None:
        path = urllib.parse.urlsplit(h.path).path
        self.requests.append((h.path, dict(h.headers)))
        try:
            doc = json.loads(h.rfile.read(int(h.headers.get("Content-Length", "0"))) or b"null")
        except ValueError:
            return self._answer(h, 400, {"message": "Problems parsing JSON"})
        if self._refused(h):
            return None
        if h.headers.get("Content-Type") != "application/json" or not isinstance(doc, dict):
            return self._answer(h, 400, {"message": "Problems parsing JSON"})
        with self._lock:
            self.writes.append((method, path))
            return self._written(h, method, path, doc)

    def _written(self, h: http.server.BaseHTTPRequestHandler, method: str, path: str, doc: dict[str, Any]) -> None:
        github = self.kind == "github"
        status = re.fullmatch(re.escape(self._base) + r"/statuses/([0-9a-f]+)", path)
        if status and method == "POST":
            states = (
                ("error", "failure", "pending", "success")
                if github
                else ("pending", "running", "success", "failed", "canceled")
            )
            name = doc.get("context") if github else doc.get("name")
            if len(status.group(1)) != 40 or doc.get("state") not in states or not name:
                return self._answer(h, 422, {"message": "Validation Failed"})
            if github and len(doc.get("description") or "") > 140:
                return self._answer(h, 422, {"message": "description is too long (maximum is 140 characters)"})
            self.statuses.append({"sha": status.group(1), **doc})
            return self._answer(h, 201, {"id": len(self.statuses), **doc})
        body = doc.get("body")
        if not isinstance(body, str) or not body:
            return self._answer(h, 422, {"message": "body is missing"})
        if github and len(body) > 65536:
            return self._answer(h, 422, {"message": "body is too long (maximum is 65536 characters)"})
        number = self._comments_of(path)
        if number is not None and method == "POST":
            if number not in self._known:
                return self._answer(h, 404, {"message": "Not Found"})
            self._next_id += 1
            comment = {"id": self._next_id, "body": body}
            self.comments.setdefault(number, []).append(comment)
            return self._answer(h, 201, comment)
        edit = re.fullmatch(re.escape(self._base) + r"/(?:issues/comments|merge_requests/\d+/notes)/(\d+)", path)
        if edit and method == ("PATCH" if github else "PUT"):
            for comment in (c for cs in self.comments.values() for c in cs):
                if comment["id"] == int(edit.group(1)):
                    comment["body"] = body
                    return self._answer(h, 200, comment)
        return self._answer(h, 404, {"message": "Not Found"})

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

"""One GitHub repository's or GitLab project's REST API, as a ``pullRequest`` generator names it: the requests of
the pull request lister (:mod:`agent.appsets.pullrequests`) and of the pull request preview
(:mod:`agent.appsets.previewpost`).

Each request carries the provider's headers (GitHub: ``Authorization: Bearer``, ``Accept:
application/vnd.github+json``, ``X-GitHub-Api-Version: 2022-11-28``; GitLab: ``PRIVATE-TOKEN``) and is bounded by
a timeout (seconds). A rate limit (GitHub: 403 or 429 with ``X-RateLimit-Remaining: 0`` and ``X-RateLimit-Reset``,
or ``Retry-After``, GitHub's "Rate limits for the REST API"; GitLab: 429 with ``Retry-After`` or
``RateLimit-Reset``) is waited out: no request is sent before the time the headers give, and each one until then
fails at once saying until when. Tokens never appear in a message.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from typing import Any

import urllib3

from agent import config
from reconcilers import errors

TIMEOUT = 30.0
"""Seconds one API request may take."""


class ApiError(errors.GenerateError):
    """A request that failed: ``status`` (0: no answer), ``retry`` (True for a 5xx, a timeout or a refused
    connection, which may pass when asked again)."""

    def __init__(self, message: str, status: int = 0, retry: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retry = retry


class Api:
    """The API ``spec`` names (thread-safe: the rate limit is shared by every request made through it). ``where``
    names it in messages (provider, API URL and repository: no token)."""

    def __init__(self, spec: config.PullRequestGenerator, timeout: float = TIMEOUT) -> None:
        self.spec = spec
        self.timeout = timeout
        self.github = spec.github is not None
        self.where = spec.key.split(" labels=")[0]
        limits = urllib3.Timeout(connect=min(5.0, timeout), read=timeout)
        self._http = urllib3.PoolManager(timeout=limits, retries=False)
        self._not_before = 0.0  # wall-clock seconds: rate limited until then
        self._lock = threading.Lock()

    @property
    def base(self) -> str:
        """The repository's (project's) API URL: ``{api}/repos/{owner}/{repo}`` or ``{api}/api/v4/projects/{id}``
        (the project path URL-encoded, as GitLab wants it)."""
        if self.spec.github is not None:
            g = self.spec.github
            return f"{g.api.rstrip('/')}/repos/{g.owner}/{g.repo}"
        assert self.spec.gitlab is not None
        m = self.spec.gitlab
        return f"{m.api.rstrip('/')}/api/v4/projects/{urllib.parse.quote(m.project, safe='')}"

    def headers(self, etag: str | None = None) -> dict[str, str]:
        """The provider's headers (``If-None-Match: etag`` when given). Raises ConfigError when the token's secret
        cannot be read."""
        headers = {"User-Agent": "gitops-agent"}
        provider = self.spec.github or self.spec.gitlab
        assert provider is not None
        token = provider.token.value("pullRequest token").decode() if provider.token is not None else None
        if self.github:
            headers |= {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
            if token:
                headers["Authorization"] = f"Bearer {token}"
        elif token:
            headers["PRIVATE-TOKEN"] = token
        if etag:
            headers["If-None-Match"] = etag
        return headers

    def request(
        self, method: str, url: str, *, doc: Any = None, etag: str | None = None, timeout: float | None = None
    ) -> Any:
        """Send ``method`` to ``url`` (``doc``: a JSON body) within ``timeout`` seconds (default: the API's) and
        give the response when it is not a rate limit; the caller judges its status. Raises :class:`ApiError`: rate
        limited (now, or until an earlier answer's time), no answer, a token that cannot be read."""
        with self._lock:
            not_before = self._not_before
        if time.time() < not_before:
            raise ApiError(f"{self.where}: rate limited until {clock(not_before)}; not asked again before")
        limit = self.timeout if timeout is None else timeout
        bounded = urllib3.Timeout(connect=min(5.0, limit), read=limit)
        try:
            headers = self.headers(etag)
        except errors.ConfigError as e:
            raise ApiError(f"{self.where}: {e}") from None
        body = None
        if doc is not None:
            body, headers["Content-Type"] = json.dumps(doc).encode(), "application/json"
        try:
            resp = self._http.request(method, url, body=body, headers=headers, timeout=bounded)
        except urllib3.exceptions.TimeoutError:
            raise ApiError(f"{self.where}: no answer within {limit:g} s", retry=True) from None
        except urllib3.exceptions.HTTPError as e:
            raise ApiError(f"{self.where}: {type(e).__name__}: could not ask the API", retry=True) from None
        if resp.status in (403, 429) and self._rate_limited(resp):
            raise ApiError(f"{self.where}: rate limited ({resp.status}) until {clock(self._not_before)}", resp.status)
        return resp

    def failed(self, resp: Any, what: str) -> ApiError:
        """The error of answer ``resp`` (4xx or 5xx) to ``what`` (the request, named in the message); 5xx may be
        retried."""
        return ApiError(
            f"{self.where}: {what}: the API answered {resp.status}: {message(resp.data)}",
            resp.status,
            retry=resp.status >= 500,
        )

    def _rate_limited(self, resp: Any) -> bool:
        """True, with the time to wait until kept, when ``resp`` says the rate limit is reached."""
        headers = resp.headers
        now = time.time()
        retry_after = headers.get("Retry-After")
        until = None
        if retry_after is not None and retry_after.strip().isdigit():
            until = now + int(retry_after)
        elif headers.get("X-RateLimit-Remaining") == "0" or resp.status == 429:
            reset = headers.get("X-RateLimit-Reset") or headers.get("RateLimit-Reset")
            until = float(reset) if reset and reset.strip().isdigit() else now + 60.0
        if until is None:
            return False
        with self._lock:
            self._not_before = max(self._not_before, until)
        return True


def clock(when: float) -> str:
    """``when`` (epoch seconds) as ISO 8601 UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def message(data: bytes) -> str:
    """The API's ``message`` (GitHub, GitLab), else the start of the body."""
    try:
        found = json.loads(data)
    except ValueError:
        return data[:200].decode("utf-8", "replace")
    if isinstance(found, dict) and "message" in found:
        return str(found["message"])[:300]
    return data[:200].decode("utf-8", "replace")

"""Open pull requests of a GitHub repository or GitLab project, for the ``pullRequest`` generator.

:class:`Lister` lists them as the providers document it: GitHub's ``GET /repos/{owner}/{repo}/pulls?state=open``
(REST API docs, "List pull requests"; labels filtered here, the API has no label filter) with ``Authorization:
Bearer``, ``Accept: application/vnd.github+json`` and ``X-GitHub-Api-Version``; GitLab's ``GET
/api/v4/projects/:id/merge_requests?state=opened&labels=a,b`` with ``PRIVATE-TOKEN``. Pages of 100, followed by the
``Link: <...>; rel="next"`` header both send (RFC 8288). Each page is asked conditionally with the ETag it last
came with (``If-None-Match``): a 304 reuses what was read (GitHub does not count a 304 against the rate limit).

Faults: every request has :data:`TIMEOUT` seconds, a whole listing :data:`LIST_TIMEOUT`; a 401 or 404 says the
token or the repository is wrong; a rate limit (GitHub: 403 or 429 with ``X-RateLimit-Remaining: 0`` and
``X-RateLimit-Reset``, or ``Retry-After``; GitLab: 429 with ``Retry-After`` or ``RateLimit-Reset``) is waited out:
no request is sent before the time the headers give, and each list until then fails at once saying until when.
Each failure raises GenerateError (its app set keeps its apps). Tokens never appear in a message.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
import urllib.parse
from typing import Any

import urllib3

from agent import config
from reconcilers import errors

TIMEOUT = 30.0
"""Seconds one API request may take."""
MAX_PAGES = 50
"""Pages (of 100) read at most: 5,000 open pull requests."""
LIST_TIMEOUT = 120.0
"""Seconds one listing (all its pages) may take: the ``appsets`` thread, which lists, generates nothing else
meanwhile."""
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


@dataclasses.dataclass(frozen=True)
class PullRequest:
    """One open pull request (merge request): ``number`` (GitLab's ``iid``), ``title``, ``branch`` (its head),
    ``target_branch``, ``head_sha``, ``labels``, ``author`` (login or username)."""

    number: int
    title: str
    branch: str
    target_branch: str
    head_sha: str
    labels: tuple[str, ...]
    author: str


class Lister:
    """Lists the open pull requests one :class:`agent.config.PullRequestGenerator` names (see the module
    docstring). Thread-safe: one list at a time."""

    def __init__(self, spec: config.PullRequestGenerator, timeout: float = TIMEOUT) -> None:
        self.spec = spec
        self.timeout = timeout
        limits = urllib3.Timeout(connect=min(5.0, timeout), read=timeout)
        self._http = urllib3.PoolManager(timeout=limits, retries=False)
        self._pages: dict[str, tuple[str, list[Any], str | None]] = {}  # url -> (etag, items, next url)
        self._not_before = 0.0  # wall-clock seconds: rate limited until then
        self._lock = threading.Lock()

    def fetch(self) -> list[PullRequest]:
        """The open pull requests, in the API's order, those without every configured label left out. Raises
        GenerateError."""
        with self._lock:
            return self._list()

    def _list(self) -> list[PullRequest]:
        where = self.spec.key.split(" labels=")[0]
        if time.time() < self._not_before:
            until = _clock(self._not_before)
            raise errors.GenerateError(f"{where}: rate limited until {until}; not asked again before")
        url: str | None = self._first_url()
        items: list[Any] = []
        pages = 0
        deadline = time.monotonic() + max(self.timeout, LIST_TIMEOUT)
        while url is not None and pages < MAX_PAGES:
            left = deadline - time.monotonic()
            if left <= 0:
                spent = max(self.timeout, LIST_TIMEOUT)
                raise errors.GenerateError(f"{where}: {pages} page(s) read in {spent:g} s; the list is incomplete")
            found, url = self._page(url, where, min(self.timeout, left))
            items += found
            pages += 1
        return [p for p in map(self._parse, items) if set(self._labels()) <= set(p.labels)]

    def _first_url(self) -> str:
        if self.spec.github is not None:
            g = self.spec.github
            return f"{g.api.rstrip('/')}/repos/{g.owner}/{g.repo}/pulls?state=open&per_page=100"
        assert self.spec.gitlab is not None
        m = self.spec.gitlab
        query = {"state": m.pull_request_state, "per_page": "100"}
        if m.labels:
            query["labels"] = ",".join(m.labels)
        project = urllib.parse.quote(m.project, safe="")
        return f"{m.api.rstrip('/')}/api/v4/projects/{project}/merge_requests?{urllib.parse.urlencode(query)}"

    def _labels(self) -> tuple[str, ...]:
        provider = self.spec.github or self.spec.gitlab
        assert provider is not None
        return provider.labels

    def _headers(self, etag: str | None) -> dict[str, str]:
        headers = {"User-Agent": "gitops-agent"}
        provider = self.spec.github or self.spec.gitlab
        assert provider is not None
        token = provider.token.value("pullRequest token").decode() if provider.token is not None else None
        if self.spec.github is not None:
            headers |= {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
            if token:
                headers["Authorization"] = f"Bearer {token}"
        elif token:
            headers["PRIVATE-TOKEN"] = token
        if etag:
            headers["If-None-Match"] = etag
        return headers

    def _page(self, url: str, where: str, timeout: float) -> tuple[list[Any], str | None]:
        kept = self._pages.get(url)
        bounded = urllib3.Timeout(connect=min(5.0, timeout), read=timeout)
        try:
            resp = self._http.request("GET", url, headers=self._headers(kept[0] if kept else None), timeout=bounded)
        except urllib3.exceptions.TimeoutError:
            raise errors.GenerateError(f"{where}: no answer within {timeout:g} s") from None
        except urllib3.exceptions.HTTPError as e:
            raise errors.GenerateError(f"{where}: {type(e).__name__}: could not ask the API") from None
        except errors.ConfigError as e:
            raise errors.GenerateError(f"{where}: {e}") from None
        if resp.status == 304 and kept is not None:
            return kept[1], kept[2]
        if resp.status in (403, 429) and self._rate_limited(resp):
            raise errors.GenerateError(f"{where}: rate limited ({resp.status}) until {_clock(self._not_before)}")
        if resp.status >= 400:
            raise errors.GenerateError(f"{where}: the API answered {resp.status}: {_message(resp.data)}")
        try:
            items = json.loads(resp.data)
        except ValueError:
            raise errors.GenerateError(f"{where}: the API answered {resp.status} with no JSON list") from None
        if not isinstance(items, list):
            raise errors.GenerateError(f"{where}: the API answered {resp.status} with no JSON list")
        found = _NEXT.search(resp.headers.get("Link", ""))
        following = urllib.parse.urljoin(url, found.group(1)) if found else None
        if following is not None and urllib.parse.urlsplit(following).netloc != urllib.parse.urlsplit(url).netloc:
            raise errors.GenerateError(f"{where}: the next page is on another host ({following}); not followed")
        etag = resp.headers.get("ETag")
        if etag:
            self._pages[url] = (etag, items, following)
        return items, following

    def _rate_limited(self, resp: Any) -> bool:
        """True, with the time to wait until, when ``resp`` says the rate limit is reached."""
        headers = resp.headers
        now = time.time()
        retry_after = headers.get("Retry-After")
        if retry_after is not None and retry_after.strip().isdigit():
            self._not_before = now + int(retry_after)
            return True
        if headers.get("X-RateLimit-Remaining") == "0" or resp.status == 429:
            reset = headers.get("X-RateLimit-Reset") or headers.get("RateLimit-Reset")
            self._not_before = float(reset) if reset and reset.strip().isdigit() else now + 60.0
            return True
        return False

    def _parse(self, item: Any) -> PullRequest:
        try:
            if self.spec.github is not None:
                return PullRequest(
                    number=int(item["number"]),
                    title=str(item.get("title") or ""),
                    branch=str(item["head"]["ref"]),
                    target_branch=str(item["base"]["ref"]),
                    head_sha=str(item["head"]["sha"]),
                    labels=tuple(str(label["name"]) for label in item.get("labels") or []),
                    author=str((item.get("user") or {}).get("login") or ""),
                )
            return PullRequest(
                number=int(item["iid"]),
                title=str(item.get("title") or ""),
                branch=str(item["source_branch"]),
                target_branch=str(item["target_branch"]),
                head_sha=str(item["sha"]),
                labels=tuple(str(label) for label in item.get("labels") or []),
                author=str((item.get("author") or {}).get("username") or ""),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise errors.GenerateError(f"a pull request the API listed lacks {e}") from None


def _clock(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def _message(data: bytes) -> str:
    """The API's ``message`` (GitHub, GitLab), else the start of the body."""
    try:
        found = json.loads(data)
    except ValueError:
        return data[:200].decode("utf-8", "replace")
    if isinstance(found, dict) and "message" in found:
        return str(found["message"])[:300]
    return data[:200].decode("utf-8", "replace")

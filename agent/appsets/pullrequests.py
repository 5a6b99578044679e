"""Open pull requests of a GitHub repository or GitLab project, for the ``pullRequest`` generator.

:class:`Lister` lists them as the providers document it: GitHub's ``GET /repos/{owner}/{repo}/pulls?state=open``
(REST API docs, "List pull requests"; labels filtered here, the API has no label filter) with ``Authorization:
Bearer``, ``Accept: application/vnd.github+json`` and ``X-GitHub-Api-Version``; GitLab's ``GET
/api/v4/projects/:id/merge_requests?state=opened&labels=a,b`` with ``PRIVATE-TOKEN``. Pages of 100, followed by the
``Link: <...>; rel="next"`` header both send (RFC 8288). Each page is asked conditionally with the ETag it last
came with (``If-None-Match``): a 304 reuses what was read (GitHub does not count a 304 against the rate limit).

Faults: every request has :data:`agent.appsets.scm.TIMEOUT` seconds, a whole listing :data:`LIST_TIMEOUT`; a 401
or 404 says the token or the repository is wrong; a rate limit is waited out as :mod:`agent.appsets.scm` says (no
request before the time the headers give; each list until then fails at once saying until when). Each failure
raises GenerateError (its app set keeps its apps). Tokens never appear in a message.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
import urllib.parse
from typing import Any

from agent import config
from agent.appsets import scm
from reconcilers import errors

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
    docstring) through its :class:`agent.appsets.scm.Api`. Thread-safe: one list at a time."""

    def __init__(self, spec: config.PullRequestGenerator, timeout: float = scm.TIMEOUT) -> None:
        self.spec = spec
        self.timeout = timeout
        self.api = scm.Api(spec, timeout)
        self._pages: dict[str, tuple[str, list[Any], str | None]] = {}  # url -> (etag, items, next url)
        self._lock = threading.Lock()

    def fetch(self) -> list[PullRequest]:
        """The open pull requests, in the API's order, those without every configured label left out. Raises
        GenerateError."""
        with self._lock:
            return self._list()

    def _list(self) -> list[PullRequest]:
        where = self.api.where
        url: str | None = self._first_url()
        items: list[Any] = []
        pages = 0
        deadline = time.monotonic() + max(self.timeout, LIST_TIMEOUT)
        while url is not None and pages < MAX_PAGES:
            left = deadline - time.monotonic()
            if left <= 0:
                spent = max(self.timeout, LIST_TIMEOUT)
                raise errors.GenerateError(f"{where}: {pages} page(s) read in {spent:g} s; the list is incomplete")
            found, url = self._page(url, min(self.timeout, left))
            items += found
            pages += 1
        return [p for p in map(self._parse, items) if set(self._labels()) <= set(p.labels)]

    def _first_url(self) -> str:
        if self.spec.github is not None:
            return f"{self.api.base}/pulls?state=open&per_page=100"
        assert self.spec.gitlab is not None
        m = self.spec.gitlab
        query = {"state": m.pull_request_state, "per_page": "100"}
        if m.labels:
            query["labels"] = ",".join(m.labels)
        return f"{self.api.base}/merge_requests?{urllib.parse.urlencode(query)}"

    def _labels(self) -> tuple[str, ...]:
        provider = self.spec.github or self.spec.gitlab
        assert provider is not None
        return provider.labels

    def _page(self, url: str, timeout: float) -> tuple[list[Any], str | None]:
        kept = self._pages.get(url)
        resp = self.api.request("GET", url, etag=kept[0] if kept else None, timeout=timeout)
        if resp.status == 304 and kept is not None:
            return kept[1], kept[2]
        if resp.status >= 400:
            raise self.api.failed(resp, "listing")
        items, following = pages(url, resp, self.api.where)
        etag = resp.headers.get("ETag")
        if etag:
            self._pages[url] = (etag, items, following)
        return items, following

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


def pages(url: str, resp: Any, where: str) -> tuple[list[Any], str | None]:
    """The JSON list answer ``resp`` to ``url`` gave, and its next page's URL (``Link: <...>; rel="next"``, RFC 8288;
    None on the last page). Raises GenerateError when the answer is no JSON list or the next page is on another
    host (not followed: the token would go there)."""
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
    return items, following

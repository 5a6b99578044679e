"""Where a pull request preview goes: one comment on the pull request, edited in place, and a commit status.

GitHub (REST API): the comments of a pull request are its issue's (``GET /repos/{owner}/{repo}/issues/{number}/
comments``, pages of 100 linked by ``Link``), created with ``POST .../issues/{number}/comments`` and edited with
``PATCH /repos/{owner}/{repo}/issues/comments/{id}``, each ``{"body": ...}``; a commit status is ``POST
/repos/{owner}/{repo}/statuses/{sha}`` (``state`` pending/success/failure/error, ``context``, ``description`` up to
140 characters, ``target_url``). GitLab (REST API v4): merge request notes (``GET/POST /projects/:id/
merge_requests/:iid/notes``, ``PUT .../notes/:note_id``) and ``POST /projects/:id/statuses/:sha`` (``state``
pending/running/success/failed/canceled, ``name``, ``description``, ``target_url``).

The comment is found again by the hidden marker it starts with (:func:`agent.appsets.preview.marker`), so each
push edits the one comment instead of adding another. Every call is one or a few requests through the generator's
:class:`agent.appsets.scm.Api` (timeouts, rate limits); retries are the caller's (:mod:`agent.runtime.previews`).
"""

from __future__ import annotations

from typing import Any

from agent import config
from agent.appsets import pullrequests, scm

MAX_PAGES = 20
"""Pages of comments (of 100) read at most while looking for the preview's."""
_GITLAB_STATES = {"pending": "pending", "success": "success", "failure": "failed", "error": "failed"}


class Poster:
    """Posts a preview's comment and commit status on the repository ``spec`` names. Raises
    :class:`agent.appsets.scm.ApiError` from each call."""

    def __init__(self, spec: config.PullRequestGenerator, api: scm.Api | None = None) -> None:
        self.spec = spec
        self.api = api or scm.Api(spec)

    def comment(self, number: int, marker: str, body: str) -> str:
        """Create, or edit in place, the comment of pull request ``number`` that starts with ``marker``;
        ``body`` must start with it. Gives what was done: ``created``, ``edited`` or ``unchanged``."""
        found = self._find(number, marker)
        if found is not None and found.get("body") == body:
            return "unchanged"
        if self.api.github:
            if found is None:
                url, method = f"{self.api.base}/issues/{number}/comments", "POST"
            else:
                url, method = f"{self.api.base}/issues/comments/{found['id']}", "PATCH"
        elif found is None:
            url, method = f"{self.api.base}/merge_requests/{number}/notes", "POST"
        else:
            url, method = f"{self.api.base}/merge_requests/{number}/notes/{found['id']}", "PUT"
        resp = self.api.request(method, url, doc={"body": body})
        if resp.status >= 300:
            raise self.api.failed(resp, f"{'creating' if found is None else 'editing'} the comment on #{number}")
        return "created" if found is None else "edited"

    def status(self, sha: str, state: str, description: str, context: str, link: str | None = None) -> None:
        """Set commit status ``state`` (pending, success, failure) with ``description`` under ``context`` on
        ``sha`` (``link``: its target URL)."""
        doc: dict[str, Any]
        if self.api.github:
            doc = {"state": state, "context": context, "description": description[:140]}
        else:
            doc = {"state": _GITLAB_STATES[state], "name": context, "description": description[:255]}
        if link:
            doc["target_url"] = link
        resp = self.api.request("POST", f"{self.api.base}/statuses/{sha}", doc=doc)
        if resp.status >= 300:
            raise self.api.failed(resp, f"setting the commit status of {sha[:12]}")

    def _find(self, number: int, marker: str) -> dict[str, Any] | None:
        """The comment (note) of ``number`` whose body starts with ``marker``, or None."""
        kind = "issues" if self.api.github else "merge_requests"
        what = "comments" if self.api.github else "notes"
        url: str | None = f"{self.api.base}/{kind}/{number}/{what}?per_page=100"
        for _ in range(MAX_PAGES):
            if url is None:
                break
            resp = self.api.request("GET", url)
            if resp.status >= 300:
                raise self.api.failed(resp, f"listing the comments of #{number}")
            items, url = pullrequests.pages(url, resp, self.api.where)
            for item in items:
                if isinstance(item, dict) and str(item.get("body", "")).startswith(marker):
                    return item
        return None

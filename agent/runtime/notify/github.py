"""GitHub commit statuses: "Create a commit status" (``POST /repos/{owner}/{repo}/statuses/{sha}`` with
``state``, ``target_url``, ``description`` up to 140 characters, ``context``; GitHub's REST API)."""

from __future__ import annotations

import dataclasses
import json

from agent import config
from agent.runtime import events
from agent.runtime.notify import protocol


@dataclasses.dataclass(frozen=True)
class GitHub:
    """:class:`agent.runtime.notify.protocol.Format` of GitHub commit statuses."""

    base: str
    repository: str
    link: str | None
    token: str = dataclasses.field(repr=False)

    def event(self, event: events.Event) -> None:
        """None: GitHub gets commit statuses, not events."""
        return None

    def status(self, context: str, sha: str, state: str, description: str) -> protocol.Request:
        """The commit status request (states: pending, success, failure)."""
        doc = {"state": state, "description": protocol.short(description), "context": context}
        if self.link:
            doc["target_url"] = self.link
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "Content-Type": "application/json",
        }
        path = f"/repos/{self.repository}/statuses/{sha}"
        return protocol.Request(("status", context, sha, state), path, json.dumps(doc).encode(), headers)


def make(spec: config.Notification, source_url: str, instance: str) -> GitHub:
    """The GitHub provider of ``spec`` (``apiURL`` default ``https://api.github.com``; ``repository`` default: from
    the source URL). Raises ConfigError when its token cannot be read."""
    base = (spec.api_url or "https://api.github.com").rstrip("/")
    return GitHub(base, spec.repository or protocol.repository_of(source_url), spec.target_url, protocol.token_of(spec))

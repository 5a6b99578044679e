"""GitLab commit statuses: "Set the pipeline status of a commit" (``POST /api/v4/projects/:id/statuses/:sha``
with ``state`` pending/running/success/failed, ``name``, ``target_url``, ``description``; GitLab's REST API)."""

from __future__ import annotations

import dataclasses
import json
import urllib.parse

from agent import config
from agent.runtime import events
from agent.runtime.notify import protocol

STATES = {"failure": "failed"}
"""Our states GitLab names otherwise."""


@dataclasses.dataclass(frozen=True)
class GitLab:
    """:class:`agent.runtime.notify.protocol.Format` of GitLab commit statuses."""

    base: str
    project: str
    link: str | None
    token: str = dataclasses.field(repr=False)

    def event(self, event: events.Event) -> None:
        """None: GitLab gets commit statuses, not events."""
        return None

    def status(self, context: str, sha: str, state: str, description: str) -> protocol.Request:
        """The commit status request (``failure`` sent as GitLab's ``failed``)."""
        state = STATES.get(state, state)
        doc = {"state": state, "description": protocol.short(description), "name": context}
        if self.link:
            doc["target_url"] = self.link
        path = f"/api/v4/projects/{urllib.parse.quote(self.project, safe='')}/statuses/{sha}"
        headers = {"PRIVATE-TOKEN": self.token, "Content-Type": "application/json"}
        return protocol.Request(("status", context, sha, state), path, json.dumps(doc).encode(), headers)


def make(spec: config.Notification, source_url: str, instance: str) -> GitLab:
    """The GitLab provider of ``spec`` (``apiURL`` default ``https://gitlab.com``; ``repository``: the project
    path, default from the source URL). Raises ConfigError when its token cannot be read."""
    base = (spec.api_url or "https://gitlab.com").rstrip("/")
    return GitLab(base, spec.repository or protocol.repository_of(source_url), spec.target_url, protocol.token_of(spec))

"""Slack incoming webhooks: ``text`` (the plain text) and Block Kit ``blocks`` (Slack's "Sending messages using
incoming webhooks")."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from agent import config
from agent.runtime import events
from agent.runtime.notify import protocol


def payload(event: events.Event, link: str | None) -> dict[str, Any]:
    """A Slack incoming-webhook message: ``text`` (the notification's plain text) and Block Kit ``blocks``."""
    where = event.cluster or "the source"
    text = f"{event.reason} on {where}: {event.message}"
    context = f"revision `{event.revision[:12] or '-'}` · {event.time.isoformat()}" + (
        f" · <{link}|status>" if link else ""
    )
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{event.reason}* on `{where}`\n{event.message}"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    }


@dataclasses.dataclass(frozen=True)
class Slack:
    """:class:`agent.runtime.notify.protocol.Format` of Slack."""

    base: str
    link: str | None

    def event(self, event: events.Event) -> protocol.Request:
        """The event as a Slack message."""
        body = json.dumps(payload(event, self.link)).encode()
        return protocol.Request(
            (event.cluster, event.path, event.reason), "", body, {"Content-Type": "application/json"}
        )

    def status(self, context: str, sha: str, state: str, description: str) -> None:
        """None: Slack gets no commit statuses."""
        return None


def make(spec: config.Notification, source_url: str, instance: str) -> Slack:
    """The Slack provider of ``spec`` (its URL read from its secret). Raises ConfigError when it cannot be read."""
    return Slack(protocol.url_of(spec).rstrip("/"), spec.target_url)

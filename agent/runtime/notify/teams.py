"""Microsoft Teams: an Adaptive Card message posted to a Teams workflow webhook ("Post to a channel when a webhook
request is received"), the format Flux's ``msteams`` provider sends since Office 365 connectors were retired:
``{"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content":
<AdaptiveCard 1.4>}]}``, the card holding a title, the message and a FactSet (cluster, app path, revision, time),
and an ``Action.OpenUrl`` to ``targetURL`` when one is set."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from agent import config
from agent.runtime import events
from agent.runtime.notify import protocol

CARD_VERSION = "1.4"
"""The Adaptive Card schema version sent (the newest Teams renders everywhere)."""


def card(event: events.Event, link: str | None) -> dict[str, Any]:
    """The Teams message of ``event``: an Adaptive Card in a ``message`` envelope."""
    facts = [{"title": "Cluster", "value": event.cluster or "-"}]
    if event.path:
        facts.append({"title": "App", "value": event.path})
    facts += [
        {"title": "Revision", "value": event.revision[:12] or "-"},
        {"title": "Time", "value": event.time.isoformat()},
    ]
    failed = event.reason.endswith("Failed") or event.reason in ("OutOfSync", "Degraded")
    content: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": [
            {
                "type": "TextBlock",
                "text": f"{event.reason} on {event.cluster or 'the source'}",
                "weight": "Bolder",
                "size": "Medium",
                "color": "Attention" if failed else "Good",
                "wrap": True,
            },
            {"type": "TextBlock", "text": event.message or event.reason, "wrap": True},
            {"type": "FactSet", "facts": facts},
        ],
    }
    if link:
        content["actions"] = [{"type": "Action.OpenUrl", "title": "Open status", "url": link}]
    attachment = {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": content}
    return {"type": "message", "attachments": [attachment]}


@dataclasses.dataclass(frozen=True)
class Teams:
    """:class:`agent.runtime.notify.protocol.Format` of a Teams workflow webhook."""

    base: str
    link: str | None

    def event(self, event: events.Event) -> protocol.Request:
        """The event as an Adaptive Card message."""
        body = json.dumps(card(event, self.link)).encode()
        return protocol.Request(
            (event.cluster, event.path, event.reason), "", body, {"Content-Type": "application/json"}
        )

    def status(self, context: str, sha: str, state: str, description: str) -> None:
        """None: Teams gets no commit statuses."""
        return None


def make(spec: config.Notification, source_url: str, instance: str) -> Teams:
    """The Teams provider of ``spec`` (its workflow URL read from its secret). Raises ConfigError when it cannot be
    read."""
    return Teams(protocol.url_of(spec), spec.target_url)

"""Generic webhooks: CloudEvents 1.0 in structured mode (``application/cloudevents+json``, the CloudEvents JSON
format spec), signed with the HMAC-SHA256 of the body in ``X-Signature-256: sha256=<hex>`` when a secret is set
(GitHub's webhook signature convention)."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import uuid
from typing import Any

from agent import config
from agent.runtime import events
from agent.runtime.notify import protocol


def cloudevent(event: events.Event, instance: str) -> dict[str, Any]:
    """The event as a CloudEvents 1.0 structured-mode JSON document."""
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": f"gitops-agent/{instance}",
        "type": f"io.gitops-agent.{event.reason}",
        "subject": event.cluster or "source",
        "time": event.time.isoformat(),
        "datacontenttype": "application/json",
        "data": event.json(),
    }


@dataclasses.dataclass(frozen=True)
class Webhook:
    """:class:`agent.runtime.notify.protocol.Format` of a CloudEvents webhook (``secret``: the HMAC key, or
    None)."""

    base: str
    instance: str
    secret: bytes | None = dataclasses.field(default=None, repr=False)

    def event(self, event: events.Event) -> protocol.Request:
        """The event as a signed CloudEvent."""
        body = json.dumps(cloudevent(event, self.instance), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/cloudevents+json"}
        if self.secret is not None:
            headers["X-Signature-256"] = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        return protocol.Request((event.cluster, event.path, event.reason), "", body, headers)

    def status(self, context: str, sha: str, state: str, description: str) -> None:
        """None: a webhook gets no commit statuses."""
        return None


def make(spec: config.Notification, source_url: str, instance: str) -> Webhook:
    """The webhook provider of ``spec``. Raises ConfigError when its URL or secret cannot be read."""
    secret = spec.secret.value(f"notifications[{spec.name}].secret") if spec.secret else None
    return Webhook(protocol.url_of(spec).rstrip("/"), instance, secret)

"""Push webhooks: who may trigger a fetch, and whether a push concerns the tracked ref.

- GitHub: ``X-Hub-Signature-256: sha256=<hex>``, HMAC-SHA256 of the raw body with the shared secret (GitHub docs,
  "Validating webhook deliveries"); ``X-GitHub-Event: push`` (``ping`` is answered, nothing triggered).
- GitLab: ``X-Gitlab-Token`` equal to the secret; ``X-Gitlab-Event: Push Hook`` or ``Tag Push Hook``.
- Generic: ``X-Signature-256: sha256=<hex>``, HMAC-SHA256 of the raw body; a JSON body with ``ref`` (optional).

Every comparison is constant-time (``hmac.compare_digest``). Only pushes to the tracked ref trigger (a branch
``main`` matches ``refs/heads/main``, a tag ``v1`` matches ``refs/tags/v1``; a pinned commit matches nothing).
Used by ``agent.api.server``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Mapping

PROVIDERS = ("github", "gitlab", "generic")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What to do with a delivery: ``status`` (HTTP code), ``trigger`` (fetch now) and a ``reason``."""

    status: int
    trigger: bool
    reason: str


def _hmac_ok(secret: bytes, body: bytes, header: str | None) -> bool:
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), (header or "").encode())


def tracks(source_ref: str, pushed: str) -> bool:
    """True when a push of ``pushed`` (``refs/heads/x``, ``refs/tags/x``) moves ``source_ref``."""
    return pushed in (f"refs/heads/{source_ref}", f"refs/tags/{source_ref}", source_ref)


def judge(provider: str, secret: bytes, headers: Mapping[str, str], body: bytes, source_ref: str) -> Verdict:
    """Authenticate a delivery of ``provider`` and decide whether it triggers a fetch.

    ``headers`` must be case-insensitive (as Starlette's are). 401 for a missing or wrong signature or token,
    400 for a body that is not a JSON object, 200 without trigger for other events and other refs, 202 with
    trigger for a push to the tracked ref.
    """
    if provider == "gitlab":
        ok = hmac.compare_digest(secret, headers.get("x-gitlab-token", "").encode())
        event = headers.get("x-gitlab-event", "")
        is_push = event in ("Push Hook", "Tag Push Hook")
    elif provider == "github":
        ok = _hmac_ok(secret, body, headers.get("x-hub-signature-256"))
        event = headers.get("x-github-event", "")
        is_push = event == "push"
    else:
        ok = _hmac_ok(secret, body, headers.get("x-signature-256"))
        event, is_push = "push", True
    if not ok:
        return Verdict(401, False, "signature or token missing or wrong")
    if not is_push:
        return Verdict(200, False, f"event {event or '(none)'} does not trigger a fetch")
    try:
        payload = json.loads(body) if body.strip() else {}
    except ValueError:
        return Verdict(400, False, "body is not JSON")
    if not isinstance(payload, dict):
        return Verdict(400, False, "body is not a JSON object")
    ref = payload.get("ref")
    if provider == "generic" and ref is None:
        return Verdict(202, True, "push")
    if not isinstance(ref, str) or not tracks(source_ref, ref):
        return Verdict(200, False, f"ref {ref!r} is not the tracked ref {source_ref!r}")
    return Verdict(202, True, f"push to {ref}")

"""The audit trail: every mutating request to the API, and every refused one, with who, what, where and the result
(what is recorded: :func:`agent.api.guard.install`).

Each entry is kept (the newest :data:`KEEP`, served newest first by ``GET /api/v1/audit``), logged as one JSON
line on the ``agent.audit`` logger, and sent as an ``ActionTaken`` event to the event log and through it to the
notification providers. Entries hold no secret: the subject is a name (``admin``, an API token's name), never a
token. Owned by the HTTP server; :meth:`AuditLog.record` is called from its request handlers (any thread).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import json
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("agent.audit")

KEEP = 1000
"""Entries kept (the newest)."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One request: ``subject`` and ``groups`` (who), ``token`` (the name of the token they used, "" for none),
    ``method`` and ``path``, ``resource``, ``action`` and ``objects`` (what the policy checked: ``<app>/<cluster>``,
    a cluster's name...), ``remote`` (the client's address), ``status`` (the HTTP status answered), ``result``
    (``allowed``, ``denied`` or ``failed``: allowed but answered 4xx/5xx), ``time`` (UTC)."""

    subject: str
    groups: tuple[str, ...]
    token: str
    method: str
    path: str
    resource: str
    action: str
    objects: tuple[str, ...]
    remote: str
    status: int
    result: str
    time: datetime.datetime = dataclasses.field(default_factory=lambda: datetime.datetime.now(datetime.UTC))

    def json(self) -> dict[str, Any]:
        """The entry as ``GET /api/v1/audit`` serves it."""
        return {**dataclasses.asdict(self), "groups": list(self.groups), "objects": list(self.objects),
                "time": self.time.isoformat()}  # fmt: skip

    def message(self) -> str:
        """One line for the event log: who did what to which objects, and the result."""
        what = f"{self.action} {self.resource} {', '.join(self.objects)}".strip()
        return f"{self.subject} {what} ({self.method} {self.path}): {self.result} ({self.status})"


class AuditLog:
    """The newest :data:`KEEP` entries; ``on_entry`` is told each (the ``ActionTaken`` event). Thread-safe."""

    def __init__(self, on_entry: Callable[[Entry], None] = lambda e: None) -> None:
        self._entries: collections.deque[Entry] = collections.deque(maxlen=KEEP)
        self._lock = threading.Lock()
        self._on_entry = on_entry

    def record(self, entry: Entry) -> None:
        """Keep ``entry``, log it as JSON and pass it on."""
        with self._lock:
            self._entries.append(entry)
        log.info(json.dumps(entry.json(), separators=(",", ":")))
        self._on_entry(entry)

    def json(self, limit: int = KEEP, subject: str | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` entries (of ``subject`` alone when given), newest first."""
        with self._lock:
            found: Sequence[Entry] = list(self._entries)
        picked = [e for e in reversed(found) if subject is None or e.subject == subject]
        return [e.json() for e in picked[:limit]]

"""The provider protocol: how one kind of notification provider turns an event or a commit status into an HTTP
request. Delivery (queue, coalescing, rate, retries, the thread) is the same for every kind
(:mod:`agent.runtime.notify.channel`); a kind only formats (one module each, registered in
:data:`agent.notifier_kinds.KINDS`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Protocol

from agent import config
from agent.runtime import events


@dataclasses.dataclass(frozen=True)
class Request:
    """One message to send: ``key`` (a newer message of the same key replaces a queued one), ``path`` (appended to
    the provider's base URL), ``body`` (bytes) and ``headers``."""

    key: tuple[str, ...]
    path: str
    body: bytes
    headers: Mapping[str, str]


class Format(Protocol):
    """One configured provider's formatting: ``base`` (the URL its requests go to, ``path`` appended; a secret for
    webhook URLs: never logged), and the requests of an event or a commit status."""

    base: str

    def event(self, event: events.Event) -> Request | None:
        """The request that tells ``event`` (None: this kind sends no events)."""
        ...

    def status(self, context: str, sha: str, state: str, description: str) -> Request | None:
        """The request that sets commit status ``state`` (pending, success, failure) with ``description`` on
        ``sha`` under ``context`` (None: this kind sets no commit statuses)."""
        ...


def url_of(spec: config.Notification) -> str:
    """The provider's URL (read from its secret when it is one). Raises ConfigError when the secret is missing."""
    if isinstance(spec.url, config.SecretRef):
        return spec.url.value(f"notifications[{spec.name}].url").decode()
    return spec.url or ""


def token_of(spec: config.Notification) -> str:
    """The provider's token (``""`` when none). Raises ConfigError when its secret is missing."""
    return spec.token.value(f"notifications[{spec.name}].token").decode() if spec.token else ""


def repository_of(url: str) -> str:
    """``owner/repo`` (GitLab: the whole project path) from a git URL: ``https://host/owner/repo.git``,
    ``ssh://git@host/owner/repo``, ``git@host:owner/repo.git``, or a local path (its last two segments)."""
    if "://" in url:
        path = url.split("://", 1)[1].partition("/")[2]
    elif "@" in url and ":" in url:
        path = url.partition(":")[2]
    else:
        path = "/".join(url.rstrip("/").split("/")[-2:])
    return path.strip("/").removesuffix(".git")


def short(description: str, limit: int = 140) -> str:
    """``description`` cut to ``limit`` characters (GitHub refuses a commit status description over 140)."""
    return description if len(description) <= limit else description[: limit - 3] + "..."

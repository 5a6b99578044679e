"""The repositories an import's definitions read, named as the agent's ``sources``.

Each distinct repository URL (after ``--map-url``, and with a trailing ``/`` or ``.git`` ignored) becomes one
source, named after the repository (its last path segment as a DNS label, made unique), or after the name a
repository Secret gives it. Credentials are attached as references only: an environment variable's name
(``tokenEnv``, ``usernameEnv``/``passwordEnv``) or a file path (``sshKeyFile``), never a value.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from reconcilers import errors


def parse_map_url(pairs: Sequence[str]) -> list[tuple[str, str]]:
    """``FROM=TO`` pairs of ``--map-url`` as (prefix, replacement). Raises :class:`errors.ConfigError` naming a
    pair without ``=`` or with an empty side."""
    out = []
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            raise errors.ConfigError(f"--map-url {pair!r}: give FROM=TO (a URL prefix and what replaces it)")
        out.append((old, new))
    return out


def normal(url: str) -> str:
    """``url`` as compared: without a trailing ``/`` or ``.git``."""
    return url.rstrip("/").removesuffix(".git")


def label(text: str, fallback: str = "source") -> str:
    """``text`` as a DNS label (lower case, ``-`` for anything else, at most 63 characters)."""
    found = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].strip("-")
    return found or fallback


class Sources:
    """The sources of one import, by name, and the URL each was read from. Not thread-safe (one import)."""

    def __init__(self, map_url: Sequence[tuple[str, str]] = ()) -> None:
        self.map_url = list(map_url)
        self.entries: dict[str, dict[str, Any]] = {}
        """name -> the source's config (camelCase keys)."""
        self._by_url: dict[tuple[str, str], str] = {}

    def adopt(self, name: str, url: str, kind: str) -> None:
        """Take the existing source ``name`` of ``url`` and ``kind`` as the one its URL names (a config's
        sources, when an app's rendered objects are mapped)."""
        self._by_url[(kind, normal(url))] = name
        self.entries[name] = {"url": url}

    def rewrite(self, url: str) -> str:
        """``url`` after the first ``--map-url`` prefix it starts with (unchanged when none)."""
        for old, new in self.map_url:
            if url.startswith(old):
                return new + url[len(old) :]
        return url

    def find(self, url: str, kind: str = "git") -> str | None:
        """The name of the source of ``url`` (as written in the definitions) and ``kind``, if one was made."""
        return self._by_url.get((kind, normal(self.rewrite(url))))

    def name(self, url: str, kind: str = "git", hint: str = "") -> str:
        """The source name of ``url`` (as written in the definitions) and ``kind`` (``git``, ``helm`` or ``oci``),
        made on first use: ``hint`` (a Secret's name) or the repository's last path segment."""
        key = (kind, normal(self.rewrite(url)))
        if key in self._by_url:
            return self._by_url[key]
        base = label(hint or normal(url).rsplit("/", 1)[-1].rsplit(":", 1)[-1])
        name, n = base, 2
        while name in self.entries:
            name, n = f"{base}-{n}", n + 1
        target = self.rewrite(url)
        entry: dict[str, Any] = {"url": target}
        if kind == "oci" and not target.startswith("oci://") and "://" not in target:
            entry["url"] = f"oci://{target}"
        if kind != "git":
            entry["type"] = kind
        self.entries[name] = entry
        self._by_url[key] = name
        return name

"""Content keys: what the sync wing compares to decide that an input is the one it saw before.

What a sync remembers for the next (:mod:`agent.sync.memory`) is reused only when what it depends on is the same
*by content*: the config's digest (:func:`config_digest`), a revision's SHA, the discovery generation, an inventory
ConfigMap's ``uid`` and ``resourceVersion`` (:func:`inventory_versions`), a digest of a unit's rendered manifests
(:func:`manifests_digest`), the unit itself (a frozen dataclass, compared field by field). :func:`same` compares
two values by equality; an object is equal to itself, so the one handed out again is recognised without a walk
(the same shortcut Python's own containers take), but a different object with the same content is the same input
too, and an object changed in place would not be (none is: every one of these is frozen or never changed).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

from agent import config
from reconcilers import resources

InventoryVersions = tuple[tuple[str, str, str], ...]
"""``(inventory key, uid, resourceVersion)`` of each inventory ConfigMap, sorted by key."""


def same(a: object, b: object) -> bool:
    """True when ``a`` and ``b`` are equal by content (the same object is equal to itself at once)."""
    return a is b or a == b


def config_digest(cfg: config.AgentConfig) -> str:
    """A SHA-256 (hex) of the whole config as its models dump it: the config's generation, by content. Only a
    digest: no value of the config leaves it."""
    return hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()


def manifests_digest(manifests: Sequence[resources.Manifest]) -> str:
    """A SHA-256 (hex) of a unit's rendered manifests: each one's document (file, index, list item), inventory
    key and body, in order. Only a digest: decrypted or substituted values in the bodies never leave it."""
    h = hashlib.sha256()
    for m in manifests:
        h.update(json.dumps((m.source_file, m.doc_index, m.item, m.source_path), separators=(",", ":")).encode())
        h.update(json.dumps(m.body, sort_keys=True, separators=(",", ":"), default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def inventory_versions(stored: Mapping[str, resources.Body]) -> InventoryVersions:
    """The versions of the inventory ConfigMaps in ``stored`` (inventory key -> ConfigMap): equal versions are
    equal contents (the API server gives every write a new ``resourceVersion``; a ConfigMap made again a new
    ``uid``)."""
    return tuple(sorted((k, *version(b)) for k, b in stored.items()))


def version(body: resources.Body | None) -> tuple[str, str]:
    """``(uid, resourceVersion)`` of ``body`` (empty strings for None or an object without them)."""
    meta = (body or {}).get("metadata") or {}
    return str(meta.get("uid", "")), str(meta.get("resourceVersion", ""))

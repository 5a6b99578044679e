"""The thread registry: every long-lived thread of the agent is started by :func:`start` (or, a thread class of its
own, :func:`register`-ed as it starts) with a name and an owner, and stopped by that owner; a constructor never
starts one. :func:`table` lists every thread of :func:`threading.enumerate` with its owner, state and age
(``GET /api/v1/debug/threads``).

Owners are paths: ``fleet``, ``fleet/sources``, ``fleet/notify``, ``cluster/<name>/worker``,
``cluster/<name>/sync`` (self-heal, drift, the live cache and inventory watches, a sync's app and health-wait
threads), ``api``; thread pools are known by their name prefix (:func:`pool`). Threads started by libraries
(uvicorn's, AnyIO's workers for the API's handlers, APScheduler's) are named by what started them. Kept at the
bottom of the layers (stdlib only) so every package may use it.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class _Entry:
    owner: str
    started: float  # monotonic seconds


_entries: weakref.WeakKeyDictionary[threading.Thread, _Entry] = weakref.WeakKeyDictionary()
_pools: dict[str, str] = {}  # thread name prefix -> owner
_lock = threading.Lock()

LIBRARY = (
    ("MainThread", "main"),
    ("AnyIO worker thread", "api (AnyIO's worker threads, one per request in flight)"),
    ("APScheduler", "fleet/sources (APScheduler)"),
    ("ThreadPoolExecutor-", "unnamed thread pool"),
    ("asyncio_", "api (asyncio's default executor)"),
)
"""Owners of threads started by libraries, by the start of their name."""


def start(name: str, owner: str, target: Callable[..., Any], *args: Any) -> threading.Thread:
    """Start a daemon thread ``name`` running ``target(*args)``, owned by ``owner`` (who must stop it)."""
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    register(thread, owner)
    thread.start()
    return thread


def register(thread: threading.Thread, owner: str) -> None:
    """Record ``owner`` for ``thread`` (a thread class of its own, registered just before it starts)."""
    with _lock:
        _entries[thread] = _Entry(owner, time.monotonic())


def pool(prefix: str, owner: str) -> str:
    """Record ``owner`` for the threads of a pool named ``prefix`` (``ThreadPoolExecutor(thread_name_prefix=...)``)
    and return ``prefix``."""
    with _lock:
        _pools[prefix] = owner
    return prefix


def owner_of(thread: threading.Thread) -> str:
    """The owner of ``thread`` ("unregistered" when nothing says)."""
    with _lock:
        entry = _entries.get(thread)
        pools = dict(_pools)
    if entry is not None:
        return entry.owner
    name = thread.name
    for prefix, owner in sorted(pools.items(), key=lambda p: -len(p[0])):
        if name.startswith(prefix + "_"):
            return owner
    return next((owner for start_, owner in LIBRARY if name.startswith(start_)), "unregistered")


def table() -> list[dict[str, Any]]:
    """Every live thread: ``{"name", "owner", "state" (running, or daemon), "ageSeconds" (None when not
    registered), "ident"}``, by owner then name."""
    now = time.monotonic()
    out = []
    for thread in threading.enumerate():
        with _lock:
            entry = _entries.get(thread)
        out.append(
            {
                "name": thread.name,
                "owner": owner_of(thread),
                "state": "daemon" if thread.daemon else "running",
                "ageSeconds": round(now - entry.started, 1) if entry else None,
                "ident": thread.ident,
            }
        )
    return sorted(out, key=lambda t: (t["owner"], t["name"]))

"""What the rest of the agent reads of a cluster's sync: :class:`ClusterView`, an immutable snapshot.

The status API, the metrics, events' health verdicts and ``trace`` run on other threads than the cluster's
worker. They never hold the worker's :class:`agent.sync.cluster.ClusterSync` or its session: they ask the worker
for a view (:meth:`agent.runtime.worker.Worker.view`), made of what the sync's parts publish for any thread:

- the drift monitor's :class:`agent.sync.drift.Snapshot` (replaced, never changed, at each verdict);
- self-heal's status and the objects it fights over (copied under its lock);
- whether a request of the sync in flight waits out a ``Retry-After`` (a string);
- the request counts the cluster's connection has sent (a copy);
- read-only reads of the live cache: each object's health verdict (judged once per watch event, an immutable
  :class:`reconcilers.health.HealthStatus`) and a cached object for ``trace``, falling back to one GET
  (:func:`read`); both are reads under the cache's lock, they change nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent.sync import drift, selfheal
from reconcilers import health, resources

HealthRead = Callable[[Sequence[resources.ResourceKey]], dict[resources.ResourceKey, health.HealthStatus]]
"""The health of each key now, from the live cache (Unknown for every key when the cluster was never reached)."""


def _unknown(keys: Sequence[resources.ResourceKey]) -> dict[resources.ResourceKey, health.HealthStatus]:
    return {k: health.HealthStatus(health.Health.UNKNOWN, "cluster not reached yet") for k in keys}


def _unwatched(keys: Sequence[resources.ResourceKey]) -> dict[resources.ResourceKey, health.HealthStatus]:
    return {k: health.HealthStatus(health.Health.UNKNOWN, "not watched") for k in keys}


def _nothing(key: resources.ResourceKey) -> resources.Body | None:
    return None


@dataclasses.dataclass(frozen=True)
class ClusterView:
    """One cluster's sync as other threads may read it (see the module doc). ``heal``: self-heal's status
    (``{"healed": N, "fighting": [...]}``, ``{}`` when self-heal is off); ``fighting``: the objects self-heal no
    longer corrects; ``drift``: the drifted objects now; ``throttled``: ``Throttled by the API server (N retries)``
    or ""; ``requests``: requests sent so far by kind (``apply``, ``get``, ``list`` ...); ``reached``: the
    cluster's connection is open; ``changes``: the live cache's change count when the view was made (None: no
    cache), read before any health it vouches for; ``health(keys)``: their health now; ``read(key)``: the live
    object, from the cache when it holds its ``managedFields``, else one GET (None: missing, or the cluster not
    reachable)."""

    heal: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    fighting: tuple[selfheal.Fight, ...] = ()
    drift: drift.Snapshot = drift.EMPTY
    throttled: str = ""
    requests: Mapping[str, int] = dataclasses.field(default_factory=dict)
    reached: bool = False
    changes: int | None = None
    health: HealthRead = _unknown
    read: Callable[[resources.ResourceKey], resources.Body | None] = _nothing


EMPTY = ClusterView()
"""The view of a cluster whose sync has not reached it yet."""
UNWATCHED = ClusterView(health=_unwatched)
"""The view of a cluster whose worker has no sync (before its first sync, or paused): nothing is watched."""

"""The health wait after a sync (``sync.wait``, ``sync --wait``, an app others depend on, a rollout step): poll
the synced objects' health every 0.25 s until all are Healthy, one is Degraded, the timeout passes (the worst state
then, Progressing or Missing, is the answer) or the sync is cancelled; every :data:`PROGRESS_EVERY` seconds the
objects not Healthy yet are logged on ``agent.progress`` (what ``sync --wait`` prints). Used by
:mod:`agent.sync.cluster`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence

from reconcilers import cancel as cancel_
from reconcilers import engine, health, resources

progress = logging.getLogger("agent.progress")
"""Where a health wait says what it waits for (``sync --wait`` shows it without ``-v``)."""

PROGRESS_EVERY = 5.0
"""Seconds between the lines a health wait logs about the objects not Healthy yet."""

Healths = Callable[
    [Sequence[resources.ResourceKey], Mapping[resources.ResourceKey, int]],
    Mapping[resources.ResourceKey, health.HealthStatus],
]
"""The health of the given keys now, told which of them the sync wrote (key -> the generation its write made)."""


def wait(
    result: engine.ReconcileResult, token: cancel_.Token, timeout: float, cluster: str, read: Healths
) -> engine.ReconcileResult:
    """``result`` with ``health`` (the worst object's when the wait ended), ``health_message`` (which object and
    why; ``not Healthy within Ns: ...`` at the timeout) and ``healths`` (each object's); or, when ``token`` is
    cancelled, with ``error_kind=cancelled``. ``timeout`` in seconds."""
    keys = list(result.desired)
    written = {e.key: e.generation for e in result.entries if e.generation is not None}
    started = time.monotonic()
    deadline, told = started + timeout, started
    while True:
        healths = read(keys, written)
        worst = health.aggregate(h.status for h in healths.values())
        timed_out = time.monotonic() > deadline
        if worst in (health.Health.HEALTHY, health.Health.DEGRADED) or timed_out:
            break
        if time.monotonic() - told >= PROGRESS_EVERY:
            told = time.monotonic()
            progress.info("%s", _progress(cluster, result.app, healths, told - started, timeout))
        if token.wait(0.25):
            return dataclasses.replace(
                result, error=f"cancelled: {token.reason}", error_kind=engine.ErrorKind.CANCELLED
            )
    culprit = next((k for k, h in healths.items() if h.status is worst), None)
    message = f"{culprit}: {healths[culprit].message}" if culprit and worst is not health.Health.HEALTHY else ""
    if timed_out and worst is not health.Health.HEALTHY:
        message = f"not Healthy within {timeout:.0f}s: {message}"
    return dataclasses.replace(result, health=worst, health_message=message, healths=dict(healths))


def _progress(
    cluster: str, app: str, healths: Mapping[resources.ResourceKey, health.HealthStatus], waited: float, limit: float
) -> str:
    """``cluster a: app web: waiting for health (5s of 20s): 1 of 3 object(s) not Healthy: Deployment ns/web
    (Progressing: ...)`` naming at most three."""
    behind = [(k, h) for k, h in healths.items() if h.status is not health.Health.HEALTHY]
    named = "; ".join(f"{k} ({h.status.value}: {h.message})" for k, h in behind[:3])
    more = f"; and {len(behind) - 3} more" if len(behind) > 3 else ""
    return (
        f"cluster {cluster}: app {app}: waiting for health ({waited:.0f}s of {limit:.0f}s): "
        f"{len(behind)} of {len(healths)} object(s) not Healthy: {named}{more}"
    )

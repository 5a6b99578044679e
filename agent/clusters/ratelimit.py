"""A client-side rate limit per cluster: a token bucket with client-go's semantics.

client-go's ``rest.Config`` limits every request of one client with ``flowcontrol.NewTokenBucketRateLimiter(qps,
burst)``, built on ``golang.org/x/time/rate``: the bucket holds at most ``burst`` tokens, refills at ``qps`` tokens a
second, and each request takes one, waiting for it when the bucket is empty (``Limiter.Wait``). Here the same: a
caller reserves its token at once (the bucket may go below zero, as ``rate.Limiter.Reserve`` does) and sleeps the
time its token needs to come, so callers are served in arrival order and the rate holds over any window of one
second or more: at most ``burst + qps * t`` requests in any ``t`` seconds. One bucket serves every request to a
cluster (syncs, self-heal, drift dry runs, hooks, inventories, health reads, watches as they start); a wait ends
early when the sync in flight is cancelled. Used by :mod:`agent.clusters.connection`.
"""

from __future__ import annotations

import threading
import time

from reconcilers import cancel as cancel_
from reconcilers import errors


class TokenBucket:
    """``qps`` tokens a second (> 0), at most ``burst`` (>= 1) held. Thread-safe."""

    def __init__(self, qps: float, burst: int) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs qps > 0 and burst >= 1, not {qps:g} and {burst}")
        self.qps = qps
        self.burst = burst
        self._tokens = float(burst)
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self.waited = 0.0
        """Seconds callers waited for tokens in all."""

    def take(self, cancel: cancel_.Token | None = None) -> float:
        """Take one token, waiting until it comes; returns the seconds waited. Raises
        :class:`errors.CancelledError` when ``cancel`` is cancelled during the wait (the token stays taken: the
        bucket's rate holds whatever callers give up)."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
            self._last = now
            self._tokens -= 1.0
            wait = -self._tokens / self.qps if self._tokens < 0 else 0.0
            self.waited += wait
        if wait <= 0:
            return 0.0
        if cancel is None:
            time.sleep(wait)
        elif cancel.wait(wait):
            raise errors.CancelledError(f"{cancel.reason} (while waiting for the cluster's rate limit)")
        return wait

"""The client-side token bucket as client-go's: ``burst`` at once, then ``qps`` a second; callers served in
arrival order; a cancelled sync stops waiting."""

from __future__ import annotations

import threading
import time

import pytest

from agent.clusters import ratelimit
from reconcilers import cancel, errors


def test_burst_at_once_then_qps_a_second() -> None:
    bucket = ratelimit.TokenBucket(50, 5)
    t0 = time.monotonic()
    waits = [bucket.take() for _ in range(15)]
    elapsed = time.monotonic() - t0
    assert waits[:5] == [0.0] * 5  # the burst
    assert all(w > 0 for w in waits[5:])
    assert 0.18 <= elapsed <= 0.5  # 10 more tokens at 50 a second


def test_threads_share_one_bucket() -> None:
    bucket = ratelimit.TokenBucket(100, 10)
    t0 = time.monotonic()
    threads = [threading.Thread(target=lambda: [bucket.take() for _ in range(10)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - t0 >= 0.28  # 40 tokens: 10 at once, 30 at 100 a second


def test_a_cancelled_sync_stops_waiting() -> None:
    bucket = ratelimit.TokenBucket(1, 1)
    bucket.take()
    token = cancel.Token()
    threading.Timer(0.1, token.cancel, args=("stopping",)).start()
    t0 = time.monotonic()
    with pytest.raises(errors.CancelledError, match="stopping"):
        bucket.take(token)
    assert time.monotonic() - t0 < 0.5


def test_a_bucket_needs_a_rate_and_a_burst() -> None:
    with pytest.raises(ValueError, match="qps > 0"):
        ratelimit.TokenBucket(0, 10)

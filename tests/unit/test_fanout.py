"""reconcilers.fanout.map_ordered: Executor.map's results and errors with one task per worker."""

from __future__ import annotations

import threading
import time
from concurrent import futures

import pytest

from reconcilers import fanout


def test_results_come_in_the_order_of_the_items_from_at_most_workers_threads() -> None:
    seen: set[int] = set()
    busy, most = 0, 0
    lock = threading.Lock()

    def slow_square(n: int) -> int:
        nonlocal busy, most
        with lock:
            busy += 1
            most = max(most, busy)
            seen.add(threading.get_ident())
        time.sleep(0.002 * (n % 3))
        with lock:
            busy -= 1
        return n * n

    with futures.ThreadPoolExecutor(8) as pool:
        assert fanout.map_ordered(pool, slow_square, list(range(50)), 3) == [n * n for n in range(50)]
        assert fanout.map_ordered(pool, slow_square, [], 3) == []
    assert most <= 3
    assert len(seen) <= 3


def test_the_earliest_failure_is_raised_and_no_item_starts_after_one_failed() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def fail_on_multiples_of_ten(n: int) -> int:
        with lock:
            started.append(n)
        if n in (10, 20):
            time.sleep(0.01 if n == 10 else 0)  # 20 fails first in time, 10 is earlier in order
            raise ValueError(f"item {n}")
        time.sleep(0.001)
        return n

    with futures.ThreadPoolExecutor(4) as pool, pytest.raises(ValueError, match="item 10"):
        fanout.map_ordered(pool, fail_on_multiples_of_ten, list(range(1000)), 25)
    assert len(started) < 1000  # the rest was never started, as Executor.map cancels what is pending

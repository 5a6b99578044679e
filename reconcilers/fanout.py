"""One call applied to many items on a shared pool, in order, with one task per worker instead of one per item.

``Executor.map`` makes a ``Future`` (a condition variable and its lock) and a queue entry for every item. A sync
sends two requests per object (a dry run, then the apply), so for 2,000 objects on 3 clusters that is 12,000
futures, each built and resolved under the GIL while the requests wait: a share of the agent's CPU per request
that a plain client does not pay (``bench/scale.py --validated-only``). :func:`map_ordered` submits at most
``workers`` tasks, each taking the next item until none is left.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def map_ordered(pool: futures.Executor, fn: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """``[fn(item) for item in items]``, run by at most ``workers`` tasks of ``pool`` at once; results in the order
    of ``items``.

    As ``Executor.map`` (whose results are consumed in order, and whose pending items are cancelled once an
    exception reaches the caller): after an item raises, no task starts another item, the items already started
    finish, and the exception of the earliest item that raised is raised here. Raises RuntimeError when ``pool``
    is shut down.
    """
    if not items:
        return []
    results: list[R | None] = [None] * len(items)
    failed: list[tuple[int, BaseException]] = []
    lock = threading.Lock()
    indices = iter(range(len(items)))

    def drain() -> None:
        while True:
            with lock:
                i = None if failed else next(indices, None)
            if i is None:
                return
            try:
                results[i] = fn(items[i])
            except BaseException as e:  # handed to the caller below, as Executor.map does
                with lock:
                    failed.append((i, e))
                return

    tasks = [pool.submit(drain) for _ in range(max(1, min(workers, len(items))))]
    for task in tasks:
        task.result()
    if failed:
        raise min(failed, key=lambda f: f[0])[1]
    return results  # type: ignore[return-value]  # every slot was filled: no item failed

"""A queue of object keys handled one by one on a worker thread of its own, bursts folded: after the first key of
a burst it waits ``debounce`` seconds, takes every key queued meanwhile (each once) and hands them over in key
order. Self-heal and the drift monitor each own one (:mod:`agent.sync.selfheal`, :mod:`agent.sync.drift`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from agent import threads
from reconcilers import resources


class KeyQueue:
    """Keys for ``handle``, called on the queue's thread (``name``) once per key of each folded burst. Started by
    :meth:`start` and ended by :meth:`stop`, both by the queue's owner."""

    def __init__(
        self, name: str, handle: Callable[[resources.ResourceKey], None], debounce: float, owner: str = "runner"
    ) -> None:
        self.name = name
        self.owner = owner
        self.handle = handle
        self.debounce = debounce
        self._queue: queue.Queue[resources.ResourceKey | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the worker thread."""
        self._thread = threads.start(self.name, self.owner, self._work)

    def put(self, key: resources.ResourceKey) -> None:
        """Queue ``key`` (from any thread)."""
        self._queue.put(key)

    def stop(self, timeout: float = 60.0) -> None:
        """End the worker thread and wait up to ``timeout`` seconds for the key being handled."""
        self._queue.put(None)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            key = self._queue.get()
            if key is None:
                return
            time.sleep(self.debounce)
            keys = {key}
            while not self._queue.empty():
                more = self._queue.get()
                if more is None:
                    return
                keys.add(more)
            for k in sorted(keys):
                self.handle(k)

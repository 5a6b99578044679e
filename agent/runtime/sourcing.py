"""The fleet's sources: each fetched on its own schedule and on demand, never waiting on another.

Each source named in the config (``sources``, and ``source`` as ``default``) is fetched every ``interval`` (an
APScheduler job per source, 10% jitter) and on demand (:meth:`Sources.fetch_soon`: webhooks naming its repository
and ref, saved files of a local source), each fetch bounded by the source's ``timeout`` in a child process. One
lock per source keeps its fetches one at a time, so a source whose remote stalls delays only its own next fetch.
Every fetch's outcome goes to ``on_fetched`` (the fleet records it and triggers the clusters that read the
source). Threads: the scheduler's pool (scheduled fetches), ``fetch-on-demand`` (debounced fetches), one
``watch-source-<name>`` per local source. Used by :mod:`agent.runtime.fleet`.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import pathlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import watchfiles
from apscheduler.schedulers.background import BackgroundScheduler

from agent import config, threads
from agent.sources import registry
from reconcilers import errors, resources

log = logging.getLogger(__name__)

OnFetched = Callable[[str, resources.Revision | None, resources.Revision | None, str | None], None]
"""Called after each fetch with (source name, revision before, revision fetched or None, error or None)."""


class Sources:
    """The named sources of a config, their schedules and on-demand fetches."""

    def __init__(
        self,
        cfg: config.AgentConfig,
        scheduler: BackgroundScheduler,
        stopping: threading.Event,
        debounce: Callable[[], float],
        on_fetched: OnFetched,
    ) -> None:
        self.cfg = cfg
        self.scheduler = scheduler
        self.stopping = stopping
        self.debounce = debounce
        self.on_fetched = on_fetched
        self.by_name: dict[str, registry.Source] = registry.open_all(cfg)
        self.fetched = threading.Event()
        """Set once every source was fetched (or tried) at least once."""
        self._attempted: set[str] = set()
        self._locks: dict[str, threading.Lock] = {n: threading.Lock() for n in self.by_name}
        self._wanted: set[str] = set()
        self._fetching: set[str] = set()  # sources with an on-demand fetch thread now
        self._signal = threading.Event()
        self._lock = threading.Lock()  # guards by_name, _locks and _wanted; never held across the network

    @property
    def primary_name(self) -> str:
        """The source rollout and commit statuses follow: ``default``, else the first."""
        with self._lock:
            return "default" if "default" in self.by_name else next(iter(self.by_name))

    @property
    def primary(self) -> registry.Source:
        """The source named :attr:`primary_name`."""
        name = self.primary_name
        with self._lock:
            return self.by_name[name]

    def get(self, name: str) -> registry.Source | None:
        """The source called ``name`` (None when there is none now)."""
        with self._lock:
            return self.by_name.get(name)

    def start(self) -> None:
        """Schedule every source (first fetch at once), start the on-demand fetcher and the local watchers."""
        with self._lock:
            found = dict(self.by_name)
        for name in found:
            self._schedule(name)
        self.start_fetcher()
        for name, source in found.items():
            if source.watched is not None:
                threads.start(f"watch-source-{name}", "fleet/sources", self._watch_local, name, source.watched)

    def start_fetcher(self) -> None:
        """Start the on-demand fetch thread (``fetch-on-demand``: pushes and webhooks, debounced)."""
        threads.start("fetch-on-demand", "fleet/sources", self._on_demand)

    def _schedule(self, name: str) -> None:
        """Fetch source ``name`` now and every ``interval`` (10% jitter) after."""
        interval = self.cfg.all_sources()[name].interval
        self.scheduler.add_job(
            self.fetch,
            "interval",
            args=[name],
            seconds=interval,
            jitter=interval * 0.1,
            id=f"fetch:{name}",
            replace_existing=True,
            next_run_time=datetime.datetime.now(datetime.UTC),
        )

    def reconfigure(self, new: config.AgentConfig) -> list[str]:
        """Take a reloaded config: sources added or changed are opened anew and fetched at once (a changed one's
        last revision no longer applies), removed ones unscheduled. Returns the names added or changed."""
        before, after = self.cfg.all_sources(), new.all_sources()
        changed = [n for n, s in after.items() if before.get(n) != s or self.cfg.charts_of(n) != new.charts_of(n)]
        with self._lock:
            self.cfg = new
            self.by_name = {
                n: self.by_name[n]
                if n in self.by_name and n not in changed
                else registry.open_source(s, new.charts_of(n))
                for n, s in after.items()
            }
            self._locks = {n: self._locks.get(n) or threading.Lock() for n in after}
        for name in before:
            if name not in after and self.scheduler.get_job(f"fetch:{name}"):
                self.scheduler.remove_job(f"fetch:{name}")
        if self.scheduler.running:
            for name in changed:
                self._schedule(name)
        return changed

    @contextlib.contextmanager
    def trees(self, wanted: Mapping[str, tuple[str, resources.Revision]]) -> Iterator[dict[str, pathlib.Path]]:
        """For each key of ``wanted`` (a source name, or an app's pin), the tree of (source, revision), held while
        the block runs; keys whose source is gone are left out. Raises FetchError."""
        with self._lock:
            found = {k: (self.by_name[s], r) for k, (s, r) in wanted.items() if s in self.by_name}
        with contextlib.ExitStack() as stack:
            yield {k: stack.enter_context(s.tree(r)) for k, (s, r) in found.items()}

    def _watch_local(self, name: str, path: pathlib.Path) -> None:
        """Developer mode: every saved change of a local source directory fetches (and so reconciles) at once."""
        for changes in watchfiles.watch(
            path, stop_event=self.stopping, debounce=50, step=20, rust_timeout=500, yield_on_timeout=False
        ):
            log.info("source %s: %d change(s) in %s", name, len(changes), path)
            self.fetch_soon([name])

    def fetch_soon(self, names: Sequence[str] | None = None) -> None:
        """Fetch the sources ``names`` (all when None) as soon as possible (a webhook push). Calls within the
        debounce (``server.webhookDebounce`` seconds) of each other share one fetch; a call during a fetch causes
        one more after it, so no push is lost."""
        with self._lock:
            self._wanted |= set(names if names is not None else self.by_name)
        self._signal.set()

    def _on_demand(self) -> None:
        """At most one on-demand fetch thread per source: pushes for a source whose fetch is running (a stalled
        remote, up to its timeout) stay wanted, and that thread fetches once more when it ends."""
        while not self.stopping.is_set():
            if not self._signal.wait(0.5):
                continue
            time.sleep(self.debounce())
            self._signal.clear()
            with self._lock:
                wanted = self._wanted - self._fetching
                self._wanted -= wanted
                self._fetching |= wanted
            for name in sorted(wanted):
                threads.start(f"fetch-{name}", "fleet/sources", self._fetch_wanted, name)

    def _fetch_wanted(self, name: str) -> None:
        """An on-demand fetch thread: fetch ``name`` until no push for it came in meanwhile."""
        while True:
            try:
                self.fetch(name)
            finally:
                with self._lock:
                    again = name in self._wanted and not self.stopping.is_set()
                    self._wanted.discard(name)
                    if not again:
                        self._fetching.discard(name)
            if not again:
                return

    def fetch(self, name: str | None = None) -> None:
        """Fetch source ``name`` (every source when None, one after the other), each bounded by its ``timeout``;
        a fetch of a source already being fetched waits for that one first (and then fetches again)."""
        with self._lock:
            names = [name] if name else list(self.by_name)
        for n in names:
            with self._lock:
                lock, source = self._locks.get(n), self.by_name.get(n)
            if lock is None or source is None:
                continue
            with lock:
                if not self.stopping.is_set():
                    self._fetch(n, source)

    def _fetch(self, name: str, source: registry.Source) -> None:
        before = source.last_good
        try:
            revision = source.fetch(self.stopping)
        except errors.FetchError as e:
            if self.stopping.is_set():  # cut short by the agent's stop: nothing is known of the source, nothing told
                log.info("source %s: fetch ended by the agent's stop: %s", name, e)
                return
            log.error("source %s: %s (keeping revision %s)", name, e, before.short if before else "none")
            self.on_fetched(name, before, None, str(e))
        else:
            self.on_fetched(name, before, revision, None)
        finally:
            with self._lock:
                self._attempted.add(name)
                done = self._attempted >= set(self.by_name)
            if done:
                self.fetched.set()

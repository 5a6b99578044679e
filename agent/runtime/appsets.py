"""App sets in the running agent: their apps generated again when what they read changes.

:class:`AppSets` owns the config as loaded (``base``) and the last :class:`agent.appsets.expand.Generation`. It
generates at start (list and cluster generators at once; a git generator waits for its source's first fetch), on
a new revision of a source a git generator reads (:meth:`AppSets.fetched`), and on a config reload
(:meth:`AppSets.reconfigure`). A generation reads each source at its last good revision (the trees the fleet's
sources already hold: no clone of its own) and hands the config with the generated apps to ``apply`` when it
differs from the one in force, as a reload would: the clusters whose apps changed get fresh workers and sync at
once (:meth:`agent.runtime.fleet.Fleet.apply_config`). Generated apps that leave are then removed like apps
removed from the config (:mod:`agent.sync.removed`).

Threads: ``appsets`` (owner ``fleet``) generates after fetches, one generation at a time; a reload generates on
the reload's thread. ``_lock`` guards ``generation`` and ``base``, never held across a generation; ``serial``
orders the configs put in force.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import pathlib
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from agent import config, threads
from agent.appsets import expand
from reconcilers import errors, resources

log = logging.getLogger(__name__)

Trees = Callable[
    [Mapping[str, tuple[str, resources.Revision]]], contextlib.AbstractContextManager[dict[str, pathlib.Path]]
]
""":meth:`agent.runtime.sourcing.Sources.trees`."""


class AppSets:
    """The app sets of the running agent (see the module docstring). ``last_good(source)``: the source's last good
    revision (None: not fetched yet); ``trees``: holds sources' trees; ``apply(cfg)``: puts a config with
    generated apps in force (called on the ``appsets`` thread)."""

    def __init__(
        self,
        base: config.AgentConfig,
        last_good: Callable[[str], resources.Revision | None],
        trees: Trees,
        apply: Callable[[config.AgentConfig], Any],
        stopping: threading.Event,
    ) -> None:
        self.last_good = last_good
        self.trees = trees
        self.apply = apply
        self.stopping = stopping
        self._lock = threading.Lock()
        self.serial = threading.Lock()
        """Held while a config is put in force (a generation here, a reload by the fleet): one at a time, and a
        generation from a config a reload has replaced is never put in force. Held across worker restarts, which
        are bounded in time, never across the network."""
        self._signal = threading.Event()
        self.base = base
        self.generation = self._generate(base, None)
        self._generated_at = _now()

    @property
    def current(self) -> config.AgentConfig:
        """The config with the generated apps, as last generated."""
        with self._lock:
            return self.generation.config

    def start(self) -> None:
        """Start the ``appsets`` thread (it waits for :meth:`fetched`)."""
        threads.start("appsets", "fleet", self._run)

    def generate_for(self, base: config.AgentConfig) -> expand.Generation:
        """A reloaded config's generation (not yet in force: see :meth:`adopt`)."""
        with self._lock:
            previous = self.generation
        return self._generate(base, previous)

    def adopt(self, base: config.AgentConfig, generation: expand.Generation) -> None:
        """``base`` and its ``generation`` are in force now (a reload succeeded)."""
        with self._lock:
            self.base, self.generation, self._generated_at = base, generation, _now()

    def fetched(self, source: str) -> None:
        """Source ``source`` has a new revision: generate again soon when a git generator reads it."""
        with self._lock:
            reads = any(source in s.sources() for s in self.base.app_sets)
        if reads:
            self._signal.set()

    def status_json(self) -> list[dict[str, Any]]:
        """Each app set, in config order: ``name``, ``generators`` (their kinds), ``goTemplate``,
        ``preserveResourcesOnDeletion``, ``apps`` (the names it made; on failure, those kept from before),
        ``parameterSets`` (how many its generators gave), ``error`` (None when it generated), ``generated`` (when
        it was last generated, ISO 8601 UTC)."""
        with self._lock:
            base, generation, at = self.base, self.generation, self._generated_at
        out = []
        for app_set in base.app_sets:
            r = generation.results.get(app_set.name)
            out.append(
                {
                    "name": app_set.name,
                    "generators": [g.kind for g in app_set.generators],
                    "goTemplate": app_set.go_template,
                    "preserveResourcesOnDeletion": app_set.preserve_resources_on_deletion,
                    "apps": list(r.apps) if r else [],
                    "parameterSets": r.parameter_sets if r else 0,
                    "error": r.error if r else "not generated yet",
                    "generated": at,
                }
            )
        return out

    def _run(self) -> None:
        while not self.stopping.is_set():
            if not self._signal.wait(1.0):
                continue
            self._signal.clear()
            with self._lock:
                base, previous = self.base, self.generation
            generation = self._generate(base, previous)
            with self.serial:
                with self._lock:
                    if self.base is not base:
                        continue  # a reload came between: it generated from the new config
                    self.generation, self._generated_at = generation, _now()
                if generation.config != previous.config:
                    try:
                        self.apply(generation.config)
                    except Exception:  # the thread must live on; the next fetch tries again
                        log.exception("app sets: applying the generated apps failed")

    def _generate(self, base: config.AgentConfig, previous: expand.Generation | None) -> expand.Generation:
        if not base.app_sets:
            return expand.Generation({}, base.with_generated((), {}))
        try:
            with self._held(base) as trees:
                generation = expand.generate(base, trees, previous)
        except errors.SourceError as e:  # a tree could not be written: every git generator waits, keeping its apps
            log.warning("app sets: the sources' trees could not be read: %s", e)
            generation = expand.generate(base, {}, previous)
        for r in generation.results.values():
            before = previous.results.get(r.name) if previous else None
            if r.error and (before is None or before.error != r.error):
                log.warning("app set %s: %s", r.name, r.error)
            elif not r.error and (before is None or before.apps != r.apps):
                log.info("app set %s: %d app(s) from %d parameter set(s)", r.name, len(r.apps), r.parameter_sets)
        return generation

    @contextlib.contextmanager
    def _held(self, base: config.AgentConfig) -> Iterator[dict[str, pathlib.Path]]:
        wanted = {}
        for name in dict.fromkeys(s for a in base.app_sets for s in a.sources()):
            revision = self.last_good(name)
            if revision is not None:
                wanted[name] = (name, revision)
        with self.trees(wanted) as trees:
            yield trees


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()

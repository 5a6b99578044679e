"""App sets in the running agent: their apps generated again when what they read changes.

:class:`AppSets` owns the config as loaded (``base``) and the last :class:`agent.appsets.expand.Generation`. It
generates at start (list and cluster generators at once; a git generator waits for its source's first fetch, a
pull request generator for its first list), on a new revision of a source a git generator reads
(:meth:`AppSets.fetched`), on a config reload (:meth:`AppSets.generate_for`), and when a pull request generator's
list changes (listed every ``requeueAfterSeconds``, and at once on a pull request webhook:
:meth:`AppSets.refresh_pull_requests`; the sources its apps read are fetched first, so that their new head commits
are there to pin to). A generation reads each source at its last good revision (the trees the fleet's sources
already hold: no clone of its own) and hands the config with the generated apps to ``apply`` when it differs from
the one in force, as a reload would: the clusters whose apps changed get fresh workers and sync at once
(:meth:`agent.runtime.fleet.Fleet.apply_config`). Generated apps that leave are then removed like apps removed
from the config (:mod:`agent.sync.removed`).

Threads: ``appsets`` (owner ``fleet``) lists pull requests and generates after fetches, one generation at a time,
and owns the pull request listers; a reload generates on the reload's thread. ``_lock`` guards ``generation``,
``base`` and the pull request lists, never held across a generation or a request; ``serial`` orders the configs
put in force.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import pathlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from agent import config, threads
from agent.appsets import expand, pullrequests
from reconcilers import errors, resources

log = logging.getLogger(__name__)

Trees = Callable[
    [Mapping[str, tuple[str, resources.Revision]]], contextlib.AbstractContextManager[dict[str, pathlib.Path]]
]
""":meth:`agent.runtime.sourcing.Sources.trees`."""


Preview = Callable[[str, config.PullRequestGenerator, list[pullrequests.PullRequest]], None]
""":meth:`agent.runtime.previews.Previews.offer`: (app set, its generator with a ``preview``, its open pull
requests)."""


class AppSets:
    """The app sets of the running agent (see the module docstring). ``last_good(source)``: the source's last good
    revision (None: not fetched yet); ``trees``: holds sources' trees; ``apply(cfg)``: puts a config with
    generated apps in force (called on the ``appsets`` thread); ``fetch(source)``: fetches a source now;
    ``preview``: told the open pull requests of each generator with a ``preview`` after each round."""

    def __init__(
        self,
        base: config.AgentConfig,
        last_good: Callable[[str], resources.Revision | None],
        trees: Trees,
        apply: Callable[[config.AgentConfig], Any],
        stopping: threading.Event,
        fetch: Callable[[str], None] = lambda name: None,
        preview: Preview = lambda app_set, spec, pulls: None,
    ) -> None:
        self.last_good = last_good
        self.trees = trees
        self.apply = apply
        self.stopping = stopping
        self.fetch = fetch
        self.preview = preview
        self._listers: dict[str, pullrequests.Lister] = {}  # by PullRequestGenerator.key; the appsets thread's
        self._lists: dict[str, tuple[list[pullrequests.PullRequest] | None, str | None, float]] = {}
        """key -> (the open pull requests, or None; the last listing's error; when it was listed, monotonic)."""
        self._refresh = False  # a webhook asked for the pull requests again
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

    def refresh_pull_requests(self) -> None:
        """A pull request (merge request) webhook came: list every pull request generator's again now."""
        with self._lock:
            self._refresh = True
        self._signal.set()

    def fetched(self, source: str) -> None:
        """Source ``source`` has a new revision: generate again soon when a git generator reads it."""
        with self._lock:
            reads = source in self.base.generator_sources()
        if reads:
            self._signal.set()

    def status_json(self) -> list[dict[str, Any]]:
        """Each app set, in config order: ``name``, ``generators`` (their kinds), ``goTemplate``,
        ``preserveResourcesOnDeletion``, ``apps`` (the names it made; on failure, those kept from before),
        ``parameterSets`` (how many its generators gave), ``error`` (None when it generated), ``generated`` (when
        it was last generated, ISO 8601 UTC); then each app of apps, its ``generators`` ``["appOfApps"]``."""
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
        named = {a.name for a in base.app_sets}
        for r in generation.results.values():  # apps of apps (agent.appsets.nested), after the app sets
            if r.name not in named:
                out.append(
                    {
                        "name": r.name,
                        "generators": ["appOfApps"],
                        "goTemplate": False,
                        "preserveResourcesOnDeletion": False,
                        "apps": list(r.apps),
                        "parameterSets": r.parameter_sets,
                        "error": r.error,
                        "generated": at,
                    }
                )
        return out

    def _run(self) -> None:
        while not self.stopping.is_set():
            signalled = self._signal.wait(1.0)
            self._signal.clear()
            with self._lock:
                base, force, self._refresh = self.base, self._refresh, False
            changed, sources = self._list_pull_requests(base, force)
            if not signalled and not changed:
                self._offer_previews(base)  # those whose posting failed, once their wait is over
                continue
            with self._lock:
                previous = self.generation
            for source in sources:
                self.fetch(source)  # the pull requests' new head commits, before apps are pinned to them
            self._offer_previews(base)  # new heads, fetched now
            generation = self._generate(base, previous)
            with self.serial:
                if self.stopping.is_set():
                    return  # shutting down: no worker is started any more (Fleet.shutdown waits on serial)
                with self._lock:
                    if self.base is not base:
                        continue  # a reload came between: it generated from the new config
                    self.generation, self._generated_at = generation, _now()
                if generation.config != previous.config:
                    try:
                        self.apply(generation.config)
                    except Exception:  # the thread must live on; the next fetch tries again
                        log.exception("app sets: applying the generated apps failed")

    def _list_pull_requests(self, base: config.AgentConfig, force: bool) -> tuple[bool, list[str]]:
        """List the pull requests of every generator that is due (its interval passed, or ``force``): whether a
        list (or its error) changed, and the sources to fetch then (those its app sets' apps read)."""
        specs = {p.key: p for a in base.app_sets for p in a.pull_requests()}
        self._listers = {k: self._listers.get(k) or pullrequests.Lister(spec) for k, spec in specs.items()}
        changed = []
        now = time.monotonic()
        for key, spec in specs.items():
            with self._lock:
                before = self._lists.get(key)
            if not force and before is not None and now - before[2] < spec.requeue_after_seconds:
                continue
            try:
                found: list[pullrequests.PullRequest] | None = self._listers[key].fetch()
                error = None
            except errors.GenerateError as e:
                found, error = before[0] if before else None, str(e)
                log.warning("pull requests: %s", error)
            with self._lock:
                self._lists[key] = (found, error, now)
            if before is None or before[0] != found or before[1] != error:
                changed.append(key)
        if not changed:
            return False, []
        sources = []
        for a in base.app_sets:
            if any(p.key in changed for p in a.pull_requests()):
                named = a.template.get("source", "default")
                sources += [named] if isinstance(named, str) and "{{" not in named else list(base.all_sources())
                sources += [p.preview.source for p in a.pull_requests() if p.preview is not None]
        return True, list(dict.fromkeys(s for s in sources if s in base.all_sources()))

    def _offer_previews(self, base: config.AgentConfig) -> None:
        """Hand the pull requests of every generator with a ``preview`` to ``preview`` (it queues what is new)."""
        for app_set in base.app_sets:
            for spec in app_set.pull_requests():
                if spec.preview is None or not (spec.preview.comment or spec.preview.commit_status):
                    continue
                with self._lock:
                    found = self._lists.get(spec.key)
                if found is not None and found[0] is not None and found[1] is None:
                    self.preview(app_set.name, spec, found[0])

    def _pull_requests(self, spec: config.PullRequestGenerator) -> list[pullrequests.PullRequest]:
        """The last list of ``spec``'s pull requests. Raises GenerateError when there is none, or the last listing
        failed (the app set then keeps its apps)."""
        with self._lock:
            found = self._lists.get(spec.key)
        if found is None or found[0] is None:
            raise errors.GenerateError(found[1] if found and found[1] else "the pull requests are not listed yet")
        if found[1] is not None:
            raise errors.GenerateError(found[1])
        return found[0]

    def _generate(self, base: config.AgentConfig, previous: expand.Generation | None) -> expand.Generation:
        if not base.generates:
            return expand.Generation({}, base.with_generated((), {}))
        try:
            with self._held(base) as trees:
                generation = expand.generate(base, trees, previous, self._pull_requests)
        except errors.SourceError as e:  # a tree could not be written: every git generator waits, keeping its apps
            log.warning("app sets: the sources' trees could not be read: %s", e)
            generation = expand.generate(base, {}, previous, self._pull_requests)
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
        for name in base.generator_sources():
            revision = self.last_good(name)
            if revision is not None:
                wanted[name] = (name, revision)
        with self.trees(wanted) as trees:
            yield trees


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()

"""Pull request previews in the running agent: what merging each open pull request would change, posted on it.

For every ``pullRequest`` generator with a ``preview``, each open pull request's head commit is previewed once
(again on each push: a new head): a ``pending`` commit status ``gitops-agent/preview``; a server-side dry run of
every app on every cluster that reads the preview's source, with that source at the head commit and everything
else as the cluster's next sync would have it (:func:`dry_runs`, the engine of ``gitops-agent diff --revision``,
fresh connections, nothing written: the sync's dry run sends every write with ``dryRun=All``); then the comment
(created once, edited in place after: :class:`agent.appsets.previewpost.Poster`) and the final commit status.

Delivery is rate limited and retried like the notifications (:mod:`agent.runtime.notify.channel`: at most
``RATE`` requests per second, a 5xx, timeout or refused connection retried after ``BACKOFF``). A preview that
could not be posted (the API failing, a rate limit) is tried again :data:`RETRY_AFTER` seconds later, at the
next offer. A head commit the source's clone does not hold (a pull request from a fork: only the repository's
own branches are fetched) is previewed as a failure saying so.

Thread ``previews`` (owner ``fleet``) does the work, one preview at a time; :meth:`Previews.offer` is called by
the ``appsets`` thread after each round and only queues. ``_lock`` guards the queue and what was previewed; it is
never held across the network or a dry run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import pathlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures

from agent import apps, config, threads
from agent.appsets import preview, previewpost, pullrequests, scm
from agent.runtime import oneshot
from agent.runtime.notify.channel import BACKOFF, RATE
from agent.sources import registry
from reconcilers import cancel, engine, errors, resources

log = logging.getLogger(__name__)

RETRY_AFTER = 60.0
"""Seconds before a preview that could not be posted is tried again."""
CONCURRENCY = 4
"""Clusters dry-run at once for one preview."""

Trees = Callable[[Mapping[str, resources.Revision]], contextlib.AbstractContextManager[dict[str, pathlib.Path]]]
""":meth:`agent.runtime.host.WorkerHost.trees`."""


@dataclasses.dataclass(frozen=True)
class _Job:
    app_set: str
    spec: config.PullRequestGenerator
    pull: pullrequests.PullRequest

    @property
    def key(self) -> tuple[str, str, int]:
        return self.app_set, self.spec.key, self.pull.number


class Previews:
    """The previews of the running agent (see the module docstring). ``cfg()``: the config in force (with the
    generated apps); ``source(name)``: a source of the fleet (None when gone); ``revisions_for(cluster)`` and
    ``trees(revisions)``: what a cluster's next sync reads (:class:`agent.runtime.host.WorkerHost`)."""

    def __init__(
        self,
        cfg: Callable[[], config.AgentConfig],
        source: Callable[[str], registry.Source | None],
        revisions_for: Callable[[str], dict[str, resources.Revision]],
        trees: Trees,
        stopping: threading.Event,
    ) -> None:
        self.cfg = cfg
        self.source = source
        self.revisions_for = revisions_for
        self.trees = trees
        self.stopping = stopping
        self._queue: dict[tuple[str, str, int], _Job] = {}
        self._done: dict[tuple[str, str, int], tuple[str, float]] = {}  # key -> (head previewed, retry after)
        self._posters: dict[str, previewpost.Poster] = {}  # by generator key; the previews thread's
        self._last_sent = 0.0
        self._lock = threading.Lock()
        self._signal = threading.Event()

    def start(self) -> None:
        """Start the ``previews`` thread."""
        threads.start("previews", "fleet", self._run)

    def offer(self, app_set: str, spec: config.PullRequestGenerator, pulls: Sequence[pullrequests.PullRequest]) -> None:
        """The open pull requests of ``spec`` (a generator of ``app_set`` with a ``preview``): queue each whose head
        was not previewed yet (or whose preview failed to post :data:`RETRY_AFTER` seconds ago)."""
        now = time.monotonic()
        with self._lock:
            for pull in pulls:
                job = _Job(app_set, spec, pull)
                done = self._done.get(job.key)
                if done is not None and done[0] == pull.head_sha and now < done[1]:
                    continue
                if job.key not in self._queue or self._queue[job.key].pull != pull:
                    self._queue[job.key] = job
                    self._signal.set()
            open_ = {(app_set, spec.key, p.number) for p in pulls}
            for key in [k for k in self._done if k[:2] == (app_set, spec.key) and k not in open_]:
                del self._done[key]  # closed: a reopened one is previewed again

    def _run(self) -> None:
        while not self.stopping.is_set():
            if not self._signal.wait(1.0):
                continue
            with self._lock:
                if not self._queue:
                    self._signal.clear()
                    continue
                key = next(iter(self._queue))
                job = self._queue.pop(key)
            posted = self._preview(job)
            with self._lock:
                self._done[key] = (job.pull.head_sha, float("inf") if posted else time.monotonic() + RETRY_AFTER)

    def _preview(self, job: _Job) -> bool:
        """Preview ``job``'s head and post it; False when it could not be posted."""
        spec, pull = job.spec, job.pull
        wanted = spec.preview
        assert wanted is not None
        poster = self._posters.setdefault(spec.key, previewpost.Poster(spec))
        where = f"app set {job.app_set}: preview of #{pull.number} at {pull.head_sha[:12]}"
        try:
            if wanted.commit_status:
                self._send(
                    lambda: poster.status(
                        pull.head_sha, "pending", "previewing the fleet", preview.CONTEXT, wanted.link
                    )
                )
            results, problems = dry_runs(
                self.cfg(), self.source, self.revisions_for, self.trees, wanted.source, pull.head_sha, self.stopping
            )
            if self.stopping.is_set():
                return False
            found = preview.render(job.app_set, pull.number, pull.head_sha, results, problems)
            if wanted.comment:
                done = self._send(lambda: poster.comment(pull.number, preview.marker(job.app_set), found.body))
                log.info("%s: comment %s (%s)", where, done, found.description)
            if wanted.commit_status:
                self._send(
                    lambda: poster.status(pull.head_sha, found.state, found.description, preview.CONTEXT, wanted.link)
                )
            return True
        except errors.GenerateError as e:
            log.warning("%s: not posted: %s (tried again in %g s)", where, e, RETRY_AFTER)
            return False

    def _send(self, call: Callable[[], str | None]) -> str | None:
        """``call`` (one post), at most :data:`RATE` per second, retried after each of :data:`BACKOFF` when it may
        pass when asked again. Raises the last :class:`agent.appsets.scm.ApiError`."""
        for attempt in range(len(BACKOFF) + 1):
            wait = self._last_sent + 1 / RATE - time.monotonic()
            if wait > 0 and self.stopping.wait(wait):
                raise scm.ApiError("the agent is stopping")
            self._last_sent = time.monotonic()
            try:
                return call()
            except scm.ApiError as e:
                if not e.retry or attempt == len(BACKOFF):
                    raise
                if self.stopping.wait(BACKOFF[attempt]):
                    raise
        raise AssertionError("unreachable")


def dry_runs(
    cfg: config.AgentConfig,
    source_of: Callable[[str], registry.Source | None],
    revisions_for: Callable[[str], dict[str, resources.Revision]],
    trees: Trees,
    source: str,
    sha: str,
    stopping: threading.Event,
) -> tuple[list[engine.ReconcileResult], list[str]]:
    """A server-side dry run of every app on every cluster of ``cfg`` that reads source ``source``, with it at
    commit ``sha`` (each cluster's other sources and pins as its next sync reads them): the results, one per
    cluster, and the problems that kept a cluster (or all) from being dry-run. A stop cancels the dry runs."""
    found = source_of(source)
    if found is None or found.last_good is None:
        return [], [f"source {source} is not fetched yet"]
    try:
        head = found.resolve(sha)
    except errors.FetchError as e:
        if str(e).startswith("Unverified"):  # verify: an unsigned head is not previewed either
            return [], [f"source {source}: {e}"]
        return [], [
            f"the head commit {sha} is not in the clone of source {source} (a pull request from a fork? only "
            "the repository's own branches are fetched unless the source sets fetchPullRequestRefs: true)"
        ]
    clusters = [c for c in cfg.clusters if source in apps.sources_of(cfg, c)]
    token = cancel.Token(lambda: "the agent is stopping" if stopping.is_set() else None)
    problems: list[str] = []

    def one(cluster: config.ClusterConfig) -> engine.ReconcileResult | None:
        revisions = {**revisions_for(cluster.name), source: head}
        try:
            with trees(revisions) as held:
                return oneshot.reconcile_once(cfg, cluster, revisions, held, dry_run=True, wait=False, cancel=token)
        except errors.GitOpsError as e:
            problems.append(f"cluster {cluster.name}: {e}")
            return None

    with futures.ThreadPoolExecutor(
        max(1, min(CONCURRENCY, len(clusters))), thread_name_prefix=threads.pool("preview", "fleet")
    ) as pool:
        results = [r for r in pool.map(one, clusters) if r is not None]
    return results, sorted(problems)

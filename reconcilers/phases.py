"""Run a sync's plan: phases, waves, stages and hooks, each wave gated on the health of the one before.

:func:`sync` walks the :class:`ordering.Plan` step by step (PreSync, then the Sync waves, then PostSync):

- a step's synced objects go stage by stage (:func:`reconcilers.apply.apply_stage`: dry run of the stage, then
  server-side apply), CRDs awaited after the prerequisites stage, so an object whose CRD an earlier wave created is
  validated when its own wave comes;
- then the step's hooks run (:mod:`reconcilers.hookrun`), kind by kind, those of one kind in parallel; one
  failed hook fails the step; hooks are deleted by their policies when the sync ends;
- a Sync wave followed by more work (a later wave, or hooks that will run) is gated: every object of it must be
  Healthy (health rules as for the status) within ``wave_timeout`` seconds, polled, with no fixed delay.

Hooks run only when the sync changes something (an object to create, configure or prune), as a resync with no
change must write nothing; ``hooks_on_noop`` runs them on every sync. When PreSync or Sync hooks exist, every
synced object whose kind is served is dry-run first to know: a rejected object then fails the sync before any
hook runs. A failure in any step stops the sync (later objects are ``skipped``, nothing is pruned) and, when the
sync ran a hook or would have changed something, runs the SyncFail steps. Called by :mod:`reconcilers.engine`.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures

from reconcilers import apply, client, health, hookrun, hooks, inventory, ordering, resources
from reconcilers import cancel as cancel_

_WRITES = (apply.Action.CREATED, apply.Action.CONFIGURED, apply.Action.RECREATED)
_STOPS = (apply.Action.FAILED, apply.Action.SKIPPED)


@dataclasses.dataclass
class Context:
    """One sync's state, owned by the thread running :func:`sync`: the cluster client, the desired objects
    (synced only) with their marks, options, the live cache and inventory entries known before the sync, and
    what the sync produced so far (``entries``, ``records``, ``runs``)."""

    kube: client.KubeClient
    desired: Mapping[resources.ResourceKey, apply.Desired]
    marks: Mapping[resources.ResourceKey, hooks.Marks]
    apply_options: apply.ApplyOptions
    hook: hookrun.HookOptions
    wave_timeout: float
    crd_timeout: float
    hooks_on_noop: bool
    live: client.LiveView | None
    known: Mapping[resources.ResourceKey, inventory.Entry]
    pool: futures.Executor
    """Where the requests of stages and health gates run (maybe shared with other apps' syncs); hooks have
    their own."""
    token: cancel_.Token
    entries: list[apply.ChangeSetEntry] = dataclasses.field(default_factory=list)
    records: dict[resources.ResourceKey, inventory.Entry] = dataclasses.field(default_factory=dict)
    runs: list[hookrun.HookRun] = dataclasses.field(default_factory=list)
    intent: apply.Intent | None = None
    """Given to every stage that writes (:data:`reconcilers.apply.Intent`)."""

    def stopped(self) -> bool:
        """True once an object failed or was skipped."""
        return any(e.action in _STOPS for e in self.entries)


@dataclasses.dataclass(frozen=True)
class Failure:
    """Why a sync stopped in a step: ``kind`` is ``hook`` (a hook failed), ``wave`` (a wave did not become
    Healthy) or ``apply`` (an object was rejected or failed; its entry says why); ``object``: the hook that failed,
    or the first object of the wave that did not become Healthy."""

    kind: str
    message: str
    object: resources.ResourceKey | None = None


def sync(ctx: Context, plan: ordering.Plan, *, pending_prune: bool) -> Failure | None:
    """Run ``plan`` (see the module doc); ``pending_prune``: the prune after PostSync would delete something.
    Returns why it stopped, or None. Raises :class:`reconcilers.errors.CancelledError` and
    :class:`reconcilers.errors.ClusterUnreachableError` like :func:`reconcilers.apply.apply_stage`."""
    if ctx.stopped():  # an object could not even be placed
        for step in plan.steps:
            ctx.entries.extend(_skipped(step.synced, "not applied: an object of this sync failed"))
        return Failure("apply", "objects failed (see their entries)")
    run_hooks: bool | None = True if ctx.hooks_on_noop else None
    early = [s for s in plan.steps if s.hooks and s.phase in (hooks.Phase.PRE_SYNC, hooks.Phase.SYNC)]
    if early and run_hooks is None:
        run_hooks = pending_prune or _would_change(ctx, plan.synced)
        if ctx.stopped():
            return Failure("apply", "rejected by the API server's dry run: no hook ran and nothing was written")

    def hooks_run() -> bool:
        nonlocal run_hooks
        if run_hooks is None:
            run_hooks = pending_prune or any(e.action in _WRITES for e in ctx.entries)
        return run_hooks

    failure: Failure | None = None
    for i, step in enumerate(plan.steps):
        if step.synced:
            failure = _apply_wave(ctx, step)
        if failure is None and step.hooks and hooks_run():
            failure = _run_hooks(ctx, step)
        later = plan.steps[i + 1 :]
        if failure is None and step.synced and not ctx.apply_options.dry_run and _more_work(later, hooks_run):
            failure = _gate(ctx, step)
        if failure is not None:
            for rest in later:
                ctx.entries.extend(_skipped(rest.synced, f"not applied: {step.label} did not complete"))
            break
    if failure is not None and (run_hooks or any(e.action in _WRITES for e in ctx.entries)):
        for step in plan.on_fail:
            _run_hooks(ctx, step)
    ctx.runs[:] = hookrun.finish(ctx.kube, ctx.runs)
    return failure


def _more_work(later: Sequence[ordering.Step], hooks_run: Callable[[], bool]) -> bool:
    """True when a later step syncs objects, or has hooks and hooks run in this sync."""
    if any(s.synced for s in later):
        return True
    return any(s.hooks for s in later) and hooks_run()


def _would_change(ctx: Context, synced: Sequence[resources.Manifest]) -> bool:
    """Dry-run every synced object that can be validated now; True when any would be created or configured.
    Objects whose kind is not served yet (a CRD of this sync) or whose Namespace this sync creates count as
    changes without a dry run: their own wave validates them. A rejected object leaves its failed entry (and the
    others skipped) in ``ctx``."""
    namespaces = {m.key.name for m in synced if (m.key.group, m.key.kind) == ("", "Namespace")}
    missing = {n for n in namespaces if ctx.kube.get(resources.ResourceKey("", "Namespace", "", n)) is None}
    served = [
        m
        for m in synced
        if ctx.kube.resource_type(m.key.group, m.key.kind) is not None and m.key.namespace not in missing
    ]
    planned = apply.apply_stage(
        ctx.kube,
        [ctx.desired[m.key] for m in served],
        "plan",
        dataclasses.replace(ctx.apply_options, dry_run=True),
        ctx.pool,
        ctx.live,
        ctx.known,
        ctx.token,
    )
    if any(e.action in _STOPS for e in planned.entries):
        ctx.entries.extend(planned.entries)
        served_keys = {m.key for m in served}
        ctx.entries.extend(_skipped([m for m in synced if m.key not in served_keys], "not applied: see the plan"))
        return True
    return len(served) < len(synced) or any(e.action in _WRITES for e in planned.entries)


def _apply_wave(ctx: Context, step: ordering.Step) -> Failure | None:
    """Sync the objects of one step, stage by stage; a failed stage skips the rest."""
    if any(ctx.kube.resource_type(m.key.group, m.key.kind) is None for m in step.synced):
        ctx.kube.refresh_discovery()  # a CRD of an earlier wave, or created by another app meanwhile
    stages = ordering.stages(step.synced)
    for i, stage in enumerate(stages):
        if ctx.stopped():
            ctx.entries.extend(_skipped(stage.manifests, "not applied: an earlier stage failed"))
            continue
        ctx.token.check()
        done = apply.apply_stage(
            ctx.kube,
            [ctx.desired[m.key] for m in stage.manifests],
            f"{stage.name}, {step.label}",
            ctx.apply_options,
            ctx.pool,
            ctx.live,
            ctx.known,
            ctx.token,
            ctx.intent,
        )
        ctx.entries.extend(done.entries)
        ctx.records.update(done.records)
        if stage.name == "prerequisites" and i + 1 < len(stages):
            _await_crds(ctx, [ctx.desired[m.key] for m in stage.manifests], done.entries)
    if ctx.stopped():
        return Failure("apply", f"{step.label}: objects failed (see their entries)")
    return None


def _run_hooks(ctx: Context, step: ordering.Step) -> Failure | None:
    """Run the hooks of one step in kind order (a hook's ServiceAccount and RBAC before its Job), those of one
    kind in parallel; the first failed one (in order) fails the step and no later kind runs."""
    for _, group in itertools.groupby(step.hooks, key=lambda m: ordering.kind_rank(m.key.kind)):
        ctx.token.check()
        found = list(group)
        # A pool of their own: a hook waits for its Job in its thread (up to waveTimeout), and the request pool
        # may be shared with other apps of the cluster, whose requests must not queue behind that wait.
        workers = max(1, min(len(found), ctx.apply_options.concurrency))
        with futures.ThreadPoolExecutor(workers, f"hook-{ctx.hook.cluster}") as pool:
            runs = list(
                pool.map(
                    lambda m: hookrun.run(
                        ctx.kube, m, step.phase, ctx.marks.get(m.key, hooks.PLAIN), ctx.hook, ctx.token
                    ),
                    found,
                )
            )
        ctx.runs.extend(runs)
        for r in runs:
            if not r.ok:
                return Failure("hook", f"{step.label}: hook {r.key} failed: {r.message}", r.key)
    return None


def _gate(ctx: Context, step: ordering.Step) -> Failure | None:
    """Wait until every object of ``step`` is Healthy, up to ``ctx.wave_timeout`` seconds."""
    rules = ctx.hook.rules
    pending = [m.key for m in step.synced]
    deadline = time.monotonic() + ctx.wave_timeout
    while True:
        states = list(ctx.pool.map(lambda k: rules.assess(k, ctx.kube.get(k)), pending))
        waiting = [(k, s) for k, s in zip(pending, states, strict=True) if s.status is not health.Health.HEALTHY]
        if not waiting:
            return None
        if time.monotonic() > deadline:
            key, state = waiting[0]
            more = f" (and {len(waiting) - 1} more)" if len(waiting) > 1 else ""
            return Failure(
                "wave",
                f"{step.label} not Healthy after {ctx.wave_timeout:g} s: waiting for {key}: "
                f"{state.status.value}: {state.message}{more}",
                key,
            )
        pending = [k for k, _ in waiting]
        if ctx.token.wait(hookrun.POLL):
            ctx.token.check()


def _skipped(manifests: Sequence[resources.Manifest], why: str) -> list[apply.ChangeSetEntry]:
    return [apply.ChangeSetEntry(m.key, apply.Action.SKIPPED, why, m.origin) for m in manifests]


def _defines(crd: resources.Body) -> tuple[str, str]:
    """The (group, kind) a CRD body defines."""
    spec = crd.get("spec") or {}
    return str(spec.get("group", "")), str((spec.get("names") or {}).get("kind", ""))


DISCOVERY_LAG = 10.0
"""Seconds to wait, after its CRD is Established, for a kind to show in discovery: the API server builds its
aggregated discovery document apart from the CRD's conditions, so a refresh right after Established can miss
the kind, and its objects would fail as not served."""


def _await_crds(ctx: Context, stage: Sequence[apply.Desired], done: Sequence[apply.ChangeSetEntry]) -> None:
    """Wait until every CRD of ``stage`` that this sync wrote, or whose kind is not served yet, is Established
    (up to ``ctx.crd_timeout`` seconds), then refresh discovery until the kinds of those it wrote are served
    (every 0.2 s, up to :data:`DISCOVERY_LAG` more seconds). Unchanged, served CRDs cost nothing."""
    kube = ctx.kube
    written = {e.key for e in done if e.action in _WRITES}
    crds = {
        d.manifest.key: _defines(d.manifest.body)
        for d in stage
        if d.manifest.key.kind == "CustomResourceDefinition"
        and (d.manifest.key in written or kube.resource_type(*_defines(d.manifest.body)) is None)
    }
    if not crds or ctx.apply_options.dry_run:
        return
    deadline = time.monotonic() + ctx.crd_timeout
    pending = list(crds)
    while pending and time.monotonic() < deadline:
        pending = [k for k in pending if not health.crd_established(kube.get(k))]
        if pending and ctx.token.wait(0.1):
            ctx.token.check()
    kube.refresh_discovery()
    # Only the CRDs this sync wrote: one in git unchanged whose kind is still not served (no served version)
    # would otherwise cost every sync the whole wait.
    fresh = [kind for key, kind in crds.items() if key in written]
    lag = min(deadline, time.monotonic() + DISCOVERY_LAG)
    while any(kube.resource_type(*kind) is None for kind in fresh) and time.monotonic() < lag:
        if ctx.token.wait(0.2):
            ctx.token.check()
        kube.refresh_discovery()

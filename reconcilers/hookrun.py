"""Hook runs: a hook is created, waited on and deleted by its policy; it is never desired state.

One run (:func:`run`), following Argo CD's documented hook semantics ("Resource Hooks"):

1. ``BeforeHookCreation`` (the default policy): the earlier runs of this hook are deleted first (found by the
   ``gitops-agent.io/hook`` label, which hashes instance, cluster and the hook's identity in git), and the
   agent waits until they are gone. A hook with a fixed ``metadata.name`` is always replaced this way, whatever
   its policies (a name is unique); ``generateName`` hooks are named by the API server, one object per run.
2. The hook is created (POST, not server-side apply: it is a run, and may have only a ``generateName``). It
   carries no tracking annotation, so it is never in an inventory, never drift, never self-healed or pruned.
3. The agent waits (:func:`until_done`) up to ``timeout`` seconds: a Job until it is Complete or Failed, a Pod
   until it Succeeded or Failed, any other kind until it is Healthy (Degraded fails it).
4. When the sync ends (:func:`finish`), ``HookSucceeded`` deletes the hooks that succeeded and ``HookFailed`` those
   that failed (propagation ``Background``: a Job's pods go with it). Not earlier: a hook Job needs the hook
   ServiceAccount and RBAC of its phase until it is done (Helm too deletes ``hook-succeeded`` hooks only once
   every hook of the event ran).

The result is a :class:`HookRun` (name, phase, wave, result, duration, the failure message). Called by
:mod:`reconcilers.phases`.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import time

from reconcilers import cancel as cancel_
from reconcilers import client, errors, health, hooks, resources

HOOK_LABEL = "gitops-agent.io/hook"
PHASE_ANNOTATION = "gitops-agent.io/hook-phase"
POLL = 0.2
"""Seconds between two reads of a hook or wave being waited on."""


@dataclasses.dataclass(frozen=True)
class HookRun:
    """One run of one hook: ``key`` as the API server named it, its ``phase`` and ``wave``, ``origin``
    (``file#doc``), ``result`` (``Succeeded``, ``Failed``, or ``Planned`` in a dry run), ``message`` (the Job's
    or Pod's failure message, or why it did not run), UTC ``started`` and ``duration`` in seconds."""

    key: resources.ResourceKey
    phase: hooks.Phase
    wave: int
    origin: str
    result: str
    message: str = ""
    started: datetime.datetime = dataclasses.field(default_factory=lambda: datetime.datetime.now(datetime.UTC))
    duration: float = 0.0
    uid: str = dataclasses.field(default="", repr=False)
    policies: frozenset[hooks.DeletePolicy] = dataclasses.field(default=frozenset(), repr=False)

    @property
    def ok(self) -> bool:
        """True when the hook succeeded (or, in a dry run, would run)."""
        return self.result in ("Succeeded", "Planned")

    def as_json(self) -> dict[str, object]:
        """The run as the status API shows it."""
        return {
            "kind": self.key.kind,
            "namespace": self.key.namespace,
            "name": self.key.name,
            "phase": self.phase.value,
            "wave": self.wave,
            "origin": self.origin,
            "result": self.result,
            "message": self.message,
            "started": self.started.isoformat(),
            "duration": round(self.duration, 3),
        }


@dataclasses.dataclass(frozen=True)
class HookOptions:
    """``field_manager`` of the create, ``timeout`` (seconds) of each wait, ``rules`` to judge other kinds'
    health, ``instance`` and ``cluster`` (the hook label's identity), ``dry_run``: plan, create nothing."""

    field_manager: str = "gitops-agent"
    timeout: float = 300.0
    rules: health.Rules = health.BUILT_IN
    instance: str = "gitops-agent"
    cluster: str = ""
    dry_run: bool = False


def hook_id(manifest: resources.Manifest, options: HookOptions) -> str:
    """The label value naming every run of one hook: 16 hex digits of SHA-256 over instance, cluster and the
    hook's identity in git (group, kind, namespace, name or generateName)."""
    k = manifest.key
    raw = "\0".join((options.instance, options.cluster, k.group, k.kind, k.namespace, k.name))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def run(
    kube: client.KubeClient,
    manifest: resources.Manifest,
    phase: hooks.Phase,
    marks: hooks.Marks,
    options: HookOptions,
    token: cancel_.Token,
) -> HookRun:
    """Run the hook ``manifest`` (placed in its namespace) in ``phase`` (see the module doc). Returns its run;
    an API error (refused create, unreachable delete) is a ``Failed`` run with the server's message. Raises
    :class:`errors.CancelledError` when ``token`` is cancelled (a created hook is left running) and
    :class:`errors.ClusterUnreachableError` when the cluster stops answering."""
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.monotonic()

    def done(key: resources.ResourceKey, result: str, message: str = "", uid: str = "") -> HookRun:
        duration = time.monotonic() - t0
        return HookRun(key, phase, marks.wave, manifest.origin, result, message, started, duration, uid, marks.policies)

    if options.dry_run:
        return done(manifest.key, "Planned", "dry run: not created")
    label = hook_id(manifest, options)
    meta = dict(manifest.body.get("metadata") or {})
    meta["labels"] = {**(meta.get("labels") or {}), HOOK_LABEL: label}
    meta["annotations"] = {**(meta.get("annotations") or {}), PHASE_ANNOTATION: phase.value}
    body = {**manifest.body, "metadata": meta}
    try:
        _clear(kube, manifest, label, marks, options, token)
        token.check()
        created = kube.create(body, field_manager=options.field_manager)
    except errors.ApiError as e:
        return done(manifest.key, "Failed", f"not created: {e.message or e}")
    key = resources.ResourceKey.of(created)
    ok, message = until_done(kube, key, options, token)
    return done(key, "Succeeded" if ok else "Failed", message, str((created.get("metadata") or {}).get("uid") or ""))


def finish(kube: client.KubeClient, runs: list[HookRun]) -> list[HookRun]:
    """Delete the hooks of ``runs`` their policies say go now that the sync ended (``HookSucceeded`` for those
    that succeeded, ``HookFailed`` for those that failed), each with a UID precondition. Returns ``runs`` with a
    failed delete noted in the run's message (the hook stays; its next run replaces it)."""
    out = []
    for r in runs:
        policy = hooks.DeletePolicy.HOOK_SUCCEEDED if r.result == "Succeeded" else hooks.DeletePolicy.HOOK_FAILED
        if r.uid and policy in r.policies:
            try:
                kube.delete(r.key, uid=r.uid, propagation="Background")
            except errors.ApiError as e:
                r = dataclasses.replace(r, message=f"{r.message}; not deleted: {e.message or e}".lstrip("; "))
        out.append(r)
    return out


def _clear(
    kube: client.KubeClient,
    manifest: resources.Manifest,
    label: str,
    marks: hooks.Marks,
    options: HookOptions,
    token: cancel_.Token,
) -> None:
    """Delete the earlier runs the policies say go before this one, and wait until they are gone."""
    k = manifest.key
    named = bool((manifest.body.get("metadata") or {}).get("name"))
    earlier: list[resources.Body] = []
    if named:
        live = kube.get(k)
        earlier = [live] if live is not None else []
    elif hooks.DeletePolicy.BEFORE_HOOK_CREATION in marks.policies:
        found, _ = kube.list_objects(k.group, k.kind, f"{HOOK_LABEL}={label}")
        earlier = [o for o in found if (o.get("metadata") or {}).get("namespace", "") == k.namespace]
    for obj in earlier:
        token.check()
        key = resources.ResourceKey.of(obj)
        kube.delete(key, uid=(obj.get("metadata") or {}).get("uid"), propagation="Background")
        deadline = time.monotonic() + options.timeout
        while kube.get(key) is not None:
            if time.monotonic() > deadline:
                raise errors.ApiError(409, "Conflict", f"the earlier run {key} is still being deleted")
            if token.wait(POLL):
                token.check()


def outcome(key: resources.ResourceKey, obj: resources.Body | None, rules: health.Rules) -> tuple[bool | None, str]:
    """Whether the hook ``obj`` is done: (True, message) succeeded, (False, message) failed, (None, message) still
    running. A Pod is done when its phase is Succeeded or Failed; a Job when Complete or Failed; any other kind
    when Healthy (Degraded: failed)."""
    if obj is None:
        return False, "deleted before it completed"
    if (key.group, key.kind) == ("", "Pod"):
        status = obj.get("status") or {}
        phase = status.get("phase", "Pending")
        if phase == "Succeeded":
            return True, "completed"
        if phase == "Failed":
            return False, str(status.get("message") or status.get("reason") or "pod failed")
        return None, str(phase)
    state = rules.assess(key, obj)
    if state.status is health.Health.HEALTHY:
        return True, state.message
    if state.status is health.Health.DEGRADED:
        return False, state.message
    return None, state.message


def until_done(
    kube: client.KubeClient, key: resources.ResourceKey, options: HookOptions, token: cancel_.Token
) -> tuple[bool, str]:
    """Wait until the hook ``key`` is done (:func:`outcome`) or ``options.timeout`` seconds pass (failed).
    Raises :class:`errors.CancelledError` when ``token`` is."""
    deadline = time.monotonic() + options.timeout
    while True:
        ok, message = outcome(key, kube.get(key), options.rules)
        if ok is not None:
            return ok, message
        if time.monotonic() > deadline:
            return False, f"not complete after {options.timeout:g} s ({message})"
        if token.wait(POLL):
            token.check()

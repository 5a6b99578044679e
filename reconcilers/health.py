"""Health of live objects: Healthy, Progressing, Degraded, Missing or Unknown, with a message, per kind.

The rules read what the controllers report, following the Kubernetes docs for each workload ("Deployments:
Deployment status", "StatefulSets", "DaemonSets", "Jobs") and the conventions Argo CD's health checks made
familiar: a controller that has not yet seen the newest spec (``observedGeneration < generation``) means
Progressing; ``ProgressDeadlineExceeded`` means Degraded. A kind without a rule is Healthy once it exists.
Used by ``agent.runtime.fleet`` (status) and the engine (CRD ``Established``).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from reconcilers import resources


class Health(enum.Enum):
    """Health states, ordered from best to worst for aggregation."""

    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    UNKNOWN = "Unknown"
    MISSING = "Missing"
    DEGRADED = "Degraded"


_RANK = {h: i for i, h in enumerate(Health)}


@dataclasses.dataclass(frozen=True)
class HealthStatus:
    """A health state and why."""

    status: Health
    message: str = ""


def _conditions(obj: resources.Body) -> dict[str, dict[str, Any]]:
    return {str(c.get("type")): c for c in (obj.get("status") or {}).get("conditions") or []}


def _stale(obj: resources.Body) -> bool:
    generation = (obj.get("metadata") or {}).get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    return generation is not None and (observed is None or int(observed) < int(generation))


def _deployment(obj: resources.Body) -> HealthStatus:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    progressing = _conditions(obj).get("Progressing") or {}
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return HealthStatus(
            Health.DEGRADED, f"rollout failed: {progressing.get('message', 'progress deadline exceeded')}"
        )
    if spec.get("paused"):
        return HealthStatus(Health.PROGRESSING, "rollout is paused")
    if _stale(obj):
        return HealthStatus(Health.PROGRESSING, "waiting for the rollout to be observed")
    want = int(spec.get("replicas", 1))
    updated, total = int(status.get("updatedReplicas", 0)), int(status.get("replicas", 0))
    available = int(status.get("availableReplicas", 0))
    if updated < want:
        return HealthStatus(Health.PROGRESSING, f"{updated} of {want} replicas updated")
    if total > updated:
        return HealthStatus(Health.PROGRESSING, f"{total - updated} old replicas pending termination")
    if available < updated:
        return HealthStatus(Health.PROGRESSING, f"{available} of {updated} updated replicas available")
    return HealthStatus(Health.HEALTHY, f"{available} of {want} replicas available")


def _statefulset(obj: resources.Body) -> HealthStatus:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if _stale(obj):
        return HealthStatus(Health.PROGRESSING, "waiting for the rollout to be observed")
    want = int(spec.get("replicas", 1))
    ready, updated = int(status.get("readyReplicas", 0)), int(status.get("updatedReplicas", 0))
    if updated < want:
        return HealthStatus(Health.PROGRESSING, f"{updated} of {want} replicas updated")
    if ready < want:
        return HealthStatus(Health.PROGRESSING, f"{ready} of {want} replicas ready")
    return HealthStatus(Health.HEALTHY, f"{ready} of {want} replicas ready")


def _daemonset(obj: resources.Body) -> HealthStatus:
    status = obj.get("status") or {}
    if _stale(obj):
        return HealthStatus(Health.PROGRESSING, "waiting for the rollout to be observed")
    want = int(status.get("desiredNumberScheduled", 0))
    updated, available = int(status.get("updatedNumberScheduled", 0)), int(status.get("numberAvailable", 0))
    if updated < want:
        return HealthStatus(Health.PROGRESSING, f"{updated} of {want} pods updated")
    if available < want:
        return HealthStatus(Health.PROGRESSING, f"{available} of {want} pods available")
    return HealthStatus(Health.HEALTHY, f"{available} of {want} pods available")


def _replicaset(obj: resources.Body) -> HealthStatus:
    failure = _conditions(obj).get("ReplicaFailure") or {}
    if failure.get("status") == "True":
        return HealthStatus(Health.DEGRADED, str(failure.get("message", "replica failure")))
    if _stale(obj):
        return HealthStatus(Health.PROGRESSING, "waiting for the replica set to be observed")
    want = int((obj.get("spec") or {}).get("replicas", 1))
    available = int((obj.get("status") or {}).get("availableReplicas", 0))
    if available < want:
        return HealthStatus(Health.PROGRESSING, f"{available} of {want} replicas available")
    return HealthStatus(Health.HEALTHY, f"{available} of {want} replicas available")


def _pod(obj: resources.Body) -> HealthStatus:
    status = obj.get("status") or {}
    phase = status.get("phase", "Pending")
    if phase == "Succeeded":
        return HealthStatus(Health.HEALTHY, "completed")
    if phase == "Failed":
        return HealthStatus(Health.DEGRADED, str(status.get("message") or status.get("reason") or "pod failed"))
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerError"):
            return HealthStatus(Health.DEGRADED, f"container {cs.get('name')}: {waiting['reason']}")
    if phase == "Running" and (_conditions(obj).get("Ready") or {}).get("status") == "True":
        return HealthStatus(Health.HEALTHY, "running and ready")
    return HealthStatus(Health.PROGRESSING, f"{phase}, not ready")


def _job(obj: resources.Body) -> HealthStatus:
    conditions = _conditions(obj)
    if (conditions.get("Failed") or {}).get("status") == "True":
        return HealthStatus(Health.DEGRADED, str(conditions["Failed"].get("message", "job failed")))
    if (conditions.get("Complete") or {}).get("status") == "True":
        return HealthStatus(Health.HEALTHY, "completed")
    if (obj.get("spec") or {}).get("suspend"):
        return HealthStatus(Health.HEALTHY, "suspended")
    return HealthStatus(Health.PROGRESSING, "running")


def _cronjob(obj: resources.Body) -> HealthStatus:
    if (obj.get("spec") or {}).get("suspend"):
        return HealthStatus(Health.HEALTHY, "suspended")
    last = (obj.get("status") or {}).get("lastScheduleTime")
    return HealthStatus(Health.HEALTHY, f"last scheduled {last}" if last else "not scheduled yet")


def _hpa(obj: resources.Body) -> HealthStatus:
    able = _conditions(obj).get("AbleToScale") or {}
    if able.get("status") == "False":
        return HealthStatus(Health.DEGRADED, str(able.get("message", "unable to scale")))
    if not _conditions(obj):
        return HealthStatus(Health.HEALTHY, "not yet evaluated by the HPA controller")
    return HealthStatus(Health.HEALTHY, "able to scale")


def _pvc(obj: resources.Body) -> HealthStatus:
    phase = (obj.get("status") or {}).get("phase", "Pending")
    if phase == "Bound":
        return HealthStatus(Health.HEALTHY, "bound")
    if phase == "Lost":
        return HealthStatus(Health.DEGRADED, "the bound volume was lost")
    return HealthStatus(Health.PROGRESSING, "waiting for a volume")


def _service(obj: resources.Body) -> HealthStatus:
    if (obj.get("spec") or {}).get("type") == "LoadBalancer":
        ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress")
        if not ingress:
            return HealthStatus(Health.PROGRESSING, "waiting for a load balancer address")
    return HealthStatus(Health.HEALTHY, "")


def _crd(obj: resources.Body) -> HealthStatus:
    conditions = _conditions(obj)
    names = conditions.get("NamesAccepted") or {}
    if names.get("status") == "False":
        return HealthStatus(Health.DEGRADED, str(names.get("message", "names not accepted")))
    if crd_established(obj):
        return HealthStatus(Health.HEALTHY, "established")
    return HealthStatus(Health.PROGRESSING, "waiting to be established")


def _namespace(obj: resources.Body) -> HealthStatus:
    phase = (obj.get("status") or {}).get("phase", "Active")
    if phase == "Active":
        return HealthStatus(Health.HEALTHY, "active")
    return HealthStatus(Health.PROGRESSING, str(phase).lower())


_RULES: dict[tuple[str, str], Callable[[resources.Body], HealthStatus]] = {
    ("apps", "Deployment"): _deployment,
    ("apps", "StatefulSet"): _statefulset,
    ("apps", "DaemonSet"): _daemonset,
    ("apps", "ReplicaSet"): _replicaset,
    ("", "Pod"): _pod,
    ("batch", "Job"): _job,
    ("batch", "CronJob"): _cronjob,
    ("autoscaling", "HorizontalPodAutoscaler"): _hpa,
    ("", "PersistentVolumeClaim"): _pvc,
    ("", "Service"): _service,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _crd,
    ("", "Namespace"): _namespace,
}

HEALTH_KINDS = frozenset(_RULES)
"""The (group, kind) pairs with a built-in health rule (the live cache keeps their status)."""

Rule = Callable[[resources.Body], HealthStatus]
"""A health rule: the live object in, its health out (it may raise TypeError or ValueError: Unknown)."""


def kstatus(obj: resources.Body) -> HealthStatus:
    """The kstatus conventions for any custom resource (sigs.k8s.io/cli-utils kstatus, "status computation"): an
    ``observedGeneration`` behind ``metadata.generation`` is Progressing; condition ``Stalled`` True is Degraded,
    ``Reconciling`` True is Progressing, ``Ready`` True is Healthy and False Progressing; no conditions at all is
    Healthy (nothing to wait for)."""
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if observed is not None and generation is not None and int(observed) < int(generation):
        return HealthStatus(Health.PROGRESSING, f"observedGeneration {observed} behind generation {generation}")
    conditions = _conditions(obj)
    for name, true_is in (("Stalled", Health.DEGRADED), ("Reconciling", Health.PROGRESSING)):
        c = conditions.get(name) or {}
        if c.get("status") == "True":
            return HealthStatus(true_is, f"{name}: {c.get('message') or c.get('reason') or 'True'}")
    ready = conditions.get("Ready")
    if ready is None:
        return HealthStatus(Health.HEALTHY, "no Ready condition")
    if ready.get("status") == "True":
        return HealthStatus(Health.HEALTHY, f"Ready: {ready.get('message') or 'True'}")
    return HealthStatus(
        Health.PROGRESSING, f"Ready {ready.get('status')}: {ready.get('message') or ready.get('reason') or ''}"
    )


def custom_group(group: str) -> bool:
    """True for a group that custom resources use: dotted, and not Kubernetes's own ``*.k8s.io`` (but
    ``*.x-k8s.io``, the SIGs' CRD groups, counts as custom). A wildcard health rule applies to these only, so that
    built-in kinds (Secrets above all) stay watched as metadata."""
    return "." in group and (not group.endswith(".k8s.io") or group.endswith(".x-k8s.io"))


@dataclasses.dataclass(frozen=True)
class Rules:
    """The health rules in force: configured ones by (group, kind) first, then the built-in ones, then a
    wildcard rule for custom resources (:func:`custom_group`); a kind with none is Healthy once it exists."""

    configured: Mapping[tuple[str, str], Rule] = dataclasses.field(default_factory=dict)
    wildcard: Rule | None = None

    def rule_for(self, group: str, kind: str) -> Rule | None:
        """The rule of ``(group, kind)`` or None."""
        found = self.configured.get((group, kind)) or _RULES.get((group, kind))
        if found is None and self.wildcard is not None and custom_group(group):
            return self.wildcard
        return found

    def watches_status(self, group: str, kind: str) -> bool:
        """True when the health of ``(group, kind)`` needs its full object (status), not only its metadata."""
        return self.rule_for(group, kind) is not None

    def assess(self, key: resources.ResourceKey, obj: resources.Body | None) -> HealthStatus:
        """The health of the live object ``obj`` (None: it does not exist) whose key is ``key``."""
        if obj is None:
            return HealthStatus(Health.MISSING, "not found in the cluster")
        if (obj.get("metadata") or {}).get("deletionTimestamp"):
            return HealthStatus(Health.PROGRESSING, "being deleted")
        rule = self.rule_for(key.group, key.kind)
        if rule is None:
            return HealthStatus(Health.HEALTHY, "exists")
        try:
            return rule(obj)
        except (TypeError, ValueError) as e:
            return HealthStatus(Health.UNKNOWN, f"unreadable status: {e}")


BUILT_IN = Rules()
"""The built-in rules alone."""


def assess(key: resources.ResourceKey, obj: resources.Body | None) -> HealthStatus:
    """The health of the live object ``obj`` (None: it does not exist) whose key is ``key``, by the built-in
    rules (:data:`BUILT_IN`)."""
    return BUILT_IN.assess(key, obj)


def after_writes(
    healths: Mapping[resources.ResourceKey, HealthStatus],
    written: Mapping[resources.ResourceKey, int],
    seen: Callable[[resources.ResourceKey], int | None],
) -> dict[resources.ResourceKey, HealthStatus]:
    """``healths`` judged from a cache (a watch), with each object a sync wrote at generation ``written[key]``
    that the cache shows at an older generation (``seen``; None: not at all) taken as Progressing: the cached
    status describes the object before the write. It is kstatus's rule (a status counts once its
    ``observedGeneration`` reaches ``generation``) one step earlier: the cache must first show that generation."""
    out = dict(healths)
    for key, generation in written.items():
        cached = seen(key)
        if key in out and (cached is None or cached < generation):
            out[key] = HealthStatus(Health.PROGRESSING, f"the watch has not shown generation {generation} yet")
    return out


def aggregate(statuses: Iterable[Health]) -> Health:
    """The worst of ``statuses`` (Healthy when empty)."""
    return max(statuses, key=lambda h: _RANK[h], default=Health.HEALTHY)


def crd_established(crd: resources.Body | None) -> bool:
    """True when the CRD's ``Established`` condition is ``True``; False when missing or not yet established."""
    if crd is None:
        return False
    return bool((_conditions(crd).get("Established") or {}).get("status") == "True")

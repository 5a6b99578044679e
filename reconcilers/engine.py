"""One reconcile of one cluster: place, order, validate and apply the desired objects.

``reconcile(kube, manifests, options)`` reads as the story of a sync:

1. place: namespaced objects without a namespace go to ``options.default_namespace``; a kind neither served by
   the cluster nor defined by a CRD in the same desired set fails with a clear message;
2. check identities: two documents for one object make the whole sync fail (names both documents);
3. stage (:mod:`reconcilers.ordering`) and, stage by stage, dry-run and apply (:mod:`reconcilers.apply`);
   after the prerequisites stage wait for CRDs to be ``Established`` and refresh discovery. A stage that
   failed stops the sync: later stages are ``skipped``.

Partial results come back with the error: a cluster that stops answering mid-sync yields the entries so far.
Called by ``agent.runner``.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import time
from collections.abc import Sequence
from concurrent import futures

from reconcilers import apply, client, errors, health, ordering, resources


class ErrorKind(enum.Enum):
    """Why a reconcile did not run to its end: ``config`` and ``source`` errors write nothing; ``cluster`` errors
    (unreachable, refused credentials) may leave a partial sync; ``internal`` is a bug."""

    CONFIG = "config"
    SOURCE = "source"
    CLUSTER = "cluster"
    INTERNAL = "internal"


@dataclasses.dataclass(frozen=True)
class ReconcileOptions:
    """Options of one reconcile: ``apply`` (see :class:`apply.ApplyOptions`), ``default_namespace`` for namespaced
    objects that name none, and ``timeout`` (seconds) for waits such as CRDs becoming Established."""

    apply: apply.ApplyOptions = dataclasses.field(default_factory=apply.ApplyOptions)
    default_namespace: str = "default"
    timeout: float = 300.0


@dataclasses.dataclass(frozen=True)
class ReconcileResult:
    """The outcome of one reconcile of one cluster.

    ``entries`` has one :class:`apply.ChangeSetEntry` per desired object; ``error``/``error_kind`` say why the
    reconcile stopped early (None when it ran to its end); ``started`` is UTC, ``duration`` in seconds.
    """

    cluster: str
    revision: resources.Revision | None
    entries: tuple[apply.ChangeSetEntry, ...]
    started: datetime.datetime
    duration: float
    dry_run: bool = False
    error: str | None = None
    error_kind: ErrorKind | None = None

    @property
    def counts(self) -> dict[str, int]:
        """Objects per action (see :func:`apply.counts`)."""
        return apply.counts(self.entries)

    @property
    def failed(self) -> list[apply.ChangeSetEntry]:
        """Entries that failed."""
        return [e for e in self.entries if e.action is apply.Action.FAILED]

    @property
    def ok(self) -> bool:
        """True when the reconcile ran to its end and no object failed or was skipped."""
        c = self.counts
        return self.error is None and c["failed"] == 0 and c["skipped"] == 0


def reconcile(
    kube: client.KubeClient,
    manifests: Sequence[resources.Manifest],
    options: ReconcileOptions,
    *,
    cluster: str,
    revision: resources.Revision | None,
) -> ReconcileResult:
    """Sync ``manifests`` into the cluster behind ``kube``; never raises for cluster or input errors.

    Raises only :class:`errors.SourceError` for duplicate identities (before any request that writes).
    """
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.monotonic()
    entries: list[apply.ChangeSetEntry] = []

    def result(error: str | None = None, kind: ErrorKind | None = None) -> ReconcileResult:
        return ReconcileResult(
            cluster, revision, tuple(entries), started, time.monotonic() - t0, options.apply.dry_run, error, kind
        )

    try:
        placed, unplaceable = _place(kube, manifests, options.default_namespace)
        _check_unique(placed)
        entries.extend(unplaceable)
        stages = ordering.stages(placed)
        with futures.ThreadPoolExecutor(max(1, options.apply.concurrency), thread_name_prefix=cluster) as pool:
            for i, stage in enumerate(stages):
                if any(e.action in (apply.Action.FAILED, apply.Action.SKIPPED) for e in entries):
                    entries.extend(_skip(stage, "not applied: an earlier stage failed"))
                    continue
                entries.extend(apply.apply_stage(kube, stage, options.apply, pool))
                if stage.name == "prerequisites" and i + 1 < len(stages):
                    _await_crds(kube, stage, options)
    except errors.ClusterError as e:
        return result(f"cluster {cluster}: {e}", ErrorKind.CLUSTER)
    return result()


def _place(
    kube: client.KubeClient, manifests: Sequence[resources.Manifest], default_namespace: str
) -> tuple[list[resources.Manifest], list[apply.ChangeSetEntry]]:
    """Default namespaces; return the placeable manifests and a failed entry for each unknown kind."""
    desired_crds = {
        (str(spec.get("group", "")), str((spec.get("names") or {}).get("kind", ""))): spec.get("scope") == "Namespaced"
        for m in manifests
        if (m.key.group, m.key.kind) == ("apiextensions.k8s.io", "CustomResourceDefinition")
        for spec in [m.body.get("spec") or {}]
    }
    placed, failed = [], []
    for m in manifests:
        rtype = kube.resource_type(m.key.group, m.key.kind)
        namespaced = rtype.namespaced if rtype else desired_crds.get((m.key.group, m.key.kind))
        if namespaced is None:
            api_version = m.body.get("apiVersion")
            msg = f"unknown kind {m.key.kind} in {api_version}: not served by the cluster and no CRD in desired state"
            failed.append(apply.ChangeSetEntry(m.key, apply.Action.FAILED, msg, m.origin))
        elif namespaced and not m.key.namespace:
            placed.append(m.with_namespace(default_namespace))
        elif not namespaced and m.key.namespace:
            placed.append(_cluster_scoped(m))
        else:
            placed.append(m)
    return placed, failed


def _cluster_scoped(m: resources.Manifest) -> resources.Manifest:
    """Drop a namespace given to a cluster-scoped object (the API server ignores it too)."""
    meta = {k: v for k, v in (m.body.get("metadata") or {}).items() if k != "namespace"}
    return dataclasses.replace(m, key=dataclasses.replace(m.key, namespace=""), body={**m.body, "metadata": meta})


def _check_unique(manifests: Sequence[resources.Manifest]) -> None:
    seen: dict[resources.ResourceKey, resources.Manifest] = {}
    for m in manifests:
        if m.key in seen:
            raise errors.ManifestError(
                m.source_file, m.doc_index, f"{m.key} is also defined in {seen[m.key].origin}: one object, one document"
            )
        seen[m.key] = m


def _skip(stage: ordering.Stage, why: str) -> list[apply.ChangeSetEntry]:
    return [apply.ChangeSetEntry(m.key, apply.Action.SKIPPED, why, m.origin) for m in stage.manifests]


def _await_crds(kube: client.KubeClient, stage: ordering.Stage, options: ReconcileOptions) -> None:
    """Wait until every CRD of ``stage`` is Established (up to ``options.timeout``), then refresh discovery."""
    crds = [m.key for m in stage.manifests if m.key.kind == "CustomResourceDefinition"]
    if not crds or options.apply.dry_run:
        return
    deadline = time.monotonic() + options.timeout
    pending = list(crds)
    while pending and time.monotonic() < deadline:
        pending = [k for k in pending if not health.crd_established(kube.get(k))]
        if pending:
            time.sleep(0.1)
    kube.refresh_discovery()

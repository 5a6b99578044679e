"""Helm release records beside a chart app: named in its status, never touched.

The agent renders charts with ``helm template`` and keeps its own inventory; it writes no Helm release Secret.
A release first installed with ``helm install`` has its objects adopted by the app's first sync (server-side
apply takes them over, the tracking annotation marks them), while Helm's release Secrets
(``sh.helm.release.v1.<release>.v<N>``, type ``helm.sh/release.v1``, labelled ``owner=helm``,
``name=<release>``) stay as they are: :func:`left_alone` finds them (one metadata-only LIST, filtered by label,
on each sync that runs the engine; a resync proven unchanged names the ones found then) so the app's result
names each as ``kept``, with a message saying why. Deleting them is the user's decision
(``helm uninstall`` would delete the adopted objects too; delete the Secrets alone). Used by
:mod:`agent.sync.appsync`.
"""

from __future__ import annotations

from collections.abc import Sequence

from agent import apps
from agent.clusters import connection
from reconcilers import engine, errors, resources

MESSAGE = (
    "a Helm release record (helm install): left alone; the agent's inventory is this app's record, and "
    "deleting the Secret does not touch the objects"
)


def release_name(unit: apps.Unit) -> str:
    """The release the unit's chart is rendered as: ``helm.releaseName``, else the app's name (a ``paths``
    entry: its directory's name)."""
    if unit.helm is not None and unit.helm.release_name:
        return unit.helm.release_name
    return unit.path.rstrip("/").rpartition("/")[2] if unit.from_paths else unit.name


def rendered_by_helm(manifests: Sequence[resources.Manifest]) -> bool:
    """True when the objects came from a chart (Helm's ``app.kubernetes.io/managed-by: Helm`` label, which
    ``helm template`` sets through ``.Release.Service``)."""
    return any(
        ((m.body.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/managed-by") == "Helm"
        for m in manifests
    )


def left_alone(
    kube: connection.KubeCluster, unit: apps.Unit, manifests: Sequence[resources.Manifest]
) -> list[engine.ChangeSetEntry]:
    """A ``kept`` entry for each Helm release Secret of the unit's release in its namespace (none when the unit
    is not a chart, or the agent may not list Secrets: this is a report, never a reason to fail)."""
    if not rendered_by_helm(manifests):
        return []
    release = release_name(unit)
    try:
        found, _ = kube.list_objects("", "Secret", f"owner=helm,name={release}", metadata_only=True)
    except (errors.ApiError, errors.ClusterError):
        return []
    return [
        engine.ChangeSetEntry(resources.ResourceKey.of(s), engine.Action.KEPT, MESSAGE, "helm install")
        for s in found
        if (s.get("metadata") or {}).get("namespace") == unit.namespace
    ]

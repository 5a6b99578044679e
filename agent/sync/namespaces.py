"""An app's ``createNamespace`` (Argo CD's ``CreateNamespace=true`` sync option): its namespace made before its
first object, when missing and not in git itself. Used by :mod:`agent.sync.appsync`."""

from __future__ import annotations

from collections.abc import Sequence

from agent import apps, config
from agent.clusters import connection
from reconcilers import cancel as cancel_
from reconcilers import engine, resources

CREATED_FOR_ANNOTATION = "gitops-agent.io/created-for"
"""On a Namespace made by ``createNamespace``: ``<instance>:<cluster>:<app>``. It carries no tracking annotation
and is in no inventory, so it is never pruned (Argo CD's ``CreateNamespace=true`` behaves the same)."""


def create(
    kube: connection.KubeCluster,
    cfg: config.AgentConfig,
    cluster: str,
    u: apps.Unit,
    manifests: Sequence[resources.Manifest],
    dry_run: bool,
    token: cancel_.Token,
) -> list[engine.ChangeSetEntry]:
    """Create ``u``'s namespace on ``cluster`` (with the agent's identity, server-side apply as
    ``sync.fieldManager``) when the unit asks for it, it is missing (one GET) and git does not hold it; the
    entry that says so (a dry run only says it would), else none. Raises CancelledError (``token``, before the
    write) and ClusterError."""
    if not u.create_namespace:
        return []
    key = resources.ResourceKey("", "Namespace", "", u.namespace)
    if any(m.key == key for m in manifests) or kube.get(key) is not None:
        return []
    if dry_run:
        return [engine.ChangeSetEntry(key, engine.Action.CREATED, "createNamespace (dry run)", "createNamespace")]
    token.check()
    body = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": u.namespace,
            "annotations": {CREATED_FOR_ANNOTATION: f"{cfg.instance}:{cluster}:{u.name}"},
        },
    }
    kube.apply(body, field_manager=cfg.sync.field_manager, force=False, dry_run=False)
    return [engine.ChangeSetEntry(key, engine.Action.CREATED, "createNamespace", "createNamespace")]

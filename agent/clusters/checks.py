"""``gitops-agent clusters check``: can the agent do its job in each cluster?

Per cluster: reachable (``GET /version``), authenticated as whom (``SelfSubjectReview``, authentication.k8s.io/v1,
GA in Kubernetes 1.28), the server version, and whether its identity may do what the desired state needs: a
``SelfSubjectAccessReview`` per (kind, namespace, verb) of the cluster's manifests: get, list, watch, create and
patch always, delete when prune is on, and create/patch of its inventory ConfigMaps. Missing permissions are named
the way the API server's 403 would name them. Used by ``agent.cli``.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence
from concurrent import futures

from agent import config
from agent.clusters import connection, kubeconfig
from agent.sources import manifests
from reconcilers import errors

VERBS = ("get", "list", "watch", "create", "patch")


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """What ``clusters check`` found for one cluster."""

    cluster: str
    server: str = ""
    version: str = ""
    user: str = ""
    groups: tuple[str, ...] = ()
    checked: int = 0
    missing: tuple[str, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Reachable, authenticated, and nothing missing."""
        return self.error is None and not self.missing


def check(cfg: config.AgentConfig, cluster: config.ClusterConfig, checkout: pathlib.Path | None) -> CheckResult:
    """Check one cluster; ``checkout`` is the source tree (None: permissions are not checked). Never raises."""
    try:
        kube = kubeconfig.connect(cluster, 4, min(cfg.sync.request_timeout, 10.0))
    except errors.ConfigError as e:
        return CheckResult(cluster.name, error=str(e))
    try:
        version = kube.request("GET", "/version").get("gitVersion", "")
        review = kube.request(
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
        user = (review.get("status") or {}).get("userInfo") or {}
        needs = _needs(kube, cfg, cluster, checkout)
        with futures.ThreadPoolExecutor(4) as pool:
            verdicts = list(pool.map(lambda n: _allowed(kube, *n), needs))
        missing = tuple(sorted({_describe(*n) for n, ok in zip(needs, verdicts, strict=True) if not ok}))
        return CheckResult(
            cluster.name,
            kube.server,
            version,
            str(user.get("username", "")),
            tuple(user.get("groups") or ()),
            len(needs),
            missing,
        )
    except errors.GitOpsError as e:
        return CheckResult(cluster.name, kube.server, error=str(e))
    finally:
        kube.close()


def _needs(
    kube: connection.KubeCluster, cfg: config.AgentConfig, cluster: config.ClusterConfig, checkout: pathlib.Path | None
) -> list[tuple[str, str, str, str]]:
    """(group, resource, namespace or "" for cluster scope, verb) the cluster's desired state needs."""
    verbs = VERBS + (("delete",) if cfg.sync.prune else ())
    # the inventories: read, listed and watched in their namespace, created, replaced (a PUT: "update"), and
    # deleted when an app leaves the cluster with nothing of it left to prune (prune on or off)
    stored = ("get", "list", "watch", "create", "update", "delete")
    needs = {("", "configmaps", cfg.sync.inventory_namespace, v) for v in stored}
    if checkout is not None:
        for m in manifests.load_paths(checkout, cluster.paths, cluster.namespace):
            rtype = kube.resource_type(m.key.group, m.key.kind)
            resource = rtype.plural if rtype else m.key.kind.lower() + "s"  # a kind a CRD in git will define
            namespaced = rtype.namespaced if rtype else bool(m.key.namespace)
            namespace = (m.key.namespace or cluster.namespace) if namespaced else ""
            for verb in verbs:  # the live cache lists and watches across namespaces
                needs.add((m.key.group, resource, "" if verb in ("list", "watch") else namespace, verb))
    return sorted(needs)


def _allowed(kube: connection.KubeCluster, group: str, resource: str, namespace: str, verb: str) -> bool:
    attributes = {"group": group, "resource": resource, "verb": verb}
    if namespace:
        attributes["namespace"] = namespace
    body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attributes},
    }
    answer = kube.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=body)
    return bool((answer.get("status") or {}).get("allowed"))


def _describe(group: str, resource: str, namespace: str, verb: str) -> str:
    where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    api_group = f' in API group "{group}"' if group else ""
    return f'cannot {verb} resource "{resource}"{api_group} {where}'


def check_all(cfg: config.AgentConfig, names: Sequence[str] | None, checkout: pathlib.Path | None) -> list[CheckResult]:
    """Check the named clusters (all when None) concurrently, in config order."""
    selected = [cfg.cluster(n) for n in names] if names else list(cfg.clusters)
    with futures.ThreadPoolExecutor(max(1, len(selected))) as pool:
        return list(pool.map(lambda c: check(cfg, c, checkout), selected))

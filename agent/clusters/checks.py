"""``gitops-agent clusters check``: can the agent do its job in each cluster, for every app placed there?

Per cluster: reachable (``GET /version``), authenticated as whom (``SelfSubjectReview``, authentication.k8s.io/v1,
GA in Kubernetes 1.28), the server version, and whether the identities the apps write as may do what their
desired state needs: a ``SelfSubjectAccessReview`` per (kind, namespace, verb) of each app's manifests, asked as
the app's ``serviceAccount`` when it has one (``Impersonate-User``; the agent itself then needs ``impersonate`` on
it). Required: get, create and patch where each object lives, delete when the app prunes, get and create of
Namespaces with ``createNamespace``, and the inventories' ConfigMaps (get, list, watch, create, update, delete in
``sync.inventoryNamespace``). Optional: list and watch of each kind at the cluster scope, which the live cache
uses; without them the agent reads objects one by one (a namespace-only Role is a documented setup), so they are
warnings. Missing permissions are named as the API server's 403 names them, with the app that needs them.
:func:`rbac` writes the Roles and ClusterRoles (with bindings) that grant what the apps need. Used by
``agent.cli``.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping, Sequence
from concurrent import futures
from typing import Any

from agent import apps, config, threads
from agent.clusters import connection, kubeconfig
from agent.sources import manifests
from reconcilers import errors

VERBS = ("get", "create", "patch")
"""What every desired object needs where it lives (server-side apply is a PATCH; a first apply creates)."""
WATCH = ("list", "watch")
"""What the live cache asks at the cluster scope (optional)."""
INVENTORY = ("get", "list", "watch", "create", "update", "delete")


@dataclasses.dataclass(frozen=True, order=True)
class Need:
    """One permission an identity needs: ``user`` ("" for the agent's own identity, else the impersonated one),
    API ``group``, ``resource``, ``namespace`` ("" at the cluster scope), ``verb``, whether it is ``required``, and
    the apps that need it."""

    user: str
    group: str
    resource: str
    namespace: str
    verb: str
    required: bool = True
    apps: tuple[str, ...] = ()

    def text(self) -> str:
        """As the API server's 403 says it, with who and for which apps."""
        where = f'in the namespace "{self.namespace}"' if self.namespace else "at the cluster scope"
        api_group = f' in API group "{self.group}"' if self.group else ""
        who = f"{self.user} " if self.user else ""
        for_apps = f" (app {', '.join(self.apps)})" if self.apps else ""
        return f'{who}cannot {self.verb} resource "{self.resource}"{api_group} {where}{for_apps}'


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """What ``clusters check`` found for one cluster: ``missing`` required permissions and ``warnings`` (optional
    ones, apps that could not be rendered for the check), both as text; ``needs`` every permission checked."""

    cluster: str
    server: str = ""
    version: str = ""
    user: str = ""
    groups: tuple[str, ...] = ()
    checked: int = 0
    missing: tuple[str, ...] = ()
    error: str | None = None
    warnings: tuple[str, ...] = ()
    needs: tuple[Need, ...] = ()

    @property
    def ok(self) -> bool:
        """Reachable, authenticated, and no required permission missing."""
        return self.error is None and not self.missing


def check(
    cfg: config.AgentConfig, cluster: config.ClusterConfig, trees: Mapping[str, pathlib.Path] | None
) -> CheckResult:
    """Check one cluster; ``trees``: each source's checkout by name (None, or a source left out: its apps'
    objects are not checked). Never raises."""
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
        needs, unrendered = _needs(kube, cfg, cluster, trees or {})
        asked = sorted({(n.user, n.group, n.resource, n.namespace, n.verb) for n in needs})  # each asked once
        with futures.ThreadPoolExecutor(4, threads.pool("check-cluster", "clusters check")) as pool:
            answers = dict(zip(asked, pool.map(lambda a: _allowed(kube, *a), asked), strict=True))
        verdicts = [answers[(n.user, n.group, n.resource, n.namespace, n.verb)] for n in needs]
        denied = [n for n, ok in zip(needs, verdicts, strict=True) if not ok]
        return CheckResult(
            cluster.name,
            kube.server,
            version,
            str(user.get("username", "")),
            tuple(user.get("groups") or ()),
            len(needs),
            tuple(n.text() for n in denied if n.required),
            None,
            tuple(unrendered) + tuple(_optional(n) for n in denied if not n.required),
            tuple(needs),
        )
    except errors.GitOpsError as e:
        return CheckResult(cluster.name, kube.server, error=str(e))
    finally:
        kube.close()


def _optional(n: Need) -> str:
    return f"{n.text()}: optional, objects are read one by one instead of from a watch"


def _needs(
    kube: connection.KubeCluster,
    cfg: config.AgentConfig,
    cluster: config.ClusterConfig,
    trees: Mapping[str, pathlib.Path],
) -> tuple[list[Need], list[str]]:
    """Every permission the cluster's apps need (sorted, each once with the apps that need it), and the apps whose
    objects could not be rendered for the check (why)."""
    found: dict[tuple[str, str, str, str, str, bool, bool], set[str]] = {}

    def need(user: str, group: str, resource: str, namespace: str, verb: str, app: str, required: bool = True) -> None:
        # the inventories' needs (app "") stay apart from the apps': a line names who needs it
        found.setdefault((user, group, resource, namespace, verb, required, not app), set()).update(
            [app] if app else []
        )

    for verb in INVENTORY:
        need("", "", "configmaps", cfg.sync.inventory_namespace, verb, "")
    unrendered = []
    for u in apps.units(cfg, cluster):
        user = u.impersonate or ""
        if u.service_account:
            sa_namespace, _, _ = u.service_account.partition("/")
            need("", "", "serviceaccounts", sa_namespace, "impersonate", u.name)
        if u.create_namespace:
            for verb in ("get", "create"):
                need(user, "", "namespaces", "", verb, u.name)
        tree = trees.get(u.source)
        if tree is None:
            continue
        try:
            selection = manifests.Selection(u.directory.recurse, u.directory.include, u.directory.exclude)
            loaded = manifests.load_paths(tree, [u.path], u.namespace, release=u.name, selection=selection)
        except errors.GitOpsError as e:
            unrendered.append(f"app {u.name}: objects not checked: {e}")
            continue
        verbs = VERBS + (("delete",) if u.prune else ())
        for m in loaded:
            rtype = kube.resource_type(m.key.group, m.key.kind)
            resource = rtype.plural if rtype else m.key.kind.lower() + "s"  # a kind a CRD in git will define
            namespaced = rtype.namespaced if rtype else bool(m.key.namespace)
            namespace = (m.key.namespace or u.namespace) if namespaced else ""
            for verb in verbs:
                need(user, m.key.group, resource, namespace, verb, u.name)
            for verb in WATCH:
                need(user, m.key.group, resource, "", verb, u.name, required=False)
    needs = [Need(*k[:5], k[5], tuple(sorted(v))) for k, v in found.items()]  # k[6]: kept apart, not shown
    return sorted(needs, key=lambda n: (not n.required, n.user, n.group, n.resource, n.namespace, n.verb)), unrendered


def _allowed(kube: connection.KubeCluster, user: str, group: str, resource: str, namespace: str, verb: str) -> bool:
    attributes = {"group": group, "resource": resource, "verb": verb}
    if namespace:
        attributes["namespace"] = namespace
    body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attributes},
    }
    asking = kube.impersonating(user) if user else kube
    answer = asking.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=body)
    return bool((answer.get("status") or {}).get("allowed"))


def check_all(
    cfg: config.AgentConfig, names: Sequence[str] | None, trees: Mapping[str, pathlib.Path] | None
) -> list[CheckResult]:
    """Check the named clusters (all when None) concurrently, in config order."""
    selected = [cfg.cluster(n) for n in dict.fromkeys(names)] if names else list(cfg.clusters)
    with futures.ThreadPoolExecutor(max(1, len(selected)), threads.pool("check", "clusters check")) as pool:
        return list(pool.map(lambda c: check(cfg, c, trees), selected))


def rbac(result: CheckResult, name: str = "gitops-agent") -> list[dict[str, Any]]:
    """The RBAC objects that grant every permission ``result`` checked (required and optional): per identity, a
    ClusterRole for the cluster scope and a Role per namespace, each bound to it (a ``system:serviceaccount:ns:sa``
    user as its ServiceAccount, else as a User). Rules group verbs by (API group, resource)."""
    out: list[dict[str, Any]] = []
    by_place: dict[tuple[str, str], dict[tuple[str, str], set[str]]] = {}
    for n in result.needs:
        who = n.user or result.user
        by_place.setdefault((who, n.namespace), {}).setdefault((n.group, n.resource), set()).add(n.verb)
    for (who, namespace), rules in sorted(by_place.items()):
        suffix = "" if who == result.user else "-" + who.rsplit(":", 1)[-1]
        kind = "Role" if namespace else "ClusterRole"
        meta: dict[str, str] = {"name": f"{name}{suffix}", **({"namespace": namespace} if namespace else {})}
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": kind,
            "metadata": meta,
            "rules": [
                {"apiGroups": [group], "resources": [resource], "verbs": sorted(verbs)}
                for (group, resource), verbs in sorted(rules.items())
            ],
        }
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": f"{kind}Binding",
            "metadata": dict(meta),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": meta["name"]},
            "subjects": [_subject(who)],
        }
        out += [role, binding]
    return out


def _subject(user: str) -> dict[str, str]:
    """A binding's subject for ``user`` (Kubernetes docs, "Using RBAC Authorization": a service account's username
    is ``system:serviceaccount:<namespace>:<name>``)."""
    parts = user.split(":")
    if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"]:
        return {"kind": "ServiceAccount", "namespace": parts[2], "name": parts[3]}
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}

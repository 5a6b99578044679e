"""One import from documents to config: the order peers' objects are read in, and what is not theirs.

Argo CD (:func:`argocd`): cluster Secrets first (the apps' destinations name their servers), then repository
Secrets (they name the sources), Applications, ApplicationSets, and last the credential templates
(``repo-creds``) for every source under their URL; AppProjects are read where an Application names them;
``argocd-cm``'s resource customizations and ``oidc.config`` (:mod:`agent.importers.argocd_cm`), ``argocd-rbac-cm``'s
policy (:mod:`agent.importers.argocd_rbac`). Any other document is reported as not mapped.
"""

from __future__ import annotations

from collections.abc import Sequence

from agent.importers import (
    argocd,
    argocd_appsets,
    argocd_cm,
    argocd_rbac,
    argocd_secrets,
    documents,
    flux,
    flux_apps,
    imported,
    report,
)


def argocd_config(
    docs: Sequence[documents.Document],
    map_url: list[tuple[str, str]],
    out: imported.Imported | None = None,
    kubeconfig: str | None = None,
) -> imported.Imported:
    """The agent config and report of Argo CD's objects ``docs`` (:mod:`agent.importers.argocd`), built into
    ``out`` when given (sources and clusters known beforehand: :mod:`agent.appsets.nested`). ``kubeconfig``:
    how Argo CD's own cluster (``in-cluster``) is reached (default: the agent's own, ``inCluster``)."""
    out = out or imported.Imported(map_url, kubeconfig)
    known = argocd.projects(list(docs))
    order = {"cluster": 0, "repository": 1, "repo-creds": 4}

    def rank(d: documents.Document) -> int:
        kind = argocd_secrets.secret_type(d)
        return order.get(kind, 5) if kind else 2 if argocd.is_argocd(d, "Application") else 3

    ranked = sorted(docs, key=rank)
    rbac_at = None
    for doc in ranked:
        kind = argocd_secrets.secret_type(doc)
        if kind == "cluster":
            argocd_secrets.cluster(out, doc)
        elif kind in ("repository", "repo-creds"):
            argocd_secrets.repository(out, doc, creds=kind == "repo-creds")
        elif argocd.is_argocd(doc, "Application"):
            argocd.application(out, doc, known)
        elif argocd.is_argocd(doc, "ApplicationSet"):
            argocd_appsets.app_set(out, doc, known)
        elif argocd_cm.is_config_map(doc, "argocd-cm"):
            argocd_cm.config_map(out, doc)
        elif argocd_cm.is_config_map(doc, "argocd-rbac-cm"):
            argocd_rbac.rbac_config_map(out, doc)
            rbac_at = doc.where
        elif argocd.is_argocd(doc, "AppProject"):
            if not any(a.get("name") for a in out.apps):
                out.report.note(doc.where, "", "read for the apps of this project")
        else:
            out.report.unmapped(
                doc.where,
                "kind",
                f"{doc.body.get('apiVersion')} {doc.where.kind}: not an Argo CD "
                "Application, ApplicationSet, AppProject or cluster/repository Secret",
            )
    argocd_rbac.finish(out, rbac_at)
    return out


def flux_config(
    docs: Sequence[documents.Document],
    map_url: list[tuple[str, str]],
    kubeconfig: str | None = None,
    git_repositories: dict[str, str] | None = None,
    out: imported.Imported | None = None,
) -> imported.Imported:
    """The agent config and report of Flux's objects ``docs`` (:mod:`agent.importers.flux`), every app on one
    cluster: reached with ``kubeconfig``, else the agent's own (``inCluster``). ``git_repositories``: GitRepositories
    the files name but do not hold (``flux bootstrap``'s ``flux-system``), name -> URL (``URL@REF`` for a branch)."""
    out = out or imported.Imported(map_url)
    docs = [*docs, *(given_repository(n, u) for n, u in (git_repositories or {}).items())]
    cluster = out.add_cluster(
        "default" if kubeconfig else "in-cluster", {"kubeconfig": kubeconfig} if kubeconfig else {"inCluster": True}
    )
    f = flux.Flux(out, list(docs), cluster)
    for doc in docs:
        kind = flux.kind(doc)
        if kind == "Kustomization":
            flux_apps.kustomization(f, doc)
        elif kind == "HelmRelease":
            flux_apps.helm_release(f, doc)
        elif kind:
            out.report.note(doc.where, "", "read where a Kustomization or HelmRelease names it")
        elif ((doc.body.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/part-of") == "flux":
            out.report.note(doc.where, "", "Flux's own component: not needed by the agent")
        else:
            out.report.unmapped(
                doc.where,
                "kind",
                f"{doc.body.get('apiVersion')} {doc.where.kind}: not a Flux object (put it in a path an app syncs)",
            )
    return out


def given_repository(name: str, url: str) -> documents.Document:
    """A GitRepository given as ``--git-repository NAME=URL[@REF]`` (any namespace)."""
    url, _, ref = url.partition("@") if "://" in url or url.startswith("/") else (url, "", "")
    spec: dict[str, object] = {"url": url, **({"ref": {"branch": ref}} if ref else {})}
    body = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": name},
        "spec": spec,
    }
    return documents.Document(report.Where("--git-repository", "0", "GitRepository", "", name), body)

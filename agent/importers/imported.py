"""The config an import builds: its sources, clusters, apps and app sets, and the report of how each was made.

The ``in-cluster`` cluster (Argo CD's ``https://kubernetes.default.svc``) is the agent's own (``inCluster:
true``); any other server an app names without a registered cluster becomes a cluster reached at that server
with a bearer token from an environment variable the report names.
"""

from __future__ import annotations

from typing import Any

from agent.importers import report, sources

IN_CLUSTER = "https://kubernetes.default.svc"
"""The API server Argo CD names its own cluster by."""


def is_in_cluster(server: str) -> bool:
    """True when ``server`` names Argo CD's own cluster (``https://kubernetes.default.svc``, with or without the
    scheme or a trailing ``/``; Argo CD's examples also write ``http://``)."""
    host = server.split("://", 1)[-1].rstrip("/")
    return host in ("kubernetes.default.svc", "kubernetes.default.svc:443")


class Imported:
    """One import's result, built up as documents are mapped. Not thread-safe (one import)."""

    def __init__(self, map_url: list[tuple[str, str]], own_kubeconfig: str | None = None) -> None:
        self.own = {"kubeconfig": own_kubeconfig} if own_kubeconfig else {"inCluster": True}
        """How Argo CD's own cluster (``in-cluster``) is reached: a kubeconfig, else the agent's own."""
        self.sources = sources.Sources(map_url)
        self.clusters: dict[str, dict[str, Any]] = {}
        """name -> cluster config (camelCase keys)."""
        self.servers: dict[str, str] = {}
        """API server URL (without a trailing ``/``) -> cluster name."""
        self.apps: list[dict[str, Any]] = []
        self.app_sets: list[dict[str, Any]] = []
        self.ignore: list[dict[str, Any]] = []
        """Top-level ``ignoreDifferences`` rules (Argo CD's ``argocd-cm`` resource customizations)."""
        self.projects: dict[str, str] = {}
        """App name -> the Argo CD project its Application was in (for ``argocd-rbac-cm``'s objects)."""
        self.rbac: dict[str, Any] = {}
        """``rbac`` (``policy``, ``defaultRole``), from ``argocd-rbac-cm``."""
        self.server: dict[str, Any] = {}
        """``server`` keys (``oidc`` from ``argocd-cm``, ``token``)."""
        self.report = report.Report()

    def add_cluster(self, name: str, entry: dict[str, Any]) -> str:
        """Register the cluster ``name`` (made unique) with its config ``entry``; returns the name used."""
        base, n = sources.label(name, "cluster"), 2
        unique = base
        while unique in self.clusters:
            unique, n = f"{base}-{n}", n + 1
        self.clusters[unique] = {"name": unique, **entry}
        if entry.get("server"):
            self.servers[str(entry["server"]).rstrip("/")] = unique
        elif entry.get("inCluster"):
            self.servers[IN_CLUSTER] = unique
        return unique

    def add_in_cluster(self, name: str = "in-cluster", labels: dict[str, str] | None = None) -> str:
        """Register Argo CD's own cluster (as :attr:`own` reaches it); returns its name."""
        name = self.add_cluster(name, {**self.own, **({"labels": labels} if labels else {})})
        self.servers[IN_CLUSTER] = name
        return name

    def cluster_for(self, where: report.Where, field: str, server: str = "", name: str = "") -> str:
        """The cluster name of an app's destination (a ``server`` URL or a cluster ``name``), registered on first
        use: the in-cluster server as ``inCluster``, another unknown server with a token from the environment."""
        if name:
            if name in self.clusters:
                return name
            if name == "in-cluster":
                return self.cluster_for(where, field, server=IN_CLUSTER)
            self.report.unmapped(where, field, f"no cluster named {name!r} among the imported cluster Secrets")
            return sources.label(name, "cluster")
        server = IN_CLUSTER if is_in_cluster(server) else server.rstrip("/")
        if server in self.servers:
            return self.servers[server]
        if server == IN_CLUSTER:
            return self.add_in_cluster()
        host = server.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
        name = self.add_cluster(host.split(".", 1)[0] or "cluster", {"server": server})
        env = f"{name.upper().replace('-', '_')}_TOKEN"
        self.clusters[name]["token"] = {"env": env}
        self.report.provide(
            where, field, f"cluster {name} ({server}) has no cluster Secret here: give its bearer token in ${env}"
        )
        return name

    def config(self) -> dict[str, Any]:
        """The agent config (camelCase keys, in the order of config.example.yaml). Without any cluster (app sets
        whose clusters a generator gives), Argo CD's own: ``in-cluster`` (``inCluster: true``)."""
        if not self.clusters:
            self.add_in_cluster()
        out: dict[str, Any] = {"instance": "gitops-agent"}
        if self.server:
            out["server"] = self.server
        if self.sources.entries:
            out["sources"] = self.sources.entries
        out["clusters"] = list(self.clusters.values())
        if self.apps:
            out["apps"] = self.apps
        if self.app_sets:
            out["appSets"] = self.app_sets
        if self.ignore:
            out["ignoreDifferences"] = self.ignore
        if self.rbac:
            out["rbac"] = self.rbac
        return out

"""Rollout state kept in the target clusters, so a restarted agent resumes a rollout where it was.

Each target cluster holds a ConfigMap ``<instance>-rollout`` in ``sync.inventoryNamespace`` whose ``state.json``
is that cluster's part (the revision its syncs apply, its last healthy revision, its last failure) and a copy of
the fleet's part (the revision being rolled out, the rollout's state and message, the revisions that failed,
with the time it was written). On start the newest fleet part read from any cluster wins, and each cluster's own
part restores its targets: a halted rollout stays halted, a failed revision stays failed, and a rollout that was
progressing goes on with the clusters not yet Healthy at its revision.

Every request is bounded by ``sync.requestTimeout``, and the clusters are read and written in parallel, so a
frozen cluster delays the others by one timeout at most; a cluster that cannot be written is logged and the
rollout goes on (its state is rewritten at the next step). Used by :mod:`agent.runtime.rollout`.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Iterable
from concurrent import futures
from typing import Any

from agent import config, threads
from agent.clusters import connection, kubeconfig
from reconcilers import errors, resources

log = logging.getLogger(__name__)

_KEY = "state.json"


def revision_json(rev: resources.Revision | None) -> dict[str, str] | None:
    """``{"sha", "ref"}`` or None."""
    return {"sha": rev.sha, "ref": rev.ref} if rev else None


def revision_of(doc: Any) -> resources.Revision | None:
    """The inverse of :func:`revision_json` (None for anything else)."""
    if isinstance(doc, dict) and isinstance(doc.get("sha"), str):
        return resources.Revision(doc["sha"], str(doc.get("ref", "")))
    return None


class RolloutStore:
    """Reads and writes the rollout ConfigMaps of the clusters of ``cfg``."""

    def __init__(self, cfg: config.AgentConfig, app: str | None = None) -> None:
        self.cfg = cfg
        self.app = app

    def name(self) -> str:
        """The ConfigMap's name: ``<instance>-rollout``, or ``<instance>-rollout-<app>`` for an app's rollout."""
        return f"{self.cfg.instance}-rollout" + (f"-{self.app}" if self.app else "")

    def save(self, cluster: str, state: dict[str, Any]) -> bool:
        """Write ``state`` (JSON data) to ``cluster``; False (logged) when it could not be written."""
        doc = {**state, "at": datetime.datetime.now(datetime.UTC).isoformat()}
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self.name(),
                "namespace": self.cfg.sync.inventory_namespace,
                "labels": {"gitops-agent.io/rollout": self.cfg.instance},
            },
            "data": {_KEY: json.dumps(doc, sort_keys=True)},
        }
        try:
            kube = self._connect(cluster)
        except errors.GitOpsError as e:
            log.warning("rollout state of cluster %s not saved: %s", cluster, e)
            return False
        try:
            kube.apply(body, field_manager=self.cfg.sync.field_manager, force=True, dry_run=False)
            return True
        except errors.ApiError as e:
            if e.not_found:  # the namespace does not exist yet (a first rollout creates it with the inventory)
                kube.apply(
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.cfg.sync.inventory_namespace}},
                    field_manager=self.cfg.sync.field_manager,
                    force=True,
                    dry_run=False,
                )
                return self._retry(kube, body, cluster)
            log.warning("rollout state of cluster %s not saved: %s", cluster, e)
            return False
        except errors.ClusterError as e:
            log.warning("rollout state of cluster %s not saved: %s", cluster, e)
            return False
        finally:
            kube.close()

    def _retry(self, kube: connection.KubeCluster, body: dict[str, Any], cluster: str) -> bool:
        try:
            kube.apply(body, field_manager=self.cfg.sync.field_manager, force=True, dry_run=False)
            return True
        except errors.ClusterError as e:
            log.warning("rollout state of cluster %s not saved: %s", cluster, e)
            return False

    def save_all(self, states: dict[str, dict[str, Any]]) -> None:
        """:meth:`save` each cluster's state, all at once: a frozen cluster costs one request timeout, not one
        per cluster, and delays no other cluster's write."""
        if states:
            with futures.ThreadPoolExecutor(
                min(len(states), 16), thread_name_prefix=threads.pool("rollout-save", "fleet/rollout")
            ) as pool:
                list(pool.map(lambda item: self.save(*item), states.items()))

    def load(self, clusters: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The state saved in each of ``clusters`` that has one and could be read (others are logged); read
        from all clusters at once (one request timeout at most, whatever the number of frozen clusters)."""
        names = list(clusters)
        if not names:
            return {}
        with futures.ThreadPoolExecutor(
            min(len(names), 16), thread_name_prefix=threads.pool("rollout-load", "fleet/rollout")
        ) as pool:
            found = dict(zip(names, pool.map(self._load_one, names), strict=True))
        return {name: doc for name, doc in found.items() if doc is not None}

    def _load_one(self, cluster: str) -> dict[str, Any] | None:
        try:
            kube = self._connect(cluster)
        except errors.GitOpsError as e:
            log.warning("rollout state of cluster %s not read: %s", cluster, e)
            return None
        try:
            key = resources.ResourceKey("", "ConfigMap", self.cfg.sync.inventory_namespace, self.name())
            found = kube.get(key)
            text = ((found or {}).get("data") or {}).get(_KEY)
            doc = json.loads(text) if text else None
            return doc if isinstance(doc, dict) else None
        except (errors.ClusterError, ValueError) as e:
            log.warning("rollout state of cluster %s not read: %s", cluster, e)
            return None
        finally:
            kube.close()

    def _connect(self, cluster: str) -> connection.KubeCluster:
        timeout = self.cfg.sync.request_timeout
        return kubeconfig.connect(self.cfg.cluster(cluster), 1, timeout, connection.USER_AGENT)

"""Scale-out: several replicas of the agent share the clusters through Leases (``coordination.k8s.io/v1``) in a
home cluster, so that each cluster is reconciled by exactly one replica and a dead replica's clusters move to the
others within about one lease duration.

Every ``sharding.retryPeriod`` seconds a replica (:class:`Coordinator`, one thread):

1. lists the Leases of its instance in ``sharding.namespace`` (one request);
2. renews its member Lease ``<instance>-member-<hash of identity>``; the live members are those whose Lease
   changed within its ``leaseDurationSeconds``;
3. assigns every cluster to one live member by rendezvous hashing (highest random weight: each member scores
   ``sha256(cluster/member)``, the highest wins; Thaler and Ravishankar, 1998), so a member joining or leaving
   moves only the clusters it wins or held;
4. per cluster Lease ``<instance>-cluster-<cluster>``: renews the ones it holds and still wins, releases the ones
   it holds but no longer wins (after it stopped reconciling them), and acquires the ones it wins that are free
   or expired.

The rules are client-go's leader election, per cluster: a Lease is expired when its record has not changed for
``leaseDurationSeconds`` *as observed on this replica's own clock* (no clock is compared with another's);
acquiring or renewing is an update with the observed ``resourceVersion``, so of two replicas racing for one
Lease exactly one wins (the other gets 409 Conflict); a holder that could not renew for ``renewDeadline``
(shorter than the lease duration) stops reconciling the cluster before anyone may take it over. On shutdown the
Leases are released (holder cleared), so the others take over at their next check.

A sync running when its Lease is lost is cancelled before its next write (:meth:`Coordinator.guard` fences every
write, and the agent waits for the sync to end before the Lease is released).
Used by ``agent.runtime.fleet``.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from agent import config, threads
from agent.clusters import connection, kubeconfig
from reconcilers import errors

log = logging.getLogger(__name__)

ROLE_LABEL = "gitops-agent.io/lease"
"""Label of every Lease this module writes: ``member`` or ``cluster``."""
INSTANCE_LABEL = "gitops-agent.io/instance"
_API = "/apis/coordination.k8s.io/v1"
_TYPE = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease"}  # list items come without them


def owner(cluster: str, members: Iterable[str]) -> str | None:
    """The member that reconciles ``cluster`` among ``members`` (rendezvous hashing); None when there is none."""
    return max(members, key=lambda m: hashlib.sha256(f"{cluster}/{m}".encode()).digest(), default=None)


def _now() -> str:
    """A MicroTime (RFC 3339 with microseconds), as Lease times are written."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Coordinator:
    """The lease loop of one replica; ``on_change(owned)`` is called (from its thread) with the set of cluster
    names this replica may reconcile whenever that set changes."""

    def __init__(
        self,
        cfg: config.ShardingConfig,
        instance: str,
        cluster_names: Iterable[str],
        on_change: Callable[[set[str]], None],
    ) -> None:
        self.cfg = cfg
        self.instance = instance
        self.identity = cfg.identity
        self.cluster_names = list(cluster_names)
        self.on_change = on_change
        self.owned: set[str] = set()
        self.holders: dict[str, str | None] = {}
        self.members: list[str] = []
        self.error: str | None = None
        self._renewed: dict[str, float] = {}  # cluster -> monotonic time of the last successful acquire or renew
        self._observed: dict[str, tuple[str, float]] = {}  # Lease name -> (resourceVersion, first seen at)
        self._kube: connection.KubeCluster | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- names -----------------------------------------------------------------------------------------------
    def lease_name(self, cluster: str) -> str:
        """The Lease of ``cluster``."""
        return f"{self.instance}-cluster-{cluster}"

    @property
    def member_lease(self) -> str:
        """This replica's member Lease."""
        return f"{self.instance}-member-{hashlib.sha256(self.identity.encode()).hexdigest()[:12]}"

    # -- life cycle ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the lease loop (first round at once; thread ``leases``, owned by ``fleet/leases``)."""
        self._thread = threads.start("leases", "fleet/leases", self._run)

    def stop(self) -> None:
        """End the loop and release every Lease held (call after reconciles stopped)."""
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(self.cfg.retry_period + 30)
        held = sorted(self.owned)
        self._publish(set())
        if self._kube is None:
            return
        for name in [self.lease_name(c) for c in held] + [self.member_lease]:
            try:
                self._release(name)
            except errors.ClusterError as e:
                log.warning("sharding: could not release lease %s: %s", name, e)
        self._kube.close()

    def set_clusters(self, names: Iterable[str]) -> None:
        """The registered clusters changed (config reload)."""
        with self._lock:
            self.cluster_names = list(names)

    def status(self) -> dict[str, Any]:
        """For the status API: identity, live members, this replica's clusters, the last error."""
        with self._lock:
            return {
                "identity": self.identity,
                "members": list(self.members),
                "owned": sorted(self.owned),
                "error": self.error,
            }

    def guard(self, cluster: str) -> Callable[[], str | None]:
        """A write fence for ``cluster`` (a :data:`reconcilers.cancel.Guard`): asked before every write of its
        syncs and self-heal, it names why this replica may not write now: the Lease is not held, or was not
        renewed within ``renewDeadline`` on this replica's monotonic clock (which goes on while the process is
        frozen, so a replica resumed after SIGSTOP is fenced before its first write, not at the lease loop's next
        round; client-go's leader election takes the same view of a holder that could not renew)."""

        def fence() -> str | None:
            with self._lock:
                held = cluster in self.owned
            if not held:
                return f"lease of cluster {cluster} is not held by {self.identity}"
            age = time.monotonic() - self._renewed.get(cluster, 0.0)
            deadline = self.cfg.renew_deadline
            if age > deadline:
                return f"lease of cluster {cluster} not renewed for {age:.1f}s (renewDeadline {deadline:g}s)"
            return None

        return fence

    def holder(self, cluster: str) -> str | None:
        """The replica holding ``cluster``'s Lease, as last seen (None: nobody)."""
        with self._lock:
            return self.holders.get(cluster)

    # -- the loop --------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # a bug must not end sharding silently: keep the loop, drop what cannot be renewed
                log.exception("sharding: unexpected error")
            self._stop.wait(self.cfg.retry_period)

    def tick(self) -> None:
        """One round: list, renew the member Lease, then renew, release or acquire each cluster's Lease."""
        now = time.monotonic()
        try:
            if self._kube is None:
                agent = f"{connection.USER_AGENT} (replica {self.identity})"
                self._kube = kubeconfig.connect(self.cfg.home_cluster, 4, max(1.0, self.cfg.retry_period), agent)
            leases = self._list()
        except errors.ConfigError as e:
            self._failed(now, str(e))
            return
        except errors.ClusterError as e:
            self._failed(now, f"home cluster {self.cfg.home_cluster.name}: {e}")
            return
        self._observe(leases, now)
        errors_seen: list[str] = []
        try:
            self._hold(self.member_lease, leases.get(self.member_lease), "member")
        except errors.ClusterError as e:
            errors_seen.append(f"member lease: {e}")
        members = sorted(
            {self.identity}
            | {
                str(lease["spec"].get("holderIdentity"))
                for name, lease in leases.items()
                if lease["metadata"].get("labels", {}).get(ROLE_LABEL) == "member" and not self._expired(name, lease)
            }
        )
        with self._lock:
            names = list(self.cluster_names)
        owned = set(self.owned)
        holders: dict[str, str | None] = {}
        for cluster in names:
            name = self.lease_name(cluster)
            lease = leases.get(name)
            holder = str(lease["spec"].get("holderIdentity") or "") if lease else ""
            wins = owner(cluster, members) == self.identity
            try:
                if holder == self.identity and cluster in owned and wins:
                    self._hold(name, lease, "cluster")
                    self._renewed[cluster] = time.monotonic()
                elif holder == self.identity and not wins:
                    owned.discard(cluster)
                    self._publish(owned)  # stop reconciling first, then let go
                    self._release(name, lease)
                    holder = ""
                elif wins and (lease is None or not holder or self._expired(name, lease) or holder == self.identity):
                    self._hold(name, lease, "cluster")
                    self._renewed[cluster] = time.monotonic()
                    owned.add(cluster)
                    holder = self.identity
            except errors.ApiError as e:
                if e.status == 409:  # another replica changed the Lease since we listed it: it is not ours now
                    if cluster in owned:
                        log.warning("sharding: lease %s changed by another replica: %s", name, e)
                    owned.discard(cluster)
                else:
                    errors_seen.append(f"lease {name}: {e}")
            except errors.ClusterError as e:
                errors_seen.append(f"lease {name}: {e}")
            if cluster in owned and time.monotonic() - self._renewed.get(cluster, 0.0) > self.cfg.renew_deadline:
                log.warning("sharding: lease of cluster %s not renewed within renewDeadline: stopping", cluster)
                owned.discard(cluster)
            holders[cluster] = holder or None
        owned &= set(names)
        error = "; ".join(errors_seen) or None
        if error and error != self.error:  # e.g. the Leases' namespace does not exist: say so once, not every round
            log.warning("sharding: %s", error)
        with self._lock:
            self.members, self.holders = members, holders
            self.error = error
        self._publish(owned)

    def _failed(self, now: float, message: str) -> None:
        """The home cluster could not be read: keep clusters only while their renewDeadline allows."""
        log.warning("sharding: %s", message)
        owned = {c for c in self.owned if now - self._renewed.get(c, 0.0) <= self.cfg.renew_deadline}
        with self._lock:
            self.error = message
        self._publish(owned)

    def _publish(self, owned: set[str]) -> None:
        """Tell the agent when the set of clusters it may reconcile changed (only the loop thread, then stop(),
        call this)."""
        with self._lock:
            changed = owned != self.owned
            self.owned = set(owned)
        if changed:
            log.info("sharding: %s reconciles %s", self.identity, ", ".join(sorted(owned)) or "no cluster")
            self.on_change(set(owned))

    def _expired(self, name: str, lease: dict[str, Any]) -> bool:
        """True when ``lease`` is free or its record has not changed for its duration, on our clock."""
        if not lease["spec"].get("holderIdentity"):
            return True
        _, seen = self._observed.get(name, ("", time.monotonic()))
        duration = float(lease["spec"].get("leaseDurationSeconds") or self.cfg.lease_duration)
        return time.monotonic() - seen > duration

    def _observe(self, leases: dict[str, dict[str, Any]], now: float) -> None:
        for name, lease in leases.items():
            rv = str(lease["metadata"].get("resourceVersion", ""))
            if self._observed.get(name, ("", 0.0))[0] != rv:
                self._observed[name] = (rv, now)

    # -- requests --------------------------------------------------------------------------------------------
    def _path(self, name: str = "") -> str:
        return f"{_API}/namespaces/{self.cfg.namespace}/leases" + (f"/{name}" if name else "")

    def _list(self) -> dict[str, dict[str, Any]]:
        assert self._kube is not None
        found = self._kube.request("GET", self._path(), query=[("labelSelector", f"{INSTANCE_LABEL}={self.instance}")])
        return {str(item["metadata"]["name"]): item for item in found.get("items") or []}

    def _hold(self, name: str, lease: dict[str, Any] | None, role: str) -> None:
        """Create, take over or renew Lease ``name`` for this replica. Raises ApiError 409 when another replica
        changed it since it was listed."""
        assert self._kube is not None
        now = _now()
        duration = round(self.cfg.lease_duration)
        spec = {"holderIdentity": self.identity, "leaseDurationSeconds": duration, "renewTime": now}
        if lease is None:
            body = {
                **_TYPE,
                "metadata": {
                    "name": name,
                    "namespace": self.cfg.namespace,
                    "labels": {INSTANCE_LABEL: self.instance, ROLE_LABEL: role},
                },
                "spec": {**spec, "acquireTime": now, "leaseTransitions": 0},
            }
            created = self._kube.request("POST", self._path(), body=body)
        else:
            old = lease["spec"]
            taking = old.get("holderIdentity") != self.identity
            new_spec = {**old, **spec}
            if taking:
                new_spec["acquireTime"] = now
                new_spec["leaseTransitions"] = int(old.get("leaseTransitions") or 0) + 1
            created = self._kube.request("PUT", self._path(name), body={**lease, **_TYPE, "spec": new_spec})
            if taking:
                previous = old.get("holderIdentity") or "nobody"
                log.info("sharding: %s took lease %s from %s", self.identity, name, previous)
        self._observed[name] = (str(created["metadata"].get("resourceVersion", "")), time.monotonic())

    def _release(self, name: str, lease: dict[str, Any] | None = None) -> None:
        """Clear the holder of Lease ``name`` when it is still ours (as client-go's ReleaseOnCancel)."""
        assert self._kube is not None
        if lease is None:
            try:
                lease = self._kube.request("GET", self._path(name))
            except errors.ApiError as e:
                if e.not_found:
                    return
                raise
        assert lease is not None
        if lease["spec"].get("holderIdentity") != self.identity:
            return
        spec = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": _now()}
        self._kube.request("PUT", self._path(name), body={**lease, **_TYPE, "spec": spec})

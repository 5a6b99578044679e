"""Operators' levers on a running agent: suspend and resume an app, a cluster, or an app on one cluster; a sync
an operator asks for (one app, or a cluster's); rollback (pin an app on one cluster to an earlier revision of its
source; it keeps syncing at the pin until unpinned).

Suspending writes a hold to each cluster concerned (:mod:`agent.sync.holds`: kept there, so a restart, a
reload or another replica keeps it), records it in the fleet's :class:`holds.Book` at once (the write gate reads
it: :class:`agent.sync.gate.HoldRule`), emits ``Suspended``/``Resumed`` events (the audit trail) and triggers a
sync of those clusters, so their status shows the hold (a suspended app's sync runs as a dry run: its drift is
still shown). A pin is kept the same way (``Pinned``/``Unpinned`` events). Each cluster is written with its own
connection, bounded by ``sync.requestTimeout``, the clusters one after the other with no lock held; a cluster that
cannot be written is named in the answer and the others are written. Called by :mod:`agent.api.levers`.
"""

from __future__ import annotations

import dataclasses
import logging

from agent import apps
from agent.clusters import connection, kubeconfig
from agent.runtime import events, fleet
from agent.sync import gate, holds
from reconcilers import errors

log = logging.getLogger(__name__)


class Refused(errors.GitOpsError):
    """A lever that cannot be pulled as asked (a revision the source does not have, a source without history)."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a suspend or resume did: the clusters written (``done``) and those that could not be (``failed``:
    cluster -> why)."""

    done: tuple[str, ...]
    failed: dict[str, str]

    def json(self) -> dict[str, object]:
        """``{"clusters", "failed"}`` for the API."""
        return {"clusters": list(self.done), "failed": self.failed}


def targets(agent: fleet.Fleet, app: str | None, cluster: str | None) -> list[str]:
    """The clusters a hold of ``app`` (None: the whole cluster) on ``cluster`` (None: everywhere the app is placed)
    is written to. Raises ConfigError naming an unknown app or cluster, or an app not placed on that cluster."""
    cfg = agent.cfg
    if app is None:
        if cluster is None:
            raise errors.ConfigError("name an app, a cluster, or both")
        return [cfg.cluster(cluster).name]
    if not any(a.name == app for a in cfg.apps) and not any(app in c.paths for c in cfg.clusters):
        raise errors.ConfigError(f"no app {app!r} in the config")
    placed = [c.name for c in cfg.clusters if any(u.name == app for u in apps.units(cfg, c))]
    if cluster is not None:
        name = cfg.cluster(cluster).name
        if name not in placed:
            raise errors.ConfigError(f"app {app!r} is not placed on cluster {name!r}")
        return [name]
    return placed


def refused_by_window(agent: fleet.Fleet, app: str, clusters: list[str]) -> str:
    """Why an operator's sync of ``app`` on ``clusters`` is refused by a sync window now (``""``: it is not):
    ``cluster a: sync window: deny ... is open until ...``."""
    for name in clusters:
        unit = next((u for u in apps.units(agent.cfg, agent.cfg.cluster(name)) if u.name == app), None)
        if unit is None:
            continue
        decision = agent.gate.ask(unit, gate.SyncKind.REQUESTED)
        if not decision.allowed and decision.rule == "syncWindow":
            return f"cluster {name}: {decision.reason}"
    return ""


def suspend(
    agent: fleet.Fleet, app: str | None, cluster: str | None, *, by: str, reason: str = "", resume: bool = False
) -> Outcome:
    """Suspend (``resume``: resume) ``app`` (None: the whole ``cluster``) on ``cluster`` (None: every cluster it
    is placed on), as ``by`` with ``reason``. Raises ConfigError for an unknown app or cluster."""
    names = targets(agent, app, cluster)
    key = app or holds.CLUSTER
    hold = None if resume else holds.Hold(by, holds.now(), reason, key)
    done: list[str] = []
    failed: dict[str, str] = {}
    for name in names:
        try:
            kube = kubeconfig.connect(agent.cfg.cluster(name), 1, agent.cfg.sync.request_timeout, connection.USER_AGENT)
        except errors.GitOpsError as e:
            failed[name] = str(e)
            continue
        try:
            holds.write(kube, agent.cfg, key, hold)
        except errors.ClusterError as e:
            failed[name] = str(e)
            continue
        finally:
            kube.close()
        agent.book.change(name, key, hold)
        done.append(name)
        what = f"app {app}" if app else "cluster"
        verb = "Resumed" if resume else "Suspended"
        message = f"{what} {verb.lower()} by {by}" + (f": {reason}" if reason and not resume else "")
        agent.events.emit(events.Event(verb, name, "", message, path=app or ""))
        log.info("cluster %s: %s", name, message)
        agent.trigger_now(name, reason=f"{verb.lower()} by {by}")
    return Outcome(tuple(done), failed)


def rollback(
    agent: fleet.Fleet, app: str, cluster: str, to: str | None, *, by: str, until_new: bool = False
) -> holds.Pin | None:
    """Pin ``app`` on ``cluster`` to revision ``to`` of its source (a SHA, a tag or a branch that is still there),
    as ``by``; auto-sync goes on at the pin until :func:`rollback` with ``to=None`` (unpin) or, ``until_new``, until
    the source's head moves past its head now. Returns the pin (None when unpinned). Raises ConfigError for an
    unknown app or cluster, :class:`Refused` for a revision not in the source or a source that has no revision
    yet, and ClusterError when the cluster cannot be written."""
    (name,) = targets(agent, app, cluster)
    unit = next(u for u in apps.units(agent.cfg, agent.cfg.cluster(name)) if u.name == app)
    pin = None
    if to is not None:
        source = agent.sourcing.get(unit.source)
        if source is None or source.last_good is None:
            raise Refused(f"source {unit.source} has no revision yet: nothing to roll back to")
        try:
            found = source.resolve(to)
        except errors.FetchError as e:
            raise Refused(f"cannot roll app {app} back to {to!r}: {e}") from None
        pin = holds.Pin(app, found.sha, to, by, holds.now(), until_new, source.last_good.sha)
    kube = kubeconfig.connect(agent.cfg.cluster(name), 1, agent.cfg.sync.request_timeout, connection.USER_AGENT)
    try:
        holds.write_pin(kube, agent.cfg, app, pin)
    finally:
        kube.close()
    agent.book.change_pin(name, app, pin)
    if pin is not None:
        message = f"app {app} pinned to {pin.sha[:12]} ({to}) by {by}" + (", until a new revision" if until_new else "")
        agent.events.emit(events.Event("Pinned", name, pin.sha, message, path=app))
    else:
        agent.events.emit(
            events.Event("Unpinned", name, "", f"app {app} unpinned by {by}: back to its source's head", path=app)
        )
    agent.trigger_now(name, reason=f"{'rollback' if pin else 'unpin'} of {app} by {by}", requested=True, app=app)
    return pin

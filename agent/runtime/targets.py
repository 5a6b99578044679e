"""What each cluster should be at: the revision of every source its apps read, rollout targets and pins applied.

:func:`revisions_for` answers for a cluster's next sync: each source's last good revision; under ``rollout`` the
fleet rollout's target for the primary source (left out until the rollout reached the cluster: its ``paths``
wait); each app's pin (``@<app>``) from its ``ref`` (resolved in its source's clone), then from its own rollout;
and an operator's rollback pin, which wins over an app's rollout (:mod:`agent.sync.holds`). :func:`wanted_trees`
maps a sync's revisions to the source each is read from. Pure functions over what the fleet holds; used by
:class:`agent.runtime.fleet.Fleet`.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent import apps, config
from agent.runtime import approllouts, rollout, sourcing
from agent.sync import holds
from reconcilers import errors, resources


def revisions_for(
    cfg: config.AgentConfig,
    cluster: str,
    sources: sourcing.Sources,
    fleet_rollout: rollout.Rollout | None,
    app_rollouts: approllouts.AppRollouts,
    book: holds.Book,
) -> dict[str, resources.Revision]:
    """The revision of each source ``cluster``'s apps read, and each pinned app's (see the module doc). Empty when
    there is nothing to sync yet (no source has a revision, or the cluster is not in ``cfg``)."""
    try:
        found = cfg.cluster(cluster)
    except errors.ConfigError:
        return {}
    out = {}
    for name in apps.sources_of(cfg, found):
        source = sources.get(name)
        revision = source.last_good if source else None
        if fleet_rollout and name == sources.primary_name:
            revision = fleet_rollout.target(cluster)
        if revision is not None:
            out[name] = revision
    units = apps.placement(cfg, found).units  # cached per config: this runs for every sync and status poll
    out.update(apps.ref_pins(units, lambda source, ref: _resolved(sources, source, ref)))
    out.update(app_rollouts.pins(found))
    held = book.pins(cluster)
    if held:  # an operator's rollback wins over an app's rollout
        placed = {u.name: u.source for u in units}
        out.update({apps.PIN_PREFIX + app: r for app, r in holds.pinned(held, placed, out).items()})
    return out if any(r.sha for r in out.values()) else {}


def _resolved(sources: sourcing.Sources, source: str, ref: str) -> resources.Revision | None:
    """``ref`` in the clone of ``source`` (no fetch), or None when it does not hold it."""
    found = sources.get(source)
    if found is None or found.last_good is None:
        return None
    try:
        return found.resolve(ref)
    except errors.FetchError:
        return None


def last_good(cfg: config.AgentConfig, cluster: str, sources: sourcing.Sources) -> dict[str, resources.Revision]:
    """The last good revision of each source ``cluster``'s apps read (no rollout target or pin applied)."""
    try:
        found = apps.sources_of(cfg, cfg.cluster(cluster))
    except errors.ConfigError:
        return {}
    by_name = {n: sources.get(n) for n in found}
    return {n: r for n, s in by_name.items() if s is not None and (r := s.last_good) is not None}


def wanted_trees(
    cfg: config.AgentConfig, revisions: Mapping[str, resources.Revision]
) -> dict[str, tuple[str, resources.Revision]]:
    """Each of a sync's ``revisions`` (by source name, or ``@<app>`` for a pinned app) with the source it is read
    from (a pinned path's app reads the source named ``default``); a pin the rollout has not brought to the
    cluster (:data:`agent.apps.NOT_REACHED`), or an app's ``ref`` its clone does not hold, has no tree."""
    sources = {apps.PIN_PREFIX + a.name: a.source for a in cfg.apps}
    pinned = apps.PIN_PREFIX
    return {k: (sources.get(k, "default" if k.startswith(pinned) else k), r) for k, r in revisions.items() if r.sha}

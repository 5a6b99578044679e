"""Apps placed on clusters: the (app, cluster) units the runtime syncs, each on its own.

:func:`units` turns the config into the units of one cluster: every app whose placement selects the cluster
(``apps[].clusters``), then one unit per entry of the cluster's ``paths`` (the sugar form, from the source named
``default``), in dependency order (``dependsOn`` first, config order otherwise). A unit carries everything one
sync of it needs, with the app's overrides of the top-level ``sync`` settings already resolved. Used by
:mod:`agent.sync.cluster`, :mod:`agent.runtime.fleet` and :mod:`agent.cli`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Callable, Mapping

from agent import config
from reconcilers import resources

PIN_PREFIX = "@"
"""In a sync's revisions (source name -> revision), ``@<app>`` pins that app to a revision of its source (its
rollout's target on the cluster), or to :data:`NOT_REACHED`."""
NOT_REACHED = resources.Revision("", "(not reached by its rollout)")
"""The pin of an app whose rollout has not reached the cluster yet: the app is not synced there."""


def unresolved(unit: Unit) -> resources.Revision:
    """The pin of an app whose ``ref`` its source's clone does not hold (yet): the app is not synced there, and
    says why (a revision without a SHA, like :data:`NOT_REACHED`)."""
    return resources.Revision("", f"ref {unit.ref} of source {unit.source} is not fetched (yet)")


APP_INVENTORY_PREFIX = "app:"
"""An app's inventory is keyed ``app:<name>``; a ``paths`` entry's by its path, as before apps existed, so
inventories written by earlier versions stay valid."""
APP_SET_INVENTORY_PREFIX = "appset:"
"""A generated app's inventory is keyed ``appset:<app set>/<name>``: once the app is no longer generated, its
inventory still says which app set made it (see :mod:`agent.sync.removed`)."""


def inventory_key(app: config.AppConfig) -> str:
    """The key of ``app``'s inventory (see :data:`APP_INVENTORY_PREFIX`, :data:`APP_SET_INVENTORY_PREFIX`)."""
    if app.app_set is not None:
        return f"{APP_SET_INVENTORY_PREFIX}{app.app_set}/{app.name}"
    return APP_INVENTORY_PREFIX + app.name


def parse_inventory_key(key: str) -> tuple[str | None, str]:
    """(app set or None, app name or path) of an inventory key."""
    if key.startswith(APP_SET_INVENTORY_PREFIX):
        app_set, _, name = key.removeprefix(APP_SET_INVENTORY_PREFIX).partition("/")
        return app_set, name
    return None, key.removeprefix(APP_INVENTORY_PREFIX)


_NO_RETRY = config.Retry()


_ALL_FILES = config.DirectoryOptions()


@dataclasses.dataclass(frozen=True)
class Unit:
    """One app on one cluster.

    ``name``: the app's name (a ``paths`` entry: its path); ``source``: the source's name; ``path`` in it; ``ref``:
    its own revision of the source (None: the source's);
    ``inventory``: the key of its inventory; ``namespace``: for namespaced objects without one;
    ``create_namespace``; ``depends_on``: app names; ``prune``, ``self_heal``, ``wait``, ``auto``, ``retry``:
    resolved sync settings;
    ``ignore``: ignore rules (global, cluster, app); ``namespaces``: allow-list patterns (empty: anywhere);
    ``service_account``: ``namespace/name`` to impersonate (None: the agent's own identity); ``substitute`` and
    ``decrypt`` (SOPS); ``from_paths``: True for the ``paths`` sugar; ``helm``: how its chart renders
    (``values_base``: the directory of its source its ``valuesFiles`` are relative to: a chart source's chart);
    ``jsonnet``: how its jsonnet files render; ``kustomize``: what kustomize changes in its rendered objects;
    ``directory``: which files of its path are read;
    ``cluster`` and ``labels``: the cluster's name and labels (for
    per-cluster values files); ``render_timeout``:
    seconds one render of it may take (the app's ``renderTimeout``, else its source's); ``app_of_apps``: the Argo
    CD and Flux objects it renders are its child apps, never applied (:mod:`agent.appsets.nested`);
    ``variables`` and ``variables_from``: the app's own values of its ``${NAME}`` substitution (``substitute`` is
    then on).
    """

    name: str
    source: str
    path: str
    inventory: str
    namespace: str
    ref: str | None = None
    create_namespace: bool = False
    depends_on: tuple[str, ...] = ()
    prune: bool = False
    self_heal: bool = False
    wait: bool = False
    auto: bool = True
    retry: config.Retry = _NO_RETRY
    recreate: bool = False
    ignore: tuple[config.IgnoreDifference, ...] = ()
    namespaces: tuple[str, ...] = ()
    service_account: str | None = None
    substitute: bool = False
    decrypt: bool = False
    from_paths: bool = False
    helm: config.HelmOptions | None = None
    values_base: str = ""
    jsonnet: config.JsonnetOptions | None = None
    kustomize: config.KustomizeOptions | None = None
    directory: config.DirectoryOptions = _ALL_FILES
    cluster: str = ""
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    render_timeout: float = 60.0
    app_of_apps: bool = False
    variables: Mapping[str, str] = dataclasses.field(default_factory=dict)
    variables_from: tuple[config.VariablesFrom, ...] = ()

    @property
    def impersonate(self) -> str | None:
        """The user every request of this unit impersonates (``system:serviceaccount:<ns>:<name>``), or None."""
        if not self.service_account:
            return None
        namespace, _, name = self.service_account.partition("/")
        return f"system:serviceaccount:{namespace}:{name}"


def ref_pins(
    found: list[Unit], resolve: Callable[[str, str], resources.Revision | None]
) -> dict[str, resources.Revision]:
    """The pin (``@<app>``) of each unit of ``found`` with a ``ref``: ``resolve(source, ref)``, or
    :func:`unresolved` when that gives None."""
    return {PIN_PREFIX + u.name: resolve(u.source, u.ref) or unresolved(u) for u in found if u.ref is not None}


def chart_dir(chart: config.ChartRef | None) -> str:
    """Where a chart source's tree holds ``chart`` (:mod:`agent.sources.charts` writes it there):
    ``<name>@<8 hex digits of its version range>/<name>`` (two apps may ask one chart for different ranges)."""
    assert chart is not None
    digest = hashlib.sha256((chart.version or "").encode()).hexdigest()[:8]
    return f"{chart.name}@{digest}/{chart.name}"


def placed(cfg: config.AgentConfig, cluster: config.ClusterConfig) -> list[config.AppConfig]:
    """The apps whose placement selects ``cluster``, in config order."""
    return [a for a in cfg.apps if a.clusters.selects(cluster.name, cluster.labels)]


def units(cfg: config.AgentConfig, cluster: config.ClusterConfig) -> list[Unit]:
    """The units of ``cluster``: its placed apps and its ``paths``, dependencies before the apps that need
    them (a stable topological order; the config rejects cycles)."""
    sync = cfg.sync
    sources = cfg.all_sources()

    def render_timeout(source: str, own: float | None = None) -> float:
        found = sources.get(source)
        return own if own is not None else found.render_timeout if found is not None else 60.0

    found = [
        Unit(
            name=a.name,
            source=a.source,
            path=a.path if a.path is not None else chart_dir(a.chart),
            values_base=chart_dir(a.chart) if a.chart is not None else "",
            inventory=inventory_key(a),
            namespace=a.namespace or cluster.namespace,
            ref=a.ref,
            create_namespace=a.create_namespace,
            depends_on=a.depends_on,
            prune=sync.prune if a.sync.prune is None else a.sync.prune,
            self_heal=sync.self_heal if a.sync.self_heal is None else a.sync.self_heal,
            wait=sync.wait if a.sync.wait is None else a.sync.wait,
            auto=sync.auto if a.sync.auto is None else a.sync.auto,
            retry=sync.retry if a.sync.retry is None else a.sync.retry,
            recreate=sync.recreate if a.sync.recreate is None else a.sync.recreate,
            ignore=(*cfg.ignore_differences, *cluster.ignore_differences, *a.ignore_differences),
            namespaces=a.namespaces,
            service_account=a.service_account,
            substitute=a.substitute or bool(a.variables) or bool(a.variables_from),
            decrypt=a.decryption.sops,
            helm=a.helm,
            jsonnet=a.jsonnet,
            kustomize=a.kustomize,
            directory=a.directory,
            cluster=cluster.name,
            labels=cluster.labels,
            render_timeout=render_timeout(a.source, a.render_timeout),
            app_of_apps=a.app_of_apps,
            variables=a.variables,
            variables_from=a.variables_from,
        )
        for a in placed(cfg, cluster)
    ]
    found += [
        Unit(
            name=p,
            source="default",
            path=p,
            inventory=p,
            namespace=cluster.namespace,
            prune=sync.prune,
            self_heal=sync.self_heal,
            wait=sync.wait,
            auto=sync.auto,
            retry=sync.retry,
            recreate=sync.recreate,
            ignore=(*cfg.ignore_differences, *cluster.ignore_differences),
            substitute=cluster.substitute,
            decrypt=cluster.decryption.sops,
            from_paths=True,
            cluster=cluster.name,
            labels=cluster.labels,
            render_timeout=render_timeout("default"),
        )
        for p in cluster.paths
    ]
    return _ordered(found)


def _ordered(found: list[Unit]) -> list[Unit]:
    by_name = {u.name: u for u in found}
    out: list[Unit] = []
    seen: set[str] = set()

    def visit(u: Unit) -> None:
        if u.name in seen:
            return
        seen.add(u.name)
        for d in u.depends_on:
            if d in by_name:
                visit(by_name[d])
        out.append(u)

    for u in found:
        visit(u)
    return out


@dataclasses.dataclass(frozen=True)
class Placement:
    """A cluster's units under one config (:func:`units`), by name, and the sources they read (their own, and
    those their Helm values come from, in first-use order). Shared: do not change it."""

    units: list[Unit]
    by_name: dict[str, Unit]
    sources: tuple[str, ...]


def placement(cfg: config.AgentConfig, cluster: config.ClusterConfig) -> Placement:
    """``cluster``'s :class:`Placement` under ``cfg``, worked out once per config and cluster object (the status
    asks for every cluster on every poll; a config is never changed once loaded, a reload makes a new one)."""
    with _PLACEMENTS_LOCK:
        kept = _PLACEMENTS.get(cluster.name)
    if kept is not None and kept[0] is cfg and kept[1] is cluster:
        return kept[2]
    found = units(cfg, cluster)
    names = []
    for u in found:
        names.append(u.source)
        names += [f.source for f in u.helm.values_from if f.source] if u.helm else []
    made = Placement(found, {u.name: u for u in found}, tuple(dict.fromkeys(names)))
    with _PLACEMENTS_LOCK:
        _PLACEMENTS[cluster.name] = (cfg, cluster, made)
    return made


_PLACEMENTS: dict[str, tuple[config.AgentConfig, config.ClusterConfig, Placement]] = {}  # by cluster name
_PLACEMENTS_LOCK = threading.Lock()


def sources_of(cfg: config.AgentConfig, cluster: config.ClusterConfig) -> list[str]:
    """The names of the sources ``cluster``'s units read (their own, and those their Helm values come from), in
    first-use order (a new list; see :func:`placement`)."""
    return list(placement(cfg, cluster).sources)


def select(found: list[Unit], app: str | None) -> list[Unit]:
    """``found`` narrowed to the unit named ``app`` (all when None); an unknown name gives []."""
    return [u for u in found if app is None or u.name == app]

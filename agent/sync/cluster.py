"""One sync of one cluster: the wing's entry point.

:class:`ClusterSync` keeps a cluster's :class:`agent.sync.session.Session` (connection, live cache, watches,
self-heal) and :class:`agent.sync.desired.DesiredState` (rendering, decryption, substitution, masking) between
syncs; :meth:`ClusterSync.reconcile` syncs the cluster's apps from the sources' checkouts
(:mod:`agent.sync.appsync`, each app its own ``reconcilers.engine.reconcile``), every app asking the write gate
(:mod:`agent.sync.gate`) before its first write. It never raises: every failure becomes a ``ReconcileResult`` with
``error`` and ``error_kind`` set, so a failing cluster never stops the others, and a failing app never stops the
cluster's other apps. Created, owned and closed by one :class:`agent.runtime.worker.Worker` (or by
:mod:`agent.runtime.oneshot`); never imports :mod:`agent.runtime` (an import-linter contract).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import pathlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent import apps, celhealth, config
from agent.clusters import cache, connection
from agent.clusters import inventories as inventories_
from agent.sync import appresults, appsync, context, desired, healthwait, holds, keys, removed, selfheal
from agent.sync import drift as drift_
from agent.sync import gate as gate_
from agent.sync import memory as memory_
from agent.sync import options as options_
from agent.sync import session as session_
from agent.sync import view as view_
from reconcilers import cancel as cancel_
from reconcilers import client, engine, errors, health, resources

log = logging.getLogger(__name__)

ReconcileResult = engine.ReconcileResult


class ClusterSync:
    """Syncs one cluster; with ``watch`` its live cache follows the cluster between syncs, and with
    ``cfg.sync.selfHeal`` (and ``watch``) drifted objects are re-applied as soon as a watch event shows them.
    ``gate`` is asked for every app before its first write and by self-heal before each correction; ``book``
    holds the cluster's holds (suspended apps, pins), read again from the cluster at the start of each sync;
    ``on_retry`` is told the status of each request the API server asked to send again later (metrics)."""

    def __init__(
        self,
        cfg: config.AgentConfig,
        cluster: config.ClusterConfig,
        *,
        watch: bool = False,
        guard: cancel_.Guard | None = None,
        on_event: selfheal.OnEvent | None = None,
        on_retry: Callable[[int], None] | None = None,
        gate: gate_.Gate = gate_.OPEN,
        book: holds.Book | None = None,
    ) -> None:
        self.cfg = cfg
        self.cluster = cluster
        self.gate = gate
        self.book = book
        self.watch = watch
        self.guard = guard
        self.rules = celhealth.rules(cfg.health_checks)
        self.session = session_.Session(
            cfg, cluster, watch=watch, guard=guard, on_event=on_event, on_retry=on_retry, rules=self.rules,
            refused_heal=self._refused_heal, heal_client=self._heal_client,
        )  # fmt: skip
        self.memory = memory_.SyncMemory(keys.config_digest(cfg))
        """What each sync leaves for the next, keyed by content (changed under ``_lock``, by the sync's thread)."""
        self.desired = desired.DesiredState(
            cfg, self.session.facts, self.session.discovery_generation, self.memory, self.session.read_now
        )
        self._lock = threading.Lock()
        self._retries_before = 0  # the connection's retries when the sync in flight began

    # -- the session's parts, as the worker, the status and the tests read them ------------------------------------
    @property
    def kube(self) -> connection.KubeCluster | None:
        return self.session.kube

    @property
    def live(self) -> cache.LiveCache | None:
        return self.session.live

    @property
    def healer(self) -> selfheal.Healer | None:
        return self.session.healer

    @property
    def drift(self) -> drift_.DriftMonitor | None:
        return self.session.drift

    @property
    def inventories(self) -> inventories_.InventoryWatch | None:
        return self.session.inventories

    def _connect(self) -> tuple[connection.KubeCluster, cache.LiveCache]:
        return self.session.connect()

    def reconcile(
        self,
        revisions: Mapping[str, resources.Revision] | resources.Revision,
        trees: Mapping[str, pathlib.Path] | pathlib.Path,
        *,
        app: str | None = None,
        dry_run: bool = False,
        force_prune: bool = False,
        prune_orphans: bool = False,
        wait: bool | None = None,
        cancel: cancel_.Token | None = None,
        kind: Callable[[str], gate_.SyncKind] = lambda app: gate_.SyncKind.REQUESTED,
        selected: Mapping[str, Sequence[resources.ResourceKey]] | None = None,
    ) -> ReconcileResult:
        """Reconcile the cluster's apps (:mod:`agent.sync.appsync`; with ``app``, that app only) to
        ``revisions`` (source name -> revision; a lone revision is the source named ``default``'s), whose trees
        are at ``trees``; with ``wait`` (default: each app's ``sync.wait``) each app then waits up to
        ``sync.timeout`` (seconds) for its objects to be Healthy. ``cancel`` stops the sync before its next write
        and ends the health waits (``error_kind=cancelled``). ``kind(app)``: what kind of sync this is for each
        app, for the write gate (default: requested by an operator). ``selected``: app -> the objects a selective
        sync of it writes (Argo CD's selective sync: no hook, no prune; a selected object the app does not render
        fails the app with a config error). Never raises: a failing app fails alone (its
        result in ``apps``), a cluster that cannot be reached fails the whole result.

        Values substituted for ``${VAR}`` or decrypted are masked (``***``) in everything the result carries."""
        if isinstance(revisions, resources.Revision):  # one revision and tree: the source named default
            revisions = {"default": revisions}
        if isinstance(trees, pathlib.Path):
            trees = {"default": trees}
        token = cancel or cancel_.Token(self.guard)
        with self._lock:
            started = datetime.datetime.now(datetime.UTC)
            t0 = time.monotonic()
            name = self.cluster.name
            revision = revisions.get("default") or next(
                (r for k, r in revisions.items() if r.sha and not k.startswith(apps.PIN_PREFIX)), None
            )

            def failed(kind: engine.ErrorKind, message: str, found: engine.Problem | None = None) -> ReconcileResult:
                log.error("%s", message if message.startswith(f"cluster {name}") else f"cluster {name}: {message}")
                problem = dataclasses.replace(found, message=message) if found is not None else None
                return ReconcileResult(
                    name, revision, (), started, time.monotonic() - t0, dry_run, message, kind, problem=problem
                )

            units = self._units()
            if app is not None and not apps.select(units, app):
                return failed(engine.ErrorKind.CONFIG, f"no app {app!r} on cluster {name}")
            result: ReconcileResult | None = None
            for watcher in (self.healer, self.drift):
                if watcher is not None:
                    watcher.begin_reconcile()
            try:
                kube, live = self.session.connect()
                kube.token = token  # a Retry-After wait ends with this sync (reset in finally)
                if self.book is not None:
                    self.book.replace(name, holds.read(kube, self.cfg))
                self._retries_before = sum(kube.retries.values())
                result = self._sync(
                    units, revisions, trees, token, kube, live, revision, t0, app=app, dry_run=dry_run,
                    force_prune=force_prune, prune_orphans=prune_orphans, wait=wait, kind=kind,
                    selected={a: tuple(keys) for a, keys in (selected or {}).items()},
                )  # fmt: skip
            except errors.GitOpsError as e:
                found = engine.problem(e, name)
                message = found.message if found.kind is engine.ErrorKind.CANCELLED else self.mask(found.message)
                return failed(found.kind, message, found)
            except Exception as e:  # a bug: report it, never let it stop the other clusters
                log.exception("cluster %s: unexpected error", name)
                return failed(engine.ErrorKind.INTERNAL, self.mask(f"internal error: {type(e).__name__}: {e}"))
            finally:
                if self.kube is not None:
                    self.kube.token = None
                heals = {u.name for u in units if u.self_heal and self.gate.ask(u, gate_.SyncKind.SELF_HEAL).allowed}
                if self.healer:
                    self.healer.update(_healed_part(result, units, heals))
                if self.drift:
                    self.drift.update(
                        result, drift_.watched_apps((u.name, u.name in heals, u.impersonate) for u in units)
                    )
            counts = ", ".join(f"{v} {k}" for k, v in result.counts.items() if v)
            health_note = f"; health {result.health.value}: {result.health_message}" if result.health else ""
            error_note = f"; error: {result.error}" if result.error else ""
            short = revision.short if revision else "none"
            log.info("cluster %s: revision %s: %s%s%s", name, short, counts, health_note, error_note)
            return result

    def _sync(
        self,
        units: list[apps.Unit],
        revisions: Mapping[str, resources.Revision],
        trees: Mapping[str, pathlib.Path],
        token: cancel_.Token,
        kube: connection.KubeCluster,
        live: cache.LiveCache,
        revision: resources.Revision | None,
        t0: float,
        *,
        app: str | None,
        dry_run: bool,
        force_prune: bool,
        prune_orphans: bool,
        wait: bool | None,
        kind: Callable[[str], gate_.SyncKind],
        selected: Mapping[str, tuple[resources.ResourceKey, ...]],
    ) -> ReconcileResult:
        """The sync proper (:func:`appsync.sync_units`) and what it leaves for the next one; ``revision``: the
        cluster's main revision, ``t0``: when the sync began (``time.monotonic()`` seconds). Raises GitOpsError
        when the cluster cannot be reached."""
        memory = self.memory
        ctx = context.Context(
            self.cfg,
            self.cluster,
            kube,
            live,
            lambda u: self._options(
                u, dry_run=dry_run, force_prune=force_prune, prune_orphans=prune_orphans, rules=self.rules
            ),
            self.desired.load,
            self._wait_healthy,
            self.mask,
            dry_run,
            wait,
            self.watch,
            options_.prune_options(self.cfg, force=force_prune, orphans=prune_orphans),
            dict(memory.synced),
            dict(memory.lasts),
            claims=memory.claims,
            proof=memory.proof,
            watched=self._watched if self.inventories else None,
            admit=_decided(self.gate, kind),
            config=memory.config,
            digest=memory.digest,
            selected=selected,
        )
        found, orphaned = appsync.sync_units(ctx, units, revisions, trees, token, only=app)
        if not dry_run:
            synced: dict[str, str] = {}
            bad: set[str] = set()
            for r in found:
                if not r.ok:
                    bad.add(r.app)
                elif r.revision and not r.held:
                    synced[r.app] = r.revision.sha
            memory.synced = synced
            if bad or ctx.remember:
                kept = {n: v for n, v in memory.lasts.items() if n not in bad}
                memory.lasts = {**kept, **ctx.remember}
        memory.forget_except(u.name for u in units)  # apps no longer placed here
        masked = [self.desired.masked(r) for r in found]
        result = appresults.aggregate(self.cluster.name, revision, masked, orphaned, t0, memory.aggregated)
        if not dry_run:
            memory.aggregated = result
        return result

    def retry_of(self, app: str) -> config.Retry | None:
        """App ``app``'s retry settings on this cluster (None when it is not placed here)."""
        found = next((u for u in self._units() if u.name == app), None)
        return found.retry if found is not None else None

    def _unit_of(self, key: resources.ResourceKey) -> apps.Unit | None:
        """The unit whose last sync applied ``key`` (None: no app of the last sync has it)."""
        last = self.memory.aggregated
        units = {u.name: u for u in self.memory.units or ()}
        for r in last.apps if last is not None else ():
            if key in r.desired and r.app in units:
                return units[r.app]
        return None

    def _heal_client(self, key: resources.ResourceKey) -> client.KubeClient:
        """The client self-heal corrects ``key`` with: its app's service account when it has one."""
        unit = self._unit_of(key)
        kube = self.session.kube
        assert kube is not None
        return kube.impersonating(unit.impersonate) if unit is not None and unit.impersonate else kube

    def _refused_heal(self, key: resources.ResourceKey) -> str | None:
        """Why the write gate refuses a self-heal of ``key`` now (its app suspended, manual, self-heal off since the
        last sync), or None (called by self-heal's thread just before it writes)."""
        unit = self._unit_of(key)
        if unit is None:
            return None
        decision = self.gate.ask(unit, gate_.SyncKind.SELF_HEAL)
        return None if decision.allowed else decision.reason

    def _watched(self) -> dict[str, resources.Body] | None:
        """The cluster's inventory ConfigMaps by key as the watch holds them (None while it is not current)."""
        held = self.inventories.snapshot() if self.inventories else None
        return removed.by_key(held, self.cfg, self.cluster.name) if held is not None else None

    def _units(self) -> list[apps.Unit]:
        """The cluster's units (:func:`apps.units`), worked out once: the config and the cluster are this
        ClusterSync's for its whole life (a changed config makes a new one)."""
        if self.memory.units is None:
            self.memory.units = apps.units(self.cfg, self.cluster)
        return self.memory.units

    def _options(
        self, unit: apps.Unit, *, dry_run: bool, force_prune: bool, prune_orphans: bool, rules: health.Rules
    ) -> engine.ReconcileOptions:
        """:func:`agent.sync.options.options_for`, worked out once per unit and flags."""
        kept = self.memory.options
        key = (unit.name, dry_run, force_prune, prune_orphans)
        found = kept.get(key)
        if found is None or not keys.same(found[0], unit):
            options = options_.options_for(
                self.cfg, self.cluster, unit, dry_run=dry_run, force_prune=force_prune, prune_orphans=prune_orphans,
                rules=rules,
            )  # fmt: skip
            if len(kept) > 4 * max(1, len(self.memory.units or ())):
                kept.clear()
            found = kept[key] = (unit, options)
        return found[1]

    def mask(self, text: str) -> str:
        """``text`` with every value substituted, decrypted or revealed to jsonnet replaced by ``***``."""
        return self.desired.mask(text)

    def _wait_healthy(self, result: ReconcileResult, token: cancel_.Token) -> ReconcileResult:
        """Wait up to ``sync.timeout`` seconds for ``result``'s objects to be Healthy (:func:`healthwait.wait`)."""
        return healthwait.wait(result, token, self.cfg.sync.timeout, self.cluster.name, self._healths)

    def _healths(
        self, keys: Sequence[resources.ResourceKey], written: Mapping[resources.ResourceKey, int]
    ) -> dict[resources.ResourceKey, health.HealthStatus]:
        """The health of ``keys`` now: from the live cache, an object written counted Progressing until the cache
        shows the generation its write made (:func:`reconcilers.health.after_writes`); one-shot syncs GET each."""
        live = self.session.live
        if self.watch and live is not None:
            return health.after_writes(self.session.health(keys), written, live.generation)
        return self.session.health_now(keys)

    def health(self, keys: Sequence[resources.ResourceKey]) -> dict[resources.ResourceKey, health.HealthStatus]:
        """The health of ``keys`` from the live cache (Unknown for all when the cluster was never reached)."""
        return self.session.health(keys)

    def status(self) -> dict[str, Any]:
        """Self-heal status (``{}`` when self-heal is off) for the status API."""
        return self.session.status()

    def throttled(self) -> str:
        """``Throttled by the API server (N retries)`` while a request of the sync in flight waits out a
        ``Retry-After`` (N: the requests this sync sent again so far), else ""."""
        kube = self.session.kube
        if kube is None or not kube.throttled:
            return ""
        return f"Throttled by the API server ({sum(kube.retries.values()) - self._retries_before} retries)"

    def view(self) -> view_.ClusterView:
        """The cluster's sync as other threads may read it (:class:`agent.sync.view.ClusterView`: snapshots and
        read-only reads of the live cache). Safe from any thread."""
        return self.session.view(self.throttled())

    def close(self) -> None:
        """Stop watches and self-heal (waiting for a correction in flight), release the connection. Call when no
        sync runs (the worker cancels and waits for its sync first)."""
        self.session.close()


def _decided(gate: gate_.Gate, kind: Callable[[str], gate_.SyncKind]) -> Callable[[apps.Unit], gate_.Decision]:
    """The gate's answer for each unit, asked once per sync (the load, the no-op proof and the app's sync all
    ask)."""
    found: dict[str, gate_.Decision] = {}

    def admit(unit: apps.Unit) -> gate_.Decision:
        decision = found.get(unit.name)
        if decision is None:
            decision = found[unit.name] = gate.ask(unit, kind(unit.name))
        return decision

    return admit


def _healed_part(result: ReconcileResult | None, units: Sequence[apps.Unit], heals: set[str]) -> ReconcileResult | None:
    """What self-heal takes of a cluster's result: the apps the write gate lets self-heal (``heals``: their
    ``selfHeal`` on, not suspended, not manual; an app with a ``serviceAccount`` is corrected with that identity,
    :meth:`ClusterSync._heal_client`)."""
    if result is None or not result.apps:
        return result
    kept = [r for r in result.apps if r.app in heals]
    if len(kept) == len(result.apps):
        return result  # every app self-heals: the cluster's own maps
    desired_: dict[resources.ResourceKey, engine.Desired] = {}
    held: dict[resources.ResourceKey, engine.InventoryEntry] = {}
    for r in kept:
        desired_.update(r.desired)
        held.update(r.inventory)
    return result.again(desired=desired_, inventory=held)

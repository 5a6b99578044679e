"""One reconcile of one cluster.

:class:`ClusterRunner` keeps a cluster's connection, live cache (``agent.clusters.cache``) and self-heal worker
(``agent.runtime.selfheal``) between reconciles; :meth:`ClusterRunner.reconcile` syncs the cluster's apps from the
sources' checkouts (:mod:`agent.runtime.appsync`, each app its own ``reconcilers.engine.reconcile``). It never
raises: every failure becomes a ``ReconcileResult`` with ``error`` and ``error_kind`` set, so a failing cluster
never stops the others, and a failing app never stops the cluster's other apps. Used by
``agent.runtime.worker`` and ``agent.runtime.oneshot``.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import pathlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent import apps, celhealth, config
from agent.clusters import cache, connection, inventories, kubeconfig
from agent.runtime import appresults, appsync, drift, healthwait, holds, noop, ownership, removed, selfheal
from agent.runtime import gate as gate_
from agent.runtime import options as options_
from agent.sources import helmvalues, manifests, sops, substitute, tools
from agent.sources.render import helm, jsonnet
from reconcilers import apply, client, engine, errors, health, inventory, resources
from reconcilers import cancel as cancel_

log = logging.getLogger(__name__)

ReconcileResult = engine.ReconcileResult


class ClusterRunner:
    """Reconciles one cluster; with ``watch`` its live cache follows the cluster between reconciles, and with
    ``cfg.sync.selfHeal`` (and ``watch``) drifted objects are re-applied as soon as a watch event shows them."""

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
        self.gate = gate
        """Asked for every app before its first write, and by self-heal before each correction."""
        self.book = book
        """The holds (suspended apps and clusters), read again from the cluster at the start of each sync."""
        self.on_retry = on_retry
        """Told the status of each request the API server asked to send again later (metrics)."""
        self.cluster = cluster
        self.watch = watch
        self.guard = guard
        self.on_event = on_event
        self.kube: connection.KubeCluster | None = None
        self.live: cache.LiveCache | None = None
        self.healer: selfheal.Healer | None = None
        self.drift: drift.DriftMonitor | None = None  # with ``watch``: the apps self-heal does not correct
        self.inventories: inventories.InventoryWatch | None = None  # with ``watch``: the inventories, watched
        self.secrets: set[str] = set()
        self.rules = celhealth.rules(cfg.health_checks)
        self._sops: sops.Decryptor | None = None
        self._synced: dict[str, str] = {}  # app -> sha its last sync applied completely (resyncs run inline)
        # app -> (the unit object and the trees and discovery it was loaded from, its manifests)
        self._loads: dict[str, tuple[apps.Unit, tuple[object, ...], list[resources.Manifest]]] = {}
        self._loads_lock = threading.Lock()  # _loads only (the sync holds _lock throughout)
        self._last_units: dict[str, noop.Last] = {}  # app -> what its last good sync applied (the sync's thread)
        self._unit_memo: tuple[object, object, list[apps.Unit]] = (None, None, [])  # (cfg, cluster, units)
        self._option_memo: dict[tuple[int, bool, bool, bool], tuple[apps.Unit, engine.ReconcileOptions]] = {}
        self._claims = ownership.Memo()  # the sync's thread (under _lock)
        self._proof = noop.ClusterMemo()  # the sync's thread (under _lock)
        self._watched_memo: tuple[object, object, dict[str, resources.Body]] = (None, None, {})  # the sync's thread
        self._aggregated: ReconcileResult | None = None  # the last result aggregate() made (the sync's thread)
        self._lock = threading.Lock()
        self._retries_before = 0  # the connection's retries when the sync in flight began

    def _connect(self) -> tuple[connection.KubeCluster, cache.LiveCache]:
        if self.kube is None or self.live is None:
            kube = kubeconfig.connect(
                self.cluster, self.cfg.sync.concurrency, self.cfg.sync.request_timeout, options_.user_agent(self.cfg)
            )
            kube.fence = self.guard
            kube.on_retry = self.on_retry
            kube.limiter = options_.rate_limit(self.cfg, self.cluster)
            tracking = inventory.Tracking(self.cfg.instance, self.cluster.name)
            heal = self.watch and any(u.self_heal for u in apps.units(self.cfg, self.cluster))
            options = apply.ApplyOptions(
                field_manager=self.cfg.sync.field_manager, concurrency=self.cfg.sync.concurrency
            )
            self.healer = (
                selfheal.Healer(
                    self.cluster.name, kube, options, self.guard, self.on_event, self._refused_heal, self._heal_client
                )
                if heal
                else None
            )
            if self.watch:
                self.drift = drift.DriftMonitor(
                    self.cluster.name, lambda u: kube.impersonating(u) if u else kube, options, self.on_event
                )
            self.live = cache.LiveCache(kube, tracking.selector, options.field_manager, self._notify, self.rules)
            for watcher in (self.healer, self.drift):
                if watcher is not None:
                    watcher.live = self.live
            if self.healer:
                self.healer.start()
            if self.drift:
                self.drift.start()
            if self.watch:
                self.inventories = inventories.InventoryWatch(
                    kube, self.cfg.instance, self.cfg.sync.inventory_namespace
                )
                self.inventories.start()
            self.kube = kube
        return self.kube, self.live

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
    ) -> ReconcileResult:
        """Reconcile the cluster's apps (:mod:`agent.runtime.appsync`; with ``app``, that app only) to
        ``revisions`` (source name -> revision; a lone revision is the source named ``default``'s), whose trees
        are at ``trees``; with ``wait`` (default: each app's
        ``sync.wait``) each app then waits up to ``sync.timeout`` for its objects to be Healthy. ``cancel`` stops
        the sync before its next write and ends the health waits (``error_kind=cancelled``). ``kind(app)``: what
        kind of sync this is for each app, for the write gate (default: requested by an operator). Never raises: a
        failing app fails alone (its result in ``apps``), a cluster that cannot be reached fails the whole result.

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

            def failed(kind: engine.ErrorKind, message: str) -> ReconcileResult:
                log.error("%s", message if message.startswith(f"cluster {name}") else f"cluster {name}: {message}")
                return ReconcileResult(name, revision, (), started, time.monotonic() - t0, dry_run, message, kind)

            units = self._units()
            if app is not None and not apps.select(units, app):
                return failed(engine.ErrorKind.CONFIG, f"no app {app!r} on cluster {name}")
            result: ReconcileResult | None = None
            for watcher in (self.healer, self.drift):
                if watcher is not None:
                    watcher.begin_reconcile()
            try:
                kube, live = self._connect()
                kube.token = token  # a Retry-After wait ends with this sync (reset in finally)
                if self.book is not None:
                    self.book.replace(name, holds.read(kube, self.cfg))
                self._retries_before = sum(kube.retries.values())
                ctx = appsync.Context(
                    self.cfg,
                    self.cluster,
                    kube,
                    live,
                    lambda u: self._options(
                        u,
                        dry_run=dry_run,
                        force_prune=force_prune,
                        prune_orphans=prune_orphans,
                        rules=self.rules,
                    ),
                    self._load,
                    self._wait_healthy,
                    self.mask,
                    dry_run,
                    wait,
                    self.watch,
                    options_.prune_options(self.cfg, force=force_prune, orphans=prune_orphans),
                    dict(self._synced),
                    dict(self._last_units),
                    claims=self._claims,
                    proof=self._proof,
                    watched=self._watched if self.inventories else None,
                    admit=_decided(self.gate, kind),
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
                    self._synced = synced
                    if bad or ctx.remember:
                        kept = {n: v for n, v in self._last_units.items() if n not in bad}
                        self._last_units = {**kept, **ctx.remember}
                placed = {u.name for u in units}
                if self._loads.keys() - placed or self._last_units.keys() - placed:  # apps no longer placed here
                    with self._loads_lock:
                        self._loads = {n: v for n, v in self._loads.items() if n in placed}
                    self._last_units = {n: v for n, v in self._last_units.items() if n in placed}
                masked = [self._masked(r) for r in found] if self.secrets else found
                result = appresults.aggregate(name, revision, masked, orphaned, t0, self._aggregated)
                if not dry_run:
                    self._aggregated = result
            except errors.GitOpsError as e:
                why, message = engine.failure(e, name)
                return failed(why, message if why is engine.ErrorKind.CANCELLED else self.mask(message))
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
                        result, drift.watched_apps((u.name, u.name in heals, u.impersonate) for u in units)
                    )
            counts = ", ".join(f"{v} {k}" for k, v in result.counts.items() if v)
            health_note = f"; health {result.health.value}: {result.health_message}" if result.health else ""
            error_note = f"; error: {result.error}" if result.error else ""
            short = revision.short if revision else "none"
            log.info("cluster %s: revision %s: %s%s%s", name, short, counts, health_note, error_note)
            return result

    def retry_of(self, app: str) -> config.Retry | None:
        """App ``app``'s retry settings on this cluster (None when it is not placed here)."""
        found = next((u for u in self._units() if u.name == app), None)
        return found.retry if found is not None else None

    def _unit_of(self, key: resources.ResourceKey) -> apps.Unit | None:
        """The unit whose last sync applied ``key`` (None: no app of the last sync has it)."""
        last = self._aggregated
        units = {u.name: u for u in self._unit_memo[2]}
        for r in last.apps if last is not None else ():
            if key in r.desired and r.app in units:
                return units[r.app]
        return None

    def _heal_client(self, key: resources.ResourceKey) -> client.KubeClient:
        """The client self-heal corrects ``key`` with: its app's service account when it has one."""
        unit = self._unit_of(key)
        assert self.kube is not None
        return self.kube.impersonating(unit.impersonate) if unit is not None and unit.impersonate else self.kube

    def _refused_heal(self, key: resources.ResourceKey) -> str | None:
        """Why the write gate refuses a self-heal of ``key`` now (its app suspended, manual, self-heal off since the
        last sync), or None (called by self-heal's thread just before it writes)."""
        unit = self._unit_of(key)
        if unit is None:
            return None
        decision = self.gate.ask(unit, gate_.SyncKind.SELF_HEAL)
        return None if decision.allowed else decision.reason

    def _notify(self, key: resources.ResourceKey, obj: resources.Body | None) -> None:
        """A watch event of the live cache, told to self-heal and to the drift monitor."""
        if self.healer:
            self.healer.notify(key, obj)
        if self.drift:
            self.drift.notify(key, obj)

    def _watched(self) -> dict[str, resources.Body] | None:
        """The cluster's inventory ConfigMaps by key as the watch holds them (None while it is not current), worked
        out again only when the watch's snapshot changed."""
        held = self.inventories.snapshot() if self.inventories else None
        if held is None:
            return None
        if self._watched_memo[0] is not held or self._watched_memo[1] is not self.cfg:
            self._watched_memo = held, self.cfg, removed.by_key(held, self.cfg, self.cluster.name)
        return self._watched_memo[2]

    def _units(self) -> list[apps.Unit]:
        """The cluster's units (:func:`apps.units`), the same objects for as long as the config is the same one
        (a resync compares them by identity)."""
        cfg, cluster, units = self._unit_memo
        if cfg is not self.cfg or cluster is not self.cluster:
            units = apps.units(self.cfg, self.cluster)
            self._unit_memo = (self.cfg, self.cluster, units)
        return units

    def _options(
        self, unit: apps.Unit, *, dry_run: bool, force_prune: bool, prune_orphans: bool, rules: health.Rules
    ) -> engine.ReconcileOptions:
        """:func:`agent.runtime.options.options_for`, worked out once per unit object and flags."""
        key = (id(unit), dry_run, force_prune, prune_orphans)
        found = self._option_memo.get(key)
        if found is None or found[0] is not unit:
            options = options_.options_for(
                self.cfg, self.cluster, unit, dry_run=dry_run, force_prune=force_prune, prune_orphans=prune_orphans,
                rules=rules,
            )  # fmt: skip
            if len(self._option_memo) > 4 * max(1, len(self._unit_memo[2])):
                self._option_memo.clear()
            found = self._option_memo[key] = (unit, options)
        return found[1]

    def _load(self, unit: apps.Unit, trees: Mapping[str, pathlib.Path]) -> list[resources.Manifest]:
        """``unit``'s manifests from its source's tree in ``trees``: rendered (a chart with its values, see
        :mod:`agent.sources.helmvalues`), decrypted (when the unit decrypts) and substituted (when it
        substitutes). Raises ConfigError and SourceError naming the file.

        A unit loaded before from the same trees (each a snapshot of one revision, never changed), as the same
        unit object (the units are worked out once per config, see :meth:`_units`) and with the same discovery (a
        chart's ``.Capabilities``), is not read again: its last manifests are returned (a resync touches no file;
        every syscall would hand the interpreter lock to the other clusters' workers and wait to get it back). A
        unit that substitutes variables (read from env and files each sync)
        is always loaded."""
        key = self._load_key(unit, trees)
        with self._loads_lock:
            hit = self._loads.get(unit.name)
        if key is not None and hit is not None and hit[0] is unit and hit[1] == key:
            return hit[2]
        desired = self._load_now(unit, trees)
        if key is not None:
            with self._loads_lock:
                self._loads[unit.name] = (unit, key, desired)
        return desired

    def _load_key(self, unit: apps.Unit, trees: Mapping[str, pathlib.Path]) -> tuple[object, ...] | None:
        if unit.substitute or self.kube is None:
            return None
        # The unit itself is compared by identity (a frozen object, the same one while the config is the same);
        # the trees as paths (the same objects while a source's revision is the same; else compared as paths).
        if unit.jsonnet is not None:  # the environment variables its values read
            return trees.get(unit.source), jsonnet.environment(unit.jsonnet, os.environ)
        if unit.helm is None:
            return trees.get(unit.source), self.kube.discovery_generation
        sources = (unit.source, *(f.source or unit.source for f in unit.helm.values_from))
        return (*(trees.get(s) for s in sources), self.kube.discovery_generation)

    def _load_now(self, unit: apps.Unit, trees: Mapping[str, pathlib.Path]) -> list[resources.Manifest]:
        decryptor = self._decryptor() if unit.decrypt else None
        chart = None
        if unit.helm is not None:
            found = helmvalues.values(
                unit.helm,
                app=unit.name,
                source=unit.source,
                cluster=unit.cluster,
                labels=unit.labels,
                trees=trees,
                decrypt=decryptor,
                base=unit.values_base,
            )
            chart = helm.Options(
                unit.helm.release_name or unit.name, tuple(found), unit.helm.skip_crds, unit.helm.skip_tests
            )
        inputs = None
        if unit.jsonnet is not None:
            inputs, revealed = jsonnet.inputs(unit.jsonnet, unit.path, os.environ)
            self.secrets |= revealed
        tree = trees[unit.source]
        desired = manifests.load_paths(
            tree, (unit.path,), unit.namespace, decryptor, self._facts, unit.inventory, chart,
            release=None if unit.from_paths else unit.name,
            limits=tools.Limits(unit.render_timeout, self.cfg.render.memory_limit), jsonnet=inputs,
        )  # fmt: skip
        if decryptor is not None:
            self.secrets |= decryptor.revealed
        if unit.substitute:
            desired, used = substitute.apply(desired, substitute.resolve(self.cfg.variables))
            self.secrets |= used
        return desired

    def _facts(self) -> tuple[str, tuple[str, ...]]:
        """The cluster's version and served API versions, for Helm's ``.Capabilities`` (read only: no write).
        Raises ClusterError."""
        return self._connect()[0].facts()

    def _decryptor(self) -> sops.Decryptor:
        """The agent's SOPS decryptor; what it decrypts is masked like substituted values. Raises ConfigError when
        a key cannot be read."""
        if self._sops is None:
            keys = self.cfg.decryption.sops.age_keys if self.cfg.decryption.sops else ()
            self._sops = sops.Decryptor(k.value(f"decryption.sops.ageKeys[{i}]") for i, k in enumerate(keys))
        return self._sops

    def mask(self, text: str) -> str:
        """``text`` with every value substituted for a variable replaced by ``***``."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _masked(self, result: ReconcileResult) -> ReconcileResult:
        if not self.secrets:
            return result
        entries = tuple(
            dataclasses.replace(
                e,
                message=self.mask(e.message),
                diff=dataclasses.replace(e.diff, unified=self.mask(e.diff.unified)) if e.diff else None,
            )
            for e in result.entries
        )
        return dataclasses.replace(
            result,
            entries=entries,
            error=self.mask(result.error) if result.error else None,
            health_message=self.mask(result.health_message),
            hooks=tuple(dataclasses.replace(h, message=self.mask(h.message)) for h in result.hooks),
        )

    def _wait_healthy(self, result: ReconcileResult, token: cancel_.Token) -> ReconcileResult:
        """Wait up to ``sync.timeout`` for ``result``'s objects to be Healthy (:func:`healthwait.wait`)."""
        return healthwait.wait(result, token, self.cfg.sync.timeout, self.cluster.name, self._healths)

    def _healths(
        self, keys: Sequence[resources.ResourceKey], written: Mapping[resources.ResourceKey, int]
    ) -> dict[resources.ResourceKey, health.HealthStatus]:
        """The health of ``keys`` now: from the live cache, an object written counted Progressing until the cache
        shows the generation its write made (:func:`reconcilers.health.after_writes`); one-shot syncs GET each."""
        if self.watch and self.live is not None:
            return health.after_writes(self.health(keys), written, self.live.generation)
        return self._health_now(keys)

    def _health_now(self, keys: Sequence[resources.ResourceKey]) -> dict[resources.ResourceKey, health.HealthStatus]:
        """Health read with a GET per object (one-shot syncs have no watches)."""
        assert self.kube is not None
        return {k: self.rules.assess(k, self.kube.get(k)) for k in keys}

    def status(self) -> dict[str, Any]:
        """Self-heal status (``{}`` when self-heal is off) for the status API."""
        return self.healer.status() if self.healer else {}

    def throttled(self) -> str:
        """``Throttled by the API server (N retries)`` while a request of the sync in flight waits out a
        ``Retry-After`` (N: the requests this sync sent again so far), else ""."""
        kube = self.kube
        if kube is None or not kube.throttled:
            return ""
        return f"Throttled by the API server ({sum(kube.retries.values()) - self._retries_before} retries)"

    def health(self, keys: Sequence[resources.ResourceKey]) -> dict[resources.ResourceKey, health.HealthStatus]:
        """The health of ``keys`` from the live cache (Unknown for all when the cluster was never reached)."""
        if self.live is None:
            return {k: health.HealthStatus(health.Health.UNKNOWN, "cluster not reached yet") for k in keys}
        return {k: self.live.health(k) for k in keys}

    def close(self) -> None:
        """Stop watches and self-heal (waiting for a correction in flight), release the connection. Call when no
        reconcile runs (the worker cancels and waits for its sync first)."""
        if self.healer:
            self.healer.stop()
        if self.drift:
            self.drift.stop()
        if self.live:
            self.live.stop()
        if self.inventories:
            self.inventories.stop()
        if self.kube:
            self.kube.close()


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
    :meth:`ClusterRunner._heal_client`)."""
    if result is None or not result.apps:
        return result
    healing = {u.name for u in units if u.name in heals}
    kept = [r for r in result.apps if r.app in healing]
    if len(kept) == len(result.apps):
        return result  # every app self-heals: the cluster's own maps
    desired: dict[resources.ResourceKey, apply.Desired] = {}
    held: dict[resources.ResourceKey, inventory.Entry] = {}
    for r in kept:
        desired.update(r.desired)
        held.update(r.inventory)
    return result.again(desired=desired, inventory=held)

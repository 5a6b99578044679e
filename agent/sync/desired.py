"""The desired state of one app on one cluster: rendered, decrypted, substituted, and masked in every output.

:class:`DesiredState` turns a unit (:mod:`agent.apps`) and its sources' trees into manifests: the renderers
(:mod:`agent.sources.render`; a chart with its values, :mod:`agent.sources.helmvalues`; jsonnet with its ext vars
and TLAs), then SOPS decryption (:mod:`agent.sources.sops`) and ``${VAR}`` substitution
(:mod:`agent.sources.substitute`), steps after rendering. Every value decrypted, substituted or read from the
environment for jsonnet is remembered as a secret and replaced by ``***`` in any text that leaves the sync
(:meth:`DesiredState.mask`, :meth:`DesiredState.masked`). Loads are remembered in the cluster's
:class:`agent.sync.memory.SyncMemory` by what they depend on (see :meth:`DesiredState.load`). Owned by one
:class:`agent.sync.cluster.ClusterSync`; :meth:`DesiredState.load` may be called from the sync's app threads at
once.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import pathlib
import threading
from collections.abc import Callable, Mapping

from agent import apps, config
from agent.importers import peers
from agent.sources import helmvalues, manifests, overlay, sops, substitute, tools
from agent.sources.render import helm, jsonnet
from agent.sync import keys
from agent.sync import memory as memory_
from reconcilers import engine, errors, resources


class DesiredState:
    """Loads units' manifests for one cluster. ``facts()``: the cluster's version and API versions for Helm's
    ``.Capabilities`` (raises ClusterError); ``discovery()``: the connection's discovery generation, None before
    it connected (nothing is remembered then); ``read(key)``: one object of the cluster now (None: missing; raises
    ClusterError), for an app's ``variablesFrom``."""

    def __init__(
        self,
        cfg: config.AgentConfig,
        facts: Callable[[], tuple[str, tuple[str, ...]]],
        discovery: Callable[[], int | None],
        memory: memory_.SyncMemory,
        read: Callable[[resources.ResourceKey], resources.Body | None],
    ) -> None:
        self.cfg = cfg
        self._read = read
        self._facts = facts
        self._discovery = discovery
        self._memory = memory
        self.secrets: set[str] = set()
        self._sops: sops.Decryptor | None = None
        self._lock = threading.Lock()  # secrets and the decryptor (app threads load at once)

    def load(self, unit: apps.Unit, trees: Mapping[str, pathlib.Path]) -> list[resources.Manifest]:
        """``unit``'s manifests from its source's tree in ``trees``: rendered (a chart with its values, see
        :mod:`agent.sources.helmvalues`), decrypted (when the unit decrypts) and substituted (when it
        substitutes). Raises ConfigError and SourceError naming the file.

        A unit loaded before from the same trees (each a snapshot of one revision, never changed), as the same
        unit (by content) and with the same discovery generation (a chart's ``.Capabilities``) or jsonnet
        environment, is not read again: its last manifests are returned (a resync touches no file; every syscall
        would hand the interpreter lock to the other clusters' workers and wait to get it back). A unit that
        substitutes variables (read from env and files each sync) is always loaded. Every load is kept in the
        memory with the digest of its manifests (:meth:`agent.sync.memory.SyncMemory.digest`)."""
        key = self._key(unit, trees)
        hit = self._memory.loaded(unit.name)
        if key is not None and hit is not None and hit.inputs == key and keys.same(hit.unit, unit):
            return hit.manifests
        desired = self._load_now(unit, trees)
        self._memory.keep_load(unit.name, memory_.Loaded(unit, key, desired, keys.manifests_digest(desired)))
        return desired

    def _key(self, unit: apps.Unit, trees: Mapping[str, pathlib.Path]) -> tuple[object, ...] | None:
        discovery = self._discovery()
        if unit.substitute or discovery is None:
            return None
        if unit.jsonnet is not None:  # the environment variables its values read
            return trees.get(unit.source), jsonnet.environment(unit.jsonnet, os.environ)
        if unit.helm is None:
            return trees.get(unit.source), discovery
        sources = (unit.source, *(f.source or unit.source for f in unit.helm.values_from))
        return (*(trees.get(s) for s in sources), discovery)

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
            self._reveal(revealed)
        tree = trees[unit.source]
        desired = manifests.load_paths(
            tree, (unit.path,), unit.namespace, decryptor, self._facts, unit.inventory, chart,
            release=None if unit.from_paths else unit.name,
            limits=tools.Limits(unit.render_timeout, self.cfg.render.memory_limit), jsonnet=inputs,
            selection=selection(unit.directory),
        )  # fmt: skip
        if decryptor is not None:
            self._reveal(decryptor.revealed)
        if unit.kustomize is not None:  # Argo CD's source.kustomize, Flux's patches and images: over any render
            limits = tools.Limits(unit.render_timeout, self.cfg.render.memory_limit)
            desired = overlay.apply(desired, unit.kustomize, limits, unit.name)
        if unit.app_of_apps:  # its Argo CD and Flux objects are its child apps (agent.appsets.nested), not applied
            desired = [m for m in desired if not peers.is_peer(m.body)]
        if unit.substitute:
            values, secret = self._variables(unit)
            desired, used = substitute.apply(desired, values, secret)
            self._reveal(used & secret)
        return desired

    def _variables(self, unit: apps.Unit) -> tuple[dict[str, str | errors.ConfigError], set[str]]:
        """The values of ``unit``'s substitution (the config's ``variables``, then each of its ``variablesFrom``
        read from the cluster now, then its inline ``variables``) and those of them that are secret (the config's,
        a Secret's). Raises ConfigError naming a ConfigMap or Secret that is missing (and not optional) or not
        readable (the cluster's own error)."""
        values = substitute.resolve(self.cfg.variables)
        secret = {v for v in values.values() if isinstance(v, str)}
        for i, ref in enumerate(unit.variables_from):
            namespace = ref.namespace or unit.namespace
            where = f"app {unit.name}: variablesFrom[{i}] ({ref.kind} {namespace}/{ref.name})"
            try:
                body = self._read(resources.ResourceKey("", ref.kind, namespace, ref.name))
            except errors.ClusterError as e:
                raise errors.ConfigError(f"{where}: cannot be read: {e}") from None
            if body is None and not ref.optional:
                raise errors.ConfigError(f"{where}: not found in the cluster (optional: true to go on without it)")
            found = _data(body, ref.kind == "Secret", where) if body is not None else {}
            values.update(found)
            secret |= set(found.values()) if ref.kind == "Secret" else set()
        values.update(unit.variables)
        return values, secret

    def _reveal(self, values: set[str] | frozenset[str]) -> None:
        with self._lock:
            self.secrets = self.secrets | values  # a new set: mask() may be iterating the old one

    def _decryptor(self) -> sops.Decryptor:
        """The agent's SOPS decryptor; what it decrypts is masked like substituted values. Raises ConfigError when
        a key cannot be read."""
        with self._lock:
            if self._sops is None:
                keys = self.cfg.decryption.sops.age_keys if self.cfg.decryption.sops else ()
                self._sops = sops.Decryptor(k.value(f"decryption.sops.ageKeys[{i}]") for i, k in enumerate(keys))
            return self._sops

    def mask(self, text: str) -> str:
        """``text`` with every value substituted, decrypted or revealed to jsonnet replaced by ``***``."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            if secret:
                text = text.replace(secret, "***")
        return text

    def masked(self, result: engine.ReconcileResult) -> engine.ReconcileResult:
        """``result`` with every message, diff, error and hook message masked (:meth:`mask`)."""
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
            problem=dataclasses.replace(result.problem, message=self.mask(result.problem.message))
            if result.problem
            else None,
            health_message=self.mask(result.health_message),
            hooks=tuple(dataclasses.replace(h, message=self.mask(h.message)) for h in result.hooks),
        )


def selection(options: config.DirectoryOptions) -> manifests.Selection:
    """The files an app's ``directory`` options read (:class:`agent.sources.manifests.Selection`)."""
    return manifests.Selection(options.recurse, options.include, options.exclude)


def _data(body: resources.Body, encoded: bool, where: str) -> dict[str, str]:
    """The keys of a ConfigMap's ``data`` or a Secret's (base64) ``data``, as variables. Raises ConfigError for a
    Secret value that is not base64 of UTF-8 text (the value is not shown)."""
    out: dict[str, str] = {}
    for key, value in (body.get("data") or {}).items():
        if not encoded:
            out[key] = str(value)
            continue
        try:
            out[key] = base64.b64decode(str(value), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise errors.ConfigError(f"{where}: key {key} is not base64 of UTF-8 text") from None
    return out

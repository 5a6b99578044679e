"""What one reconcile returns, and why it stopped: :class:`ReconcileResult`, :class:`ErrorKind`, the one mapping
of an error to its kind (:func:`failure`), and the :class:`ReconcileOptions` a reconcile runs with. Exported by
:mod:`reconcilers.engine` (the engine's facade), which callers outside ``reconcilers`` import instead.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Container, Mapping

from reconcilers import apply, errors, health, hookrun, ignore, inventory, ordering, prune, resources


class ErrorKind(enum.Enum):
    """Why a reconcile did not run to its end: ``config`` and ``source`` errors write nothing; ``cluster`` errors
    (unreachable, refused credentials) may leave a partial sync; ``prune`` is a prune refused for safety (the
    apply went through); ``cancelled``: stopped before a write (Lease lost, cluster removed, shutdown), what was
    written stays and the inventory already names it; ``internal`` is a bug; ``waiting``: an app did not sync
    because an app it depends on is not Synced and Healthy yet (nothing written); ``apps``: a cluster's result
    when some of its apps failed (each app's own result says how; the others went on); ``hook``: a hook failed
    (SyncFail hooks ran); ``wave``: a wave did not become Healthy within ``sync.waveTimeout``."""

    CONFIG = "config"
    SOURCE = "source"
    CLUSTER = "cluster"
    PRUNE = "prune"
    CANCELLED = "cancelled"
    INTERNAL = "internal"
    WAITING = "waiting"
    APPS = "apps"
    HOOK = "hook"
    WAVE = "wave"


@dataclasses.dataclass(frozen=True)
class Problem:
    """Why a sync (or one app's) stopped, typed end to end: ``kind``; ``message`` (the status text; the agent masks
    secrets in it); ``document``: ``file#index`` of the malformed manifest (a :class:`errors.ManifestError`);
    ``status``: the API server's HTTP status when it answered with an error (an :class:`errors.ApiError`) and
    ``fields``: the field paths it named (immutable fields); ``key``: the object it concerns (the hook that
    failed, the first object of a wave that did not become Healthy)."""

    kind: ErrorKind
    message: str
    document: str = ""
    status: int | None = None
    fields: tuple[str, ...] = ()
    key: resources.ResourceKey | None = None

    def as_json(self) -> dict[str, object]:
        """``{"kind", "message"}`` and, when known, ``document``, ``status``, ``fields``, ``object`` (``key``)."""
        out: dict[str, object] = {"kind": self.kind.value, "message": self.message}
        if self.document:
            out["document"] = self.document
        if self.status is not None:
            out["status"] = self.status
        if self.fields:
            out["fields"] = list(self.fields)
        if self.key is not None:
            k = self.key
            out["object"] = {"group": k.group, "kind": k.kind, "namespace": k.namespace, "name": k.name}
        return out


def problem(e: errors.GitOpsError, cluster: str) -> Problem:
    """The one mapping of an error that ends a sync (or an app's) to its :class:`Problem`: ``cancelled: <why>``,
    a config or source error as it is (a manifest error with its document), a cluster error prefixed
    ``cluster <name>:`` (an API server's answer with its status and fields); any other
    :class:`errors.GitOpsError` is ``internal``. The caller masks secrets in the message."""
    if isinstance(e, errors.CancelledError):
        return Problem(ErrorKind.CANCELLED, f"cancelled: {e}")
    if isinstance(e, errors.ConfigError):
        return Problem(ErrorKind.CONFIG, str(e))
    if isinstance(e, errors.ManifestError):
        index = "" if e.doc_index is None else f"#{e.doc_index}"
        return Problem(ErrorKind.SOURCE, str(e), document=f"{e.source_file}{index}{'.' + e.item if e.item else ''}")
    if isinstance(e, errors.SourceError):
        return Problem(ErrorKind.SOURCE, str(e))
    if isinstance(e, errors.ApiError):
        return Problem(ErrorKind.CLUSTER, f"cluster {cluster}: {e}", status=e.status, fields=e.fields)
    if isinstance(e, errors.ClusterError):
        return Problem(ErrorKind.CLUSTER, f"cluster {cluster}: {e}")
    return Problem(ErrorKind.INTERNAL, f"internal error: {type(e).__name__}: {e}")


def failure(e: errors.GitOpsError, cluster: str) -> tuple[ErrorKind, str]:
    """:func:`problem`'s kind and message."""
    found = problem(e, cluster)
    return found.kind, found.message


@dataclasses.dataclass(frozen=True)
class ReconcileOptions:
    """Options of one reconcile.

    ``apply`` (see :class:`apply.ApplyOptions`); ``prune`` (see :class:`prune.PruneOptions`); ``ignore``: the
    configured ignore rules (HPA targets are added); ``default_namespace`` for namespaced objects that name none;
    ``timeout`` (seconds) for waits such as CRDs becoming Established; ``instance`` names this agent in tracking
    labels; ``paths`` are the inventory keys of this sync (one inventory each: a ``paths`` entry or ``app:<name>``);
    ``inventory_namespace`` holds them; ``protected``: objects other apps on the cluster desire now: never pruned
    here, and dropped from this sync's inventories (they moved to another app); ``scan_orphans``: report orphans
    (off when the caller scans once for all its apps); ``rules``: health rules for wave gates and hooks;
    ``wave_timeout``: seconds a wave may take to become Healthy, and a hook to complete; ``hooks_on_noop``: run
    hooks on a sync that changes nothing too (default False).
    """

    apply: apply.ApplyOptions = dataclasses.field(default_factory=apply.ApplyOptions)
    prune: prune.PruneOptions = dataclasses.field(default_factory=prune.PruneOptions)
    ignore: tuple[ignore.IgnoreRule, ...] = ()
    default_namespace: str = "default"
    timeout: float = 300.0
    instance: str = "gitops-agent"
    paths: tuple[str, ...] = ()
    inventory_namespace: str = "gitops-agent"
    protected: Container[resources.ResourceKey] = frozenset()
    scan_orphans: bool = True
    rules: health.Rules = health.BUILT_IN
    wave_timeout: float = 300.0
    hooks_on_noop: bool = False
    only: tuple[resources.ResourceKey, ...] | None = None
    """A selective sync (Argo CD's): only these objects are applied (a key with an empty group matches any group);
    no hook runs, nothing is pruned or scanned for orphans, and the inventory keeps every other entry."""


Healths = Mapping[resources.ResourceKey, health.HealthStatus]
"""Each object's health when a sync waited for it (in the result's body, ``health`` names the field)."""


@dataclasses.dataclass(frozen=True)
class ReconcileResult:
    """The outcome of one reconcile of one cluster.

    ``entries`` has one :class:`apply.ChangeSetEntry` per desired object (and per pruned one); ``error`` and
    ``error_kind`` say why the reconcile stopped early or refused to prune (None when it ran to its end), and
    ``problem`` says it typed (:class:`Problem`: made from ``error`` and ``error_kind`` when not given);
    ``started`` is UTC, ``duration`` in seconds. ``desired`` and ``inventory`` are what self-heal needs: the
    objects as applied and their inventory entries. ``health`` is set when the sync waited for health (the
    worst object's state when the wait ended, with ``health_message`` saying which object and why, and ``healths``
    each object's). ``app`` names
    the app of a one-app result; a cluster's result made of apps lists them in ``apps`` (its entries, desired and
    inventory are theirs together). ``known``: every object this sync had reason to know (desired, inventoried,
    pruned), for an orphan scan across apps. ``hooks``: the hook runs of this sync, in run order; ``plan``: the
    steps of the sync (phases, waves, hooks), for ``diff`` and ``sync --dry-run``. ``held``: why this app's
    changes were not applied (the write gate refused: suspended, manual sync); the app's sync then ran as a dry
    run, its entries saying what a sync would change.
    """

    cluster: str
    revision: resources.Revision | None
    entries: tuple[apply.ChangeSetEntry, ...]
    started: datetime.datetime
    duration: float
    dry_run: bool = False
    error: str | None = None
    error_kind: ErrorKind | None = None
    desired: Mapping[resources.ResourceKey, apply.Desired] = dataclasses.field(default_factory=dict, repr=False)
    inventory: Mapping[resources.ResourceKey, inventory.Entry] = dataclasses.field(default_factory=dict, repr=False)
    health: health.Health | None = None
    health_message: str = ""
    healths: Healths = dataclasses.field(default_factory=dict, repr=False)
    app: str = ""
    apps: tuple[ReconcileResult, ...] = dataclasses.field(default=(), repr=False)
    known: frozenset[resources.ResourceKey] = dataclasses.field(default=frozenset(), repr=False)
    hooks: tuple[hookrun.HookRun, ...] = ()
    plan: ordering.Plan | None = dataclasses.field(default=None, repr=False)
    held: str = ""
    problem: Problem | None = None
    selected: tuple[resources.ResourceKey, ...] = ()
    """The objects a selective sync wrote (:attr:`ReconcileOptions.only`); empty for a sync of the whole app: a
    selective sync's result says nothing of the app's other objects."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "problem", _problem_of(self.error, self.error_kind, self.problem))

    def again(self, **changes: object) -> ReconcileResult:
        """A copy with ``changes`` (field name -> new value), as ``dataclasses.replace`` makes it but without
        running ``__init__`` again (a frozen dataclass's sets each of its fields through ``object.__setattr__``;
        a no-op resync copies one result per app). Raises TypeError for a name that is not a field."""
        if not changes.keys() <= _RESULT_FIELDS:  # no set made on the way (this is per app and sync)
            unknown = changes.keys() - _RESULT_FIELDS
            raise TypeError(f"ReconcileResult has no field {', '.join(sorted(unknown))}")
        new = object.__new__(ReconcileResult)
        state = new.__dict__
        state.update(self.__dict__)
        if "entries" in changes and changes["entries"] is not self.entries:
            state.pop("_counted", None)  # counted again for the new entries (kept for the same ones)
        state.update(changes)
        if "error" in changes or "error_kind" in changes or "problem" in changes:
            state["problem"] = _problem_of(state["error"], state["error_kind"], state["problem"])
        return new

    @property
    def counts(self) -> dict[str, int]:
        """Objects per action (see :func:`apply.counts`); a new dict each time."""
        return dict(self._counts)

    @property
    def _counts(self) -> dict[str, int]:
        # Counted once: the status API reads the counts of every cluster on every poll (10,000 entries each).
        # Kept by hand, not with functools.cached_property: on Python 3.11 that takes one lock shared by every
        # instance, and the workers of all clusters would queue on it.
        found: dict[str, int] | None = self.__dict__.get("_counted")
        if found is None:
            found = apply.counts(self.entries)
            object.__setattr__(self, "_counted", found)
        return found

    @property
    def failed(self) -> list[apply.ChangeSetEntry]:
        """Entries that failed."""
        return [e for e in self.entries if e.action is apply.Action.FAILED]

    @property
    def requires_pruning(self) -> int:
        """Objects removed from git that are still live and ours because prune is off (``requires-pruning``)."""
        return self._counts["requires-pruning"]

    @property
    def ok(self) -> bool:
        """True when the reconcile ran to its end and no object failed or was skipped."""
        c = self._counts
        return self.error is None and c["failed"] == 0 and c["skipped"] == 0


def _problem_of(error: str | None, kind: ErrorKind | None, given: Problem | None) -> Problem | None:
    """The problem a result with ``error`` and ``kind`` carries: ``given`` when it says the same, else one made of
    them (None without an error): a result's problem never disagrees with its error."""
    if error is None:
        return None
    kind = kind or ErrorKind.INTERNAL
    if given is not None and given.message == error and given.kind is kind:
        return given
    return Problem(kind, error)


_RESULT_FIELDS = frozenset(f.name for f in dataclasses.fields(ReconcileResult))

"""The write gate: one question every write path asks before its first write, "may app A write to cluster C now,
for a sync of this kind?", answered with a :class:`Decision` and its reason.

The kinds (:class:`SyncKind`): ``scheduled`` (the interval, a new revision, a webhook's push, a reload, a Lease
gained: the agent's own syncs), ``requested`` (an operator asked: the API, the CLI, the dashboard), ``rollout`` (a
step of a rollout) and ``self-heal`` (a correction between syncs). The rules (:class:`Rule`, asked in order, the
first refusal wins):

- :class:`LeaseRule`: the cluster's sharding Lease is held and renewed (every kind; the Lease also fences every
  single write, :mod:`reconcilers.cancel`);
- :class:`SelfHealRule`: a self-heal write needs the app's ``selfHeal``;
- :class:`ManualRule`: an app with ``sync.auto: false`` (Argo CD's Application without ``automated``) is written
  only when an operator asks;
- :class:`HoldRule`: an app, a cluster, or an app on one cluster suspended (:mod:`agent.sync.holds`) gets no
  write of any kind (Flux's ``suspend``);
- :class:`WindowRule`: sync windows (Argo CD's ``syncWindows``, :mod:`agent.sync.windows`): outside an allow
  window or inside a deny window nothing is written, an operator's sync only where the window says
  ``manualSync: true``.

A refused app is not written: its sync runs as a dry run (the diff is computed and shown, as Argo CD shows an
OutOfSync app it may not sync), its result carries the decision's reason (``held``), and self-heal leaves its
objects to the drift monitor. Built by :mod:`agent.runtime.fleet`; asked by the runner (each app, each sync) and
self-heal (each correction).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Callable, Sequence
from typing import Protocol

from agent import apps, config
from agent.sync import holds, windows


class SyncKind(enum.Enum):
    """Why a write would happen (see the module docstring)."""

    SCHEDULED = "scheduled"
    REQUESTED = "requested"
    ROLLOUT = "rollout"
    SELF_HEAL = "self-heal"


@dataclasses.dataclass(frozen=True)
class Decision:
    """``allowed``, else ``reason`` (a sentence for the status: ``Suspended by alice at ...: maintenance``) and
    ``rule`` (which rule refused: ``lease``, ``selfHeal``, ``manual``, ``suspended``)."""

    allowed: bool
    reason: str = ""
    rule: str = ""


ALLOWED = Decision(True)


class Rule(Protocol):
    """One rule of the gate: None when it has nothing to say about this write, else its decision."""

    def decide(self, unit: apps.Unit, kind: SyncKind) -> Decision | None:
        """The rule's verdict on ``unit`` (an app on a cluster) writing for a sync of ``kind``."""
        ...


class Gate:
    """The rules, asked in order; the first refusal is the answer."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)

    def ask(self, unit: apps.Unit, kind: SyncKind) -> Decision:
        """May ``unit`` write now for a sync of ``kind``? Never raises."""
        for rule in self.rules:
            found = rule.decide(unit, kind)
            if found is not None and not found.allowed:
                return found
        return ALLOWED


OPEN = Gate(())
"""A gate without rules (one-shot commands and tests that set none)."""


@dataclasses.dataclass(frozen=True)
class LeaseRule:
    """Refuses every write to a cluster whose Lease this replica does not hold and renew (``fence(cluster)``:
    the reason, or None; :meth:`agent.runtime.leases.Coordinator.guard`)."""

    fence: Callable[[str], str | None]

    def decide(self, unit: apps.Unit, kind: SyncKind) -> Decision | None:
        """Refused with the Lease's reason, else no opinion."""
        why = self.fence(unit.cluster)
        return Decision(False, why, "lease") if why else None


class SelfHealRule:
    """Refuses a self-heal write of an app whose ``selfHeal`` is off."""

    def decide(self, unit: apps.Unit, kind: SyncKind) -> Decision | None:
        """Refused for self-heal without ``selfHeal``."""
        if kind is SyncKind.SELF_HEAL and not unit.self_heal:
            return Decision(False, "self-heal is off for this app (sync.selfHeal)", "selfHeal")
        return None


class ManualRule:
    """Refuses every write an operator did not ask for to an app with ``sync.auto: false``."""

    def decide(self, unit: apps.Unit, kind: SyncKind) -> Decision | None:
        """Refused unless ``kind`` is ``requested``."""
        if not unit.auto and kind is not SyncKind.REQUESTED:
            return Decision(False, "manual sync (sync.auto: false): written only when asked", "manual")
        return None


@dataclasses.dataclass(frozen=True)
class HoldRule:
    """Refuses every write to an app or cluster suspended in ``book`` (:class:`agent.sync.holds.Book`)."""

    book: holds.Book

    def decide(self, unit: apps.Unit, kind: SyncKind) -> Decision | None:
        """Refused while the app (on this cluster or all) or the cluster is suspended."""
        found = self.book.held(unit.cluster, unit.name)
        return Decision(False, found.text(), "suspended") if found is not None else None


class WindowRule:
    """Refuses writes the sync windows block at ``clock()`` (UTC; a test's clock may be given). ``specs()``: the
    windows of the current config (a reload takes effect at the next question); ``labels(cluster)``: its labels."""

    def __init__(
        self,
        specs: Callable[[], tuple[config.SyncWindow, ...]],
        labels: Callable[[str], dict[str, str]],
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self.specs = specs
        self.labels = labels
        self.clock = clock
        self._built: tuple[tuple[config.SyncWindow, ...], list[windows.Window]] = ((), [])

    def decide(self, unit: apps.Unit, kind: SyncKind) -> Decision | None:
        """Refused while a window blocks the app, unless an operator asks and the window allows manual syncs."""
        specs = self.specs()
        if not specs:
            return None
        built = self._built
        if built[0] != specs:  # the windows of a new config (equal configs compare equal: built once)
            built = self._built = (specs, [windows.Window.of(w) for w in specs])
        verdict = windows.judge(built[1], unit.name, unit.cluster, self.labels(unit.cluster), self.clock())
        if not verdict.blocked or (kind is SyncKind.REQUESTED and verdict.manual):
            return None
        return Decision(False, verdict.reason, "syncWindow")

"""The triggers a worker has not acted on yet, coalesced into its next sync.

:class:`Pending` collects why a sync is wanted (schedule, API call, webhook, new revision, Lease gained, reload:
each reason counted), which apps an operator asked for (a ``requested`` sync for the write gate,
:class:`agent.sync.gate.SyncKind`; ``"*"``: every app of the cluster) and the objects of a selective sync of an app
(Argo CD's: only those objects written; a whole sync of the app asked for before the sync starts wins).
:meth:`Pending.take` hands them to one sync as a :class:`Taken` and starts afresh. Owned by one
:class:`agent.runtime.worker.Worker`, which guards it with its condition (not thread-safe by itself).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Mapping, Sequence

from agent.sync import gate
from reconcilers import resources


@dataclasses.dataclass(frozen=True)
class Taken:
    """What one sync acts on: ``reasons`` (sorted; ``["schedule"]`` when nothing asked), the apps an operator
    asked for (``requested``), and ``selected``: app -> the objects its selective sync writes."""

    reasons: list[str]
    requested: frozenset[str]
    selected: Mapping[str, tuple[resources.ResourceKey, ...]]

    def kinds(self, step: bool) -> Callable[[str], gate.SyncKind]:
        """The kind of this sync for each app: a rollout step's (``step``), or requested for the apps an operator
        asked for (``"*"``: all), else scheduled."""
        if step:
            return lambda app: gate.SyncKind.ROLLOUT
        if "*" in self.requested:
            return lambda app: gate.SyncKind.REQUESTED
        return lambda app: gate.SyncKind.REQUESTED if app in self.requested else gate.SyncKind.SCHEDULED


class Pending:
    """The triggers not acted on yet (see the module doc)."""

    def __init__(self) -> None:
        self._reasons: collections.Counter[str] = collections.Counter()
        self._requested: set[str] = set()
        self._selected: dict[str, set[resources.ResourceKey] | None] = {}  # None: the whole app

    def add(
        self,
        reason: str,
        *,
        requested: bool = False,
        app: str | None = None,
        objects: Sequence[resources.ResourceKey] = (),
    ) -> None:
        """One more trigger: ``reason``; ``requested``: an operator asked (for ``app``, or every app); ``objects``
        (with ``app``): a selective sync of that app."""
        self._reasons[reason] += 1
        if not requested:
            return
        self._requested.add(app or "*")
        if app is None:
            return
        if not objects:
            self._selected[app] = None  # a whole sync of the app
        elif app not in self._selected:
            self._selected[app] = set(objects)
        elif (kept := self._selected[app]) is not None:
            kept.update(objects)

    def __bool__(self) -> bool:
        return bool(self._reasons)

    def reasons(self) -> list[str]:
        """The reasons pending, sorted."""
        return sorted(self._reasons)

    def take(self) -> Taken:
        """Everything pending, for the sync starting now; nothing is pending after."""
        requested = frozenset(self._requested)
        whole = "*" in requested  # every app asked for: no app's sync is a selective one
        selected = {a: tuple(sorted(k, key=str)) for a, k in self._selected.items() if k is not None and not whole}
        taken = Taken(self.reasons() or ["schedule"], requested, selected)
        self._reasons.clear()
        self._requested = set()
        self._selected = {}
        return taken

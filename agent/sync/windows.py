"""Sync windows (Argo CD's ``syncWindows``, :class:`agent.config.SyncWindow`): whether an app on a cluster may be
written now, and when that changes.

A window is open from each time its cron ``schedule`` fires (APScheduler's ``CronTrigger``, in its ``timeZone``)
for ``duration``. For an app the windows that cover it (its name and the cluster's name or labels) decide: an
open deny window blocks it (deny wins over allow); with allow windows, it is blocked while none is open; with
none, windows say nothing. A blocked app may still be synced by an operator when every window that blocks it
says ``manualSync: true``. Used by :class:`agent.sync.gate.WindowRule`.
"""

from __future__ import annotations

import dataclasses
import datetime
import fnmatch
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from agent import config

if TYPE_CHECKING:  # loaded with the first window (it brings asyncio along): a config without one never pays for it
    from apscheduler.triggers.cron import CronTrigger


@dataclasses.dataclass(frozen=True)
class Window:
    """A configured window with its trigger."""

    spec: config.SyncWindow
    trigger: CronTrigger

    @classmethod
    def of(cls, spec: config.SyncWindow) -> Window:
        """The window of ``spec`` (its schedule was checked when the config was read)."""
        from apscheduler.triggers.cron import CronTrigger

        return cls(spec, CronTrigger.from_crontab(spec.schedule, timezone=spec.time_zone))

    def covers(self, app: str, cluster: str, labels: Mapping[str, str]) -> bool:
        """True when this window applies to ``app`` on ``cluster`` (with ``labels``)."""
        s = self.spec
        if s.apps and not any(fnmatch.fnmatchcase(app, p) for p in s.apps):
            return False
        if s.clusters and not any(fnmatch.fnmatchcase(cluster, p) for p in s.clusters):
            return False
        return all(labels.get(k) == v for k, v in s.selector.items())

    def open_until(self, now: datetime.datetime) -> datetime.datetime | None:
        """When the opening that holds ``now`` ends, or None when the window is closed at ``now``."""
        start = self.trigger.get_next_fire_time(None, now - datetime.timedelta(seconds=self.spec.duration))
        if start is None or start > now:
            return None
        return start + datetime.timedelta(seconds=self.spec.duration)  # type: ignore[no-any-return]

    def next_opening(self, now: datetime.datetime) -> datetime.datetime | None:
        """The next time the window opens after ``now``."""
        found = self.trigger.get_next_fire_time(None, now + datetime.timedelta(microseconds=1))
        return found  # type: ignore[no-any-return]

    def name(self) -> str:
        """``deny "0 22 * * *" for 1h (Europe/Berlin)`` for messages."""
        s = self.spec
        return f'{s.kind} "{s.schedule}" for {s.duration:g}s ({s.time_zone})'


@dataclasses.dataclass(frozen=True)
class Verdict:
    """``blocked`` with ``reason`` (the window(s), until when, the next opening) and ``manual`` (an operator may
    sync anyway)."""

    blocked: bool
    reason: str = ""
    manual: bool = False


OPEN = Verdict(False)


def judge(
    windows: Sequence[Window], app: str, cluster: str, labels: Mapping[str, str], now: datetime.datetime
) -> Verdict:
    """What the windows covering ``app`` on ``cluster`` say at ``now`` (UTC-aware)."""
    mine = [w for w in windows if w.covers(app, cluster, labels)]
    if not mine:
        return OPEN
    denying = [(w, end) for w in mine if w.spec.kind == "deny" and (end := w.open_until(now)) is not None]
    if denying:
        until = max(end for _, end in denying)
        names = ", ".join(w.name() for w, _ in denying)
        return Verdict(
            True,
            f"sync window: {names} is open until {until.isoformat()}",
            all(w.spec.manual_sync for w, _ in denying),
        )
    allows = [w for w in mine if w.spec.kind == "allow"]
    if not allows or any(w.open_until(now) is not None for w in allows):
        return OPEN
    nexts = [n for w in allows if (n := w.next_opening(now)) is not None]
    opening = f"; the next opens at {min(nexts).isoformat()}" if nexts else ""
    names = ", ".join(w.name() for w in allows)
    return Verdict(
        True, f"sync window: outside every allow window ({names}){opening}", any(w.spec.manual_sync for w in allows)
    )

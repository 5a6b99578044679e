"""The write gate's answer for each kind of sync (scheduled, requested, rollout step, self-heal) under each rule:
the Lease, the app's selfHeal, manual sync, and a hold on the app, on the app on one cluster, or on the cluster."""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from agent import apps, config
from agent.sync import gate, holds

K = gate.SyncKind
UNIT = apps.Unit(name="web", source="default", path="web", inventory="app:web", namespace="ns", cluster="a")


def _gate(book: holds.Book | None = None, lease: str | None = None) -> gate.Gate:
    return gate.Gate(
        [
            gate.LeaseRule(lambda cluster: lease),
            gate.SelfHealRule(),
            gate.ManualRule(),
            gate.HoldRule(book or holds.Book()),
        ]
    )


@pytest.mark.parametrize("kind", list(K))
def test_an_app_with_nothing_against_it_may_write_for_every_kind_but_self_heal_needs_self_heal(kind: K) -> None:
    found = _gate().ask(UNIT, kind)
    assert found.allowed is (kind is not K.SELF_HEAL)
    assert _gate().ask(dataclasses.replace(UNIT, self_heal=True), kind).allowed


@pytest.mark.parametrize("kind", list(K))
def test_a_lease_not_held_refuses_every_kind(kind: K) -> None:
    found = _gate(lease="lease of cluster a is not held by r1").ask(dataclasses.replace(UNIT, self_heal=True), kind)
    assert (found.allowed, found.rule, found.reason) == (False, "lease", "lease of cluster a is not held by r1")


@pytest.mark.parametrize(("kind", "allowed"), [(K.SCHEDULED, False), (K.REQUESTED, True), (K.ROLLOUT, False),
                                               (K.SELF_HEAL, False)])  # fmt: skip
def test_a_manual_app_is_written_only_when_an_operator_asks(kind: K, allowed: bool) -> None:
    found = _gate().ask(dataclasses.replace(UNIT, auto=False, self_heal=True), kind)
    assert found.allowed is allowed
    if not allowed:
        assert found.rule == "manual"


@pytest.mark.parametrize("kind", list(K))
@pytest.mark.parametrize(("cluster", "app"), [("a", "web"), ("a", holds.CLUSTER)])
def test_a_hold_refuses_every_kind_naming_who_when_and_why(kind: K, cluster: str, app: str) -> None:
    book = holds.Book()
    book.change(cluster, app, holds.Hold("alice", "2026-12-06T12:00:00+00:00", "maintenance", app))
    found = _gate(book).ask(dataclasses.replace(UNIT, self_heal=True), kind)
    what = "cluster" if app == holds.CLUSTER else "app web"
    assert (found.allowed, found.rule) == (False, "suspended")
    assert found.reason == f"Suspended ({what}) by alice at 2026-12-06T12:00:00+00:00: maintenance"
    other = dataclasses.replace(UNIT, cluster="b", self_heal=True)  # held on a only
    assert _gate(book).ask(other, kind).allowed
    book.change(cluster, app, None)
    assert _gate(book).ask(dataclasses.replace(UNIT, self_heal=True), kind).allowed


def _windows(*specs: dict[str, object], at: str, labels: dict[str, str] | None = None) -> gate.Gate:
    parsed = tuple(config.SyncWindow.model_validate(s) for s in specs)
    now = datetime.datetime.fromisoformat(at)
    return gate.Gate([gate.WindowRule(lambda: parsed, lambda cluster: labels or {}, clock=lambda: now)])


def test_sync_windows_allow_deny_manual_sync_and_what_they_cover() -> None:
    """Argo CD's semantics on a fake clock: inside an allow window writes go, outside nothing automatic is written
    (the next opening named); a deny window wins over an allow window; an operator's sync only with manualSync."""
    allow = {"kind": "allow", "schedule": "0 22 * * *", "duration": "1h", "timeZone": "Europe/Berlin"}
    unit = dataclasses.replace(UNIT, self_heal=True)
    inside = _windows(allow, at="2026-12-06T21:30:00+00:00")  # 22:30 in Berlin
    assert all(inside.ask(unit, k).allowed for k in K)
    outside = _windows(allow, at="2026-12-06T20:30:00+00:00")
    found = outside.ask(unit, K.SCHEDULED)
    assert (found.allowed, found.rule) == (False, "syncWindow")
    assert found.reason == (
        'sync window: outside every allow window (allow "0 22 * * *" for 3600s (Europe/Berlin)); '
        "the next opens at 2026-12-06T22:00:00+01:00"
    )
    assert not outside.ask(unit, K.SELF_HEAL).allowed
    assert not outside.ask(unit, K.ROLLOUT).allowed
    assert not outside.ask(unit, K.REQUESTED).allowed  # no manualSync
    assert _windows({**allow, "manualSync": True}, at="2026-12-06T20:30:00+00:00").ask(unit, K.REQUESTED).allowed
    deny = {"kind": "deny", "schedule": "0 * * * *", "duration": "30m"}
    both = _windows(allow, deny, at="2026-12-06T21:10:00+00:00")
    found = both.ask(unit, K.SCHEDULED)
    assert found.reason == 'sync window: deny "0 * * * *" for 1800s (UTC) is open until 2026-12-06T21:30:00+00:00'
    assert _windows(allow, deny, at="2026-12-06T21:40:00+00:00").ask(unit, K.SCHEDULED).allowed
    elsewhere = _windows({**deny, "apps": ["team-b-*"]}, at="2026-12-06T21:10:00+00:00")
    assert elsewhere.ask(unit, K.SCHEDULED).allowed  # the window does not cover app web
    labelled = {**deny, "selector": {"env": "prod"}}
    assert not _windows(labelled, at="2026-12-06T21:10:00+00:00", labels={"env": "prod"}).ask(unit, K.SCHEDULED).allowed
    assert _windows(labelled, at="2026-12-06T21:10:00+00:00", labels={"env": "dev"}).ask(unit, K.SCHEDULED).allowed


def test_a_window_with_a_bad_schedule_or_time_zone_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"schedule '0 25 \* \* \*' in timeZone 'UTC'"):
        config.SyncWindow.model_validate({"kind": "allow", "schedule": "0 25 * * *", "duration": "1h"})
    with pytest.raises(ValueError, match=r"timeZone 'Mars/Olympus'"):
        config.SyncWindow.model_validate(
            {"kind": "deny", "schedule": "0 1 * * *", "duration": "1h", "timeZone": "Mars/Olympus"}
        )

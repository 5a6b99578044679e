"""The write gate's answer for each kind of sync (scheduled, requested, rollout step, self-heal) under each rule:
the Lease, the app's selfHeal, manual sync, and a hold on the app, on the app on one cluster, or on the cluster."""

from __future__ import annotations

import dataclasses

import pytest

from agent import apps
from agent.runtime import gate, holds

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

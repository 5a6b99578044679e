"""The status history: the last reconcile whole, the ones before it as summaries (memory does not grow with the
number of objects times the history length)."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from agent.runtime import state
from reconcilers import apply, engine, resources


def result(n: int, objects: int, cluster: str = "a") -> engine.ReconcileResult:
    entries = tuple(
        apply.ChangeSetEntry(resources.ResourceKey("", "ConfigMap", "ns", f"cm-{i}"), apply.Action.UNCHANGED)
        for i in range(objects)
    )
    started = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(minutes=n)
    return engine.ReconcileResult(cluster, resources.Revision(f"{n:040x}", "main"), entries, started, 0.5)


def test_history_keeps_the_last_reconcile_whole_and_summaries_before_it() -> None:
    s = state.AgentState(["a"])
    assert s.cluster_json("a") == {"name": "a", "lastSync": None, "history": []}
    for n in range(15):
        s.record(result(n, objects=100))
    last = s.last("a")
    assert last is not None
    assert last.revision is not None
    assert last.revision.sha == f"{14:040x}"
    out = s.cluster_json("a")
    assert out is not None
    assert len(out["lastSync"]["objects"]) == 100
    history = out["history"]
    assert len(history) == state.HISTORY
    assert [h["revision"]["sha"] for h in history] == [f"{n:040x}" for n in range(14, 4, -1)]  # newest first
    assert all("objects" not in h and h["counts"]["unchanged"] == 100 for h in history)
    # only the last result is held as an object; the others are their summaries
    assert s._last == {"a": last}
    assert all(isinstance(h, dict) for h in s._history["a"])


def test_forget_drops_the_last_result_too() -> None:
    s = state.AgentState(["a", "b"])
    s.record(result(1, objects=3, cluster="b"))
    s.forget("b")
    assert s.last("b") is None
    assert s.cluster_json("b") is None
    s.add("b")
    assert s.cluster_json("b") == {"name": "b", "lastSync": None, "history": []}


def test_counts_are_handed_out_as_copies_and_follow_a_replaced_result() -> None:
    """The counts are counted once per result (every status poll reads them), so no caller may change them."""
    r = result(1, objects=4)
    counts = r.counts
    counts["unchanged"] = 0
    assert r.counts["unchanged"] == 4
    assert r.ok
    failed = dataclasses.replace(
        r,
        entries=(
            *r.entries,
            apply.ChangeSetEntry(resources.ResourceKey("", "ConfigMap", "ns", "x"), apply.Action.FAILED),
        ),
    )
    assert failed.counts["failed"] == 1
    assert not failed.ok
    assert s_summary(state.AgentState(["a"]), failed)["lastSync"]["result"] == "Failed"


def s_summary(s: state.AgentState, r: engine.ReconcileResult) -> dict[str, Any]:
    s.record(r)
    out = s.cluster_json(r.cluster, objects=False)
    assert out is not None
    assert "objects" not in out["lastSync"]
    return out


def test_again_copies_a_result_with_new_fields_and_counts_it_again() -> None:
    r = result(1, objects=2)
    assert r.counts["unchanged"] == 2
    failed = apply.ChangeSetEntry(resources.ResourceKey("", "ConfigMap", "ns", "x"), apply.Action.FAILED)
    later = r.again(entries=(*r.entries, failed), duration=1.5)
    assert (later.duration, later.counts["failed"], later.ok) == (1.5, 1, False)
    assert (r.duration, r.counts["failed"], r.ok) == (0.5, 0, True)  # the original is untouched
    assert later == dataclasses.replace(r, entries=(*r.entries, failed), duration=1.5)
    with pytest.raises(TypeError, match="colour"):
        r.again(colour="red")


def test_the_summary_is_made_once_per_result_and_handed_out_as_a_copy() -> None:
    s = state.AgentState(["a"])
    s.record(result(1, objects=3))
    first = s.cluster_json("a", objects=False)
    assert first is not None
    first["lastSync"]["error"] = "changed by a caller"
    again = s.cluster_json("a", objects=False)
    assert again is not None
    assert again["lastSync"]["error"] is None
    s.record(result(2, objects=3))
    out = s.cluster_json("a", objects=False)
    assert out is not None
    assert [h["revision"]["sha"] for h in out["history"]] == [f"{2:040x}", f"{1:040x}"]
    assert out["lastSync"] == out["history"][0]


def test_again_with_the_same_entries_keeps_their_counts() -> None:
    r = result(1, objects=3)
    assert r.counts["unchanged"] == 3
    same = r.again(entries=r.entries, duration=2.0)
    assert same.__dict__.get("_counted") == r.counts
    assert same.counts == r.counts
    other = r.again(entries=r.entries[:1])
    assert "_counted" not in other.__dict__
    assert other.counts["unchanged"] == 1

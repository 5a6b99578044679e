"""The status history: the last reconcile whole, the ones before it as summaries (memory does not grow with the
number of objects times the history length)."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

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

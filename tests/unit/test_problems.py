"""Errors typed end to end: a result carries its Problem (kind, message, document, API status, fields), made by the
one mapping from exceptions (reconcilers.engine.problem), and the status JSON shows it."""

from __future__ import annotations

import dataclasses
import datetime

from agent.runtime import state
from reconcilers import engine, errors, resources

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def test_each_error_maps_once_to_a_typed_problem() -> None:
    bad = engine.problem(errors.ManifestError("apps/web.yaml", 2, "spec: not a mapping", "items[1]"), "c1")
    assert (bad.kind, bad.document) == (engine.ErrorKind.SOURCE, "apps/web.yaml#2.items[1]")
    assert bad.message == "apps/web.yaml#2.items[1]: spec: not a mapping"
    whole = engine.problem(errors.ManifestError("apps/web.yaml", None, "unreadable"), "c1")
    assert whole.document == "apps/web.yaml"
    refused = engine.problem(errors.ApiError(422, "Invalid", "field is immutable", ("spec.selector",)), "c1")
    assert (refused.kind, refused.status, refused.fields) == (engine.ErrorKind.CLUSTER, 422, ("spec.selector",))
    assert refused.message == "cluster c1: 422 Invalid: field is immutable"
    assert engine.problem(errors.ClusterUnreachableError("refused"), "c1").status is None
    assert engine.problem(errors.CancelledError("lease lost"), "c1").message == "cancelled: lease lost"
    assert engine.problem(errors.ConfigError("agent.yaml: apps[0].path: missing"), "c1").kind is engine.ErrorKind.CONFIG
    assert engine.problem(errors.GitOpsError("odd"), "c1").kind is engine.ErrorKind.INTERNAL
    # the mapping exists once: failure() is its kind and message
    assert engine.failure(errors.ApiError(403, "Forbidden", "no"), "c1") == (
        engine.ErrorKind.CLUSTER,
        "cluster c1: 403 Forbidden: no",
    )


def test_a_result_always_carries_its_problem_and_the_status_shows_it() -> None:
    plain = engine.ReconcileResult("c1", None, (), NOW, 0.1, error="it broke", error_kind=engine.ErrorKind.HOOK)
    assert plain.problem == engine.Problem(engine.ErrorKind.HOOK, "it broke")
    assert engine.ReconcileResult("c1", None, (), NOW, 0.1).problem is None
    typed = engine.problem(errors.ManifestError("a.yaml", 0, "bad"), "c1")
    result = engine.ReconcileResult("c1", None, (), NOW, 0.1, False, typed.message, typed.kind, problem=typed)
    shown = state.result_json(result, objects=False)
    assert shown["problem"] == {"kind": "source", "message": "a.yaml#0: bad", "document": "a.yaml#0"}
    assert (shown["error"], shown["errorKind"]) == ("a.yaml#0: bad", "source")
    # a copy with another error carries that error's problem, one without an error none
    again = result.again(error="later", error_kind=engine.ErrorKind.WAVE)
    assert again.problem == engine.Problem(engine.ErrorKind.WAVE, "later")
    assert result.again(error=None, error_kind=None).problem is None
    assert result.again(duration=0.2).problem is typed
    replaced = dataclasses.replace(result, error="cancelled: stop", error_kind=engine.ErrorKind.CANCELLED)
    assert replaced.problem == engine.Problem(engine.ErrorKind.CANCELLED, "cancelled: stop")
    assert "problem" not in state.result_json(engine.ReconcileResult("c1", None, (), NOW, 0.1), objects=False)


def test_an_api_error_names_the_fields_in_the_status() -> None:
    found = engine.problem(errors.ApiError(422, "Invalid", "field is immutable", ("spec.selector",)), "c1")
    result = engine.ReconcileResult(
        "c1", resources.Revision("a" * 40, "main"), (), NOW, 0.1, False, found.message, found.kind, problem=found
    )
    assert state.result_json(result, objects=False)["problem"] == {
        "kind": "cluster",
        "message": "cluster c1: 422 Invalid: field is immutable",
        "status": 422,
        "fields": ["spec.selector"],
    }

"""Retries of failed apps (Argo CD's ``syncPolicy.retry``): the backoff doubles up to its cap, the count is per
revision and spent after ``limit``, a success or a new revision starts anew, and apps that wait, were cancelled,
were held by the gate or whose cluster was unreachable are not retried."""

from __future__ import annotations

import datetime

from agent import config
from agent.runtime import retries, trace
from reconcilers import engine, resources

RULE = config.Retry.model_validate({"limit": 3, "backoff": {"duration": "5s", "factor": 2, "maxDuration": "15s"}})
NOW = datetime.datetime(2026, 12, 6, tzinfo=datetime.UTC)


def _app(
    app: str, sha: str, error: str | None = "boom", kind: engine.ErrorKind | None = None, held: str = ""
) -> engine.ReconcileResult:
    return engine.ReconcileResult(
        "a", resources.Revision(sha, "main"), (), NOW, 0.0, error=error, error_kind=kind, app=app, held=held
    )


def _cluster(*apps: engine.ReconcileResult) -> engine.ReconcileResult:
    return engine.ReconcileResult("a", None, (), NOW, 0.0, apps=tuple(apps))


def test_the_backoff_doubles_to_its_cap_the_count_is_spent_and_a_new_revision_or_success_starts_anew() -> None:
    r = retries.Retries()
    delays = []
    for _ in range(4):
        found = r.after(_cluster(_app("web", "s1"), _app("ok", "s1", error=None)), lambda a: RULE, 100.0)
        delays.append([(p.attempt, p.delay) for p in found])
    assert delays == [[(1, 5.0)], [(2, 10.0)], [(3, 15.0)], []]  # capped at 15 s, spent after 3
    assert r.snapshot() == {}
    found = r.after(_cluster(_app("web", "s2")), lambda a: RULE, 200.0)  # a new revision: from 1 again
    assert [(p.attempt, p.due) for p in found] == [(1, 205.0)]
    assert r.due() == 205.0
    assert r.snapshot()["web"].text(202.0) == "Retrying (attempt 1 of 3, next in 3s): boom"
    r.after(_cluster(_app("web", "s2", error=None)), lambda a: RULE, 206.0)  # a success
    assert r.snapshot() == {}
    assert r.after(_cluster(_app("web", "s2")), lambda a: RULE, 207.0)[0].attempt == 1


def test_waiting_cancelled_held_unreachable_and_unconfigured_apps_are_not_retried() -> None:
    r = retries.Retries()
    found = r.after(
        _cluster(
            _app("waits", "s", kind=engine.ErrorKind.WAITING),
            _app("cancelled", "s", kind=engine.ErrorKind.CANCELLED),
            _app("unreachable", "s", kind=engine.ErrorKind.CLUSTER),
            _app("held", "s", held="Suspended (app held) by x at t"),
            _app("off", "s"),
        ),
        lambda a: config.Retry() if a == "off" else RULE,
        0.0,
    )
    assert found == []
    unreachable = engine.ReconcileResult("a", None, (), NOW, 0.0, error="down", error_kind=engine.ErrorKind.CLUSTER)
    assert r.after(unreachable, lambda a: RULE, 0.0) == []


def test_trace_reads_objects_as_kubectl_names_them() -> None:
    assert trace.parse("Deployment.apps/web/frontend") == resources.ResourceKey("apps", "Deployment", "web", "frontend")
    assert trace.parse("Namespace/web") == resources.ResourceKey("", "Namespace", "", "web")
    import pytest

    from reconcilers import errors

    with pytest.raises(errors.ConfigError, match=r"give Kind\[\.group\]/namespace/name"):
        trace.parse("ConfigMap")

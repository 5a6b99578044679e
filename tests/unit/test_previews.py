"""The pull request preview's comment and its posting, against loopback stand-ins of GitHub's and GitLab's APIs
(tests/scmservers.py): the comment is found again by its marker (on a later page too) and edited in place, the
commit status is each provider's, a body is kept under GitHub's 65,536 characters, and a 500, a rate limit and an
API that refuses the token each end in a clear error (retried only when asking again may pass)."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest

from agent import config
from agent.appsets import preview, previewpost, pullrequests, scm
from agent.runtime import previews
from reconcilers import diff, engine, resources
from tests.scmservers import ScmServer

TOKEN = "glpat-preview-token-2207"
SHA = "089d92cbf9ff857a39e6feccd32798ca700fb958"


@pytest.fixture(params=["github", "gitlab"])
def server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[ScmServer]:
    monkeypatch.setenv("SCM_TOKEN", TOKEN)
    found = ScmServer(request.param, token=TOKEN, repository="acme/shop")
    yield found
    found.stop()


def _spec(server: ScmServer) -> config.PullRequestGenerator:
    if server.kind == "github":
        provider = {"github": {"owner": "acme", "repo": "shop", "api": server.url, "token": {"env": "SCM_TOKEN"}}}
    else:
        provider = {"gitlab": {"project": "acme/shop", "api": server.url, "token": {"env": "SCM_TOKEN"}}}
    return config.PullRequestGenerator.model_validate({**provider, "preview": {"comment": True}})


def _result(
    cluster: str, app: str, entries: list[engine.ChangeSetEntry], error: str | None = None
) -> engine.ReconcileResult:
    now = datetime.datetime.now(datetime.UTC)
    kind = engine.ErrorKind.SOURCE if error else None
    one = engine.ReconcileResult(cluster, None, tuple(entries), now, 0.1, dry_run=True, app=app, error=error,
                                 error_kind=kind)  # fmt: skip
    return engine.ReconcileResult(cluster, None, tuple(entries), now, 0.1, dry_run=True, apps=(one,))


def _entry(name: str, action: engine.Action, unified: str = "") -> engine.ChangeSetEntry:
    key = resources.ResourceKey("", "ConfigMap", "shop", name)
    changed = diff.ObjectDiff(unified, (".data",)) if unified else None
    return engine.ChangeSetEntry(key, action, origin="app/cm.yaml#0", diff=changed)


def test_the_comment_is_created_once_then_edited_in_place_and_found_on_a_later_page(server: ScmServer) -> None:
    server.open(7, "feat/x", SHA)
    poster = previewpost.Poster(_spec(server))
    for n in range(3):  # others' comments first: the preview's lands on page 2 (pages of 2)
        assert poster.comment(7, f"<!-- someone else {n} -->", f"<!-- someone else {n} -->\nhello") == "created"
    marker = preview.marker("shop")
    assert poster.comment(7, marker, marker + "\nfirst") == "created"
    assert poster.comment(7, marker, marker + "\nsecond") == "edited"
    assert poster.comment(7, marker, marker + "\nsecond") == "unchanged"
    bodies = [c["body"] for c in server.comments[7]]
    assert bodies[-1] == marker + "\nsecond"
    assert len(bodies) == 4
    edit = "PATCH" if server.kind == "github" else "PUT"
    assert [m for m, _ in server.writes] == ["POST"] * 4 + [edit]


def test_the_commit_status_is_each_providers(server: ScmServer) -> None:
    poster = previewpost.Poster(_spec(server))
    poster.status(SHA, "failure", "x" * 300, preview.CONTEXT, "https://agent.example")
    (posted,) = server.statuses
    assert posted["sha"] == SHA
    assert posted["target_url"] == "https://agent.example"
    if server.kind == "github":
        assert (posted["state"], posted["context"], len(posted["description"])) == ("failure", preview.CONTEXT, 140)
    else:
        assert (posted["state"], posted["name"]) == ("failed", preview.CONTEXT)


def test_faults_are_clear_and_only_those_that_may_pass_are_retried(server: ScmServer) -> None:
    server.open(7, "feat/x", SHA)
    spec = _spec(server)
    server.status = 500
    with pytest.raises(scm.ApiError, match="answered 500") as failed:
        previewpost.Poster(spec).comment(7, "<!-- m -->", "<!-- m -->\nbody")
    assert failed.value.retry
    server.status = 0
    server.rate_limit = 60.0
    poster = previewpost.Poster(spec)
    with pytest.raises(scm.ApiError, match="rate limited") as limited:
        poster.status(SHA, "success", "ok", preview.CONTEXT)
    assert not limited.value.retry
    asked = len(server.requests)
    with pytest.raises(scm.ApiError, match="not asked again before"):
        poster.status(SHA, "success", "ok", preview.CONTEXT)
    assert len(server.requests) == asked  # waited out: not sent
    server.rate_limit = 0.0
    server.token = "another"
    with pytest.raises(scm.ApiError, match="answered 401") as refused:
        previewpost.Poster(spec).status(SHA, "success", "ok", preview.CONTEXT)
    assert not refused.value.retry
    assert TOKEN not in str(refused.value)


def test_a_5xx_is_retried_with_backoff_then_posted(server: ScmServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(previews, "BACKOFF", (0.1, 0.1, 0.1))
    server.open(7, "feat/x", SHA)
    poster = previewpost.Poster(_spec(server))
    queue = previews.Previews(lambda: config.AgentConfig.model_validate({}), lambda n: None, dict,
                              lambda r: None, threading.Event())  # type: ignore[arg-type,return-value]  # fmt: skip
    server.status = 502
    threading.Timer(0.15, lambda: setattr(server, "status", 0)).start()
    assert queue._send(lambda: poster.comment(7, "<!-- m -->", "<!-- m -->\nbody")) == "created"
    server.status = 502
    with pytest.raises(scm.ApiError, match="answered 502"):
        queue._send(lambda: poster.comment(7, "<!-- m -->", "<!-- m -->\nagain"))


def test_render_tables_every_app_and_cluster_and_keeps_under_the_limit() -> None:
    big = "\n".join(f"+  line{i}: {'v' * 60}" for i in range(400))  # about 28,000 characters per diff
    results = [
        _result("prod", "shop", [_entry(f"cm-{i}", engine.Action.CONFIGURED, big) for i in range(5)]),
        _result("stage", "sho|p", [_entry("a", engine.Action.UNCHANGED)], error="app/x.yaml: <bad> YAML"),
    ]
    found = preview.render("shop", 7, SHA, results)
    assert len(found.body) <= preview.LIMIT
    assert found.body.startswith(preview.marker("shop") + "\n")
    assert "| shop | prod | 0 | 5 | 0 | 0 |  |" in found.body
    assert "| sho\\|p | stage | 0 | 0 | 0 | 1 | source: app/x.yaml: &lt;bad&gt; YAML |" in found.body
    assert "3 more object(s) left out" in found.body
    assert f"gitops-agent diff --revision {SHA}" in found.body
    assert (found.state, found.changes, found.failed) == ("failure", 5, 1)
    fine = preview.render("shop", 7, SHA, results[:1], limit=10**7)
    assert (fine.state, "left out" in fine.body) == ("success", False)
    assert len(preview.render("shop", 7, SHA, [], ["source default is not fetched yet"]).description) <= 140


def test_a_diff_holding_backticks_keeps_its_fence() -> None:
    found = preview.render("shop", 7, SHA, [_result("c", "a", [_entry("x", engine.Action.CREATED, "+ s: ```x```")])])
    assert "````diff\n+ s: ```x```\n````" in found.body


def test_pages_refuses_a_next_page_on_another_host() -> None:
    class Resp:
        status = 200
        data = b"[]"
        headers: ClassVar[dict[str, str]] = {"Link": '<https://elsewhere.example/x?page=2>; rel="next"'}

    with pytest.raises(Exception, match="another host"):
        pullrequests.pages("https://api.example/x", Resp(), "github")

"""The pull request generator against loopback stand-ins of GitHub's and GitLab's APIs (tests/scmservers.py):
pages followed by their Link header, conditional requests by ETag, tokens sent as each service wants them, labels
filtered, Argo CD's parameters; a 401, a 500, a rate limit and an API that never answers each fail only the app
set, with the reason, and a rate limit is waited out without asking again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from agent import config
from agent.appsets import expand, pullrequests
from tests.scmservers import ScmServer

TOKEN = "ghp-secret-token-7731"
SHA = "089d92cbf9ff857a39e6feccd32798ca700fb958"


def _server(kind: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ScmServer]:
    monkeypatch.setenv("SCM_TOKEN", TOKEN)
    server = ScmServer(kind, token=TOKEN, repository="acme/shop")
    yield server
    server.stop()


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScmServer]:
    yield from _server("github", monkeypatch)


@pytest.fixture
def gitlab(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScmServer]:
    yield from _server("gitlab", monkeypatch)


def _spec(server: ScmServer, **extra: Any) -> config.PullRequestGenerator:
    if server.kind == "github":
        provider = {"github": {"owner": "acme", "repo": "shop", "api": server.url, "token": {"env": "SCM_TOKEN"}}}
    else:
        provider = {"gitlab": {"project": "acme/shop", "api": server.url, "token": {"env": "SCM_TOKEN"}}}
    for key, value in extra.items():
        next(iter(provider.values()))[key] = value
    return config.PullRequestGenerator.model_validate(provider)


def _app_set(server: ScmServer, go: bool = True, **extra: Any) -> dict[str, Any]:
    spec = _spec(server, **extra).model_dump(mode="json", by_alias=True, exclude_defaults=True)
    dot = "." if go else ""
    return {
        "name": "previews",
        "goTemplate": go,
        "goTemplateOptions": ["missingkey=error"] if go else [],
        "generators": [{"pullRequest": spec}],
        "template": {
            "name": f"pr-{{{{{dot}number}}}}",
            "path": "app",
            "ref": f"{{{{{dot}head_sha}}}}",
            "namespace": f"pr-{{{{{dot}number}}}}-{{{{{dot}branch_slug}}}}",
        },
    }


def _generate(app_set: dict[str, Any]) -> expand.Generation:
    cfg = config.AgentConfig.model_validate(
        {
            "source": {"url": "/tmp/nowhere"},
            "clusters": [{"name": "c", "server": "https://10.0.0.1", "token": {"env": "SCM_TOKEN"}}],
            "appSets": [app_set],
        }
    )
    return expand.generate(cfg, {})


@pytest.mark.parametrize("kind", ["github", "gitlab"])
def test_open_pull_requests_become_apps_at_their_head(kind: str, request: pytest.FixtureRequest) -> None:
    server: ScmServer = request.getfixturevalue(kind)
    server.open(7, "feat/New_Cart", SHA, labels=("preview",))
    server.open(8, "fix/typo", "1" * 40)  # no label: left out
    server.open(9, "feat/search", "2" * 40, labels=("preview", "team-a"))

    generation = _generate(_app_set(server, labels=["preview"]))

    assert generation.results["previews"].error is None
    found = [(a.name, a.ref, a.namespace) for a in generation.config.apps]
    assert found == [("pr-7", SHA, "pr-7-feat-new-cart"), ("pr-9", "2" * 40, "pr-9-feat-search")]
    assert len(server.requests) == (1 if kind == "gitlab" else 2)  # GitLab filters labels itself: one page
    for _, headers in server.requests:
        assert TOKEN not in str(generation.results)
        if kind == "github":
            assert headers["Authorization"] == f"Bearer {TOKEN}"
            assert headers["X-GitHub-Api-Version"] == "2022-11-28"
        else:
            assert headers["PRIVATE-TOKEN"] == TOKEN


def test_parameters_are_argocds(github: ScmServer) -> None:
    github.open(7, "feat/New_Cart", SHA, labels=("preview",), title="New cart")
    spec = _spec(github)
    found = pullrequests.Lister(spec).fetch()
    assert found == [pullrequests.PullRequest(7, "New cart", "feat/New_Cart", "main", SHA, ("preview",), "octocat")]
    app_set = _app_set(github)
    app_set["template"]["namespace"] = "x"
    app_set["template"]["helm"] = {
        "values": {
            k: "{{." + k + "}}"
            for k in ("number", "title", "branch", "branch_slug", "target_branch", "target_branch_slug")
        }
        | {"sha": "{{.head_short_sha}}", "sha7": "{{.head_short_sha_7}}", "who": "{{.author}}"}
        | {"labels": '{{ join "," .labels }}'}
    }
    (app,) = _generate(app_set).config.apps
    assert app.helm is not None
    assert app.helm.values == {
        "number": "7",
        "title": "New cart",
        "branch": "feat/New_Cart",
        "branch_slug": "feat-new-cart",
        "target_branch": "main",
        "target_branch_slug": "main",
        "sha": SHA[:8],
        "sha7": SHA[:7],
        "who": "octocat",
        "labels": "preview",
    }


def test_pages_are_asked_again_by_etag(github: ScmServer) -> None:
    for n in (1, 2, 3):
        github.open(n, f"b{n}", str(n) * 40)
    lister = pullrequests.Lister(_spec(github))
    first = lister.fetch()
    assert [p.number for p in first] == [1, 2, 3]
    assert len(github.requests) == 2  # two pages of two
    assert lister.fetch() == first
    again = github.requests[2:]
    assert [h.get("If-None-Match") is not None for _, h in again] == [True, True]
    github.close(2)
    assert [p.number for p in lister.fetch()] == [1, 3]


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"token": "wrong"}, "the API answered 401: Bad credentials"),
        ({"status": 500}, "the API answered 500: Server Error"),
        ({"rate_limit": 120}, "rate limited (403) until"),
    ],
    ids=["401", "500", "rate-limit"],
)
def test_a_failing_api_fails_the_app_set_with_the_reason(
    github: ScmServer, fault: dict[str, Any], message: str
) -> None:
    github.open(7, "feat/a", SHA)
    for key, value in fault.items():
        setattr(github, key, value)
    lister = pullrequests.Lister(_spec(github))
    with pytest.raises(Exception, match=message.replace("(", r"\(").replace(")", r"\)")) as raised:
        lister.fetch()
    assert TOKEN not in str(raised.value)
    generation = _generate(_app_set(github))
    error = generation.results["previews"].error or ""
    assert message in error
    assert generation.config.apps == ()
    assert generation.config.app_set_errors == {"previews": error}
    if "rate_limit" in fault:  # waited out: not asked again before the reset the headers gave
        asked = len(github.requests)
        with pytest.raises(Exception, match="not asked again before"):
            lister.fetch()
        assert len(github.requests) == asked


def test_an_api_that_never_answers_times_out(github: ScmServer) -> None:
    github.hang = True
    with pytest.raises(Exception, match="no answer within"):
        pullrequests.Lister(_spec(github), timeout=1.0).fetch()


def test_a_listing_of_many_slow_pages_is_bounded_as_a_whole(github: ScmServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(1, 6):
        github.open(n, f"b{n}", str(n) * 40)
    github.page_size, github.delay = 1, 0.4  # five pages, 0.4 s each
    monkeypatch.setattr(pullrequests, "LIST_TIMEOUT", 0.5)
    started = time.monotonic()
    with pytest.raises(Exception, match=r"no answer within|the list is incomplete"):
        pullrequests.Lister(_spec(github), timeout=1.0).fetch()  # the listing's bound: max(1.0, 0.5) s
    assert time.monotonic() - started < 1.5
    assert len(github.requests) < 5

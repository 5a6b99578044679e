"""Notifications from a running agent against a real cluster, to loopback receivers that check requests as the
real services do (tests/receivers.py): each event reaches each receiver that wants it once, in order; commit
statuses go pending then success or failure; a receiver that fails three times gets it once, retried; one that
hangs never holds a sync up and the event is dropped after the retry budget, counted; no secret in any payload
or log line."""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

from tests.conftest import GitRepo, cluster_entry, dynamic_client, live_object, wait_until
from tests.e2e.test_faults import Agent, cm
from tests.e2e.test_push_to_deploy import request
from tests.e2e.test_run_status import free_port
from tests.receivers import Receiver

SECRETS = {
    "AUDIT_HMAC": "audit-hmac-3f9d2c",
    "GH_TOKEN": "gh-token-8b1e4a",
    "GL_TOKEN": "gl-token-5c7f0d",
    "API_TOKEN": "substituted-7e2b9a",
}


def test_events_and_commit_statuses_reach_each_receiver_once_in_order(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    (tc,) = clusters(1)
    hook = Receiver("webhook", secret=SECRETS["AUDIT_HMAC"])
    slack = Receiver("slack")
    github = Receiver("github", token=SECRETS["GH_TOKEN"], repository="acme/fleet")
    gitlab = Receiver("gitlab", token=SECRETS["GL_TOKEN"], repository="acme/platform/fleet")
    env = {**SECRETS, "SLACK_URL": slack.url + "/services/T0/B0/secret-path"}
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    git_repo.write_objects("app/app.yaml", ns, cm("app", namespace))
    rev1 = git_repo.commit("rev 1")
    port = free_port()
    config = make_config(
        git_repo,
        [{**cluster_entry(tc, "a", ["app"], namespace), "substitute": True}],
        source={"url": str(git_repo.path), "ref": "main", "cacheDir": str(tmp_path / "cache"), "interval": "1s"},
        sync={"interval": "1h", "selfHeal": True},
        server={"listen": f"127.0.0.1:{port}"},
        variables={"API_TOKEN": {"env": "API_TOKEN"}},
        notifications=[
            {"name": "audit", "type": "webhook", "url": hook.url + "/gitops", "secret": {"env": "AUDIT_HMAC"}},
            {"name": "ops-slack", "type": "slack", "url": {"env": "SLACK_URL"}, "events": ["SyncFailed"]},
            {
                "name": "gh",
                "type": "github",
                "token": {"env": "GH_TOKEN"},
                "apiURL": github.url,
                "repository": "acme/fleet",
            },
            {
                "name": "gl",
                "type": "gitlab",
                "token": {"env": "GL_TOKEN"},
                "apiURL": gitlab.url,
                "repository": "acme/platform/fleet",
                "targetURL": f"http://127.0.0.1:{port}/",
            },
        ],
    )
    agent = Agent(config, tmp_path / "agent.log", env=env)

    def hooked() -> list[str]:
        return [a["body"]["type"].removeprefix("io.gitops-agent.") for a in hook.accepted]

    def states(receiver: Receiver, sha: str) -> list[str]:
        return [a["body"]["state"] for a in receiver.accepted if a["path"].endswith(sha)]

    try:
        agent.wait_ready()
        wait_until(lambda: hooked() == ["SyncSucceeded"], timeout=30)
        wait_until(lambda: states(github, rev1) == ["pending", "success"], timeout=30)
        wait_until(lambda: states(gitlab, rev1) == ["pending", "success"], timeout=30)

        dynamic_client(tc).resources.get(api_version="v1", kind="ConfigMap").patch(
            name="app",
            namespace=namespace,
            body={"data": {"v": "edited"}},
            content_type="application/merge-patch+json",
            field_manager="intruder",
        )
        wait_until(lambda: hooked() == ["SyncSucceeded", "DriftCorrected"], timeout=30)

        # rejected by the API server, whose message quotes the invalid label value: a substituted secret
        labels = {"token": "${API_TOKEN} is not a label value"}
        bad = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "bad", "namespace": namespace, "labels": labels},
        }
        git_repo.write_objects("app/app.yaml", ns, cm("app", namespace), bad)
        rev2 = git_repo.commit("rejected by the API server")
        wait_until(lambda: states(github, rev2) == ["pending", "failure"], timeout=30)
        wait_until(lambda: states(gitlab, rev2) == ["pending", "failed"], timeout=30)

        moved = tmp_path / "moved"
        git_repo.path.rename(moved)
        wait_until(lambda: hooked()[-1:] == ["SourceFailed"], timeout=30)
        moved.rename(git_repo.path)
        wait_until(lambda: hooked()[-1:] == ["SourceRecovered"], timeout=30)
        time.sleep(3)  # anything late or repeated would show now
        assert hooked() == ["SyncSucceeded", "DriftCorrected", "SyncFailed", "SourceFailed", "SourceRecovered"]
        assert [a["body"]["text"].split(" on ")[0] for a in slack.accepted] == ["SyncFailed"]
        told = slack.accepted[0]["body"]["blocks"][0]["text"]["text"]
        assert "bad" in told
        assert "*** is not a label value" in told  # the API server quoted the value: masked
        failure = next(a["body"] for a in github.accepted if a["body"]["state"] == "failure")
        assert failure["context"] == "gitops-agent/a"
        assert "bad" in failure["description"]
        assert gitlab.accepted[0]["body"]["target_url"] == f"http://127.0.0.1:{port}/"
        assert gitlab.accepted[0]["body"]["name"] == "gitops-agent/a"
        for r in (hook, slack, github, gitlab):
            assert r.problems == [], r.problems
        metrics = request(f"{agent.base}/metrics")[1]
        assert 'gitops_agent_notifications_total{provider="audit",result="sent"} 5.0' in metrics
    finally:
        agent.stop()
        for r in (hook, slack, github, gitlab):
            r.close()
    bodies = [json.dumps(a["body"]) for r in (hook, slack, github, gitlab) for a in r.accepted]
    log = agent.log.read_text()
    for value in [*SECRETS.values(), "secret-path"]:  # tokens travel in headers only, never in a body or a log
        for text in [*bodies, log]:
            assert value not in text, f"a secret leaked: {value}"
    assert hook.url not in log
    assert slack.url not in log


def test_a_failing_receiver_is_retried_and_a_hanging_one_never_holds_a_sync(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    (tc,) = clusters(1)
    flaky = Receiver("webhook", secret="s", fail_first=3)
    stuck = Receiver("webhook", secret="s", hang=True)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    git_repo.write_objects("app/app.yaml", ns, cm("app", namespace))
    git_repo.commit()
    port = free_port()
    config = make_config(
        git_repo,
        [cluster_entry(tc, "a", ["app"], namespace)],
        sync={"interval": "1h"},
        server={"listen": f"127.0.0.1:{port}"},
        notifications=[
            {"name": "flaky", "type": "webhook", "url": flaky.url, "secret": {"env": "HMAC"}},
            {"name": "stuck", "type": "webhook", "url": stuck.url, "secret": {"env": "HMAC"}, "timeout": "1s"},
        ],
    )
    agent = Agent(config, tmp_path / "agent.log", env={"HMAC": "s"})
    try:
        started = time.monotonic()
        agent.wait_ready()
        wait_until(lambda: agent.cluster("a")["syncStatus"] == "Synced", timeout=20)
        assert time.monotonic() - started < 20  # the hanging receiver holds nothing up
        assert live_object(tc, "v1", "ConfigMap", "app", namespace) is not None
        wait_until(lambda: len(flaky.accepted) == 1, timeout=30)  # 500, 500, 500, then delivered once

        def counted() -> str:
            return request(f"{agent.base}/metrics")[1]

        wait_until(lambda: 'provider="stuck",result="dropped"} 1.0' in counted(), timeout=40)
        metrics = counted()
        assert 'gitops_agent_notifications_total{provider="flaky",result="retried"} 3.0' in metrics
        assert 'gitops_agent_notifications_total{provider="flaky",result="sent"} 1.0' in metrics
        assert 'gitops_agent_notifications_total{provider="stuck",result="retried"} 3.0' in metrics
        assert stuck.requests == 4
        assert flaky.requests == 4
        assert "notifications stuck:" in agent.log.read_text()
    finally:
        agent.stop()
        flaky.close()
        stuck.close()


def test_an_aggregated_commit_status_waits_for_every_cluster() -> None:
    """``commitStatus: aggregated``: one context for the revision, pending once, success once every cluster is
    Synced and Healthy, failure as soon as one fails (and nothing after it)."""
    import os

    from agent import config
    from agent.runtime import metrics, notify

    receiver = Receiver("github", token="t", repository="acme/fleet")
    os.environ["AGG_TOKEN"] = "t"
    spec = config.Notification.model_validate(
        {
            "name": "gh",
            "type": "github",
            "token": {"env": "AGG_TOKEN"},
            "apiURL": receiver.url,
            "repository": "acme/fleet",
            "commitStatus": "aggregated",
        }
    )
    provider = notify.Provider(spec, "/srv/fleet", "i", metrics.Metrics())
    provider.start()
    every = frozenset({"a", "b"})
    good, bad = "a" * 40, "b" * 40
    try:
        for cluster, sha, state in [
            ("a", good, "pending"),
            ("b", good, "pending"),
            ("a", good, "success"),
            ("a", bad, "pending"),
            ("b", good, "success"),
            ("a", bad, "failure"),
            ("b", bad, "pending"),
            ("b", bad, "success"),
        ]:
            provider.status(cluster, sha, state, f"{cluster} {state}", every)
        wait_until(lambda: len(receiver.accepted) == 4, timeout=15)
        time.sleep(3)
        got = [(a["path"][-40:], a["body"]["state"], a["body"]["context"]) for a in receiver.accepted]
        assert sorted(got) == sorted(
            [
                (good, "pending", "gitops-agent"),
                (good, "success", "gitops-agent"),
                (bad, "pending", "gitops-agent"),
                (bad, "failure", "gitops-agent"),
            ]
        )
        assert receiver.problems == []
    finally:
        provider.stop()
        receiver.close()


def test_microsoft_teams_gets_adaptive_cards_retried_like_the_others(
    clusters: Any, git_repo: GitRepo, make_config: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    """A Teams workflow webhook (``type: msteams``, one module and one registry line) gets each event as an
    Adaptive Card its receiver accepts, after two 500s retried; its URL, a secret, is in no log line."""
    (tc,) = clusters(1)
    teams = Receiver("msteams", fail_first=2)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    git_repo.write_objects("app/app.yaml", ns, cm("app", namespace))
    git_repo.commit()
    port = free_port()
    link = f"http://127.0.0.1:{port}/"
    config = make_config(
        git_repo,
        [cluster_entry(tc, "a", ["app"], namespace)],
        sync={"interval": "1h"},
        server={"listen": f"127.0.0.1:{port}"},
        notifications=[{"name": "team-chat", "type": "msteams", "url": {"env": "TEAMS_URL"}, "targetURL": link}],
    )
    url = teams.url + "/workflows/abc/triggers/manual/paths/invoke?sig=teams-secret-9c1f"
    agent = Agent(config, tmp_path / "agent.log", env={"TEAMS_URL": url})
    try:
        agent.wait_ready()
        wait_until(lambda: len(teams.accepted) == 1, timeout=30)  # 500, 500, then delivered once
        card = teams.accepted[0]["body"]["attachments"][0]["content"]
        assert card["body"][0]["text"] == "SyncSucceeded on a"
        facts = {f["title"]: f["value"] for f in card["body"][2]["facts"]}
        assert facts["Cluster"] == "a"
        assert len(facts["Revision"]) == 12
        assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open status", "url": link}]
        assert teams.requests == 3
        assert teams.problems == []
        metrics = request(f"{agent.base}/metrics")[1]
        assert 'gitops_agent_notifications_total{provider="team-chat",result="retried"} 2.0' in metrics
        assert 'gitops_agent_notifications_total{provider="team-chat",result="sent"} 1.0' in metrics
    finally:
        agent.stop()
        teams.close()
    assert "teams-secret-9c1f" not in agent.log.read_text()

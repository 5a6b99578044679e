"""App sets against a real test cluster and a real git repository: a git directory generator's apps come and go
with the repository's folders, pruned or kept as ``sync.prune`` and ``preserveResourcesOnDeletion`` say; a
broken app set prunes nothing; the running agent generates again on the next fetch."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
import yaml

from agent import cli
from tests.conftest import CORPORA, GitRepo, live_object, wait_until
from tests.e2e.test_faults import Agent
from tests.e2e.test_push_to_deploy import request, signed
from tests.e2e.test_run_status import free_port
from tests.scmservers import ScmServer


def _cm(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"team": name}}


def _app_set(namespace: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "teams",
        "goTemplate": True,
        "goTemplateOptions": ["missingkey=error"],
        "generators": [{"git": {"directories": [{"path": "teams/*"}, {"path": "teams/legacy", "exclude": True}]}}],
        "template": {
            "name": "team-{{.path.basename}}",
            "path": "{{.path.path}}",
            "namespace": namespace,
            "createNamespace": True,
        },
        **extra,
    }


def _sync(config: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], str]:
    capsys.readouterr()
    code = cli.main(["sync", "--config", str(config), "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def _actions(result: dict[str, Any]) -> dict[str, dict[str, str]]:
    """app -> ConfigMap name -> action (the Namespace createNamespace makes left out)."""
    return {
        a["app"]: {o["name"]: o["action"] for o in a["objects"] if o["kind"] == "ConfigMap"} for a in result["apps"]
    }


def _exists(tc: Any, name: str, namespace: str) -> bool:
    return live_object(tc, "v1", "ConfigMap", name, namespace) is not None


@pytest.mark.parametrize(
    ("prune", "preserve", "pruned"),
    [(True, False, True), (False, False, False), (True, True, False)],
    ids=["prune", "no-prune", "preserve"],
)
def test_folders_come_and_go_as_apps(
    git_repo: GitRepo,
    clusters: Any,
    make_config: Any,
    namespace: str,
    capsys: pytest.CaptureFixture[str],
    prune: bool,
    preserve: bool,
    pruned: bool,
) -> None:
    (tc,) = clusters(1)
    for team in ("a", "b", "legacy"):
        git_repo.write_objects(f"teams/{team}/cm.yaml", _cm(f"cm-{team}"))
    git_repo.commit("teams a and b")
    app_set = _app_set(namespace, preserveResourcesOnDeletion=preserve)
    cluster = {"name": "c", "kubeconfig": str(tc.kubeconfig)}
    config = make_config(git_repo, [cluster], appSets=[app_set], sync={"prune": prune})

    code, results, _ = _sync(config, capsys)
    assert code == 0, results
    assert _actions(results["c"]) == {"team-a": {"cm-a": "created"}, "team-b": {"cm-b": "created"}}
    assert not _exists(tc, "cm-legacy", namespace)  # the exclude

    git_repo.write_objects("teams/c/cm.yaml", _cm("cm-c"))
    git_repo.remove("teams/a")
    git_repo.commit("team c arrives, team a leaves")
    code, results, _ = _sync(config, capsys)
    actions = _actions(results["c"])
    assert actions["team-c"] == {"cm-c": "created"}
    assert actions["team-b"] == {"cm-b": "unchanged"}
    assert actions["team-a"] == {"cm-a": "pruned" if pruned else "kept"}
    assert _exists(tc, "cm-a", namespace) is not pruned
    assert _exists(tc, "cm-c", namespace)
    if preserve:
        kept = next(a for a in results["c"]["apps"] if a["app"] == "team-a")
        messages = [o["message"] for o in kept["objects"] if o["kind"] == "ConfigMap"]
        assert messages == ["app set teams preserves the objects of apps it no longer generates"], kept
        assert code == 0, kept


def test_a_broken_app_set_prunes_nothing_and_says_why(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tc,) = clusters(1)
    for team in ("a", "b"):
        git_repo.write_objects(f"teams/{team}/cm.yaml", _cm(f"cm-{team}"))
    git_repo.write_objects("plain/cm.yaml", _cm("cm-plain"))
    git_repo.commit("teams")
    cluster = {"name": "c", "kubeconfig": str(tc.kubeconfig)}
    plain = {"name": "plain", "path": "plain", "namespace": namespace, "createNamespace": True}
    config = make_config(git_repo, [cluster], appSets=[_app_set(namespace)], apps=[plain], sync={"prune": True})
    code, results, _ = _sync(config, capsys)
    assert code == 0, results

    broken = _app_set(namespace)
    broken["template"]["name"] = "team-{{.path.basename}}-{{.owner}}"  # no such parameter: missingkey=error
    raw = yaml.safe_load(config.read_text())
    raw["appSets"] = [broken]
    config.write_text(yaml.safe_dump(raw))
    code, results, err = _sync(config, capsys)

    assert code == 2
    assert "app set teams: template with parameter set 0" in err
    assert 'map has no entry for key "owner"' in err
    actions = _actions(results["c"])
    assert actions["plain"] == {"cm-plain": "unchanged"}  # the rest of the fleet syncs
    for team in ("a", "b"):
        assert actions[f"team-{team}"] == {f"cm-{team}": "kept"}
        assert _exists(tc, f"cm-{team}", namespace)
    team_a = next(a for a in results["c"]["apps"] if a["app"] == "team-a")
    message = next(o["message"] for o in team_a["objects"] if o["kind"] == "ConfigMap")
    assert message.startswith("app set teams did not generate its apps: template with parameter set 0")


def test_the_running_agent_generates_again_on_the_next_fetch(
    git_repo: GitRepo,
    clusters: Any,
    make_config: Any,
    namespace: str,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tc,) = clusters(1)
    git_repo.write_objects("teams/a/cm.yaml", _cm("cm-a"))
    git_repo.commit("team a")
    cluster = {"name": "c", "kubeconfig": str(tc.kubeconfig)}
    config = make_config(
        git_repo,
        [cluster],
        appSets=[_app_set(namespace)],
        sync={"prune": True, "interval": "1h"},
        server={"listen": f"127.0.0.1:{free_port()}"},
    )
    raw = yaml.safe_load(config.read_text())
    raw["source"]["interval"] = "1s"
    config.write_text(yaml.safe_dump(raw))
    agent = Agent(config, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        wait_until(lambda: _exists(tc, "cm-a", namespace), timeout=60)

        git_repo.write_objects("teams/b/cm.yaml", _cm("cm-b"))
        git_repo.remove("teams/a")
        git_repo.commit("team b arrives, team a leaves")
        wait_until(lambda: _exists(tc, "cm-b", namespace) and not _exists(tc, "cm-a", namespace), timeout=60)

        def synced() -> Any:
            apps = {a["app"]: a for a in agent.cluster("c")["apps"]}
            placed = {name for name, a in apps.items() if a["placed"]}
            gone = apps.get("team-a", {}).get("lastSync") or {}
            return placed == {"team-b"} and apps["team-b"]["syncStatus"] == "Synced" and gone["counts"]["pruned"] == 1

        try:
            wait_until(synced, timeout=30)
        except AssertionError:
            raise AssertionError(json.dumps(agent.cluster("c")["apps"])[:3000]) from None
        status, body = request(f"{agent.base}/api/v1/appsets")
        (found,) = json.loads(body)["appSets"]
        assert status == 200
        assert (found["name"], found["generators"], found["apps"], found["parameterSets"]) == (
            "teams",
            ["git"],
            ["team-b"],
            1,
        )
        assert found["error"] is None
        assert request(f"{agent.base}/api/v1/appsets/nope")[0] == 404
        listed = json.loads(request(f"{agent.base}/api/v1/apps?appSet=teams&sync=Synced&limit=1")[1])
        assert [(a["name"], a["appSet"]) for a in listed["apps"]] == [("team-b", "teams")]
        assert listed["total"] == 1
        assert "continue" not in listed
        assert json.loads(request(f"{agent.base}/api/v1/apps?appSet=other")[1]) == {"apps": [], "total": 0}
        assert request(f"{agent.base}/api/v1/apps?limit=1&continue=gone")[0] == 410
        code, said = request(f"{agent.base}/api/v1/apps?label=team%20in%20(")
        assert code == 400
        assert "label selector 'team in (': cannot read" in said
        capsys.readouterr()
        assert cli.main(["appsets", "--url", agent.base]) == 0
        table = capsys.readouterr().out
        assert "teams" in table
        assert "git" in table
    finally:
        assert agent.stop() == 0, agent.log.read_text()[-3000:]


def test_config_validate_generates_and_checks_the_generated_paths(
    git_repo: GitRepo, make_config: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    git_repo.write_objects("teams/a/cm.yaml", _cm("cm-a"))
    (git_repo.path / "teams" / "empty").mkdir(parents=True)
    (git_repo.path / "teams" / "empty" / "README.md").write_text("no manifests yet\n")
    git_repo.commit("team a, and an empty team")
    cluster = {"name": "c", "server": "https://10.0.0.1", "token": {"env": "NO_TOKEN"}}
    config = make_config(git_repo, [cluster], appSets=[_app_set("ns")])
    capsys.readouterr()
    assert cli.main(["config", "validate", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "app set teams: 2 app(s)" in out
    assert "teams/empty holds no YAML or JSON file" in out

    broken = _app_set("ns")
    broken["template"]["name"] = "{{.path.basename}}-{{.nope}}"
    raw = yaml.safe_load(config.read_text())
    raw["appSets"] = [broken]
    config.write_text(yaml.safe_dump(raw))
    assert cli.main(["config", "validate", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "app set teams:" in out
    assert 'map has no entry for key "nope"' in out


def test_pull_requests_come_move_and_go_as_apps_on_webhooks(
    git_repo: GitRepo,
    clusters: Any,
    make_config: Any,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pull request generator in the running agent, its list asked of a loopback GitHub stand-in every hour
    only: opening a pull request makes its app (namespace pr-<number>, at the head commit), a push to it moves
    the app, closing it prunes the app, each within seconds of the signed pull_request webhook."""
    (tc,) = clusters(1)
    git_repo.write_objects("app/cm.yaml", {**_cm("preview"), "data": {"version": "main"}})
    git_repo.commit("main")
    git_repo.git("checkout", "-q", "-b", "feat/cart")
    git_repo.write_objects("app/cm.yaml", {**_cm("preview"), "data": {"version": "cart-1"}})
    first = git_repo.commit("cart 1")
    git_repo.git("checkout", "-q", "main")
    monkeypatch.setenv("GH_TOKEN", "gh-token-55")
    monkeypatch.setenv("HOOK_SECRET", "hook-secret-55")
    github = ScmServer("github", token="gh-token-55", repository="acme/fleet")
    github.open(7, "feat/cart", first)
    app_set = {
        "name": "previews",
        "goTemplate": True,
        "goTemplateOptions": ["missingkey=error"],
        "generators": [
            {
                "pullRequest": {
                    "github": {"owner": "acme", "repo": "fleet", "api": github.url, "token": {"env": "GH_TOKEN"}},
                    "requeueAfterSeconds": 3600,
                }
            }
        ],
        "template": {
            "name": "pr-{{.number}}",
            "path": "app",
            "ref": "{{.head_sha}}",
            "namespace": "pr-{{.number}}",
            "createNamespace": True,
        },
    }
    config = make_config(
        git_repo,
        [{"name": "c", "kubeconfig": str(tc.kubeconfig)}],
        appSets=[app_set],
        sync={"prune": True, "interval": "1h"},
        server={"listen": f"127.0.0.1:{free_port()}", "webhooks": {"github": {"env": "HOOK_SECRET"}}},
    )
    agent = Agent(config, tmp_path / "agent.log")

    def version(number: int) -> Any:
        found = live_object(tc, "v1", "ConfigMap", "preview", f"pr-{number}")
        return found["data"]["version"] if found is not None else None

    def hook(number: int, action: str) -> None:
        body = json.dumps(
            {"action": action, "number": number, "repository": {"clone_url": str(git_repo.path)}}
        ).encode()
        headers = {"X-GitHub-Event": "pull_request", "X-Hub-Signature-256": signed("hook-secret-55", body)}
        status, text = request(f"{agent.base}/api/v1/webhooks/github", method="POST", body=body, headers=headers)
        assert status == 202, text

    try:
        agent.wait_ready()
        wait_until(lambda: version(7) == "cart-1", timeout=60)

        git_repo.git("checkout", "-q", "feat/cart")
        git_repo.write_objects("app/cm.yaml", {**_cm("preview"), "data": {"version": "cart-2"}})
        second = git_repo.commit("cart 2")
        git_repo.git("checkout", "-q", "main")
        github.open(7, "feat/cart", second)
        github.open(8, "main", git_repo.git("rev-parse", "HEAD"))
        hook(7, "synchronize")
        wait_until(lambda: version(7) == "cart-2" and version(8) == "main", timeout=30)

        github.close(7)
        hook(7, "closed")
        wait_until(lambda: version(7) is None, timeout=30)
        assert version(8) == "main"
        listed = [p for p, _ in github.requests]
        assert len(listed) <= 4, listed  # at start and once per webhook: never polled in between
    finally:
        github.stop()
        assert agent.stop() == 0, agent.log.read_text()[-3000:]


def test_an_app_syncs_its_own_ref_and_waits_for_one_not_fetched(
    git_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tc,) = clusters(1)
    git_repo.write_objects("app/cm.yaml", {**_cm("pinned"), "data": {"version": "main"}})
    git_repo.commit("main")
    git_repo.git("checkout", "-q", "-b", "next")
    git_repo.write_objects("app/cm.yaml", {**_cm("pinned"), "data": {"version": "next"}})
    head = git_repo.commit("next")
    git_repo.git("checkout", "-q", "main")
    own = {"path": "app", "namespace": namespace, "createNamespace": True}
    apps = [{"name": "at-next", "ref": head, **own}, {"name": "nowhere", "ref": "f" * 40, **own}]
    config = make_config(git_repo, [{"name": "c", "kubeconfig": str(tc.kubeconfig)}], apps=apps)

    code, results, _ = _sync(config, capsys)

    by_app = {a["app"]: a for a in results["c"]["apps"]}
    assert by_app["at-next"]["revision"]["sha"] == head
    assert live_object(tc, "v1", "ConfigMap", "pinned", namespace)["data"] == {"version": "next"}
    assert by_app["nowhere"]["errorKind"] == "waiting"
    assert by_app["nowhere"]["error"] == f"Waiting (ref {'f' * 40} of source default is not fetched (yet))"
    assert code == 1


ARGOCD_EXAMPLES = "argoproj-argo-cd/applicationset/examples"


@pytest.mark.parametrize(
    ("example", "cluster_param", "deployment"),
    [
        ("list-generator/list-example.yaml", "{{.cluster}}", "guestbook-ui"),
        ("git-generator-files-discovery/git-generator-files.yaml", "{{.cluster.name}}", "kustomize-guestbook-ui"),
    ],
)
def test_argocd_examples_sync_as_written(
    corpora_repo: GitRepo,
    clusters: Any,
    make_config: Any,
    capsys: pytest.CaptureFixture[str],
    example: str,
    cluster_param: str,
    deployment: str,
) -> None:
    """Argo CD's own ApplicationSet examples whose folders render offline, read from the corpus as they are (the
    generators and the template's name, path and namespace; the git generator's repoURL as the source, the
    corpus as one repository), each app placed on the test cluster its parameters name (Argo CD's destination)."""
    dev, prod = clusters(2)
    doc = yaml.safe_load((CORPORA / ARGOCD_EXAMPLES / example).read_text())
    spec = doc["spec"]
    for g in spec["generators"]:
        if "git" in g:
            files = [{"path": f"argoproj-argo-cd/{p['path']}"} for p in g["git"]["files"]]
            g["git"] = {"files": files}  # repoURL and revision: the source named default
    tmpl = spec["template"]
    app_set = {
        "name": doc["metadata"]["name"],
        "goTemplate": spec["goTemplate"],
        "goTemplateOptions": spec["goTemplateOptions"],
        "generators": spec["generators"],
        "template": {
            "name": tmpl["metadata"]["name"],
            "path": f"argoproj-argo-cd/{tmpl['spec']['source']['path']}",
            "namespace": tmpl["spec"]["destination"]["namespace"],
            "createNamespace": True,
            "clusters": {"names": [cluster_param]},
        },
    }
    named = (("engineering-dev", dev), ("engineering-prod", prod))
    entries = [{"name": n, "kubeconfig": str(tc.kubeconfig)} for n, tc in named]
    config = make_config(corpora_repo, entries, appSets=[app_set])

    code, results, err = _sync(config, capsys)

    assert code == 0, (err, {c: [(a["app"], a["error"]) for a in r["apps"]] for c, r in results.items()})
    for name, tc in (("engineering-dev", dev), ("engineering-prod", prod)):
        assert [a["app"] for a in results[name]["apps"]] == [f"{name}-guestbook"]
        assert live_object(tc, "apps/v1", "Deployment", deployment, "guestbook") is not None

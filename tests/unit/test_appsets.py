"""App sets generate what Argo CD's ApplicationSet controller generates, from Argo CD's own examples.

Each example of ../shared/corpora/public/argoproj-argo-cd/applicationset/examples is read as it is and written as
an ``appSets`` entry the way a user moving from Argo CD would (:func:`from_argocd`: the generators as they are,
a ``git`` generator's ``repoURL`` becoming the source named ``default``, the template's name, path and namespace
and, for a cluster generator, its cluster as the placement). The real template helper (Go text/template + Sprig,
fasttemplate) renders them; the expected apps are those Argo CD's documentation lists for each example.
"""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import pytest
import yaml

from agent import config
from agent.appsets import expand, template
from tests.conftest import CORPORA

ARGOCD = CORPORA / "argoproj-argo-cd"
EXAMPLES = ARGOCD / "applicationset" / "examples"
SECRET_TYPE = "argocd.argoproj.io/secret-type"  # the label every Argo CD cluster Secret has


def _generators(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for g in copy.deepcopy(found):
        if "git" in g:
            g["git"] = {k: v for k, v in g["git"].items() if k not in ("repoURL", "revision")}
        if "clusters" in g:
            labels = ((g["clusters"] or {}).get("selector") or {}).get("matchLabels") or {}
            labels.pop(SECRET_TYPE, None)
        for nested in ("matrix", "merge"):
            if nested in g:
                g[nested]["generators"] = _generators(g[nested]["generators"])
        out.append(g)
    return out


def _uses_clusters(generators: list[dict[str, Any]]) -> bool:
    return any(
        "clusters" in g or any(_uses_clusters(g[n]["generators"]) for n in ("matrix", "merge") if n in g)
        for g in generators
    )


def from_argocd(path: pathlib.Path) -> dict[str, Any]:
    """The ApplicationSet in ``path`` as an ``appSets`` entry."""
    doc = yaml.safe_load(path.read_text())
    spec = doc["spec"]
    tmpl = spec["template"]
    go = bool(spec.get("goTemplate"))
    ours: dict[str, Any] = {
        "name": tmpl["metadata"]["name"],
        "path": tmpl["spec"]["source"]["path"],
        "namespace": tmpl["spec"]["destination"]["namespace"],
    }
    if _uses_clusters(spec["generators"]):
        ours["clusters"] = {"names": ["{{.name}}" if go else "{{name}}"]}
    return {
        "name": doc["metadata"]["name"],
        "goTemplate": go,
        "goTemplateOptions": spec.get("goTemplateOptions", []),
        "generators": _generators(spec["generators"]),
        "template": ours,
    }


def _config(*app_sets: dict[str, Any]) -> config.AgentConfig:
    clusters = [
        {"name": "dev", "server": "https://10.0.0.1", "token": {"env": "T"}, "labels": {"env": "dev"}},
        {"name": "prod", "server": "https://10.0.0.2", "token": {"env": "T"}, "labels": {"env": "prod"}},
    ]
    return config.AgentConfig.model_validate(
        {"source": {"url": str(ARGOCD)}, "clusters": clusters, "appSets": list(app_sets)}
    )


def _apps(cfg: config.AgentConfig, name: str) -> list[tuple[str, str | None, str | None, tuple[str, ...]]]:
    generation = expand.generate(cfg, {"default": ARGOCD})
    assert generation.results[name].error is None, generation.results[name].error
    return [(a.name, a.path, a.namespace, a.clusters.names) for a in generation.config.apps if a.app_set == name]


GUESTBOOK = "applicationset/examples/list-generator/guestbook"
LIST = [
    ("engineering-dev-guestbook", f"{GUESTBOOK}/engineering-dev", "guestbook", ()),
    ("engineering-prod-guestbook", f"{GUESTBOOK}/engineering-prod", "guestbook", ()),
]
ADDONS = "applicationset/examples/git-generator-directory/cluster-addons"
MATRIX_ADDONS = "applicationset/examples/matrix/cluster-addons"
FILES_APP = "applicationset/examples/git-generator-files-discovery/apps/guestbook"

CASES = {
    "list-generator/list-example.yaml": LIST,
    "list-generator/list-example-fasttemplate.yaml": LIST,
    "cluster/cluster-example.yaml": [
        ("dev-guestbook", "guestbook", "guestbook", ("dev",)),
        ("prod-guestbook", "guestbook", "guestbook", ("prod",)),
    ],
    "cluster/cluster-example-fasttemplate.yaml": [
        ("dev-guestbook", "guestbook", "guestbook", ("dev",)),
        ("prod-guestbook", "guestbook", "guestbook", ("prod",)),
    ],
    "git-generator-directory/git-directories-example.yaml": [
        ("argo-workflows", f"{ADDONS}/argo-workflows", "argo-workflows", ()),
        ("prometheus-operator", f"{ADDONS}/prometheus-operator", "prometheus-operator", ()),
    ],
    "git-generator-directory/git-directories-example-fasttemplate.yaml": [
        ("argo-workflows", f"{ADDONS}/argo-workflows", "argo-workflows", ()),
        ("prometheus-operator", f"{ADDONS}/prometheus-operator", "prometheus-operator", ()),
    ],
    "git-generator-directory/excludes/git-directories-exclude-example-fasttemplate.yaml": [
        ("argo-workflows", f"applicationset/examples/git-generator-directory/excludes/cluster-addons/{n}", n, ())
        for n in ("argo-workflows",)
    ]
    + [
        (
            "prometheus-operator",
            "applicationset/examples/git-generator-directory/excludes/cluster-addons/prometheus-operator",
            "prometheus-operator",
            (),
        )
    ],
    "git-generator-files-discovery/git-generator-files.yaml": [
        ("engineering-dev-guestbook", FILES_APP, "guestbook", ()),
        ("engineering-prod-guestbook", FILES_APP, "guestbook", ()),
    ],
    "git-generator-files-discovery/git-generator-files-fasttemplate.yaml": [
        ("engineering-dev-guestbook", FILES_APP, "guestbook", ()),
        ("engineering-prod-guestbook", FILES_APP, "guestbook", ()),
    ],
    "matrix/cluster-and-git.yaml": [
        (f"{d}-{c}", f"{MATRIX_ADDONS}/{d}", d, (c,))
        for d in ("argo-workflows", "prometheus-operator")
        for c in ("dev", "prod")
    ],
    "matrix/cluster-and-git-fasttemplate.yaml": [
        (f"{d}-{c}", f"{MATRIX_ADDONS}/{d}", d, (c,))
        for d in ("argo-workflows", "prometheus-operator")
        for c in ("dev", "prod")
    ],
    "matrix/list-and-git.yaml": [
        (f"{d}-{c}", f"{MATRIX_ADDONS}/{d}", d, ())
        for d in ("argo-workflows", "prometheus-operator")
        for c in ("engineering-dev", "engineering-prod")
    ],
    "matrix/list-and-git-fasttemplate.yaml": [
        (f"{d}-{c}", f"{MATRIX_ADDONS}/{d}", d, ())
        for d in ("argo-workflows", "prometheus-operator")
        for c in ("engineering-dev", "engineering-prod")
    ],
}


@pytest.mark.parametrize("example", sorted(CASES))
def test_argocd_example_generates_the_documented_apps(example: str) -> None:
    app_set = from_argocd(EXAMPLES / example)
    assert _apps(_config(app_set), app_set["name"]) == CASES[example]


def test_merge_example_merges_values_by_server_as_argocd_does() -> None:
    """merge-clusters-and-list: every cluster gets kafka 'true' and redis 'false' from the first generator; the
    second generator (clusters labelled use-kafka: 'false') overrides kafka on those; the list element names a
    server no cluster has, so it changes nothing. Read back through the rendered apps' Helm values."""
    app_set = from_argocd(EXAMPLES / "merge/merge-clusters-and-list.yaml")
    app_set["template"]["helm"] = {"values": {"kafka": "{{.values.kafka}}", "redis": "{{.values.redis}}"}}
    cfg = _config(app_set)
    kafka_off = {"labels": {"use-kafka": "false"}}
    relabelled = [c.model_copy(update=kafka_off) if c.name == "prod" else c for c in cfg.clusters]
    cfg = cfg.model_copy(update={"clusters": tuple(relabelled)})
    generation = expand.generate(cfg, {"default": ARGOCD})
    found = {a.name: a.helm.values for a in generation.config.apps if a.helm}
    assert found == {"dev": {"kafka": "true", "redis": "false"}, "prod": {"kafka": "false", "redis": "false"}}


def test_go_template_renders_a_map_as_go_prints_it() -> None:
    """Argo CD's own git-directories-exclude-example.yaml templates ``path: '{{.path}}'`` under goTemplate: Go
    prints the map (``map[basename:...]``), as Argo CD would; the app then names a path its source does not
    have, and says so when it syncs."""
    app_set = from_argocd(EXAMPLES / "git-generator-directory/excludes/git-directories-exclude-example.yaml")
    apps = _apps(_config(app_set), app_set["name"])
    assert [a[0] for a in apps] == ["argo-workflows", "prometheus-operator"]  # the exclude left one out
    assert apps[0][1] is not None
    assert apps[0][1].startswith("map[basename:argo-workflows basenameNormalized:")


def _set(**template: Any) -> dict[str, Any]:
    return {
        "name": "team",
        "goTemplate": True,
        "goTemplateOptions": ["missingkey=error"],
        "generators": [{"list": {"elements": [{"team": "Web Team", "n": 3}, {"team": "api"}]}}],
        "template": {"path": "guestbook", **template},
    }


def test_sprig_and_argocd_functions() -> None:
    app_set = _set(name="{{ normalize .team }}", namespace='{{ .team | lower | replace " " "-" | trunc 6 }}')
    app_set["generators"] = [{"list": {"elements": [{"team": "Web Team"}]}}]
    assert _apps(_config(app_set), "team") == [("web-team", "guestbook", "web-te", ())]
    slug = _set(name="{{ slugify 9 .team }}", namespace='{{ dig "n" 0 . | toString | printf "n%s" }}')
    assert _apps(_config(slug), "team") == [("web-team", "guestbook", "n3", ()), ("api", "guestbook", "n0", ())]


@pytest.mark.parametrize(
    ("app_set", "message"),
    [
        (_set(name="{{ normalize .team }}-{{.n}}"), 'parameter set 1 {"team": "api"}: failed to execute go template'),
        (_set(name="{{.team}}"), "the app it renders is invalid: name: 'Web Team' is not a DNS label"),
        (_set(name="same"), "parameter sets 0 and 1 both render app same"),
        (_set(name="{{ normalize .team }}", source="nope"), "no source named 'nope'"),
        (_set(name="{{ normalize .team }}", dependsOn=["ghost"]), "dependsOn names unknown apps: ghost"),
    ],
    ids=["missing-key", "not-a-dns-label", "duplicate-name", "unknown-source", "unknown-dependency"],
)
def test_a_bad_app_set_fails_alone(app_set: dict[str, Any], message: str) -> None:
    good = {**_set(name="good-{{ normalize .team }}"), "name": "good"}
    cfg = _config(app_set, good)
    generation = expand.generate(cfg, {"default": ARGOCD})
    error = generation.results["team"].error
    assert error is not None
    assert message in error, error
    assert generation.results["good"].error is None
    assert [a.name for a in generation.config.apps] == ["good-web-team", "good-api"]
    assert generation.config.app_set_errors == {"team": error}


def test_a_failed_app_set_keeps_its_last_apps_and_a_waiting_one_is_listed() -> None:
    ok = _set(name="{{ normalize .team }}")
    first = expand.generate(_config(ok), {"default": ARGOCD})
    broken = _config(_set(name="{{ normalize .team }}-{{ .missing }}"))
    again = expand.generate(broken, {"default": ARGOCD}, previous=first)
    assert [a.name for a in again.config.apps] == ["web-team", "api"]
    assert "map has no entry for key" in again.config.app_set_errors["team"]
    git = {
        "name": "dirs",
        "generators": [{"git": {"directories": [{"path": "applicationset/*"}]}}],
        "template": {"name": "{{path.basename}}", "path": "{{path}}"},
    }
    waiting = expand.generate(_config(git), {})
    assert waiting.config.app_set_errors == {"dirs": "waiting for source default to be fetched"}
    assert waiting.config.apps == ()


def test_config_refuses_bad_app_sets_with_the_key_named(tmp_path: pathlib.Path) -> None:
    bad = [
        ({"template": {"name": "x", "path": "p", "nope": 1}}, "template: unknown app keys nope"),
        ({"template": {"path": "p"}}, "template needs name"),
        ({"generators": [{"list": {}, "clusters": {}}]}, "give exactly one of list, clusters, git, pullRequest"),
        ({"generators": [{"git": {"source": "elsewhere", "directories": [{"path": "a"}]}}]}, "unknown sources"),
        ({"generators": [{"git": {"directories": [{"path": "a", "exclude": True}]}}]}, "every pattern is an exclude"),
        ({"goTemplateOptions": ["missingkey=explode"]}, "goTemplateOptions"),
    ]
    for change, message in bad:
        app_set = {**_set(name="{{.team}}"), **change}
        with pytest.raises(Exception, match=message):
            _config(app_set)


def test_the_helper_is_required_and_named(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.setenv("GITOPS_AGENT_TEMPLATE", str(tmp_path / "missing"))
    generation = expand.generate(_config(_set(name="{{.team}}")), {})
    assert "gitops-agent-template could not start" in (generation.results["team"].error or "")
    assert template.HELPER == "gitops-agent-template"

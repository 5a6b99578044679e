"""Placement and units (agent.apps), the apps section of the config, and webhook matching of several sources."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import pathlib
from typing import Any

import pytest
import yaml

from agent import apps, config
from agent.api import webhooks
from agent.sources.render import plain
from agent.sync import keys, ownership
from reconcilers import client, errors, resources

CLUSTERS = [
    {"name": "dev", "kubeconfig": "k", "labels": {"env": "dev", "region": "eu"}},
    {"name": "stage", "kubeconfig": "k", "labels": {"env": "stage", "region": "us"}},
    {"name": "prod-eu", "kubeconfig": "k", "labels": {"env": "prod", "region": "eu"}},
    {"name": "prod-ap", "kubeconfig": "k", "labels": {"env": "prod", "region": "ap"}},
]


def _load(tmp_path: pathlib.Path, **doc: Any) -> config.AgentConfig:
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump({"source": {"url": str(tmp_path)}, "clusters": CLUSTERS, **doc}))
    return config.load_config(path)


def _placed(cfg: config.AgentConfig) -> dict[str, list[str]]:
    return {c.name: [u.name for u in apps.units(cfg, c)] for c in cfg.clusters}


def test_placement_by_names_labels_and_expressions_on_four_clusters(tmp_path: pathlib.Path) -> None:
    cfg = _load(
        tmp_path,
        apps=[
            {"name": "everywhere", "path": "a"},
            {"name": "named", "path": "b", "clusters": {"names": ["dev", "prod-ap"]}},
            {"name": "prod", "path": "c", "clusters": {"matchLabels": {"env": "prod"}}},
            {
                "name": "eu-us",
                "path": "d",
                "clusters": {"matchExpressions": [{"key": "region", "operator": "In", "values": ["eu", "us"]}]},
            },
            {
                "name": "not-prod",
                "path": "e",
                "clusters": {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]},
            },
            {
                "name": "prod-eu-or-stage",  # names OR selector, selector rules ANDed
                "path": "f",
                "clusters": {
                    "names": ["stage"],
                    "matchLabels": {"env": "prod"},
                    "matchExpressions": [
                        {"key": "region", "operator": "Exists"},
                        {"key": "region", "operator": "NotIn", "values": ["ap"]},
                    ],
                },
            },
        ],
    )
    assert _placed(cfg) == {
        "dev": ["everywhere", "named", "eu-us", "not-prod"],
        "stage": ["everywhere", "eu-us", "not-prod", "prod-eu-or-stage"],
        "prod-eu": ["everywhere", "prod", "eu-us", "prod-eu-or-stage"],
        "prod-ap": ["everywhere", "named", "prod"],
    }


def test_units_come_in_dependency_order_with_resolved_settings(tmp_path: pathlib.Path) -> None:
    cfg = _load(
        tmp_path,
        sync={"prune": True, "selfHeal": False},
        apps=[
            {"name": "crs", "path": "crs", "dependsOn": ["crds"], "sync": {"selfHeal": True}},
            {"name": "crds", "path": "crds", "sync": {"prune": False}, "serviceAccount": "team/deployer"},
        ],
    )
    crds, crs = apps.units(cfg, cfg.clusters[0])
    assert (crds.name, crs.name) == ("crds", "crs")
    assert (crds.prune, crds.self_heal, crs.prune, crs.self_heal) == (False, False, True, True)
    assert crds.impersonate == "system:serviceaccount:team:deployer"
    assert crds.inventory == "app:crds"


def test_paths_are_sugar_for_one_app_per_path(tmp_path: pathlib.Path) -> None:
    clusters = [{**CLUSTERS[0], "paths": ["base", "clusters/dev"], "namespace": "web"}]
    cfg = _load(tmp_path, clusters=clusters)
    units = apps.units(cfg, cfg.clusters[0])
    assert [(u.name, u.source, u.path, u.inventory, u.namespace) for u in units] == [
        ("base", "default", "base", "base", "web"),
        ("clusters/dev", "default", "clusters/dev", "clusters/dev", "web"),
    ]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"apps": [{"name": "a", "path": "x"}, {"name": "a", "path": "y"}]}, "app names must be unique: a"),
        ({"apps": [{"name": "a", "path": "x", "source": "nope"}]}, "apps[0] (a): no source named 'nope'"),
        ({"apps": [{"name": "a", "path": "x", "dependsOn": ["b"]}]}, "dependsOn names unknown apps: b"),
        ({"apps": [{"name": "a", "path": "x", "clusters": {"names": ["zz"]}}]}, "names unknown clusters: zz"),
        ({"apps": [{"name": "A_b", "path": "x"}]}, "is not a DNS label"),
        ({"apps": [{"name": "a", "path": "../x"}]}, "must not contain '..'"),
        ({"apps": [{"name": "a", "path": "x", "serviceAccount": "nope"}]}, "must be namespace/name"),
        (
            {"apps": [{"name": "a", "path": "x", "namespace": "other", "namespaces": ["team-*"]}]},
            "namespace 'other' is outside the app's namespaces",
        ),
        (
            {"apps": [{"name": "a", "path": "x", "clusters": {"matchExpressions": [{"key": "k", "operator": "In"}]}}]},
            "operator In needs values",
        ),
        ({"sources": {"default": {"url": "/x"}}}, "give source or sources.default, not both"),
    ],
)
def test_app_config_errors_name_the_app_and_key(tmp_path: pathlib.Path, doc: dict[str, Any], expected: str) -> None:
    with pytest.raises(errors.ConfigError, match=None) as exc:
        _load(tmp_path, **doc)
    assert expected in str(exc.value)


def test_a_path_and_an_app_of_one_name_on_one_cluster_is_refused(tmp_path: pathlib.Path) -> None:
    clusters = [{**CLUSTERS[0], "paths": ["web"]}]
    with pytest.raises(errors.ConfigError, match="cluster dev: web is both a path and an app placed there"):
        _load(tmp_path, clusters=clusters, apps=[{"name": "web", "path": "web"}])


def test_sources_alone_without_a_default(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "sources": {"platform": {"url": "p"}},
                "clusters": CLUSTERS[:1],
                "apps": [{"name": "a", "path": "x", "source": "platform"}],
            }
        )
    )
    cfg = config.load_config(path)
    assert cfg.default_source.url == str(tmp_path / "p")  # relative URLs resolve against the config file
    assert apps.sources_of(cfg, cfg.clusters[0]) == ["platform"]


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("https://github.com/org/fleet.git", "git@github.com:org/fleet.git", True),
        ("https://GitHub.com/org/fleet/", "ssh://git@github.com/org/fleet", True),
        ("https://github.com/org/fleet", "https://github.com/org/other", False),
        ("/srv/git/fleet.git", "/srv/git/fleet", True),
    ],
)
def test_repository_urls_compare_across_forms(a: str, b: str, same: bool) -> None:
    assert webhooks.same_repository(a, b) is same


def test_a_push_fetches_only_the_sources_of_its_repository_and_ref() -> None:
    secret = b"k"
    sources = {
        "platform": ("https://github.com/org/platform.git", "main"),
        "team-a": ("git@github.com:org/team-a.git", "main"),
        "team-a-release": ("https://github.com/org/team-a", "release"),
    }

    def push(url: str, ref: str) -> webhooks.Verdict:
        body = json.dumps({"ref": ref, "repository": {"clone_url": url, "html_url": url}}).encode()
        sig = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        headers = {"x-github-event": "push", "x-hub-signature-256": sig}
        return webhooks.judge("github", secret, headers, body, sources)

    assert push("https://github.com/org/team-a.git", "refs/heads/main").sources == ("team-a",)
    assert push("https://github.com/org/team-a.git", "refs/heads/release").sources == ("team-a-release",)
    other = push("https://github.com/org/unknown.git", "refs/heads/main")
    assert (other.status, other.trigger) == (200, False)
    assert "not a source of this agent" in other.reason


class _Discovery:
    """What claims read of a cluster: which kinds are namespaced, and the discovery generation."""

    discovery_generation = 1

    def resource_type(self, group: str, kind: str) -> client.ResourceType | None:
        return client.ResourceType(group, kind, kind.lower() + "s", kind != "Namespace", ("v1",))


def test_claims_are_remembered_while_units_manifests_and_discovery_stay_the_same(tmp_path: pathlib.Path) -> None:
    cfg = _load(
        tmp_path,
        apps=[{"name": "a", "path": "a", "namespace": "one"}, {"name": "b", "path": "b", "namespace": "two"}],
    )
    units = apps.units(cfg, cfg.clusters[0])
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "one"}}
    loaded = {"a": plain.parse_stream(yaml.safe_dump(cm), "a/cm.yaml", "a"), "b": []}
    memo, kube = ownership.Memo(), _Discovery()

    def digest(app: str) -> str:
        return keys.manifests_digest(loaded[app])

    claims, refused = memo.claim(kube, units, dict(loaded), digest)  # type: ignore[arg-type]
    assert (list(claims), refused) == ([resources.ResourceKey("", "ConfigMap", "one", "cm")], {})
    assert memo.claim(kube, units, dict(loaded), digest)[0] is claims  # type: ignore[arg-type]
    # the same units and manifests held by other objects: the same claims
    same = memo.claim(kube, copy.deepcopy(units), copy.deepcopy(loaded), digest)  # type: ignore[arg-type]
    assert same[0] is claims
    # b now renders the same object (new manifests): b is refused, naming a
    loaded["b"] = plain.parse_stream(yaml.safe_dump(cm), "b/cm.yaml", "b")
    again, refused = memo.claim(kube, units, dict(loaded), digest)  # type: ignore[arg-type]
    assert again is not claims
    assert "also rendered by app a" in refused["b"]
    # discovery changed: placed again
    kube.discovery_generation = 2
    assert memo.claim(kube, units, dict(loaded), digest)[0] is not again  # type: ignore[arg-type]

"""The one-pass proof of a cluster (agent.sync.noop.cluster_proof and again): what it is kept for, and every
input that sends the next sync back to the unit-by-unit path. Inputs are compared by content (agent.sync.keys):
a copy of an input is the same input, a changed one is not."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import pathlib
from typing import Any

import pytest
import yaml

from agent import apps, config
from agent.sync import keys, noop
from reconcilers import apply, engine, prune, resources

REVISION = resources.Revision("a" * 40, "main")


def _units(tmp_path: pathlib.Path, *extra: dict[str, Any]) -> tuple[config.AgentConfig, list[apps.Unit]]:
    path = tmp_path / "agent.yaml"
    doc = {
        "source": {"url": str(tmp_path)},
        "clusters": [{"name": "c", "kubeconfig": "k"}],
        "apps": [{"name": "a", "path": "a"}, {"name": "b", "path": "b"}, *extra],
    }
    path.write_text(yaml.safe_dump(doc))
    cfg = config.load_config(path)
    return cfg, apps.units(cfg, cfg.clusters[0])


EMPTY = keys.manifests_digest([])


def _proven(cfg: config.AgentConfig, units: list[apps.Unit]) -> dict[str, noop.Last]:
    """Each unit proven unchanged: no manifests, a result with nothing desired (no object to check)."""
    started = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    result = engine.ReconcileResult
    return {
        u.name: noop.Last(
            EMPTY, u, keys.config_digest(cfg), result("c", REVISION, (), started, 0.1, app=u.name), proven=True
        )
        for u in units
    }


def _inventory(uid: str, version: str) -> dict[str, Any]:
    return {"metadata": {"uid": uid, "resourceVersion": version}}


class _NoLive:
    def get(self, key: resources.ResourceKey) -> None:
        return None


def test_a_cluster_proven_unit_by_unit_is_proven_again_in_one_pass_while_every_input_is_the_same(
    tmp_path: pathlib.Path,
) -> None:
    cfg, units = _units(tmp_path)
    lasts = _proven(cfg, units)
    digest = keys.config_digest(cfg)
    revisions, trees = {"default": REVISION}, {"default": tmp_path}
    stored = {"app:a": _inventory("u1", "7"), "app:b": _inventory("u2", "9")}
    options = prune.PruneOptions()
    proof = noop.cluster_proof(
        units, revisions, trees, stored, lasts, None, digest, options, frozenset(), field_manager=lambda u: "fm"
    )
    assert proof is not None
    live: Any = _NoLive()

    def again(**changes: Any) -> list[engine.ReconcileResult] | None:
        given = {
            "units": units, "config": digest, "revisions": dict(revisions), "trees": dict(trees), "stored": stored,
            "prune": options, "digest": lambda u: EMPTY, "live": live, **changes,
        }  # fmt: skip
        return noop.again(proof, **given)

    results = again()
    assert results is not None
    assert [r.app for r in results] == ["a", "b"]
    assert all(r.started > lasts[r.app].result.started for r in results)  # the last results with a new time
    assert [r.entries for r in results] == [lasts["a"].result.entries, lasts["b"].result.entries]
    # the same inputs held by other objects are the same inputs: a copy of the watch's map, of the units, a config
    # loaded again from the same file
    assert again(stored=copy.deepcopy(stored)) is not None
    assert again(units=copy.deepcopy(units)) is not None
    assert again(config=keys.config_digest(config.load_config(tmp_path / "agent.yaml"))) is not None
    # any input that changed: unit by unit
    assert again(stored={**stored, "app:b": _inventory("u2", "10")}) is None  # an inventory was written
    assert again(stored={**stored, "app:b": _inventory("u3", "9")}) is None  # an inventory made again
    assert again(stored=None) is None  # the watch is not current
    assert again(units=[dataclasses.replace(units[0], prune=True), units[1]]) is None  # an app's settings changed
    assert again(config="another config") is None
    assert again(revisions={"default": resources.Revision("b" * 40, "main")}) is None
    assert again(trees={"default": tmp_path / "other"}) is None
    assert again(prune=prune.PruneOptions(enabled=True)) is None
    assert again(digest=lambda u: keys.manifests_digest(_manifests(u.name))) is None  # a unit renders otherwise
    assert noop.again(None, units, digest, revisions, trees, stored, options, lambda u: EMPTY, live) is None


def _manifests(name: str) -> list[resources.Manifest]:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
    return [resources.Manifest(resources.ResourceKey("", "ConfigMap", "", name), body, f"{name}.yaml", 0)]


def test_the_manifests_digest_follows_content_not_objects() -> None:
    one = _manifests("a")
    assert keys.manifests_digest(one) == keys.manifests_digest(copy.deepcopy(one))
    changed = copy.deepcopy(one)
    changed[0].body["data"] = {"k": "v"}
    assert keys.manifests_digest(changed) != keys.manifests_digest(one)
    moved = [dataclasses.replace(one[0], doc_index=1)]  # the same object from another document
    assert keys.manifests_digest(moved) != keys.manifests_digest(one)


def test_an_object_missing_from_the_live_cache_fails_the_one_pass_proof(tmp_path: pathlib.Path) -> None:
    cfg, units = _units(tmp_path)
    lasts = _proven(cfg, units)
    key = resources.ResourceKey("", "ConfigMap", "x", "cm")
    desired = {key: apply.Desired(None, "h")}  # type: ignore[arg-type]
    lasts["b"] = dataclasses.replace(lasts["b"], result=lasts["b"].result.again(desired=desired))
    revisions, trees, stored = {"default": REVISION}, {"default": tmp_path}, {"app:a": {}, "app:b": {}}
    options = prune.PruneOptions()
    digest = keys.config_digest(cfg)
    proof = noop.cluster_proof(
        units, revisions, trees, stored, lasts, None, digest, options, frozenset(), field_manager=lambda u: "fm"
    )
    live: Any = _NoLive()
    assert noop.again(proof, units, digest, revisions, trees, stored, options, lambda u: EMPTY, live) is None


@pytest.mark.parametrize(
    ("extra", "wait", "revisions", "why"),
    [
        ({}, True, {}, "this sync waits for health"),
        ({"name": "w", "path": "w", "sync": {"wait": True}}, None, {}, "an app waits for its health"),
        ({"name": "w", "path": "w", "sync": {"wait": True}}, False, {}, "the next sync may wait for it"),
        ({"name": "d", "path": "d", "dependsOn": ["a"]}, None, {}, "an app depends on another"),
        ({"name": "n", "path": "n", "namespace": "n", "createNamespace": True}, None, {}, "an app creates its ns"),
        ({}, None, {apps.PIN_PREFIX + "a": REVISION}, "a rollout pins an app"),
    ],
)
def test_a_sync_that_did_more_than_prove_every_unit_is_not_kept(
    tmp_path: pathlib.Path, extra: dict[str, Any], wait: bool | None, revisions: dict[str, Any], why: str
) -> None:
    cfg, units = _units(tmp_path, *([extra] if extra else []))
    lasts = _proven(cfg, units)
    given = {"default": REVISION, **revisions}
    kept = noop.cluster_proof(
        units, given, {"default": tmp_path}, {}, lasts, wait, keys.config_digest(cfg), prune.PruneOptions(),
        frozenset(), field_manager=lambda u: "fm",
    )  # fmt: skip
    assert kept is None, why


def test_a_unit_not_proven_this_sync_is_not_kept(tmp_path: pathlib.Path) -> None:
    cfg, units = _units(tmp_path)
    lasts = _proven(cfg, units)
    for broken in ({"a": lasts["a"]}, {**lasts, "b": dataclasses.replace(lasts["b"], proven=False)}):
        kept = noop.cluster_proof(
            units, {"default": REVISION}, {"default": tmp_path}, {}, broken, None, keys.config_digest(cfg),
            prune.PruneOptions(), frozenset(), field_manager=lambda u: "fm",
        )  # fmt: skip
        assert kept is None

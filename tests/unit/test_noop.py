"""The one-pass proof of a cluster (agent.sync.noop.cluster_proof and again): what it is kept for, and every
input that sends the next sync back to the unit-by-unit path."""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
from typing import Any

import pytest
import yaml

from agent import apps, config
from agent.sync import noop
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


def _proven(cfg: config.AgentConfig, units: list[apps.Unit]) -> dict[str, noop.Last]:
    """Each unit proven unchanged: an empty manifests list, a result with nothing desired (no object to check)."""
    started = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    return {
        u.name: noop.Last([], u, cfg, engine.ReconcileResult("c", REVISION, (), started, 0.1, app=u.name), proven=True)
        for u in units
    }


class _NoLive:
    def get(self, key: resources.ResourceKey) -> None:
        return None


def test_a_cluster_proven_unit_by_unit_is_proven_again_in_one_pass_while_every_input_is_the_same(
    tmp_path: pathlib.Path,
) -> None:
    cfg, units = _units(tmp_path)
    lasts = _proven(cfg, units)
    revisions, trees, stored = {"default": REVISION}, {"default": tmp_path}, {"app:a": {}, "app:b": {}}
    options = prune.PruneOptions()
    proof = noop.cluster_proof(
        units, revisions, trees, stored, lasts, None, cfg, options, frozenset(), field_manager=lambda u: "fm"
    )
    assert proof is not None
    load = {u.name: lasts[u.name].manifests for u in units}
    live: Any = _NoLive()

    def again(**changes: Any) -> list[engine.ReconcileResult] | None:
        given = {
            "units": units, "cfg": cfg, "revisions": dict(revisions), "trees": dict(trees), "stored": stored,
            "prune": options, "load": lambda u: load[u.name], "live": live, **changes,
        }  # fmt: skip
        return noop.again(proof, **given)

    results = again()
    assert results is not None
    assert [r.app for r in results] == ["a", "b"]
    assert all(r.started > lasts[r.app].result.started for r in results)  # the last results with a new time
    assert [r.entries for r in results] == [lasts["a"].result.entries, lasts["b"].result.entries]
    # any input not the very one the proof had: unit by unit
    assert again(stored=dict(stored)) is None  # the watch handed out a new mapping: an inventory changed
    assert again(stored=None) is None  # the watch is not current
    assert again(units=list(units)) is None  # a reload
    assert again(cfg=config.load_config(tmp_path / "agent.yaml")) is None
    assert again(revisions={"default": resources.Revision("b" * 40, "main")}) is None
    assert again(trees={"default": tmp_path / "other"}) is None
    assert again(prune=prune.PruneOptions(enabled=True)) is None
    assert again(load=lambda u: []) is None  # a unit loaded again (a new manifests list)
    assert noop.again(None, units, cfg, revisions, trees, stored, options, lambda u: load[u.name], live) is None


def test_an_object_missing_from_the_live_cache_fails_the_one_pass_proof(tmp_path: pathlib.Path) -> None:
    cfg, units = _units(tmp_path)
    lasts = _proven(cfg, units)
    key = resources.ResourceKey("", "ConfigMap", "x", "cm")
    desired = {key: apply.Desired(None, "h")}  # type: ignore[arg-type]
    lasts["b"] = dataclasses.replace(lasts["b"], result=lasts["b"].result.again(desired=desired))
    revisions, trees, stored = {"default": REVISION}, {"default": tmp_path}, {"app:a": {}, "app:b": {}}
    options = prune.PruneOptions()
    proof = noop.cluster_proof(
        units, revisions, trees, stored, lasts, None, cfg, options, frozenset(), field_manager=lambda u: "fm"
    )
    load = {u.name: lasts[u.name].manifests for u in units}
    live: Any = _NoLive()
    assert noop.again(proof, units, cfg, revisions, trees, stored, options, lambda u: load[u.name], live) is None


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
        units, given, {"default": tmp_path}, {}, lasts, wait, cfg, prune.PruneOptions(), frozenset(),
        field_manager=lambda u: "fm",
    )  # fmt: skip
    assert kept is None, why


def test_a_unit_not_proven_this_sync_is_not_kept(tmp_path: pathlib.Path) -> None:
    cfg, units = _units(tmp_path)
    lasts = _proven(cfg, units)
    for broken in ({"a": lasts["a"]}, {**lasts, "b": dataclasses.replace(lasts["b"], proven=False)}):
        kept = noop.cluster_proof(
            units, {"default": REVISION}, {"default": tmp_path}, {}, broken, None, cfg, prune.PruneOptions(),
            frozenset(), field_manager=lambda u: "fm",
        )  # fmt: skip
        assert kept is None

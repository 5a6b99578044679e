"""Health per kind and state, from fixtures named ``tests/fixtures/health/<kind>-<state>.yaml``: the state in the
name is the expected health."""

from __future__ import annotations

import pathlib

import pytest

from agent import kubeyaml
from reconcilers import health, resources

FIXTURES = sorted((pathlib.Path(__file__).parents[1] / "fixtures" / "health").glob("*.yaml"))
STATES = {
    "healthy": health.Health.HEALTHY,
    "progressing": health.Health.PROGRESSING,
    "degraded": health.Health.DEGRADED,
}


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_fixture(fixture: pathlib.Path) -> None:
    obj = kubeyaml.load(fixture.read_text())
    expected = STATES[fixture.stem.rsplit("-", 1)[1]]
    result = health.assess(resources.ResourceKey.of(obj), obj)
    assert result.status is expected, result.message


def test_every_kind_with_a_rule_has_fixtures() -> None:
    kinds = {kubeyaml.load(f.read_text())["kind"] for f in FIXTURES}
    assert kinds == {kind for _, kind in health.HEALTH_KINDS}


def test_missing_deleting_and_aggregation() -> None:
    key = resources.ResourceKey("apps", "Deployment", "x", "web")
    assert health.assess(key, None).status is health.Health.MISSING
    deleting = {"metadata": {"deletionTimestamp": "2026-11-21T00:00:00Z"}}
    assert health.assess(key, deleting).status is health.Health.PROGRESSING
    h = health.Health
    assert health.aggregate([h.HEALTHY, h.PROGRESSING, h.HEALTHY]) is h.PROGRESSING
    assert health.aggregate([h.MISSING, h.DEGRADED]) is h.DEGRADED
    assert health.aggregate([]) is h.HEALTHY
    degraded = kubeyaml.load((FIXTURES[0].parent / "deployment-degraded.yaml").read_text())
    assert "timed out progressing" in health.assess(key, degraded).message


def test_kstatus_preset_reads_the_conventional_conditions() -> None:
    def cr(status: dict[str, object], generation: int = 2) -> dict[str, object]:
        return {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w", "generation": generation},
            "status": status,
        }

    def verdict(status: dict[str, object]) -> health.Health:
        return health.kstatus(cr(status)).status

    assert verdict({}) is health.Health.HEALTHY
    assert verdict({"observedGeneration": 1}) is health.Health.PROGRESSING
    assert verdict({"conditions": [{"type": "Ready", "status": "True"}]}) is health.Health.HEALTHY
    assert verdict({"conditions": [{"type": "Ready", "status": "False"}]}) is health.Health.PROGRESSING
    assert verdict({"conditions": [{"type": "Stalled", "status": "True"}, {"type": "Ready", "status": "True"}]}) is (
        health.Health.DEGRADED
    )
    assert verdict({"conditions": [{"type": "Reconciling", "status": "True"}]}) is health.Health.PROGRESSING


def test_a_wildcard_rule_covers_custom_resources_only() -> None:
    rules = health.Rules(wildcard=health.kstatus)
    assert rules.watches_status("example.com", "Widget")
    assert rules.watches_status("cluster.x-k8s.io", "Cluster")
    assert not rules.watches_status("", "Secret")  # a Secret stays metadata-only
    assert not rules.watches_status("rbac.authorization.k8s.io", "Role")
    assert rules.watches_status("apps", "Deployment")  # its built-in rule


def test_a_written_object_is_progressing_until_the_cache_shows_its_generation() -> None:
    """Right after an apply the watch may still hold the old copy, whose status matches the old spec: Healthy
    is not believed until the cache has the generation the write made."""
    web = resources.ResourceKey("apps", "Deployment", "ns", "web")
    cm = resources.ResourceKey("", "ConfigMap", "ns", "cfg")
    new = resources.ResourceKey("apps", "Deployment", "ns", "new")
    healthy = health.HealthStatus(health.Health.HEALTHY)
    healths = {web: healthy, cm: healthy, new: health.HealthStatus(health.Health.MISSING)}
    seen = {web: 3}

    judged = health.after_writes(healths, {web: 4, new: 1}, seen.get)
    assert judged[web] == health.HealthStatus(health.Health.PROGRESSING, "the watch has not shown generation 4 yet")
    assert judged[cm] == healthy  # not written (or no generation): as the cache says
    assert judged[new].status is health.Health.PROGRESSING  # not cached yet
    seen[web] = 4
    assert health.after_writes(healths, {web: 4}, seen.get)[web] == healthy
    seen[web] = 5  # a later write by someone else: the cache is newer than ours, its status counts
    assert health.after_writes(healths, {web: 4}, seen.get)[web] == healthy

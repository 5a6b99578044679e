"""Sharding rules that need no cluster: rendezvous assignment and the config's checks (the Leases themselves are
tested against real clusters in tests/e2e/test_sharding.py)."""

from __future__ import annotations

import pathlib

import pytest

from agent import config
from agent.runtime import leases
from reconcilers import errors

CLUSTERS = [f"cluster-{i}" for i in range(200)]


def test_every_cluster_has_one_owner_and_a_leaving_member_moves_only_its_own() -> None:
    members = ["r1", "r2", "r3"]
    before = {c: leases.owner(c, members) for c in CLUSTERS}
    assert set(before.values()) == set(members)
    assert max(list(before.values()).count(m) for m in members) < 100  # roughly even: no member takes half of 200
    after = {c: leases.owner(c, ["r1", "r3"]) for c in CLUSTERS}
    assert {c for c in CLUSTERS if before[c] != after[c]} == {c for c in CLUSTERS if before[c] == "r2"}
    joined = {c: leases.owner(c, [*members, "r4"]) for c in CLUSTERS}
    assert {joined[c] for c in CLUSTERS if joined[c] != before[c]} == {"r4"}  # a newcomer only takes
    assert leases.owner("c", []) is None


def test_sharding_config_checks(tmp_path: pathlib.Path) -> None:
    base = {"homeCluster": {"inCluster": True}}
    assert config.ShardingConfig.model_validate(base).lease_duration == 15.0
    with pytest.raises(ValueError, match="retryPeriod < renewDeadline < leaseDuration"):
        config.ShardingConfig.model_validate({**base, "renewDeadline": "20s"})
    path = tmp_path / "c.yaml"
    path.write_text(
        "source: {url: /srv/repo}\n"
        "clusters: [{name: a, paths: [app]}]\n"
        "rollout: {order: [a]}\n"
        "sharding: {homeCluster: {inCluster: true}}\n"
    )
    with pytest.raises(errors.ConfigError, match="rollout and sharding cannot be combined"):
        config.load_config(path)

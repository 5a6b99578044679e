"""Property-based (hypothesis): generated malformed manifests and configs get a clear error (one that names the
file) and cause no write, or are valid. Manifests go through a real reconcile against a test cluster, whose audit
log shows what was written."""

from __future__ import annotations

import pathlib
import string
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import config
from agent.sync import cluster as runner
from reconcilers import errors, resources
from tests.conftest import agent_writes, audit_offset

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(string.printable, max_size=12))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(string.ascii_letters, max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
KINDS = st.sampled_from(["ConfigMap", "Secret", "List", "Widget", "", "Namespace", None, 7])
DOCS = st.fixed_dictionaries(
    {},
    optional={
        "apiVersion": st.sampled_from(["v1", "apps/v1", "", "nope/v9", None]),
        "kind": KINDS,
        "metadata": st.one_of(VALUES, st.fixed_dictionaries({"name": SCALARS, "namespace": SCALARS})),
        "data": VALUES,
        "items": st.lists(VALUES, max_size=2),
        "stringData": VALUES,
    },
)


@st.composite
def manifest_text(draw: st.DrawFn) -> bytes:
    docs = draw(st.lists(st.one_of(DOCS, VALUES), min_size=1, max_size=3))
    text = yaml.safe_dump_all(docs, allow_unicode=True)
    mutation = draw(st.sampled_from(["none", "truncate", "inject", "bytes"]))
    if mutation == "truncate" and text:
        text = text[: draw(st.integers(0, len(text)))]
    elif mutation == "inject":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["\t", ": [", "}{", "&a *b", "---\n- x\n", "\x00"])) + text[at:]
    raw = text.encode("utf-8")
    if mutation == "bytes":
        raw = raw + draw(st.binary(min_size=1, max_size=4))
    return raw


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, cluster_pool: Any) -> Any:
    (tc,) = cluster_pool.get(1)
    root = tmp_path_factory.mktemp("hostile")
    cfg = config.AgentConfig.model_validate(
        {
            "instance": "hostile",
            "source": {"url": str(root)},
            "clusters": [{"name": "a", "kubeconfig": str(tc.kubeconfig), "namespace": "default", "paths": ["app"]}],
        }
    )
    r = runner.ClusterSync(cfg, cfg.clusters[0])
    yield tc, root, r
    r.close()


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=manifest_text())
def test_malformed_manifests_get_a_clear_error_and_no_write(target: Any, raw: bytes) -> None:
    tc, root, r = target
    (root / "app").mkdir(exist_ok=True)
    (root / "app" / "generated.yaml").write_bytes(raw)
    offset = audit_offset(tc)
    result = r.reconcile(resources.Revision("0" * 40, "generated"), root, dry_run=True)
    assert result.error_kind is None or result.error_kind.value == "source", result.error
    if result.error_kind is not None:
        assert result.error is not None
        assert result.error.startswith("app/generated.yaml"), result.error
        assert result.entries == ()
    else:
        for e in result.entries:
            if e.action.value == "failed":
                assert e.message, e  # the API server's or our own words, never empty
    assert agent_writes(tc, offset) == []  # dry run or error: nothing written, ever


CONFIG_KEYS = st.sampled_from(["source", "clusters", "sync", "server", "instance", "variables", "rollout", "bogus"])


@settings(max_examples=150, deadline=None)
@given(doc=st.one_of(VALUES, st.dictionaries(CONFIG_KEYS, VALUES, max_size=5)))
def test_malformed_configs_get_an_error_naming_the_file(tmp_path_factory: pytest.TempPathFactory, doc: Any) -> None:
    path = pathlib.Path(tmp_path_factory.mktemp("cfg")) / "agent.yaml"
    path.write_text(yaml.safe_dump(doc))
    message = None
    try:
        config.load_config(path)
    except errors.ConfigError as e:  # any other exception fails the property
        message = str(e)
    assert message is None or message.startswith(f"{path}: "), message

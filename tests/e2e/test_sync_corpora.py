"""Every folder of the public corpora, committed to a git repo and synced to two real clusters.

Shows: every object the API server accepts exists afterwards with the fields from git; the documents it rejects
(harness-developer-hub: 2 Secrets, 1 ConfigMap) are reported by file and document with the server's message
and nothing of their stage is applied; CRDs and their objects in one file (nolar-kopf) apply in one sync; a second
sync writes nothing (counted in the API servers' audit logs) and reports every object unchanged.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from agent import cli
from agent.sources import manifests
from reconcilers import ordering
from tests import livecheck
from tests.conftest import CORPORA, GitRepo, agent_writes, audit_offset, cluster_entry, live_object


def corpus_paths(folder: str) -> list[str]:
    """The paths of a corpus folder that hold plain manifests and kustomizations: the folder itself, or, where it
    also ships Helm charts (``charts/``, tested on their own in test_helm_charts.py), its other entries."""
    root = CORPORA / folder
    if not (root / "charts").is_dir():
        return [folder]
    return [
        f"{folder}/{p.name}"
        for p in sorted(root.iterdir())
        if p.name != "charts" and (p.is_dir() or p.suffix in (".yaml", ".yml", ".json"))
    ]


PEERS_DEFINITIONS = {
    "argoproj-argo-cd": "Argo CD ApplicationSets (kinds of CRDs a cluster without Argo CD lacks), and kustomizations "
    "of remote bases (a test reaches no network)",
    "fluxcd-flux2-kustomize-helm-example": "Flux Kustomizations and HelmReleases, with per-cluster overlays of the "
    "same objects: a fleet layout for an importer, not one app",
}
"""Corpus folders of GitOps peers' definitions: input for importing their apps, not manifests to sync as they are."""
FOLDERS = sorted(
    p.name for p in CORPORA.iterdir() if p.is_dir() and corpus_paths(p.name) and p.name not in PEERS_DEFINITIONS
)
HARNESS = "harness-developer-hub"
HARNESS_FILE = (
    "harness-developer-hub/docs/platform/delegates/manage-delegates/auto-scale-using-replicas.example-delegate.yaml"
)


def sync(config: pathlib.Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any]]:
    code = cli.main(["sync", "--config", str(config), "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def ensure_namespace(tc: Any, name: str) -> None:
    from tests.conftest import dynamic_client

    ns = dynamic_client(tc).resources.get(api_version="v1", kind="Namespace")
    if live_object(tc, "v1", "Namespace", name) is None:
        ns.create(body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def test_corpora_folders_exist() -> None:
    assert set(FOLDERS) >= {HARNESS, "nolar-kopf", "stefanprodan-podinfo", "GoogleCloudPlatform-microservices-demo"}


@pytest.mark.parametrize("folder", FOLDERS)
def test_corpus_syncs_to_two_clusters(
    folder: str,
    corpora_repo: GitRepo,
    clusters: Any,
    make_config: Any,
    namespace: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = clusters(2)
    for tc in (a, b):
        ensure_namespace(tc, namespace)
    config = make_config(
        corpora_repo,
        [
            cluster_entry(a, "a", corpus_paths(folder), namespace),
            cluster_entry(b, "b", corpus_paths(folder), namespace),
        ],
    )

    code, results = sync(config, capsys)

    desired = manifests.load_paths(corpora_repo.path, corpus_paths(folder), namespace)
    for name, tc in (("a", a), ("b", b)):
        result = results[name]
        assert result["error"] is None, result["error"]
        objects = result["objects"]
        assert len(objects) == len(desired)
        failed = [o for o in objects if o["action"] == "failed"]
        if folder == HARNESS:
            assert sorted((o["kind"], o["source"]) for o in failed) == [
                ("ConfigMap", f"{HARNESS_FILE}#9"),
                ("Secret", f"{HARNESS_FILE}#2"),
                ("Secret", f"{HARNESS_FILE}#8"),
            ]
            assert all("base64" in o["message"] for o in failed if o["kind"] == "Secret")
            assert all("expected string" in o["message"] for o in failed if o["kind"] == "ConfigMap")
            # nothing of the rejected stage was applied; the prerequisites stage was
            skipped = [o for o in objects if o["action"] == "skipped"]
            assert len(skipped) == len(desired) - 3 - 2
            for o in skipped:
                assert live_object(tc, *_api(desired, o)) is None, o
            assert {o["kind"] for o in objects if o["action"] in ("created", "configured", "unchanged")} == {
                "Namespace",
                "ClusterRoleBinding",
            }
        else:
            assert failed == []
            # "configured": cluster-scoped objects an earlier test's agent applied are taken over
            assert {o["action"] for o in objects} <= {"created", "configured", "unchanged"}
        _assert_live_matches_git(tc, desired, objects, namespace)
    assert code == (1 if folder == HARNESS else 0)

    # A second sync right after writes nothing and reports every applied object unchanged.
    offsets = {n: audit_offset(tc) for n, tc in (("a", a), ("b", b))}
    code2, again = sync(config, capsys)
    assert code2 == code
    for name, tc in (("a", a), ("b", b)):
        actions = {(o["kind"], o["namespace"], o["name"]): o["action"] for o in again[name]["objects"]}
        first = {(o["kind"], o["namespace"], o["name"]): o["action"] for o in results[name]["objects"]}
        for k, action in first.items():
            assert actions[k] == ("unchanged" if action in ("created", "configured", "unchanged") else action), k
        assert agent_writes(tc, offsets[name]) == []


def _result_of(objects: list[dict[str, Any]], m: Any) -> dict[str, Any]:
    return next(o for o in objects if (o["source"], o["kind"], o["name"]) == (m.origin, m.key.kind, m.key.name))


def _api(desired: list[Any], o: dict[str, Any]) -> tuple[str, str, str, str | None]:
    m = next(m for m in desired if (m.origin, m.key.kind, m.key.name) == (o["source"], o["kind"], o["name"]))
    return m.body["apiVersion"], o["kind"], o["name"], o["namespace"] or None


def _assert_live_matches_git(tc: Any, desired: list[Any], objects: list[dict[str, Any]], namespace: str) -> None:
    checked = 0
    for m in desired:
        result = _result_of(objects, m)
        if result["action"] not in ("created", "unchanged", "configured"):
            continue
        live = live_object(tc, m.body["apiVersion"], m.key.kind, m.key.name, result["namespace"] or None)
        assert live is not None, f"{m.key} ({m.origin}) is not in the cluster"
        body = {k: v for k, v in m.body.items() if k != "status"}
        problems = livecheck.missing_fields(body, live)
        assert problems == [], f"{m.key} ({m.origin}): {problems}"
        checked += 1
    assert checked == sum(o["action"] in ("created", "unchanged", "configured") for o in objects)


def test_crds_and_their_objects_in_one_file_apply_in_one_sync(
    corpora_repo: GitRepo, clusters: Any, make_config: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (a,) = clusters(1)
    ensure_namespace(a, namespace)
    config = make_config(corpora_repo, [cluster_entry(a, "a", ["nolar-kopf/peering.yaml"], namespace)])
    code, results = sync(config, capsys)
    assert code == 0, results
    kinds = [o["kind"] for o in results["a"]["objects"]]
    assert kinds.count("CustomResourceDefinition") == 2
    assert {"ClusterKopfPeering", "KopfPeering"} <= set(kinds)
    assert live_object(a, "kopf.dev/v1", "ClusterKopfPeering", "default") is not None
    # the CRDs went first: prerequisites precede every custom resource in the reported order
    ranks = [ordering.kind_rank(k) for k in kinds]
    assert ranks == sorted(ranks)

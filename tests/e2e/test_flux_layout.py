"""Flux's reference layout (../shared/corpora/public/fluxcd-flux2-kustomize-helm-example, as it is) synced by the
agent without Flux's CRDs, two ways, each on its own test cluster:

- an app ``fleet`` with ``appOfApps: true`` at ``clusters/production``, the folder ``flux bootstrap`` points at;
- the config ``gitops-agent import flux clusters/production`` writes (its ``flux-system`` GitRepository given, as
  bootstrap keeps it out of git).

The chart repositories it names are served on loopback: podinfo's chart (the shared corpus's) from a chart
repository, and stand-ins of cert-manager's and envoy-gateway's charts (their CRDs: ClusterIssuer, GatewayClass,
Gateway, HTTPRoute) from an OCI registry, each a source of the config named like the Flux source that names it.
Both ways put the same objects on their cluster, with the production values (the overlay's patch of the
HelmRelease) and the ClusterIssuer's server patched by ``infra-configs``; ``dependsOn`` holds (controllers, then
configs, then apps: the configs' custom resources need the controllers' CRDs); a resync writes nothing."""

from __future__ import annotations

import json
import pathlib
import shutil
from typing import Any

import pytest
import yaml

from agent import cli
from tests.chartservers import ChartRepo, Registry, helm, package
from tests.conftest import CORPORA, GitRepo, live_object
from tests.e2e.test_import_flux import PODINFO

FLUX = CORPORA / "fluxcd-flux2-kustomize-helm-example"
GATEWAY = "gateway.networking.k8s.io"


def _crd(group: str, kind: str, plural: str, scope: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"{plural}.{group}"}
    if group.endswith(".k8s.io"):  # a protected group: its CRDs carry the approval (as the Gateway API's do)
        meta["annotations"] = {"api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/1538"}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": meta,
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "scope": scope,
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
        },
    }  # fmt: skip


def _stand_in(root: pathlib.Path, name: str, version: str, crds: list[dict[str, Any]]) -> pathlib.Path:
    chart = root / name
    (chart / "crds").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(yaml.safe_dump({"apiVersion": "v2", "name": name, "version": version}))
    (chart / "crds" / "crds.yaml").write_text(yaml.safe_dump_all(crds))
    return chart


def _sync(config: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    code = cli.main(["sync", "--config", str(config), "--json"])
    out = capsys.readouterr().out
    found = dict(json.loads(out))
    failed = [(a["app"], a["error"], [(o["name"], o["message"]) for o in a["objects"] if o["action"] == "failed"])
              for r in found.values() for a in r["apps"] if a["result"] != "Succeeded"]  # fmt: skip
    assert code == 0, failed
    return found


def _objects(result: dict[str, Any]) -> dict[str, set[tuple[str, str, str]]]:
    return {
        a["app"]: {(o["kind"], o["namespace"], o["name"]) for o in a["objects"]} for a in result["apps"] if a["objects"]
    }


def test_flux_reference_layout_syncs_as_it_is(
    clusters: Any, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    by_app, by_import = clusters(2)
    repo = GitRepo(tmp_path / "fleet")
    for part in ("apps", "clusters", "infrastructure"):
        shutil.copytree(FLUX / part, repo.path / part)
    repo.commit("flux2-kustomize-helm-example")
    home = tmp_path / "helm-home"
    charts = ChartRepo(tmp_path / "charts", home)
    charts.add(PODINFO)
    registry = Registry(home)
    stand_ins = tmp_path / "stand-ins"
    cert_manager = _stand_in(
        stand_ins, "cert-manager", "1.16.2", [_crd("cert-manager.io", "ClusterIssuer", "clusterissuers", "Cluster")]
    )
    gateway = _stand_in(stand_ins, "gateway-helm", "1.8.0", [
        _crd(GATEWAY, "GatewayClass", "gatewayclasses", "Cluster"),
        _crd(GATEWAY, "Gateway", "gateways", "Namespaced"),
        _crd(GATEWAY, "HTTPRoute", "httproutes", "Namespaced"),
    ])  # fmt: skip
    for chart, path in ((cert_manager, "jetstack/charts"), (gateway, "envoyproxy")):
        archive = package(chart, tmp_path / "packages", home)
        helm("push", str(archive), f"oci://{registry.host}/{path}", "--plain-http", home=home)
    sources = {
        "podinfo": {"type": "helm", "url": charts.url},
        "cert-manager": {"type": "oci", "url": f"oci://{registry.host}/jetstack/charts", "insecure": True},
        "gateway-helm": {"type": "oci", "url": f"oci://{registry.host}/envoyproxy", "insecure": True},
    }
    try:
        # 1. the bootstrap folder as an app of apps
        config = tmp_path / "by-app.yaml"
        config.write_text(yaml.safe_dump({
            "instance": "flux-layout",
            "sources": {"flux-system": {"url": str(repo.path), "cacheDir": str(tmp_path / "cache-git")},
                        **{n: {**s, "cacheDir": str(tmp_path / f"cache-{n}")} for n, s in sources.items()}},
            "clusters": [{"name": "production", "kubeconfig": str(by_app.kubeconfig)}],
            "apps": [{"name": "fleet", "source": "flux-system", "path": "clusters/production", "appOfApps": True}],
        }))  # fmt: skip
        first = _sync(config, capsys)["production"]
        assert {a["app"]: a["error"] for a in first["apps"] if a["error"]} == {}
        applied = _objects(first)
        assert set(applied) >= {
            "fleet-infra-controllers",
            "fleet-infra-controllers-cert-manager",
            "fleet-infra-controllers-envoy-gateway",
            "fleet-infra-configs",
            "fleet-apps",
            "fleet-apps-podinfo",
        }, set(applied)
        issuer = live_object(by_app, "cert-manager.io/v1", "ClusterIssuer", "letsencrypt")
        assert issuer["spec"]["acme"]["server"] == "https://acme-v02.api.letsencrypt.org/directory"  # the patch
        route = live_object(by_app, f"{GATEWAY}/v1", "HTTPRoute", "podinfo", "podinfo")
        assert route["spec"]["hostnames"] == ["podinfo.production"]
        assert live_object(by_app, f"{GATEWAY}/v1", "Gateway", "envoy", "envoy-gateway-system") is not None
        again = _sync(config, capsys)["production"]
        assert {o["action"] for a in again["apps"] for o in a["objects"]} <= {"unchanged"}

        # 2. the config the import writes, with the same sources for the charts the layout names
        imported = tmp_path / "imported.yaml"
        assert cli.main([
            "import", "flux", str(FLUX / "clusters" / "production"), "--out", str(imported),
            "--git-repository", f"flux-system={repo.path}", "--kubeconfig", str(by_import.kubeconfig),
        ]) == 0  # fmt: skip
        cfg = yaml.safe_load(imported.read_text())
        cfg["instance"] = "flux-import"
        cfg["sources"]["flux-system"]["cacheDir"] = str(tmp_path / "cache-git-2")
        cfg["sources"].update({n: {**s, "cacheDir": str(tmp_path / f"cache2-{n}")} for n, s in sources.items()})
        imported.write_text(yaml.safe_dump(cfg))
        second = _sync(imported, capsys)["default"]
        assert {a["app"]: a["error"] for a in second["apps"] if a["error"]} == {}
        same = {k.removeprefix("fleet-"): v for k, v in applied.items()}
        assert _objects(second) == same
        assert {o["action"] for a in _sync(imported, capsys)["default"]["apps"] for o in a["objects"]} <= {"unchanged"}
    finally:
        registry.stop()
        charts.unreachable()

"""``gitops-agent import flux`` against a real test cluster: the production overlay of Flux's reference layout
(../shared/corpora/public/fluxcd-flux2-kustomize-helm-example/apps/production, as it is: a kustomization over
the base's HelmRepository and HelmRelease, patching the release's values), with podinfo's chart (the shared
corpus's) served by a chart repository on loopback in place of stefanprodan.github.io (``--map-url``). The
config it writes syncs the chart with the production values (the overlay's patch applied to the HelmRelease), and
a resync writes nothing. The Namespace document, not a Flux object, is reported as not mapped (exit 1)."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
import yaml

from agent import cli
from tests.chartservers import ChartRepo
from tests.conftest import CORPORA, dynamic_client, live_object, wait_until
from tests.e2e.test_sync_corpora import ensure_namespace

FLUX = CORPORA / "fluxcd-flux2-kustomize-helm-example"
PODINFO = CORPORA / "stefanprodan-podinfo" / "charts" / "podinfo"
HTTPROUTE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {
        "name": "httproutes.gateway.networking.k8s.io",
        "annotations": {"api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/1538"},
    },
    "spec": {
        "group": "gateway.networking.k8s.io",
        "names": {"kind": "HTTPRoute", "plural": "httproutes", "singular": "httproute", "listKind": "HTTPRouteList"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }
        ],
    },
}
"""A stand-in for the Gateway API's HTTPRoute (the layout's envoy-gateway installs the real one)."""


def _gateway_api(tc: Any) -> None:
    crds = dynamic_client(tc).resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    if (
        live_object(tc, "apiextensions.k8s.io/v1", "CustomResourceDefinition", HTTPROUTE_CRD["metadata"]["name"])
        is None
    ):
        crds.create(body=HTTPROUTE_CRD)

    def established() -> bool:
        crd = live_object(tc, "apiextensions.k8s.io/v1", "CustomResourceDefinition", HTTPROUTE_CRD["metadata"]["name"])
        conditions = ((crd or {}).get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_until(established, timeout=30)


def test_flux_production_overlay_imports_and_syncs_the_release_with_its_values(
    clusters: Any, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tc,) = clusters(1)
    _gateway_api(tc)
    ensure_namespace(tc, "podinfo")  # the layout's Namespace object: reported, left to the operator (or an app)
    charts = ChartRepo(tmp_path / "charts", tmp_path / "helm-home")
    charts.add(PODINFO)
    out = tmp_path / "imported.yaml"
    try:
        capsys.readouterr()
        code = cli.main([
            "import", "flux", str(FLUX / "apps" / "production"), "--out", str(out),
            "--map-url", f"https://stefanprodan.github.io/podinfo={charts.url}", "--kubeconfig", str(tc.kubeconfig),
        ])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 1, err
        unmapped = [line for line in err.splitlines() if line.startswith("not mapped")]
        assert len(unmapped) == 1, err
        assert "(Namespace podinfo) kind: v1 Namespace: not a Flux object" in unmapped[0]
        cfg = yaml.safe_load(out.read_text())
        (app,) = cfg["apps"]
        assert app["chart"] == {"name": "podinfo", "version": ">=1.0.0"}  # the overlay's version
        assert app["helm"]["values"]["httpRoute"]["hostnames"] == ["podinfo.production"]
        assert app["helm"]["values"]["redis"]["enabled"] is True  # the base's values kept under the patch
        cfg["instance"] = "import-flux"
        cfg["sources"]["podinfo"]["cacheDir"] = str(tmp_path / "cache")
        out.write_text(yaml.safe_dump(cfg))

        code = cli.main(["sync", "--config", str(out), "--json"])
        first = capsys.readouterr().out
        assert code == 0, first
        route = live_object(tc, "gateway.networking.k8s.io/v1", "HTTPRoute", "podinfo", "podinfo")
        assert route is not None
        assert route["spec"]["hostnames"] == ["podinfo.production"]
        assert live_object(tc, "apps/v1", "Deployment", "podinfo", "podinfo") is not None
        assert live_object(tc, "apps/v1", "Deployment", "podinfo-redis", "podinfo") is not None

        code = cli.main(["sync", "--config", str(out), "--json"])
        again = json.loads(capsys.readouterr().out)
        assert code == 0
        actions = {o["action"] for a in again["default"]["apps"] for o in a["objects"]}
        assert actions == {"unchanged"}, actions
    finally:
        charts.unreachable()

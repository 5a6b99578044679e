"""An app's ``kustomize`` options over its rendered objects, with the real kustomize: Argo CD's name prefix and
suffix, image overrides (its strings and Flux's fields), patches (strategic merge and JSON 6902), common labels
(selectors included) and annotations; each object keeps the file and document it came from; a bad patch fails the
app naming kustomize's reason."""

from __future__ import annotations

import pathlib
from typing import Any

import pydantic
import pytest

from agent import config, kubeyaml
from agent.sources import manifests, overlay, tools
from reconcilers import errors

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}, {"name": "side", "image": "busybox"}]},
        },
    },
}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}}}


def _rendered(tmp_path: pathlib.Path) -> list[Any]:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "service.yaml").write_text(kubeyaml.dump_all([SERVICE]))
    (tmp_path / "app" / "web.yaml").write_text(kubeyaml.dump_all([DEPLOYMENT]))
    return manifests.load_paths(tmp_path, ["app"], "shop", label="app:web")


def test_the_options_apply_to_the_rendered_objects_and_origins_stay(tmp_path: pathlib.Path) -> None:
    options = config.KustomizeOptions.model_validate(
        {
            "namePrefix": "dev-",
            "nameSuffix": "-v2",
            "images": ["nginx:1.27", {"name": "busybox", "newName": "registry.example/busybox", "newTag": "1.36"}],
            "commonLabels": {"team": "shop"},
            "commonAnnotations": {"owner": "shop@example.com"},
            "patches": [
                {"patch": "- op: replace\n  path: /spec/replicas\n  value: 3", "target": {"kind": "Deployment"}},
                {"patch": "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: NodePort"},
            ],
        }
    )
    found = overlay.apply(_rendered(tmp_path), options, tools.DEFAULT_LIMITS, "web")
    by_kind = {m.key.kind: m for m in found}
    deployment, service = by_kind["Deployment"], by_kind["Service"]
    assert (deployment.key.name, service.key.name) == ("dev-web-v2", "dev-web-v2")
    spec = deployment.body["spec"]
    assert spec["replicas"] == 3
    images = [c["image"] for c in spec["template"]["spec"]["containers"]]
    assert images == ["nginx:1.27", "registry.example/busybox:1.36"]
    assert spec["selector"]["matchLabels"] == {"app": "web", "team": "shop"}  # commonLabels: selectors too
    assert deployment.body["metadata"]["annotations"] == {"owner": "shop@example.com"}
    assert service.body["spec"]["type"] == "NodePort"
    assert (deployment.origin, service.origin) == ("app/web.yaml#0", "app/service.yaml#0")
    assert deployment.source_path == "app:web"
    assert overlay.ORIGIN not in str([m.body for m in found])


def test_a_patch_kustomize_refuses_fails_the_app_with_its_reason(tmp_path: pathlib.Path) -> None:
    options = config.KustomizeOptions.model_validate(
        {"patches": [{"patch": "- op: remove\n  path: /spec/nothing", "target": {"kind": "Deployment"}}]}
    )
    with pytest.raises(errors.ManifestError, match=r"app web \(kustomize options\).*kustomize build failed"):
        overlay.apply(_rendered(tmp_path), options, tools.DEFAULT_LIMITS, "web")


def test_argocd_image_strings_read_as_kustomize_edit_set_image_does() -> None:
    options = config.KustomizeOptions.model_validate(
        {"images": ["nginx:1.2", "old=new:tag", "registry.io:5000/app", "ghcr.io/x/y@sha256:abc"]}
    )
    assert options.image_overrides() == [
        {"name": "nginx", "newTag": "1.2"},
        {"name": "old", "newName": "new", "newTag": "tag"},
        {"name": "registry.io:5000/app"},
        {"name": "ghcr.io/x/y", "digest": "sha256:abc"},
    ]
    with pytest.raises(pydantic.ValidationError, match="give"):
        config.KustomizeOptions.model_validate({"images": ["=:1"]})
    with pytest.raises(pydantic.ValidationError, match="give patch"):
        config.KustomizeOptions.model_validate({"patches": [{"path": "patch.yaml"}]})
    with pytest.raises(pydantic.ValidationError, match="label key"):
        config.KustomizeOptions.model_validate({"commonLabels": {"-bad": "x"}})

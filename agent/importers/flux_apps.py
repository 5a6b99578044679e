"""Flux's Kustomizations and HelmReleases as apps (see :mod:`agent.importers.flux` for the whole mapping)."""

from __future__ import annotations

from typing import Any

from agent.importers import documents, flux

KUSTOMIZATION = (
    "sourceRef",
    "path",
    "prune",
    "wait",
    "force",
    "dependsOn",
    "targetNamespace",
    "patches",
    "images",
    "commonMetadata",
    "decryption",
    "suspend",
    "serviceAccountName",
    *flux.NOTED,
)
HELMRELEASE = (
    "chart",
    "chartRef",
    "values",
    "releaseName",
    "targetNamespace",
    "dependsOn",
    "suspend",
    "serviceAccountName",
    "storageNamespace",
    *flux.NOTED,
)


def kustomization(f: flux.Flux, doc: documents.Document) -> None:
    """Map the Kustomization ``doc`` to an app of ``f.out``."""
    w, r, spec = doc.where, f.out.report, doc.body.get("spec") or {}
    found = f.path(w, spec, w.namespace)
    if found is None:
        return
    app = f.base(doc, spec)
    app["source"], app["path"] = found
    app["appOfApps"] = True  # Flux's tree nests: the Flux objects its path renders are its child apps
    r.mapped(w, "spec.path", f"source {found[0]}, path {found[1]}; appOfApps: true")
    sync = app.setdefault("sync", {})
    for key, to in (("prune", "prune"), ("wait", "wait"), ("force", "recreate")):
        if key in spec:
            sync[to] = bool(spec[key])
            r.mapped(w, f"spec.{key}", f"sync.{to}")
    options: dict[str, Any] = {}
    for key in ("patches", "images"):
        if spec.get(key):
            options[key] = _images(spec[key]) if key == "images" else spec[key]
            r.mapped(w, f"spec.{key}", f"kustomize.{key}")
    meta = spec.get("commonMetadata") or {}
    if meta.get("labels"):
        options["commonLabels"] = meta["labels"]
    if meta.get("annotations"):
        options["commonAnnotations"] = meta["annotations"]
    if meta:
        r.mapped(w, "spec.commonMetadata", "kustomize.commonLabels, commonAnnotations")
    if options:
        app["kustomize"] = options
    decryption = spec.get("decryption") or {}
    if decryption.get("provider") == "sops":
        app["decryption"] = {"sops": True}
        r.provide(w, "spec.decryption.secretRef", "give the age keys in decryption.sops.ageKeys (env or file)")
    elif decryption:
        r.unmapped(w, "spec.decryption", f"provider {decryption.get('provider')!r}: the agent decrypts SOPS only")
    for key in spec:
        if key == "postBuild":
            _post_build(f, doc, spec[key] or {}, app)
        elif key not in KUSTOMIZATION:
            r.unmapped(w, f"spec.{key}", "not a Kustomization field the agent has")
    f.out.apps.append(app)


def _post_build(f: flux.Flux, doc: documents.Document, post: dict[str, Any], app: dict[str, Any]) -> None:
    """``postBuild.substitute`` -> ``variables``, ``substituteFrom`` -> ``variablesFrom`` (in the Kustomization's
    namespace, where Flux reads them)."""
    w, r = doc.where, f.out.report
    for key, value in post.items():
        if key == "substitute":
            app["variables"] = {str(k): str(v) for k, v in (value or {}).items()}
            r.mapped(w, "spec.postBuild.substitute", "variables")
        elif key == "substituteFrom":
            found = []
            for i, ref in enumerate(value or []):
                if ref.get("kind") not in ("ConfigMap", "Secret"):
                    r.unmapped(w, f"spec.postBuild.substituteFrom[{i}]", f"a {ref.get('kind')}: ConfigMap or Secret")
                    continue
                found.append(
                    {"kind": ref["kind"], "name": ref.get("name"), "namespace": w.namespace or "default"}
                    | ({"optional": True} if ref.get("optional") else {})
                )
            app["variablesFrom"] = found
            r.mapped(w, "spec.postBuild.substituteFrom", "variablesFrom (read from the target cluster at each sync)")
        else:
            r.unmapped(w, f"spec.postBuild.{key}", "not a postBuild field the agent has")


def _images(images: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in i.items() if k in ("name", "newName", "newTag", "digest")} for i in images]


def helm_release(f: flux.Flux, doc: documents.Document) -> None:
    """Map the HelmRelease ``doc`` to an app of ``f.out``."""
    w, r, spec = doc.where, f.out.report, doc.body.get("spec") or {}
    app = f.base(doc, spec)
    if not _chart(f, doc, spec, app):
        return
    app.setdefault("namespace", w.namespace or "default")
    helm: dict[str, Any] = {}
    release = spec.get("releaseName") or (
        f"{spec['targetNamespace']}-{w.name}" if spec.get("targetNamespace") else w.name
    )
    helm["releaseName"] = release  # Flux's default: [<targetNamespace>-]<name>
    r.mapped(w, "spec.releaseName", f"helm.releaseName: {release}")
    if spec.get("values"):
        helm["values"] = spec["values"]
        r.mapped(w, "spec.values", "helm.values")
    install = spec.get("install") or {}
    if install.get("crds") == "Skip":
        helm["skipCrds"] = True
        r.mapped(w, "spec.install.crds", "helm.skipCrds")
    if install.get("createNamespace"):
        app["createNamespace"] = True
        r.mapped(w, "spec.install.createNamespace", "createNamespace")
    app["helm"] = helm
    for key in spec:
        if key == "valuesFrom":
            r.unmapped(
                w,
                "spec.valuesFrom",
                "values from ConfigMaps or Secrets in the cluster: put them in git "
                "(helm.valuesFiles) or in helm.values",
            )
        elif key not in HELMRELEASE:
            r.unmapped(w, f"spec.{key}", "not a HelmRelease field the agent has")
    f.out.apps.append(app)


def _chart(f: flux.Flux, doc: documents.Document, spec: dict[str, Any], app: dict[str, Any]) -> bool:
    w, r = doc.where, f.out.report
    if spec.get("chartRef"):
        ref = spec["chartRef"]
        found = f.ref(w, "spec.chartRef", ref, w.namespace)
        if found is None:
            return False
        if flux.kind(found) != "OCIRepository":
            r.unmapped(w, "spec.chartRef", f"a {ref.get('kind')}: the agent reads charts of OCIRepositories here")
            return False
        source, chart = f.chart_source(found)
        ref_spec = (found.body.get("spec") or {}).get("ref") or {}
        version = ref_spec.get("tag") or ref_spec.get("semver")
        app["source"], app["chart"] = source, {"name": chart, **({"version": version} if version else {})}
        r.mapped(w, "spec.chartRef", f"chart {chart} of source {source}")
        return True
    chart_spec: dict[str, Any] = ((spec.get("chart") or {}).get("spec")) or {}
    ref = chart_spec.get("sourceRef") or {}
    found = f.ref(w, "spec.chart.spec.sourceRef", ref, w.namespace) if ref else None
    if found is None:
        if not ref:
            r.unmapped(w, "spec.chart", "no chart source (chart.spec.sourceRef or chartRef)")
        return False
    if flux.kind(found) == "GitRepository":
        app["source"], app["path"] = f.git_source(found), str(chart_spec.get("chart", "."))
    else:
        source, _ = f.chart_source(found)
        version = chart_spec.get("version")
        app["source"] = source
        if chart_spec.get("verify"):
            f.cosign_verify(w, "spec.chart.spec.verify", chart_spec["verify"], source)
        app["chart"] = {"name": chart_spec.get("chart"), **({"version": version} if version and version != "*" else {})}
    if chart_spec.get("valuesFiles"):
        app.setdefault("helm", {})
        r.unmapped(w, "spec.chart.spec.valuesFiles", "files of the chart: list them in helm.valuesFiles by hand")
    r.mapped(w, "spec.chart.spec", f"source {app['source']}")
    return True

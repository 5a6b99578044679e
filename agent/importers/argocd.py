"""Argo CD's Applications and AppProjects as the agent's apps (``gitops-agent import argocd``).

What maps to what (Argo CD's Application specification, operator manual ``application.yaml``):

- ``metadata.name``/``labels`` -> the app's ``name``/``labels``; ``spec.destination.server``/``name`` -> the
  cluster it is placed on (``clusters.names``), ``namespace`` -> ``namespace``;
- ``spec.source`` (or each ``spec.sources`` entry without ``ref``): ``repoURL`` -> a source, ``path``,
  ``targetRevision`` -> the app's ``ref`` (a chart's ``version``), ``chart``; ``helm`` (``valueFiles``, relative
  to the path as Argo CD reads them; ``$ref/...`` files from another source -> ``helm.valuesFrom``; ``values``,
  ``valuesObject``, ``parameters``, ``releaseName``, ``skipCrds``, ``skipTests``, ``ignoreMissingValueFiles``),
  ``kustomize`` (``namePrefix``, ``nameSuffix``, ``images``, ``patches``, ``commonLabels``,
  ``commonAnnotations``), ``directory`` (``recurse``: Argo CD's default is false, so it is always written;
  ``include``, ``exclude``, ``jsonnet``);
- ``syncPolicy.automated`` -> ``sync.auto`` (absent: manual), ``prune``, ``selfHeal``; ``syncOptions``
  (``CreateNamespace=true`` -> ``createNamespace``; ``ServerSideApply``, ``PruneLast``, ``ApplyOutOfSyncOnly``,
  ``RespectIgnoreDifferences`` are how the agent always works); ``retry`` -> ``sync.retry``;
- ``ignoreDifferences`` (``jsonPointers``) -> ``ignoreDifferences``;
- the AppProject named by ``spec.project``: its destinations' namespaces -> the app's ``namespaces`` allow-list
  (cluster-scoped objects are then refused, as Argo CD refuses them without a ``clusterResourceWhitelist``); a
  destination or repository the project does not allow is reported, as Argo CD would refuse the app.

Anything else (a Config Management Plugin, ``jqPathExpressions``, a kustomize ``replicas``...) is reported as not
mapped, with why.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Mapping
from typing import Any

import yaml

from agent.importers import documents, helmset, imported, report

GROUP = "argoproj.io"
_SERVER = re.compile(r"(\{\{-?\s*\.?)server(\s*-?\}\})")
ALWAYS = {
    "ServerSideApply=true": "the agent always applies server-side",
    "PruneLast=true": "the agent prunes after every wave is applied (after PostSync)",
    "ApplyOutOfSyncOnly=true": "the agent writes only objects whose desired state differs from the live one",
    "RespectIgnoreDifferences=true": "ignored fields always keep their live value when the agent applies",
    "CreateNamespace=false": "the default",
    "Validate=true": "the default",
}
"""Sync options that describe how the agent always works (mapped, nothing written)."""


def is_argocd(doc: documents.Document, kind: str) -> bool:
    """True when ``doc`` is an Argo CD object of ``kind``."""
    return str(doc.body.get("apiVersion", "")).startswith(GROUP + "/") and doc.body.get("kind") == kind


def projects(docs: list[documents.Document]) -> dict[str, documents.Document]:
    """The AppProjects of ``docs`` by name."""
    return {d.where.name: d for d in docs if is_argocd(d, "AppProject")}


def application(out: imported.Imported, doc: documents.Document, known: Mapping[str, documents.Document]) -> None:
    """Map the Application ``doc`` into ``out`` (one app per rendered source), reporting every field."""
    w, r = doc.where, out.report
    meta, spec = doc.body.get("metadata") or {}, doc.body.get("spec") or {}
    app = template(out, w, meta, spec, known)
    out.apps.extend(app)
    out.projects.update({str(a["name"]): str(spec.get("project") or "default") for a in app})
    for key in meta:
        if key not in ("name", "namespace", "labels", "annotations", "finalizers"):
            r.note(w, f"metadata.{key}", "not needed by the agent")
    for key in meta.get("finalizers") or ():
        r.note(w, "metadata.finalizers", f"{key}: a removed app's objects are pruned when its sync.prune is on")


def template(
    out: imported.Imported,
    w: report.Where,
    meta: Mapping[str, Any],
    spec: Mapping[str, Any],
    known: Mapping[str, documents.Document],
) -> list[dict[str, Any]]:
    """The app entries of an Application's ``metadata`` and ``spec`` (also an ApplicationSet's template, whose
    strings stay templates), reporting every field into ``out.report``."""
    r = out.report
    base: dict[str, Any] = {"name": meta.get("name", "")}
    if meta.get("labels"):
        base["labels"] = dict(meta["labels"])
        r.mapped(w, "metadata.labels", "labels")
    dest = spec.get("destination") or {}
    server, name = str(dest.get("server") or ""), str(dest.get("name") or "")
    if "{{" in server + name:  # an app set's template: by the generated cluster's name ({{server}} -> {{name}})
        cluster = name or _SERVER.sub(r"\1name\2", server)
    else:
        cluster = out.cluster_for(w, "spec.destination", server, name)
    base["clusters"] = {"names": [cluster]}
    r.mapped(w, "spec.destination", f"clusters.names: [{cluster}]")
    if dest.get("namespace"):
        base["namespace"] = dest["namespace"]
        r.mapped(w, "spec.destination.namespace", "namespace")
    _sync_policy(w, r, spec.get("syncPolicy") or {}, base)
    _ignore(w, r, spec.get("ignoreDifferences") or [], base)
    _project(out, w, spec, dest, known, base)
    for key in spec:
        if key in ("info", "revisionHistoryLimit"):
            r.note(w, f"spec.{key}", "not needed: the agent keeps its own sync history")
        elif key not in ("source", "sources", "destination", "syncPolicy", "ignoreDifferences", "project"):
            r.unmapped(w, f"spec.{key}", "not a field of an Application this import knows")
    listed = spec.get("sources") or ([spec["source"]] if spec.get("source") else [])
    field = "spec.sources" if spec.get("sources") else "spec.source"
    refs = {
        s["ref"]: out.sources.name(str(s.get("repoURL", ""))) for s in listed if isinstance(s, dict) and s.get("ref")
    }
    rendered = [(i, s) for i, s in enumerate(listed) if isinstance(s, dict) and (not s.get("ref") or s.get("path"))]
    if not rendered:
        r.unmapped(w, field, "no source to render")
    apps = []
    for i, src in rendered:
        where = f"{field}[{i}]" if spec.get("sources") else field
        app = {**base, **({"name": f"{base['name']}-{i}"} if len(rendered) > 1 else {})}
        if _source(out, w, where, src, refs, app):
            apps.append(app)
    if len(rendered) > 1:
        r.note(w, field, f"{len(rendered)} sources render objects: one app each, named <name>-<index>")
    return apps


def _source(
    out: imported.Imported,
    w: report.Where,
    field: str,
    src: Mapping[str, Any],
    refs: Mapping[str, str],
    app: dict[str, Any],
) -> bool:
    r = out.report
    url = str(src.get("repoURL") or "")
    if not url:
        r.unmapped(w, f"{field}.repoURL", "missing")
        return False
    if src.get("plugin") is not None:
        r.unmapped(
            w,
            f"{field}.plugin",
            "a Config Management Plugin: the agent renders plain YAML, kustomize, Helm "
            "and jsonnet only (render it to one of those in git)",
        )
        return False
    revision = str(src.get("targetRevision") or "")
    if src.get("chart"):
        kind = "oci" if url.startswith("oci://") or "://" not in url else "helm"
        app["source"] = out.sources.name(url, kind)
        app["chart"] = {"name": src["chart"], **({"version": revision} if revision else {})}
        r.mapped(w, f"{field}.chart", f"chart.name (source {app['source']}, {kind})")
    else:
        app["source"] = out.sources.name(url)
        app["path"] = posixpath.normpath(str(src.get("path") or "."))
        if revision and revision != "HEAD":
            app["ref"] = revision
            r.mapped(w, f"{field}.targetRevision", "ref")
        elif revision == "HEAD" or not revision:
            r.note(
                w,
                f"{field}.targetRevision",
                f"HEAD: the source's ref (main unless sources.{app['source']}.ref says otherwise)",
            )
    r.mapped(w, f"{field}.repoURL", f"sources.{app['source']} ({out.sources.entries[app['source']]['url']})")
    for key, value in src.items():
        if key in ("repoURL", "targetRevision", "chart", "ref"):
            continue
        if key == "path":
            r.mapped(w, f"{field}.path", "path")
        elif key == "name":
            r.note(w, f"{field}.name", "a source's display name: not needed")
        elif key == "helm":
            _helm(out, w, f"{field}.helm", value or {}, refs, app)
        elif key == "kustomize":
            _kustomize(w, r, f"{field}.kustomize", value or {}, app)
        elif key == "directory":
            _directory(w, r, f"{field}.directory", value or {}, app)
        else:
            r.unmapped(w, f"{field}.{key}", "not a field of a source this import knows")
    if "directory" not in src and not src.get("chart"):
        app["directory"] = {"recurse": False}  # Argo CD reads the top of the path only unless told to recurse
    return True


def _helm(
    out: imported.Imported,
    w: report.Where,
    field: str,
    helm: Mapping[str, Any],
    refs: Mapping[str, str],
    app: dict[str, Any],
) -> None:
    r = out.report
    options: dict[str, Any] = {}
    optional = bool(helm.get("ignoreMissingValueFiles"))
    values: dict[str, Any] = {}
    for key, value in helm.items():
        at = f"{field}.{key}"
        if key == "valueFiles":
            files: list[Any] = []
            froms: list[dict[str, Any]] = []
            for i, f in enumerate(value or []):
                ref, _, rest = str(f).partition("/")
                if ref.startswith("$") and ref[1:] in refs:
                    froms.append({"source": refs[ref[1:]], "path": rest, **({"optional": True} if optional else {})})
                    r.mapped(w, f"{at}[{i}]", f"helm.valuesFrom (source {refs[ref[1:]]})")
                    continue
                path = str(f) if "chart" in app else posixpath.normpath(posixpath.join(app["path"], str(f)))
                files.append({"path": path, "optional": True} if optional else path)
                r.mapped(w, f"{at}[{i}]", f"helm.valuesFiles: {path}")
            if files:
                options["valuesFiles"] = files
            if froms:
                options["valuesFrom"] = froms
        elif key == "values":
            parsed = yaml.safe_load(str(value or "")) or {}
            if isinstance(parsed, dict):
                values = helmset.merge(values, parsed)
                r.mapped(w, at, "helm.values")
            else:
                r.unmapped(w, at, "not a YAML mapping")
        elif key == "valuesObject":
            values = helmset.merge(values, dict(value or {}))
            r.mapped(w, at, "helm.values (over helm.values, as Argo CD merges them)")
        elif key == "releaseName":
            options["releaseName"] = value
            r.mapped(w, at, "helm.releaseName")
        elif key in ("skipCrds", "skipTests"):
            options[key] = bool(value)
            r.mapped(w, at, f"helm.{key}")
        elif key == "ignoreMissingValueFiles":
            r.mapped(w, at, "optional: true on each values file")
        elif key == "passCredentials":
            r.note(w, at, "the agent gives a chart source's credentials to helm itself")
        elif key == "version":
            r.note(w, at, "the agent runs Helm 3")
        elif key != "parameters":
            r.unmapped(w, at, "no equivalent in the agent's helm options")
    for i, p in enumerate(helm.get("parameters") or []):
        problem = helmset.set_value(values, str(p.get("name", "")), p.get("value"), bool(p.get("forceString")))
        if problem:
            r.unmapped(w, f"{field}.parameters[{i}]", problem)
        else:
            r.mapped(w, f"{field}.parameters[{i}]", f"helm.values.{p.get('name')}")
    if values:
        options["values"] = values
    if options:
        app["helm"] = options


KUSTOMIZE = ("namePrefix", "nameSuffix", "images", "patches", "commonLabels", "commonAnnotations")


def _kustomize(w: report.Where, r: report.Report, field: str, spec: Mapping[str, Any], app: dict[str, Any]) -> None:
    options = {}
    for key, value in spec.items():
        if key in KUSTOMIZE:
            options[key] = value
            r.mapped(w, f"{field}.{key}", f"kustomize.{key}")
        else:
            r.unmapped(w, f"{field}.{key}", "not among the agent's kustomize options (" + ", ".join(KUSTOMIZE) + ")")
    if options:
        app["kustomize"] = options


def _directory(w: report.Where, r: report.Report, field: str, spec: Mapping[str, Any], app: dict[str, Any]) -> None:
    directory: dict[str, Any] = {"recurse": bool(spec.get("recurse", False))}
    for key, value in spec.items():
        if key in ("recurse", "include", "exclude"):
            directory[key] = value if key != "recurse" else bool(value)
            r.mapped(w, f"{field}.{key}", f"directory.{key}")
        elif key == "jsonnet":
            jsonnet = {k: v for k, v in (value or {}).items() if k in ("extVars", "tlas", "libs") and v}
            for k in value or {}:
                if k in ("extVars", "tlas", "libs"):
                    r.mapped(w, f"{field}.jsonnet.{k}", f"jsonnet.{k}")
                else:
                    r.unmapped(w, f"{field}.jsonnet.{k}", "not among the agent's jsonnet options")
            if jsonnet:
                app["jsonnet"] = jsonnet
        else:
            r.unmapped(w, f"{field}.{key}", "not among the agent's directory options")
    app["directory"] = directory


def _sync_policy(w: report.Where, r: report.Report, policy: Mapping[str, Any], app: dict[str, Any]) -> None:
    sync: dict[str, Any] = {}
    automated = policy.get("automated")
    if automated is None or (isinstance(automated, dict) and automated.get("enabled") is False):
        sync["auto"] = False
        r.mapped(w, "spec.syncPolicy.automated", "sync.auto: false (manual sync, as without automated)")
    else:
        sync["auto"] = True
        sync["prune"] = bool(automated.get("prune", False))
        sync["selfHeal"] = bool(automated.get("selfHeal", False))
        r.mapped(w, "spec.syncPolicy.automated", "sync.auto, sync.prune, sync.selfHeal")
        for key in automated:
            if key == "allowEmpty" and automated[key]:
                r.unmapped(w, "spec.syncPolicy.automated.allowEmpty", "only the top-level sync.allowEmpty exists")
            elif key not in ("prune", "selfHeal", "enabled", "allowEmpty"):
                r.unmapped(w, f"spec.syncPolicy.automated.{key}", "no equivalent")
    for i, option in enumerate(policy.get("syncOptions") or []):
        at = f"spec.syncPolicy.syncOptions[{i}]"
        if option == "CreateNamespace=true":
            app["createNamespace"] = True
            r.mapped(w, at, "createNamespace: true")
        elif option in ALWAYS:
            r.mapped(w, at, ALWAYS[option])
        elif option in ("Replace=true", "Force=true"):
            sync["recreate"] = True
            r.mapped(w, at, "sync.recreate: true (objects re-created when a change is refused as immutable)")
        else:
            r.unmapped(w, at, f"{option}: not a sync option the agent has for a whole app")
    retry = policy.get("retry")
    if retry:
        sync["retry"] = {k: v for k, v in retry.items() if k in ("limit", "backoff")}
        r.mapped(w, "spec.syncPolicy.retry", "sync.retry")
    for key in policy:
        if key not in ("automated", "syncOptions", "retry"):
            r.unmapped(w, f"spec.syncPolicy.{key}", "no equivalent")
    app["sync"] = sync


def _ignore(w: report.Where, r: report.Report, rules: list[Any], app: dict[str, Any]) -> None:
    found = []
    for i, rule in enumerate(rules):
        entry = {k: rule[k] for k in ("group", "kind", "name", "namespace", "jsonPointers") if rule.get(k)}
        for key in rule:
            if key not in entry and key not in ("group", "kind", "name", "namespace", "jsonPointers"):
                r.unmapped(w, f"spec.ignoreDifferences[{i}].{key}", "only jsonPointers are read by the agent")
        if entry.get("jsonPointers"):
            found.append(entry)
            r.mapped(w, f"spec.ignoreDifferences[{i}]", "ignoreDifferences")
    if found:
        app["ignoreDifferences"] = found


def _project(
    out: imported.Imported,
    w: report.Where,
    spec: Mapping[str, Any],
    dest: Mapping[str, Any],
    known: Mapping[str, documents.Document],
    app: dict[str, Any],
) -> None:
    r, name = out.report, str(spec.get("project") or "default")
    project = known.get(name)
    if "{{" in name:
        r.note(w, "spec.project", "a templated project: its restrictions are not read (check them by hand)")
        return
    if project is None:
        if name != "default":
            r.unmapped(w, "spec.project", f"AppProject {name!r} is not among the files imported")
        return
    pspec = project.body.get("spec") or {}
    repos = [str(s) for s in pspec.get("sourceRepos") or []]
    urls = [s.get("repoURL", "") for s in spec.get("sources") or [spec.get("source") or {}]]
    for url in urls:
        if repos and not any(fnmatch.fnmatchcase(str(url), p) for p in repos):
            r.unmapped(w, "spec.project", f"AppProject {name} does not allow the repository {url} (Argo CD refuses)")
    destinations = pspec.get("destinations") or []
    namespaces = sorted({str(d.get("namespace") or "*") for d in destinations})
    allowed = [
        d
        for d in destinations
        if fnmatch.fnmatchcase(str(dest.get("server") or ""), str(d.get("server") or "*"))
        or fnmatch.fnmatchcase(str(dest.get("name") or ""), str(d.get("name") or "*"))
    ]
    if not allowed:
        r.unmapped(w, "spec.project", f"AppProject {name} has no destination for this app's (Argo CD refuses)")
    cluster_wide = pspec.get("clusterResourceWhitelist") or []
    if "*" not in namespaces and not cluster_wide:
        app["namespaces"] = namespaces
        r.mapped(w, "spec.project", f"namespaces: {namespaces} (AppProject {name}'s destinations)")
    elif "*" not in namespaces:
        r.unmapped(
            w,
            "spec.project",
            f"AppProject {name} allows cluster-scoped kinds and some namespaces only: "
            "the agent's namespaces allow-list refuses every cluster-scoped object but Namespaces",
        )
    for key in pspec:
        if key not in ("sourceRepos", "destinations", "clusterResourceWhitelist", "description"):
            r.unmapped(project.where, f"spec.{key}", "an AppProject field the agent has no equivalent for")

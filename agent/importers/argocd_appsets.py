"""Argo CD's ApplicationSets as the agent's ``appSets`` (Argo CD's ApplicationSet specification).

The generators the agent has keep their fields (``list``, ``clusters``, ``git``, ``pullRequest``, ``matrix``,
``merge``): a git generator's ``repoURL`` becomes a source, a pull request generator's ``tokenRef`` a token from
an environment variable. The template (an Application's ``metadata`` and ``spec``) is mapped as an Application is
(:func:`agent.importers.argocd.template`), its strings left as templates; a destination templated by server
(``{{server}}``, which only a clusters generator gives) is placed by the cluster's name from the same set.
``goTemplate``, ``goTemplateOptions`` and ``syncPolicy.preserveResourcesOnDeletion`` keep their names.
Other generators (``scmProvider``, ``clusterDecisionResource``, ``plugin``), ``templatePatch`` and
``strategy`` are reported as not mapped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agent.importers import argocd, documents, imported, report


def app_set(out: imported.Imported, doc: documents.Document, known: Mapping[str, documents.Document]) -> None:
    """Map the ApplicationSet ``doc`` into ``out.app_sets``, reporting every field."""
    w, r = doc.where, out.report
    spec = doc.body.get("spec") or {}
    entry: dict[str, Any] = {"name": w.name}
    listed = enumerate(spec.get("generators") or [])
    generators = [found for i, g in listed if (found := _generator(out, w, f"spec.generators[{i}]", g))]
    if not generators:
        r.unmapped(w, "spec.generators", "no generator the agent has")
        return
    entry["generators"] = generators
    tpl = spec.get("template") or {}
    apps = argocd.template(out, w, tpl.get("metadata") or {}, tpl.get("spec") or {}, known)
    if not apps:
        return
    app = apps[0]
    if len(apps) > 1:
        r.unmapped(w, "spec.template.spec.sources", "more than one rendered source: only the first is templated")
    entry["template"] = app
    for key, value in spec.items():
        if key in ("goTemplate", "goTemplateOptions"):
            entry[key] = value
            r.mapped(w, f"spec.{key}", key)
        elif key == "syncPolicy":
            for k, v in (value or {}).items():
                if k == "preserveResourcesOnDeletion":
                    entry["preserveResourcesOnDeletion"] = bool(v)
                    r.mapped(w, f"spec.syncPolicy.{k}", "preserveResourcesOnDeletion")
                else:
                    r.unmapped(w, f"spec.syncPolicy.{k}", "the agent's app sets create, update and delete their apps")
        elif key not in ("generators", "template"):
            r.unmapped(w, f"spec.{key}", "not an ApplicationSet field the agent has")
    out.app_sets.append(entry)


def _generator(out: imported.Imported, w: report.Where, field: str, g: Mapping[str, Any]) -> dict[str, Any] | None:
    r = out.report
    if not isinstance(g, Mapping) or len(g) == 0:
        r.unmapped(w, field, "empty")
        return None
    found: dict[str, Any] = {}
    for kind, spec in g.items():
        at = f"{field}.{kind}"
        spec = spec or {}
        if kind == "list":
            found["list"] = {k: v for k, v in spec.items() if k in ("elements", "elementsYaml")}
            _rest(r, w, at, spec, ("elements", "elementsYaml"))
        elif kind == "clusters":
            found["clusters"] = {k: v for k, v in spec.items() if k in ("selector", "values")}
            _rest(r, w, at, spec, ("selector", "values"))
        elif kind == "git":
            found["git"] = _git(out, w, at, spec)
        elif kind == "pullRequest":
            found["pullRequest"] = _pull_request(out, w, at, spec)
        elif kind in ("matrix", "merge"):
            subs = [
                s
                for i, x in enumerate(spec.get("generators") or [])
                if (s := _generator(out, w, f"{at}.generators[{i}]", x))
            ]
            found[kind] = {"generators": subs, **({"mergeKeys": spec["mergeKeys"]} if kind == "merge" else {})}
            _rest(r, w, at, spec, ("generators", "mergeKeys"))
        elif kind == "selector":
            r.unmapped(w, at, "a post-selector on a generator's sets: filter in the generator instead")
            continue
        else:
            r.unmapped(w, at, "a generator the agent does not have (list, clusters, git, pullRequest, matrix, merge)")
            return None
        r.mapped(w, at, f"generators: {kind}")
    return found or None


def _rest(r: report.Report, w: report.Where, at: str, spec: Mapping[str, Any], known: tuple[str, ...]) -> None:
    for key in spec:
        if key not in known:
            r.unmapped(w, f"{at}.{key}", "not a field of this generator the agent has")


def _git(out: imported.Imported, w: report.Where, at: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    source = out.sources.name(str(spec.get("repoURL", "")))
    revision = str(spec.get("revision") or "")
    if revision and revision != "HEAD":
        out.sources.entries[source].setdefault("ref", revision)
        out.report.mapped(w, f"{at}.revision", f"sources.{source}.ref")
    found = {
        "source": source,
        **{k: v for k, v in spec.items() if k in ("directories", "files", "pathParamPrefix", "values")},
    }
    _rest(out.report, w, at, spec, ("repoURL", "revision", "directories", "files", "pathParamPrefix", "values"))
    return found


def _pull_request(out: imported.Imported, w: report.Where, at: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in spec.items():
        if key in ("github", "gitlab"):
            provider = {k: v for k, v in (value or {}).items() if k != "tokenRef"}
            ref = (value or {}).get("tokenRef")
            if ref:
                env = re.sub(r"[^A-Z0-9]+", "_", f"{ref.get('secretName', '')}_{ref.get('key', '')}".upper()).strip("_")
                provider["token"] = {"env": env}
                out.report.provide(
                    w, f"{at}.{key}.tokenRef", f"Secret {ref.get('secretName')} key {ref.get('key')}: set ${env} to it"
                )
            found[key] = provider
        elif key == "requeueAfterSeconds":
            found[key] = value
        else:
            out.report.unmapped(w, f"{at}.{key}", "a pull request provider or field the agent does not have")
    return found

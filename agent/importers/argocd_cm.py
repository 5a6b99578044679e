"""Argo CD's ``argocd-cm`` ConfigMap (operator manual, ``argocd-cm.yaml``), where it maps onto the agent's config.

- ``resource.customizations.ignoreDifferences.<group>_<kind>`` (``<kind>`` for the core group; ``all`` for every
  kind), and the same under the older single ``resource.customizations`` key: ``jsonPointers`` -> top-level
  ``ignoreDifferences`` rules for that group and kind; ``jqPathExpressions`` and ``managedFieldsManagers`` are
  reported (the agent reads JSON pointers);
- ``resource.customizations.health.<group>_<kind>`` (a Lua script) is reported: the agent's health rules
  (``healthChecks``) are CEL expressions, so the script has to be rewritten, and the report names it;
- ``oidc.config`` -> ``server.oidc`` (:mod:`agent.importers.argocd_rbac`); ``dex.config`` is reported;
- every other key is reported as not mapped, with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from agent.importers import argocd_rbac, documents, imported, report

IGNORE = "resource.customizations.ignoreDifferences."
HEALTH = "resource.customizations.health."
NOT_NEEDED = (
    "url",
    "admin.enabled",
    "users.anonymous.enabled",
    "timeout.reconciliation",
    "application.instanceLabelKey",
)
"""Keys whose work the agent does its own way (its server, sync interval, tracking label)."""


def is_config_map(doc: documents.Document, name: str) -> bool:
    """True when ``doc`` is Argo CD's ConfigMap ``name`` (``argocd-cm``, ``argocd-rbac-cm``)."""
    return doc.body.get("kind") == "ConfigMap" and doc.where.name == name


def config_map(out: imported.Imported, doc: documents.Document) -> None:
    """Map ``argocd-cm`` into ``out``'s top-level ``ignoreDifferences``; report every other key."""
    w, r = doc.where, out.report
    data: Mapping[str, Any] = doc.body.get("data") or {}
    for key, value in data.items():
        field = f"data[{key!r}]"
        if key.startswith(IGNORE):
            _ignore(out, w, field, key.removeprefix(IGNORE), value)
        elif key == "resource.customizations":
            for group_kind, spec in (yaml.safe_load(str(value)) or {}).items():
                for what, inner in (spec or {}).items():
                    if what == "ignoreDifferences":
                        _ignore(out, w, f"{field}.{group_kind}.ignoreDifferences", group_kind.replace("/", "_"), inner)
                    else:
                        r.unmapped(w, f"{field}.{group_kind}.{what}", _why(what))
        elif key.startswith(HEALTH):
            r.unmapped(w, field, _why("health"))
        elif key == "oidc.config":
            argocd_rbac.oidc_config(out, w, field, value)
        elif key == "dex.config":
            r.unmapped(w, field, "Argo CD's bundled Dex: run Dex (or another OpenID provider) and set server.oidc")
        elif key in NOT_NEEDED:
            r.note(w, field, "the agent's own server, interval and tracking do this")
        else:
            r.unmapped(w, field, "an Argo CD setting the agent has no equivalent for")


def _why(what: str) -> str:
    if what in ("health", "health.lua"):
        return "a Lua health script: write it as a CEL rule under healthChecks (the agent's health rules)"
    return f"{what}: a resource customization the agent has no equivalent for"


def _ignore(out: imported.Imported, w: report.Where, field: str, group_kind: str, value: Any) -> None:
    r = out.report
    spec = yaml.safe_load(value) if isinstance(value, str) else value
    if not isinstance(spec, dict):
        r.unmapped(w, field, "not a YAML mapping")
        return
    rule: dict[str, Any] = {}
    if group_kind != "all":
        group, _, kind = group_kind.rpartition("_")
        rule = {**({"group": group} if group else {}), "kind": kind}
    pointers = [str(p) for p in spec.get("jsonPointers") or []]
    if pointers:
        out.ignore.append({**rule, "jsonPointers": pointers})
        r.mapped(w, f"{field}.jsonPointers", f"ignoreDifferences ({group_kind})")
    for key in spec:
        if key != "jsonPointers":
            r.unmapped(w, f"{field}.{key}", "the agent's ignore rules read jsonPointers only")

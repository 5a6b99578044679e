"""Argo CD's ``argocd-rbac-cm`` (operator manual, "RBAC Configuration") and the ``oidc.config`` of ``argocd-cm``,
where they map onto the agent's ``rbac`` and ``server.oidc``.

- ``policy.csv`` and every ``policy.<name>.csv`` (Argo CD concatenates them) -> ``rbac.policy``, line by line:
  ``g`` lines as they are; ``p`` lines by resource: ``applications`` (object ``<project>/<app>``) -> ``apps``
  with object ``<app>/*`` (``get`` also grants ``diff``, as Argo CD shows diffs to whoever may get the app;
  ``sync`` and ``override`` as they are; a project other than ``*`` becomes one line per imported app of that
  project, since the agent has no projects), ``applicationsets`` (``<project>/<appset>``) -> ``appsets``,
  ``clusters`` (by API server URL) -> ``clusters`` (by the imported cluster's name), ``repositories`` (by URL) ->
  ``sources`` (by the imported source's name); subjects, the effect and the built-in ``role:readonly`` and
  ``role:admin`` as they are. Actions with no equivalent (create, update, delete, ``action/...``) and resources
  the agent does not have (projects, accounts, certificates, gpgkeys, logs, exec, extensions) are reported.
- ``policy.default`` -> ``rbac.defaultRole``; ``scopes`` is reported against ``usernameClaim``/``groupsClaim``;
  ``policy.matchMode: regex`` is reported (the agent's objects are globs).
- ``oidc.config`` (issuer, clientID, clientSecret, requestedScopes) -> ``server.oidc``, the secret to provide as
  an environment variable; Argo CD's bundled Dex (``dex.config``) is reported: run Dex and point
  ``server.oidc`` at it.

A policy needs someone to authenticate: without ``oidc.config`` the config gets ``server.token`` from
``$GITOPS_AGENT_TOKEN`` (reported as to provide). Used by :mod:`agent.importers.run`.
"""

from __future__ import annotations

import csv
import fnmatch
from collections.abc import Mapping
from typing import Any

import yaml

from agent.importers import documents, imported, report

ACTIONS = {"get": ("get", "diff"), "sync": ("sync",), "override": ("override",), "*": ("*",)}
"""Argo CD's actions on applications -> the agent's (the others have no equivalent)."""
OTHER = {"projects", "accounts", "certificates", "gpgkeys", "logs", "exec", "extensions"}
"""Argo CD's resources the agent does not have."""


def rbac_config_map(out: imported.Imported, doc: documents.Document) -> None:
    """Map ``argocd-rbac-cm`` into ``out.rbac``; report every key and line that does not map."""
    w, r = doc.where, out.report
    data: Mapping[str, Any] = doc.body.get("data") or {}
    lines: list[str] = []
    for key, value in data.items():
        field = f"data[{key!r}]"
        if key == "policy.csv" or (key.startswith("policy.") and key.endswith(".csv")):
            for number, row in enumerate(csv.reader(str(value).splitlines(), skipinitialspace=True), start=1):
                fields = [f.strip() for f in row]
                if not fields or not fields[0] or fields[0].startswith("#"):
                    continue
                lines.extend(_line(out, w, f"{field} line {number}", fields))
        elif key == "policy.default":
            out.rbac["defaultRole"] = str(value).strip()
            r.mapped(w, field, f"rbac.defaultRole: {str(value).strip()}")
        elif key == "scopes":
            r.note(w, field, f"{value}: the agent matches the user (server.oidc.usernameClaim, default email) and "
                             "the groups (server.oidc.groupsClaim, default groups)")  # fmt: skip
        elif key == "policy.matchMode" and str(value).strip() == "regex":
            r.unmapped(w, field, "regex objects: the agent's policy objects are globs; rewrite them")
        elif key != "policy.matchMode":
            r.unmapped(w, field, "an Argo CD RBAC setting the agent has no equivalent for")
    if lines:
        out.rbac["policy"] = "\n".join(lines) + "\n"


def _line(out: imported.Imported, w: report.Where, field: str, fields: list[str]) -> list[str]:
    """The agent's policy lines for one of Argo CD's (none, reported, when it does not map)."""
    r = out.report
    if fields[0] == "g" and len(fields) == 3:
        r.mapped(w, field, f"rbac.policy: {', '.join(fields)}")
        return [", ".join(fields)]
    if fields[0] != "p" or len(fields) not in (5, 6):
        r.unmapped(w, field, f"{', '.join(fields)}: not a p or g line")
        return []
    _, subject, resource, action, obj, *effect = fields
    allow = effect[0] if effect else "allow"
    if resource in OTHER:
        r.unmapped(w, field, f"{resource}: the agent has no {resource}")
        return []
    if resource == "applications":
        kind, objects = "apps", _apps(out, w, field, obj)
        actions = ACTIONS.get(action)
    elif resource in ("applicationsets", "clusters", "repositories"):
        kind = {"applicationsets": "appsets", "clusters": "clusters", "repositories": "sources"}[resource]
        objects = _named(out, w, field, resource, obj)
        actions = ("get",) if action == "get" else ("*",) if action == "*" else None
    else:
        r.unmapped(w, field, f"{resource}: not an Argo CD resource the agent knows")
        return []
    if actions is None:
        r.unmapped(w, field, f"{resource} {action}: no equivalent in the agent (apps are defined in git)")
        return []
    found = [f"p, {subject}, {kind}, {a}, {o}, {allow}" for o in objects for a in actions]
    if found:
        r.mapped(w, field, "rbac.policy: " + "; ".join(found))
    return found


def _apps(out: imported.Imported, w: report.Where, field: str, obj: str) -> list[str]:
    """``<app>/*`` objects for Argo CD's ``<project>/<app>`` (``<project>/<namespace>/<app>``)."""
    parts = obj.split("/")
    if len(parts) not in (2, 3):
        out.report.unmapped(w, field, f"{obj}: not <project>/<app>")
        return []
    project, app = parts[0], parts[-1]
    if project == "*":
        return [f"{app}/*"]
    names = sorted(
        a for a, p in out.projects.items() if fnmatch.fnmatchcase(p, project) and fnmatch.fnmatchcase(a, app)
    )
    if not names:
        out.report.unmapped(w, field, f"{obj}: no imported app is in project {project} (the agent has no projects)")
    return [f"{a}/*" for a in names]


def _named(out: imported.Imported, w: report.Where, field: str, resource: str, obj: str) -> list[str]:
    """The agent's object for Argo CD's app set (``<project>/<name>``), cluster (URL) or repository (URL)."""
    if obj == "*":
        return ["*"]
    if resource == "applicationsets":
        return [obj.split("/")[-1]]
    if resource == "clusters":
        names = sorted({n for url, n in out.servers.items() if fnmatch.fnmatchcase(url, obj.rstrip("/"))})
    else:
        names = sorted({n for n, e in out.sources.entries.items() if fnmatch.fnmatchcase(str(e.get("url")), obj)})
    if not names:
        out.report.unmapped(w, field, f"{obj}: no imported {resource[:-1]} has this URL")
    return names


def oidc_config(out: imported.Imported, w: report.Where, field: str, value: Any) -> None:
    """Map ``argocd-cm``'s ``oidc.config`` into ``out.server['oidc']``."""
    r = out.report
    spec = yaml.safe_load(value) if isinstance(value, str) else value
    if not isinstance(spec, dict) or not spec.get("issuer") or not spec.get("clientID"):
        r.unmapped(w, field, "not a YAML mapping with issuer and clientID")
        return
    oidc: dict[str, Any] = {"issuer": str(spec["issuer"]), "clientID": str(spec["clientID"])}
    if spec.get("clientSecret"):
        oidc["clientSecret"] = {"env": "OIDC_CLIENT_SECRET"}
        r.provide(w, f"{field}.clientSecret", "the client secret in $OIDC_CLIENT_SECRET")
    scopes = [str(s) for s in spec.get("requestedScopes") or []]
    if scopes:
        oidc["scopes"] = scopes if "openid" in scopes else ["openid", *scopes]
    out.server["oidc"] = oidc
    r.mapped(w, field, f"server.oidc (issuer {oidc['issuer']}, clientID {oidc['clientID']}); register "
                       "<agent URL>/auth/callback as its redirect URI")  # fmt: skip
    for key in spec:
        if key not in ("name", "issuer", "clientID", "clientSecret", "requestedScopes"):
            r.unmapped(w, f"{field}.{key}", "an oidc.config field the agent has no equivalent for")


def finish(out: imported.Imported, w: report.Where | None) -> None:
    """A policy with no one to authenticate: the admin token from ``$GITOPS_AGENT_TOKEN`` (``w``: the RBAC
    ConfigMap, where the report says so)."""
    if out.rbac and "oidc" not in out.server and w is not None:
        out.server["token"] = {"env": "GITOPS_AGENT_TOKEN"}
        out.report.provide(w, "data", "no oidc.config: the API's admin token in $GITOPS_AGENT_TOKEN (add "
                                      "server.apiTokens or server.oidc for the policy's subjects)")  # fmt: skip

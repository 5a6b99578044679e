"""Argo CD's ``argocd-rbac-cm`` and ``argocd-cm``'s ``oidc.config`` imported (``gitops-agent import argocd``): the
policy is rewritten for the agent's resources, and the config it makes, loaded as ``run`` loads it, decides as
Argo CD would for what maps (checked with the agent's own Casbin gate); what does not map is named."""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

from agent import config
from agent.api import access
from agent.importers import documents, run

REPO = "https://github.com/example/apps.git"


def _app(name: str, project: str) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": {
            "project": project,
            "source": {"repoURL": REPO, "path": name},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": name},
        },
    }


def _cm(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "argocd"}, "data": data}


PROJECT = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "AppProject",
    "metadata": {"name": "team-a", "namespace": "argocd"},
    "spec": {"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}]},
}
RBAC = _cm("argocd-rbac-cm", {
    "policy.default": "role:readonly",
    "scopes": "[groups, email]",
    "policy.csv": (
        "p, role:team-a, applications, sync, team-a/*, allow\n"
        "p, role:team-a, applications, get, team-a/*, allow\n"
        "p, role:team-a, applications, delete, team-a/*, allow\n"
        "p, role:ops, clusters, get, https://kubernetes.default.svc, allow\n"
        "p, role:ops, repositories, *, https://github.com/example/*, allow\n"
        "p, role:ops, projects, get, *, allow\n"
        "p, carol, applications, sync, default/billing, deny\n"
        "g, carol, role:admin\n"
        "g, my-org:team-a, role:team-a\n"
    ),
    "policy.overlay.csv": "g, alice@example.com, role:admin\n",
})  # fmt: skip


def _import(tmp_path: pathlib.Path, *docs: dict[str, Any]) -> tuple[run.imported.Imported, config.AgentConfig]:
    path = tmp_path / "argocd.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    result = run.argocd_config(documents.read([str(path)]), [])
    written = tmp_path / "agent.yaml"
    written.write_text(yaml.safe_dump(result.config(), sort_keys=False))
    return result, config.load_config(written)


def test_argocd_rbac_maps_onto_the_agents_roles_and_decides_as_argocd_would(tmp_path: pathlib.Path) -> None:
    oidc = (
        "name: Okta\nissuer: https://example.okta.com\nclientID: argocd\nclientSecret: $oidc.okta.clientSecret\n"
        "requestedScopes: [openid, profile, email, groups]\nlogoutURL: https://example.okta.com/logout\n"
    )
    apps = (_app("web", "team-a"), _app("api", "team-a"), _app("billing", "default"))
    result, cfg = _import(tmp_path, PROJECT, *apps, _cm("argocd-cm", {"oidc.config": oidc}), RBAC)
    assert cfg.server.oidc is not None
    assert (cfg.server.oidc.issuer, cfg.server.oidc.client_id) == ("https://example.okta.com", "argocd")
    assert cfg.server.oidc.client_secret is not None
    assert cfg.server.oidc.client_secret.env == "OIDC_CLIENT_SECRET"
    assert cfg.rbac.default_role == "role:readonly"
    gate = access.Access(cfg, lambda app: ["in-cluster"])
    team_a = access.Identity("bob@example.com", ("my-org:team-a",), "session")
    assert gate.allowed(team_a, "apps", "sync", "web/in-cluster")
    assert gate.allowed(team_a, "apps", "sync", "api/in-cluster")
    assert not gate.allowed(team_a, "apps", "sync", "billing/in-cluster")  # another project
    assert gate.allowed(team_a, "apps", "diff", "web/in-cluster")  # get shows diffs in Argo CD
    assert gate.allowed(access.Identity("alice@example.com", (), "session"), "apps", "rollback", "billing/x")
    ops = access.Identity("dan", ("role:ops",), "session")
    assert gate.allowed(ops, "clusters", "get", "in-cluster")
    assert gate.allowed(ops, "sources", "get", "apps")
    carol = access.Identity("carol", (), "session")
    assert gate.allowed(carol, "apps", "sync", "web/in-cluster")
    assert not gate.allowed(carol, "apps", "sync", "billing/in-cluster")  # her deny wins over her admin role
    unmapped = {f.field: f.detail for f in result.report.findings if f.kind == "not mapped"}
    assert unmapped == {
        "data['policy.csv'] line 3": "applications delete: no equivalent in the agent (apps are defined in git)",
        "data['policy.csv'] line 6": "projects: the agent has no projects",
        "data['oidc.config'].logoutURL": "an oidc.config field the agent has no equivalent for",
    }
    provided = [f.detail for f in result.report.findings if f.kind == "provide"]
    assert provided == ["the client secret in $OIDC_CLIENT_SECRET"]
    assert "$oidc.okta.clientSecret" not in yaml.safe_dump(result.config())


def test_a_policy_without_single_sign_on_gets_the_admin_token_to_provide(tmp_path: pathlib.Path) -> None:
    result, cfg = _import(tmp_path, PROJECT, _app("web", "team-a"), _cm("argocd-rbac-cm", {
        "policy.csv": "p, role:x, applications, sync, nowhere/*, allow\ng, my-org:ops, role:admin\n",
        "policy.matchMode": "regex"}))  # fmt: skip
    assert cfg.server.token is not None
    assert cfg.server.token.env == "GITOPS_AGENT_TOKEN"
    findings = {(f.field, f.kind): f.detail for f in result.report.findings}
    assert "GITOPS_AGENT_TOKEN" in findings[("data", "provide")]
    assert findings[("data['policy.csv'] line 1", "not mapped")] == (
        "nowhere/*: no imported app is in project nowhere (the agent has no projects)"
    )
    assert "regex" in findings[("data['policy.matchMode']", "not mapped")]

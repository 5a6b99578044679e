"""Argo CD's cluster and repository Secrets (declarative setup, operator manual) as the agent's clusters and
sources.

Argo CD keeps credentials in these Secrets in clear (``stringData``) or base64 (``data``); the import never
writes them: a bearer token becomes ``token: {env: ARGOCD_CLUSTER_<NAME>_TOKEN}``, a repository password
``tokenEnv``/``passwordEnv``, an SSH key ``sshKeyFile``, and the report says which Secret field to put there.

- cluster Secret (``argocd.argoproj.io/secret-type: cluster``): ``name``, ``server``, its labels (what Argo CD's
  cluster generator selects on) -> ``labels``; ``config.bearerToken`` -> ``token``; ``config.tlsClientConfig``
  ``caData`` -> ``certificateAuthorityData``, ``insecure`` -> ``insecureSkipTLSVerify``, a client certificate
  -> a kubeconfig to provide; ``config.awsAuthConfig`` -> ``aws`` (the region read from the EKS endpoint);
- repository Secret (``repository``) and credential template (``repo-creds``, for every repository under its
  URL): ``url``, ``type`` (git, helm; ``enableOCI``), ``name``, ``username``/``password``, ``sshPrivateKey``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from agent.importers import documents, imported, report, sources

TYPE_LABEL = "argocd.argoproj.io/secret-type"
_EKS = re.compile(r"\.([a-z0-9-]+)\.eks\.amazonaws\.com(:\d+)?$")


def secret_type(doc: documents.Document) -> str:
    """The Argo CD secret type of ``doc`` (``cluster``, ``repository``, ``repo-creds``), "" for anything else."""
    if doc.body.get("kind") != "Secret" or doc.body.get("apiVersion") != "v1":
        return ""
    labels = (doc.body.get("metadata") or {}).get("labels") or {}
    return str(labels.get(TYPE_LABEL) or "")


def fields(doc: documents.Document) -> dict[str, str]:
    """The Secret's values by key (``data`` decoded, then ``stringData`` over it, as the API server merges them).
    A ``data`` value that is not base64 is left out (and reported by the caller as missing)."""
    out: dict[str, str] = {}
    for key, value in (doc.body.get("data") or {}).items():
        try:
            out[key] = base64.b64decode(str(value), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            continue
    out.update({k: str(v) for k, v in (doc.body.get("stringData") or {}).items()})
    return out


def _env(*parts: str) -> str:
    return "_".join(re.sub(r"[^A-Z0-9]+", "_", p.upper()).strip("_") for p in parts)


def cluster(out: imported.Imported, doc: documents.Document) -> None:
    """Register the cluster of the cluster Secret ``doc`` in ``out``."""
    w, r, found = doc.where, out.report, fields(doc)
    server = found.get("server", "")
    if not server:
        r.unmapped(w, "server", "a cluster Secret without a server")
        return
    name = found.get("name") or server.split("://", 1)[-1].split(".", 1)[0]
    labels = {k: v for k, v in ((doc.body.get("metadata") or {}).get("labels") or {}).items() if k != TYPE_LABEL}
    if labels:
        r.mapped(w, "metadata.labels", "labels")
    try:
        config = json.loads(found.get("config") or "{}")
    except json.JSONDecodeError:
        r.unmapped(w, "config", "not JSON (its contents are not shown)")
        config = {}
    if imported.is_in_cluster(server):
        name = out.add_in_cluster(name, labels)
    else:
        name = out.add_cluster(name, {"server": server, **({"labels": labels} if labels else {})})
    r.mapped(w, "name, server", f"clusters[{name}]")
    _credentials(out, w, name, server, config if isinstance(config, dict) else {})
    for key in found:
        if key in ("namespaces", "clusterResources", "project", "shard"):
            r.unmapped(w, key, "the agent limits namespaces per app (namespaces), not per cluster")
        elif key not in ("name", "server", "config"):
            r.unmapped(w, key, "not a cluster Secret field this import knows")


def _credentials(out: imported.Imported, w: report.Where, name: str, server: str, config: Mapping[str, Any]) -> None:
    r, entry = out.report, out.clusters[name]
    if config.get("bearerToken"):
        env = _env("ARGOCD_CLUSTER", name, "TOKEN")
        entry["token"] = {"env": env}
        r.provide(w, "config.bearerToken", f"a token in clear text in this file: not written; set ${env} to it")
    tls = config.get("tlsClientConfig") or {}
    if tls.get("caData"):
        entry["certificateAuthorityData"] = tls["caData"]
        r.mapped(w, "config.tlsClientConfig.caData", "certificateAuthorityData")
    if tls.get("insecure"):
        entry["insecureSkipTLSVerify"] = True
        r.mapped(w, "config.tlsClientConfig.insecure", "insecureSkipTLSVerify")
    if tls.get("certData") or tls.get("keyData"):
        path = f"{name}.kubeconfig"
        for key in ("server", "token", "certificateAuthorityData", "insecureSkipTLSVerify"):
            entry.pop(key, None)
        entry["kubeconfig"] = path
        r.provide(
            w,
            "config.tlsClientConfig.certData",
            f"a client certificate: not written; write a kubeconfig for {server} with it at {path}",
        )
    for key in tls:
        if key not in ("caData", "insecure", "certData", "keyData"):
            r.unmapped(w, f"config.tlsClientConfig.{key}", "no equivalent (give a kubeconfig instead)")
    aws = config.get("awsAuthConfig")
    if aws:
        region = _EKS.search(server.split("://", 1)[-1].split("/", 1)[0])
        if not region:
            r.unmapped(w, "config.awsAuthConfig", "the region is not in the server's name: add aws.region by hand")
        entry["aws"] = {
            "clusterName": aws.get("clusterName", ""),
            "region": region.group(1) if region else "",
            **({"roleArn": aws["roleARN"]} if aws.get("roleARN") else {}),
            **({"profile": aws["profile"]} if aws.get("profile") else {}),
        }
        r.mapped(w, "config.awsAuthConfig", "aws")
    if config.get("execProviderConfig"):
        r.unmapped(w, "config.execProviderConfig", "give a kubeconfig with this exec credential plugin instead")
    for key in config:
        if key not in ("bearerToken", "tlsClientConfig", "awsAuthConfig", "execProviderConfig"):
            r.unmapped(w, f"config.{key}", "not a cluster config field this import knows")


def repository(out: imported.Imported, doc: documents.Document, creds: bool = False) -> None:
    """The repository Secret ``doc`` as a source (``creds``: a ``repo-creds`` template, applied to every source
    already named under its URL)."""
    w, r, found = doc.where, out.report, fields(doc)
    url = found.get("url", "")
    if not url:
        r.unmapped(w, "url", "a repository Secret without a url")
        return
    oci = found.get("enableOCI") == "true" or url.startswith("oci://")
    kind = "oci" if oci else ("helm" if found.get("type") == "helm" else "git")
    if creds:
        names = [n for n, e in out.sources.entries.items() if e["url"].startswith(out.sources.rewrite(url))]
        if not names:
            r.note(w, "url", "no imported source under this URL: nothing to give these credentials to")
    else:
        names = [out.sources.name(url, kind, found.get("name", ""))]
        r.mapped(w, "url", f"sources.{names[0]}")
    for name in names:
        _repo_credentials(out, w, name, kind, found)
    for key in found:
        if key.startswith("githubApp") or key in ("tlsClientCertData", "tlsClientCertKey", "gcpServiceAccountKey"):
            r.unmapped(w, key, "the agent reads a token or an SSH key for git, a user and password for charts")
        elif key not in (
            "url",
            "type",
            "name",
            "username",
            "password",
            "sshPrivateKey",
            "enableOCI",
            "insecure",
            "project",
        ):
            r.unmapped(w, key, "not a repository Secret field this import knows")


def _repo_credentials(out: imported.Imported, w: report.Where, name: str, kind: str, found: Mapping[str, str]) -> None:
    r, entry = out.report, out.sources.entries[name]
    if found.get("password") and kind == "git":
        entry["tokenEnv"] = env = _env("ARGOCD_REPO", name, "TOKEN")
        r.provide(w, "password", f"not written; set ${env} to it (the agent sends it as an HTTPS token)")
    elif found.get("password"):
        entry["usernameEnv"], entry["passwordEnv"] = (
            _env("ARGOCD_REPO", name, "USERNAME"),
            _env("ARGOCD_REPO", name, "PASSWORD"),
        )
        r.provide(w, "username, password", f"not written; set ${entry['usernameEnv']} and ${entry['passwordEnv']}")
    if found.get("sshPrivateKey"):
        entry["sshKeyFile"] = path = f"/etc/gitops-agent/ssh/{sources.label(name)}"
        r.provide(w, "sshPrivateKey", f"not written; put the key at {path}")
    if found.get("insecure") == "true" and kind != "git":
        entry["insecure"] = True
        r.mapped(w, "insecure", "insecure")

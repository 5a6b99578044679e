"""Flux's objects as the agent's sources and apps (``gitops-agent import flux``), after Flux's API reference.

- ``GitRepository`` -> a source (``url``; ``ref.branch``/``tag``/``commit``/``name`` -> ``ref``;
  ``secretRef`` -> ``tokenEnv`` to provide; ``verify`` (``HEAD``, ``Tag``) -> ``verify: {type: gpg}``, the key to
  provide); ``HelmRepository`` -> a chart source (``type: oci`` -> an OCI one); ``OCIRepository`` -> an OCI chart
  source for the HelmReleases that name it in ``chartRef`` (its last path segment is the chart, ``ref.tag``/
  ``semver`` its version; ``verify`` with cosign keys -> ``verify: {provider: cosign}``, as a HelmRelease chart's
  ``verify`` of an OCI HelmRepository; keyless identities are reported);
- ``ArtifactGenerator`` -> nothing of its own: a Kustomization reading one of its artifacts reads the folder of the
  git source the artifact copies there (``copy.from: "@alias/<dir>/**"``, ``to: "@artifact/<dest>/"``);
- ``Kustomization`` -> an app of that source and path, ``appOfApps: true`` (the Flux objects it renders become its
  child apps, :mod:`agent.appsets.nested`) (``prune``, ``wait``, ``force`` -> ``sync.prune``,
  ``sync.wait``, ``sync.recreate``; ``dependsOn``; ``targetNamespace`` -> ``namespace``; ``patches``, ``images``,
  ``commonMetadata`` -> ``kustomize``; ``decryption.provider: sops`` -> ``decryption.sops``;
  ``serviceAccountName`` -> ``serviceAccount``; ``suspend`` -> ``sync.auto: false``; ``postBuild.substitute``
  and ``substituteFrom`` -> ``variables`` and ``variablesFrom``);
- ``HelmRelease`` -> an app of the chart (``chart.spec`` from a HelmRepository or a GitRepository path, or
  ``chartRef`` to an OCIRepository; ``values``, ``releaseName``, ``targetNamespace``, ``install.crds: Skip``,
  ``install.createNamespace``, ``dependsOn``).

Flux reconciles in the cluster it runs in: every app goes to the one cluster of the import. Flux's own
components (labelled ``app.kubernetes.io/part-of: flux``) are noted as not needed; any other object is reported.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

from agent.importers import documents, imported, report

GROUPS = {
    "GitRepository": "source.toolkit.fluxcd.io/",
    "HelmRepository": "source.toolkit.fluxcd.io/",
    "OCIRepository": "source.toolkit.fluxcd.io/",
    "Kustomization": "kustomize.toolkit.fluxcd.io/",
    "HelmRelease": "helm.toolkit.fluxcd.io/",
    "ArtifactGenerator": "source.extensions.fluxcd.io/",
}
HELM_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
"""The media type of a Helm chart's content layer in an OCI artifact."""
NOTED = (
    "interval",
    "retryInterval",
    "timeout",
    "install",
    "upgrade",
    "rollback",
    "uninstall",
    "test",
    "driftDetection",
    "healthChecks",
    "maxHistory",
)
"""Fields whose work the agent does its own way (its sync interval, retries and health wait)."""


def _env(source: str, what: str) -> str:
    """The environment variable a source's credential or key is to be provided in: ``FLUX_<SOURCE>_<WHAT>``
    (source names are DNS labels: ``-`` becomes ``_``)."""
    return f"FLUX_{source.upper().replace('-', '_')}_{what}"


def kind(doc: documents.Document) -> str:
    """The Flux kind of ``doc`` (one of :data:`GROUPS`), "" when it is none."""
    k = str(doc.body.get("kind", ""))
    return k if str(doc.body.get("apiVersion", "")).startswith(GROUPS.get(k, "\0")) else ""


class Flux:
    """One Flux import into ``out``: sources by (kind, namespace, name), apps by Flux name. Not thread-safe."""

    def __init__(self, out: imported.Imported, docs: list[documents.Document], cluster: str) -> None:
        self.out, self.cluster = out, cluster
        self.by_ref = {(kind(d), d.where.namespace, d.where.name): d for d in docs if kind(d)}

    def ref(self, w: report.Where, field: str, ref: Mapping[str, Any], namespace: str) -> documents.Document | None:
        """The document ``ref`` (kind, name, namespace: default ``namespace``) names, else None (reported as
        ``field`` of ``w``); one given on the command line matches in any namespace."""
        key = (str(ref.get("kind", "")), str(ref.get("namespace") or namespace), str(ref.get("name")))
        found = self.by_ref.get(key) or self.by_ref.get((key[0], "", key[2]))  # given on the command line
        if found is None:
            self.out.report.unmapped(w, field, f"{ref.get('kind')} {ref.get('name')} is not among the files imported")
        return found

    def git_source(self, doc: documents.Document) -> str:
        """The source name of the GitRepository ``doc`` (made on first use)."""
        spec, w, r = doc.body.get("spec") or {}, doc.where, self.out.report
        name = self.out.sources.name(str(spec.get("url", "")), "git", w.name)
        entry = self.out.sources.entries[name]
        ref = spec.get("ref") or {}
        for key in ("commit", "tag", "name", "branch"):
            if ref.get(key):
                entry["ref"] = str(ref[key])
                r.mapped(w, f"spec.ref.{key}", f"sources.{name}.ref")
                break
        if ref.get("semver"):
            r.unmapped(w, "spec.ref.semver", "a git source follows a branch, tag or commit")
        if spec.get("secretRef"):
            entry["tokenEnv"] = env = _env(name, "TOKEN")
            r.provide(
                w,
                "spec.secretRef",
                f"Secret {spec['secretRef'].get('name')}: set ${env} to its password (or "
                "give sshKeyFile for an SSH key)",
            )
        if spec.get("verify"):
            self._git_verify(w, spec["verify"], name)
        for key in spec:
            if key not in ("url", "ref", "secretRef", "interval", "timeout", "verify"):
                r.unmapped(w, f"spec.{key}", "not a git source field the agent has")
        return name

    def _git_verify(self, w: report.Where, verify: Mapping[str, Any], name: str) -> None:
        """``GitRepository.spec.verify`` (OpenPGP keys in a Secret; ``mode`` HEAD or Tag) -> the source's
        ``verify: {type: gpg}``, the key to provide as an environment variable."""
        r, mode = self.out.report, str(verify.get("mode") or "HEAD")
        if mode not in ("HEAD", "head", "Tag"):
            r.unmapped(w, "spec.verify.mode", f"{mode}: the agent checks the commit (head) or the tag (tag), one")
            return
        secret = (verify.get("secretRef") or {}).get("name", "")
        env = _env(name, "VERIFY_KEY")
        self.out.sources.entries[name]["verify"] = {"type": "gpg", "mode": "tag" if mode == "Tag" else "head",
                                                    "keys": [{"env": env}]}  # fmt: skip
        r.mapped(w, "spec.verify", f"sources.{name}.verify (gpg, {'tag' if mode == 'Tag' else 'head'})")
        r.provide(w, "spec.verify.secretRef", f"an OpenPGP public key of Secret {secret} in ${env} (add one "
                                              "keys entry per further key)")  # fmt: skip

    def cosign_verify(self, w: report.Where, field: str, verify: Mapping[str, Any], name: str) -> None:
        """An OCIRepository's or a HelmRelease chart's ``verify`` (``provider: cosign`` with keys in a Secret) ->
        the OCI source's ``verify: {provider: cosign}``, the key to provide as an environment variable. Keyless
        identities (``matchOIDCIdentity``) and other providers are reported."""
        r = self.out.report
        entry = self.out.sources.entries[name]
        if verify.get("provider", "cosign") != "cosign" or not verify.get("secretRef"):
            why = "keyless (Fulcio and Rekor identities)" if verify.get("provider", "cosign") == "cosign" else (
                f"provider {verify.get('provider')}")  # fmt: skip
            r.unmapped(w, field, f"{why}: the agent checks cosign signatures with static keys only")
            return
        if entry.get("type") != "oci":
            r.unmapped(w, field, "a signed chart of an HTTP repository: the agent checks OCI charts only")
            return
        env = _env(name, "COSIGN_KEY")
        entry["verify"] = {"provider": "cosign", "keys": [{"env": env}]}
        r.mapped(w, field, f"sources.{name}.verify (cosign; every chart of the source)")
        r.provide(w, f"{field}.secretRef", f"the cosign public key of Secret {verify['secretRef'].get('name')} "
                                           f"in ${env}")  # fmt: skip

    def chart_source(self, doc: documents.Document) -> tuple[str, str]:
        """(source name, chart name or "") of a HelmRepository or an OCIRepository ``doc``."""
        spec, w, r = doc.body.get("spec") or {}, doc.where, self.out.report
        url = str(spec.get("url", ""))
        chart = ""
        if kind(doc) == "OCIRepository":
            url, chart = url.rstrip("/").rsplit("/", 1)
        oci = url.startswith("oci://") or spec.get("type") == "oci"
        name = self.out.sources.name(url, "oci" if oci else "helm", w.name)
        if spec.get("secretRef"):
            entry = self.out.sources.entries[name]
            entry["usernameEnv"], entry["passwordEnv"] = _env(name, "USERNAME"), _env(name, "PASSWORD")
            r.provide(
                w,
                "spec.secretRef",
                f"set ${entry['usernameEnv']} and ${entry['passwordEnv']} from Secret {spec['secretRef'].get('name')}",
            )
        if spec.get("insecure"):
            self.out.sources.entries[name]["insecure"] = True
        r.mapped(w, "spec.url", f"sources.{name}")
        if spec.get("verify"):
            self.cosign_verify(w, "spec.verify", spec["verify"], name)
        for key in spec:
            if key == "layerSelector" and (spec[key] or {}).get("mediaType") == HELM_LAYER:
                r.note(w, "spec.layerSelector", "the chart's layer: what the agent pulls of a chart")
            elif key not in ("url", "type", "ref", "secretRef", "interval", "timeout", "insecure", "provider",
                             "verify"):  # fmt: skip
                r.unmapped(w, f"spec.{key}", "not a chart source field the agent has")
        return name, chart

    def path(self, w: report.Where, spec: Mapping[str, Any], namespace: str) -> tuple[str, str] | None:
        """(source, path) a Kustomization reads: its GitRepository and path, or through an ArtifactGenerator."""
        ref = spec.get("sourceRef") or {}
        path = posixpath.normpath(str(spec.get("path") or "."))
        if ref.get("kind") == "GitRepository":
            found = self.ref(w, "spec.sourceRef", ref, namespace)
            return (self.git_source(found), path) if found else None
        if ref.get("kind") == "ExternalArtifact":
            return self._artifact(w, str(ref.get("name")), path)
        self.out.report.unmapped(
            w,
            "spec.sourceRef",
            f"a {ref.get('kind')} source: the agent reads git, local folders and chart repositories",
        )
        return None

    def _artifact(self, w: report.Where, artifact: str, path: str) -> tuple[str, str] | None:
        for (k, _, _), gen in self.by_ref.items():
            if k != "ArtifactGenerator":
                continue
            spec = gen.body.get("spec") or {}
            aliases = {s.get("alias"): s for s in spec.get("sources") or []}
            for a in spec.get("artifacts") or []:
                if a.get("name") != artifact:
                    continue
                for copy in a.get("copy") or []:
                    src, _, rest = str(copy.get("from", "")).partition("/")
                    to = str(copy.get("to", "")).removeprefix("@artifact/").strip("/")
                    inside = posixpath.relpath(path, to or ".") if to else path
                    if inside.startswith("..") or src[1:] not in aliases:
                        continue
                    source = aliases[src[1:]]
                    repo = self.ref(gen.where, "spec.sources", source, gen.where.namespace)
                    if repo is None:
                        return None
                    folder = rest.removesuffix("**").rstrip("/")
                    found = posixpath.normpath(posixpath.join(folder, inside))
                    self.out.report.mapped(w, "spec.sourceRef", f"artifact {artifact}: path {found} of its git source")
                    return self.git_source(repo), found
        self.out.report.unmapped(
            w, "spec.sourceRef", f"ExternalArtifact {artifact}: no ArtifactGenerator copies that path here"
        )
        return None

    def base(self, doc: documents.Document, spec: Mapping[str, Any]) -> dict[str, Any]:
        """What a Kustomization and a HelmRelease share: name, cluster, dependsOn, targetNamespace, suspend."""
        w, r = doc.where, self.out.report
        app: dict[str, Any] = {"name": w.name, "clusters": {"names": [self.cluster]}}
        if spec.get("dependsOn"):
            app["dependsOn"] = [str(d.get("name")) for d in spec["dependsOn"]]
            r.mapped(w, "spec.dependsOn", "dependsOn")
        if spec.get("targetNamespace"):
            app["namespace"] = spec["targetNamespace"]
            r.mapped(w, "spec.targetNamespace", "namespace (for objects that name none)")
        if spec.get("suspend"):
            app["sync"] = {"auto": False}
            r.mapped(w, "spec.suspend", "sync.auto: false")
        if spec.get("serviceAccountName"):
            app["serviceAccount"] = f"{w.namespace or 'default'}/{spec['serviceAccountName']}"
            r.mapped(w, "spec.serviceAccountName", "serviceAccount")
        for key in NOTED:
            if key in spec:
                r.note(w, f"spec.{key}", "the agent's own sync interval, retries and health wait do this")
        return app

"""The Argo CD and Flux objects an app of apps maps into child apps instead of applying them
(:mod:`agent.appsets.nested`; its sync leaves them out: :mod:`agent.sync.desired`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PEER_KINDS = frozenset(
    {
        ("argoproj.io", "Application"),
        ("argoproj.io", "ApplicationSet"),
        ("argoproj.io", "AppProject"),
        ("kustomize.toolkit.fluxcd.io", "Kustomization"),
        ("helm.toolkit.fluxcd.io", "HelmRelease"),
        ("source.toolkit.fluxcd.io", "GitRepository"),
        ("source.toolkit.fluxcd.io", "OCIRepository"),
        ("source.toolkit.fluxcd.io", "HelmRepository"),
        ("source.extensions.fluxcd.io", "ArtifactGenerator"),
    }
)
"""(API group, kind) of the objects an app of apps maps instead of applying."""


def is_peer(body: Mapping[str, Any]) -> bool:
    """True when ``body`` is an Argo CD or Flux object an app of apps maps (:data:`PEER_KINDS`)."""
    group = str(body.get("apiVersion", "")).rpartition("/")[0]
    return (group, str(body.get("kind", ""))) in PEER_KINDS

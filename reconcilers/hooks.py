"""Sync hooks as repositories mark them, recognized so that none is ever applied as a plain object.

A hook is a run, not desired state: Argo CD's ``argocd.argoproj.io/hook`` (PreSync, Sync, PostSync, SyncFail,
PostDelete; ``Skip`` means "do not apply"), Helm's ``helm.sh/hook`` (pre-install, post-upgrade, ...; ``test``
hooks are left out when a chart is rendered) and this agent's ``gitops-agent.io/phase`` (any phase but Sync).
Sync phases and hooks are not implemented yet, so :func:`refusal` names what a document is, and the loader refuses
it with a clear error naming file and document, before any write: applied as a plain object, a hook would run at
the wrong time, stay tracked as desired state and be pruned or self-healed (Argo CD's and Helm's documented hook
semantics). Used by ``agent.sources.manifests``.
"""

from __future__ import annotations

from reconcilers import resources

MARKS = (
    ("argocd.argoproj.io/hook", "Argo CD hook"),
    ("helm.sh/hook", "Helm hook"),
    ("gitops-agent.io/phase", "sync phase"),
)


def refusal(body: resources.Body) -> str | None:
    """Why ``body`` cannot be applied as a plain object (it is a hook), or None."""
    annotations = (body.get("metadata") or {}).get("annotations") if isinstance(body.get("metadata"), dict) else None
    if not isinstance(annotations, dict):
        return None
    for annotation, what in MARKS:
        value = annotations.get(annotation)
        if value is None or (annotation == "gitops-agent.io/phase" and str(value) == "Sync"):
            continue
        advice = "turn the hook off in the chart's values" if annotation == "helm.sh/hook" else "remove the annotation"
        return (
            f"{what} ({annotation}: {value}) is not supported yet (sync phases and hooks are not implemented), "
            f"and a hook is never applied as a plain object: {advice}"
        )
    return None

"""Health of live objects. For now: whether a CustomResourceDefinition is ``Established`` (its kind is served),
which the engine waits for between stages (Kubernetes docs, "Create a CustomResourceDefinition")."""

from __future__ import annotations

from reconcilers import resources


def crd_established(crd: resources.Body | None) -> bool:
    """True when the CRD's ``Established`` condition is ``True``; False when missing or not yet established."""
    if crd is None:
        return False
    for cond in (crd.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Established":
            return bool(cond.get("status") == "True")
    return False

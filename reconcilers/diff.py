"""Drift: does applying the desired object change the live one?

The method is exact and free of false positives from server defaulting: the desired object is sent as a
server-side apply dry run (``dryRun=All``), so the API server itself defaults, normalizes (``cpu: "0.5"`` becomes
``500m``, ``roleRef.apiGroup: ""`` is filled in) and merges it with the live object; the object is in sync when
that result equals the live object and our field manager already owns exactly the fields it would own. Only
``metadata.managedFields`` timestamps and ``resourceVersion``/``generation`` bookkeeping are ignored.
"""

from __future__ import annotations

from typing import Any

from reconcilers import resources

_BOOKKEEPING = ("managedFields", "resourceVersion", "generation")


def _comparable(obj: resources.Body) -> resources.Body:
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _BOOKKEEPING}
    return {**obj, "metadata": meta}


def _owned(obj: resources.Body, field_manager: str) -> list[tuple[Any, ...]]:
    """The (operation, apiVersion, subresource, fieldsV1) entries of ``field_manager`` in managedFields."""
    entries = (obj.get("metadata") or {}).get("managedFields") or []
    return sorted(
        (
            (e.get("operation"), e.get("apiVersion"), e.get("subresource", ""), repr(e.get("fieldsV1")))
            for e in entries
            if e.get("manager") == field_manager
        ),
        key=repr,
    )


def resource_version(obj: resources.Body | None) -> str | None:
    """``metadata.resourceVersion`` of ``obj`` (None when absent)."""
    if obj is None:
        return None
    rv = (obj.get("metadata") or {}).get("resourceVersion")
    return str(rv) if rv is not None else None


def would_change(live: resources.Body | None, merged: resources.Body, field_manager: str) -> bool:
    """True when applying would write: the object is missing, the dry-run result ``merged`` differs from
    ``live`` in any field but bookkeeping, or ``field_manager``'s ownership would change (first adoption)."""
    if live is None:
        return True
    if _owned(live, field_manager) != _owned(merged, field_manager):
        return True
    return _comparable(live) != _comparable(merged)

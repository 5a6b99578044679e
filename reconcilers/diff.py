"""Drift: does applying the desired object change the live one?

Two checks, the cheap one first:

1. :func:`quick_in_sync`, from the live cache alone (no request): the desired body is the one last applied
   (same hash as in the inventory) and the set of fields our field manager owns in the live object is the one it
   owned right after that apply. Any out-of-band write to a field we own moves its ownership to the writer
   (Kubernetes docs, "Server-Side Apply", conflicts and managers), a removed field leaves our set, a deleted
   object leaves the cache: each changes the fingerprint. Fields owned by others are not ours to judge.
2. :func:`would_change`, exact and free of false positives from server defaulting: the desired object is sent
   as a server-side apply dry run (``dryRun=All``), so the API server itself defaults, normalizes
   (``cpu: "0.5"`` becomes ``500m``, ``roleRef.apiGroup: ""`` is filled in) and merges it with the live object;
   the object is in sync when that result equals the live object and our field manager already owns exactly the
   fields it would own. Only ``managedFields`` timestamps and ``resourceVersion``/``generation`` are ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
import sys
import threading
from collections.abc import Sequence
from typing import Any

import yaml

from reconcilers import ignore, inventory, resources

_BOOKKEEPING = ("managedFields", "resourceVersion", "generation")
_DEEPDIFF = threading.Lock()
"""One DeepDiff at a time: it calls ``ast.literal_eval``, and the CPython 3.11 this project runs on raised
"SystemError: AST constructor recursion depth mismatch" in CI when two threads parsed at once (CPython's
recursion-depth tracking of the AST constructor, gh-106905). Apps and apply pools diff objects from several
threads."""


def _comparable(obj: resources.Body) -> resources.Body:
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _BOOKKEEPING}
    return {**obj, "metadata": meta}


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
    if owned_hash(live, field_manager) != owned_hash(merged, field_manager):
        return True
    return _comparable(live) != _comparable(merged)


def owned_fields(obj: resources.Body | None, field_manager: str) -> list[tuple[Any, Any]]:
    """``(apiVersion, fieldsV1)`` of each ``managedFields`` entry of ``obj`` that ``field_manager`` holds by apply
    (not of a subresource), in order: what :func:`owned_hash` hashes (their ``time`` left out); ``[]`` when none or
    ``obj`` is None."""
    if obj is None:
        return []
    return [
        (e.get("apiVersion"), e.get("fieldsV1"))
        for e in (obj.get("metadata") or {}).get("managedFields") or []
        if e.get("manager") == field_manager and e.get("operation") == "Apply" and not e.get("subresource")
    ]


def owned_hash(obj: resources.Body | None, field_manager: str, pointers: Sequence[Sequence[str]] = ()) -> str:
    """A hash of the fields ``field_manager`` owns by apply in ``obj`` (ignored paths left out); "" when none.

    An entry's ``fieldsV1`` may also be given as its JSON text from ``json.dumps(fieldsV1, sort_keys=True)`` (how
    the live cache keeps it); both forms hash the same: the SHA-256 of ``json.dumps([[apiVersion, fieldsV1],
    ...], sort_keys=True)``, 16 hex digits (the inventory stores it, so the form must not change).
    """
    parts = []
    for api_version, fields in owned_fields(obj, field_manager):
        if isinstance(fields, str) and not pointers:
            text = fields
        else:
            fields = json.loads(fields) if isinstance(fields, str) else fields
            text = json.dumps(ignore.exclude_fields(fields, pointers), sort_keys=True)
        parts.append(f"[{json.dumps(api_version)}, {text}]")
    if not parts:
        return ""
    return sys.intern(hashlib.sha256(f"[{', '.join(parts)}]".encode()).hexdigest()[:16])  # shared by like objects


def quick_in_sync(
    live: resources.Body | None,
    entry: inventory.Entry | None,
    desired: str,
    field_manager: str,
    pointers: Sequence[Sequence[str]] = (),
) -> bool:
    """True when the cached ``live`` object provably still matches the desired body hashed ``desired``."""
    if live is None or entry is None or not entry.owned or entry.desired != desired:
        return False
    if (live.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return owned_hash(live, field_manager, pointers) == entry.owned


def taken_over(live: resources.Body | None, merged: resources.Body, field_manager: str) -> str:
    """What a forced server-side apply takes from other managers, said as a note: ``fields taken over from
    <manager>: .data.a, .spec.replicas`` (up to :data:`SHOWN_FIELDS` each), "" when nothing. A field counts when
    another manager held it in ``live`` and no longer does in ``merged`` (the dry run's answer) while
    ``field_manager`` holds it there: how adopting an object Argo CD, Flux or kubectl applied shows, its UID kept
    (server-side apply, Kubernetes docs "Conflicts" and "Transferring ownership")."""
    if live is None:
        return ""
    mine = {p for e in _entries(merged) if e.get("manager") == field_manager for p in _leaves(e.get("fieldsV1"))}
    after = {(e.get("manager"), e.get("operation")): set(_leaves(e.get("fieldsV1"))) for e in _entries(merged)}
    notes = []
    for e in _entries(live):
        manager = e.get("manager")
        if manager == field_manager:
            continue
        lost = (set(_leaves(e.get("fieldsV1"))) - after.get((manager, e.get("operation")), set())) & mine
        if lost:
            shown = sorted(lost)[:SHOWN_FIELDS]
            more = f" and {len(lost) - len(shown)} more" if len(lost) > len(shown) else ""
            notes.append(f"fields taken over from {manager}: {', '.join(shown)}{more}")
    return "; ".join(notes)


SHOWN_FIELDS = 5
"""Fields a note of :func:`taken_over` names per manager."""


def _entries(obj: resources.Body) -> list[dict[str, Any]]:
    return list((obj.get("metadata") or {}).get("managedFields") or [])


def _leaves(fields: Any, prefix: str = "") -> list[str]:
    """The fields a ``fieldsV1`` set holds, as kubectl's JSONPath writes them (``.data.a``; a list item by its key,
    ``.spec.containers[name=web].image``)."""
    if not isinstance(fields, dict):
        return []
    found = []
    for key, sub in fields.items():
        if key == ".":
            found.append(prefix or ".")
            continue
        if key.startswith("f:"):
            path = f"{prefix}.{key[2:]}"
        elif key.startswith("k:"):
            try:
                item = json.loads(key[2:])
            except ValueError:
                item = key[2:]
            shown = ",".join(f"{k}={v}" for k, v in item.items()) if isinstance(item, dict) else str(item)
            path = f"{prefix}[{shown}]"
        else:
            path = f"{prefix}[{key[2:]}]"
        found += _leaves(sub, path) if sub else [path]
    return found


MASK = "***"
"""What a Secret value shows as in every diff (``kubectl diff`` masks them the same way)."""
_SHOWN_METADATA_DROPPED = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp")


@dataclasses.dataclass(frozen=True)
class ObjectDiff:
    """A readable difference between the live object and what git would make of it: a unified diff of their
    YAML and the fields that changed, as kubectl's JSONPath writes them (``.spec.replicas``). Secret values are
    masked."""

    unified: str
    paths: tuple[str, ...]


def _shown(obj: resources.Body | None) -> resources.Body:
    if obj is None:
        return {}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _SHOWN_METADATA_DROPPED}
    return {**obj, "metadata": meta}


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
"""Where ``kubectl apply`` (client-side) keeps the whole object it applied: for a Secret, its values."""


def _mask_secrets(before: resources.Body, after: resources.Body) -> tuple[resources.Body, resources.Body]:
    """Secret ``data``/``stringData`` values replaced by ``***``, or ``*** (before)``/``*** (after)`` where they
    differ, so a diff shows which keys changed and never a value; a Secret's ``last-applied-configuration``
    annotation (the object a client-side ``kubectl apply`` sent, values included) is masked the same way, as
    gitops-engine's ``HideSecretData`` does."""
    if "Secret" not in (before.get("kind"), after.get("kind")):
        return before, after
    masked_before, masked_after = _mask_last_applied(before, after)
    for field in ("data", "stringData"):
        old, new = before.get(field) or {}, after.get(field) or {}
        if field in before:
            masked_before[field] = {k: MASK if new.get(k) == v else f"{MASK} (before)" for k, v in old.items()}
        if field in after:
            masked_after[field] = {k: MASK if old.get(k) == v else f"{MASK} (after)" for k, v in new.items()}
    return masked_before, masked_after


def _mask_last_applied(before: resources.Body, after: resources.Body) -> tuple[resources.Body, resources.Body]:
    old = ((before.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    new = ((after.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)

    def masked(obj: resources.Body, value: object, other: object, side: str) -> resources.Body:
        if value is None:
            return dict(obj)
        meta = dict(obj.get("metadata") or {})
        meta["annotations"] = {**meta["annotations"], LAST_APPLIED: MASK if value == other else f"{MASK} ({side})"}
        return {**obj, "metadata": meta}

    return masked(before, old, new, "before"), masked(after, new, old, "after")


def _mask_path(before: Any, after: Any, path: list[str | int]) -> tuple[Any, Any]:
    """``before`` and ``after`` with the values at ``path`` masked: ``***`` where equal, else ``*** (before)`` and
    ``*** (after)``; copies along the path only, the rest shared."""
    if not path:
        if before is None or after is None:
            return (MASK if before is not None else None), (MASK if after is not None else None)
        same = before == after
        return (MASK if same else f"{MASK} (before)"), (MASK if same else f"{MASK} (after)")
    step, rest = path[0], path[1:]

    def child(node: Any) -> Any:
        if isinstance(step, int) and isinstance(node, list) and step < len(node):
            return node[step]
        if isinstance(step, str) and isinstance(node, dict):
            return node.get(step)
        return None

    def put(node: Any, value: Any) -> Any:
        if value is None:
            return node
        if isinstance(node, dict):
            return {**node, step: value}
        if isinstance(node, list):
            return [value if i == step else v for i, v in enumerate(node)]
        return node

    old, new = _mask_path(child(before), child(after), rest)
    return put(before, old), put(after, new)


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def field_path(path: str) -> str:
    """A deepdiff path (``root['spec']['containers'][0]['image']``) as kubectl's JSONPath writes a field
    (``.spec.containers[0].image``); a key that is not a plain word in brackets (``.metadata.annotations['a.b/c']``).
    A path deepdiff cannot parse is returned as it is."""
    import deepdiff.path  # imported by the first diff shown: a sync that changes nothing never pays for it

    try:
        elements: list[str | int] = deepdiff.path.parse_path(path)  # type: ignore[no-untyped-call]
    except Exception:  # deepdiff raises several kinds for a path it did not write
        return path
    out = []
    for e in elements:
        if isinstance(e, int):
            out.append(f"[{e}]")
        elif _PLAIN_KEY.fullmatch(str(e)):
            out.append(f".{e}")
        else:
            out.append(f"[{str(e)!r}]")
    return "".join(out) or "."


def object_diff(
    live: resources.Body | None,
    merged: resources.Body | None,
    label: str,
    sensitive: Sequence[Sequence[str | int]] = (),
) -> ObjectDiff:
    """The difference from ``live`` (None: absent) to ``merged`` (None: deleted), labelled ``label`` in the
    unified diff headers (``live/<label>`` and ``git/<label>``). The values at ``sensitive`` paths (a secret
    substituted there: :attr:`reconcilers.resources.Manifest.sensitive`) show masked on both sides, as a Secret's
    values do."""
    before, after = _mask_secrets(_shown(live), _shown(merged))
    for path in sensitive:
        before, after = _mask_path(before, after, list(path))
    a = yaml.safe_dump(before, sort_keys=True).splitlines(keepends=True) if before else []
    b = yaml.safe_dump(after, sort_keys=True).splitlines(keepends=True) if after else []
    unified = "".join(difflib.unified_diff(a, b, f"live/{label}", f"git/{label}"))
    import deepdiff  # see field_path

    with _DEEPDIFF:
        paths = tuple(sorted(field_path(p) for p in deepdiff.DeepDiff(before, after).affected_paths))
    return ObjectDiff(unified, paths)

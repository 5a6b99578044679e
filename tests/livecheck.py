"""Checks that a live object holds the fields git gave it, allowing only the API server's documented
normalizations: quantities in canonical form (``cpu: "0.5"`` -> ``500m``, Kubernetes API conventions,
"Quantity"), ``roleRef.apiGroup: ""`` defaulted to ``rbac.authorization.k8s.io``, zero values of
``omitempty`` fields (``priority: 0``) left out, a Secret's ``stringData`` merged into ``data`` as base64 ("merged
into the data field on write", API reference, Secret v1), and an aggregated ClusterRole's ``rules`` filled in by
its controller (Kubernetes docs, Using RBAC Authorization, Aggregated ClusterRoles)."""

from __future__ import annotations

import base64
import decimal
import re
from typing import Any

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_FACTORS = {
    None: 1,
    "m": decimal.Decimal("0.001"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def quantity(value: Any) -> decimal.Decimal | None:
    """The value of a Kubernetes quantity string or number, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return decimal.Decimal(str(value))
    m = _QUANTITY.match(str(value))
    if not m:
        return None
    try:
        return decimal.Decimal(m.group(1)) * _FACTORS[m.group(2)]
    except decimal.InvalidOperation:
        return None


def as_stored(desired: dict[str, Any]) -> dict[str, Any]:
    """``desired`` as the API server stores it, for the rewrites of whole fields named in the module docstring."""
    if desired.get("kind") == "Secret" and isinstance(desired.get("stringData"), dict):
        data = dict(desired.get("data") or {})
        data.update({k: base64.b64encode(str(v).encode()).decode() for k, v in desired["stringData"].items()})
        desired = {**{k: v for k, v in desired.items() if k != "stringData"}, "data": data}
    if desired.get("kind") == "ClusterRole" and isinstance(desired.get("aggregationRule"), dict):
        desired = {k: v for k, v in desired.items() if k != "rules"}
    return desired


def missing_fields(desired: Any, live: Any, path: str = "") -> list[str]:
    """Paths where ``live`` does not hold ``desired``'s value (empty when every desired field is live)."""
    if path == "" and isinstance(desired, dict):
        desired = as_stored(desired)
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return [f"{path}: expected an object, live has {live!r}"]
        out = []
        for k, v in desired.items():
            if path.endswith("roleRef") and k == "apiGroup" and v == "" and live.get(k) == "rbac.authorization.k8s.io":
                continue
            if k not in live:
                if v in (None, {}, [], "", 0, False):
                    continue  # zero values of omitempty fields are dropped by the server
                out.append(f"{path}.{k}: missing live")
                continue
            out.extend(missing_fields(v, live[k], f"{path}.{k}"))
        return out
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return [f"{path}: expected {len(desired)} items, live has {live!r}"]
        return [
            m
            for i, (d, lv) in enumerate(zip(desired, live, strict=True))
            for m in missing_fields(d, lv, f"{path}[{i}]")
        ]
    if desired == live:
        return []
    q_desired, q_live = quantity(desired), quantity(live)
    if q_desired is not None and q_desired == q_live:
        return []
    return [f"{path}: git has {desired!r}, live has {live!r}"]

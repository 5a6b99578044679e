"""Normalizations applied to desired bodies before they are applied, so that what we own is what is stored.

- Secret ``stringData`` becomes base64 ``data``, as the API server does on every write ("stringData ... is
  merged into the data field on write, overwriting any existing values", Kubernetes API reference, Secret v1).
  Applied as ``stringData`` our field manager would own ``stringData`` fields that are never stored, and another
  writer's change to ``data`` would not touch them: the drift would go unseen.

Used by :mod:`reconcilers.engine`.
"""

from __future__ import annotations

import base64
import dataclasses

from reconcilers import resources


def for_apply(manifest: resources.Manifest) -> resources.Manifest:
    """``manifest`` with the normalizations above applied (the same object when none applies)."""
    body = manifest.body
    if (manifest.key.group, manifest.key.kind) != ("", "Secret") or not isinstance(body.get("stringData"), dict):
        return manifest
    data = dict(body.get("data") or {})
    for k, v in body["stringData"].items():
        data[k] = base64.b64encode(str(v).encode("utf-8")).decode("ascii")
    normalized = {k: v for k, v in body.items() if k != "stringData"}
    normalized["data"] = data
    return dataclasses.replace(manifest, body=normalized)

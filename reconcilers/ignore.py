"""Ignore rules: fields of live objects that git does not govern, e.g. ``/spec/replicas`` of a Deployment an
HPA scales. A rule is JSON pointers (RFC 6901) with a target (group, kind, name, namespace, labels).

Ignored fields are left out of drift (the owned-fields fingerprint skips them) and out of apply: once the object
exists, an ignored field keeps its live value, and is dropped from our applied configuration when another
manager owns it, so server-side apply neither resets it nor takes it over. On create, git's value is used.
Built in (:func:`builtin_rules`): a Deployment or StatefulSet that an HPA in the desired set targets ignores
``/spec/replicas``; an aggregated ClusterRole (one with ``aggregationRule``) ignores ``/rules``, which the
clusterrole-aggregation controller fills ("the control plane overwrites any values that you manually specify in
the rules field of an aggregate ClusterRole", Kubernetes docs, Using RBAC Authorization, Aggregated ClusterRoles).
Used by :mod:`reconcilers.engine` and :mod:`reconcilers.diff`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reconcilers import resources


@dataclasses.dataclass(frozen=True)
class IgnoreRule:
    """``json_pointers`` to ignore on objects matching every given target field (empty matches any)."""

    json_pointers: tuple[str, ...]
    group: str | None = None
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None
    match_labels: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def matches(self, key: resources.ResourceKey, body: resources.Body) -> bool:
        """True when the rule targets the object ``key`` with desired ``body``."""
        labels = (body.get("metadata") or {}).get("labels") or {}
        return (
            (self.group is None or self.group == key.group)
            and (self.kind is None or self.kind == key.kind)
            and (self.name is None or self.name == key.name)
            and (self.namespace is None or self.namespace == key.namespace)
            and all(labels.get(k) == v for k, v in self.match_labels.items())
        )


def parse_pointer(pointer: str) -> list[str]:
    """The segments of a JSON pointer (RFC 6901: ``~1`` is ``/``, ``~0`` is ``~``). Raises ValueError."""
    if not pointer.startswith("/"):
        raise ValueError(f"JSON pointer {pointer!r} must start with '/'")
    return [s.replace("~1", "/").replace("~0", "~") for s in pointer[1:].split("/")]


def hpa_rules(manifests: Iterable[resources.Manifest]) -> list[IgnoreRule]:
    """``/spec/replicas`` of every workload an HPA in ``manifests`` scales."""
    out = []
    for m in manifests:
        if (m.key.group, m.key.kind) != ("autoscaling", "HorizontalPodAutoscaler"):
            continue
        ref = (m.body.get("spec") or {}).get("scaleTargetRef") or {}
        if ref.get("kind") and ref.get("name"):
            group = str(ref.get("apiVersion", "")).rpartition("/")[0]
            out.append(IgnoreRule(("/spec/replicas",), group, ref["kind"], ref["name"], m.key.namespace))
    return out


def aggregated_rules(manifests: Iterable[resources.Manifest]) -> list[IgnoreRule]:
    """``/rules`` of every aggregated ClusterRole in ``manifests``: its rules are the aggregation controller's
    (documents write ``rules: []``, the controller fills them in), never drift and never applied over."""
    return [
        IgnoreRule(("/rules",), m.key.group, m.key.kind, m.key.name)
        for m in manifests
        if (m.key.group, m.key.kind) == ("rbac.authorization.k8s.io", "ClusterRole")
        and isinstance(m.body.get("aggregationRule"), dict)
    ]


def builtin_rules(manifests: Sequence[resources.Manifest]) -> list[IgnoreRule]:
    """The rules every sync adds to the configured ones: :func:`hpa_rules` and :func:`aggregated_rules`."""
    return [*hpa_rules(manifests), *aggregated_rules(manifests)]


def pointer_text(segments: Sequence[str]) -> str:
    """A parsed pointer written back as a JSON pointer (RFC 6901 escapes)."""
    return "".join("/" + s.replace("~", "~0").replace("/", "~1") for s in segments)


def pointers_for(manifest: resources.Manifest, rules: Sequence[IgnoreRule]) -> tuple[tuple[str, ...], ...]:
    """The parsed pointers that apply to ``manifest`` (as segment tuples, deduplicated, sorted)."""
    found = {tuple(parse_pointer(p)) for r in rules if r.matches(manifest.key, manifest.body) for p in r.json_pointers}
    return tuple(sorted(found))


def _get(obj: Any, segments: Sequence[str]) -> tuple[bool, Any]:
    for s in segments:
        if isinstance(obj, dict) and s in obj:
            obj = obj[s]
        elif isinstance(obj, list) and s.isdigit() and int(s) < len(obj):
            obj = obj[int(s)]
        else:
            return False, None
    return True, obj


def _set(obj: Any, segments: Sequence[str], value: Any, *, remove: bool) -> None:
    found, parent = _get(obj, segments[:-1])
    last = segments[-1]
    if not found:
        return
    if isinstance(parent, dict):
        if remove:
            parent.pop(last, None)
        else:
            parent[last] = value
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent) and not remove:
        parent[int(last)] = value


def owns_path(live: resources.Body, field_manager: str, segments: Sequence[str]) -> bool:
    """True when ``field_manager``'s applied fieldsV1 in ``live`` include the map path ``segments`` (a path
    through a list is reported as owned: positions do not map onto fieldsV1 keys)."""
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") != field_manager or entry.get("subresource"):
            continue
        fields: Any = entry.get("fieldsV1") or {}
        for s in segments:
            if s.isdigit():
                return True
            fields = fields.get(f"f:{s}") if isinstance(fields, dict) else None
            if fields is None:
                break
        else:
            return True
    return False


def for_apply(
    body: resources.Body, live: resources.Body | None, pointers: Sequence[Sequence[str]], field_manager: str
) -> resources.Body:
    """The body to apply: ignored fields take their live value (or are dropped when another manager owns
    them); unchanged when there is no live object yet or nothing is ignored."""
    if live is None or not pointers:
        return body
    out = copy.deepcopy(body)
    for segments in pointers:
        found, value = _get(live, segments)
        if found and owns_path(live, field_manager, segments):
            _set(out, segments, copy.deepcopy(value), remove=False)
        else:
            _set(out, segments, None, remove=True)
    return out


def exclude_fields(fields: Any, pointers: Sequence[Sequence[str]]) -> Any:
    """A fieldsV1 set without the ignored paths (a path through a list drops that whole list)."""
    if not pointers or not isinstance(fields, dict):
        return fields
    out = copy.deepcopy(fields)
    for segments in pointers:
        node: Any = out
        for i, s in enumerate(segments):
            key = f"f:{s}"
            last = i == len(segments) - 1 or segments[i + 1].isdigit()
            if not isinstance(node, dict) or key not in node:
                break
            if last:
                del node[key]
                break
            node = node[key]
    return out

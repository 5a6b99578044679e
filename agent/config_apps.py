"""The ``apps`` section of the config file: an app is a source and a path, placed on clusters by name or label
selector (:class:`Placement`), with its own sync settings. Re-exported by :mod:`agent.config`; turned into the
units the runtime syncs by :mod:`agent.apps`.
"""

from __future__ import annotations

import fnmatch
import re
import typing
from collections.abc import Mapping
from typing import Annotated, Any

import pydantic

from agent.config_types import ClusterDecryption, Duration, IgnoreDifference, Retry, _dns_label, _Model, _relative


class SelectorRequirement(_Model):
    """One ``matchExpressions`` entry, as in a Kubernetes label selector (``apimachinery`` ``LabelSelector``):
    ``key``, ``operator`` (``In``, ``NotIn``, ``Exists``, ``DoesNotExist``) and ``values`` (non-empty for ``In``
    and ``NotIn``, empty otherwise)."""

    key: str
    operator: typing.Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[str, ...] = ()

    @pydantic.model_validator(mode="after")
    def _values(self) -> SelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs values")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when ``labels`` meet this requirement (Kubernetes semantics: ``NotIn`` matches a missing key)."""
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        if self.operator == "In":
            return labels.get(self.key) in self.values
        return labels.get(self.key) not in self.values


_LABEL_NAME = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_SELECTOR_PART = re.compile(
    r"\s*(?:(?P<not>!)\s*(?P<absent>[^\s,!=()]+)"
    r"|(?P<key>[^\s,!=()]+)\s*(?:(?P<op>==|=|!=)\s*(?P<value>[^\s,!=()]*)"
    r"|\s+(?P<set>in|notin)\s*\((?P<values>[^()]*)\))?)\s*(?:,|$)"
)


def label_problem(key: str, value: str) -> str | None:
    """Why ``key: value`` is not a Kubernetes label (apimachinery's rules: a name of at most 63 characters,
    alphanumerics and ``-_.`` inside, with an optional DNS subdomain prefix and ``/``; a value the same, or
    empty), or None when it is one."""
    prefix, _, name = key.rpartition("/")
    if not name or not _LABEL_NAME.fullmatch(name) or len(name) > 63:
        return f"label key {key!r} is not a valid label name"
    if prefix and (len(prefix) > 253 or not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", prefix)):
        return f"label key {key!r} has an invalid prefix"
    if len(value) > 63 or not _LABEL_NAME.fullmatch(value):
        return f"label {key}: value {value!r} is not a valid label value"
    return None


def valid_labels(labels: dict[str, str]) -> dict[str, str]:
    """``labels`` when every pair is a Kubernetes label (:func:`label_problem`). Raises ValueError naming each one
    that is not."""
    problems = [p for k, value in labels.items() if (p := label_problem(k, value))]
    if problems:
        raise ValueError("; ".join(problems))
    return labels


def parse_selector(text: str) -> tuple[SelectorRequirement, ...]:
    """The requirements of label selector ``text`` in Kubernetes' string syntax (``kubectl get -l``; apimachinery
    ``labels.Parse``): ``key``, ``!key``, ``key=value``, ``key==value``, ``key!=value``, ``key in (a,b)``, ``key
    notin (a,b)``, joined by commas; all must hold. Raises ValueError naming the part it cannot read."""
    out: list[SelectorRequirement] = []
    at = 0
    text = text.strip()
    while at < len(text):
        found = _SELECTOR_PART.match(text, at)
        if found is None or found.end() == at:
            raise ValueError(f"label selector {text!r}: cannot read {text[at:]!r}")
        at = found.end()
        g = found.groupdict()
        if g["absent"]:
            out.append(SelectorRequirement(key=g["absent"], operator="DoesNotExist"))
        elif g["op"]:
            negated: typing.Literal["In", "NotIn"] = "NotIn" if g["op"] == "!=" else "In"
            out.append(SelectorRequirement(key=g["key"], operator=negated, values=(g["value"],)))
        elif g["set"]:
            values = tuple(v.strip() for v in g["values"].split(",") if v.strip())
            member: typing.Literal["In", "NotIn"] = "In" if g["set"] == "in" else "NotIn"
            try:
                out.append(SelectorRequirement(key=g["key"], operator=member, values=values))
            except pydantic.ValidationError:
                raise ValueError(f"label selector {text!r}: {g['key']} {g['set']} () needs values") from None
        else:
            out.append(SelectorRequirement(key=g["key"], operator="Exists"))
    return tuple(out)


class Placement(_Model):
    """Where an app goes: ``names`` (clusters by name) and/or a label selector (``matchLabels``,
    ``matchExpressions``). A cluster is selected when its name is in ``names``, or when a selector is given and
    every label rule matches its ``labels`` (the two are ORed, as Argo CD's ApplicationSet cluster generators
    do with separate generators). No field at all selects every cluster."""

    names: tuple[str, ...] = ()
    match_labels: dict[str, str] = pydantic.Field(default_factory=dict)
    match_expressions: tuple[SelectorRequirement, ...] = ()

    def selects(self, name: str, labels: Mapping[str, str]) -> bool:
        """True when the cluster ``name`` with ``labels`` is selected."""
        if name in self.names:
            return True
        if not self.match_labels and not self.match_expressions:
            return not self.names  # no rule at all: every cluster
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            r.matches(labels) for r in self.match_expressions
        )


class AppSync(_Model):
    """Per-app overrides of the top-level ``sync`` keys (unset: the top-level value): ``prune``, ``selfHeal``,
    ``wait``, ``auto`` (false: manual sync, written only when an operator asks), ``retry`` (retries of a failed
    sync, :class:`agent.config_types.Retry`), ``recreate`` (delete and create again objects whose change is refused as
    immutable: Flux's ``force``)."""

    auto: bool | None = None
    retry: Retry | None = None
    recreate: bool | None = None
    prune: bool | None = None
    self_heal: bool | None = None
    wait: bool | None = None


class ValuesFile(_Model):
    """A Helm values file: ``path`` in the app's source (``${CLUSTER_NAME}`` and ``${CLUSTER_LABEL_<key>}`` are
    replaced per cluster), ``optional``: a missing file is skipped instead of failing the app. With ``source``, the
    file comes from that source instead (``valuesFrom``)."""

    path: str
    optional: bool = False
    source: str | None = None

    @pydantic.field_validator("path")
    @classmethod
    def _relative(cls, v: str) -> str:
        return _relative(v, "values file")


def _values_file(v: Any) -> Any:
    return {"path": v} if isinstance(v, str) else v


class HelmOptions(_Model):
    """How an app's chart is rendered (``helm template``; its ``path`` must hold a ``Chart.yaml``, or it names a
    ``chart``): ``releaseName`` (default: the app's name); ``valuesFiles`` from the app's source (relative to its
    root; for a ``chart``, relative to the chart, as Argo CD reads them), then ``valuesFrom`` (files of
    other sources), then ``values`` (inline), later ones winning, as ``helm template -f a -f b --values c`` merges
    them; ``skipCrds`` leaves the chart's ``crds/`` out (default false); ``skipTests`` leaves ``helm test`` hooks out
    (default true). Values files may be SOPS-encrypted (decrypted first when the app decrypts)."""

    release_name: str | None = None
    values: dict[str, Any] = pydantic.Field(default_factory=dict)
    values_files: tuple[
        Annotated[ValuesFile, pydantic.BeforeValidator(_values_file, json_schema_input_type=str | ValuesFile)], ...
    ] = ()
    values_from: tuple[ValuesFile, ...] = ()
    skip_crds: bool = False
    skip_tests: bool = True

    @pydantic.field_validator("release_name")
    @classmethod
    def _release(cls, v: str | None) -> str | None:
        return _dns_label(v) if v is not None else v

    @pydantic.field_validator("values_from")
    @classmethod
    def _with_source(cls, v: tuple[ValuesFile, ...]) -> tuple[ValuesFile, ...]:
        for f in v:
            if f.source is None:
                raise ValueError(f"valuesFrom {f.path!r} needs source (valuesFiles are read from the app's source)")
        return v


def _jsonnet_value(v: Any) -> Any:
    return {"value": v} if isinstance(v, str) else v


class JsonnetValue(_Model):
    """One jsonnet ext var or top-level argument, exactly one of: ``value`` (a string; a bare string is short for
    it), ``code`` (jsonnet code: ``3``, ``{a: 1}``), or ``env`` (the agent's environment variable of that name, read
    at each render as a string and kept out of every output, as a decrypted value is)."""

    value: str | None = None
    code: str | None = None
    env: str | None = None

    @pydantic.model_validator(mode="after")
    def _one(self) -> JsonnetValue:
        given = [k for k in ("value", "code", "env") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of value, code or env (given: {', '.join(given) or 'none'})")
        return self


def _named_values(v: Any) -> Any:
    """Argo CD's list form (``[{name, value, code: true}]``) as a mapping by name."""
    if not isinstance(v, list):
        return v
    out: dict[str, Any] = {}
    for i, item in enumerate(v):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValueError(f"item {i} needs a name (Argo CD's form: {{name, value, code}})")
        if set(item) - {"name", "value", "code"}:
            raise ValueError(f"item {item['name']!r}: only name, value and code are read")
        out[item["name"]] = {"code" if item.get("code") else "value": str(item.get("value", ""))}
    return out


_JsonnetValues = Annotated[
    dict[
        str,
        Annotated[JsonnetValue, pydantic.BeforeValidator(_jsonnet_value, json_schema_input_type=str | JsonnetValue)],
    ],
    pydantic.BeforeValidator(_named_values),
]


class DirectoryOptions(_Model):
    """Which files of an app's directory are read (Argo CD's ``source.directory``): ``recurse`` (default true:
    every subdirectory, as Flux reads a path; Argo CD's default is false, the files at the top only), ``include``
    and ``exclude`` (glob patterns matched against each file's path relative to the app's path: ``*.yaml``,
    ``{config.yaml,env-use2/*}``; ``*`` spans ``/``, as Argo CD's globs)."""

    recurse: bool = True
    include: str = ""
    exclude: str = ""


class KustomizeImage(_Model):
    """An image override of :class:`KustomizeOptions` (kustomize's ``images`` entry, Flux's field names): the
    image ``name`` as written in the objects, and its ``newName``, ``newTag`` or ``digest``."""

    name: str
    new_name: str | None = None
    new_tag: str | None = None
    digest: str | None = None


def _image(text: str) -> dict[str, str]:
    """Argo CD's image override string (``kustomize edit set image`` syntax: ``[old=]new[:tag|@digest]``) as a
    :class:`KustomizeImage` mapping. Raises ValueError."""
    old, _, new = text.rpartition("=")
    new, at, digest = new.partition("@")
    slash = new.rfind("/")
    colon = new.rfind(":")
    name, tag = (new[:colon], new[colon + 1 :]) if colon > slash else (new, "")
    if not name:
        raise ValueError(f"image {text!r}: give [old=]new[:tag|@digest]")
    out = {"name": old or name}
    if old and old != name:
        out["newName"] = name
    if tag:
        out["newTag"] = tag
    if at:
        out["digest"] = digest
    return out


class KustomizeOptions(_Model):
    """What kustomize changes in an app's rendered objects, whatever rendered them (Argo CD's
    ``source.kustomize``, Flux's Kustomization fields): ``namePrefix``, ``nameSuffix``, ``images`` (Argo CD's
    strings ``[old=]new[:tag|@digest]`` or Flux's ``{name, newName, newTag, digest}``), ``patches`` (kustomize's
    ``patches`` entries: ``{patch, target}``, strategic merge or JSON 6902), ``commonLabels`` (selectors
    included, as kustomize's ``commonLabels``) and ``commonAnnotations``. Applied by the real ``kustomize
    build`` over the rendered objects (:mod:`agent.sources.overlay`)."""

    name_prefix: str = ""
    name_suffix: str = ""
    images: tuple[KustomizeImage | str, ...] = ()
    patches: tuple[dict[str, Any], ...] = ()
    common_labels: dict[str, str] = pydantic.Field(default_factory=dict)
    common_annotations: dict[str, str] = pydantic.Field(default_factory=dict)

    @pydantic.field_validator("images")
    @classmethod
    def _images(cls, v: tuple[KustomizeImage | str, ...]) -> tuple[KustomizeImage | str, ...]:
        return tuple(KustomizeImage.model_validate(_image(i)) if isinstance(i, str) else i for i in v)

    def image_overrides(self) -> list[dict[str, str]]:
        """``images`` as kustomize's ``images`` entries (``name``, ``newName``, ``newTag``, ``digest``)."""
        return [
            _image(i) if isinstance(i, str) else i.model_dump(by_alias=True, exclude_none=True) for i in self.images
        ]

    @pydantic.field_validator("patches")
    @classmethod
    def _patch(cls, v: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
        for i, p in enumerate(v):
            if not isinstance(p.get("patch"), str) or set(p) - {"patch", "target", "options"}:
                raise ValueError(f"patches[{i}]: give patch (a string) and optionally target")
        return v

    @pydantic.field_validator("common_labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return valid_labels(v)


class JsonnetOptions(_Model):
    """How an app's ``*.jsonnet`` files render (Argo CD's ``directory.jsonnet``): ``extVars`` (``std.extVar``)
    and ``tlas`` (the top-level function's arguments), each a mapping of name to :class:`JsonnetValue` (Argo CD's
    list of ``{name, value, code}`` is read too); ``libs``: directories of the source (relative to its root)
    searched for imports after the importing file's own directory."""

    ext_vars: _JsonnetValues = pydantic.Field(default_factory=dict)
    tlas: _JsonnetValues = pydantic.Field(default_factory=dict)
    libs: tuple[str, ...] = ()

    @pydantic.field_validator("libs")
    @classmethod
    def _relative_libs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_relative(p, "jsonnet libs") for p in v)


class ChartRef(_Model):
    """A chart of a chart repository (``type: helm``) or OCI registry (``type: oci``) source: ``name``, and
    ``version``, an exact version or a semver range in Helm's syntax (``4.15.x``, ``^1.2``, ``>=1.0 <2.0``; default:
    the newest stable version). The version Helm resolves is the app's revision; a new one matching the range is
    picked up on the source's interval."""

    name: str
    version: str | None = None

    @pydantic.field_validator("name")
    @classmethod
    def _chart_name(cls, v: str) -> str:
        if not v or "/" in v or v.startswith(".") or any(c.isspace() for c in v):
            raise ValueError(f"chart name {v!r} must be one path segment (the chart's name in its repository)")
        return v


class AppConfig(_Model):
    """One app: ``name`` (a DNS label, unique); ``source`` (a name under ``sources``, default ``default``); ``path`` (a
    directory or file in that source, relative, no ``..``), or ``chart`` (:class:`ChartRef`, for a source of ``type:
    helm`` or ``oci``); ``namespace`` for namespaced objects that name none (default: the cluster's ``namespace``);
    ``createNamespace``: create ``namespace`` when missing (Argo CD's ``CreateNamespace=true``; labelled, never
    pruned); ``clusters``: where it goes (:class:`Placement`, default every cluster); ``dependsOn``: apps that must
    be Synced and Healthy on a cluster before this one syncs there; ``sync``: :class:`AppSync`;
    ``ignoreDifferences``; ``namespaces``: an allow-list of namespace patterns (``fnmatch``: ``team-a-*``): an
    object elsewhere, or a cluster-scoped object other than an allowed Namespace, refuses the app before any write;
    ``serviceAccount``: ``namespace/name``, every request of this app's sync impersonates
    ``system:serviceaccount:<namespace>:<name>`` (Kubernetes user impersonation), so the cluster's RBAC decides what
    it may write; ``substitute`` and ``decryption`` as on a cluster; ``helm``: how its chart is rendered
    (:class:`HelmOptions`); ``jsonnet``: how its ``*.jsonnet`` files render (:class:`JsonnetOptions`);
    ``kustomize``: what kustomize changes in its rendered objects (:class:`KustomizeOptions`: name prefix and
    suffix, images, patches, common labels and annotations); ``directory``: which files of its path are read
    (:class:`DirectoryOptions`: ``recurse``, ``include``, ``exclude``); ``renderTimeout``: seconds one render of it
    may take (default: its source's); ``ref``: the branch, tag or commit of its git source this app syncs (default:
    the source's ``ref``; a pull request's head commit, ``{{.head_sha}}`` in an app set): it must be among what the
    source's fetch brings (every branch and tag of the repository), and the app waits, saying so, until it is.
    ``labels``: the app's own labels (Argo CD's Application ``metadata.labels``; Kubernetes label syntax), to filter
    apps by in the API and dashboard (``GET /api/v1/apps?label=team=payments``)."""

    name: str
    source: str = "default"
    labels: dict[str, str] = pydantic.Field(default_factory=dict)
    ref: str | None = None
    path: str | None = None
    chart: ChartRef | None = None
    namespace: str | None = None
    create_namespace: bool = False
    clusters: Placement = Placement()
    depends_on: tuple[str, ...] = ()
    sync: AppSync = AppSync()
    ignore_differences: tuple[IgnoreDifference, ...] = ()
    namespaces: tuple[str, ...] = ()
    service_account: str | None = None
    substitute: bool = False
    decryption: ClusterDecryption = ClusterDecryption()
    helm: HelmOptions | None = None
    jsonnet: JsonnetOptions | None = None
    kustomize: KustomizeOptions | None = None
    directory: DirectoryOptions = DirectoryOptions()
    render_timeout: Duration | None = pydantic.Field(default=None, gt=0)
    _app_set: str | None = pydantic.PrivateAttr(default=None)

    @property
    def app_set(self) -> str | None:
        """The app set that generated this app (None: written under ``apps``)."""
        return self._app_set

    def generated_by(self, app_set: str) -> AppConfig:
        """This app, marked as generated by ``app_set``."""
        made = self.model_copy()
        made._app_set = app_set
        return made

    @pydantic.field_validator("name")
    @classmethod
    def _name_label(cls, v: str) -> str:
        return _dns_label(v)

    @pydantic.field_validator("namespace")
    @classmethod
    def _namespace_label(cls, v: str | None) -> str | None:
        return _dns_label(v) if v is not None else v

    @pydantic.field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return valid_labels(v)

    @pydantic.field_validator("path")
    @classmethod
    def _relative_path(cls, v: str | None) -> str | None:
        return _relative(v, "path") if v is not None else v

    @pydantic.field_validator("ref")
    @classmethod
    def _ref(cls, v: str | None) -> str | None:
        if v is not None and (not v or any(c.isspace() for c in v)):
            raise ValueError(f"ref {v!r} must be a branch, tag or commit (no spaces)")
        return v

    @pydantic.model_validator(mode="after")
    def _path_or_chart(self) -> AppConfig:
        if self.ref is not None and self.chart is not None:
            raise ValueError("ref is a revision of a git source; a chart's version is chart.version")
        if (self.path is None) == (self.chart is None):
            raise ValueError("give path (a directory of a git or local source) or chart (a chart source), not both")
        if self.jsonnet is not None and self.chart is not None:
            raise ValueError("jsonnet options render the *.jsonnet files of a path, not a chart")
        return self

    @pydantic.field_validator("service_account")
    @classmethod
    def _service_account(cls, v: str | None) -> str | None:
        if v is None:
            return v
        namespace, sep, name = v.partition("/")
        if not sep or not namespace or not name:
            raise ValueError(f"serviceAccount {v!r} must be namespace/name")
        _dns_label(namespace)
        return v

    @pydantic.model_validator(mode="after")
    def _namespace_allowed(self) -> AppConfig:
        if self.namespaces and self.namespace and not allowed(self.namespaces, self.namespace):
            raise ValueError(f"namespace {self.namespace!r} is outside the app's namespaces {list(self.namespaces)}")
        return self


def allowed(patterns: tuple[str, ...], namespace: str) -> bool:
    """True when ``namespace`` matches one of ``patterns`` (``fnmatch``, case-sensitive)."""
    return any(fnmatch.fnmatchcase(namespace, p) for p in patterns)


def check_dependencies(apps: tuple[AppConfig, ...]) -> None:
    """Every ``dependsOn`` names an app, and the dependencies form no cycle. Raises ValueError naming the
    unknown app or the cycle (``a -> b -> a``)."""
    by_name = {a.name: a for a in apps}
    for a in apps:
        unknown = [d for d in a.depends_on if d not in by_name]
        if unknown:
            raise ValueError(f"app {a.name}: dependsOn names unknown apps: {', '.join(unknown)}")
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            cycle = [*trail[trail.index(name) :], name]
            raise ValueError(f"dependsOn forms a cycle: {' -> '.join(cycle)}")
        if name in done:
            return
        for d in by_name[name].depends_on:
            visit(d, [*trail, name])
        done.add(name)

    for a in apps:
        visit(a.name, [])

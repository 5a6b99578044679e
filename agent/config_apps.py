"""The ``apps`` section of the config file: an app is a source and a path, placed on clusters by name or label
selector (:class:`Placement`), with its own sync settings. Re-exported by :mod:`agent.config`; turned into the
units the runtime syncs by :mod:`agent.apps`.
"""

from __future__ import annotations

import fnmatch
import re
import typing
from collections.abc import Mapping

import pydantic

from agent.config_render import DirectoryOptions, HelmOptions, JsonnetOptions, KustomizeOptions, VariablesFrom
from agent.config_types import (
    ClusterDecryption,
    Duration,
    IgnoreDifference,
    Retry,
    _dns_label,
    _Model,
    _relative,
    valid_labels,
)


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


_SELECTOR_PART = re.compile(
    r"\s*(?:(?P<not>!)\s*(?P<absent>[^\s,!=()]+)"
    r"|(?P<key>[^\s,!=()]+)\s*(?:(?P<op>==|=|!=)\s*(?P<value>[^\s,!=()]*)"
    r"|\s+(?P<set>in|notin)\s*\((?P<values>[^()]*)\))?)\s*(?:,|$)"
)


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
    apps by in the API and dashboard (``GET /api/v1/apps?label=team=payments``). ``appOfApps``: the Argo CD
    Applications and ApplicationSets and the Flux Kustomizations, HelmReleases and sources its path renders are not
    applied but become child apps named ``<name>-<child>`` (:mod:`agent.appsets.nested`; needs a ``path``).
    ``variables`` (inline, not secret) and ``variablesFrom`` (:class:`VariablesFrom`: ConfigMaps and Secrets of the
    target cluster) are values of its ``${NAME}`` substitution, turned on by either (Flux's ``postBuild.substitute``
    and ``substituteFrom``): the config's ``variables``, then each of ``variablesFrom`` in order, then
    ``variables``, a later one winning."""

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
    app_of_apps: bool = False
    variables: dict[str, str] = pydantic.Field(default_factory=dict)
    variables_from: tuple[VariablesFrom, ...] = ()
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

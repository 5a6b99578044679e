"""The agent's config file: YAML -> validated, frozen models (pydantic), camelCase keys like Kubernetes.

``load_config(path)`` is the only entry point; every error is a :class:`reconcilers.errors.ConfigError` that
names the file and the key (``config.yaml: clusters[1].paths[0]: ...``). config.example.yaml documents every key.
Used by ``agent.cli``, ``agent.sync.cluster`` and ``agent.runtime.fleet``.
"""

from __future__ import annotations

import os
import pathlib
import re
import typing

import pydantic
import yaml

from agent import celhealth, config_keys, config_raw, kubeyaml
from agent.config_access import ACTIONS, RESOURCES, ApiToken, OidcConfig, RbacConfig, is_loopback, policy_lines

# The config's building blocks live in agent.config_types, config_sections, config_apps and config_appsets;
# re-exported here, the module everything imports.
from agent.config_apps import (
    AppConfig,
    AppSync,
    ChartRef,
    Placement,
    SelectorRequirement,
    check_dependencies,
    parse_selector,
)
from agent.config_appsets import KINDS as GENERATOR_KINDS
from agent.config_appsets import (
    AppSetConfig,
    ClusterGenerator,
    Generator,
    GitGenerator,
    GitHubPullRequests,
    GitLabMergeRequests,
    ListGenerator,
    MatrixGenerator,
    MergeGenerator,
    PathPattern,
    Preview,
    PullRequestGenerator,
)
from agent.config_raw import describe
from agent.config_render import (
    DirectoryOptions,
    HelmOptions,
    JsonnetOptions,
    JsonnetValue,
    KustomizeImage,
    KustomizeOptions,
    ValuesFile,
    VariablesFrom,
)
from agent.config_sections import (
    ChartVerify,
    DecryptionConfig,
    RenderConfig,
    RolloutConfig,
    ServerConfig,
    ServerTls,
    ShardingConfig,
    SopsConfig,
    SourceConfig,
    SourceVerify,
    SyncConfig,
    SyncWindow,
    WebhooksConfig,
)
from agent.config_types import (
    AwsConfig,
    ClusterConfig,
    ClusterConnection,
    ClusterDecryption,
    Duration,
    HomeCluster,
    IgnoreDifference,
    LabelSelector,
    Notification,
    Retry,
    SecretRef,
    _dns_label,
    _Model,
    label_problem,
    parse_duration,
)
from reconcilers import errors

__all__ = [
    "ACTIONS",
    "GENERATOR_KINDS",
    "RESOURCES",
    "AgentConfig",
    "ApiToken",
    "AppConfig",
    "AppSetConfig",
    "AppSync",
    "AwsConfig",
    "ChartRef",
    "ChartVerify",
    "ClusterConfig",
    "ClusterConnection",
    "ClusterDecryption",
    "ClusterGenerator",
    "DecryptionConfig",
    "DirectoryOptions",
    "Duration",
    "Generator",
    "GitGenerator",
    "GitHubPullRequests",
    "GitLabMergeRequests",
    "HealthCheck",
    "HelmOptions",
    "HomeCluster",
    "IgnoreDifference",
    "JsonnetOptions",
    "JsonnetValue",
    "KustomizeImage",
    "KustomizeOptions",
    "LabelSelector",
    "ListGenerator",
    "MatrixGenerator",
    "MergeGenerator",
    "Notification",
    "OidcConfig",
    "PathPattern",
    "Placement",
    "Preview",
    "PullRequestGenerator",
    "RbacConfig",
    "Retry",
    "RolloutConfig",
    "SecretRef",
    "SelectorRequirement",
    "ServerConfig",
    "ServerTls",
    "ShardingConfig",
    "SopsConfig",
    "SourceConfig",
    "SourceVerify",
    "SyncConfig",
    "SyncWindow",
    "ValuesFile",
    "VariablesFrom",
    "WebhooksConfig",
    "check_dependencies",
    "describe",
    "is_loopback",
    "label_problem",
    "load_config",
    "parse_duration",
    "parse_selector",
    "policy_lines",
]


class HealthCheck(_Model):
    """A health rule for one kind (Flux's form): ``apiVersion`` (group/version, or ``v1``) and ``kind`` (``"*"``:
    every custom resource without a rule of its own), then CEL expressions over the object, ``current``
    (Healthy), ``inProgress`` (Progressing), ``failed`` (Degraded), evaluated in that order, or ``preset: kstatus``
    (the kstatus conditions). A configured rule for a built-in kind replaces the built-in one; kinds with a rule
    are watched with their status. See :mod:`agent.celhealth`."""

    api_version: str | None = None
    kind: str
    current: str | None = None
    in_progress: str | None = None
    failed: str | None = None
    preset: typing.Literal["kstatus"] | None = None

    @pydantic.model_validator(mode="after")
    def _compiles(self) -> HealthCheck:
        expressions = {"current": self.current, "inProgress": self.in_progress, "failed": self.failed}
        if self.preset and any(expressions.values()):
            raise ValueError("give a preset or expressions, not both")
        if not self.preset and not any(expressions.values()):
            raise ValueError("give at least one of current, inProgress, failed (or a preset)")
        if self.kind != "*" and not self.api_version:
            raise ValueError(f"apiVersion is required for kind {self.kind}")
        for name, text in expressions.items():
            if text:
                celhealth.compile_expression(text, name)
        return self


class AgentConfig(_Model):
    """The whole config file: ``instance`` names this agent in the tracking label and annotation of every object
    it applies (default ``gitops-agent``; two agents on one cluster need different names); ``ignoreDifferences``
    apply to every cluster; ``variables`` are the values of ``${NAME}`` in manifests of clusters with
    ``substitute: true`` (from env or file, never from this file); ``rollout`` turns on progressive delivery;
    ``sharding`` shares the clusters among several replicas (not with ``rollout``); ``decryption`` holds the keys
    of SOPS-encrypted files, used by clusters with ``decryption: {sops: true}``; ``healthChecks`` are health rules
    for any kind (:class:`HealthCheck`); ``notifications`` send events out (:class:`Notification`);
    ``syncWindows`` say when automatic syncs may write (:class:`SyncWindow`); ``rbac``: who may do what through the
    API (:class:`RbacConfig`).

    ``sources`` names the sources apps read (DNS labels); ``source`` alone is the source named ``default``.
    ``apps`` (:class:`AppConfig`) are placed on clusters by name or label; a cluster's ``paths`` are sugar for
    one app per path, from ``default``, on that cluster only (see :mod:`agent.apps`)."""

    instance: str = "gitops-agent"
    source: SourceConfig | None = None
    sources: dict[str, SourceConfig] = pydantic.Field(default_factory=dict)
    clusters: tuple[ClusterConfig, ...] = pydantic.Field(min_length=1)
    apps: tuple[AppConfig, ...] = ()
    app_sets: tuple[AppSetConfig, ...] = ()
    sync: SyncConfig = SyncConfig()
    server: ServerConfig = ServerConfig()
    ignore_differences: tuple[IgnoreDifference, ...] = ()
    variables: dict[str, SecretRef] = pydantic.Field(default_factory=dict)
    rollout: RolloutConfig | None = None
    sharding: ShardingConfig | None = None
    rbac: RbacConfig = RbacConfig()
    decryption: DecryptionConfig = DecryptionConfig()
    render: RenderConfig = RenderConfig()
    health_checks: tuple[HealthCheck, ...] = ()
    notifications: tuple[Notification, ...] = ()
    sync_windows: tuple[SyncWindow, ...] = ()
    _app_set_errors: dict[str, str] = pydantic.PrivateAttr(default_factory=dict)

    @property
    def app_set_errors(self) -> dict[str, str]:
        """App set name -> why it has not generated its apps this time (failed, or waiting for a source); its apps
        are then those of its last generation, or none, and what it made before is never pruned for it. Empty
        in a config as loaded, before :mod:`agent.appsets` expanded it."""
        return self._app_set_errors

    def with_generated(self, generated: tuple[AppConfig, ...], app_set_errors: dict[str, str]) -> AgentConfig:
        """This config with the apps app sets generated after its own ``apps`` (checked by the caller) and the
        app sets that could not generate theirs (:attr:`app_set_errors`)."""
        made = self.model_copy(update={"apps": self.apps + generated})
        made._app_set_errors = dict(app_set_errors)
        return made

    @pydantic.field_validator("variables")
    @classmethod
    def _variable_names(cls, v: dict[str, SecretRef]) -> dict[str, SecretRef]:
        for name in v:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                raise ValueError(f"{name!r} is not a variable name (letters, digits and _, not starting with a digit)")
        return v

    @pydantic.model_validator(mode="after")
    def _roles_need_tokens(self) -> AgentConfig:
        rbac = self.rbac
        server = self.server
        if (rbac.policy.strip() or rbac.default_role) and not (server.token or server.api_tokens or server.oidc):
            raise ValueError(
                "rbac: without server.token, server.apiTokens or server.oidc the API is open and every request is "
                "anonymous with role:admin, so the policy would never apply: add a token or single sign-on"
            )
        return self

    @pydantic.model_validator(mode="after")
    def _sources_and_apps(self) -> AgentConfig:
        if self.source is not None and "default" in self.sources:
            raise ValueError("give source or sources.default, not both: source is the source named default")
        for name in self.sources:
            _dns_label(name)
        known = self.all_sources()
        if not known:
            raise ValueError("give source (or sources): where desired state comes from")
        names = [a.name for a in self.apps]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"app names must be unique: {', '.join(dupes)} appear more than once")
        for i, a in enumerate(self.apps):
            problem = self.app_problem(a)
            if problem:
                raise ValueError(f"apps[{i}] ({a.name}): {problem}")
        check_dependencies(self.apps)
        set_names = [s.name for s in self.app_sets]
        dupes = sorted({n for n in set_names if set_names.count(n) > 1})
        if dupes:
            raise ValueError(f"app set names must be unique: {', '.join(dupes)} appear more than once")
        for i, app_set in enumerate(self.app_sets):
            unknown = [n for n in app_set.sources() if n not in known]
            if unknown:
                raise ValueError(f"appSets[{i}] ({app_set.name}): git generator reads unknown sources: {unknown}")
            previews = [p.preview.source for p in app_set.pull_requests() if p.preview is not None]
            unknown = [n for n in previews if n not in known]
            if unknown:
                raise ValueError(f"appSets[{i}] ({app_set.name}): pullRequest preview reads unknown sources: {unknown}")
        for c in self.clusters:
            if c.paths and "default" not in known:
                raise ValueError(f"cluster {c.name}: paths read the source named default, and there is none")
            if c.paths and known["default"].charts:
                raise ValueError(f"cluster {c.name}: paths read the source named default, a chart source: use apps")
            clash = sorted({a.name for a in self.apps if a.clusters.selects(c.name, c.labels)} & set(c.paths))
            if clash:
                raise ValueError(f"cluster {c.name}: {', '.join(clash)} is both a path and an app placed there")
        return self

    def app_problem(self, a: AppConfig) -> str | None:
        """What is wrong with app ``a`` in this config (its source, chart, valuesFrom sources, cluster names), or
        None. Dependencies and name clashes are checked over all apps (:func:`check_dependencies`)."""
        known = self.all_sources()
        if a.source not in known:
            return f"no source named {a.source!r} (known: {', '.join(known)})"
        if known[a.source].charts and a.chart is None:
            return f"source {a.source} is a chart {known[a.source].type} source: give chart"
        if a.chart is not None and not known[a.source].charts:
            return f"chart needs a source of type helm or oci, {a.source} is not one"
        if a.ref is not None and known[a.source].type == "local":
            return f"ref needs a git source, {a.source} is a local directory (it keeps no history)"
        for f in a.helm.values_from if a.helm else ():
            if f.source not in known:
                return f"helm.valuesFrom: no source named {f.source!r}"
        unknown = [n for n in a.clusters.names if n not in {c.name for c in self.clusters}]
        if unknown:
            return f"clusters.names names unknown clusters: {', '.join(unknown)}"
        if a.app_of_apps and a.path is None:
            return "appOfApps needs a path (the folder or chart that renders the child apps)"
        return None

    @property
    def generates(self) -> bool:
        """True when apps are generated: app sets, or apps of apps (:mod:`agent.appsets.nested`)."""
        return bool(self.app_sets) or any(a.app_of_apps for a in self.apps)

    def generator_sources(self) -> list[str]:
        """The sources generation reads (config order, no repeats): those of app sets' git generators and of apps
        of apps; a new revision of one generates again."""
        found = [s for a in self.app_sets for s in a.sources()] + [a.source for a in self.apps if a.app_of_apps]
        return list(dict.fromkeys(found))

    def all_sources(self) -> dict[str, SourceConfig]:
        """Every source by name: ``sources``, and ``source`` as ``default``."""
        return {**({"default": self.source} if self.source else {}), **self.sources}

    def charts_of(self, source: str) -> tuple[ChartRef, ...]:
        """The charts the apps name from the source ``source`` (config order, no repeats)."""
        return tuple(dict.fromkeys(a.chart for a in self.apps if a.source == source and a.chart is not None))

    @property
    def default_source(self) -> SourceConfig:
        """The source named ``default`` (else the first one): the source of ``paths``, rollout and commit
        statuses."""
        found = self.all_sources()
        return found.get("default") or next(iter(found.values()))

    @pydantic.model_validator(mode="after")
    def _keys_for_decryption(self) -> AgentConfig:
        wanting = [c.name for c in self.clusters if c.decryption.sops] + [
            a.name for a in self.apps if a.decryption.sops
        ]
        if wanting and self.decryption.sops is None:
            raise ValueError(f"{', '.join(wanting)} decrypt with sops: set decryption.sops.ageKeys")
        return self

    @pydantic.model_validator(mode="after")
    def _rollout_order(self) -> AgentConfig:
        if self.rollout and self.sharding:
            raise ValueError("rollout and sharding cannot be combined: a rollout's order spans every cluster")
        if self.rollout:
            known = {c.name for c in self.clusters}
            unknown = [n for n in self.rollout.order if n not in known]
            if unknown:
                raise ValueError(f"rollout.order names unknown clusters: {', '.join(unknown)}")
        return self

    def rollout_batches(self) -> list[list[str]]:
        """The clusters in rollout order, in batches of ``rollout.maxUnavailableClusters``."""
        first = list(self.rollout.order) if self.rollout else []
        names = first + [c.name for c in self.clusters if c.name not in first]
        size = self.rollout.max_unavailable_clusters if self.rollout else len(names)
        return [names[i : i + size] for i in range(0, len(names), size)]

    @pydantic.field_validator("instance")
    @classmethod
    def _instance_label(cls, v: str) -> str:
        return _dns_label(v)

    @pydantic.field_validator("clusters")
    @classmethod
    def _unique_names(cls, v: tuple[ClusterConfig, ...]) -> tuple[ClusterConfig, ...]:
        names = [c.name for c in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"cluster names must be unique: {', '.join(dupes)} appear more than once")
        return v

    def cluster(self, name: str) -> ClusterConfig:
        """The cluster called ``name``. Raises ConfigError when there is none."""
        for c in self.clusters:
            if c.name == name:
                return c
        raise errors.ConfigError(f"no cluster named {name!r} (known: {', '.join(c.name for c in self.clusters)})")


def load_config(path: str | os.PathLike[str]) -> AgentConfig:
    """Read and validate the config file at ``path``.

    Relative ``kubeconfig``, ``source.url`` (when a local path), ``cacheDir`` and ``sshKeyFile`` are resolved
    against the config file's directory. Raises :class:`errors.ConfigError` naming the file and the key.
    """
    file = pathlib.Path(path)
    try:
        raw = kubeyaml.load_own(file.read_text(encoding="utf-8"))
    except OSError as e:
        raise errors.ConfigError(f"{file}: cannot read config: {e.strerror or e}") from e
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise errors.ConfigError(f"{file}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise errors.ConfigError(f"{file}: the config must be a mapping with source and clusters")
    unknown = config_keys.unknown_keys(raw, AgentConfig)
    if unknown:
        raise errors.ConfigError(f"{file}: " + "; ".join(unknown))
    try:
        cfg = AgentConfig.model_validate(config_raw.resolve_paths(raw, file.parent.resolve()))
    except pydantic.ValidationError as e:
        found = e.errors()
        # A list whose items failed is also reported "too short" (its failed items do not count): say it once.
        kept = [
            err
            for err in found
            if not (
                err["type"] == "too_short"
                and any(o["loc"][: len(err["loc"])] == err["loc"] and o is not err for o in found)
            )
        ]
        raise errors.ConfigError(f"{file}: " + "; ".join(describe(err) for err in kept)) from None
    return cfg

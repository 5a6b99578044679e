"""The agent's config file: YAML -> validated, frozen models (pydantic), camelCase keys like Kubernetes.

``load_config(path)`` is the only entry point; every error is a :class:`reconcilers.errors.ConfigError` that
names the file and the key (``config.yaml: clusters[1].paths[0]: ...``). config.example.yaml documents every key.
Used by ``agent.cli``, ``agent.runtime.runner`` and ``agent.runtime.fleet``.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import socket
import typing
from typing import Any

import pydantic
import yaml

from agent import celhealth

# The config's building blocks live in agent.config_types; re-exported here, the module everything imports.
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
    SecretRef,
    _dns_label,
    _Model,
    parse_duration,
)
from reconcilers import errors

__all__ = [
    "AgentConfig",
    "AwsConfig",
    "ClusterConfig",
    "ClusterConnection",
    "ClusterDecryption",
    "DecryptionConfig",
    "Duration",
    "HealthCheck",
    "HomeCluster",
    "IgnoreDifference",
    "LabelSelector",
    "Notification",
    "RolloutConfig",
    "SecretRef",
    "ServerConfig",
    "ShardingConfig",
    "SopsConfig",
    "SourceConfig",
    "SyncConfig",
    "WebhooksConfig",
    "load_config",
    "parse_duration",
]


class SourceConfig(_Model):
    """Where desired state comes from.

    ``url``: a local path, ``file://``, ``https://`` or ``ssh://``/scp-style git URL; ``type``: ``git``, ``local``
    (a plain directory, watched for changes: developer mode) or ``auto`` (default: a local directory that is not a
    git repository is ``local``); ``ref``: branch, tag or
    commit (default ``main``); ``interval``: fetch period in seconds (default 60); ``cacheDir``: where the clone
    lives (default ``~/.cache/gitops-agent/<hash of url>``); ``tokenEnv``: the environment variable holding an
    HTTPS token; ``sshKeyFile``: a private key for SSH (its ``.pub`` beside it); ``timeout``: seconds one fetch may
    take before it is stopped and the source reported stale (default 60, as Flux's GitRepository).
    """

    url: str
    type: typing.Literal["auto", "git", "local"] = "auto"
    ref: str = "main"
    interval: Duration = 60.0
    timeout: Duration = 60.0
    cache_dir: str | None = None
    token_env: str | None = None
    ssh_key_file: str | None = None

    def clone_dir(self) -> pathlib.Path:
        """The directory of the local clone."""
        if self.cache_dir:
            return pathlib.Path(self.cache_dir).expanduser()
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        return pathlib.Path("~/.cache/gitops-agent").expanduser() / digest


class ShardingConfig(_Model):
    """Several replicas share the clusters (``run`` only) through Leases (``coordination.k8s.io/v1``) in a home
    cluster; each cluster is reconciled by the one replica holding its Lease.

    ``homeCluster``: where the Leases live; ``namespace``: their namespace there (default ``gitops-agent``, must
    exist); ``identity``: this replica's name, unique among replicas (default ``<hostname>-<pid>``; in a pod,
    its name); ``leaseDuration`` (seconds, default 15): a Lease not renewed for this long is free, so a dead
    replica's clusters move within about this long; ``renewDeadline`` (default 10): a replica that could not
    renew for this long stops reconciling the cluster, before anyone else may take it; ``retryPeriod`` (default
    2): how often Leases are renewed and checked. Defaults and their meaning follow client-go's leader election.
    """

    home_cluster: HomeCluster
    namespace: str = "gitops-agent"
    identity: str = pydantic.Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}", min_length=1, max_length=128
    )
    lease_duration: Duration = 15.0
    renew_deadline: Duration = 10.0
    retry_period: Duration = 2.0

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> ShardingConfig:
        if not self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("need retryPeriod < renewDeadline < leaseDuration")
        return self


class SyncConfig(_Model):
    """How clusters are synced.

    ``interval`` between reconciles (seconds, default 300); ``fieldManager`` for server-side apply (default
    ``gitops-agent``); ``timeout`` for one reconcile's waits (seconds, default 300); ``concurrency``: requests in
    flight per cluster (default 8); ``prune``: delete objects that left git (default false); ``allowEmpty``:
    prune even when a path or a cluster renders nothing (default false); ``pruneBudget``: the largest fraction of
    the inventory one sync may delete (default 0.5); ``prunePropagationPolicy``: Background, Foreground or Orphan;
    ``selfHeal``: re-apply an object as soon as a watch shows it drifted (default false, ``run`` only);
    ``inventoryNamespace``: where each cluster keeps its inventory ConfigMaps (default ``gitops-agent``);
    ``wait``: after applying, wait up to ``timeout`` for every object to be Healthy (always on with ``rollout``);
    ``requestTimeout``: seconds one API request may wait for an answer (default 60; a frozen API server fails the
    sync after this long, and the cluster is retried with backoff).
    """

    interval: Duration = 300.0
    field_manager: str = "gitops-agent"
    timeout: Duration = 300.0
    concurrency: int = pydantic.Field(default=8, ge=1, le=64)
    prune: bool = False
    allow_empty: bool = False
    prune_budget: float = pydantic.Field(default=0.5, gt=0, le=1)
    prune_propagation_policy: typing.Literal["Background", "Foreground", "Orphan"] = "Background"
    self_heal: bool = False
    inventory_namespace: str = "gitops-agent"
    wait: bool = False
    request_timeout: Duration = 60.0


class WebhooksConfig(_Model):
    """Push webhooks, each enabled by its secret: ``github`` (``X-Hub-Signature-256``, HMAC-SHA256 of the body),
    ``gitlab`` (``X-Gitlab-Token``), ``generic`` (``X-Signature-256: sha256=<hex>``, HMAC-SHA256 of the body)."""

    github: SecretRef | None = None
    gitlab: SecretRef | None = None
    generic: SecretRef | None = None


class ServerConfig(_Model):
    """The HTTP server.

    ``listen`` as ``host:port`` (default ``127.0.0.1:8080``); ``token``: when set, every endpoint but /healthz,
    /readyz and the webhooks (which carry their own signatures) needs ``Authorization: Bearer <token>``;
    ``webhooks``: see :class:`WebhooksConfig`; ``maxBodyBytes``: larger webhook bodies get 413 (default 10 MiB);
    ``webhookDebounce``: seconds a push waits for more pushes before the one fetch they share (default 0.1);
    ``allowUnauthenticated``: serve on a non-loopback ``listen`` address without ``token`` (default false: such a
    config is refused at start, since ``POST /api/v1/sync`` would be open to anyone who reaches the port).
    """

    listen: str = "127.0.0.1:8080"
    token: SecretRef | None = None
    webhooks: WebhooksConfig = WebhooksConfig()
    max_body_bytes: int = pydantic.Field(default=10 * 1024 * 1024, ge=1024)
    webhook_debounce: Duration = 0.1
    allow_unauthenticated: bool = False

    @pydantic.field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{v!r} is not host:port")
        return v

    @property
    def host(self) -> str:
        """The host part of ``listen``."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """The port part of ``listen``."""
        return int(self.listen.rpartition(":")[2])


class RolloutConfig(_Model):
    """Progressive delivery of a new revision across clusters (``run`` only).

    ``order``: cluster names to go first, in this order (the others follow in config order);
    ``maxUnavailableClusters``: clusters upgraded at once (default 1: one after the other); the next batch starts
    only when the previous one is Healthy within ``sync.timeout``. A batch that is not (Degraded, or not Healthy in
    time) halts the rollout; with ``rollback: auto`` (default) its clusters go back to their last healthy revision.
    A failed revision is not tried again; a newer commit starts a new rollout.
    """

    order: tuple[str, ...] = ()
    max_unavailable_clusters: int = pydantic.Field(default=1, ge=1)
    rollback: typing.Literal["auto", "none"] = "auto"


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


class SopsConfig(_Model):
    """``ageKeys``: the age identities (``AGE-SECRET-KEY-1...``, one or more per env variable or file) that
    decrypt SOPS-encrypted files, tried in turn."""

    age_keys: tuple[SecretRef, ...] = pydantic.Field(min_length=1)


class DecryptionConfig(_Model):
    """Keys for encrypted files in the sources: ``sops`` (see :class:`SopsConfig`)."""

    sops: SopsConfig | None = None


class AgentConfig(_Model):
    """The whole config file: ``instance`` names this agent in the tracking label and annotation of every object
    it applies (default ``gitops-agent``; two agents on one cluster need different names); ``ignoreDifferences``
    apply to every cluster; ``variables`` are the values of ``${NAME}`` in manifests of clusters with
    ``substitute: true`` (from env or file, never from this file); ``rollout`` turns on progressive delivery;
    ``sharding`` shares the clusters among several replicas (not with ``rollout``); ``decryption`` holds the keys
    of SOPS-encrypted files, used by clusters with ``decryption: {sops: true}``; ``healthChecks`` are health rules
    for any kind (:class:`HealthCheck`); ``notifications`` send events out (:class:`Notification`)."""

    instance: str = "gitops-agent"
    source: SourceConfig
    clusters: tuple[ClusterConfig, ...] = pydantic.Field(min_length=1)
    sync: SyncConfig = SyncConfig()
    server: ServerConfig = ServerConfig()
    ignore_differences: tuple[IgnoreDifference, ...] = ()
    variables: dict[str, SecretRef] = pydantic.Field(default_factory=dict)
    rollout: RolloutConfig | None = None
    sharding: ShardingConfig | None = None
    decryption: DecryptionConfig = DecryptionConfig()
    health_checks: tuple[HealthCheck, ...] = ()
    notifications: tuple[Notification, ...] = ()

    @pydantic.field_validator("variables")
    @classmethod
    def _variable_names(cls, v: dict[str, SecretRef]) -> dict[str, SecretRef]:
        for name in v:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                raise ValueError(f"{name!r} is not a variable name (letters, digits and _, not starting with a digit)")
        return v

    @pydantic.model_validator(mode="after")
    def _keys_for_decryption(self) -> AgentConfig:
        wanting = [c.name for c in self.clusters if c.decryption.sops]
        if wanting and self.decryption.sops is None:
            raise ValueError(f"clusters {', '.join(wanting)} decrypt with sops: set decryption.sops.ageKeys")
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
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as e:
        raise errors.ConfigError(f"{file}: cannot read config: {e.strerror or e}") from e
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise errors.ConfigError(f"{file}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise errors.ConfigError(f"{file}: the config must be a mapping with source and clusters")
    try:
        cfg = AgentConfig.model_validate(_resolve_paths(raw, file.parent.resolve()))
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
        raise errors.ConfigError(f"{file}: " + "; ".join(_describe(err) for err in kept)) from None
    return cfg


def _describe(err: Any) -> str:
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{loc or '(top level)'}: {msg}"


def _resolve_paths(raw: dict[str, Any], base: pathlib.Path) -> dict[str, Any]:
    def resolve(v: Any) -> Any:
        if not isinstance(v, str) or not v or "://" in v or (":" in v and "@" in v):
            return v  # not a local path (URL or scp-style git remote): leave it to validation
        return str(base / pathlib.Path(v).expanduser())

    out = dict(raw)
    if isinstance(raw.get("source"), dict):
        src = dict(raw["source"])
        for key in ("url", "cacheDir", "sshKeyFile"):
            if key in src:
                src[key] = resolve(src[key])
        out["source"] = src
    sharding = raw.get("sharding")
    if isinstance(sharding, dict) and isinstance(sharding.get("homeCluster"), dict):
        home = sharding["homeCluster"]
        if home.get("kubeconfig"):
            out["sharding"] = {**sharding, "homeCluster": {**home, "kubeconfig": resolve(home["kubeconfig"])}}
    if isinstance(raw.get("clusters"), list):
        out["clusters"] = [
            {**c, "kubeconfig": resolve(c["kubeconfig"])} if isinstance(c, dict) and c.get("kubeconfig") else c
            for c in raw["clusters"]
        ]
    return out

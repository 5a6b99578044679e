"""Sections of the config file that stand alone: the source, sharding, sync, the HTTP server and its webhooks,
rollout and decryption keys. Re-exported by :mod:`agent.config`, the module everything imports.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import socket
import typing
from typing import Annotated

import pydantic

from agent import source_kinds
from agent.config_access import ApiToken, OidcConfig
from agent.config_types import Duration, HomeCluster, Interval, Retry, SecretRef, Size, _Model


class SourceVerify(_Model):
    """A git source's ``verify``: what is deployed must carry a signature by one of ``keys`` (each ``{file}`` or
    ``{env}``: an SSH public key line, ``ssh-ed25519 AAAA...``, for ``type: ssh``; an ASCII-armoured OpenPGP public
    key for ``type: gpg``). ``mode``: ``head`` (default), the commit to deploy is signed (git's ``commit -S``), as
    Flux's ``GitRepository.spec.verify.mode: HEAD``; ``tag``: the source's ``ref`` is an annotated tag signed with
    ``tag -s`` (Flux's ``Tag``); ``all-since``: every commit after ``since`` (a commit SHA or tag the revision to
    deploy descends from) up to the one deployed is signed, so that no unsigned commit slips in under a signed head
    (at most :data:`agent.sources.verify.MAX_COMMITS` of them). Checked with OpenSSH's ``ssh-keygen -Y verify``
    (namespace ``git``) or GnuPG's ``gpg --verify`` against these keys alone."""

    mode: typing.Literal["head", "tag", "all-since"] = "head"
    type: typing.Literal["ssh", "gpg"]
    keys: tuple[SecretRef, ...] = pydantic.Field(min_length=1)
    since: str | None = None

    @pydantic.model_validator(mode="after")
    def _since(self) -> SourceVerify:
        if (self.mode == "all-since") != (self.since is not None):
            raise ValueError("since goes with mode all-since, and mode all-since needs since")
        return self


class ChartVerify(_Model):
    """An OCI chart source's ``verify``: every chart pulled must carry a cosign signature by one of ``keys`` (each
    ``{file}`` or ``{env}``: a PEM public key, ``cosign.pub``) over the manifest digest pulled, as Flux's
    ``OCIRepository.spec.verify: {provider: cosign, secretRef}`` with static keys. Checked with the real cosign
    (``cosign verify --key``), offline: against the keys alone, without the transparency log (a registry on a
    private network needs no Rekor). ``provider``: ``cosign`` (the only one)."""

    provider: typing.Literal["cosign"]
    keys: tuple[SecretRef, ...] = pydantic.Field(min_length=1)


class SourceConfig(_Model):
    """Where desired state comes from.

    ``url``: a local path, ``file://``, ``https://`` or ``ssh://``/scp-style git URL; ``type``: ``git``, ``local``
    (a plain directory, watched for changes: developer mode) or ``auto`` (default: a local directory that is not a
    git repository is ``local``); ``ref``: branch, tag or
    commit (default ``main``); ``interval``: fetch period (at least 1s; default 60s); ``cacheDir``: where the clone
    lives (default ``~/.cache/gitops-agent/<hash of url>``); ``tokenEnv``: the environment variable holding an
    HTTPS token; ``sshKeyFile``: a private key for SSH (its ``.pub`` beside it); ``timeout``: seconds one fetch may
    take before it is stopped and the source reported stale (default 60, as Flux's GitRepository);
    ``renderTimeout``: seconds one render of its apps (``helm template``, ``kustomize build``) may take before it is
    stopped with its process group and the app fails naming it (default 60; an app's own ``renderTimeout`` wins).
    ``fetchPullRequestRefs``: also fetch the head of every pull request (GitHub's ``refs/pull/<n>/head``, GitLab's
    ``refs/merge-requests/<iid>/head``), so that pull requests from forks can be synced and previewed at their head
    commit (default false: only branches and tags; every pull request ever opened is fetched, closed ones too).
    ``verify``: only signed revisions are deployed (:class:`SourceVerify` for git, :class:`ChartVerify` for an OCI
    registry's charts); one that is not is never deployed: the source is ``Unverified (<sha or chart>: <reason>)``
    and its last verified revision stays.

    ``type: helm`` is an HTTP chart repository (``url`` serves ``index.yaml``) and ``type: oci`` an OCI registry
    (``url`` is ``oci://host/path``, the charts below it); apps name a ``chart`` of it. Their credentials:
    ``usernameEnv`` and ``passwordEnv`` (environment variables) or ``passwordFile`` (a file, e.g. a mounted
    Secret; basic auth), ``insecure``: plain HTTP for an OCI registry (Flux's ``insecure``).
    """

    url: str
    type: Annotated[str, pydantic.Field(json_schema_extra={"enum": ["auto", *source_kinds.KINDS]})] = "auto"
    ref: str = "main"
    interval: Interval = 60.0
    timeout: Duration = 60.0
    render_timeout: Duration = pydantic.Field(default=60.0, gt=0)
    cache_dir: str | None = None
    token_env: str | None = None
    ssh_key_file: str | None = None
    fetch_pull_request_refs: bool = False
    verify: SourceVerify | ChartVerify | None = None
    username_env: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    insecure: bool = False

    @pydantic.field_validator("type")
    @classmethod
    def _known(cls, v: str) -> str:
        if v != "auto" and v not in source_kinds.KINDS:
            raise ValueError(f"unknown source type {v!r} (known: auto, {', '.join(source_kinds.KINDS)})")
        return v

    @pydantic.model_validator(mode="after")
    def _chart_url(self) -> SourceConfig:
        kind = source_kinds.KINDS.get(self.type)
        if kind is not None and kind.schemes and not self.url.startswith(kind.schemes):
            want = " or ".join(f"{s}" for s in kind.schemes)
            raise ValueError(f"a type: {self.type} source needs an {want} url, not {self.url!r}")
        if (kind is None or not kind.credentials) and (
            self.username_env or self.password_env or self.password_file or self.insecure
        ):
            takers = " and ".join(k.name for k in source_kinds.KINDS.values() if k.credentials)
            raise ValueError(f"usernameEnv, passwordEnv, passwordFile and insecure are for type: {takers} sources")
        if self.password_env and self.password_file:
            raise ValueError("give passwordEnv or passwordFile, not both")
        if isinstance(self.verify, SourceVerify) and self.type not in ("auto", "git"):
            raise ValueError(f"verify with type ssh or gpg is for git sources, not type: {self.type}")
        if isinstance(self.verify, ChartVerify) and self.type != "oci":
            raise ValueError(f"verify with provider cosign is for type: oci sources, not type: {self.type}")
        return self

    @property
    def charts(self) -> bool:
        """True for a chart repository or registry (apps name a ``chart`` of it, not a ``path``)."""
        kind = source_kinds.KINDS.get(self.type)
        return kind is not None and kind.charts

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


DEFAULT_QPS = 400.0
DEFAULT_BURST = 800
"""The default rate limit per cluster. Argo CD's is 50/100 (``ARGOCD_K8S_CLIENT_QPS``/``BURST``) and Flux's
controllers' 50/300 (``--kube-api-qps``/``--kube-api-burst``), for controllers whose every reconcile reads before
it writes; this agent sends each changed object twice (the stage's server-side dry run, then the apply) with up to
``sync.concurrency`` in flight, and a healthy first sync of 2,001 objects reaches 250-700 requests a second per test
cluster (docs/benchmarks.md). 400/800 leaves a first sync of 2,001 objects to 3 clusters at 0.99x of no limit
(each cluster then sees about 270 requests a second), and slows the same sync to one cluster alone, which reaches
about 700 requests a second, to 1.56x: the price of a bound on what one agent sends one API server
(bench/scale.py --compare-rate-limit; raise ``qps`` for a cluster that can take more)."""


class SyncWindow(_Model):
    """When automatic syncs may write (Argo CD's ``syncWindows``): ``kind`` ``allow`` or ``deny``; ``schedule``, a
    cron expression (5 fields, in ``timeZone``, default UTC) of when the window opens, for ``duration``; ``apps`` and
    ``clusters``: name patterns (``fnmatch``: ``team-a-*``) it covers, and ``selector``: cluster labels (empty:
    every app, every cluster). An app with an allow window is written only inside one; inside a deny window it is
    not written (deny wins over allow). Self-heal, scheduled syncs and rollout steps obey; an operator's sync is
    refused too unless the window says ``manualSync: true``."""

    kind: typing.Literal["allow", "deny"]
    schedule: str
    duration: Duration = pydantic.Field(gt=0)
    time_zone: str = "UTC"
    apps: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    selector: dict[str, str] = pydantic.Field(default_factory=dict)
    manual_sync: bool = False

    @pydantic.model_validator(mode="after")
    def _cron(self) -> SyncWindow:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(self.schedule, timezone=self.time_zone)
        except (ValueError, KeyError) as e:  # zoneinfo's unknown zone is a KeyError (ZoneInfoNotFoundError)
            raise ValueError(f"schedule {self.schedule!r} in timeZone {self.time_zone!r}: {e}") from None
        return self


class SyncConfig(_Model):
    """How clusters are synced.

    ``interval`` between reconciles (at least 1s; default 300s); ``fieldManager`` for server-side apply (default
    ``gitops-agent``); ``timeout`` for one reconcile's waits (seconds, default 300); ``concurrency``: requests in
    flight per cluster (default 8); ``appConcurrency``: a cluster's apps at a new revision synced side by side
    (default 8; their requests share the cluster's ``concurrency``); ``prune``: delete objects
    that left git (default false); ``allowEmpty``: prune even when a path or a cluster renders nothing (default
    false); ``pruneBudget``: the largest fraction of
    the inventory one sync may delete (default 0.5); ``prunePropagationPolicy``: Background, Foreground or Orphan;
    ``selfHeal``: re-apply an object as soon as a watch shows it drifted (default false, ``run`` only);
    ``inventoryNamespace``: where each cluster keeps its inventory ConfigMaps (default ``gitops-agent``);
    ``wait``: after applying, wait up to ``timeout`` for every object to be Healthy (always on with ``rollout``);
    ``requestTimeout``: seconds one API request may wait for an answer (default 60; a frozen API server fails the
    sync after this long, and the cluster is retried with backoff); ``waveTimeout``: seconds a sync wave may take
    to become Healthy before the next one, and a hook to complete (default ``timeout``); ``hooksOnNoop``: run
    PreSync/Sync/PostSync hooks on a sync that changes nothing too (default false: a no-op resync runs no hook);
    ``qps`` and ``burst``: each cluster's client-side rate limit, a token bucket as client-go's (requests a second,
    and the most sent at once after a pause; every request to the cluster counts; ``qps: 0``: no limit), unless the
    cluster sets its own (see :data:`DEFAULT_QPS`); ``auto``: sync apps on their own (default true); false: every
    app is diffed and shown OutOfSync but written only when an operator asks (Argo CD's Application without
    ``syncPolicy.automated``; an app's ``sync.auto`` wins); ``retry``: retries of an app whose sync failed, with
    backoff (:class:`Retry`; an app's ``sync.retry`` wins); ``recreate``: delete and create again an object whose
    change the API server refuses as immutable (Flux's ``force``; default false: only objects annotated
    ``argocd.argoproj.io/sync-options: Force=true,Replace=true`` or ``gitops-agent.io/sync-options: Recreate=true``).
    """

    interval: Interval = 300.0
    field_manager: str = "gitops-agent"
    timeout: Duration = 300.0
    concurrency: int = pydantic.Field(default=8, ge=1, le=64)
    app_concurrency: int = pydantic.Field(default=8, ge=1, le=64)
    prune: bool = False
    allow_empty: bool = False
    prune_budget: float = pydantic.Field(default=0.5, gt=0, le=1)
    prune_propagation_policy: typing.Literal["Background", "Foreground", "Orphan"] = "Background"
    self_heal: bool = False
    inventory_namespace: str = "gitops-agent"
    wait: bool = False
    request_timeout: Duration = 60.0
    wave_timeout: Duration | None = None
    hooks_on_noop: bool = False
    qps: float = pydantic.Field(default=DEFAULT_QPS, ge=0)
    burst: int = pydantic.Field(default=DEFAULT_BURST, ge=1)
    auto: bool = True
    retry: Retry = Retry()
    recreate: bool = False


class WebhooksConfig(_Model):
    """Push webhooks, each enabled by its secret: ``github`` (``X-Hub-Signature-256``, HMAC-SHA256 of the body),
    ``gitlab`` (``X-Gitlab-Token``), ``generic`` (``X-Signature-256: sha256=<hex>``, HMAC-SHA256 of the body)."""

    github: SecretRef | None = None
    gitlab: SecretRef | None = None
    generic: SecretRef | None = None


class ServerTls(_Model):
    """TLS for the HTTP server: ``certFile`` (PEM, the certificate and any intermediates) and ``keyFile`` (its
    private key), relative to the config file. Read at start (a pair that does not load stops the start, naming
    the files) and again whenever either file changes (cert-manager or a CSI driver rotating them): new connections
    get the new certificate; a pair that does not load then is logged and the last good one kept."""

    cert_file: str
    key_file: str


class ServerConfig(_Model):
    """The HTTP server.

    ``listen`` as ``host:port`` (default ``127.0.0.1:8080``); ``token``: when set, every endpoint but /healthz,
    /readyz and the webhooks (which carry their own signatures) needs ``Authorization: Bearer <token>``;
    ``webhooks``: see :class:`WebhooksConfig`; ``maxBodyBytes``: larger webhook bodies get
    413 (a size: bytes, or ``10Mi``; default 10Mi);
    ``webhookDebounce``: seconds a push waits for more pushes before the one fetch they share (default 0.1);
    ``allowUnauthenticated``: serve on a non-loopback ``listen`` address without ``token`` (default false: such a
    config is refused at start, since ``POST /api/v1/sync`` would be open to anyone who reaches the port);
    ``apiTokens``: static tokens for automation, each a subject with groups (:class:`ApiToken`; ``token`` itself
    authenticates as ``admin``, with ``role:admin``); ``tls``: serve HTTPS (:class:`ServerTls`); ``oidc``: single
    sign-on for the dashboard and the provider's JWTs as bearer tokens (:class:`OidcConfig`).
    """

    listen: str = "127.0.0.1:8080"
    token: SecretRef | None = None
    webhooks: WebhooksConfig = WebhooksConfig()
    max_body_bytes: Size = pydantic.Field(default=10 * 1024 * 1024, ge=1024)
    webhook_debounce: Duration = 0.1
    allow_unauthenticated: bool = False
    api_tokens: tuple[ApiToken, ...] = ()
    tls: ServerTls | None = None
    oidc: OidcConfig | None = None

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


class SopsConfig(_Model):
    """``ageKeys``: the age identities (``AGE-SECRET-KEY-1...``, one or more per env variable or file) that
    decrypt SOPS-encrypted files, tried in turn."""

    age_keys: tuple[SecretRef, ...] = pydantic.Field(min_length=1)


class RenderConfig(_Model):
    """Bounds of every render (``helm template``, ``kustomize build``): ``memoryLimit``, the bytes of heap
    (``RLIMIT_DATA``) one may use before it is stopped and its app fails naming it (a size:
    bytes, or ``512Mi``; default 1Gi; 0: none). Its
    time is the source's or app's ``renderTimeout``. (``sops --decrypt`` has its own 30 s and the default 1 GiB.)"""

    memory_limit: Size = pydantic.Field(default=1024 * 1024 * 1024, ge=0)


class DecryptionConfig(_Model):
    """Keys for encrypted files in the sources: ``sops`` (see :class:`SopsConfig`)."""

    sops: SopsConfig | None = None

"""Building blocks of the config file shared by its sections: durations, secrets from env or file, ignore rules,
and how a cluster is reached (:class:`ClusterConnection`, :class:`ClusterConfig`, :class:`HomeCluster`).
Re-exported by :mod:`agent.config`, the module everything else imports.
"""

from __future__ import annotations

import os
import pathlib
import re
from typing import Annotated, Any, Literal

import pydantic
from pydantic import alias_generators

from agent import notifier_kinds
from reconcilers import errors

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def parse_duration(value: Any) -> float:
    """Seconds from a Go-style duration (``"1h"``, ``"5m"``, ``"1m30s"``, ``"0.5s"``, ``"100ms"``) or a number of
    seconds.

    Raises ValueError for anything else or a value that is not positive.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"invalid duration {value!r}: expected a duration such as 30s, 5m or 1h")
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"duration {value!r} must be positive")
    return seconds


_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0, "description": "seconds"},
        {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ms|h|m|s))+$", "description": "30s, 5m, 1h, 1m30s"},
    ]
}
"""What editors check a duration against (``gitops-agent config schema``): a number of seconds or Go's form."""

Duration = Annotated[float, pydantic.BeforeValidator(parse_duration), pydantic.WithJsonSchema(_DURATION_SCHEMA)]

Interval = Annotated[
    float, pydantic.BeforeValidator(parse_duration), pydantic.Field(ge=1.0), pydantic.WithJsonSchema(_DURATION_SCHEMA)
]
"""A period between two runs of something (a fetch, a sync): a :data:`Duration` of at least one second (a shorter
one would keep a cluster's API server or a git host busy for nothing)."""

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|k|M|G|T)?")
_SIZE_UNITS = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "k": 10**3, "M": 10**6,
               "G": 10**9, "T": 10**12}  # fmt: skip


def parse_size(value: Any) -> int:
    """Bytes from a size written as a Kubernetes quantity (``10Mi``, ``1Gi``, ``512Ki``, ``100M``, ``1G``) or a
    number of bytes (Kubernetes docs, "Resource units in Kubernetes": binary ``Ki``/``Mi``/``Gi``/``Ti`` and decimal
    ``k``/``M``/``G``/``T`` suffixes). Raises ValueError for anything else."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512Mi, 1Gi or a number of bytes")
    if isinstance(value, int):
        return value
    match = _SIZE.fullmatch(str(value).strip())
    if match is None:
        raise ValueError(f"invalid size {value!r}: expected a size such as 512Mi, 1Gi or a number of bytes")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


Size = Annotated[
    int,
    pydantic.BeforeValidator(parse_size),
    pydantic.WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "description": "bytes"},
                {
                    "type": "string",
                    "pattern": r"^[0-9]+(\.[0-9]+)?\s*(Ki|Mi|Gi|Ti|k|M|G|T)?$",
                    "description": "512Mi, 1Gi",
                },
            ]
        }
    ),
]
"""A size in bytes, written as :func:`parse_size` reads it."""


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(
        frozen=True, extra="forbid", alias_generator=alias_generators.to_camel, populate_by_name=True
    )


class SecretRef(_Model):
    """A secret kept out of the config file: ``env`` names an environment variable, ``file`` a file whose content
    (trailing newline stripped) is the secret. Exactly one must be given."""

    env: str | None = None
    file: str | None = None

    @pydantic.model_validator(mode="after")
    def _one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")
        return self

    def value(self, where: str) -> bytes:
        """The secret's bytes. Raises ConfigError naming ``where`` when it is unset, empty or unreadable."""
        if self.env is not None:
            found = os.environ.get(self.env, "")
            if not found:
                raise errors.ConfigError(f"{where}: environment variable {self.env} is not set")
            return found.encode()
        assert self.file is not None
        try:
            data = pathlib.Path(self.file).expanduser().read_bytes().rstrip(b"\r\n")
        except OSError as e:
            raise errors.ConfigError(f"{where}: cannot read {self.file}: {e.strerror or e}") from None
        if not data:
            raise errors.ConfigError(f"{where}: {self.file} is empty")
        return data


class LabelSelector(_Model):
    """``matchLabels``: every label must be present with the given value."""

    match_labels: dict[str, str] = pydantic.Field(default_factory=dict)


class IgnoreDifference(_Model):
    """Fields git does not govern on matching objects (Argo CD's ``ignoreDifferences``): ``jsonPointers``
    (RFC 6901, required) on objects of ``group`` (``""`` is the core group), ``kind``, ``name``, ``namespace`` and
    ``labelSelector``; an unset target field matches any."""

    group: str | None = None
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None
    label_selector: LabelSelector | None = None
    json_pointers: tuple[str, ...] = pydantic.Field(min_length=1)

    @pydantic.field_validator("json_pointers")
    @classmethod
    def _pointers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for p in v:
            if not p.startswith("/") or p == "/":
                raise ValueError(f"{p!r} is not a JSON pointer to a field (RFC 6901), e.g. /spec/replicas")
        return v


class AwsConfig(_Model):
    """An EKS cluster reached with an AWS IAM identity: ``clusterName`` (the EKS name, signed into every token),
    ``region``, optional ``roleArn`` (assumed with STS) and ``sessionName``, optional ``profile`` (a shared
    config profile; default: botocore's credential chain)."""

    cluster_name: str
    region: str
    role_arn: str | None = None
    session_name: str = "gitops-agent"
    profile: str | None = None


class ClusterConnection(_Model):
    """How to reach one API server, one of: ``kubeconfig``, a path (``~`` expanded, relative to the config file;
    default ``$KUBECONFIG``, else ``~/.kube/config``) with ``context`` (default: its current context);
    ``kubeconfigData``, a kubeconfig inline; ``server`` with ``token`` (env or file) and ``certificateAuthority``
    (file) or ``certificateAuthorityData`` (base64 PEM), or ``insecureSkipTLSVerify: true`` when explicitly
    wanted, or with ``aws`` (an IAM identity, EKS tokens) instead of ``token``; ``inCluster: true``, the pod's
    service account. ``name``: a DNS label."""

    name: str
    kubeconfig: str | None = None
    kubeconfig_data: str | None = None
    context: str | None = None
    server: str | None = None
    token: SecretRef | None = None
    certificate_authority: str | None = None
    certificate_authority_data: str | None = None
    insecure_skip_tls_verify: bool = pydantic.Field(default=False, alias="insecureSkipTLSVerify")
    aws: AwsConfig | None = None
    in_cluster: bool = False

    @pydantic.model_validator(mode="after")
    def _one_way_in(self) -> ClusterConnection:
        ways = [self.kubeconfig is not None, self.kubeconfig_data is not None, self.server is not None, self.in_cluster]
        if sum(ways) > 1:
            raise ValueError("give one of kubeconfig, kubeconfigData, server (with token) or inCluster")
        if self.server is not None and self.token is None and self.aws is None:
            raise ValueError("server needs a token (env or file) or aws")
        if self.aws is not None and self.server is None:
            raise ValueError("aws needs server (the EKS endpoint) and certificateAuthorityData")
        if self.server is not None and not self.server.startswith("https://"):
            raise ValueError(f"server {self.server!r} must be an https:// URL")
        return self

    @pydantic.field_validator("name")
    @classmethod
    def _name_label(cls, v: str) -> str:
        return _dns_label(v)


def _relative(v: str, what: str) -> str:
    """``v`` when it is a path relative to a source's root without ``..``. Raises ValueError naming ``what``."""
    if v.startswith("/") or ".." in pathlib.PurePosixPath(v).parts:
        raise ValueError(f"{what} {v!r} must be relative to the source's root and must not contain '..'")
    return v


def _dns_label(v: str) -> str:
    if not _DNS_LABEL.match(v) or len(v) > 63:
        raise ValueError(f"{v!r} is not a DNS label (lowercase letters, digits and '-', at most 63)")
    return v


class ClusterDecryption(_Model):
    """``sops: true`` decrypts SOPS-encrypted files of this cluster's paths with the agent's
    ``decryption.sops.ageKeys`` (off by default: an encrypted file is then refused)."""

    sops: bool = False


class ClusterConfig(ClusterConnection):
    """One target cluster: how to reach it (see :class:`ClusterConnection`; ``name`` unique), ``namespace``
    for namespaced objects that name none (default ``default``); ``labels``: what apps' placement selectors
    match (``env: prod``); ``paths``: directories or files in the source named ``default``, relative to its root
    (no ``..``), each one app on this cluster only (sugar for ``apps``); ``ignoreDifferences``: ignore rules for
    this cluster only;
    ``substitute``: replace ``${NAME}`` in its manifests with the config's ``variables`` (default false);
    ``decryption``: see :class:`ClusterDecryption`; ``qps`` and ``burst``: this cluster's client-side rate limit
    (default ``sync.qps`` and ``sync.burst``; ``qps: 0``: none).
    """

    namespace: str = "default"
    labels: dict[str, str] = pydantic.Field(default_factory=dict)
    paths: tuple[str, ...] = ()
    ignore_differences: tuple[IgnoreDifference, ...] = ()
    substitute: bool = False
    decryption: ClusterDecryption = ClusterDecryption()
    qps: float | None = pydantic.Field(default=None, ge=0)
    burst: int | None = pydantic.Field(default=None, ge=1)

    @pydantic.field_validator("namespace")
    @classmethod
    def _namespace_label(cls, v: str) -> str:
        return _dns_label(v)

    @pydantic.field_validator("paths")
    @classmethod
    def _relative_paths(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for p in v:
            _relative(p, "path")
        return v


class HomeCluster(ClusterConnection):
    """The cluster holding the sharding Leases (see :class:`ClusterConnection`); ``name`` defaults to
    ``home``."""

    name: str = "home"


class Backoff(_Model):
    """How long a retry waits (Argo CD's ``syncPolicy.retry.backoff``): ``duration`` before the first (default 5s),
    multiplied by ``factor`` (default 2) for each next one, at most ``maxDuration`` (default 3m)."""

    duration: Duration = 5.0
    factor: float = pydantic.Field(default=2.0, ge=1)
    max_duration: Duration = 180.0


class Retry(_Model):
    """Retries of an app whose sync failed (Argo CD's ``syncPolicy.retry``): up to ``limit`` more syncs (default
    0: none, as Argo CD without ``retry``), waiting ``backoff`` (:class:`Backoff`) before each; only the failed app's
    cluster syncs again (its other apps resync as they are), and a new revision of the app starts the count anew."""

    limit: int = pydantic.Field(default=0, ge=0, le=100)
    backoff: Backoff = Backoff()

    def delay(self, attempt: int) -> float:
        """Seconds before retry number ``attempt`` (1 for the first)."""
        b = self.backoff
        return float(min(b.duration * b.factor ** (attempt - 1), b.max_duration))


class Notification(_Model):
    """Where events go (see :mod:`agent.runtime.notify`): ``name`` (unique), ``type`` (one of
    :data:`agent.notifier_kinds.KINDS`) and what it needs:

    - ``slack``: ``url``, the incoming-webhook URL (a secret: env or file); Slack's Block Kit JSON;
    - ``msteams``: ``url``, a Teams workflow webhook URL (a secret: env or file); an Adaptive Card message, as
      Flux's ``msteams`` provider posts;
    - ``webhook``: ``url`` (a plain URL or a secret), optional ``secret`` (HMAC-SHA256 of the body in
      ``X-Signature-256: sha256=<hex>``); CloudEvents 1.0 structured JSON;
    - ``github`` / ``gitlab``: commit status on the synced revision, ``token`` (env or file), ``apiURL``
      (default ``https://api.github.com`` / ``https://gitlab.com``), ``repository`` (``owner/repo``, or the GitLab
      project path; default: from the source URL); ``commitStatus``: ``perCluster`` (default: one context per
      cluster, ``gitops-agent/<cluster>``) or ``aggregated`` (one context, ``gitops-agent``: success once every
      cluster is Synced and Healthy at the revision, failure as soon as one fails).

    ``events``: the reasons wanted (default: every one; commit status providers use the syncs and health only);
    ``clusters``: only these (default: all); ``timeout``: seconds one delivery may take (default 10);
    ``targetURL``: a link put in commit statuses and messages (e.g. the dashboard)."""

    name: str
    type: Annotated[str, pydantic.Field(json_schema_extra={"enum": list(notifier_kinds.KINDS)})]
    url: SecretRef | str | None = None
    secret: SecretRef | None = None
    token: SecretRef | None = None
    api_url: str | None = pydantic.Field(default=None, alias="apiURL")
    repository: str | None = None
    events: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    timeout: Duration = 10.0
    target_url: str | None = pydantic.Field(default=None, alias="targetURL")
    commit_status: Literal["perCluster", "aggregated"] = "perCluster"

    @pydantic.field_validator("type")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in notifier_kinds.KINDS:
            raise ValueError(f"unknown notification type {v!r} (known: {', '.join(notifier_kinds.KINDS)})")
        return v

    @pydantic.model_validator(mode="after")
    def _needs(self) -> Notification:
        kind = notifier_kinds.KINDS[self.type]
        if "url" in kind.needs and self.url is None:
            raise ValueError(f"a {self.type} notification needs url")
        if kind.secret_url and isinstance(self.url, str):
            raise ValueError(f"a {kind.title} webhook URL is a secret: give url as {{env: ...}} or {{file: ...}}")
        if "token" in kind.needs and self.token is None:
            raise ValueError(f"a {self.type} notification needs token (env or file)")
        return self


_LABEL_NAME = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")


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

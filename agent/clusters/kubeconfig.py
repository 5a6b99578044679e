"""A registered cluster's config -> an API client (:class:`agent.clusters.connection.KubeCluster`): a kubeconfig
file and context, an inline kubeconfig, a server with a bearer token or an AWS IAM identity (EKS), or the pod's
service account. The official client supplies kubeconfig parsing (contexts, client certificates, tokens, exec
plugins), authentication headers and its pooled urllib3 transport. Used by ``agent.runtime`` and
``agent.clusters.checks``.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import os
import pathlib
import shutil
import tempfile
import threading

import kubernetes.client
import kubernetes.config
import yaml
from kubernetes.config import incluster_config

from agent import config, kubeyaml
from agent.clusters import aws, connection, tls
from reconcilers import errors

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
"""Where a pod's service-account token and CA are mounted (``inCluster: true``), with
``$KUBERNETES_SERVICE_HOST`` and ``$KUBERNETES_SERVICE_PORT`` (Kubernetes docs, "Accessing the API from a Pod")."""
WATCH_CONNECTIONS = 64
"""Connections kept for the live cache's watches (one per watched kind), beside the request pool."""


def connect(
    cluster: config.ClusterConnection,
    pool_size: int = 8,
    request_timeout: float = 60.0,
    user_agent: str = connection.USER_AGENT,
) -> connection.KubeCluster:
    """An API client for ``cluster`` (no request is sent yet), from whichever way in its config gives: a kubeconfig
    file and context, an inline kubeconfig, a server with a bearer token, or the pod's service account.
    ``user_agent`` is sent with every request (audit logs show it).

    Raises :class:`errors.ConfigError` naming the cluster and what is wrong (missing file, unknown context,
    unreadable token, CA or kubeconfig).
    """
    cfg = kubernetes.client.Configuration()
    where = f"cluster {cluster.name}"
    eks: aws.EksToken | None = None
    try:
        if cluster.in_cluster:
            loader = incluster_config.InClusterConfigLoader(  # type: ignore[no-untyped-call]
                token_filename=os.path.join(SERVICE_ACCOUNT_DIR, "token"),
                cert_filename=os.path.join(SERVICE_ACCOUNT_DIR, "ca.crt"),
            )
            loader.load_and_set(cfg)  # type: ignore[no-untyped-call]
        elif cluster.server is not None:
            eks = _direct(cfg, cluster, where)
        elif cluster.kubeconfig_data is not None:
            data = kubeyaml.load(cluster.kubeconfig_data)  # client-go reads kubeconfigs with sigs.k8s.io/yaml
            kubernetes.config.load_kube_config_from_dict(  # type: ignore[no-untyped-call]
                data, context=cluster.context, client_configuration=cfg, persist_config=False
            )
        else:
            path = cluster.kubeconfig or os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0]
            path = os.path.expanduser(path)
            where = f"cluster {cluster.name}: kubeconfig {path}"
            if not os.path.isfile(path):
                raise errors.ConfigError(f"{where}: file not found")
            kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, context=cluster.context, client_configuration=cfg, persist_config=False
            )
    except kubernetes.config.ConfigException as e:
        raise errors.ConfigError(f"{where}: {e}") from None
    except (OSError, ValueError, yaml.YAMLError, AttributeError, TypeError) as e:
        raise errors.ConfigError(f"{where}: unreadable: {e}") from None
    cfg.connection_pool_maxsize = pool_size * 2 + WATCH_CONNECTIONS
    cfg.retries = 1
    api = kubernetes.client.ApiClient(cfg)
    api.user_agent = user_agent
    try:
        tls.share_context(api.rest_client.pool_manager)  # one TLS context for all the cluster's connections
    except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
        raise errors.ConfigError(f"{where}: unreadable CA or client certificate: {e}") from None
    return connection.KubeCluster(cluster.name, api, (min(5.0, request_timeout), request_timeout), eks)


def _direct(cfg: kubernetes.client.Configuration, cluster: config.ClusterConnection, where: str) -> aws.EksToken | None:
    """``server`` + ``token`` or ``aws`` (+ CA): no kubeconfig at all. Returns the EKS token source, if any."""
    assert cluster.server is not None
    cfg.host = cluster.server
    cfg.api_key_prefix = {"BearerToken": "Bearer"}
    eks = None
    if cluster.aws is not None:
        eks = aws.EksToken(cluster.aws)
        source = eks
        # called by the client before every request: the cached token, renewed before it expires
        cfg.refresh_api_key_hook = lambda c: c.api_key.update({"BearerToken": source.get()})  # type: ignore[assignment]
        cfg.api_key = {"BearerToken": ""}  # the client calls the hook only when this key is present
    else:
        assert cluster.token is not None
        cfg.api_key = {"BearerToken": cluster.token.value(f"{where}: token").decode().strip()}
    if cluster.insecure_skip_tls_verify:
        cfg.verify_ssl = False  # explicitly asked for in the config
    elif cluster.certificate_authority:
        cfg.ssl_ca_cert = os.path.expanduser(cluster.certificate_authority)
    elif cluster.certificate_authority_data:
        cfg.ssl_ca_cert = str(_ca_file(base64.b64decode(cluster.certificate_authority_data)))
    return eks


_CA_DIR: pathlib.Path | None = None
_CA_LOCK = threading.Lock()


def _ca_file(pem: bytes) -> pathlib.Path:
    """A file holding ``pem`` for the client, which reads CAs from files: one per distinct CA, in a private
    directory (0700, random name, made once per process and removed at exit), written atomically, so no other
    local user can plant or swap a CA for the agent to trust."""
    global _CA_DIR
    with _CA_LOCK:
        if _CA_DIR is None:
            _CA_DIR = pathlib.Path(tempfile.mkdtemp(prefix="gitops-agent-ca-"))  # mode 0700 (mkdtemp)
            atexit.register(shutil.rmtree, _CA_DIR, True)
        path = _CA_DIR / f"{hashlib.sha256(pem).hexdigest()[:16]}.crt"
        if not path.exists():
            fd, tmp = tempfile.mkstemp(dir=_CA_DIR)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
            os.replace(tmp, path)
        return path


IN_CLUSTER_SERVER = "https://kubernetes.default.svc"
"""The API server's address as seen from a pod (Argo CD's ``in-cluster`` destination)."""


def server_of(cluster: config.ClusterConnection) -> str:
    """The API server URL of ``cluster`` as its config gives it (``server``, the in-cluster address, or the
    server of its kubeconfig's context, ``context`` or the current one), without connecting; "" when the
    kubeconfig cannot be read or names none (the sync then says why)."""
    if cluster.server is not None:
        return cluster.server
    if cluster.in_cluster:
        return IN_CLUSTER_SERVER
    try:
        if cluster.kubeconfig_data is not None:
            data = kubeyaml.load(cluster.kubeconfig_data)
        else:
            path = cluster.kubeconfig or os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0]
            data = kubeyaml.load(pathlib.Path(os.path.expanduser(path)).read_text())
        name = cluster.context or data.get("current-context")
        context = next(c["context"] for c in data.get("contexts") or [] if c.get("name") == name)
        entry = next(c["cluster"] for c in data.get("clusters") or [] if c.get("name") == context.get("cluster"))
        return str(entry.get("server") or "")
    except (OSError, ValueError, yaml.YAMLError, StopIteration, KeyError, TypeError, AttributeError):
        return ""

""":class:`KubeCluster`, the ``reconcilers.client.KubeClient`` implementation over the official ``kubernetes``
client (built from a cluster's config by :mod:`agent.clusters.kubeconfig`).

The official client supplies authentication headers (``update_params_for_auth``) and its pooled urllib3 transport;
requests are sent on the client's connection pool with raw JSON, past its per-request layers (parameter
sanitizing, content-type matching, the pool manager's URL parsing), so no per-object model (de)serialization or
copying sits on the hot path (``bench/scale.py --validated-only``: CPU per request against a minimal client).
Discovery uses the aggregated discovery document (``apidiscovery.k8s.io/v2``, GA in Kubernetes 1.30, KEP-3352):
two requests list every served kind, with a fallback to per-group discovery for older servers. Used by
``agent.runtime`` and ``agent.clusters``.
"""

from __future__ import annotations

import collections
import copy
import functools
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import kubernetes.client
import kubernetes.config
import urllib3

from agent import __version__
from agent.clusters import aws, discovery, listing, ratelimit, responses
from reconcilers import cancel as cancel_
from reconcilers import client, errors, resources

log = logging.getLogger(__name__)

USER_AGENT = f"gitops-agent/{__version__}"
"""Sent with every request, so audit logs tell the agent's writes apart."""
REQUEST_TIMEOUT = (5.0, 60.0)
"""(connect, read) seconds for one request."""
THROTTLE_RETRIES = 10
"""How many times one request is sent again when the API server asks to wait (client-go's ``maxRetries``)."""
RESET_RETRIES = 2
"""How many times an idempotent request is sent again after its connection was reset (see
``KubeCluster._send_resent_on_reset``)."""
_PLAIN_NAME = re.compile(r"[a-z0-9.-]+")
"""A name that needs no percent-encoding in a path: every DNS subdomain name (most kinds' rule); others are quoted."""
THROTTLE_WAIT_MAX = responses.THROTTLE_WAIT_MAX
"""The longest wait (seconds) for one ``Retry-After``; a request never waits past its read timeout in all."""


class KubeCluster:
    """One cluster's API server, with a discovery cache. Thread-safe."""

    def __init__(
        self,
        name: str,
        api: kubernetes.client.ApiClient,
        timeout: tuple[float, float] = REQUEST_TIMEOUT,
        eks: aws.EksToken | None = None,
    ) -> None:
        self.name = name
        self.api = api
        self.timeout = timeout
        self.eks = eks
        self.discovery = discovery.Discovery(self.request)
        """The discovery cache (its requests are this connection's; impersonating copies share it)."""
        self.retries: collections.Counter[int] = collections.Counter()
        """Requests sent again after the server asked to wait, by the status that asked (429, 503...)."""
        self._retries_lock = threading.Lock()
        self.on_retry: Callable[[int], None] | None = None
        """Told the status of each request sent again after a ``Retry-After`` (metrics), from the request's thread."""
        self.token: cancel_.Token | None = None
        """The cancellation of the sync in flight (set by its runner for the sync's length): a wait for a
        ``Retry-After`` ends when it is cancelled, and nothing is sent again."""
        self.fence: Callable[[], str | None] | None = None
        """Asked right before every write request is sent (a sharded cluster's Lease fence); a reason it gives
        stops the request with :class:`errors.CancelledError`. Checked here, as late as possible, so a replica
        frozen between a sync's own check and the request still does not write once its Lease moved."""
        self.requests: collections.Counter[str] = collections.Counter()
        """Requests sent, by verb: get, list, watch, apply, apply-dry-run, delete, discovery."""
        self.resent = 0
        """Idempotent requests sent again after their connection was reset."""
        self.limiter: ratelimit.TokenBucket | None = None
        """The cluster's client-side rate limit (``qps``/``burst``), shared by every request, its impersonating
        copies' too; None: no limit."""
        self.throttled = 0
        """Requests waiting out a ``Retry-After`` now (the status says so while it is not 0)."""
        self.impersonate: str | None = None
        """The user every request impersonates (``Impersonate-User``), None for the connection's own identity."""
        self._connections: urllib3.HTTPConnectionPool | None = None
        self._prefix = _url_prefix(api)
        """What goes before a request's path: the server URL's own path (a proxy such as Rancher's serves clusters
        under ``/k8s/clusters/<id>``), or the whole server URL for an HTTP proxy without a tunnel."""

    def impersonating(self, user: str) -> KubeCluster:
        """This connection acting as ``user`` (e.g. ``system:serviceaccount:team-a:deployer``): every request
        carries ``Impersonate-User`` (Kubernetes docs, "User impersonation"), so the API server authorizes it as
        that user and its RBAC decides. Shares the transport, the discovery cache, the fence and the request
        counts; the agent's own identity needs the ``impersonate`` verb on that service account."""
        other = copy.copy(self)
        other.impersonate = user
        return other

    @property
    def server(self) -> str:
        """The API server URL."""
        return str(self.api.configuration.host)

    def close(self) -> None:
        """Release the connection pool."""
        self._connections = None
        self.api.close()  # type: ignore[no-untyped-call]

    def _pool(self) -> urllib3.HTTPConnectionPool:
        """The official client's pooled connections to the API server (its TLS settings, client certificate and
        proxy), taken from its pool manager once: each request then skips the manager's per-request URL parsing
        and pool lookup."""
        pool = self._connections
        if pool is None:
            pool = self._connections = self.api.rest_client.pool_manager.connection_from_url(self.server)
        return pool

    # -- discovery (agent.clusters.discovery) -----------------------------------------------------------------
    def resource_type(self, group: str, kind: str) -> client.ResourceType | None:
        """See :meth:`reconcilers.client.KubeClient.resource_type`."""
        return self.discovery.resource_type(group, kind)

    @property
    def discovery_generation(self) -> int:
        """Counts the discovery refreshes that took effect (:attr:`agent.clusters.discovery.Discovery.generation`)."""
        return self.discovery.generation

    def refresh_discovery(self) -> None:
        """See :meth:`reconcilers.client.KubeClient.refresh_discovery`."""
        self.discovery.refresh()

    def ping(self) -> None:
        """One small request (``GET /version``, readable by any identity under the default RBAC) proving the API
        server answers now: a sync that reads everything else from its watches still fails when the server is
        frozen or gone (a watch on a frozen server just stays silent). A 403 is an answer (a cluster that locked
        ``/version`` away). Raises ClusterUnreachableError when no answer came, ApiError for any other error
        status (401: the credentials no longer work)."""
        try:
            self.request("GET", "/version")
        except errors.ApiError as e:
            if e.status != 403:
                raise

    def facts(self) -> tuple[str, tuple[str, ...]]:
        """What a chart's ``.Capabilities`` sees of this cluster (:meth:`agent.clusters.discovery.Discovery.facts`)."""
        return self.discovery.facts()

    # -- objects -------------------------------------------------------------------------------------------
    def path_of(self, group: str, version: str, kind: str, namespace: str, name: str = "") -> str:
        """The REST path of an object (or of its collection when ``name`` is ""). Raises ApiError 404 when
        the kind or version is not served."""
        rtype = self.resource_type(group, kind)
        api_version = f"{group}/{version}" if group else version
        if rtype is None or version not in rtype.versions:
            raise errors.ApiError(404, "NotFound", f"the server does not serve kind {kind} in {api_version}")
        base = f"/apis/{group}/{version}" if group else f"/api/{version}"
        ns = f"/namespaces/{namespace}" if rtype.namespaced and namespace else ""
        tail = f"/{name if _PLAIN_NAME.fullmatch(name) else urllib.parse.quote(name, safe='')}" if name else ""
        return f"{base}{ns}/{rtype.plural}{tail}"

    def _path_of_body(self, body: resources.Body, *, collection: bool = False) -> str:
        """:meth:`path_of` the object ``body`` names (its collection's with ``collection``), read as
        :meth:`resources.ResourceKey.of` reads it, without making the key: every write pays this."""
        group, _, version = str(body.get("apiVersion", "")).rpartition("/")
        meta = body.get("metadata") or {}
        name = "" if collection else str(meta.get("name") or meta.get("generateName") or "")
        return self.path_of(group, version, str(body.get("kind", "")), str(meta.get("namespace") or ""), name)

    def get(self, key: resources.ResourceKey) -> resources.Body | None:
        """See :meth:`reconcilers.client.KubeClient.get`; reads the preferred version."""
        rtype = self.resource_type(key.group, key.kind)
        if rtype is None:
            return None
        try:
            found: resources.Body = self.request(
                "GET", self.path_of(key.group, rtype.versions[0], key.kind, key.namespace, key.name)
            )
            return found
        except errors.ApiError as e:
            if e.not_found:
                return None
            raise

    def apply(self, body: resources.Body, *, field_manager: str, force: bool, dry_run: bool) -> resources.Body:
        """See :meth:`reconcilers.client.KubeClient.apply`."""
        path = self._path_of_body(body)
        query = [("fieldManager", field_manager)] + [("force", "true")] * force + [("dryRun", "All")] * dry_run
        merged: resources.Body = self.request(
            "PATCH", path, query=query, body=body, content_type="application/apply-patch+yaml"
        )
        return merged

    def create(self, body: resources.Body, *, field_manager: str) -> resources.Body:
        """See :meth:`reconcilers.client.KubeClient.create`."""
        path = self._path_of_body(body, collection=True)
        created: resources.Body = self.request("POST", path, query=[("fieldManager", field_manager)], body=body)
        return created

    def replace(self, body: resources.Body, *, field_manager: str) -> resources.Body:
        """See :meth:`reconcilers.client.KubeClient.replace`."""
        path = self._path_of_body(body)
        replaced: resources.Body = self.request("PUT", path, query=[("fieldManager", field_manager)], body=body)
        return replaced

    def delete(self, key: resources.ResourceKey, *, uid: str | None, propagation: str) -> None:
        """See :meth:`reconcilers.client.KubeClient.delete`."""
        rtype = self.resource_type(key.group, key.kind)
        if rtype is None:
            return
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self.request(
                "DELETE", self.path_of(key.group, rtype.versions[0], key.kind, key.namespace, key.name), body=body
            )
        except errors.ApiError as e:
            if not e.not_found:
                raise

    # Lists and watches (:mod:`agent.clusters.listing`) are this connection's methods: ``list_objects``,
    # ``list_pages`` (paged, metadata-only if asked) and ``watch`` (streamed events) of
    # :class:`reconcilers.client.KubeClient`.
    list_objects = listing.list_objects
    list_pages = listing.list_pages
    watch = listing.watch

    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> Any:
        """Send one request and return the decoded JSON answer.

        A busy server's answer to wait is honoured as client-go honours it (``checkWait``): a 429, or any 5xx,
        that carries ``Retry-After: <seconds>`` is sent again after that many seconds (at most
        :data:`THROTTLE_WAIT_MAX`, plus up to 10% jitter so that waiting clients do not return at once), up to
        :data:`THROTTLE_RETRIES` times and never past the read timeout in all; each is counted in
        :attr:`retries`. Nothing was done by a request refused that way, so every method is sent again (the fence
        is asked again before a write), unless the sync in flight (:attr:`token`) is cancelled meanwhile: a
        cancelled sync sends nothing more, as :mod:`reconcilers.cancel` promises (client-go's wait likewise ends
        with the request's context).

        Raises :class:`errors.ApiError` for an error status (with the server's Status message; the last one when
        the waits ran out), :class:`errors.ClusterUnreachableError` when no HTTP answer came and
        :class:`errors.CancelledError` when the sync was cancelled while it waited.
        """
        deadline = time.monotonic() + self.timeout[1]
        for attempt in range(THROTTLE_RETRIES + 1):
            resp = self._send_resent_on_reset(method, path, query or [], body, content_type, accept)
            if resp.status == 401 and self.eks is not None:  # an expired or rejected EKS token: renew once, retry
                resp.read()
                resp.response.release_conn()
                self.eks.get(force=True)
                resp = self.send(method, path, query or [], body, content_type, accept, self.timeout)
            wait = responses.retry_after(resp) if attempt < THROTTLE_RETRIES else None
            if wait is None or time.monotonic() + wait > deadline:
                break
            resp.read()
            resp.response.release_conn()
            with self._retries_lock:
                self.retries[resp.status] += 1
                self.throttled += 1
            if self.on_retry is not None:
                self.on_retry(resp.status)
            token = self.token
            try:
                if token is None:
                    time.sleep(wait)
                elif token.wait(wait):
                    raise errors.CancelledError(f"{token.reason} (while waiting out the API server's Retry-After)")
            finally:
                with self._retries_lock:
                    self.throttled -= 1
        try:
            data: bytes = resp.read()
        except urllib3.exceptions.HTTPError as e:
            raise errors.ClusterUnreachableError(f"{self.server}: {responses.reason(e)}") from None
        finally:
            resp.response.release_conn()
        if (failed := responses.failure(resp, data)) is not None:
            raise failed
        return responses.decode(data) if data else {}

    def _send_resent_on_reset(
        self, method: str, path: str, query: list[tuple[str, str]], body: Any, content_type: str, accept: str
    ) -> Any:
        """:meth:`send`, sent again (up to :data:`RESET_RETRIES` times) when the connection was reset or closed
        under it, if the request is idempotent: a GET, a server-side apply (the same body applied twice is the
        object applied once) or a DELETE with a UID precondition. Anything else (a POST, a PUT) may have been done
        before the reset, so its :class:`errors.ClusterUnreachableError` stands. urllib3 already sends GET, PUT and
        DELETE again on such a failure; a server-side apply is a PATCH, which it does not."""
        idempotent = (
            method == "GET"
            or content_type == "application/apply-patch+yaml"
            or (method == "DELETE" and isinstance(body, dict) and "preconditions" in body)
        )
        for attempt in range(RESET_RETRIES + 1):
            try:
                return self.send(method, path, query, body, content_type, accept, self.timeout)
            except responses.ConnectionReset:
                if not idempotent or attempt == RESET_RETRIES:
                    raise
                self.resent += 1
                log.info("cluster %s: %s %s: the connection was reset; sent again", self.name, method, path)
        raise AssertionError("unreachable")  # the loop returns or raises

    def send(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        body: Any,
        content_type: str,
        accept: str,
        timeout: tuple[float, float],
    ) -> Any:
        """Send one request as it is (no retry: see :meth:`request`) after the rate limit's token and the fence;
        ``body`` is JSON-encoded unless it is text or bytes already; ``timeout``: (connect, read) seconds. Returns
        the client's ``RESTResponse`` with its body not read yet (a watch streams it). Raises
        :class:`errors.CancelledError` (fenced, or cancelled while waiting for a token),
        :class:`responses.ConnectionReset` and :class:`errors.ClusterUnreachableError`."""
        verb = responses.verb(method, path, query)
        headers = {**self.api.default_headers, "Accept": accept, "Content-Type": content_type}
        if self.impersonate:
            headers["Impersonate-User"] = self.impersonate
        payload = body if body is None or isinstance(body, (str, bytes)) else responses.encode(body)
        url = f"{self._prefix}{path}?{_query_string(tuple(query))}" if query else self._prefix + path
        try:
            # The official client's credentials: a bearer token (refreshed by its hook: exec plugins, OIDC) or none
            # (client certificates sit in the pool's TLS context).
            self.api.update_params_for_auth(headers, query, ["BearerToken"], path, method, None)
            if self.limiter is not None:  # client-go's rate limiter waits before the request is built; here after
                self.limiter.take(self.token if verb != "watch" else None)  # a watch serves no one sync
            # The fence is asked as late as the client lets it be: after the body, the URL and the credentials
            # (an exec plugin may take seconds) are ready, right before the request goes out.
            if self.fence is not None and verb in responses.WRITES and (fenced := self.fence()):
                raise errors.CancelledError(fenced)
            self.requests[verb] += 1
            answer = self._pool().urlopen(
                method,
                url,
                body=payload,
                headers=headers,
                timeout=_timeout(timeout),
                preload_content=False,
                assert_same_host=False,
                redirect=False,
            )
            return kubernetes.client.rest.RESTResponse(answer)
        except urllib3.exceptions.ProtocolError as e:  # reset, aborted or closed under the request
            raise responses.ConnectionReset(f"{self.server}: {responses.reason(e)}") from None
        except urllib3.exceptions.HTTPError as e:
            raise errors.ClusterUnreachableError(f"{self.server}: {responses.reason(e)}") from None


def _url_prefix(api: kubernetes.client.ApiClient) -> str:
    """What precedes a request's path on the wire, as urllib3's pool manager would send it: the whole server URL
    when an HTTP proxy without a CONNECT tunnel stands between (it is sent the absolute URL, RFC 9112's
    absolute-form), else the server URL's own path ("" for most servers)."""
    server = str(api.configuration.host)
    manager = api.rest_client.pool_manager
    proxy = getattr(manager, "proxy", None)  # urllib3's ProxyManager; None for a direct or SOCKS connection
    parts = urllib.parse.urlsplit(server)
    tunnel = urllib3.util.proxy.connection_requires_http_tunnel
    if proxy is not None and not tunnel(proxy, manager.proxy_config, parts.scheme):
        return server.rstrip("/")
    return parts.path.rstrip("/")


@functools.lru_cache(maxsize=1024)
def _query_string(query: tuple[tuple[str, str], ...]) -> str:
    """``query`` percent-encoded (RFC 3986), kept: the same few parameters (``fieldManager``, ``force``,
    ``dryRun``) go with every write, and encoding them again costs more than the rest of the request's set-up."""
    return urllib.parse.urlencode(query, quote_via=urllib.parse.quote)


@functools.lru_cache(maxsize=64)
def _timeout(timeout: tuple[float, float]) -> urllib3.Timeout:
    """The urllib3 timeout of ``(connect, read)`` seconds, made once (the pool clones it for each request)."""
    return urllib3.Timeout(connect=timeout[0], read=timeout[1])

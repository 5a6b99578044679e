"""Lists and watches of one kind on a :class:`agent.clusters.connection.KubeCluster`: paged lists (``limit`` and
``continue``), metadata-only forms (``PartialObjectMetadataList``) and streamed watch events. The connection's
``list_objects``, ``list_pages`` and ``watch`` (its :class:`reconcilers.client.KubeClient` side) are these."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

import urllib3

from agent.clusters import responses
from reconcilers import client, errors, resources


class Connection(Protocol):
    """What a list or a watch needs of :class:`agent.clusters.connection.KubeCluster`."""

    @property
    def server(self) -> str: ...
    def resource_type(self, group: str, kind: str) -> client.ResourceType | None: ...
    def path_of(self, group: str, version: str, kind: str, namespace: str, name: str = "") -> str: ...
    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> Any: ...
    def send(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        body: Any,
        content_type: str,
        accept: str,
        timeout: tuple[float, float],
    ) -> Any: ...


_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"


def list_objects(
    kube: Connection, group: str, kind: str, selector: str, *, metadata_only: bool = False, namespace: str = ""
) -> tuple[list[resources.Body], str]:
    """Every object of ``(group, kind)`` matching the label ``selector`` in ``namespace`` ("": all namespaces),
    and the list's resourceVersion (to start a watch from): :func:`list_pages` gathered into one list. Raises
    like it."""
    items: list[resources.Body] = []
    rv = ""
    for page, page_rv in list_pages(kube, group, kind, selector, metadata_only=metadata_only, namespace=namespace):
        items.extend(page)
        rv = page_rv
    return items, rv


def list_pages(
    kube: Connection,
    group: str,
    kind: str,
    selector: str,
    *,
    metadata_only: bool = False,
    limit: int = 500,
    namespace: str = "",
) -> Iterator[tuple[list[resources.Body], str]]:
    """The objects of ``(group, kind)`` in ``namespace`` ("": all namespaces) matching the label ``selector``, one
    page of up to ``limit`` objects at a time (``limit``/``continue``, Kubernetes docs "API Concepts", retrieving
    large results sets in chunks), each with the list's resourceVersion (to start a watch from; ``""`` until the
    last page). A caller that reduces each page before asking for the next holds one page at a time, not the
    whole list. With ``metadata_only`` the server sends only each object's metadata
    (``PartialObjectMetadataList``, same docs, receiving resources as tables or metadata); items are labelled
    with their own apiVersion and kind either way. Raises ApiError 404 when the kind is not served, else like
    :meth:`KubeCluster.request` (a continue token that expired mid-list is ``410 Gone``: list again)."""
    rtype = kube.resource_type(group, kind)
    if rtype is None:
        raise errors.ApiError(404, "NotFound", f"the server does not serve kind {kind} in group {group!r}")
    path = kube.path_of(group, rtype.versions[0], kind, namespace)
    api_version = f"{group}/{rtype.versions[0]}" if group else rtype.versions[0]
    accept = _METADATA_LIST if metadata_only else "application/json"
    token = ""
    while True:
        query = [("labelSelector", selector), ("limit", str(limit))] + ([("continue", token)] if token else [])
        page = kube.request("GET", path, query=query, accept=accept)
        items: list[resources.Body] = page.get("items") or []
        for item in items:
            item["apiVersion"], item["kind"] = api_version, kind
        meta = page.get("metadata") or {}
        token = meta.get("continue") or ""
        del page
        yield items, "" if token else str(meta.get("resourceVersion", ""))
        if not token:
            return


def watch(
    kube: Connection,
    group: str,
    kind: str,
    selector: str,
    resource_version: str,
    timeout: int,
    *,
    metadata_only: bool = False,
    on_open: Callable[[Callable[[], None]], None] | None = None,
    namespace: str = "",
) -> Iterator[Any]:
    """Watch events (``{"type": ..., "object": ...}``) of ``(group, kind)`` in ``namespace`` ("": all namespaces)
    matching ``selector`` from ``resource_version``, with bookmarks, for up to ``timeout`` seconds; with
    ``metadata_only`` each object is its metadata alone (see :func:`list_objects`). ``on_open`` receives, once
    the watch is open, a function that ends it from another thread (the blocked read returns: a stop never waits
    for the next event). Raises like :meth:`KubeCluster.request`."""
    rtype = kube.resource_type(group, kind)
    if rtype is None:
        raise errors.ApiError(404, "NotFound", f"the server does not serve kind {kind} in group {group!r}")
    query = [
        ("watch", "true"),
        ("labelSelector", selector),
        ("resourceVersion", resource_version),
        ("allowWatchBookmarks", "true"),
        ("timeoutSeconds", str(timeout)),
    ]
    path = kube.path_of(group, rtype.versions[0], kind, namespace)
    accept = _METADATA if metadata_only else "application/json"
    resp = kube.send("GET", path, query, None, "application/json", accept, (5.0, timeout + 30.0))
    if on_open is not None:
        on_open(resp.response.shutdown)
    try:
        if resp.status >= 300 and (failed := responses.failure(resp, resp.read())) is not None:
            raise failed
        for line in resp.response:
            if line.strip():
                yield responses.decode(line)
    except urllib3.exceptions.HTTPError as e:
        raise errors.ClusterUnreachableError(f"{kube.server}: watch {kind}: {responses.reason(e)}") from None
    finally:
        resp.response.release_conn()

"""How the agent reads the API server's answers: error statuses as :class:`errors.ApiError`
(:func:`api_error`), a busy server's ``Retry-After`` (:func:`retry_after`, as client-go's ``checkWait`` reads it),
what kind of request each is (:func:`verb`), why no answer came (:func:`reason`), and the JSON of bodies on the
wire (:func:`encode`, :func:`decode`). Used by :mod:`agent.clusters.connection` and :mod:`agent.clusters.listing`.
"""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import urllib3

from reconcilers import errors

THROTTLE_WAIT_MAX = 10.0
"""The longest wait (seconds) for one ``Retry-After``; a request never waits past its read timeout in all."""


class ConnectionReset(errors.ClusterUnreachableError):
    """The connection was reset, aborted or closed while a request was on it (urllib3's ``ProtocolError``)."""


def encode(body: Any) -> bytes:
    """A request body's JSON (UTF-8, compact) by orjson (with :func:`decode`, 0.19x the standard library's CPU per
    write: ``bench/overhead.py``). What orjson refuses and ``json`` writes (a mapping with keys that are not strings,
    an integer past 64 bits from a renderer's output) is written by ``json`` as before, so no body the agent sent
    before is refused now. NaN and infinities, which orjson would write as ``null``, never reach here: manifests
    are read by :mod:`agent.kubeyaml`, which refuses them as kubectl does, and jsonnet's output cannot hold them.
    Raises TypeError or ValueError for what neither can write."""
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError:
        return json.dumps(body, separators=(",", ":")).encode()


def decode(data: bytes) -> Any:
    """An answer's JSON (UTF-8, RFC 8259) by orjson (every request reads one; see :func:`encode` for the cost).
    The API server sends integers within 64 bits (Go's ``int64``), which orjson reads exactly. Raises ValueError
    (``json.JSONDecodeError``) for what is not JSON."""
    return orjson.loads(data)


WRITES = frozenset({"apply", "post", "put", "delete"})


def verb(method: str, path: str, query: list[tuple[str, str]]) -> str:
    """What a request is, as the agent counts requests: discovery, get, list, watch, apply, apply-dry-run, post,
    put, delete."""
    names = dict(query)
    if method == "GET":
        if path in ("/api", "/apis") or (path.count("/") <= 3 and not names):
            return "discovery"
        return "watch" if names.get("watch") else "list" if "labelSelector" in names else "get"
    if method == "PATCH":
        return "apply-dry-run" if names.get("dryRun") else "apply"
    return method.lower()


def api_error(status: int, data: bytes) -> errors.ApiError:
    """The :class:`errors.ApiError` of an error answer: the Status's reason and message (the body itself when it is
    not a Status), the field paths a 422 names as immutable (``details.causes``), and for a 401 what it means."""
    fields: tuple[str, ...] = ()
    try:
        doc = json.loads(data)
        reason, message = str(doc.get("reason", "")), str(doc.get("message", ""))
        causes = (doc.get("details") or {}).get("causes") or []
        fields = tuple(
            str(c.get("field"))
            for c in causes
            if isinstance(c, dict) and c.get("field") and "field is immutable" in str(c.get("message", ""))
        )
    except (ValueError, AttributeError):
        reason, message = "", data.decode("utf-8", "replace")[:500]
    if status == 401:
        message = f"the API server rejected the credentials (expired, revoked, or for another cluster): {message}"
    return errors.ApiError(status, reason, message, fields)


def failure(resp: Any, data: bytes) -> errors.ApiError | None:
    """The error an answer stands for, None for a success (2xx). A redirect is not followed (the credentials would
    go along, and the agent's connection is to one server): it is an error naming where it points, so the cluster's
    ``server`` can be set to that URL. Other answers: :func:`api_error`."""
    if resp.status < 300:
        return None
    if resp.status < 400:
        where = resp.getheader("Location") or "nowhere"
        message = f"the API server redirects to {where}: set the cluster's server to the URL it should be reached at"
        return errors.ApiError(resp.status, "Redirect", message)
    return api_error(resp.status, data)


def retry_after(resp: Any) -> float | None:
    """Seconds to wait before sending again, when the answer asks for it (a 429 or 5xx with ``Retry-After`` in
    whole seconds, as the API server sends it and client-go reads it); None when it does not."""
    if resp.status != 429 and resp.status < 500:
        return None
    value = resp.getheader("Retry-After")
    try:
        seconds = int(value) if value is not None else -1
    except ValueError:
        return None
    if seconds < 0:
        return None
    wait = min(float(seconds), THROTTLE_WAIT_MAX)
    return wait + random.uniform(0.0, 0.1 * wait + 0.05)  # noqa: S311 (jitter, not a secret)


def reason(e: urllib3.exceptions.HTTPError) -> str:
    """Why no answer came, in words (a TLS verification failure says so)."""
    text = str(getattr(e, "reason", None) or e)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return f"TLS verification failed (wrong or missing CA?): {text}"
    return text

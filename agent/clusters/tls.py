"""One TLS context per cluster connection, shared by all its pooled connections.

The official client hands urllib3 file paths (the cluster's CA, the client certificate and key) and no
``ssl.SSLContext``; urllib3 then builds a context for every new connection and loads the CA and the client
certificate into it again (``urllib3.connection._ssl_wrap_socket_and_match_hostname``): about a millisecond of CPU
per connection, and a sync opens dozens per cluster (``sync.concurrency`` plus one per watched kind). Built once
here from the same settings, with urllib3's own defaults (``create_urllib3_context``), the context is handed to the
pool manager as its documented ``ssl_context``; what is verified is unchanged (urllib3 still sets the verify mode
and checks the host name per connection, from ``cert_reqs``, ``assert_hostname`` and ``server_hostname``).
Used by :mod:`agent.clusters.connection`.
"""

from __future__ import annotations

import ssl
from typing import Any

import urllib3
from urllib3.util import ssl_

MOVED = ("ca_certs", "ca_cert_dir", "ca_cert_data", "cert_file", "key_file", "key_password")
"""The pool manager's per-connection TLS settings that the shared context takes over."""


def share_context(manager: urllib3.PoolManager) -> None:
    """Give ``manager``'s future HTTPS pools one :class:`ssl.SSLContext` holding the CA and client certificate its
    ``connection_pool_kw`` names, and drop those names from it, so no connection loads them again. Call before the
    first request (pools made earlier keep their settings). Nothing changes when the manager already has a
    context, or for plain HTTP (urllib3 drops TLS settings for ``http://`` pools).

    As urllib3 does for a context of its own: the CA files or data given are trusted, else the system's
    default CAs (``SSLContext.load_default_certs``). Raises :class:`ssl.SSLError` or :class:`OSError` for a CA or
    certificate that cannot be read (what the first connection would have raised)."""
    kw: dict[str, Any] = manager.connection_pool_kw
    if kw.get("ssl_context") is not None:
        return
    settings = {name: kw[name] for name in MOVED if kw.get(name)}
    context = ssl_.create_urllib3_context(cert_reqs=ssl_.resolve_cert_reqs(kw.get("cert_reqs")))
    if {"ca_certs", "ca_cert_dir", "ca_cert_data"} & settings.keys():
        context.load_verify_locations(
            settings.get("ca_certs"), settings.get("ca_cert_dir"), settings.get("ca_cert_data")
        )
    elif context.verify_mode != ssl.CERT_NONE:
        context.load_default_certs()
    if "cert_file" in settings:
        context.load_cert_chain(settings["cert_file"], settings.get("key_file"), settings.get("key_password"))
    for name in MOVED:
        kw.pop(name, None)
    kw["ssl_context"] = context

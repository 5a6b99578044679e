"""HTTPS for the agent's server: the certificate and key of ``server.tls``, loaded into the SSL context uvicorn
serves with, and loaded again into that same context whenever either file changes, so a rotated certificate
(cert-manager, a CSI secret driver) is served to new connections without a restart.

The files are polled (every :data:`POLL` seconds, by modification time, size and inode: a Kubernetes Secret volume
swaps a symlink, which changes all three); a new pair that does not load is logged and the last good one stays
served. Thread ``tls-reload`` (owner ``api``), stopped with the server. Used by :mod:`agent.api.server`.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading

from agent import config, threads
from reconcilers import errors

log = logging.getLogger(__name__)

POLL = 2.0
"""Seconds between two looks at the certificate and key files."""


def load(context: ssl.SSLContext, tls: config.ServerTls) -> None:
    """Load ``tls``'s certificate and key into ``context``. Raises ConfigError naming the files when they do not
    load (missing, unreadable, not PEM, a key that does not match the certificate)."""
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as e:
        raise errors.ConfigError(f"server.tls: {tls.cert_file} and {tls.key_file} do not load: {e}") from None


def _stamp(path: str) -> tuple[float, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime, st.st_size, st.st_ino)


class Reloader:
    """Reloads ``context`` from ``tls`` when the files change, until :meth:`stop`."""

    def __init__(self, context: ssl.SSLContext, tls: config.ServerTls) -> None:
        self.context, self.tls = context, tls
        self._stop = threading.Event()
        self._seen = (_stamp(tls.cert_file), _stamp(tls.key_file))
        self.reloads = 0
        """Reloads that took effect (for tests and the log)."""

    def start(self) -> None:
        """Start thread ``tls-reload``."""
        threads.start("tls-reload", "api", self._run)

    def stop(self) -> None:
        """End the thread (it exits within :data:`POLL` seconds)."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(POLL):
            now = (_stamp(self.tls.cert_file), _stamp(self.tls.key_file))
            if now == self._seen or None in now:
                continue
            try:
                load(self.context, self.tls)
            except errors.ConfigError as e:
                log.warning("%s; still serving the last certificate", e)
                continue  # tried again at the next change (a pair written one file at a time)
            finally:
                self._seen = now
            self.reloads += 1
            log.info("server.tls: certificate reloaded from %s", self.tls.cert_file)

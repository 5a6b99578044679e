"""The error tree of gitops-agent. Every error the agent reports is one of these::

    GitOpsError
    ├── ConfigError              the config file is invalid (names the file and the key)
    ├── SourceError              the desired state could not be produced
    │   ├── FetchError           git clone/fetch/ref resolution failed
    │   ├── ManifestError        a file or document is malformed (names file and document index)
    │   └── GenerateError        an app set could not generate its apps (names the app set, generator, parameters)
    ├── ClusterError             a cluster could not be reached or used
    │   ├── ClusterUnreachableError   connection refused, DNS, TLS, timeouts
    │   └── ApiError             the API server answered with an error status (carries code and message)
    └── CancelledError            the sync was cancelled (Lease lost, cluster removed, shutdown): nothing more written

Reconcile results carry these as text; ``agent.runtime.runner`` never lets one escape a reconcile.
"""

from __future__ import annotations


class GitOpsError(Exception):
    """Base of every error gitops-agent raises on purpose."""


class ConfigError(GitOpsError):
    """The agent's config is invalid. The message names the file and the offending key."""


class SourceError(GitOpsError):
    """The desired state could not be fetched or loaded; nothing may be written from it."""


class FetchError(SourceError):
    """Cloning or fetching the git source, or resolving its ref, failed."""


class ManifestError(SourceError):
    """A manifest file or document is malformed.

    Attributes: ``source_file`` (relative path), ``doc_index`` (0-based, or None for a whole-file error) and
    ``item`` (where a list's item stands in the document, ``items[3]``; empty otherwise). The message names them as
    ``file#doc.items[3]: ...``.
    """

    def __init__(self, source_file: str, doc_index: int | None, message: str, item: str = "") -> None:
        where = source_file if doc_index is None else f"{source_file}#{doc_index}"
        where += f".{item}" if item else ""
        super().__init__(f"{where}: {message}")
        self.source_file = source_file
        self.doc_index = doc_index
        self.item = item


class GenerateError(SourceError):
    """An app set could not generate its apps: a generator failed (its source not fetched, a file unreadable), a
    template did not render, or a generated app is invalid. The message names the app set, and the generator and
    parameter set where one is to blame; the app set's earlier apps are kept, never pruned for it."""


class ClusterError(GitOpsError):
    """A cluster could not be reached or used."""


class ClusterUnreachableError(ClusterError):
    """No HTTP answer from the API server (connection refused, DNS, TLS, timeout)."""


class ApiError(ClusterError):
    """The API server answered with an error status.

    Attributes: ``status`` (HTTP code), ``reason`` (the Status reason, e.g. ``Invalid``, ``NotFound``) and
    ``message`` (the API server's own message, verbatim).
    """

    def __init__(self, status: int, reason: str, message: str, fields: tuple[str, ...] = ()) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.fields = fields
        """The field paths the API server named as immutable (``details.causes`` of a 422 ``Invalid`` whose
        message is ``field is immutable``), in its order."""

    @property
    def immutable(self) -> bool:
        """True for a 422 ``Invalid`` refusing to change immutable fields (:attr:`fields` names them)."""
        return self.status == 422 and bool(self.fields)

    @property
    def not_found(self) -> bool:
        """True for 404 Not Found."""
        return self.status == 404


class CancelledError(GitOpsError):
    """The sync was cancelled before a write (see :mod:`reconcilers.cancel`); the message says why."""

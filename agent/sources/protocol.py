"""The source protocol: what every kind of source (git, a local directory, a chart repository or OCI registry)
offers the runtime. One module per kind implements it (:mod:`agent.sources.git`, :mod:`agent.sources.local`,
:mod:`agent.sources.charts`), each with a ``make(source, chart_refs)``; :data:`agent.source_kinds.KINDS` lists them
and :mod:`agent.sources.registry` opens them."""

from __future__ import annotations

import contextlib
import pathlib
import threading
from typing import Protocol

from agent import config
from reconcilers import resources


class Source(Protocol):
    """One configured source. ``source``: its config; ``last_good``: the last revision fetched (None before the
    first); ``last_error``: the last fetch's error (None after a success); ``watched``: a directory whose changes
    should trigger a fetch at once (a local source), else None."""

    source: config.SourceConfig
    last_good: resources.Revision | None
    last_error: str | None

    @property
    def watched(self) -> pathlib.Path | None:
        """The directory to watch for changes, or None (fetched on its interval only)."""
        ...

    def fetch(self, stop: threading.Event | None = None) -> resources.Revision:
        """Fetch and return the newest revision, within the source's ``timeout`` (or until ``stop``). Raises
        FetchError (``last_good`` is kept)."""
        ...

    def resolve(self, ref: str) -> resources.Revision:
        """``ref`` (a branch, tag, commit or version) of what was fetched, as a revision. Raises FetchError."""
        ...

    def tree(self, revision: resources.Revision) -> contextlib.AbstractContextManager[pathlib.Path]:
        """The files of ``revision``, held (never changed, never removed) until the block ends."""
        ...

"""Filtering and paging the list of apps (``GET /api/v1/apps?sync=&health=&cluster=&appSet=&label=&q=&limit=
&continue=``): :class:`AppQuery` over the entries :func:`agent.runtime.appstatus.apps_json` gives, paged as the
Kubernetes API pages lists (a ``continue`` token; 410 Gone when it names what is no longer listed). Pure functions;
used by :mod:`agent.api.server`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from agent import config


@dataclasses.dataclass(frozen=True)
class AppQuery:
    """A filter and a page of ``GET /api/v1/apps``: an app is kept when one of its cells has syncStatus ``sync``
    and one has health ``health`` (case-insensitive), it has a cell on ``cluster``, it was made by ``app_set``,
    its labels meet ``label`` (parsed requirements of a label selector: :func:`agent.config.parse_selector`), and
    its name contains ``q`` (case-insensitive); unset fields keep every app. ``limit`` apps from the one after
    ``after`` (a ``continue`` token: the last name of the page before), in the list's order."""

    sync: str | None = None
    health: str | None = None
    cluster: str | None = None
    app_set: str | None = None
    q: str | None = None
    limit: int | None = None
    after: str | None = None
    label: tuple[config.SelectorRequirement, ...] = ()

    def matches(self, app: dict[str, Any]) -> bool:
        """True when ``app`` (an entry of :func:`summarize`) passes the filter."""
        cells = app["clusters"]
        return (
            (self.sync is None or any(c["syncStatus"].lower() == self.sync.lower() for c in cells))
            and (self.health is None or any(c["health"].lower() == self.health.lower() for c in cells))
            and (self.cluster is None or any(c["cluster"] == self.cluster for c in cells))
            and (self.app_set is None or app.get("appSet") == self.app_set)
            and (self.q is None or self.q.lower() in app["name"].lower())
            and all(r.matches(app["labels"]) for r in self.label)
        )


class ExpiredContinueError(Exception):
    """A ``continue`` token names an app that is no longer listed (the Kubernetes API answers 410 Gone then)."""


def page(found: list[dict[str, Any]], query: AppQuery) -> tuple[list[dict[str, Any]], int, str | None]:
    """The apps of ``found`` that ``query`` keeps, one page of them: (the page, how many match in all, the
    ``continue`` token of the next page or None). Raises ExpiredContinueError."""
    kept = [a for a in found if query.matches(a)]
    start = 0
    if query.after is not None:
        names = [a["name"] for a in kept]
        if query.after not in names:
            gone = f"continue token {query.after!r}: no such app any more; list again from the start"
            raise ExpiredContinueError(gone)
        start = names.index(query.after) + 1
    end = len(kept) if query.limit is None else start + query.limit
    shown = kept[start:end]
    more = end < len(kept) and bool(shown)
    return shown, len(kept), shown[-1]["name"] if more else None

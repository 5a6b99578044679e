"""The aggregated commit status of a revision (``commitStatus: aggregated``): one context for every cluster,
pending once, success once every cluster is Synced and Healthy at the revision, failure as soon as one fails (and
nothing after it)."""

from __future__ import annotations

import dataclasses

AGGREGATED_REVISIONS = 50
"""Revisions whose aggregated commit status is followed."""


@dataclasses.dataclass
class _Revision:
    pending: bool = False
    failed: bool = False
    healthy: set[str] = dataclasses.field(default_factory=set)


class Aggregate:
    """What each followed revision has told so far (owned by one provider; called from the notifying thread)."""

    def __init__(self) -> None:
        self._revisions: dict[str, _Revision] = {}

    def after(
        self, cluster: str, sha: str, state: str, description: str, clusters: frozenset[str]
    ) -> tuple[str, str] | None:
        """The revision's one (state, description) after ``cluster`` reached ``state``, or None when it does not
        change. ``clusters``: every cluster the revision must reach."""
        seen = self._revisions.setdefault(sha, _Revision())
        while len(self._revisions) > AGGREGATED_REVISIONS:
            self._revisions.pop(next(iter(self._revisions)))
        if seen.failed:
            return None
        if state == "failure":
            seen.failed = True
            return "failure", f"{cluster}: {description}"
        if state == "pending":
            if seen.pending:
                return None
            seen.pending = True
            return "pending", f"syncing {sha[:12]} to {len(clusters)} cluster(s)"
        seen.healthy.add(cluster)
        if clusters <= seen.healthy:
            return "success", f"Synced and Healthy on all {len(clusters)} cluster(s)"
        return None

"""The pull request preview's comment and commit status, from the dry runs of a pull request's head commit.

:func:`render` turns the results of a server-side dry run of every app on every cluster at the head commit (the
engine of ``gitops-agent diff --revision``: nothing written) into one Markdown comment: a hidden marker that finds
the comment again on the next push (:func:`marker`), a table of app x cluster with the objects each would create,
configure (including recreate) and prune, those unchanged, and the error of each app that would fail, then each
changed object's diff in a collapsed ``<details>`` block. Secret values are masked by the engine's diff (as
``kubectl diff`` masks them) and every error message by the sync that made it. The comment is kept under
:data:`LIMIT` characters (GitHub's limit on a comment body): the diffs that do not fit are left out with a note
saying how to see them. The commit status is ``failure`` when any app (or a whole cluster) would fail, else
``success``. Used by :mod:`agent.runtime.previews`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from reconcilers import engine

LIMIT = 65536
"""Characters a comment may hold (GitHub's limit on an issue comment body; GitLab's is larger)."""
CONTEXT = "gitops-agent/preview"
"""The commit status context of a preview."""
_CHANGED = {
    engine.Action.CREATED: "created",
    engine.Action.CONFIGURED: "configured",
    engine.Action.RECREATED: "configured",
    engine.Action.PRUNED: "pruned",
}
_VERB = {
    engine.Action.CREATED: "create",
    engine.Action.CONFIGURED: "configure",
    engine.Action.RECREATED: "recreate (immutable fields changed)",
    engine.Action.PRUNED: "prune",
    engine.Action.REQUIRES_PRUNING: "requires pruning (sync.prune is off: kept)",
    engine.Action.ORPHANED: "orphan",
}


@dataclasses.dataclass(frozen=True)
class Preview:
    """A rendered preview: ``body`` (Markdown, at most :data:`LIMIT` characters), commit status ``state``
    (``success`` or ``failure``) and its ``description`` (at most 140 characters), ``changes`` (objects that would
    change, counted over every app and cluster) and ``failed`` (apps and clusters that would fail)."""

    body: str
    state: str
    description: str
    changes: int
    failed: int


def marker(app_set: str) -> str:
    """The hidden line that marks the comment of app set ``app_set``'s preview (an HTML comment: not shown)."""
    return f"<!-- gitops-agent-preview app-set={app_set} -->"


def render(
    app_set: str,
    number: int,
    sha: str,
    results: Sequence[engine.ReconcileResult],
    problems: Sequence[str] = (),
    limit: int = LIMIT,
) -> Preview:
    """The preview of pull request ``number`` of ``app_set`` at head commit ``sha`` from ``results`` (one dry run
    per cluster), and ``problems`` (what kept a cluster or the whole preview from running: each makes it fail)."""
    rows: list[str] = []
    details: list[tuple[str, list[str]]] = []
    failed, changes = len(problems), 0
    for r in sorted(results, key=lambda x: x.cluster):
        if r.error and not r.apps:
            failed += 1
            rows.append(_row("(all apps)", r.cluster, {}, 0, f"{_kind(r)}: {r.error}"))
            continue
        for a in sorted(r.apps or (r,), key=lambda x: x.app):
            counts = {"created": 0, "configured": 0, "pruned": 0}
            unchanged = 0
            shown = []
            for e in a.entries:
                if e.action in _CHANGED:
                    counts[_CHANGED[e.action]] += 1
                if e.action is engine.Action.UNCHANGED:
                    unchanged += 1
                if e.action in _VERB:
                    shown.append(e)
            error = ""
            if not a.ok:
                failed += 1
                error = a.error or "; ".join(f"{e.key}: {e.message}" for e in a.failed[:3]) or "failed"
                error = f"{_kind(a)}: {error}" if a.error else error
            changes += len(shown)
            rows.append(_row(a.app or "(cluster paths)", r.cluster, counts, unchanged, error))
            if shown:
                details.append(_details(a.app or "(cluster paths)", r.cluster, shown))
    state = "failure" if failed else "success"
    clusters = len({r.cluster for r in results})
    description = (
        f"{changes} object(s) would change on {clusters} cluster(s)"
        + (f"; {failed} app(s) or cluster(s) would fail" if failed else "")
    )[:140]
    head = [
        marker(app_set),
        f"### gitops-agent preview of #{number} at `{sha[:12]}`",
        "",
        f"What merging this pull request would change across the fleet (app set `{app_set}`): a server-side dry "
        "run of every app on every cluster that reads its repository, at the head commit. Nothing was written.",
        "",
        f"**{description}.**",
        "",
    ]
    head += [f"- :x: {_cell(p)}" for p in problems]
    if problems:
        head.append("")
    table = ["| App | Cluster | Created | Configured | Pruned | Unchanged | Error |", "|---|---|--:|--:|--:|--:|---|"]
    body = _fit(head, table + rows, details, sha, limit)
    return Preview(body, state, description, changes, failed)


def _kind(r: engine.ReconcileResult) -> str:
    return r.error_kind.value if r.error_kind else "failed"


def _cell(text: str) -> str:
    """``text`` safe in a Markdown table cell (one line, pipes and HTML escaped)."""
    text = re.sub(r"\s+", " ", text).strip()
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def _row(app: str, cluster: str, counts: dict[str, int], unchanged: int, error: str) -> str:
    c = [str(counts.get(k, 0)) for k in ("created", "configured", "pruned")]
    return f"| {_cell(app)} | {_cell(cluster)} | {' | '.join(c)} | {unchanged} | {_cell(error)[:1000]} |"


def _details(app: str, cluster: str, entries: Sequence[engine.ChangeSetEntry]) -> tuple[str, list[str]]:
    """The collapsed block of one app on one cluster: its opening and one chunk per object (line and diff)."""
    opening = f"<details><summary>{_cell(app)} on {_cell(cluster)}: {len(entries)} object(s)</summary>\n"
    chunks = []
    for e in entries:
        chunk = f"\n- {_VERB[e.action]} `{_code(str(e.key))}` ({_cell(e.origin)})\n"
        if e.diff is not None and e.diff.unified:
            fence = "`" * max(3, _longest_run(e.diff.unified) + 1)
            chunk += f"\n{fence}diff\n{e.diff.unified.rstrip(chr(10))}\n{fence}\n"
        chunks.append(chunk)
    return opening, chunks


def _code(text: str) -> str:
    return text.replace("`", "'")


def _longest_run(text: str) -> int:
    return max((len(m) for m in re.findall(r"`+", text)), default=0)


def _fit(head: list[str], table: list[str], details: list[tuple[str, list[str]]], sha: str, limit: int) -> str:
    """Head, table and as many objects' diffs as fit in ``limit`` characters, with a note for what was left out."""
    closing = "\n</details>"
    note = (
        "\n\n_{left} more object(s) left out: the comment would pass its {limit:,}-character limit. "
        f"`gitops-agent diff --revision {sha}` shows every one._"
    )
    room = limit - len(note) - 40
    out = "\n".join(head)
    for i, line in enumerate(table):
        if len(out) + len(line) + 1 > room:
            out += f"\n\n_{len(table) - i} more row(s) left out: the comment would pass its {limit:,}-character limit._"
            return out
        out += "\n" + line
    left = 0
    for opening, chunks in details:
        if left or len(out) + 2 + len(opening) + len(closing) > room:
            left += len(chunks)
            continue
        block = "\n\n" + opening
        for n, chunk in enumerate(chunks):
            if len(out) + len(block) + len(chunk) + len(closing) > room:
                left += len(chunks) - n
                break
            block += chunk
        out += block + closing
    return out + (note.format(left=left, limit=limit) if left else "")

"""The ``pullRequest`` generator: one parameter set per open pull request (Argo CD's Generators-Pull-Request.md).

Parameters, Argo CD's: ``number`` (a string), ``title``, ``branch``, ``branch_slug``, ``target_branch``,
``target_branch_slug`` (gosimple's slug of the branch, at most 50 characters: :func:`agent.appsets.template.slugs`),
``head_sha``, ``head_short_sha`` (its first 8 characters), ``head_short_sha_7`` and ``author``; with Go templates
also ``labels`` (a list). The pull requests come from the context (:attr:`base.Context.pull_requests`): listed
before the generation, never while it runs in the running agent.
"""

from __future__ import annotations

from typing import Any

from agent import config
from agent.appsets import params as params_
from agent.appsets import template
from agent.appsets.generators.base import Context


def generate(spec: config.PullRequestGenerator, ctx: Context) -> list[params_.Params]:
    """The pull requests' parameter sets, in the API's order. Raises GenerateError when they could not be listed."""
    found = ctx.pull_requests(spec)
    slugs = template.slugs([s for p in found for s in (p.branch, p.target_branch)])
    out = []
    for i, p in enumerate(found):
        params: dict[str, Any] = {
            "number": str(p.number),
            "title": p.title,
            "branch": p.branch,
            "branch_slug": slugs[2 * i],
            "target_branch": p.target_branch,
            "target_branch_slug": slugs[2 * i + 1],
            "head_sha": p.head_sha,
            "head_short_sha": p.head_sha[:8],
            "head_short_sha_7": p.head_sha[:7],
            "author": p.author,
        }
        if ctx.go_template:
            params["labels"] = list(p.labels)
        out.append(params)
    return out

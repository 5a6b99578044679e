"""Rendering app set templates with the engines Argo CD uses, in the ``gitops-agent-template`` helper.

The helper (``tools/template``, Go, built by ``make`` into the virtualenv from a pinned ``go.mod``) renders every
string of a JSON template, map keys included, on its own, as Argo CD's ApplicationSet controller does: Go's
``text/template`` with Masterminds' Sprig (without ``env``, ``expandenv`` and ``getHostByName``; with
``normalize``, ``slugify``, ``toYaml``, ``fromYaml`` and ``fromYamlArray``) when ``goTemplate`` is on, else
valyala's fasttemplate (``{{key}}`` is the string parameter ``key``, left as written when there is none).
Argo CD's documentation: operator-manual/applicationset/GoTemplate.md and Template.md.

One run renders one template for many parameter sets (one process per app set and generation, not per app), within
:data:`TIMEOUT` seconds and the render memory limit of :mod:`agent.sources.tools`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from agent.sources import tools
from reconcilers import errors

HELPER = "gitops-agent-template"
"""The helper's executable name."""
TIMEOUT = 30.0
"""Seconds one run of the helper may take."""


def binary() -> str | None:
    """``$GITOPS_AGENT_TEMPLATE``, else the helper beside the running Python (the virtualenv ``make`` fills, the
    image's ``/opt/gitops-agent/bin``), else on PATH; None when there is none."""
    return tools.find(HELPER, "GITOPS_AGENT_TEMPLATE")


Rendered = tuple[Any, str | None]
"""One parameter set's outcome: (the rendered value, None) or (None, the engine's error message)."""


def render(
    template: Any,
    params: Sequence[Mapping[str, Any]],
    *,
    go_template: bool,
    options: Sequence[str] = (),
    timeout: float = TIMEOUT,
) -> list[Rendered]:
    """``template`` (JSON-able) rendered with each of ``params``, in order. Raises GenerateError when the helper is
    missing, does not finish within ``timeout`` seconds, or fails as a whole (its message); an error of one
    parameter set is that set's :data:`Rendered`, not an exception."""
    if not params:
        return []
    request = {"goTemplate": go_template, "goTemplateOptions": list(options), "template": template, "params": params}
    results = _run(request, timeout)["results"]
    return [(r.get("value"), r.get("error")) for r in results]


def slugs(names: Sequence[str], timeout: float = TIMEOUT) -> list[str]:
    """Each of ``names`` (branch names) as Argo CD's pull request generator slugs it (``branch_slug``: gosimple's
    ``slug.Make``, at most 50 characters, ``_`` as ``-``). Raises GenerateError as :func:`render` does."""
    if not names:
        return []
    found: list[str] = _run({"template": None, "params": [], "slugs": list(names)}, timeout)["slugs"]
    return found


def _run(request: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    found = binary()
    if found is None:
        raise errors.GenerateError(f"{HELPER} not found (make builds it into .venv/bin; or set GITOPS_AGENT_TEMPLATE)")
    try:
        done = tools.run([found], tools.Limits(timeout=timeout), stdin=json.dumps(request))
    except tools.RenderTimeoutError as e:
        raise errors.GenerateError(f"{HELPER} {e}") from None
    except OSError as e:
        raise errors.GenerateError(f"{HELPER} could not start: {e}") from None
    if done.returncode != 0:
        raise errors.GenerateError(f"{HELPER} failed: {tools.error_text(done.stderr)}")
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer

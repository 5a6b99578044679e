"""How the command line prints: kubectl's habits.

Tables are plain columns separated by spaces under UPPERCASE headers (``kubectl get``'s printer), never boxes,
so a piped table greps and awks; colour only on a terminal. Times are shown as AGE (``45s``, ``5m30s``, ``3h``,
``2d``: apimachinery's ``duration.HumanDuration``). ``-o json`` and ``-o yaml`` print the API's own JSON. Each error
is printed once, on stderr, with a hint when there is one. Used by every module of :mod:`agent.cli`.
"""

from __future__ import annotations

import datetime
import json
import re
import sys
from collections.abc import Sequence
from typing import Any

import rich.console
import rich.markup
import yaml

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2
"""0: done and in line; 1: done, but something is not (a failed object, drift, not Healthy); 2: could not be done
(bad config or flags, a source that cannot be fetched, an agent that cannot be asked)."""

FORMATS = ("table", "wide", "json", "yaml")
"""Values of ``-o``."""

_MARKUP = re.compile(r"\[/?[a-z ]*\]")


def console(*, stderr: bool = False) -> rich.console.Console:
    """A console for stdout (or stderr): colour on a terminal, none and no wrapping when piped."""
    out = rich.console.Console(stderr=stderr, highlight=False)
    if not out.is_terminal:
        out = rich.console.Console(stderr=stderr, highlight=False, width=100_000, color_system=None)
    return out


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], out: rich.console.Console | None = None) -> None:
    """Print ``rows`` under ``headers`` as ``kubectl get`` does: UPPERCASE headers, each column as wide as its
    widest cell, three spaces between columns, no trailing spaces. Cells may carry rich markup (``[red]..[/]``),
    which is left out of the widths (and of the output when piped)."""
    out = out or console()
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(_MARKUP.sub("", cell)))
    for row in [[h.upper() for h in headers], *rows]:
        cells = [cell + " " * (widths[i] - len(_MARKUP.sub("", cell))) for i, cell in enumerate(row)]
        out.print("   ".join(cells).rstrip(), soft_wrap=True)


def age(when: str | None, now: datetime.datetime | None = None) -> str:
    """An ISO 8601 time as kubectl's AGE (``<unknown>`` when there is none or it does not parse)."""
    if not when:
        return "<unknown>"
    try:
        then = datetime.datetime.fromisoformat(when)
    except ValueError:
        return "<unknown>"
    if then.tzinfo is None:
        then = then.replace(tzinfo=datetime.UTC)
    return human_duration(((now or datetime.datetime.now(datetime.UTC)) - then).total_seconds())


def human_duration(seconds: float) -> str:
    """``seconds`` as apimachinery's ``duration.HumanDuration`` writes them: ``45s``, ``5m30s`` under ten
    minutes, ``3h25m`` under eight hours, ``2d5h`` under eight days, ``12d`` under two years, then ``3y20d``."""
    s = int(max(0.0, seconds))
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = s // 86400
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    if days < 365 * 8:
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{days // 365}y"


def dump(data: Any, fmt: str) -> None:
    """Print ``data`` as JSON (indented) or YAML (block style, keys in their order)."""
    if fmt == "yaml":
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
    else:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")


def error(message: str, hint: str = "") -> int:
    """Print ``error: message`` (and ``hint: ...``) once on stderr; returns :data:`EXIT_ERROR`."""
    err = console(stderr=True)
    err.print(f"[bold red]error:[/] {rich.markup.escape(message)}")
    if hint:
        err.print(f"[dim]hint:[/] {rich.markup.escape(hint)}")
    return EXIT_ERROR


def coloured(value: str, good: bool, bad: str = "red") -> str:
    """``value`` in green when ``good``, else in ``bad`` (rich markup; plain when piped)."""
    return f"[{'green' if good else bad}]{rich.markup.escape(value)}[/]"

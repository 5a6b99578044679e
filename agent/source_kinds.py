"""The kinds of source: the one registry the config's ``sources[].type`` values come from.

Each :class:`Kind` names the module implementing it (a module of :mod:`agent.sources` with a ``make(source,
chart_refs)`` returning a :class:`agent.sources.protocol.Source`) and what its config entry needs, which
:class:`agent.config_sections.SourceConfig` checks when the config is read. ``auto`` is not a kind: it picks
``local`` for a local directory that is not a git repository, else ``git``. Adding a source type is one module
and one line in :data:`KINDS`. Kept at the bottom of the package layers so the config reads it without importing
the sources.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Kind:
    """One source kind: ``name`` (the config's ``type``), ``module`` (its implementation), ``charts`` (True: apps
    name a ``chart`` of it, not a ``path``), ``schemes`` (the URL prefixes it accepts; empty: any), ``credentials``
    (True: it reads ``usernameEnv``, ``passwordEnv``, ``passwordFile`` and ``insecure``)."""

    name: str
    module: str
    charts: bool = False
    schemes: tuple[str, ...] = ()
    credentials: bool = False


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("git", "agent.sources.git"),
        Kind("local", "agent.sources.local"),
        Kind("helm", "agent.sources.charts", charts=True, schemes=("http://", "https://"), credentials=True),
        Kind("oci", "agent.sources.charts", charts=True, schemes=("oci://",), credentials=True),
    )
}
"""Every source kind by its config ``type``."""

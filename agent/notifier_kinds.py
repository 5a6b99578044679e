"""The kinds of notification provider: the one registry the config's ``notifications[].type`` values come from.

Each :class:`Kind` names the runtime module that implements it (a module of :mod:`agent.runtime.notify` with a
``make(spec, source_url, instance)`` returning a :class:`agent.runtime.notify.protocol.Format`) and what its
config entry needs, which :class:`agent.config_types.Notification` checks when the config is read. Adding a
provider is one module there and one line in :data:`KINDS`. Kept at the bottom of the package layers so the
config can read it without importing the runtime (the module is imported by name when a notifier is built).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Kind:
    """One provider kind: ``name`` (the config's ``type``), ``title`` (the service, in messages), ``module`` (its
    implementation), ``commit_status`` (True: it gets commit statuses of synced revisions, not events), ``needs``
    (config fields it requires: ``url``, ``token``), ``secret_url`` (its URL carries a credential, so it must come
    from ``env`` or ``file``, never the config file itself)."""

    name: str
    title: str
    module: str
    commit_status: bool = False
    needs: tuple[str, ...] = ()
    secret_url: bool = False


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("slack", "Slack", "agent.runtime.notify.slack", needs=("url",), secret_url=True),
        Kind("webhook", "webhook", "agent.runtime.notify.webhook", needs=("url",)),
        Kind("github", "GitHub", "agent.runtime.notify.github", commit_status=True, needs=("token",)),
        Kind("gitlab", "GitLab", "agent.runtime.notify.gitlab", commit_status=True, needs=("token",)),
        Kind("msteams", "Microsoft Teams", "agent.runtime.notify.teams", needs=("url",), secret_url=True),
    )
}
"""Every provider kind by its config ``type``."""

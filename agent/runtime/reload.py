"""Live config reload: the config file is watched (watchfiles) and every valid new version is applied without
a restart (``Agent.apply_config``: clusters added, changed or removed). An invalid new version is refused with
its error (logged, and shown as ``config.error`` in the status) and the agent keeps running on the last valid one.
The directory is watched rather than the file, because editors save by writing a new file and renaming it.
Used by ``agent.cli run``.
"""

from __future__ import annotations

import logging
import pathlib
import threading

import watchfiles

from agent import config, threads
from agent.runtime import fleet
from reconcilers import errors

log = logging.getLogger(__name__)


def reload_once(agent: fleet.Fleet, path: pathlib.Path) -> bool:
    """Read ``path`` and apply it if valid; returns True when applied."""
    try:
        new = config.load_config(path)
    except errors.ConfigError as e:
        log.error("config reload refused, still running on the last valid config: %s", e)
        agent.state.record_config(str(e))
        return False
    if new == agent.cfg:
        agent.state.record_config(None)
        return False
    try:
        agent.apply_config(new)
    except errors.ConfigError as e:  # e.g. a new notification's secret is not set: nothing was changed
        log.error("config reload refused, still running on the last valid config: %s", e)
        agent.state.record_config(str(e))
        return False
    agent.state.record_config(None)
    return True


def watch(agent: fleet.Fleet, path: pathlib.Path, stop: threading.Event) -> None:
    """Reload ``path`` on every change until ``stop`` is set (run it in a thread).

    ``path`` is watched as given, its symlinks not resolved: in a ConfigMap volume ``config.yaml`` is a symlink to
    ``..data/config.yaml``, and the kubelet updates the volume by writing a new ``..<timestamp>`` directory,
    pointing ``..data`` at it and removing the old one (Kubernetes' ``AtomicWriter``; docs, "ConfigMaps: mounted
    ConfigMaps are updated automatically"). A change to any of those ``..`` entries is read as a change of the
    config. A config that is a symlink to a file in another directory (kept with other files elsewhere) has that
    directory watched too, so an edit of the file itself is seen."""
    path = path.absolute()
    target = path.resolve()
    watched = [path.parent]
    if not target.parent.is_relative_to(path.parent):  # the kubelet's ..<timestamp> is inside: the watch covers it
        watched.append(target.parent)
    names = {path.name, target.name}

    def is_config(_: watchfiles.Change, changed: str) -> bool:
        name = pathlib.Path(changed).name
        return name in names or name.startswith("..")

    for _ in watchfiles.watch(
        *watched,
        watch_filter=is_config,
        stop_event=stop,
        debounce=100,
        step=50,
        rust_timeout=500,
        yield_on_timeout=False,
    ):
        reload_once(agent, path)


def start(agent: fleet.Fleet, path: pathlib.Path) -> threading.Event:
    """Watch ``path`` in a daemon thread; set the returned event to stop."""
    stop = threading.Event()
    threads.start("config-reload", "fleet/reload", watch, agent, path, stop)
    return stop

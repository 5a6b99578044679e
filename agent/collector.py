"""Python's cyclic garbage collector, tuned for an agent that allocates many short-lived containers.

A sync decodes every API answer and every manifest into dicts and lists; almost none of them form reference
cycles (reference counting frees them), yet with CPython's default thresholds ``(700, 10, 10)`` the collector runs
a young-generation pass every 700 net allocations of container objects, and each tenth of those promotes survivors
toward the oldest generation, whose passes walk every object the process holds: the imported modules, the config,
the live caches. Measured on a first sync of 2,001 objects to 3 test clusters (``bench/scale.py``): 451
collections, 0.35-0.45 s of CPU, about 3% of the process; with :data:`THRESHOLDS`, 5 collections and 0.10 s (gc
callbacks timing each pass, docs/benchmarks.md). Garbage that does form cycles is still collected, only later: the
young generation holds at most :data:`THRESHOLDS` [0] more objects than before.

:func:`tune` is called when :mod:`agent` is first imported, so the imports that follow (pydantic's models, the
kubernetes client) run under it too; :func:`freeze` once the command line has imported what it needs, so the full
passes skip what every process holds for its whole life (``gc.freeze``, the Python documentation's advice for
long-lived objects created at start).
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 20, 20)
"""``gc.set_threshold`` arguments: net container allocations before a young pass, then young passes per middle
pass and middle passes per full pass."""


def tune() -> None:
    """Set :data:`THRESHOLDS`, unless the collector is off (``gc.disable()`` by whoever embeds the agent)."""
    if gc.isenabled():
        gc.set_threshold(*THRESHOLDS)


def freeze() -> None:
    """Move every object tracked now to the permanent generation: the full passes no longer walk them."""
    gc.freeze()

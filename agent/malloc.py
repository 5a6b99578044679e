"""C allocator settings for a many-threaded agent, applied once at start by ``agent.cli`` (``run`` and ``sync``).

glibc's malloc gives each thread that finds an arena busy an arena of its own, up to 8 per core, and raises its
mmap threshold each time a large block is freed, so later large blocks come from those arenas instead of mmap.
The agent runs dozens of threads (watches, per-cluster request pools) that decode API responses of up to a few
MiB: freed memory stays scattered over many arenas, and resident memory grows well past what is live. Two settings
of mallopt(3) bound that (the glibc manual, "Memory Allocation Tunables": ``glibc.malloc.arena_max`` and
``glibc.malloc.mmap_threshold``):

- ``M_ARENA_MAX`` = :data:`ARENAS`;
- ``M_MMAP_THRESHOLD`` = :data:`MMAP_THRESHOLD` bytes: blocks that large are always mmap'ed, and returned to the
  system as soon as they are freed (setting it also turns the dynamic threshold off).

An operator's own ``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_`` or ``GLIBC_TUNABLES=glibc.malloc...`` in the
environment wins (glibc has applied it already and this leaves that setting alone). On other C libraries (musl,
macOS) nothing is done. Measured in docs/benchmarks.md (issue #7, memory).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

ARENAS = 2
"""glibc malloc arenas (the default is 8 per core)."""
MMAP_THRESHOLD = 128 * 1024
"""Bytes from which a block is mmap'ed and unmapped on free (glibc's initial value, kept fixed)."""
_M_ARENA_MAX = -8  # <malloc.h>
_M_MMAP_THRESHOLD = -3


def tune() -> dict[str, int]:
    """Apply the settings above where the environment does not set them; returns what was set (name -> value),
    empty on a C library without ``mallopt`` or ``gnu_get_libc_version`` (not glibc)."""
    name = ctypes.util.find_library("c")
    if not name:
        return {}
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018 -- only glibc has it; musl's mallopt ignores these parameters
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return {}
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    done = {}
    for env, param, value in (
        ("MALLOC_ARENA_MAX", _M_ARENA_MAX, ARENAS),
        ("MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD, MMAP_THRESHOLD),
    ):
        if env not in os.environ and "glibc.malloc" not in tunables and mallopt(param, value) == 1:
            done[env] = value
    log.debug("malloc tunables set: %s", done)
    return done

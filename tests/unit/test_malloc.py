"""The C allocator settings ``gitops-agent`` applies at start, and that the operator's environment wins."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")

PROBE = "import json; from agent import malloc; print(json.dumps(malloc.tune()))"


def tuned(**env: str) -> dict[str, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, check=True)
    return dict(json.loads(out.stdout))


def test_arenas_and_mmap_threshold_are_set() -> None:
    assert tuned() == {"MALLOC_ARENA_MAX": 2, "MALLOC_MMAP_THRESHOLD_": 131072}


def test_the_environment_wins() -> None:
    assert tuned(MALLOC_ARENA_MAX="4") == {"MALLOC_MMAP_THRESHOLD_": 131072}
    assert tuned(GLIBC_TUNABLES="glibc.malloc.arena_max=4") == {}

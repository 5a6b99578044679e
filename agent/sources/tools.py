"""Running an external renderer (helm, kustomize, sops) bounded in time and memory.

A render is a program of someone else's input (a chart's templates, a kustomization's generators): it may never end
or allocate without bound. Each run here:

- starts in a session of its own, so that on a timeout the whole process group is killed (a plugin or a process
  the tool started goes with it), not only the direct child as ``subprocess.run`` does;
- gets ``RLIMIT_DATA`` (private writable memory: the heap) set to :attr:`Limits.memory` right after it starts
  (``resource.prlimit`` from this process: no ``preexec_fn``, which is unsafe in a threaded program). Not
  ``RLIMIT_AS``: the Go runtime of helm and kustomize reserves about 1.6 GiB of address space at 55 MiB resident,
  and dies under an address-space limit of 1 GiB (measured with ``prlimit --as``); under a data limit a plain
  ``helm template`` of ingress-nginx runs in 256 MiB, and a template that doubles a string 40 times stops with Go's
  "out of memory" at 1 GiB.

Callers turn :class:`RenderTimeoutError` and :func:`out_of_memory` into errors that name the render, the path and
the limit.
Used by :mod:`agent.sources.render.helm`, :mod:`agent.sources.render.kustomize` and :mod:`agent.sources.sops`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from agent import threads

DEFAULT_TIMEOUT = 60.0
"""Seconds a render may take unless the source or app says otherwise (``renderTimeout``)."""
DEFAULT_MEMORY = 1024 * 1024 * 1024
"""Bytes of heap a render may use unless ``render.memoryLimit`` says otherwise."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one render may take: ``timeout`` in seconds and ``memory`` in bytes (0: no memory limit)."""

    timeout: float = DEFAULT_TIMEOUT
    memory: int = DEFAULT_MEMORY


DEFAULT_LIMITS = Limits()
"""The limits of a render whose source and app set none."""


class RenderTimeoutError(Exception):
    """The tool did not finish within its timeout; it was killed with its process group."""


def find(name: str, env: str) -> str | None:
    """An external tool: ``$<env>`` when set, else ``name`` beside the running Python (the virtualenv ``make``
    fills; the image's ``/opt/gitops-agent/bin``), else ``name`` on PATH; None when there is none."""
    explicit = os.environ.get(env)
    if explicit:
        return explicit
    beside = pathlib.Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


def run(
    command: Sequence[str],
    limits: Limits,
    *,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` within ``limits`` and return its exit code and output as text (as ``subprocess.run`` would,
    not checked). Raises RenderTimeoutError, and OSError when it cannot start."""
    done: subprocess.CompletedProcess[str] = _run(command, limits, env, stdin, cwd, text=True)
    return done


def run_bytes(
    command: Sequence[str], limits: Limits, *, env: Mapping[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """:func:`run` with the output (and ``stdin``) as bytes."""
    done: subprocess.CompletedProcess[bytes] = _run(command, limits, env, stdin, None, text=False)
    return done


def _run(
    command: Sequence[str],
    limits: Limits,
    env: Mapping[str, str] | None,
    stdin: str | bytes | None,
    cwd: str | os.PathLike[str] | None,
    *,
    text: bool,
) -> Any:
    proc = subprocess.Popen(
        list(command),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
    )
    if limits.memory > 0:
        with contextlib.suppress(OSError):  # it may have ended already
            resource.prlimit(proc.pid, resource.RLIMIT_DATA, (limits.memory, limits.memory))
    given = stdin.encode() if isinstance(stdin, str) else stdin
    try:
        out, err, code, peak = _exchange(proc, given, limits.timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise RenderTimeoutError(f"did not finish in {limits.timeout:g} s") from None
    except BaseException:
        _kill(proc)
        raise
    if text:
        return Done(list(command), code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), peak)
    return Done(list(command), code, out, err, peak)


class Done(subprocess.CompletedProcess[Any]):
    """A finished run: ``subprocess.CompletedProcess`` with ``peak``, the most memory it held resident (bytes,
    the kernel's ``ru_maxrss`` from ``wait4``)."""

    def __init__(self, args: list[str], returncode: int, stdout: Any, stderr: Any, peak: int) -> None:
        super().__init__(args, returncode, stdout, stderr)
        self.peak = peak


def _exchange(proc: subprocess.Popen[bytes], stdin: bytes | None, timeout: float) -> tuple[bytes, bytes, int, int]:
    """``communicate`` that also reports the child's peak resident memory: its pipes are drained by two short-lived
    threads (and ``stdin`` written by a third) and the child reaped with ``os.wait4``, whose resource usage
    ``subprocess`` drops. Returns (stdout, stderr, exit code, peak bytes). Raises ``subprocess.TimeoutExpired``
    after ``timeout`` seconds (the caller kills the process group)."""
    found: dict[int, bytes] = {}

    def drain(fd: int, stream: Any) -> None:
        found[fd] = stream.read()

    pumps = [threads.start("render-io", "render", drain, i, s) for i, s in enumerate((proc.stdout, proc.stderr))]
    if proc.stdin is not None:
        pumps.append(threads.start("render-io", "render", _feed, proc.stdin, stdin or b""))
    deadline = time.monotonic() + timeout
    for pump in pumps:
        pump.join(max(0.0, deadline - time.monotonic()))
        if pump.is_alive():
            raise subprocess.TimeoutExpired(proc.args, timeout)
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return found.get(0, b""), found.get(1, b""), proc.returncode, usage.ru_maxrss * 1024
        if time.monotonic() >= deadline:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        time.sleep(0.01)  # its output is closed: it is ending


def _feed(pipe: Any, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, OSError):
        pipe.write(data)
    with contextlib.suppress(BrokenPipeError, OSError):
        pipe.close()


def _kill(proc: subprocess.Popen[Any]) -> None:
    """Kill ``proc`` and every process of its session, and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError, ValueError, subprocess.TimeoutExpired):
        proc.communicate(timeout=5)


_OUT_OF_MEMORY = (
    "out of memory",  # Go: "fatal error: runtime: out of memory", "... out of memory allocating heap arena metadata"
    "cannot allocate memory",  # Go: "fatal error: runtime: cannot allocate memory" (mmap's ENOMEM)
    "pthread_create failed: Resource temporarily unavailable",  # cgo: a thread's stack refused under RLIMIT_DATA
)
"""What a tool prints when its heap reaches :attr:`Limits.memory`. Which one it is depends on which allocation meets
the limit first: ``prlimit --data=268435456 helm template`` of a chart that doubles a string 40 times, run 12 times
with ``GOMAXPROCS`` 3 to 36, printed all three (the thread stacks of the Go runtime count as private data too)."""


def out_of_memory(done: subprocess.CompletedProcess[Any], limits: Limits) -> bool:
    """True when ``done`` (a failed run) ran out of memory under ``limits``: its error output says so (one of
    :data:`_OUT_OF_MEMORY`), or the Go runtime itself crashed (:data:`_RUNTIME_CRASH`: not a program's ``panic:``)
    after holding a quarter of the limit or more resident (``Done.peak``). A failed ``mmap`` under ``RLIMIT_DATA``
    can end in a SIGSEGV in the garbage collector with no word of memory: 3 runs in 6 of the doubling chart under
    256Mi on a loaded machine, each at 93 MiB resident or more (the limit counts reserved memory too)."""
    stderr = done.stderr
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else str(stderr)
    if any(sign in text for sign in _OUT_OF_MEMORY):
        return True
    peak = getattr(done, "peak", 0)
    return limits.memory > 0 and peak * 4 >= limits.memory and _RUNTIME_CRASH.match(text.lstrip()) is not None


_RUNTIME_CRASH = re.compile(r"SIGSEGV: segmentation violation|SIGBUS: bus error|fatal error: |runtime: |runtime/cgo: ")
"""How the Go runtime's own crash report starts (a program's panic starts with ``panic:``)."""


_CRASH = re.compile(r"^(?:goroutine \d+ |runtime stack:|SIGABRT|SIGSEGV|SIGBUS|PC=0x|panic: )", re.MULTILINE)
MESSAGE_MAX = 4000
"""Characters of a tool's error output kept in an app's status."""


def error_text(stderr: str) -> str:
    """A tool's error output as a status message: a Go crash's dump (goroutine stacks, registers: hundreds of lines
    no operator reads in a status) cut to the lines before it, and the rest cut to :data:`MESSAGE_MAX` characters."""
    text = stderr.strip()
    crash = _CRASH.search(text)
    if crash is not None and crash.start() > 0:
        text = text[: crash.start()].rstrip() + " (the tool crashed; its stack dump is left out)"
    elif crash is not None:  # a panic: its first line says what happened
        text = text.splitlines()[0] + " (the tool crashed; its stack dump is left out)"
    if len(text) > MESSAGE_MAX:
        text = text[:MESSAGE_MAX] + f" ... ({len(text) - MESSAGE_MAX} more characters)"
    return text


def memory_text(limits: Limits) -> str:
    """The memory limit as people write it (``1Gi``, ``512Mi``)."""
    for unit, size in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if limits.memory % size == 0:
            return f"{limits.memory // size}{unit}"
    return f"{limits.memory} bytes"

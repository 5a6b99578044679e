"""``gitops-agent version`` and ``gitops-agent completion bash|zsh|fish``. Used by :mod:`agent.cli`."""

from __future__ import annotations

import importlib.metadata
import json
import pathlib
import subprocess
from typing import Any

import argcomplete.shell_integration

from agent import __version__
from agent.cli import output
from agent.sources import sops
from agent.sources.render import helm, kustomize

BUILD_INFO = "build_info.json"
"""Beside the ``agent`` package's modules in a release: ``{"gitCommit": SHA}``, written by ``make dist``."""
TOOL_TIMEOUT = 10.0
"""Seconds one ``<tool> version`` may take."""

SHELLS = ("bash", "zsh", "fish")


def versions() -> dict[str, Any]:
    """The agent's version and git commit (of its source checkout, when it runs from one), and the versions of
    the tools it renders with and of its Kubernetes client (``null`` for a tool that is not installed)."""
    return {
        "gitopsAgent": __version__,
        "gitCommit": _commit(),
        "helm": _tool(helm.binary(), "version", "--short"),
        "kustomize": _tool(kustomize.binary(), "version"),
        "sops": _tool(sops.binary(), "--version", "--disable-version-check"),
        "kubernetesClient": _package("kubernetes"),
        "python": _python(),
    }


def version(fmt: str) -> int:
    """Print :func:`versions` (a table, or ``-o json|yaml``); 0."""
    found = versions()
    if fmt in ("json", "yaml"):
        output.dump(found, fmt)
    else:
        output.table(
            ["component", "version"], [[k, str(v) if v is not None else "not installed"] for k, v in found.items()]
        )
    return output.EXIT_OK


def completion(shell: str) -> int:
    """Print the completion script for ``shell`` (argcomplete's), to be sourced: ``source <(gitops-agent
    completion bash)``; 0."""
    print(argcomplete.shell_integration.shellcode(["gitops-agent"], shell=shell))
    return output.EXIT_OK


def _tool(binary: str | None, *args: str) -> str | None:
    if binary is None:
        return None
    try:
        done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    first = (done.stdout.strip() or done.stderr.strip()).splitlines()
    return first[0] if first else "unknown"


def _package(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _python() -> str:
    import platform

    return platform.python_version()


def _commit() -> str | None:
    """The commit of the checkout the agent's code is in (``git rev-parse HEAD``); installed from a release (not in
    a checkout), the commit ``make dist`` built it from (``agent/build_info.json``); None when neither says."""
    package = pathlib.Path(__file__).resolve().parents[1]  # agent/
    found = _checkout_commit(package)
    if found is not None:
        return found
    try:
        info = json.loads((package / BUILD_INFO).read_text())
    except (OSError, ValueError):
        return None
    commit = info.get("gitCommit") if isinstance(info, dict) else None
    return str(commit) if commit else None


def _checkout_commit(package: pathlib.Path) -> str | None:
    """HEAD of the git checkout whose root holds the ``agent`` package (not of some repository an installed copy
    happens to sit in)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(package), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.split()
    if done.returncode != 0 or len(lines) != 2 or pathlib.Path(lines[0]).resolve() != package.parent:
        return None
    return lines[1]

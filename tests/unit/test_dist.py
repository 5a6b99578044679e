"""Release artifacts (``make dist``): a wheel and an sdist that ``twine check --strict`` passes, the wheel the same
bytes when built again from the same commit (SOURCE_DATE_EPOCH), carrying the commit it was built from; installed
into a fresh virtualenv with the pinned dependencies, its ``gitops-agent version`` names that commit and the
Kubernetes client of constraints.txt, and its command line works outside the checkout."""

from __future__ import annotations

import hashlib
import json
import pathlib
import subprocess
import sys

from agent import __version__
from tests.conftest import REPO


def make_dist() -> dict[str, str]:
    done = subprocess.run(["make", "dist"], cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("PASSED") == 2, done.stdout[-2000:]  # twine check, wheel and sdist
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (REPO / "dist").iterdir()}


def test_make_dist_builds_checked_reproducible_artifacts_that_install_and_run(tmp_path: pathlib.Path) -> None:
    first = make_dist()
    wheel = f"gitops_agent-{__version__}-py3-none-any.whl"
    assert set(first) == {wheel, f"gitops_agent-{__version__}.tar.gz"}
    assert make_dist()[wheel] == first[wheel]  # the same commit gives the same wheel

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-c", str(REPO / "constraints.txt")]
    done = subprocess.run([*pip, str(REPO / "dist" / wheel)], capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]

    agent = str(venv / "bin" / "gitops-agent")
    run = {"cwd": tmp_path, "capture_output": True, "text": True, "timeout": 120, "check": False}
    done = subprocess.run([agent, "version", "-o", "json"], **run)  # type: ignore[call-overload]
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
    assert found["gitopsAgent"] == __version__
    assert found["gitCommit"] == head.stdout.strip()  # from the release, not from a checkout
    pinned = next(
        line.split("==")[1]
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if line.startswith("kubernetes==")
    )
    assert found["kubernetesClient"] == pinned

    done = subprocess.run([agent, "config", "schema"], **run)  # type: ignore[call-overload]
    assert done.returncode == 0, done.stderr
    assert "clusters" in json.loads(done.stdout)["properties"]
    dashboard = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.resources as r; print(len(r.files('agent.api').joinpath('dashboard.html').read_text()))",
        ],
        **run,  # type: ignore[arg-type]
    )
    assert int(dashboard.stdout) > 1000, dashboard.stderr

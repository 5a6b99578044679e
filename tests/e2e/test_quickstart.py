"""The README's quickstart, run line by line against a test cluster: the block after the ``<!-- quickstart``
marker, with the placeholders a reader replaces (the repository URL, the kubeconfig, the port) replaced by a local
repository, the test cluster and a free port. Every line must exit 0; ``run`` is started in the background as the
README says."""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import signal
import subprocess
from typing import Any

from tests.conftest import GitRepo
from tests.e2e.test_faults import cm
from tests.e2e.test_run_status import free_port

REPO = pathlib.Path(__file__).resolve().parents[2]


def _quickstart() -> list[str]:
    """The quickstart block's commands, a heredoc kept whole."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- quickstart.*?-->\n```sh\n(.*?)\n```", text, re.DOTALL)
    assert block, "README.md has no quickstart block"
    commands: list[str] = []
    lines = block.group(1).splitlines()
    while lines:
        line = lines.pop(0)
        if "<<'EOF'" in line:
            body = [line]
            while lines and body[-1] != "EOF":
                body.append(lines.pop(0))
            commands.append("\n".join(body))
        elif line.strip():
            commands.append(line)
    return commands


def test_the_readme_quickstart_works(clusters: Any, git_repo: GitRepo, tmp_path: pathlib.Path) -> None:
    (tc,) = clusters(1)
    namespace = f"quickstart-{os.getpid()}"
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    git_repo.write_objects("apps/dev/app.yaml", ns, cm("hello", namespace))
    git_repo.commit("the fleet")
    port = free_port()
    replace = {
        "https://github.com/you/fleet.git": str(git_repo.path),
        "~/.kube/config": str(tc.kubeconfig),
        "127.0.0.1:8080": f"127.0.0.1:{port}",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITOPS_AGENT")}
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env['PATH']}"
    env["HOME"] = str(tmp_path / "home")  # the clone cache goes under it
    commands = _quickstart()
    assert any(c.startswith("gitops-agent run") for c in commands)
    script: list[str] = []
    try:
        for command in commands:
            for placeholder, value in replace.items():
                command = command.replace(placeholder, value)
            script.append(command)
            background = "\necho $! > run.pid" if command.split("#")[0].rstrip().endswith("&") else ""
            # each line runs in a shell that has run the lines before it (export, the config file, run &)
            done = subprocess.run(
                ["bash", "-c", "set -e\n" + _prefix(script[:-1]) + command + background],
                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
            )  # fmt: skip
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
            if command.startswith("gitops-agent status"):
                assert "Synced" in done.stdout
                assert "Healthy" in done.stdout
    finally:
        pid = tmp_path / "run.pid"
        if pid.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid.read_text()), signal.SIGTERM)


def _prefix(before: list[str]) -> str:
    """What a line needs of those before it: the exports (a background ``run`` is already running; the config
    file is already written)."""
    return "".join(c + "\n" for c in before if c.startswith("export "))

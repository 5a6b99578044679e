"""What the app list costs at fleet scale: ``GET /api/v1/apps`` pages and the dashboard's first render in headless
Chromium at 1,000 and 10,000 apps (issue 31).

A running agent (``gitops-agent run``) with one app set of N apps (a list generator, one ConfigMap each, from a
local git repository) placed on one cluster whose API server does not answer (a closed loopback port), so that
the numbers are the API's and the browser's alone, not a sync's: every app has its one cell (Unknown), as an app on
a cluster would. Measured, each a median of ``--rounds``:

- ``GET /api/v1/apps`` unpaged (the baseline: what the dashboard asked for before paging: every app), and the
  dashboard's page (``?limit=500``), a search (``?q=app-00042&limit=500``) and a filter the server answers from
  the cells (``?sync=Synced&limit=500``, none match): time to the last byte, and bytes;
- the fleet summary the dashboard polls every 3 s (``/api/v1/status?objects=false&apps=false``: the per-app
  counts left out, the fleet's kept in ``appCounts``) against the one it polled before (``?objects=false``, with
  the per-app counts): time and bytes;
- the dashboard's first render: a new page of headless Chromium (Debian's, through Playwright) opening ``/`` until
  the apps x clusters matrix holds its rows (500 at most: the first page) and says how many match.

Ratios: each request against the unpaged list of the same N, and each figure at 10,000 against 1,000.

Usage: .venv/bin/python bench/dashboard.py [--apps 1000 10000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from common import REPO

CHROMIUM = os.environ.get("GITOPS_AGENT_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
PAGE = 500
REQUESTS = {
    "unpaged (baseline)": "/api/v1/apps",
    "page of 500": f"/api/v1/apps?limit={PAGE}",
    "search": f"/api/v1/apps?q=app-00042&limit={PAGE}",
    "filter (no match)": f"/api/v1/apps?sync=Synced&limit={PAGE}",
    "fleet summary with apps (before)": "/api/v1/status?objects=false",
    "fleet summary the dashboard polls": "/api/v1/status?objects=false&apps=false",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def setup(root: Path, apps: int) -> tuple[Path, str]:
    """A git repository with one app folder and a config of ``apps`` apps on an unanswering cluster."""
    repo = root / "repo"
    (repo / "app").mkdir(parents=True)
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"k": "v"}}
    (repo / "app" / "cm.yaml").write_text(yaml.safe_dump(cm))
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "app"]):
        env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b",
               "GIT_COMMITTER_EMAIL": "b@x"}  # fmt: skip
        subprocess.run(["git", *args], cwd=repo, check=True, env=env)
    closed = free_port()  # nothing listens there
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": f"https://127.0.0.1:{closed}", "insecure-skip-tls-verify": True}}
        ],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    (root / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    port = free_port()
    cfg = {
        "instance": "bench",
        "source": {"url": str(repo), "ref": "main", "cacheDir": str(root / "cache")},
        "clusters": [{"name": "edge", "kubeconfig": str(root / "kubeconfig")}],
        "appSets": [
            {
                "name": "fleet",
                "goTemplate": True,
                "generators": [{"list": {"elements": [{"n": f"{i:05d}"} for i in range(apps)]}}],
                "template": {"name": "app-{{.n}}", "path": "app", "namespace": "app-{{.n}}"},
            }
        ],
        "sync": {"interval": "1h"},
        "server": {"listen": f"127.0.0.1:{port}"},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    return root / "config.yaml", f"http://127.0.0.1:{port}"


def get(url: str) -> tuple[float, int]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as r:
        size = len(r.read())
    return time.perf_counter() - started, size


def wait_listed(base: str, apps: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/api/v1/apps?limit=1", timeout=10) as r:
                doc = json.loads(r.read())
            if doc["total"] == apps and doc["apps"][0]["clusters"]:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the agent did not list {apps} apps within {timeout:.0f} s")


def first_render(base: str, apps: int, rounds: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    shown = min(apps, PAGE)
    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        for _ in range(rounds):
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            started = time.perf_counter()
            page.goto(f"{base}/")
            page.wait_for_function(
                f"document.querySelectorAll('#matrix tr[data-app]').length === {shown}"
                f" && document.getElementById('apps-shown').textContent.includes('of {apps}')",
                timeout=120_000,
            )
            times.append(time.perf_counter() - started)
            context.close()
        browser.close()
    return times


def measure(apps: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        config, base = setup(Path(tmp), apps)
        logfile = Path(os.environ.get("BENCH_LOG", Path(tmp) / "agent.log"))
        log = open(logfile, "w")  # noqa: SIM115 (closed below)
        agent = subprocess.Popen(
            [str(REPO / ".venv" / "bin" / "gitops-agent"), "run", "--config", str(config)], stdout=log, stderr=log
        )
        try:
            wait_listed(base, apps)
            out: dict[str, Any] = {}
            for name, path in REQUESTS.items():
                got = [get(base + path) for _ in range(rounds)]
                out[name] = (statistics.median(t for t, _ in got), got[-1][1])
            out["first render"] = (statistics.median(first_render(base, apps, rounds)), None)
            return out
        finally:
            agent.terminate()
            agent.wait(30)
            log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--apps", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    found = {n: measure(n, args.rounds) for n in args.apps}
    small, large = min(args.apps), max(args.apps)
    print(
        f"| what | {' | '.join(f'{n:,} apps' for n in args.apps)} | vs unpaged at {large:,} | {large:,} / {small:,} |"
    )
    print("|---|" + "---:|" * (len(args.apps) + 2))
    for what in [*REQUESTS, "first render"]:
        cells = []
        for n in args.apps:
            seconds, size = found[n][what]
            cells.append(f"{seconds * 1000:,.0f} ms" + (f", {size / 1024:,.0f} KiB" if size is not None else ""))
        base = found[large]["unpaged (baseline)"][0]
        versus = f"{found[large][what][0] / base:.2f}x" if what != "first render" else "-"
        print(f"| {what} | {' | '.join(cells)} | {versus} | {found[large][what][0] / found[small][what][0]:.2f}x |")


if __name__ == "__main__":
    sys.exit(main())

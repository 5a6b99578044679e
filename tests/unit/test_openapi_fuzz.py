"""The OpenAPI document, fuzzed with schemathesis: no generated request makes the agent answer with a server
error (5xx). The app runs in-process over ASGI with a configured cluster that has not synced yet, a bearer
token and a webhook secret, so the auth, 404 and webhook paths are all exercised."""

from __future__ import annotations

import pathlib

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from agent import config
from agent.api import server
from agent.runtime import fleet


def _app(tmp: pathlib.Path) -> object:
    path = tmp / "agent.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "source": {"url": str(tmp / "none"), "cacheDir": str(tmp / "cache")},
                "clusters": [{"name": "dev", "kubeconfig": str(tmp / "kubeconfig"), "paths": ["apps"]}],
                "server": {"webhooks": {"generic": {"env": "PATH"}}, "maxBodyBytes": 4096},
                # built at collection, asked after the e2e suite: no "no sync within twice sync.interval" by then
                "sync": {"interval": "24h"},
            }
        )
    )
    agent = fleet.Fleet(config.load_config(path))
    agent.fetched.set()  # ready: /readyz answers 200 (its 503 before the first fetch is by design)
    agent.scheduler.start(paused=True)
    return server.create_app(agent)


_tmp = pathlib.Path(__import__("tempfile").mkdtemp(prefix="fuzz-"))
schema = schemathesis.openapi.from_asgi("/openapi.json", _app(_tmp))


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.filterwarnings("ignore")
def test_no_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error])

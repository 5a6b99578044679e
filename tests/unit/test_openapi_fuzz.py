"""The OpenAPI document, fuzzed with schemathesis: no generated request makes the agent answer with a server
error (5xx). The app runs in-process over ASGI with a configured cluster that has not synced yet, authentication
on (a bearer token, an API token, roles, single sign-on with a loopback issuer's keys) and a webhook secret, so the
auth, single sign-on, 404 and webhook paths are all exercised."""

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
from tests.oidcservers import KeyServer

_issuer = KeyServer().__enter__()  # for the whole session: the app is built at collection


def _app(tmp: pathlib.Path) -> object:
    path = tmp / "agent.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "source": {"url": str(tmp / "none"), "cacheDir": str(tmp / "cache")},
                "clusters": [{"name": "dev", "kubeconfig": str(tmp / "kubeconfig"), "paths": ["apps"]}],
                "server": {
                    "webhooks": {"generic": {"env": "PATH"}},
                    "maxBodyBytes": 4096,
                    "token": {"env": "PATH"},
                    "apiTokens": [{"name": "ci", "sha256": "0" * 64, "groups": ["role:readonly"]}],
                    "oidc": {"issuer": _issuer.issuer, "clientID": "gitops-agent", "requestTimeout": 2},
                },
                "rbac": {"policy": "g, team-a, role:readonly", "defaultRole": "role:readonly"},
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

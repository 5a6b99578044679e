"""OpenID providers on loopback for the single-sign-on tests.

- :class:`Dex`: the real Dex (build/dex, built by ``make dex`` from its Go module), in-memory storage, its password
  database with static users and groups, one static client for the agent (and another whose tokens the agent must
  refuse), the password grant on (so a test can get a user's tokens without a browser), short ID tokens so a
  session's refresh shows.
- :class:`KeyServer`: an issuer's discovery document and JWKS served from a loopback HTTP server, with keys the
  test holds: what a token verifier checks (signature, key ids, rotation) is the test's to vary. It issues no tokens
  by any flow: the test signs them with joserfc, the way a provider's signer would.
"""

from __future__ import annotations

import http.server
import json
import os
import pathlib
import subprocess
import threading
import time
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.conftest import REPO, wait_until
from tests.e2e.test_run_status import free_port

DEX = REPO / "build" / "dex"
CLIENT_ID, CLIENT_SECRET = "gitops-agent", "agent-secret-41d7"
OTHER_CLIENT = "other-app"
USERS = {
    # email: (password, bcrypt hash of it, groups)
    "alice@example.com": ("alice-pass-7f3", "$2b$10$IlT5pHA.ZQLfBUXNrYB3A.aaFciwx1bnga/pXN4qF/TsEiZb9o21G", ["team-a"]),
    "bob@example.com": ("bob-pass-2c9", "$2b$10$pmj7a/6QWjorQEBmQjuFx.9yt4l2O0ATuj8OnNptP6r2qGqOwiMSS", ["readers"]),
}


class Dex:
    """Dex on a free loopback port (``issuer``), sending logins back to ``redirect_uris``. A context manager."""

    def __init__(self, tmp: pathlib.Path, redirect_uris: list[str], id_token_seconds: int = 300) -> None:
        port = free_port()
        self.issuer = f"http://127.0.0.1:{port}/dex"
        config = {
            "issuer": self.issuer,
            "storage": {"type": "memory"},
            "web": {"http": f"127.0.0.1:{port}"},
            "logger": {"level": "warn"},
            "oauth2": {"skipApprovalScreen": True, "passwordConnector": "local",
                       "grantTypes": ["authorization_code", "refresh_token", "password"]},
            "expiry": {"idTokens": f"{id_token_seconds}s"},
            "enablePasswordDB": True,
            "staticClients": [
                {"id": CLIENT_ID, "secret": CLIENT_SECRET, "name": "gitops-agent", "redirectURIs": redirect_uris},
                {"id": OTHER_CLIENT, "secret": "other-secret", "name": "another app", "redirectURIs": redirect_uris},
            ],
            "staticPasswords": [
                {"email": email, "hash": hashed, "username": email.split("@")[0], "userID": email, "groups": groups}
                for email, (_, hashed, groups) in USERS.items()
            ],
        }  # fmt: skip
        self.config = tmp / "dex.yaml"
        self.config.write_text(json.dumps(config))
        self.log = tmp / "dex.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Dex:
        with self.log.open("wb") as log:
            # Dex's sessions (a feature flag at this commit) on: a refresh then reads the identity Dex kept at login.
            # With them off, a refresh of a password-database login deadlocks Dex's storage at this commit (its
            # refresh reads the offline session inside the refresh token's update, under the same lock).
            env = {**os.environ, "DEX_SESSIONS_ENABLED": "true"}
            self.proc = subprocess.Popen([str(DEX), "serve", str(self.config)], stdout=log, stderr=subprocess.STDOUT,
                                         env=env)  # fmt: skip

        def up() -> bool:
            try:
                return httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def tokens(self, email: str, client: str = CLIENT_ID, secret: str = CLIENT_SECRET) -> dict[str, Any]:
        """``email``'s tokens for ``client`` by the password grant (id_token, access_token, refresh_token)."""
        answer = httpx.post(
            f"{self.issuer}/token",
            auth=(client, secret),
            data={"grant_type": "password", "username": email, "password": USERS[email][0],
                  "scope": "openid email profile groups offline_access"},
            timeout=10,
        )  # fmt: skip
        answer.raise_for_status()
        return dict(answer.json())


class KeyServer:
    """An issuer's discovery document and JWKS on a free loopback port: ``issuer``; ``key`` signs, ``rotate()``
    makes a new one (the old one still listed until ``retire()``). A context manager."""

    def __init__(self) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.keys = [RSAKey.generate_key(2048, parameters={"kid": "key-1"})]
        self.jwks_reads = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    body: dict[str, Any] = {
                        "issuer": server.issuer,
                        "authorization_endpoint": f"{server.issuer}/auth",
                        "token_endpoint": f"{server.issuer}/token",
                        "jwks_uri": f"{server.issuer}/keys",
                        "id_token_signing_alg_values_supported": ["RS256"],
                    }
                elif self.path == "/keys":
                    server.jwks_reads += 1
                    body = {"keys": [k.as_dict(private=False) for k in server.keys]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def key(self) -> RSAKey:
        return self.keys[-1]

    def rotate(self) -> None:
        self.keys.append(RSAKey.generate_key(2048, parameters={"kid": f"key-{len(self.keys) + 1}"}))

    def retire(self) -> None:
        self.keys = self.keys[-1:]

    def sign(self, claims: dict[str, Any], key: RSAKey | None = None, **header: Any) -> str:
        """A JWT of ``claims`` (``iss``, ``sub``, ``aud``, ``iat``, ``exp`` filled in when absent; None leaves one
        out) signed RS256."""
        key = key or self.key
        now = int(time.time())
        full = {"iss": self.issuer, "sub": "user-1", "aud": CLIENT_ID, "iat": now, "exp": now + 300, **claims}
        full = {k: v for k, v in full.items() if v is not None}  # a claim given as None is left out
        return jwt.encode({"alg": "RS256", "kid": key.kid, **header}, full, key)

    def __enter__(self) -> KeyServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

"""``server.tls``: the running agent serves HTTPS with the configured certificate, a client that trusts its CA
reads the API, and a certificate rotated on disk (as cert-manager or a Secret volume rotates it) is served to new
connections without a restart; a pair that does not load at start stops the start, naming the files."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import pathlib
import socket
import ssl
import subprocess
import sys
import urllib.request
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import GitRepo, wait_until
from tests.e2e.test_faults import Agent
from tests.e2e.test_run_status import free_port


def _self_signed(folder: pathlib.Path, name: str) -> tuple[pathlib.Path, pathlib.Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key, written as PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    crt, pem = folder / f"{name}.crt", folder / f"{name}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))  # fmt: skip
    return crt, pem


def _served(port: int) -> str:
    """The SHA-256 of the certificate the server presents now (a new connection)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        return hashlib.sha256(tls.getpeercert(binary_form=True) or b"").hexdigest()


def test_the_server_serves_https_and_picks_up_a_rotated_certificate(
    git_repo: GitRepo, clusters: Any, make_config: Any, tmp_path: pathlib.Path
) -> None:
    (tc,) = clusters(1)
    git_repo.write("app/.keep", "")
    git_repo.commit("empty")
    first_crt, first_key = _self_signed(tmp_path / "one", "one")
    served_crt, served_key = tmp_path / "tls.crt", tmp_path / "tls.key"
    served_crt.write_bytes(first_crt.read_bytes())
    served_key.write_bytes(first_key.read_bytes())
    port = free_port()
    tls = {"certFile": "tls.crt", "keyFile": "tls.key"}  # beside the config: resolved against its folder
    config = make_config(git_repo, [{"name": "c", "kubeconfig": str(tc.kubeconfig)}],
                         server={"listen": f"127.0.0.1:{port}", "tls": tls})  # fmt: skip
    agent = Agent(config, tmp_path / "agent.log")
    try:
        trusted = ssl.create_default_context(cafile=str(first_crt))

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=trusted, timeout=5) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until(healthy, timeout=60)
        before = _served(port)
        assert before == hashlib.sha256(ssl.PEM_cert_to_DER_cert(first_crt.read_text())).hexdigest()

        second_crt, second_key = _self_signed(tmp_path / "two", "two")
        served_key.write_bytes(second_key.read_bytes())
        served_crt.write_bytes(second_crt.read_bytes())
        wait_until(lambda: _served(port) != before, timeout=20)
        assert _served(port) == hashlib.sha256(ssl.PEM_cert_to_DER_cert(second_crt.read_text())).hexdigest()
    finally:
        assert agent.stop() == 0, agent.log.read_text()[-2000:]

    raw = yaml.safe_load(config.read_text())
    raw["server"]["tls"] = {"certFile": str(tmp_path / "missing.crt"), "keyFile": str(served_key)}
    config.write_text(yaml.safe_dump(raw))
    done = subprocess.run([sys.executable, "-m", "agent.cli", "run", "--config", str(config)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"server.tls: {tmp_path / 'missing.crt'} and {served_key} do not load" in done.stderr

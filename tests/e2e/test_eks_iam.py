"""EKS-style IAM authentication, end to end without AWS. A test cluster's API server authenticates bearer tokens
through a webhook (``--authentication-token-webhook-config-file``) served here by a verifier that checks tokens
the way aws-iam-authenticator and STS do: prefix, STS host, allowed query parameters, the signed
``x-k8s-aws-id`` header, expiry, and the SigV4 signature recomputed with the test credentials (by hand, not with
botocore). A local STS stand-in answers AssumeRole. The agent then syncs with IAM auth alone; a token for another
cluster name or an expired one is refused with a clear error; a rejected token is renewed once and retried."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml

from agent.clusters import aws
from tests.cluster.launcher import TestCluster
from tests.conftest import GitRepo, agent_writes, audit_offset, dynamic_client, live_object, runner_for

REGION = "us-east-1"
CLUSTER = "prod-us"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/gitops-agent"
BASE = ("AKIATESTBASE00000001", "base-secret-key")
ASSUMED = ("ASIATESTASSUMED00001", "assumed-secret-key", "assumed-session-token")
ALLOWED = {
    "Action",
    "Version",
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
}


class Verifier:
    """Token-webhook verifier and STS stand-in; knobs: ``clock_skew`` (seconds added to now) and
    ``reject_next`` (refuse that many reviews before judging)."""

    def __init__(self) -> None:
        self.clock_skew = 0.0
        self.reject_next = 0
        self.assumed = 0
        self.reviews: list[str] = []

    def review(self, token: str) -> tuple[bool, dict[str, Any] | str]:
        self.reviews.append(token)
        if self.reject_next > 0:
            self.reject_next -= 1
            return False, "rejected once"
        if not token.startswith("k8s-aws-v1."):
            return False, "not an EKS token"
        url = urllib.parse.urlsplit(base64.urlsafe_b64decode(token[11:] + "=" * (-len(token[11:]) % 4)).decode())
        if url.scheme != "https" or url.netloc != f"sts.{REGION}.amazonaws.com" or url.path not in ("", "/"):
            return False, f"not the STS endpoint: {url.netloc}"
        params = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        if set(params) - ALLOWED or params.get("Action") != "GetCallerIdentity":
            return False, "unexpected query parameters"
        if "x-k8s-aws-id" not in params.get("X-Amz-SignedHeaders", "").split(";"):
            return False, "x-k8s-aws-id is not signed"
        signed_at = datetime.datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
        now = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=self.clock_skew)
        if now - signed_at > datetime.timedelta(minutes=15):
            return False, "token expired"
        access_key, date, region, service, _ = params["X-Amz-Credential"].split("/")
        secrets = {BASE[0]: BASE[1], ASSUMED[0]: ASSUMED[1]}
        if access_key not in secrets or (access_key == ASSUMED[0] and params.get("X-Amz-Security-Token") != ASSUMED[2]):
            return False, "unknown credentials"
        if not hmac.compare_digest(
            self.signature(params, url.netloc, secrets[access_key], date, region, service), params["X-Amz-Signature"]
        ):
            return False, "signature mismatch (another cluster's token?)"
        if access_key != ASSUMED[0]:
            return False, f"arn:aws:iam::{ACCOUNT}:user/ci is not mapped"
        return True, {
            "username": "gitops-agent:iam",
            "uid": f"aws-iam-authenticator:{ACCOUNT}:gitops-agent",
            "groups": ["gitops-agents"],
            "extra": {"arn": [f"{ROLE}/assumed"]},
        }

    @staticmethod
    def signature(params: dict[str, str], host: str, secret: str, date: str, region: str, service: str) -> str:
        """SigV4 of the presigned GET as STS would recompute it, with the header value this cluster expects."""

        def enc(v: str) -> str:
            return urllib.parse.quote(v, safe="-_.~")

        query = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(params.items()) if k != "X-Amz-Signature")
        headers = f"host:{host}\nx-k8s-aws-id:{CLUSTER}\n"
        canonical = "\n".join(
            ["GET", "/", query, headers, params["X-Amz-SignedHeaders"], hashlib.sha256(b"").hexdigest()]
        )
        scope = f"{date}/{region}/{service}/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", params["X-Amz-Date"], scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = ("AWS4" + secret).encode()
        for part in (date, region, service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def eks(tmp_path_factory: pytest.TempPathFactory) -> Any:
    verifier = Verifier()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path.startswith("/authenticate"):
                review = json.loads(body)
                ok, detail = verifier.review(review["spec"]["token"])
                status: dict[str, Any] = {"authenticated": ok}
                status.update({"user": detail} if ok else {"error": detail})
                self.reply(200, "application/json", json.dumps({**review, "status": status}).encode())
                return
            form = dict(urllib.parse.parse_qsl(body.decode()))
            if form.get("Action") == "AssumeRole" and form.get("RoleArn") == ROLE:
                verifier.assumed += 1
                expires = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                )
                xml = (
                    f'<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>'
                    f"<Credentials><AccessKeyId>{ASSUMED[0]}</AccessKeyId><SecretAccessKey>{ASSUMED[1]}"
                    f"</SecretAccessKey><SessionToken>{ASSUMED[2]}</SessionToken><Expiration>{expires}"
                    f"</Expiration></Credentials><AssumedRoleUser><Arn>{ROLE}/{form.get('RoleSessionName')}</Arn>"
                    f"<AssumedRoleId>AROA:{form.get('RoleSessionName')}</AssumedRoleId></AssumedRoleUser>"
                    "</AssumeRoleResult></AssumeRoleResponse>"
                )
                self.reply(200, "text/xml", xml.encode())
                return
            self.reply(403, "text/xml", b"<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>")

        def reply(self, code: int, kind: str, data: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    tmp = tmp_path_factory.mktemp("eks")
    webhook = tmp / "webhook.kubeconfig"
    webhook.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "verifier", "cluster": {"server": f"http://127.0.0.1:{port}/authenticate"}}],
                "users": [{"name": "apiserver", "user": {}}],
                "contexts": [{"name": "webhook", "context": {"cluster": "verifier", "user": "apiserver"}}],
                "current-context": "webhook",
            }
        )
    )
    tc = TestCluster.start(
        "eks",
        tmp / "cluster",
        [
            f"--apiserver-arg=--authentication-token-webhook-config-file={webhook}",
            "--apiserver-arg=--authentication-token-webhook-cache-ttl=0s",
            "--apiserver-arg=--authentication-token-webhook-version=v1",
        ],
    )
    rbac = dynamic_client(tc).resources.get(api_version="rbac.authorization.k8s.io/v1", kind="ClusterRoleBinding")
    rbac.create(
        body={
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "gitops-agents"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "Group", "name": "gitops-agents", "apiGroup": "rbac.authorization.k8s.io"}],
        }
    )
    yield tc, verifier, port
    tc.stop()
    server.shutdown()


@pytest.fixture
def aws_env(eks: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, port = eks
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", BASE[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", BASE[1])
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{port}/sts")  # AssumeRole goes to the stand-in
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def entry(tc: TestCluster, cluster_name: str = CLUSTER, role: str | None = ROLE) -> dict[str, Any]:
    admin = yaml.safe_load(tc.kubeconfig.read_text())["clusters"][0]["cluster"]
    return {
        "name": "prod-us",
        "paths": ["app"],
        "server": admin["server"],
        "certificateAuthorityData": admin["certificate-authority-data"],
        "aws": {"clusterName": cluster_name, "region": REGION, **({"roleArn": role} if role else {})},
    }


@pytest.fixture
def app(git_repo: GitRepo, namespace: str) -> GitRepo:
    git_repo.write_objects(
        "app/all.yaml",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "via-iam", "namespace": namespace}},
    )
    git_repo.commit()
    return git_repo


def sync(make_config: Any, repo: GitRepo, e: dict[str, Any]) -> Any:
    runner, revision, checkout = runner_for(make_config(repo, [e]), "prod-us", watch=False)
    try:
        return runner.reconcile(revision, checkout)
    finally:
        runner.close()


def test_the_agent_syncs_with_iam_auth_alone(
    eks: Any, aws_env: None, app: GitRepo, make_config: Any, namespace: str
) -> None:
    tc, verifier, _ = eks
    offset = audit_offset(tc)
    result = sync(make_config, app, entry(tc))
    assert result.ok, result.error
    assert live_object(tc, "v1", "ConfigMap", "via-iam", namespace) is not None
    writes = agent_writes(tc, offset)
    assert writes
    assert {w["user"]["username"] for w in writes} == {"gitops-agent:iam"}
    token = verifier.reviews[-1]
    assert token.startswith("k8s-aws-v1.")
    assert "=" not in token


def test_a_token_for_another_cluster_or_without_the_role_is_refused(
    eks: Any, aws_env: None, app: GitRepo, make_config: Any
) -> None:
    tc, _, _ = eks
    for e in (entry(tc, cluster_name="some-other-cluster"), entry(tc, role=None)):
        result = sync(make_config, app, e)
        assert result.error_kind is not None
        assert "rejected the credentials" in (result.error or "")


def test_an_expired_token_is_refused_and_a_rejected_one_renewed_once(
    eks: Any, aws_env: None, app: GitRepo, make_config: Any
) -> None:
    tc, verifier, _ = eks
    verifier.clock_skew = 16 * 60  # every token looks older than 15 minutes
    try:
        result = sync(make_config, app, entry(tc))
        assert result.error_kind is not None
        assert "rejected the credentials" in (result.error or "")
    finally:
        verifier.clock_skew = 0
    verifier.reject_next = 1  # the first token is refused once: renewed, the retry passes
    assumed = verifier.assumed
    result = sync(make_config, app, entry(tc))
    assert result.ok, result.error
    assert verifier.assumed >= assumed + 2  # the first token, and the renewal after the 401


def test_tokens_are_cached_until_near_expiry(aws_env: None) -> None:
    from agent import config

    source = aws.EksToken(config.AwsConfig(cluster_name=CLUSTER, region=REGION))
    first = source.get()
    assert source.get() == first  # cached
    source._expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=aws.REFRESH_BEFORE - 1)
    import time

    time.sleep(1.1)  # X-Amz-Date has a one-second resolution
    assert source.get() != first  # renewed before it would expire

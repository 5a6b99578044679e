"""EKS authentication with an AWS IAM identity: the bearer token ``aws eks get-token`` makes, from botocore.

The token is ``k8s-aws-v1.`` followed by the unpadded base64url of a presigned STS ``GetCallerIdentity`` URL whose
signature covers the header ``x-k8s-aws-id: <cluster name>`` (so it is valid for that cluster only). EKS's
authenticator (aws-iam-authenticator) replays it to STS and maps the caller's ARN to a Kubernetes user; it accepts
a token for 15 minutes after its X-Amz-Date. Credentials come from botocore's chain (environment, shared profile,
web identity / IRSA, instance metadata), optionally exchanged with STS ``AssumeRole`` for ``roleArn``.

Tokens are cached and renewed :data:`REFRESH_BEFORE` seconds before they expire; ``agent.clusters.connection``
also renews once and retries when the API server answers 401. Used by ``agent.clusters.connection``.
"""

from __future__ import annotations

import base64
import datetime
import threading
from typing import Any

from agent import config
from reconcilers import errors

TOKEN_PREFIX = "k8s-aws-v1."  # noqa: S105 - the token format prefix, not a secret
TOKEN_LIFETIME = 15 * 60.0
"""Seconds EKS accepts a token for after it was signed."""
REFRESH_BEFORE = 60.0
"""A cached token is renewed this many seconds before it would expire."""
CLUSTER_HEADER = "x-k8s-aws-id"


class EksToken:
    """Tokens for one EKS cluster (``aws`` of a cluster's config). Thread-safe."""

    def __init__(self, aws: config.AwsConfig) -> None:
        self.aws = aws
        self._token = ""
        self._expires = datetime.datetime.min.replace(tzinfo=datetime.UTC)
        self._lock = threading.Lock()

    def get(self, *, force: bool = False) -> str:
        """A token valid for at least :data:`REFRESH_BEFORE` more seconds (a fresh one when ``force``).

        Raises :class:`errors.ClusterError` when no AWS credentials can be had or STS refuses the role.
        """
        with self._lock:
            now = datetime.datetime.now(datetime.UTC)
            if force or not self._token or (self._expires - now).total_seconds() < REFRESH_BEFORE:
                self._token = self._new_token()
                self._expires = now + datetime.timedelta(seconds=TOKEN_LIFETIME)
            return self._token

    def _new_token(self) -> str:
        import botocore.session  # imported on first use: one-shot commands without EKS clusters skip its 55 ms

        session = botocore.session.Session(profile=self.aws.profile) if self.aws.profile else botocore.session.Session()
        region = self.aws.region
        try:
            credentials: Any = session.get_credentials()
            if credentials is None:
                raise errors.ClusterError(
                    f"EKS {self.aws.cluster_name}: no AWS credentials found (env, profile, "
                    "web identity or instance metadata)"
                )
            if self.aws.role_arn:
                sts = session.create_client("sts", region_name=region)
                assumed = sts.assume_role(RoleArn=self.aws.role_arn, RoleSessionName=self.aws.session_name)
                c = assumed["Credentials"]
                session = botocore.session.Session()
                session.set_credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
            # The presigned URL must name the real regional STS endpoint: EKS replays it there.
            presigner = session.create_client(
                "sts", region_name=region, endpoint_url=f"https://sts.{region}.amazonaws.com"
            )
            presigner.meta.events.register("provide-client-params.sts.GetCallerIdentity", _take_cluster_name)
            presigner.meta.events.register("before-sign.sts.GetCallerIdentity", _add_cluster_header)
            url = presigner.generate_presigned_url(
                "get_caller_identity", Params={"ClusterName": self.aws.cluster_name}, ExpiresIn=60, HttpMethod="GET"
            )
        except errors.ClusterError:
            raise
        except Exception as e:  # botocore raises many types (ClientError, NoCredentialsError, ...)
            raise errors.ClusterError(f"EKS {self.aws.cluster_name}: could not make a token: {e}") from None
        return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def _take_cluster_name(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    context[CLUSTER_HEADER] = params.pop("ClusterName")


def _add_cluster_header(request: Any, **_: Any) -> None:
    request.headers[CLUSTER_HEADER] = request.context[CLUSTER_HEADER]

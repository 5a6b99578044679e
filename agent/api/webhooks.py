"""Push webhooks: who may trigger a fetch, and whether a push concerns the tracked ref.

- GitHub: ``X-Hub-Signature-256: sha256=<hex>``, HMAC-SHA256 of the raw body with the shared secret (GitHub docs,
  "Validating webhook deliveries"); ``X-GitHub-Event: push`` (``ping`` is answered, nothing triggered).
- GitLab: ``X-Gitlab-Token`` equal to the secret; ``X-Gitlab-Event: Push Hook`` or ``Tag Push Hook``.

A pull request event (GitHub ``pull_request``, GitLab ``Merge Request Hook``) makes the pull request generators of
app sets list again, and fetches the sources of that repository (whatever their ref: the head commit is there).
- Generic: ``X-Signature-256: sha256=<hex>``, HMAC-SHA256 of the raw body; a JSON body with ``ref`` (optional).

Every comparison is constant-time (``hmac.compare_digest``). Only pushes to the tracked ref of a source whose
repository the payload names trigger, and only those sources are fetched (a branch ``main`` matches
``refs/heads/main``, a tag ``v1`` matches ``refs/tags/v1``; a pinned commit matches nothing).
Used by ``agent.api.server``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import urllib.parse
from collections.abc import Mapping

PROVIDERS = ("github", "gitlab", "generic")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What to do with a delivery: ``status`` (HTTP code), ``trigger`` (fetch now), a ``reason``, the ``sources``
    to fetch and ``pull_requests`` (list the pull request generators' pull requests again)."""

    status: int
    trigger: bool
    reason: str
    sources: tuple[str, ...] = ()
    pull_requests: bool = False


def _hmac_ok(secret: bytes, body: bytes, header: str | None) -> bool:
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), (header or "").encode())


def tracks(source_ref: str, pushed: str) -> bool:
    """True when a push of ``pushed`` (``refs/heads/x``, ``refs/tags/x``) moves ``source_ref``."""
    return pushed in (f"refs/heads/{source_ref}", f"refs/tags/{source_ref}", source_ref)


def _repository_urls(provider: str, payload: Mapping[str, object]) -> list[str]:
    """Every URL the payload gives for the pushed repository (GitHub ``repository.clone_url``/``ssh_url``/
    ``html_url``/``git_url``; GitLab ``project.git_http_url``/``git_ssh_url``/``web_url``; generic
    ``repository`` as a string or ``{url}``); empty when it names none."""
    found: list[object] = []
    repo = payload.get("repository")
    if provider == "github" and isinstance(repo, dict):
        found = [repo.get(k) for k in ("clone_url", "ssh_url", "html_url", "git_url")]
    elif provider == "gitlab":
        project = payload.get("project")
        if isinstance(project, dict):
            found = [project.get(k) for k in ("git_http_url", "git_ssh_url", "web_url")]
    elif isinstance(repo, str):
        found = [repo]
    elif isinstance(repo, dict):
        found = [repo.get("url")]
    return [u for u in found if isinstance(u, str) and u]


def normalize_url(url: str) -> str:
    """A repository URL reduced to ``host/path`` (lowercase host, no scheme, user, port, ``.git`` or trailing
    slash; ``git@host:path`` as ``host/path``), so the HTTPS, SSH and web URLs of one repository compare equal."""
    text = url.strip()
    if "://" not in text and ":" in text and "@" in text.split(":", 1)[0]:  # scp-like: git@host:owner/repo
        user_host, _, path = text.partition(":")
        text = f"ssh://{user_host}/{path}"
    parsed = urllib.parse.urlsplit(text if "://" in text else f"file://{text}")
    host = (parsed.hostname or "").lower()
    path = parsed.path.rstrip("/").removesuffix(".git")
    return f"{host}{path}"


def same_repository(a: str, b: str) -> bool:
    """True when the URLs ``a`` and ``b`` name one repository (see :func:`normalize_url`)."""
    return normalize_url(a) == normalize_url(b)


def _payload(body: bytes) -> dict[str, object] | Verdict:
    """The body as a JSON object (an empty body: ``{}``), or the 400 verdict saying why it is none."""
    try:
        payload = json.loads(body) if body.strip() else {}
    except ValueError:
        return Verdict(400, False, "body is not JSON")
    if not isinstance(payload, dict):
        return Verdict(400, False, "body is not a JSON object")
    return payload


def _pull_request(provider: str, body: bytes, sources: Mapping[str, tuple[str, str]]) -> Verdict:
    """A pull request (GitHub) or merge request (GitLab) was opened, pushed to, relabelled or closed: the pull
    request generators list again, and the sources of its repository are fetched (its head commit is in them)."""
    payload = _payload(body)
    if isinstance(payload, Verdict):
        return payload
    urls = _repository_urls(provider, payload)
    moved = tuple(n for n, (url, _) in sources.items() if urls and any(same_repository(url, u) for u in urls))
    fetching = f"; fetching {', '.join(moved)}" if moved else ""
    return Verdict(202, True, f"pull request event: listing pull requests again{fetching}", moved, True)


def judge(
    provider: str,
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    sources: Mapping[str, tuple[str, str]],
) -> Verdict:
    """Authenticate a delivery of ``provider`` and decide which sources it moves (``sources``: name ->
    (url, ref)).

    ``headers`` must be case-insensitive (as Starlette's are). 401 for a missing or wrong signature or token,
    400 for a body that is not a JSON object, 200 without trigger for other events, other refs and other
    repositories, 202 with trigger (``Verdict.sources`` naming the sources to fetch) for a push to a tracked ref
    of a source's repository. A payload that names no repository matches every source by ref; a generic push
    without ``ref`` matches every source of its repository.
    """
    if provider == "gitlab":
        ok = hmac.compare_digest(secret, headers.get("x-gitlab-token", "").encode())
        event = headers.get("x-gitlab-event", "")
        is_push = event in ("Push Hook", "Tag Push Hook")
        is_pull = event == "Merge Request Hook"
    elif provider == "github":
        ok = _hmac_ok(secret, body, headers.get("x-hub-signature-256"))
        event = headers.get("x-github-event", "")
        is_push = event == "push"
        is_pull = event == "pull_request"
    else:
        ok = _hmac_ok(secret, body, headers.get("x-signature-256"))
        event, is_push, is_pull = "push", True, False
    if not ok:
        return Verdict(401, False, "signature or token missing or wrong")
    if is_pull:
        return _pull_request(provider, body, sources)
    if not is_push:
        return Verdict(200, False, f"event {event or '(none)'} does not trigger a fetch")
    payload = _payload(body)
    if isinstance(payload, Verdict):
        return payload
    ref = payload.get("ref")
    if ref is not None and not isinstance(ref, str):
        return Verdict(400, False, "ref is not a string")
    if ref is None and provider != "generic":
        return Verdict(200, False, "the push names no ref")
    urls = _repository_urls(provider, payload)
    repo_sources = [n for n, (url, _) in sources.items() if not urls or any(same_repository(url, u) for u in urls)]
    if not repo_sources:
        return Verdict(200, False, f"repository {urls[0]} is not a source of this agent")
    moved = tuple(n for n in repo_sources if ref is None or tracks(sources[n][1], ref))
    if not moved:
        return Verdict(200, False, f"ref {ref!r} is not a tracked ref of the sources {', '.join(repo_sources)}")
    return Verdict(202, True, f"push to {ref or 'the repository'}: fetching {', '.join(moved)}", moved)

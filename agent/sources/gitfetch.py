"""The git fetch, in a child process that the agent can always end.

libgit2 offers no overall deadline for a transfer, and a remote that accepts a connection and then never answers
(a stalled proxy or load balancer) keeps a fetch waiting for ever; a thread cannot be stopped. So
:func:`fetch` runs ``python -m agent.sources.gitfetch`` with the source's settings on stdin, waits at most
``source.timeout`` seconds (Flux's GitRepository default is 60 s) and kills the child when time is up. The parent
holds no lock the readers of the clone need: a fetch only adds objects (written to temporary files and renamed
into place) and moves refs (each written to ``<ref>.lock`` and renamed), so a checkout reading the clone at the
same time sees either the old or the new ref, never half of one (git's own locking protocol, gitrepository-layout(5)).

In the child: open the bare clone in ``source.cacheDir`` (or create it), remove ``*.lock`` files a killed fetch
left behind (under an exclusive ``flock`` of ``.gitops-agent-fetch.lock``, which every fetch of that clone holds,
so no live fetch's lock is removed), fetch branches and tags, resolve ``source.ref`` and print ``{"sha": ...}``. A
fetch that fails is retried once as a fresh clone beside the old one, swapped in only when it works, which heals a
corrupt clone and costs nothing when the remote is down. Errors are printed as ``{"error": ...}`` without
credentials. Used by :mod:`agent.sources.git`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import pygit2

from reconcilers import errors, resources

if TYPE_CHECKING:  # the child process never imports the config's models (0.13 s of every fetch's start)
    from agent import config

log = logging.getLogger(__name__)

REFSPECS = ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"]
PULL_REQUEST_REFSPECS = [
    "+refs/pull/*/head:refs/remotes/origin/pull/*",
    "+refs/merge-requests/*/head:refs/remotes/origin/merge-requests/*",
]
"""With ``fetchPullRequestRefs``: the head of every pull request (GitHub's ``refs/pull/<n>/head``) and merge
request (GitLab's ``refs/merge-requests/<iid>/head``), from forks too."""
_LOCK = ".gitops-agent-fetch.lock"
_POLL = 0.5
"""Seconds between checks of ``stop`` while a fetch runs."""


def fetch(source: config.SourceConfig, stop: threading.Event | None = None) -> resources.Revision:
    """Fetch ``source`` into its clone in a child process and resolve ``source.ref``, within ``source.timeout``
    seconds, or until ``stop`` is set (shutdown). Raises :class:`errors.FetchError` (timed out or stopped: the
    child is killed; failed: git's reason)."""
    request = {
        "url": source.url,
        "dir": str(source.clone_dir()),
        "ref": source.ref,
        "tokenEnv": source.token_env,
        "sshKeyFile": source.ssh_key_file,
        "pullRequestRefs": source.fetch_pull_request_refs,
    }
    where = f"fetch {redact(source.url)} ({source.ref})"
    if _local_path(source.url) and not os.path.exists(source.url):  # libgit2 would say "unsupported URL protocol"
        raise errors.FetchError(
            f"{where}: {source.url} does not exist (a local repository path; a remote needs https://, ssh:// or "
            "git@host:path)"
        )
    child = subprocess.Popen(
        [sys.executable, "-m", "agent.sources.gitfetch"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: a kill ends any helper it started (ssh) too
    )
    deadline = time.monotonic() + source.timeout
    payload: bytes | None = json.dumps(request).encode()
    try:
        while True:
            try:
                out, err = child.communicate(payload, timeout=min(_POLL, max(0.0, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                payload = None  # sent with the first call; communicate() may be called again after a timeout
                if stop is not None and stop.is_set():
                    raise errors.FetchError(f"{where}: stopped (the agent is shutting down)") from None
                if time.monotonic() >= deadline:
                    raise errors.FetchError(
                        f"{where}: no answer within source.timeout ({source.timeout:g}s); fetch stopped"
                    ) from None
    except BaseException:
        _kill(child)
        raise
    try:
        answer: dict[str, Any] = json.loads(out.decode() or "{}")
    except ValueError:
        answer = {}
    if "sha" in answer:
        if answer.get("recloned"):
            log.warning("clone cache %s failed (%s): cloned it again", source.clone_dir(), answer["recloned"])
        return resources.Revision(str(answer["sha"]), source.ref)
    if answer.get("refused"):  # the agent's own words (a ref that does not resolve, missing credentials)
        raise errors.FetchError(str(answer["refused"]))
    reason = answer.get("error") or redact(err.decode(errors="replace").strip()[-500:]) or f"exit {child.returncode}"
    raise errors.FetchError(f"{where}: {reason}")


def _local_path(url: str) -> bool:
    """True for a ``source.url`` that names a local path (no ``scheme://`` and not scp-like ``user@host:path``)."""
    return "://" not in url and not ("@" in url and ":" in url)


def _kill(child: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


class _Callbacks(pygit2.RemoteCallbacks):
    """Credentials for HTTPS (token from the environment) and SSH (key file); never printed."""

    def __init__(self, request: dict[str, Any]) -> None:
        super().__init__()
        self._request = request

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: pygit2.enums.CredentialType
    ) -> pygit2.Username | pygit2.UserPass | pygit2.Keypair:
        key_file, token_env = self._request.get("sshKeyFile"), self._request.get("tokenEnv")
        if key_file and allowed_types & pygit2.enums.CredentialType.SSH_KEY:
            key = os.path.expanduser(key_file)
            return pygit2.Keypair(username_from_url or "git", key + ".pub", key, "")
        if token_env and allowed_types & pygit2.enums.CredentialType.USERPASS_PLAINTEXT:
            token = os.environ.get(token_env)
            if not token:
                raise errors.FetchError(f"source.tokenEnv: environment variable {token_env} is not set")
            return pygit2.UserPass(username_from_url or "x-access-token", token)
        raise errors.FetchError(f"{redact(url)} asks for credentials: set source.tokenEnv or source.sshKeyFile")


def _child(request: dict[str, Any]) -> dict[str, str]:
    """Fetch and resolve in this (child) process; returns ``{"sha"}`` (and ``"recloned"``, why, when the clone
    was made again). Raises FetchError or a pygit2 error."""
    directory = pathlib.Path(request["dir"])
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f".{directory.name}{_LOCK}", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one fetch of this clone at a time, across processes
        try:
            repo, unusable = _open_or_init(directory, request["url"])
            _remove_stale_locks(directory)
            repo.remotes["origin"].fetch(_refspecs(request), callbacks=_Callbacks(request))
            answer = {"sha": str(resolve(repo, request["ref"]))}
            return {**answer, "recloned": unusable} if unusable else answer
        except errors.FetchError:
            raise
        except (pygit2.GitError, KeyError, ValueError, OSError) as e:
            try:
                return {"sha": _reclone(directory, request), "recloned": redact(str(e))}
            except (pygit2.GitError, KeyError, ValueError, OSError):
                raise errors.FetchError(str(e)) from e


def _refspecs(request: dict[str, Any]) -> list[str]:
    return REFSPECS + (PULL_REQUEST_REFSPECS if request.get("pullRequestRefs") else [])


def _open_or_init(directory: pathlib.Path, url: str) -> tuple[pygit2.Repository, str]:
    """The clone (made anew when it cannot be opened), and why it was made anew ("" when it was not)."""
    unusable = ""
    if directory.exists():
        try:
            repo = pygit2.Repository(str(directory))
            if "origin" in [r.name for r in repo.remotes]:
                if repo.remotes["origin"].url != url:  # source.url changed: follow it
                    repo.remotes.set_url("origin", url)
                return repo, ""
            unusable = "it has no remote origin"
        except pygit2.GitError as e:
            unusable = f"unusable: {e}"
        shutil.rmtree(directory)
    repo = pygit2.init_repository(str(directory), bare=True)
    repo.remotes.create("origin", url)
    return repo, unusable


def _remove_stale_locks(directory: pathlib.Path) -> None:
    """``*.lock`` files of a fetch that was killed (only fetches write the clone, and this one holds the flock)."""
    for stale in directory.rglob("*.lock"):
        stale.unlink(missing_ok=True)


def _reclone(directory: pathlib.Path, request: dict[str, Any]) -> str:
    fresh = directory.parent / f".{directory.name}.reclone"
    shutil.rmtree(fresh, ignore_errors=True)
    try:
        repo = pygit2.init_repository(str(fresh), bare=True)
        repo.remotes.create("origin", request["url"])
        repo.remotes["origin"].fetch(_refspecs(request), callbacks=_Callbacks(request))
        sha = str(resolve(repo, request["ref"]))
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    shutil.rmtree(directory, ignore_errors=True)
    os.rename(fresh, directory)
    return sha


def resolve(repo: pygit2.Repository, ref: str) -> pygit2.Oid:
    """The commit of a branch, tag, full ref name or (abbreviated) commit SHA. Raises FetchError."""
    for name in (f"refs/remotes/origin/{ref}", f"refs/tags/{ref}", ref):
        try:
            reference = repo.references.get(name)
        except pygit2.InvalidSpecError:
            reference = None
        if reference is not None:
            return reference.peel(pygit2.Commit).id
    try:
        return repo.revparse_single(ref).peel(pygit2.Commit).id
    except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
        raise errors.FetchError(f"ref {ref!r} is not a branch, tag or commit of the source") from None


def redact(text: str) -> str:
    """``text`` with the userinfo of any URL in it removed (``https://user:token@host`` -> ``https://host``)."""
    return re.sub(r"(://)[^/@\s]+@", r"\1", text)


def main() -> int:
    """The child's entry point: the request as JSON on stdin, the answer as JSON on stdout."""
    request = json.loads(sys.stdin.read())
    try:
        print(json.dumps(_child(request)))
        return 0
    except errors.FetchError as e:
        print(json.dumps({"refused" if e.__cause__ is None else "error": redact(str(e))}))
        return 1
    except (pygit2.GitError, KeyError, ValueError, OSError) as e:
        print(json.dumps({"error": redact(str(e))}))
        return 1


if __name__ == "__main__":
    sys.exit(main())

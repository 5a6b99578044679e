"""Signed revisions: a git source with ``verify`` deploys only a commit (``mode: head``) or an annotated tag
(``mode: tag``) signed by one of its keys, as Flux's ``GitRepository.spec.verify`` does.

``mode: all-since`` checks every commit after ``since`` up to the revision (Flux has no such mode: it verifies the
head or the tag only; an unsigned commit under a signed merge would pass there).

The signature and the signed payload come from the clone (pygit2: a commit's ``gpgsig`` header; an annotated
tag's signature block appended to its message, as ``git tag -s`` writes it), and are checked by the field's own
tools against the configured keys alone:

- ``type: ssh``: OpenSSH's ``ssh-keygen -Y verify -n git`` with an allowed-signers file of the keys (git's
  ``gpg.format=ssh`` signatures: the ``git`` namespace);
- ``type: gpg``: GnuPG's ``gpg --verify`` in a keyring of its own holding only the keys (a ``GOODSIG`` status line
  and exit code 0 needed).

Each tool run is bounded by :data:`TIMEOUT` seconds (its process group killed after). Every failure raises
FetchError ``Unverified (<sha>: <reason>)``; the caller keeps the last verified revision. Used by
:mod:`agent.sources.git`.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import tempfile
from collections.abc import Collection

import pygit2

from agent import config
from agent.sources import gitfetch, tools
from reconcilers import errors

TIMEOUT = 30.0
"""Seconds one ``ssh-keygen`` or ``gpg`` run may take."""
_LIMITS = tools.Limits(timeout=TIMEOUT, memory=0)
_BEGIN = (b"-----BEGIN SSH SIGNATURE-----", b"-----BEGIN PGP SIGNATURE-----")


MAX_COMMITS = 1000
"""Commits ``mode: all-since`` checks at most for one revision (more fail it: move ``since`` forward)."""


def verify(
    repo: pygit2.Repository,
    sha: str,
    ref: str,
    spec: config.SourceVerify,
    where: str,
    known: Collection[str] = frozenset(),
) -> set[str]:
    """Check that commit ``sha`` (``mode: head``), the annotated tag ``ref`` pointing at it (``mode: tag``), or
    every commit after ``spec.since`` up to it (``mode: all-since``) is signed by one of ``spec.keys``; commits in
    ``known`` were checked before and are not again. Gives the commits checked now. ``where`` names the source in
    messages. Raises FetchError."""
    short = sha[:12]
    keys = [k.value(f"{where}.verify.keys[{i}]") for i, k in enumerate(spec.keys)]
    if spec.mode == "tag":
        payload, signature = _tag(repo, ref, sha, short)
        reason = _check(spec, payload, signature, keys)
        if reason is not None:
            raise errors.FetchError(f"Unverified ({short}: {reason})")
        return set()
    commits = [sha] if spec.mode == "head" else _since(repo, sha, spec.since or "", short)
    checked: set[str] = set()
    for one in commits:
        if one in known:
            continue
        commit = repo.get(one)
        if not isinstance(commit, pygit2.Commit):
            raise errors.FetchError(f"Unverified ({short}: {one[:12]} is not a commit of the clone)")
        found = commit.gpg_signature
        which = "the commit" if one == sha else f"commit {one[:12]} since {spec.since}"
        if not found or not found[0]:
            raise errors.FetchError(f"Unverified ({short}: {which} is not signed)")
        reason = _check(spec, found[1], found[0], keys)
        if reason is not None:
            raise errors.FetchError(
                f"Unverified ({short}: {which}: {reason})" if one != sha else f"Unverified ({short}: {reason})"
            )
        checked.add(one)
    return checked


def _check(spec: config.SourceVerify, payload: bytes, signature: bytes, keys: list[bytes]) -> str | None:
    return _ssh(payload, signature, keys) if spec.type == "ssh" else _gpg(payload, signature, keys)


def _since(repo: pygit2.Repository, sha: str, since: str, short: str) -> list[str]:
    """The commits after ``since`` up to ``sha`` (``sha`` first), which must descend from it."""
    try:
        base = str(gitfetch.resolve(repo, since))
    except errors.FetchError:
        raise errors.FetchError(f"Unverified ({short}: verify.since {since!r} is not in the clone)") from None
    if base == sha:
        return []
    if not repo.descendant_of(sha, base):
        raise errors.FetchError(f"Unverified ({short}: it does not descend from verify.since {since})")
    walker = repo.walk(sha, pygit2.enums.SortMode.TOPOLOGICAL)
    walker.hide(base)
    found = []
    for commit in walker:
        found.append(str(commit.id))
        if len(found) > MAX_COMMITS:
            raise errors.FetchError(
                f"Unverified ({short}: over {MAX_COMMITS} commits since {since}; move verify.since forward)"
            )
    return found


def _tag(repo: pygit2.Repository, ref: str, sha: str, short: str) -> tuple[bytes, bytes]:
    """The signed payload and signature of annotated tag ``ref``, which must point at ``sha``."""
    name = ref.removeprefix("refs/tags/")
    found = repo.references.get(f"refs/tags/{name}")
    if found is None:
        raise errors.FetchError(f"Unverified ({short}: verify.mode tag needs ref to be a tag; {ref!r} is not one)")
    tag = repo.get(found.target)
    if not isinstance(tag, pygit2.Tag):
        raise errors.FetchError(f"Unverified ({short}: tag {name} is a lightweight tag; it cannot be signed)")
    if str(tag.peel(pygit2.Commit).id) != sha:
        raise errors.FetchError(f"Unverified ({short}: tag {name} does not point at it)")
    raw = tag.read_raw()
    at = min((i for i in (raw.find(b) for b in _BEGIN) if i >= 0), default=-1)
    if at < 0:
        raise errors.FetchError(f"Unverified ({short}: tag {name} is not signed)")
    return raw[:at], raw[at:]


def _ssh(payload: bytes, signature: bytes, keys: list[bytes]) -> str | None:
    """None when ``signature`` over ``payload`` is by one of the SSH public ``keys``, else why not."""
    if not signature.startswith(_BEGIN[0]):
        return "not an SSH signature (verify.type is ssh)"
    program = shutil.which("ssh-keygen")
    if program is None:
        return "ssh-keygen is not installed (OpenSSH's openssh-client)"
    with tempfile.TemporaryDirectory(prefix="gitops-agent-verify-") as tmp:
        allowed = pathlib.Path(tmp) / "allowed_signers"
        allowed.write_bytes(b"".join(b'* namespaces="git" ' + k.strip() + b"\n" for k in keys))
        (pathlib.Path(tmp) / "sig").write_bytes(signature)
        command = [program, "-Y", "verify", "-f", str(allowed), "-I", "gitops-agent", "-n", "git", "-s", f"{tmp}/sig"]
        done = _run(command, payload)
    if done is None:
        return f"ssh-keygen did not answer within {TIMEOUT:g} s"
    if done.returncode != 0:
        said = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
        return "not signed by a key of verify.keys" + (f" (ssh-keygen: {said[-1][:200]})" if said else "")
    return None


def _gpg(payload: bytes, signature: bytes, keys: list[bytes]) -> str | None:
    """None when ``signature`` over ``payload`` is by one of the OpenPGP public ``keys``, else why not."""
    if not signature.startswith(_BEGIN[1]):
        return "not an OpenPGP signature (verify.type is gpg)"
    program = shutil.which("gpg")
    if program is None:
        return "gpg is not installed (GnuPG's gnupg)"
    with tempfile.TemporaryDirectory(prefix="gitops-agent-verify-") as home:
        os.chmod(home, 0o700)
        base = [program, "--homedir", home, "--batch", "--no-tty", "--no-autostart"]
        for i, key in enumerate(keys):
            done = _run([*base, "--import"], key)
            if done is None or done.returncode != 0:
                return f"verify.keys[{i}] is not an OpenPGP public key gpg can import"
        (pathlib.Path(home) / "sig.asc").write_bytes(signature)
        (pathlib.Path(home) / "payload").write_bytes(payload)
        done = _run([*base, "--status-fd", "1", "--verify", f"{home}/sig.asc", f"{home}/payload"], b"")
    if done is None:
        return f"gpg did not answer within {TIMEOUT:g} s"
    status = done.stdout.decode(errors="replace")
    if done.returncode != 0 or "[GNUPG:] GOODSIG" not in status:
        if "[GNUPG:] NO_PUBKEY" in status or "[GNUPG:] ERRSIG" in status:
            return "not signed by a key of verify.keys"
        return "the signature does not verify" + (" (BADSIG)" if "[GNUPG:] BADSIG" in status else "")
    return None


def _run(command: list[str], stdin: bytes) -> subprocess.CompletedProcess[bytes] | None:
    """``command`` fed ``stdin``, bounded by :data:`TIMEOUT` (None when it ran out)."""
    try:
        return tools.run_bytes(command, _LIMITS, stdin=stdin)
    except tools.RenderTimeoutError:
        return None
    except OSError:
        return None

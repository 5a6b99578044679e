"""Signed revisions with the real tools: commits and tags signed by ``git`` with an SSH key (``ssh-keygen -Y
sign``) and with GnuPG, checked by ``ssh-keygen -Y verify`` and ``gpg --verify``. A source with ``verify`` takes a
commit signed by one of its keys; an unsigned commit, one signed by another key, a lightweight or unsigned tag is
refused as ``Unverified (<sha>: <reason>)`` and the last verified revision stays the source's."""

from __future__ import annotations

import os
import pathlib
import subprocess
from typing import Any

import pytest

from agent import config
from agent.sources import git
from reconcilers import errors
from tests.conftest import GitRepo


def _ssh_key(path: pathlib.Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True)
    return str(path)


def _gpg_key(home: pathlib.Path, email: str) -> str:
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(
        ["gpg", "--batch", "--passphrase", "", "--quick-gen-key", f"Signer <{email}>", "ed25519", "sign", "never"],
        check=True, env=env, capture_output=True,
    )  # fmt: skip
    return email


class Signer:
    """Commits (and tags) of ``repo`` signed as ``kind`` (ssh or gpg) with one key or another."""

    def __init__(self, repo: GitRepo, tmp: pathlib.Path, kind: str) -> None:
        self.repo, self.kind, self.tmp = repo, kind, tmp
        if kind == "ssh":
            self.keys = [_ssh_key(tmp / "trusted"), _ssh_key(tmp / "other")]
        else:
            self.keys = [_gpg_key(tmp / "gnupg-trusted", "trusted@x"), _gpg_key(tmp / "gnupg-other", "other@x")]

    def public(self) -> pathlib.Path:
        """The trusted key's public half, as verify.keys reads it."""
        if self.kind == "ssh":
            return pathlib.Path(self.keys[0] + ".pub")
        out = self.tmp / "trusted.asc"
        home = self.tmp / "gnupg-trusted"
        exported = subprocess.run(
            ["gpg", "--homedir", str(home), "--armor", "--export", self.keys[0]], check=True, capture_output=True
        ).stdout
        out.write_bytes(exported)
        return out

    def _options(self, key: int) -> tuple[list[str], dict[str, str]]:
        if self.kind == "ssh":
            return ["-c", "gpg.format=ssh", "-c", f"user.signingkey={self.keys[key]}"], {}
        home = self.tmp / ("gnupg-trusted" if key == 0 else "gnupg-other")
        return ["-c", "gpg.format=openpgp", "-c", f"user.signingkey={self.keys[key]}"], {"GNUPGHOME": str(home)}

    def commit(self, message: str, key: int | None) -> str:
        self.repo.write("notes.txt", f"{message}\n")  # a change of its own, outside any app
        self.repo.git("add", "-A")
        if key is None:
            self.repo.git("commit", "-q", "-m", message)
        else:
            options, env = self._options(key)
            subprocess.run(
                ["git", *options, "commit", "-q", "-S", "-m", message], cwd=self.repo.path, check=True,
                env={**os.environ, **env}, capture_output=True,
            )  # fmt: skip
        return self.repo.git("rev-parse", "HEAD")

    def tag(self, name: str, key: int | None) -> None:
        if key is None:
            self.repo.git("tag", name)
            return
        options, env = self._options(key)
        subprocess.run(
            ["git", *options, "tag", "-s", "-m", name, name], cwd=self.repo.path, check=True,
            env={**os.environ, **env}, capture_output=True,
        )  # fmt: skip


def _source(
    repo: GitRepo, tmp: pathlib.Path, kind: str, key: pathlib.Path, ref: str = "main", **extra: Any
) -> git.GitSource:
    spec = {"type": kind, "keys": [{"file": str(key)}], **extra}
    doc = {"url": str(repo.path), "ref": ref, "cacheDir": str(tmp / "cache"), "verify": spec}
    return git.GitSource(config.SourceConfig.model_validate(doc))


@pytest.mark.parametrize("kind", ["ssh", "gpg"])
def test_only_commits_signed_by_a_trusted_key_are_taken(git_repo: GitRepo, tmp_path: pathlib.Path, kind: str) -> None:
    signer = Signer(git_repo, tmp_path, kind)
    signed = signer.commit("one", key=0)
    source = _source(git_repo, tmp_path, kind, signer.public())
    assert source.fetch().sha == signed
    unsigned = signer.commit("two", key=None)
    with pytest.raises(errors.FetchError, match=rf"Unverified \({unsigned[:12]}: the commit is not signed\)"):
        source.fetch()
    assert source.last_good is not None
    assert source.last_good.sha == signed  # the last verified revision stays
    assert (source.last_error or "").startswith("Unverified")
    foreign = signer.commit("three", key=1)
    with pytest.raises(errors.FetchError, match=rf"Unverified \({foreign[:12]}: not signed by a key of verify.keys"):
        source.fetch()
    with pytest.raises(errors.FetchError, match="Unverified"):
        source.resolve(foreign)  # an app pinned to it is not deployed either
    again = signer.commit("four", key=0)
    assert source.fetch().sha == again
    assert source.resolve(signed).sha == signed


def test_a_signature_of_the_other_kind_is_refused(git_repo: GitRepo, tmp_path: pathlib.Path) -> None:
    signer = Signer(git_repo, tmp_path, "ssh")
    sha = signer.commit("one", key=0)
    gpg_key = tmp_path / "not-used.asc"
    gpg_key.write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")
    with pytest.raises(errors.FetchError, match=rf"Unverified \({sha[:12]}: not an OpenPGP signature"):
        _source(git_repo, tmp_path, "gpg", gpg_key).fetch()


@pytest.mark.parametrize("kind", ["ssh", "gpg"])
def test_tag_mode_takes_a_signed_annotated_tag_only(git_repo: GitRepo, tmp_path: pathlib.Path, kind: str) -> None:
    signer = Signer(git_repo, tmp_path, kind)
    sha = signer.commit("one", key=None)  # the commit itself unsigned: the tag vouches for it
    signer.tag("v1", key=0)
    signer.tag("v1-light", key=None)
    signer.tag("v1-other", key=1)
    assert _source(git_repo, tmp_path, kind, signer.public(), mode="tag", ref="v1").fetch().sha == sha
    for ref, reason in [("v1-light", "lightweight tag"), ("v1-other", "not signed by a key"), ("main", "is not one")]:
        with pytest.raises(errors.FetchError, match=reason):
            _source(git_repo, tmp_path, kind, signer.public(), mode="tag", ref=ref).fetch()


def test_verify_is_for_git_sources_and_needs_keys() -> None:
    with pytest.raises(ValueError, match="verify with type ssh or gpg is for git sources"):
        config.SourceConfig.model_validate(
            {"url": "https://charts.example", "type": "helm", "verify": {"type": "ssh", "keys": [{"env": "K"}]}}
        )
    with pytest.raises(ValueError, match="keys"):
        config.SourceConfig.model_validate({"url": "/x", "verify": {"type": "ssh", "keys": []}})
    with pytest.raises(ValueError, match="mode"):
        config.SourceConfig.model_validate(
            {"url": "/x", "verify": {"type": "ssh", "mode": "all", "keys": [{"env": "K"}]}}
        )


@pytest.mark.parametrize("kind", ["ssh", "gpg"])
def test_all_since_needs_every_commit_after_the_base_signed(
    git_repo: GitRepo, tmp_path: pathlib.Path, kind: str
) -> None:
    """``mode: all-since``: an unsigned commit under a signed head is refused, naming it; the base itself is not
    checked (history before it may be unsigned); commits checked once are not checked again."""
    signer = Signer(git_repo, tmp_path, kind)
    signer.commit("old, unsigned", key=None)
    git_repo.git("tag", "trust-from")
    signed = signer.commit("one", key=0)
    source = _source(git_repo, tmp_path, kind, signer.public(), mode="all-since", since="trust-from")
    assert source.fetch().sha == signed
    sneaked = signer.commit("sneaked in", key=None)
    head = signer.commit("signed on top", key=0)
    with pytest.raises(
        errors.FetchError, match=rf"Unverified \({head[:12]}: commit {sneaked[:12]} since trust-from is"
    ):
        source.fetch()
    assert source.last_good is not None
    assert source.last_good.sha == signed
    git_repo.git("branch", "side", head)  # kept in the repository (and fetched), off main's history from now on
    git_repo.git("reset", "-q", "--hard", signed)
    other = signer.commit("by another key", key=1)
    with pytest.raises(errors.FetchError, match=rf"Unverified \({other[:12]}: not signed by a key"):
        source.fetch()
    git_repo.git("reset", "-q", "--hard", signed)
    good = signer.commit("two", key=0)
    assert source.fetch().sha == good
    unrelated = _source(git_repo, tmp_path / "u", kind, signer.public(), mode="all-since", since=sneaked)
    with pytest.raises(errors.FetchError, match=r"does not descend from verify\.since"):
        unrelated.fetch()
    with pytest.raises(ValueError, match="since goes with mode all-since"):
        config.SourceVerify.model_validate({"type": "ssh", "mode": "all-since", "keys": [{"env": "K"}]})


def test_a_refusal_is_given_again_without_running_the_tool(
    git_repo: GitRepo, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Status polls resolve an app's pinned ref every few seconds: an unverified commit's refusal is kept for
    ``REFUSAL_KEPT`` seconds, and the signature tools are not run again for it meanwhile."""
    from agent.sources import verify

    signer = Signer(git_repo, tmp_path, "ssh")
    signer.commit("one", key=0)
    source = _source(git_repo, tmp_path, "ssh", signer.public())
    source.fetch()
    unsigned = signer.commit("two", key=None)
    with pytest.raises(errors.FetchError, match="Unverified"):
        source.fetch()
    runs: list[str] = []
    real = verify.verify
    monkeypatch.setattr(verify, "verify", lambda *a, **k: runs.append(a[1]) or real(*a, **k))
    for _ in range(3):
        with pytest.raises(errors.FetchError, match=rf"Unverified \({unsigned[:12]}: the commit is not signed"):
            source.resolve(unsigned)
    assert runs == []
    monkeypatch.setattr(git, "REFUSAL_KEPT", 0.0)
    with pytest.raises(errors.FetchError, match="Unverified"):
        source.resolve(unsigned)
    assert runs == [unsigned]

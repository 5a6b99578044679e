"""SOPS-encrypted files in a source, decrypted with the real ``sops`` before anything else reads them.

A manifest file (YAML or JSON) carrying SOPS metadata (a top-level ``sops`` mapping with its ``mac``) is
decrypted by ``sops --decrypt`` (v3.13.3, installed by ``make`` into ``.venv/bin/sops`` from its Go module) with
the configured age keys, whether the whole file or only the values matching its ``encrypted_regex`` are
encrypted. The keys reach sops through ``SOPS_AGE_KEY`` only: the user's own key files and GnuPG home are
hidden from it (a private, empty ``HOME``), so what decrypts is exactly what the config names. Every value that was
encrypted is remembered (:attr:`Decryptor.revealed`, with its base64 form and, for a Secret's ``data``, its
decoded form) so the runner masks it (``***``) in every message, diff and error, like substituted values.

A file that cannot be decrypted (no matching key, MAC mismatch, tampered ciphertext) is a
:class:`reconcilers.errors.ManifestError` naming the file and sops's reason, and the cluster gets no writes; an
encrypted file where decryption is off is refused the same way, never applied as ciphertext (Flux's kustomize-
controller behaves alike). Used by :mod:`agent.sources.manifests`.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import json
import os
import pathlib
import re
import tempfile
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import yaml

from agent import kubeyaml
from agent.sources import tools
from reconcilers import errors

TIMEOUT = 30.0
"""Seconds one ``sops --decrypt`` may take (killed with its process group after, heap bounded as a render's:
:mod:`agent.sources.tools`)."""
CACHE_FILES = 256
"""Decrypted files kept per decryptor (by content), so a resync does not run sops again."""
_YAML_METADATA = re.compile(rb"^sops:\s*$", re.MULTILINE)
_JSON_METADATA = re.compile(rb'"sops"\s*:\s*\{')
_DOTENV_METADATA = re.compile(rb"^sops_mac=ENC\[", re.MULTILINE)
ENCRYPTED = "ENC["
_IDENTITY = ("apiVersion", "kind", "metadata", "type")


def binary() -> str | None:
    """``$GITOPS_AGENT_SOPS``, else ``sops`` beside the running Python (the venv ``make`` fills), else on PATH."""
    return tools.find("sops", "GITOPS_AGENT_SOPS")


def is_encrypted(data: bytes) -> bool:
    """True when ``data`` (a YAML, JSON or dotenv file) carries SOPS metadata with a MAC."""
    return b"mac" in data and bool(
        _YAML_METADATA.search(data) or _JSON_METADATA.search(data) or _DOTENV_METADATA.search(data)
    )


def has_ciphertext(body: Any) -> bool:
    """True when a rendered object still holds SOPS metadata or an encrypted value (an encrypted input that was
    not decrypted, e.g. in a kustomize base outside the kustomization's directory)."""
    metadata = body.get("sops") if isinstance(body, dict) else None
    return (isinstance(metadata, dict) and "mac" in metadata) or _enc_value(body)


def _enc_value(node: Any) -> bool:
    if isinstance(node, str):
        return node.startswith(ENCRYPTED + "AES256_GCM")
    if isinstance(node, dict):
        return any(_enc_value(v) for v in node.values())
    if isinstance(node, list):
        return any(_enc_value(v) for v in node)
    return False


def refuse(rel: str) -> errors.ManifestError:
    """The error for an encrypted file where decryption is off."""
    return errors.ManifestError(
        rel,
        None,
        "is SOPS-encrypted but decryption is off here: set decryption.sops.ageKeys and decryption: {sops: true} on "
        "the app (or the cluster, for its paths); an encrypted file is never applied as ciphertext",
    )


class Decryptor:
    """Decrypts SOPS files with ``age_keys`` (age identities, ``AGE-SECRET-KEY-1...``). Thread-safe."""

    def __init__(self, age_keys: Iterable[bytes]) -> None:
        self._keys = b"\n".join(k.strip() for k in age_keys).decode()
        self.revealed: set[str] = set()
        self._cache: collections.OrderedDict[bytes, str] = collections.OrderedDict()
        self._lock = threading.Lock()

    def decrypt(self, data: bytes, rel: str) -> str:
        """The plaintext of the encrypted file ``data`` (named ``rel`` in errors), in its own format (YAML or JSON).
        Raises :class:`errors.ManifestError` with sops's reason."""
        digest = hashlib.sha256(data).digest()
        with self._lock:
            if digest in self._cache:
                self._cache.move_to_end(digest)
                return self._cache[digest]
        plaintext = self._run(data, rel)
        revealed = set(_revealed(data, plaintext))
        with self._lock:
            self.revealed |= revealed
            self._cache[digest] = plaintext
            while len(self._cache) > CACHE_FILES:
                self._cache.popitem(last=False)
        return plaintext

    def _run(self, data: bytes, rel: str) -> str:
        sops = binary()
        if sops is None:
            raise errors.ManifestError(
                rel, None, "is SOPS-encrypted but sops is not installed (or set GITOPS_AGENT_SOPS)"
            )
        kind = _format(rel)
        with tempfile.TemporaryDirectory(prefix="gitops-agent-sops-") as home:
            source = pathlib.Path(home) / f"in.{kind}"
            source.write_bytes(data)  # the ciphertext; the plaintext only ever goes through the pipe
            env = {
                "PATH": os.environ.get("PATH", ""),
                "HOME": home,
                "XDG_CONFIG_HOME": home,
                "GNUPGHOME": home,
                "SOPS_AGE_KEY": self._keys,
            }
            command = [sops, "--decrypt", "--input-type", kind, "--output-type", kind, str(source)]
            try:
                done = tools.run_bytes(command, tools.Limits(TIMEOUT), env=env)
            except tools.RenderTimeoutError:
                raise errors.ManifestError(rel, None, f"sops --decrypt took longer than {TIMEOUT:.0f}s") from None
        if done.returncode != 0:
            reason = tools.error_text(done.stderr.decode(errors="replace")).replace(str(source), rel)
            raise errors.ManifestError(rel, None, f"cannot be decrypted: {reason}")
        try:
            return done.stdout.decode("utf-8")
        except UnicodeDecodeError:
            raise errors.ManifestError(rel, None, "decrypted to bytes that are not UTF-8") from None


def _format(rel: str) -> str:
    """sops's input type for a file name: ``json``, ``dotenv`` (``.env``, a kustomize secretGenerator input) or
    ``yaml``."""
    if rel.endswith(".json"):
        return "json"
    return "dotenv" if rel.endswith(".env") else "yaml"


def _dotenv(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.lstrip().startswith("#"))


def _revealed(ciphertext: bytes, plaintext: str) -> Iterator[str]:
    """Every value that was encrypted in ``ciphertext``, as decrypted in ``plaintext`` (documents and values paired
        by position), with its base64 form, and the decoded form of a base64 value (a Secret's ``data``). A whole-file
    encryption encrypts ``apiVersion``, ``kind``, ``metadata`` and ``type`` too: those name the object, are shown
    everywhere and are not masked."""
    try:
        before: list[Any] = list(kubeyaml.load_all(ciphertext))
        after: list[Any] = list(kubeyaml.load_all(plaintext))
    except yaml.YAMLError:  # a dotenv file
        before, after = [_dotenv(ciphertext.decode(errors="replace"))], [_dotenv(plaintext)]
    for old, new in zip(before, after, strict=False):
        if isinstance(old, dict) and isinstance(new, dict):  # identity fields are not secrets, even when encrypted
            old = {k: v for k, v in old.items() if k not in _IDENTITY}
        for value in _pairs(old, new):
            yield value
            yield base64.b64encode(value.encode()).decode()
            try:
                decoded = base64.b64decode(value, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError, ValueError):
                continue
            if len(decoded) >= 4:
                yield decoded


def _pairs(old: Any, new: Any) -> Iterator[str]:
    if isinstance(old, str):
        if old.startswith(ENCRYPTED) and new is not None and str(new):
            yield str(new)
            if not isinstance(new, str):  # a decrypted boolean or number, as JSON shows it (true, not True)
                yield json.dumps(new)
    elif isinstance(old, dict) and isinstance(new, dict):
        for k, v in old.items():
            if k != "sops" and k in new:
                yield from _pairs(v, new[k])
    elif isinstance(old, list) and isinstance(new, list):
        for a, b in zip(old, new, strict=False):
            yield from _pairs(a, b)

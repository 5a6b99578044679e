"""Kustomizations in a source: a directory holding ``kustomization.yaml`` (``.yml``, ``Kustomization``) is
rendered with the real ``kustomize build`` (v5.8.2, installed by ``make`` into ``.venv/bin``) as one unit.

SOPS-encrypted inputs under the kustomization's directory (resources, patches, secretGenerator ``.env`` files)
are decrypted first (:mod:`agent.sources.sops`) into a private copy of the tree: a directory (0700) beside the
checkout trees whose files are hard links to the checkout's, except the encrypted ones, which are written
decrypted (0600) and removed with the copy as soon as ``kustomize build`` has run (Flux's kustomize-controller
also decrypts into a temporary directory). Where decryption is off, an encrypted input is refused. Used by
:mod:`agent.sources.manifests`.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence

from agent.sources import sops, tools
from agent.sources.render import plain, protocol
from reconcilers import errors, resources

FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_INPUTS = (".yaml", ".yml", ".json", ".env")
_MAX_INPUT_BYTES = 4 * 1024 * 1024


def binary() -> str | None:
    """``$GITOPS_AGENT_KUSTOMIZE``, else ``kustomize`` on PATH, else one beside the running Python (a venv)."""
    explicit = os.environ.get("GITOPS_AGENT_KUSTOMIZE")
    if explicit:
        return explicit
    found = shutil.which("kustomize")
    if found:
        return found
    beside = pathlib.Path(sys.executable).parent / "kustomize"
    return str(beside) if beside.is_file() else None


def is_kustomization(directory: pathlib.Path) -> bool:
    """True when ``directory`` holds a kustomization file."""
    return any((directory / k).is_file() for k in FILES)


def build(
    root: pathlib.Path,
    directory: pathlib.Path,
    decrypt: sops.Decryptor | None,
    limits: tools.Limits = tools.DEFAULT_LIMITS,
) -> str:
    """The rendered YAML of the kustomization at ``directory`` (inside the checkout ``root``), ``kustomize build``
    bounded by ``limits`` (:mod:`agent.sources.tools`).

    Raises :class:`errors.ManifestError` naming the directory (kustomize's own message), the encrypted input
    that could not be decrypted, or the limit the build ran out of (time or memory)."""
    rel = directory.relative_to(root).as_posix()
    kustomize = binary()
    if kustomize is None:
        raise errors.ManifestError(
            rel, None, "is a kustomization but kustomize is not installed (or set GITOPS_AGENT_KUSTOMIZE)"
        )
    encrypted = [
        f
        for f in sorted(directory.rglob("*"))
        if f.suffix in _INPUTS
        and f.is_file()
        and f.stat().st_size <= _MAX_INPUT_BYTES
        and sops.is_encrypted(f.read_bytes())
    ]
    if encrypted and decrypt is None:
        raise sops.refuse(encrypted[0].relative_to(root).as_posix())
    with contextlib.ExitStack() as held:
        target = directory
        if encrypted:
            assert decrypt is not None
            copy = held.enter_context(_decrypted_copy(root, encrypted, decrypt))
            target = copy / directory.relative_to(root)
        try:
            proc = tools.run([kustomize, "build", str(target)], limits)
        except tools.RenderTimeoutError:
            why = f"kustomize build of {rel} did not finish in {limits.timeout:g} s (renderTimeout): stopped"
            raise errors.ManifestError(rel, None, why) from None
    if proc.returncode != 0 and tools.out_of_memory(proc, limits):
        why = f"kustomize build of {rel} ran out of memory (render.memoryLimit: {tools.memory_text(limits)}): stopped"
        raise errors.ManifestError(rel, None, why)
    if proc.returncode != 0:
        message = tools.error_text(proc.stderr).replace(str(target), rel)
        raise errors.ManifestError(rel, None, f"kustomize build failed: {message}")
    return proc.stdout


@contextlib.contextmanager
def _decrypted_copy(
    root: pathlib.Path, encrypted: Sequence[pathlib.Path], decrypt: sops.Decryptor
) -> Iterator[pathlib.Path]:
    """A private copy of the checkout ``root`` (hard links) with ``encrypted`` written decrypted; removed after."""
    private = pathlib.Path(tempfile.mkdtemp(prefix=".decrypted-", dir=root.parent))  # 0700, skipped by eviction
    try:
        copy = private / "tree"
        shutil.copytree(root, copy, symlinks=True, copy_function=os.link)
        for f in encrypted:
            rel = f.relative_to(root).as_posix()
            plaintext = decrypt.decrypt(f.read_bytes(), rel)
            target = copy / rel
            target.unlink()  # a hard link to the checkout's ciphertext: replace, never write through it
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(plaintext)
        yield copy
    finally:
        shutil.rmtree(private, ignore_errors=True)


class Kustomize:
    """:class:`agent.sources.render.protocol.Renderer` of a directory holding a kustomization file (as one unit);
    an object still holding SOPS ciphertext (an encrypted input outside the kustomization's directory, not
    decrypted) is refused."""

    name = "kustomize build"
    patterns: tuple[str, ...] = ("a directory with kustomization.yaml",)

    def whole(self, directory: pathlib.Path) -> bool:
        """True for a kustomization (:func:`is_kustomization`)."""
        return is_kustomization(directory)

    def reads(self, file: pathlib.Path) -> bool:
        """Never: a kustomization is rendered whole."""
        return False

    def inputs(self, file: pathlib.Path) -> bool:
        """Never: a kustomization's inputs are inside the directory it takes whole."""
        return False

    def render(self, ctx: protocol.Context, target: pathlib.Path, source_path: str) -> list[resources.Manifest]:
        """``kustomize build`` of ``target`` (:func:`build`), parsed as kubectl reads YAML."""
        out = plain.parse_stream(build(ctx.root, target, ctx.decrypt, ctx.limits), ctx.rel(target), source_path)
        for m in out:
            if sops.has_ciphertext(m.body):
                raise errors.ManifestError(
                    m.source_file,
                    m.doc_index,
                    f"{m.key} still holds SOPS ciphertext: its encrypted input lies outside the kustomization's "
                    "directory (only inputs under it are decrypted); never applied as ciphertext",
                    m.item,
                )
        return out

"""The renderer protocol: how a directory or file of a source becomes desired objects.

:mod:`agent.sources.manifests` walks an app's path and asks the renderers of
:data:`agent.sources.render.registry.RENDERERS`, in order, which of them takes a directory as one unit (a Helm
chart, a kustomization), which renders a file on its own (plain YAML/JSON, jsonnet), and which reads a file only as
an input of others (a ``.libsonnet`` library). A renderer returns :class:`reconcilers.resources.Manifest` objects;
decryption of rendered output and variable substitution are steps after rendering (in the runtime). Adding a
renderer is one module implementing :class:`Renderer` plus one line in the registry.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from agent.sources import sops, tools
from reconcilers import errors, resources

if TYPE_CHECKING:
    from agent.sources.render import helm


@dataclasses.dataclass(frozen=True)
class JsonnetInputs:
    """What a jsonnet render is given (Argo CD's ``directory.jsonnet``): ``ext_vars`` and ``tla_vars`` (string
    values by name), ``ext_codes`` and ``tla_codes`` (jsonnet code by name), ``libs`` (library directories,
    relative to the source's root, searched for imports after the importing file's directory)."""

    ext_vars: Mapping[str, str] = dataclasses.field(default_factory=dict)
    ext_codes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    tla_vars: Mapping[str, str] = dataclasses.field(default_factory=dict)
    tla_codes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    libs: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Context:
    """What rendering needs of the cluster and app a path is loaded for: ``root`` (the checkout, resolved),
    ``namespace`` (of a chart's release), ``decrypt`` (SOPS, None: encrypted files refused), ``facts`` (the
    cluster's version and API versions, asked only when a chart renders), ``chart`` (an app's Helm options),
    ``release`` (the release name of a chart found without ``chart``), ``limits`` (time and memory of one render),
    ``jsonnet`` (ext vars, TLAs and library paths of jsonnet files)."""

    root: pathlib.Path
    namespace: str = "default"
    decrypt: sops.Decryptor | None = None
    facts: Callable[[], helm.Facts] | None = None
    chart: helm.Options | None = None
    release: str | None = None
    limits: tools.Limits = tools.DEFAULT_LIMITS
    jsonnet: JsonnetInputs = JsonnetInputs()

    def rel(self, path: pathlib.Path) -> str:
        """``path`` as named in the repository (relative to ``root``)."""
        return path.relative_to(self.root).as_posix()


class Renderer(Protocol):
    """One kind of rendering. ``name`` is how messages name it (``helm template``, ``jsonnet``); ``patterns``
    describes what it reads, for the error of a folder nothing reads (``*.jsonnet``, ``a directory with
    Chart.yaml``)."""

    name: str
    patterns: tuple[str, ...]

    def whole(self, directory: pathlib.Path) -> bool:
        """True when this renderer takes ``directory`` as one unit (its files are then inputs, never read one by
        one)."""
        ...

    def reads(self, file: pathlib.Path) -> bool:
        """True when this renderer renders ``file`` on its own."""
        ...

    def inputs(self, file: pathlib.Path) -> bool:
        """True when ``file`` is read only as an input of files this renderer renders (a jsonnet library)."""
        ...

    def render(self, ctx: Context, target: pathlib.Path, source_path: str) -> list[resources.Manifest]:
        """The objects of ``target`` (a directory it takes whole, or a file it reads), each with ``source_path``
        (the app's inventory key). Raises :class:`reconcilers.errors.ManifestError` naming the file or directory
        (and the limit a render ran out of)."""
        ...


def inside(root: pathlib.Path, path: pathlib.Path, rel: str) -> pathlib.Path:
    """``path`` resolved, when it stays inside ``root``. Raises ManifestError naming ``rel`` (a symlink or ``..``
    leading out of the source)."""
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise errors.ManifestError(rel, None, "leads outside the repository (symlink or '..'): not read")
    return resolved

"""Load the desired objects under a cluster's paths of a checkout into :class:`reconcilers.resources.Manifest`.

Rules (each violation is a :class:`reconcilers.errors.ManifestError` naming file and document index, and the
cluster gets no writes at all):

- every path must exist inside the checkout; directories are walked recursively in name order; hidden entries
  (``.git``, ``.github``) are skipped; symlinks leading outside the checkout are refused;
- each directory and file goes to the first renderer of :data:`agent.sources.render.registry.RENDERERS` that
  takes it: a directory holding ``Chart.yaml`` is a Helm chart and one holding ``kustomization.yaml``
  (``.yml``, ``Kustomization``) a kustomization, each rendered as one unit (their files are inputs, never read one
  by one); ``*.yaml``, ``*.yml`` and ``*.json`` files are plain manifests (:mod:`agent.sources.render.plain`:
  read as kubectl reads them, SOPS-encrypted files decrypted first); ``*.jsonnet`` files are evaluated
  (:mod:`agent.sources.render.jsonnet`), ``*.libsonnet`` files are their libraries;
- a path that yields no object while holding files no renderer reads (a ``values.txt``, a ``.jsonnet`` typo'd
  ``.jsonet``, a library nothing imports) is an error naming them, never a silent empty success; documentation
  (:data:`DOCUMENTS`: ``README.md``, ``LICENSE``, ...) does not count, so a path emptied down to its README is an
  empty desired state (``sync.allowEmpty`` decides); beside objects, such files are ignored (as Argo CD and Flux
  ignore them);
- a file an app names directly is read by the renderer of its name, else as YAML.

Called by ``agent.sync.cluster``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import pathlib
from collections.abc import Callable, Sequence

from agent.sources import sops, tools
from agent.sources.render import helm, protocol, registry
from reconcilers import errors, resources

UNREAD_NAMED = 5
"""Files an unread-files error names (the rest are counted)."""
DOCUMENTS = ("*.md", "*.markdown", "*.rst", "*.adoc", "LICENSE*", "COPYING*", "NOTICE*", "OWNERS*", "CODEOWNERS")
"""Names of files that document a folder: never taken for manifests nobody reads."""


@dataclasses.dataclass(frozen=True)
class Selection:
    """Which files of a directory path are read (Argo CD's ``source.directory``): ``recurse`` (False: the files at
    its top only; Argo CD's default), ``include`` and ``exclude``: glob patterns matched against each file's path
    relative to the app's path (``*`` spans ``/``, ``{a,b}`` alternatives: Argo CD's globs), empty for none."""

    recurse: bool = True
    include: str = ""
    exclude: str = ""

    def takes(self, rel: str) -> bool:
        """True when the file at ``rel`` (relative to the app's path) is read."""
        from wcmatch import fnmatch as wfnmatch  # loaded by the first app that selects files, not every command

        flags = wfnmatch.BRACE | wfnmatch.DOTMATCH
        if self.include and not wfnmatch.fnmatch(rel, self.include, flags=flags):
            return False
        return not (self.exclude and wfnmatch.fnmatch(rel, self.exclude, flags=flags))


ALL = Selection()
"""Every file, recursively (the agent's default)."""


def load_paths(
    root: pathlib.Path,
    paths: Sequence[str],
    namespace: str = "default",
    decrypt: sops.Decryptor | None = None,
    facts: Callable[[], helm.Facts] | None = None,
    label: str | None = None,
    chart: helm.Options | None = None,
    release: str | None = None,
    limits: tools.Limits = tools.DEFAULT_LIMITS,
    jsonnet: protocol.JsonnetInputs | None = None,
    selection: Selection = ALL,
) -> list[resources.Manifest]:
    """Every object under ``paths`` (relative to ``root``), in walk order; Helm charts are rendered into
    ``namespace`` for the cluster that ``facts`` describes (asked only when a chart is found); SOPS-encrypted
    files are decrypted with ``decrypt`` (refused without it). Each manifest's ``source_path`` is ``label``
    (an app's inventory key), else the path it came from. ``chart``: how a chart at a path renders (an app's
    ``helm`` options); with it, each path must be a chart. ``release``: the release name of a chart found without
    ``chart`` options (an app's name; default the chart directory's name). ``limits``: the time and memory each
    render (``helm template``, ``kustomize build``, a jsonnet file) may take. ``jsonnet``: the ext vars, TLAs and
    library paths of jsonnet files. ``selection``: which files of a directory path are read (:class:`Selection`).
    Raises ManifestError (and whatever ``facts`` raises)."""
    root = root.resolve()
    ctx = protocol.Context(root, namespace, decrypt, facts, chart, release, limits, jsonnet or protocol.JsonnetInputs())
    out: list[resources.Manifest] = []
    for rel in paths:
        target = protocol.inside(root, root / rel, rel)
        if not target.exists():
            raise errors.ManifestError(rel, None, "path does not exist in the source")
        if chart is not None and not (target.is_dir() and helm.is_chart(target)):
            raise errors.ManifestError(
                rel, None, "the app sets helm options but this is not a Helm chart (no Chart.yaml)"
            )
        if target.is_dir():
            walk = _Walk(ctx, label or rel, target, selection)
            walk.directory(target)
            walk.check(rel)
            out.extend(walk.found)
        else:
            reader = next((r for r in registry.RENDERERS if r.reads(target)), registry.PLAIN)
            out.extend(reader.render(ctx, target, label or rel))
    return out


@dataclasses.dataclass
class _Walk:
    """One directory walk: the objects found, the files no renderer read, the library files and who reads them."""

    ctx: protocol.Context
    source_path: str
    start: pathlib.Path
    selection: Selection
    found: list[resources.Manifest] = dataclasses.field(default_factory=list)
    unread: list[str] = dataclasses.field(default_factory=list)
    libraries: list[tuple[protocol.Renderer, str]] = dataclasses.field(default_factory=list)
    used: set[str] = dataclasses.field(default_factory=set)

    def directory(self, directory: pathlib.Path) -> None:
        ctx = self.ctx
        whole = next((r for r in registry.RENDERERS if r.whole(directory)), None)
        if whole is not None:
            self.used.add(whole.name)
            self.found.extend(whole.render(ctx, directory, self.source_path))
            return
        for entry in sorted(directory.iterdir(), key=lambda p: p.name):
            if entry.name.startswith("."):
                continue
            rel = ctx.rel(entry)
            if entry.is_symlink():
                protocol.inside(ctx.root, entry, rel)
            if entry.is_dir():
                if self.selection.recurse:
                    self.directory(entry)
                continue
            if not self.selection.takes(entry.relative_to(self.start).as_posix()):
                continue
            reader = next((r for r in registry.RENDERERS if r.reads(entry)), None)
            if reader is not None:
                self.used.add(reader.name)
                self.found.extend(reader.render(ctx, entry, self.source_path))
                continue
            library = next((r for r in registry.RENDERERS if r.inputs(entry)), None)
            if library is not None:
                self.libraries.append((library, rel))
            elif not any(fnmatch.fnmatch(entry.name, p) for p in DOCUMENTS):
                self.unread.append(rel)

    def check(self, rel: str) -> None:
        """Raise ManifestError when the walk of ``rel`` found no object but files no renderer read."""
        unread = sorted(self.unread + [f for r, f in self.libraries if r.name not in self.used])
        if self.found or not unread:
            return
        named = ", ".join(unread[:UNREAD_NAMED]) + (
            f" and {len(unread) - UNREAD_NAMED} more" if len(unread) > UNREAD_NAMED else ""
        )
        readable = ", ".join(p for r in registry.RENDERERS for p in r.patterns)
        raise errors.ManifestError(
            rel,
            None,
            f"holds no object: no renderer reads {named} (read are {readable}; a jsonnet library only "
            "when a .jsonnet file imports it)",
        )

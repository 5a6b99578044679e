"""The ``git`` generator: directories and files of a source's fetched revision (Argo CD's Generators-Git.md).

It reads the tree the source already fetched (the caller holds it: :class:`~agent.appsets.generators.base.Context`
``trees``), no clone of its own. ``directories``: every directory (``.git`` aside) that an include pattern matches
and no exclude pattern does, Go's ``path.Match`` rules (``*``, ``?``, ``[...]`` within one segment); ``files``:
every file so matched with ``**`` spanning directories (Argo CD's newer file globbing), read as JSON or YAML (as
``sigs.k8s.io/yaml`` reads it). Matching is wcmatch's ``globmatch``; dotted names match ``*`` as in Go.

Parameters of a directory ``apps/web``: ``path.path`` (``apps/web``), ``path.basename`` (``web``),
``path.basenameNormalized``, ``path.segments`` (Go templates) or ``path``, ``path.basename``,
``path.basenameNormalized``, ``path[0]``, ``path[1]`` (fasttemplate). A file adds its fields and
``path.filename``, ``path.filenameNormalized``, ``path`` being its directory.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import yaml

from agent import config, kubeyaml
from agent.appsets import params as params_
from agent.appsets.generators.base import Context, with_values
from reconcilers import errors

MAX_FILE_BYTES = 1024 * 1024
"""Bytes a parameter file may hold."""


def generate(spec: config.GitGenerator, ctx: Context) -> list[params_.Params]:
    """One parameter set per matching directory, or per matching file (per item of a file holding a list), in
    path order. Raises GenerateError when the source was not fetched or a file is not a mapping or list of
    mappings, naming the file."""
    root = ctx.trees.get(spec.source)
    if root is None:
        raise errors.GenerateError(f"git: source {spec.source} has not been fetched")
    from wcmatch import glob  # loaded by the first git generator, not by every command

    if spec.directories:
        dirs = _matching(_walk(root, directories=True), spec.directories, glob.DOTGLOB)
        found = [_path_params(d, None, spec.path_param_prefix, ctx.go_template) for d in dirs]
    else:
        found = []
        for f in _matching(_walk(root, directories=False), spec.files, glob.DOTGLOB | glob.GLOBSTAR):
            for item in _read(root, f):
                where = _path_params(os.path.dirname(f), os.path.basename(f), spec.path_param_prefix, ctx.go_template)
                found.append({**item, **where} if ctx.go_template else {**params_.flatten(item), **where})
    return with_values(found, spec.values, ctx, what=f"git ({spec.source})")


def _walk(root: pathlib.Path, *, directories: bool) -> list[str]:
    """Every directory (or file) under ``root``, relative, ``/``-separated, sorted; ``.git`` left out."""
    out = []
    for here, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        rel = os.path.relpath(here, root)
        names = dirs if directories else files
        out += [n if rel == "." else f"{rel}/{n}" for n in names]
    return sorted(p.replace(os.sep, "/") for p in out)


def _matching(paths: list[str], patterns: tuple[config.PathPattern, ...], flags: int) -> list[str]:
    from wcmatch import glob

    include = [p.path for p in patterns if not p.exclude]
    exclude = [p.path for p in patterns if p.exclude]
    return [
        p
        for p in paths
        if glob.globmatch(p, include, flags=flags) and not (exclude and glob.globmatch(p, exclude, flags=flags))
    ]


def _read(root: pathlib.Path, rel: str) -> list[dict[str, Any]]:
    path = root / rel
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise errors.GenerateError(f"git: {rel}: larger than {MAX_FILE_BYTES} bytes")
        data = kubeyaml.load(path.read_bytes())
    except (OSError, yaml.YAMLError) as e:
        raise errors.GenerateError(f"git: {rel}: not readable as JSON or YAML: {e}") from None
    items = data if isinstance(data, list) else [data]
    if not all(isinstance(i, dict) for i in items):
        raise errors.GenerateError(f"git: {rel}: must hold a mapping or a list of mappings")
    return items


def _path_params(directory: str, filename: str | None, prefix: str, go_template: bool) -> params_.Params:
    """The ``path`` parameters of ``directory`` (and ``filename``), under ``prefix`` when given."""
    basename = directory.rsplit("/", 1)[-1] if directory else ""
    segments = directory.split("/") if directory else []
    nested: dict[str, Any] = {
        "path": directory,
        "basename": basename,
        "basenameNormalized": params_.normalize(basename),
        "segments": segments,
    }
    if filename is not None:
        nested |= {"filename": filename, "filenameNormalized": params_.normalize(filename)}
    if go_template:
        return {prefix: {"path": nested}} if prefix else {"path": nested}
    key = f"{prefix}.path" if prefix else "path"
    flat = {key: directory, **{f"{key}.{k}": v for k, v in nested.items() if k not in ("path", "segments")}}
    flat |= {f"{key}[{i}]": s for i, s in enumerate(segments)}
    return flat

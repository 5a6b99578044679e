"""Jsonnet files in a source, rendered as Argo CD renders a directory app's jsonnet (its ``directory.jsonnet``).

Every ``*.jsonnet`` file of an app's path is evaluated with the app's ext vars and top-level arguments (TLAs); its
value is an object, an array of objects (nested arrays flattened) or a ``kind: List``, each object checked as a
plain manifest is (:func:`agent.sources.render.plain.expand`), named ``<file>#<index>`` in errors. ``*.libsonnet``
files are libraries: read only when imported, never rendered on their own. Imports resolve beside the importing
file, then in the app's ``libs`` (paths relative to the source's root, as Argo CD's ``libs``); an import leading
outside the source is refused.

Evaluation uses the ``jsonnet`` binding from PyPI (the C++ implementation, the same language as go-jsonnet, which
the tests compare against) in a child Python process (:mod:`agent.sources.render.jsonnet_eval`) bounded by the
render's timeout and memory limit (:mod:`agent.sources.tools`): jsonnet can loop forever (a ``tailstrict``
recursion never exhausts the stack) and the binding cannot be interrupted in-process.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import sys
from collections.abc import Mapping
from typing import Any

from agent import config
from agent.sources import tools
from agent.sources.render import plain, protocol
from reconcilers import errors, resources

_EVAL = pathlib.Path(__file__).with_name("jsonnet_eval.py")


class Jsonnet:
    """:class:`agent.sources.render.protocol.Renderer` of ``*.jsonnet`` files (``*.libsonnet``: their inputs)."""

    name = "jsonnet"
    patterns: tuple[str, ...] = ("*.jsonnet",)

    def whole(self, directory: pathlib.Path) -> bool:
        """Never: jsonnet files are rendered one by one."""
        return False

    def reads(self, file: pathlib.Path) -> bool:
        """True for ``*.jsonnet``."""
        return file.suffix == ".jsonnet"

    def inputs(self, file: pathlib.Path) -> bool:
        """True for ``*.libsonnet`` (imported by jsonnet files)."""
        return file.suffix == ".libsonnet"

    def render(self, ctx: protocol.Context, target: pathlib.Path, source_path: str) -> list[resources.Manifest]:
        """The objects of the jsonnet file ``target``. Raises ManifestError naming the file: jsonnet's own error
        (with the checkout's path left out), a library path outside the source, the time or memory limit reached,
        or an object that is not a manifest."""
        rel = ctx.rel(target)
        file = protocol.inside(ctx.root, target, rel)
        size = file.stat().st_size
        if size > plain.MAX_FILE_BYTES:
            raise errors.ManifestError(rel, None, f"file is {size} bytes, over the {plain.MAX_FILE_BYTES}-byte limit")
        inputs = ctx.jsonnet
        request = {
            "root": str(ctx.root),
            "file": str(file),
            "jpaths": [str(_library(ctx.root, lib, rel)) for lib in inputs.libs],
            "extVars": dict(inputs.ext_vars),
            "extCodes": dict(inputs.ext_codes),
            "tlaVars": dict(inputs.tla_vars),
            "tlaCodes": dict(inputs.tla_codes),
        }
        try:
            done = tools.run([sys.executable, "-I", str(_EVAL)], ctx.limits, stdin=json.dumps(request))
        except tools.RenderTimeoutError:
            why = f"jsonnet of {rel} did not finish in {ctx.limits.timeout:g} s (renderTimeout): stopped"
            raise errors.ManifestError(rel, None, why) from None
        if done.returncode != 0 and tools.out_of_memory(done, ctx.limits):
            why = f"jsonnet of {rel} ran out of memory (render.memoryLimit: {tools.memory_text(ctx.limits)}): stopped"
            raise errors.ManifestError(rel, None, why)
        if done.returncode != 0:
            message = tools.error_text(done.stderr).replace(f"{ctx.root}/", "")
            raise errors.ManifestError(rel, None, f"jsonnet failed: {message}")
        return objects(json.loads(done.stdout), rel, source_path)


def _library(root: pathlib.Path, lib: str, rel: str) -> pathlib.Path:
    path = protocol.inside(root, root / lib, lib)
    if not path.is_dir():
        raise errors.ManifestError(rel, None, f"jsonnet libs: {lib!r} is not a directory of the source")
    return path


def objects(value: Any, source_file: str, source_path: str) -> list[resources.Manifest]:
    """The manifests of a jsonnet file's ``value``: an object (a ``kind: List`` unwrapped), or an array of them,
    nested arrays flattened; ``null`` and ``[]`` hold none. Each keeps its position in the flattened array as its
    document index. Raises ManifestError naming ``source_file`` and the index."""
    flat: list[Any] = []

    def flatten(v: Any) -> None:
        if isinstance(v, list):
            for item in v:
                flatten(item)
        elif v is not None:
            flat.append(v)

    flatten(value)
    out: list[resources.Manifest] = []
    for index, doc in enumerate(flat):
        for item, body in plain.expand(doc, source_file, index):
            out.append(resources.Manifest(resources.ResourceKey.of(body), body, source_file, index, source_path, item))
    return out


def inputs(
    options: config.JsonnetOptions, rel: str, environ: Mapping[str, str]
) -> tuple[protocol.JsonnetInputs, set[str]]:
    """An app's jsonnet options with their values read: ``env`` values from ``environ`` (the agent's
    environment). Returns the inputs and the values read from the environment (to be masked in every output).
    Raises ManifestError naming ``rel`` (the app's path) and the variable when one is not set."""
    revealed: set[str] = set()

    def read(kind: str, values: Mapping[str, config.JsonnetValue]) -> tuple[dict[str, str], dict[str, str]]:
        strings: dict[str, str] = {}
        codes: dict[str, str] = {}
        for name, v in values.items():
            if v.code is not None:
                codes[name] = v.code
            elif v.env is not None:
                if v.env not in environ:
                    why = f"jsonnet {kind} {name}: the environment variable {v.env} is not set"
                    raise errors.ManifestError(rel, None, why)
                strings[name] = environ[v.env]
                revealed.add(environ[v.env])
            else:
                strings[name] = v.value or ""
        return strings, codes

    ext_vars, ext_codes = read("extVars", options.ext_vars)
    tla_vars, tla_codes = read("tlas", options.tlas)
    return protocol.JsonnetInputs(ext_vars, ext_codes, tla_vars, tla_codes, options.libs), {v for v in revealed if v}


def environment(options: config.JsonnetOptions, environ: Mapping[str, str]) -> str:
    """A digest of the environment variables ``options`` reads (what a cached render of it depends on besides the
    source's revision)."""
    names = sorted({v.env for v in (*options.ext_vars.values(), *options.tlas.values()) if v.env is not None})
    return hashlib.sha256(json.dumps([(n, environ.get(n)) for n in names]).encode()).hexdigest()

"""An app's ``kustomize`` options applied to its rendered objects, whatever rendered them (plain YAML, a chart, a
kustomization, jsonnet), with the real ``kustomize build``: Argo CD applies ``source.kustomize`` (name prefix and
suffix, images, patches, common labels and annotations) through kustomize, and Flux's kustomize-controller builds
every path as a kustomization (writing one when the path has none), so ``patches`` and ``images`` apply to any
manifests there.

The objects are written to a private temporary directory (0700; removed after, decrypted values included) as one
``resources.yaml`` beside a ``kustomization.yaml`` holding the options, each object carrying a temporary
annotation with its index so that what comes out keeps the file and document it came from (errors still name
them); the annotation is removed again. The build is bounded by the app's render limits
(:mod:`agent.sources.tools`). Used by :mod:`agent.sync.desired`.
"""

from __future__ import annotations

import copy
import pathlib
import tempfile
from typing import Any

import yaml

from agent import config, kubeyaml
from agent.sources import tools
from agent.sources.render import kustomize, plain
from reconcilers import errors, resources

ORIGIN = "gitops-agent.io/overlay-origin"
"""The temporary annotation carrying each object's index through the build (never applied)."""


def kustomization(options: config.KustomizeOptions) -> dict[str, Any]:
    """The ``kustomization.yaml`` of ``options`` over ``resources.yaml`` (fields as kustomize names them)."""
    doc: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["resources.yaml"],
    }
    if options.name_prefix:
        doc["namePrefix"] = options.name_prefix
    if options.name_suffix:
        doc["nameSuffix"] = options.name_suffix
    if options.images:
        doc["images"] = options.image_overrides()
    if options.patches:
        doc["patches"] = [dict(p) for p in options.patches]
    if options.common_labels:
        doc["commonLabels"] = dict(options.common_labels)
    if options.common_annotations:
        doc["commonAnnotations"] = dict(options.common_annotations)
    return doc


def apply(
    found: list[resources.Manifest], options: config.KustomizeOptions, limits: tools.Limits, app: str
) -> list[resources.Manifest]:
    """``found`` (the app's rendered objects) as ``kustomize build`` leaves them under ``options``, each still
    naming the file and document it came from. ``app`` names the app in errors. Raises ManifestError (kustomize's
    own message, or the limit the build ran out of)."""
    if not found:
        return found
    program = kustomize.binary()
    where = f"app {app} (kustomize options)"
    if program is None:
        raise errors.ManifestError(where, None, "kustomize is not installed (or set GITOPS_AGENT_KUSTOMIZE)")
    docs = []
    for i, m in enumerate(found):
        body = copy.deepcopy(m.body)
        body.setdefault("metadata", {}).setdefault("annotations", {})[ORIGIN] = str(i)
        docs.append(body)
    with tempfile.TemporaryDirectory(prefix="gitops-agent-overlay-") as tmp:
        (pathlib.Path(tmp) / "resources.yaml").write_text(kubeyaml.dump_all(docs), encoding="utf-8")
        (pathlib.Path(tmp) / "kustomization.yaml").write_text(yaml.safe_dump(kustomization(options)))
        try:
            proc = tools.run([program, "build", tmp], limits)
        except tools.RenderTimeoutError:
            raise errors.ManifestError(where, None, f"kustomize build did not finish in {limits.timeout:g} s") from None
    if proc.returncode != 0:
        if tools.out_of_memory(proc, limits):
            raise errors.ManifestError(where, None, f"kustomize build ran out of memory ({tools.memory_text(limits)})")
        message = tools.error_text(proc.stderr).replace(tmp, ".")
        raise errors.ManifestError(where, None, f"kustomize build failed: {message}")
    out = []
    for m in plain.parse_stream(proc.stdout, where):
        annotations = m.body.get("metadata", {}).get("annotations", {})
        index = annotations.pop(ORIGIN, None)
        if not annotations:
            m.body["metadata"].pop("annotations", None)
        if index is None or not index.isdigit() or int(index) >= len(found):  # made by a patch: not one of ours
            raise errors.ManifestError(where, None, f"kustomize build made {m.key}, which no rendered object was")
        was = found[int(index)]
        out.append(resources.Manifest(m.key, m.body, was.source_file, was.doc_index, was.source_path, was.item))
    return out

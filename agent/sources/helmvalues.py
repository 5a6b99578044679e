"""The values of an app's chart, per cluster: ``helm.valuesFiles`` from the app's source, ``helm.valuesFrom``
from other sources, then ``helm.values`` inline, in that order (later ones win, as ``helm template -f`` merges
them; Argo CD's and Flux's ``valuesFiles``/``valuesFrom``).

A values file's path may name the cluster: ``${CLUSTER_NAME}`` and ``${CLUSTER_LABEL_<key>}`` are replaced with
the cluster's name and its label ``<key>`` (``values/${CLUSTER_NAME}.yaml``); a label the cluster lacks is an
error naming the entry. A missing file is an error unless the entry says ``optional: true``. A SOPS-encrypted
values file is decrypted when the app decrypts (what it reveals is masked like every decrypted value) and refused
otherwise: ciphertext is never handed to Helm. Used by :mod:`agent.sync.cluster`.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Mapping

import yaml

from agent import config, kubeyaml
from agent.sources import sops
from reconcilers import errors

MAX_VALUES_BYTES = 4 * 1024 * 1024
"""The largest values file read."""
_VARIABLE = re.compile(r"\$\{([A-Za-z0-9_./-]+)\}")


def expand(path: str, cluster: str, labels: Mapping[str, str], where: str) -> str:
    """``path`` with ``${CLUSTER_NAME}`` and ``${CLUSTER_LABEL_<key>}`` replaced. Raises ConfigError naming
    ``where`` for any other variable or a label the cluster lacks."""

    def value(found: re.Match[str]) -> str:
        name = found.group(1)
        if name == "CLUSTER_NAME":
            return cluster
        if name.startswith("CLUSTER_LABEL_") and name.removeprefix("CLUSTER_LABEL_") in labels:
            return labels[name.removeprefix("CLUSTER_LABEL_")]
        if name.startswith("CLUSTER_LABEL_"):
            raise errors.ConfigError(f"{where}: cluster {cluster} has no label {name.removeprefix('CLUSTER_LABEL_')!r}")
        raise errors.ConfigError(f"{where}: ${{{name}}} is not CLUSTER_NAME or CLUSTER_LABEL_<key>")

    return _VARIABLE.sub(value, path)


def values(
    options: config.HelmOptions,
    *,
    app: str,
    source: str,
    cluster: str,
    labels: Mapping[str, str],
    trees: Mapping[str, pathlib.Path],
    decrypt: sops.Decryptor | None,
    base: str = "",
) -> list[tuple[str, bytes]]:
    """The values of ``app`` on ``cluster``: ``(name, YAML bytes)`` in merge order, each named as in errors
    (``<source>:<path>``, ``helm.values``). Raises ConfigError (a bad variable) and ManifestError (a missing,
    oversize, undecryptable or refused file, a file that is not YAML, or a file that leads outside its source).
    ``base``: the directory of the app's own source its ``valuesFiles`` are relative to (a chart source's chart)."""
    out: list[tuple[str, bytes]] = []
    entries = [(f"helm.valuesFiles[{i}]", f, source) for i, f in enumerate(options.values_files)]
    entries += [(f"helm.valuesFrom[{i}]", f, f.source or source) for i, f in enumerate(options.values_from)]
    for where, entry, from_source in entries:
        rel = expand(entry.path, cluster, labels, f"app {app}: {where}")
        if base and from_source == source and where.startswith("helm.valuesFiles"):
            rel = f"{base}/{rel}"
        tree = trees.get(from_source)
        if tree is None:
            raise errors.ManifestError(rel, None, f"{where}: source {from_source} has no revision yet")
        root = tree.resolve()
        file = (root / rel).resolve()
        if file != root and root not in file.parents:
            raise errors.ManifestError(rel, None, f"{where}: leads outside the source (symlink or '..'): not read")
        if not file.is_file():
            if entry.optional:
                continue
            raise errors.ManifestError(rel, None, f"{where}: values file not found in source {from_source}")
        if file.stat().st_size > MAX_VALUES_BYTES:
            raise errors.ManifestError(rel, None, f"{where}: over the {MAX_VALUES_BYTES}-byte limit")
        data = file.read_bytes()
        if sops.is_encrypted(data):
            if decrypt is None:
                raise sops.refuse(rel)
            data = decrypt.decrypt(data, rel).encode()
        _check_yaml(data, rel, where)
        out.append((f"{from_source}:{rel}", data))
    if options.values:
        # Helm reads values as Kubernetes reads YAML: strings such as "y" or "1e3" are written quoted
        out.append(("helm.values", kubeyaml.dump_all([options.values]).encode()))
    return out


def _check_yaml(data: bytes, rel: str, where: str) -> None:
    """Refuse a values file that is not a YAML mapping, naming it and YAML's line (before Helm sees it)."""
    try:
        found = kubeyaml.load(data)  # as Helm reads values (sigs.k8s.io/yaml)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise errors.ManifestError(rel, None, f"{where}: not YAML{at}: {getattr(e, 'problem', None) or e}") from None
    if found is not None and not isinstance(found, dict):
        raise errors.ManifestError(rel, None, f"{where}: values must be a YAML mapping, not {type(found).__name__}")

"""``gitops-agent import argocd|flux PATH... [--out FILE] [--map-url FROM=TO ...]``: peers' definitions as this
agent's config.

Reads the documents (:mod:`agent.importers.documents`), maps them (:mod:`agent.importers.run`), checks the config
it made loads as ``run`` would load it (so what is written is never a config the agent refuses), writes it to
``--out`` (else stdout) and prints the report on stderr (``--report json`` for a machine). Exit 0 when every field
was mapped, 1 when some could not be (the report says which and why), 2 on input that cannot be read. No
credential is ever written or printed: the report says which environment variable or file to provide.
Used by :mod:`agent.cli`.
"""

from __future__ import annotations

import json
import pathlib
import sys
import tempfile
from collections.abc import Sequence

import yaml

from agent import config
from agent.importers import documents, run, sources
from reconcilers import errors

HEADER = (
    "# written by gitops-agent import {tool}: {paths}\n"
    "# credentials are references (env, files): see the import's report\n"
)


def import_(
    tool: str,
    paths: Sequence[str],
    out: str | None,
    map_url: Sequence[str],
    report_format: str = "text",
    kubeconfig: str | None = None,
    git_repositories: Sequence[str] = (),
) -> int:
    """Run one import (see the module doc); returns the exit code. Raises :class:`errors.ConfigError` for input
    that cannot be read or a written config that would not load (naming the key). ``kubeconfig``: the cluster
    a Flux import's apps go to, and Argo CD's own (``in-cluster``) (default: the agent's own, ``inCluster``);
    ``git_repositories``: ``NAME=URL[@REF]`` GitRepositories the files name but do not hold."""
    pairs = sources.parse_map_url(map_url)
    docs = documents.read(paths)
    if tool == "argocd":
        result = run.argocd_config(docs, pairs, kubeconfig=kubeconfig)
    else:
        given = dict(_pair(p, "--git-repository") for p in git_repositories)
        result = run.flux_config(docs, pairs, kubeconfig, given)
    if report_format == "json":
        json.dump([f.as_json() for f in result.report.findings], sys.stderr, indent=1)
        sys.stderr.write("\n")
    else:
        sys.stderr.write("\n".join(result.report.lines()) + "\n")
    if not result.apps and not result.app_sets:
        raise errors.ConfigError(f"import {tool}: no app could be made of {' '.join(paths)} (see the report above)")
    text = HEADER.format(tool=tool, paths=" ".join(paths)) + yaml.safe_dump(
        result.config(), sort_keys=False, default_flow_style=False, width=120
    )
    target = pathlib.Path(out) if out else None
    _check(text, target.parent if target else pathlib.Path.cwd())
    if target:
        target.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 1 if result.report.failed else 0


def _pair(text: str, flag: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise errors.ConfigError(f"{flag} {text!r}: give NAME=URL")
    return name, value


def _check(text: str, base: pathlib.Path) -> None:
    """Load ``text`` as a config file beside where it is written (relative paths resolve as they will)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=base if base.is_dir() else None, delete=True) as f:
        f.write(text)
        f.flush()
        try:
            config.load_config(f.name)
        except errors.ConfigError as e:
            raise errors.ConfigError(f"the imported config would not load: {str(e).replace(f.name, 'it')}") from e

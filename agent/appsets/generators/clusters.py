"""The ``clusters`` generator: one parameter set per registered cluster its selector selects (Argo CD's
Generators-Cluster.md, with the config's clusters for Argo CD's cluster Secrets): ``name``, ``nameNormalized``,
``server``, ``metadata.labels``, ``metadata.annotations`` (none: the config gives clusters labels only) and
``values``."""

from __future__ import annotations

from agent import config
from agent.appsets import params as params_
from agent.appsets.generators.base import Context, with_values
from agent.clusters import kubeconfig


def generate(spec: config.ClusterGenerator, ctx: Context) -> list[params_.Params]:
    """The selected clusters in config order. Raises GenerateError when a ``values`` template fails."""
    found: list[params_.Params] = []
    for c in ctx.clusters:
        if not spec.selector.selects(c.name, c.labels):
            continue
        nested = {
            "name": c.name,
            "nameNormalized": params_.normalize(c.name),
            "server": kubeconfig.server_of(c),
            "metadata": {"labels": dict(c.labels), "annotations": {}},
        }
        found.append(nested if ctx.go_template else params_.flatten(nested))
    return with_values(found, spec.values, ctx, what="clusters")

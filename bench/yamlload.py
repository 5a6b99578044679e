"""Reading YAML as Kubernetes reads it (agent/kubeyaml.py) against the loader it replaced, in the same run:

- ``kube``: :func:`agent.kubeyaml.load_all`, go-yaml v2's resolution on libyaml's C parser;
- ``before``: the manifests loader before issue 35 (PyYAML's CSafeLoader with its YAML 1.1 resolver and short
  strings interned), plus a constructor for YAML 1.1's ``value`` tag so that it can read the same files (without
  it, the prometheus-operator CRDs fail on their bare ``=``).

Inputs: every YAML file of ../shared/corpora/public, and one multi-document file of about 2 MB (the rendered
ingress-nginx chart, with helm from .venv/bin when it is there, and the prometheus-operator CRDs, until the file
reaches ``--mb``). Each loader reads each input ``--rounds`` times, alternating; the table gives the median time.

Usage: .venv/bin/python bench/yamlload.py [--rounds 7] [--mb 2.0]
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import yaml

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent import kubeyaml  # noqa: E402

CORPORA = REPO.parent / "shared" / "corpora" / "public"


def _interned(loader: Any, node: Any) -> str:
    value: str = loader.construct_scalar(node)
    return sys.intern(value) if len(value) <= 64 else value


Before: Any = type("Before", (yaml.CSafeLoader,), {})
Before.add_constructor("tag:yaml.org,2002:str", _interned)
Before.add_constructor("tag:yaml.org,2002:value", _interned)


def before(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=Before))


def kube(text: str) -> list[Any]:
    return list(kubeyaml.load_all(text))


def corpus_texts() -> list[str]:
    """Every YAML file of the corpora that both loaders read (Helm templates are not YAML until rendered)."""
    out = []
    for f in sorted(CORPORA.rglob("*")):
        if f.suffix not in (".yaml", ".yml") or "templates" in f.parts or not f.is_file():
            continue
        text = f.read_text(encoding="utf-8", errors="replace")
        try:
            before(text)
            kube(text)
        except yaml.YAMLError:
            continue
        out.append(text)
    return out


def big_file(mb: float) -> str:
    """The rendered ingress-nginx chart and the prometheus-operator CRDs, repeated up to ``mb`` megabytes."""
    parts = []
    helm = REPO / ".venv" / "bin" / "helm"
    chart = CORPORA / "kubernetes-ingress-nginx" / "charts" / "ingress-nginx"
    if helm.exists():
        done = subprocess.run(
            [str(helm), "template", "bench", str(chart)], capture_output=True, text=True, timeout=120, check=True
        )
        parts.append(done.stdout)
    setup = CORPORA / "prometheus-operator-kube-prometheus" / "manifests" / "setup"
    crds = [f.read_text() for f in sorted(setup.glob("*CustomResourceDefinition.yaml"))]
    size = sum(map(len, parts))
    for text in crds * 10:
        if size >= mb * 1e6:
            break
        parts.append(text)
        size += len(text)
    return "\n---\n".join(parts)


def timed(fn: Callable[[str], list[Any]], texts: list[str]) -> float:
    t0 = time.perf_counter()
    for t in texts:
        fn(t)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--mb", type=float, default=2.0)
    args = ap.parse_args()
    inputs = {"corpora": corpus_texts(), "2 MB file": [big_file(args.mb)]}
    print("| input | files | MB | before (s) | kube (s) | x before |")
    print("|---|---|---|---|---|---|")
    for name, texts in inputs.items():
        times: dict[str, list[float]] = {"before": [], "kube": []}
        for i in range(args.rounds):
            order = [("before", before), ("kube", kube)]
            for label, fn in order if i % 2 == 0 else order[::-1]:
                times[label].append(timed(fn, texts))
        b, k = statistics.median(times["before"]), statistics.median(times["kube"])
        mb = sum(map(len, texts)) / 1e6
        print(f"| {name} | {len(texts)} | {mb:.2f} | {b:.3f} | {k:.3f} | {k / b:.2f} |")


if __name__ == "__main__":
    main()

"""Helm charts in a source: a directory holding ``Chart.yaml`` is rendered with the real ``helm template`` as one
unit (its files are never read as manifests), like a kustomization.

``helm template <release> <chart> --namespace <ns> --include-crds --skip-tests`` (Helm v4; ``make`` installs it
into ``.venv/bin/helm`` from its Go module): the release is named after the app (after the chart's directory for a
``paths`` entry) and placed in its namespace, CRDs under ``crds/`` are included and ``helm test`` hooks left out,
as Argo CD renders a chart; an app's ``helm`` options change these and add its values files (:class:`Options`,
passed as ``--values`` in order). Each rendered document keeps the template it came from (Helm's ``# Source:``
line), so an error names ``<chart dir>/<template file>#<doc>``. The target cluster's version and served API
versions are passed (``--kube-version``, ``--api-versions``), so ``.Capabilities`` checks render as they would
install there. Dependencies declared in ``Chart.yaml`` and not vendored in ``charts/`` are built first (``helm
dependency build`` on a copy, from their ``http(s)://`` or ``oci://`` repositories, honouring ``Chart.lock``).
Rendering is otherwise offline: ``lookup`` finds nothing. Renders are cached by chart content, release,
namespace, values and cluster facts, so clusters alike and resyncs with nothing changed run no ``helm``
(:func:`renders` counts the runs).

Helm hooks (``helm.sh/hook``) become sync hooks as Argo CD maps them (:mod:`reconcilers.hooks`: pre-install and
pre-upgrade run in PreSync, post-install and post-upgrade in PostSync, ``hook-weight`` is the wave; rollback and
test hooks never run); ``helm.sh/resource-policy: keep`` objects are never pruned. Used by
:mod:`agent.sources.manifests` through :class:`Helm`.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
import pathlib
import re
import shutil
import tempfile
import threading

import yaml

from agent import kubeyaml
from agent.sources import tools
from agent.sources.render import plain, protocol
from reconcilers import errors, resources

_SOURCE = re.compile(r"^# Source: (.+)$", re.MULTILINE)


def binary() -> str | None:
    """``$GITOPS_AGENT_HELM``, else ``helm`` beside the running Python (the venv ``make`` fills), else on PATH."""
    return tools.find("helm", "GITOPS_AGENT_HELM")


def is_chart(directory: pathlib.Path) -> bool:
    """True when ``directory`` holds a ``Chart.yaml``."""
    return (directory / "Chart.yaml").is_file()


@dataclasses.dataclass(frozen=True)
class Options:
    """How one app renders its chart: ``release`` (None: the chart directory's name), ``values`` as ``(name,
    YAML bytes)`` pairs in merge order (``-f`` each), ``skip_crds`` (``--skip-crds`` instead of
    ``--include-crds``), ``skip_tests`` (``--skip-tests``)."""

    release: str | None = None
    values: tuple[tuple[str, bytes], ...] = ()
    skip_crds: bool = False
    skip_tests: bool = True

    def digest(self) -> str:
        """What the render cache keys on."""
        h = hashlib.sha256(repr((self.release, self.skip_crds, self.skip_tests)).encode())
        for name, data in self.values:
            h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        return h.hexdigest()


Facts = tuple[str, tuple[str, ...]]
"""A cluster's version (``v1.34.4``) and served API versions (``apps/v1``, ``apps/v1/Deployment``, ...)."""

CACHE_RENDERS = 64
"""Renders kept (by chart content, release, namespace and cluster facts), shared by clusters and resyncs."""
_cache: collections.OrderedDict[tuple[str, str, str, str, str], list[tuple[str, str]]] = collections.OrderedDict()
_cache_lock = threading.Lock()
_inflight: dict[tuple[str, str, str, str, str], threading.Event] = {}  # keys being rendered now: one render each
_renders = 0


def renders() -> int:
    """How many times ``helm template`` ran in this process (a resync with nothing changed runs none)."""
    return _renders


def template(
    chart: pathlib.Path,
    rel: str,
    *,
    release: str,
    namespace: str,
    facts: Facts | None = None,
    options: Options | None = None,
    limits: tools.Limits = tools.DEFAULT_LIMITS,
) -> list[tuple[str, str]]:
    """Render the chart at ``chart`` (named ``rel`` in errors) for a cluster with ``facts`` (its version and
    served API versions, passed as ``--kube-version`` and ``--api-versions`` so ``.Capabilities`` checks behave as
    on install there); returns ``(template file, YAML document)`` pairs in Helm's order, the template relative to
    the chart's parent directory as Helm prints it. ``options`` carry an app's values and flags (:class:`Options`).
    The same chart content, release, namespace, facts and options render once (:data:`CACHE_RENDERS` kept):
    clusters that ask at the same time wait for the one render in flight rather than run their own.

    Each helm run is bounded by ``limits`` (:mod:`agent.sources.tools`: killed with its process group when it
    takes longer, stopped by its heap limit); a failed render is never kept.

    Raises :class:`errors.ManifestError` naming ``rel`` with Helm's own message when it fails or is missing, and
    naming the render and the limit when it runs out of time or memory."""
    options = options or Options()
    facts_digest = hashlib.sha256(repr(facts).encode()).hexdigest()
    key = (_content_hash(chart), release, namespace, facts_digest, options.digest())
    while True:
        with _cache_lock:
            if key in _cache:
                _cache.move_to_end(key)
                return list(_cache[key])
            running = _inflight.get(key)
            if running is None:
                running = _inflight[key] = threading.Event()
                break
        running.wait(limits.timeout)  # another thread renders this key: take its result (or render if it failed)
    try:
        pairs = _render(chart, rel, release=release, namespace=namespace, facts=facts, options=options, limits=limits)
        with _cache_lock:
            _cache[key] = pairs
            while len(_cache) > CACHE_RENDERS:
                _cache.popitem(last=False)
    finally:
        with _cache_lock:
            _inflight.pop(key, None)
        running.set()
    return list(pairs)


def _content_hash(chart: pathlib.Path) -> str:
    digest = hashlib.sha256()
    for f in sorted(p for p in chart.rglob("*") if p.is_file()):
        digest.update(f.relative_to(chart).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()


def _render(
    chart: pathlib.Path,
    rel: str,
    *,
    release: str,
    namespace: str,
    facts: Facts | None,
    options: Options,
    limits: tools.Limits,
) -> list[tuple[str, str]]:
    global _renders
    helm = binary()
    if helm is None:
        raise errors.ManifestError(rel, None, "is a Helm chart but helm is not installed (or set GITOPS_AGENT_HELM)")
    with tempfile.TemporaryDirectory(prefix="gitops-agent-helm-") as home:
        env = {
            **os.environ,
            # Helm reads and writes its config, cache and data there: nothing of the user's is read or changed.
            "HELM_CONFIG_HOME": f"{home}/config",
            "HELM_CACHE_HOME": f"{home}/cache",
            "HELM_DATA_HOME": f"{home}/data",
        }
        chart = _with_dependencies(helm, chart, rel, pathlib.Path(home), env, limits)
        command = [helm, "template", release, str(chart), "--namespace", namespace]
        command += ["--skip-crds"] if options.skip_crds else ["--include-crds"]
        command += ["--skip-tests"] if options.skip_tests else []
        for i, (_, data) in enumerate(options.values):  # in a private directory, removed with it
            values = pathlib.Path(home) / f"values-{i}.yaml"
            values.write_bytes(data)
            command += ["--values", str(values)]
        if facts is not None:
            version, api_versions = facts
            if version:
                command += ["--kube-version", version.lstrip("v").split("+")[0]]
            if api_versions:
                command += ["--api-versions", ",".join(api_versions)]
        try:
            proc = tools.run(command, limits, env=env)
        except tools.RenderTimeoutError:
            why = f"helm template of {rel} did not finish in {limits.timeout:g} s (renderTimeout): stopped"
            raise errors.ManifestError(rel, None, why) from None
    with _cache_lock:
        _renders += 1
    if proc.returncode != 0 and tools.out_of_memory(proc, limits):
        why = f"helm template of {rel} ran out of memory (render.memoryLimit: {tools.memory_text(limits)}): stopped"
        raise errors.ManifestError(rel, None, why)
    if proc.returncode != 0:
        message = tools.error_text(proc.stderr).removeprefix("Error: ")
        for i, (name, _) in enumerate(options.values):  # name each values file as the user wrote it
            message = re.sub(rf"\S*/values-{i}\.yaml", name, message)
        raise errors.ManifestError(rel, None, f"helm template failed: {message}")
    return split(proc.stdout)


def _missing_dependencies(chart: pathlib.Path) -> list[dict[str, str]]:
    """The ``Chart.yaml`` dependencies not vendored in ``charts/`` (neither ``<name>-*.tgz`` nor ``<name>/``)."""
    try:
        meta = kubeyaml.load((chart / "Chart.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []  # helm template says what is wrong with it
    deps = [d for d in meta.get("dependencies") or [] if isinstance(d, dict) and d.get("name")]
    vendored = chart / "charts"
    return [
        d for d in deps if not (vendored / str(d["name"])).is_dir() and not list(vendored.glob(f"{d['name']}-*.tgz"))
    ]


def _with_dependencies(
    helm: str, chart: pathlib.Path, rel: str, home: pathlib.Path, env: dict[str, str], limits: tools.Limits
) -> pathlib.Path:
    """``chart``, or a copy of it in ``home`` with its dependencies built (``helm dependency build``, which honours
    ``Chart.lock``) when ``Chart.yaml`` declares some not vendored in ``charts/``: each ``http(s)://`` repository
    is added to the private Helm home first; ``oci://`` ones are pulled directly. The checkout is never
    written. Raises ManifestError naming ``rel`` with Helm's message."""
    missing = _missing_dependencies(chart)
    if not missing:
        return chart
    built = home / "chart" / chart.name
    shutil.copytree(chart, built, symlinks=False)
    repositories = sorted({str(d.get("repository", "")) for d in missing} - {""})
    for i, url in enumerate(r for r in repositories if r.startswith(("http://", "https://"))):
        _helm_step([helm, "repo", "add", f"dependency-{i}", url, "--force-update"], rel, env, limits)
    _helm_step([helm, "dependency", "build", str(built)], rel, env, limits)
    return built


def _helm_step(command: list[str], rel: str, env: dict[str, str], limits: tools.Limits) -> None:
    try:
        proc = tools.run(command, limits, env=env)
    except tools.RenderTimeoutError:
        why = f"helm {command[1]} of {rel} did not finish in {limits.timeout:g} s (renderTimeout): stopped"
        raise errors.ManifestError(rel, None, why) from None
    if proc.returncode != 0:
        message = tools.error_text(proc.stderr).removeprefix("Error: ")
        raise errors.ManifestError(rel, None, f"chart dependencies: helm {' '.join(command[1:3])} failed: {message}")


def split(output: str) -> list[tuple[str, str]]:
    """Helm's output as ``(template file, document)`` pairs (documents without a ``# Source:`` line are
    attributed to ``(unknown template)``)."""
    pairs = []
    for doc in re.split(r"^---\s*$", output, flags=re.MULTILINE):
        if not doc.strip():
            continue
        found = _SOURCE.search(doc)
        pairs.append((found.group(1).strip() if found else "(unknown template)", doc))
    return pairs


class Helm:
    """:class:`agent.sources.render.protocol.Renderer` of a directory holding ``Chart.yaml`` (as one unit); each
    object names the template it came from (``<chart dir>/templates/x.yaml#<doc>``)."""

    name = "helm template"
    patterns: tuple[str, ...] = ("a directory with Chart.yaml",)

    def whole(self, directory: pathlib.Path) -> bool:
        """True for a chart (:func:`is_chart`)."""
        return is_chart(directory)

    def reads(self, file: pathlib.Path) -> bool:
        """Never: a chart is rendered whole."""
        return False

    def inputs(self, file: pathlib.Path) -> bool:
        """Never: a chart's files are inside the directory it takes whole."""
        return False

    def render(self, ctx: protocol.Context, target: pathlib.Path, source_path: str) -> list[resources.Manifest]:
        """The chart at ``target`` rendered for ``ctx`` (its namespace, the cluster's facts, the app's options)."""
        rel = ctx.rel(target)
        out: list[resources.Manifest] = []
        seen: collections.Counter[str] = collections.Counter()
        facts = ctx.facts() if ctx.facts else None
        options = ctx.chart or Options()
        release = options.release or ctx.release or target.name
        rendered = template(
            target, rel, release=release, namespace=ctx.namespace, facts=facts, options=options, limits=ctx.limits
        )
        for name, doc in rendered:
            source_file = f"{ctx.rel(target.parent)}/{name}".lstrip("./")
            for m in plain.parse_stream(doc, source_file, source_path):
                index = seen[source_file]
                seen[source_file] += 1
                out.append(dataclasses.replace(m, doc_index=index))
        return out

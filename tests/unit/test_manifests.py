"""The manifest loader: documents, lists, kustomize units, and clear errors naming file and document."""

from __future__ import annotations

import os
import pathlib
import time
from concurrent import futures

import pytest
import yaml

from agent import kubeyaml
from agent.sources import manifests
from agent.sources.render import plain
from reconcilers import errors, resources
from tests.conftest import CORPORA


def write(root: pathlib.Path, rel: str, text: str | bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)


def test_multi_document_files_lists_and_empty_documents(tmp_path: pathlib.Path) -> None:
    write(
        tmp_path,
        "app/a.yaml",
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: one}\n---\n---\n"
        "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Secret, metadata: {name: two}}\n"
        "- {apiVersion: apps/v1, kind: Deployment, metadata: {name: three, namespace: x}}\n",
    )
    write(tmp_path, "app/sub/b.json", '{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "four"}}')
    write(tmp_path, "app/README.md", "not a manifest")
    loaded = manifests.load_paths(tmp_path, ["app"])
    assert [(m.key.kind, m.key.name, m.origin) for m in loaded] == [
        ("ConfigMap", "one", "app/a.yaml#0"),
        ("Secret", "two", "app/a.yaml#2.items[0]"),
        ("Deployment", "three", "app/a.yaml#2.items[1]"),
        ("Service", "four", "app/sub/b.json#0"),
    ]
    assert loaded[2].key.group == "apps"
    assert loaded[2].key.namespace == "x"


@pytest.mark.parametrize(
    ("text", "index", "message"),
    [
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nkey: [oops\n", 1, "malformed YAML"),
        ("apiVersion: v1\nmetadata: {name: a}\n", 0, "kind is missing"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n", 0, "metadata.name is missing (ConfigMap)"),
        ("- a\n- b\n", 0, "a document must be a mapping"),
        ("---\n---\napiVersion: v1\nkind: List\nitems: [3]\n", 1, "bad.yaml#1.items[0]: not an object (a number)"),
    ],
)
def test_bad_documents_name_file_and_index(tmp_path: pathlib.Path, text: str, index: int, message: str) -> None:
    write(tmp_path, "bad.yaml", text)
    with pytest.raises(errors.ManifestError) as exc:
        manifests.load_paths(tmp_path, ["bad.yaml"])
    assert exc.value.source_file == "bad.yaml"
    assert exc.value.doc_index == index
    assert message in str(exc.value)


def test_non_utf8_and_oversize_files_are_refused(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "latin1.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: caf\xe9}\n".encode("latin-1"))
    with pytest.raises(errors.ManifestError, match=r"latin1.yaml: not UTF-8"):
        manifests.load_paths(tmp_path, ["latin1.yaml"])
    monkeypatch.setattr(plain, "MAX_FILE_BYTES", 10)
    write(tmp_path, "big.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\n")
    with pytest.raises(errors.ManifestError, match=r"big.yaml: file is \d+ bytes, over the 10-byte limit"):
        manifests.load_paths(tmp_path, ["big.yaml"])


def test_missing_path_and_symlink_outside_are_refused(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "repo"
    outside = tmp_path / "secret.yaml"
    outside.write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: stolen}\n")
    write(root, "app/ok.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n")
    os.symlink(outside, root / "app" / "link.yaml")
    with pytest.raises(errors.ManifestError, match=r"app/link\.yaml: leads outside the repository"):
        manifests.load_paths(root, ["app"])
    with pytest.raises(errors.ManifestError, match="gone: path does not exist"):
        manifests.load_paths(root, ["gone"])


def test_kustomizations_are_rendered_as_units_not_walked() -> None:
    loaded = manifests.load_paths(CORPORA / "stefanprodan-podinfo", ["deploy/overlays/dev", "kustomize"])
    dev = [m for m in loaded if m.source_file == "deploy/overlays/dev"]
    assert len(dev) == 25  # SOURCE.txt: kustomize build deploy/overlays/dev: 25 objects
    assert {m.key.namespace for m in dev if m.key.kind != "Namespace"} == {"dev"}
    assert not any(m.key.kind in ("Kustomization", "LabelTransformer") for m in loaded)
    hashed = [m.key.name for m in dev if m.key.kind == "ConfigMap" and m.key.name.startswith("redis-config-")]
    assert len(hashed) == 1  # configMapGenerator's content-hash suffix
    assert sorted(m.key.kind for m in loaded if m.source_file == "kustomize") == [
        "Deployment",
        "HorizontalPodAutoscaler",
        "Service",
    ]


def test_a_directory_above_kustomizations_renders_each_once() -> None:
    loaded = manifests.load_paths(CORPORA / "stefanprodan-podinfo", ["deploy"])
    sources = {m.source_file for m in loaded}
    assert {"deploy/bases/backend", "deploy/overlays/staging"} <= sources
    assert not any(s.startswith("deploy/bases/backend/") for s in sources)  # its files are kustomize inputs
    assert "deploy/webapp/common/namespace.yaml" in sources  # plain directories are still walked


def test_broken_kustomization_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "k/kustomization.yaml", "resources: [missing.yaml]\n")
    with pytest.raises(errors.ManifestError, match=r"^k: kustomize build failed: .*missing.yaml"):
        manifests.load_paths(tmp_path, ["k"])


def test_a_yaml_alias_bomb_is_refused_quickly(tmp_path: pathlib.Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    previous = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
        previous = name
    write(
        tmp_path,
        "bomb.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n  " + "\n  ".join(lines) + "\n",
    )
    import time

    started = time.monotonic()
    with pytest.raises(errors.ManifestError, match=r"^bomb\.yaml#0: YAML aliases expand this document to \d+ values"):
        manifests.load_paths(tmp_path, ["bomb.yaml"])
    assert time.monotonic() - started < 2.0  # refused without expanding it


def test_aliases_in_an_ordinary_document_are_fine(tmp_path: pathlib.Path) -> None:
    write(
        tmp_path,
        "ok.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, labels: &l {a: b}}\ndata: {copy: yes}\nextra: *l\n",
    )
    assert manifests.load_paths(tmp_path, ["ok.yaml"])[0].body["extra"] == {"a": "b"}


def test_clusters_loading_one_file_at_once_share_one_parse(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five clusters reconcile at once: each file is parsed by one of them and its objects shared by all."""
    for i in range(3):
        write(tmp_path, f"app/{i}.yaml", f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: shared-{i}}}\n")
    calls: list[str] = []
    real = plain.parse_stream

    def slow_parse(text: str, source_file: str, source_path: str) -> list[resources.Manifest]:
        calls.append(source_file)
        time.sleep(0.05)  # every thread arrives while the first is still parsing
        return real(text, source_file, source_path)

    monkeypatch.setattr(plain, "parse_stream", slow_parse)
    with futures.ThreadPoolExecutor(5) as pool:
        loads = list(pool.map(lambda _: manifests.load_paths(tmp_path, ["app"]), range(5)))
    assert sorted(calls) == ["app/0.yaml", "app/1.yaml", "app/2.yaml"]
    assert {m.source_path for m in loads[0]} == {"app"}
    for other in loads[1:]:
        assert all(a is b for a, b in zip(other, loads[0], strict=True))  # one Manifest each, not one per cluster


def test_a_file_that_fails_to_parse_fails_every_waiting_cluster(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "bad.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [unclosed\n")
    real = plain.parse_stream

    def slow_parse(text: str, source_file: str, source_path: str) -> list[resources.Manifest]:
        time.sleep(0.05)
        return real(text, source_file, source_path)

    monkeypatch.setattr(plain, "parse_stream", slow_parse)

    def load(_: int) -> str:
        try:
            manifests.load_paths(tmp_path, ["bad.yaml"])
        except errors.ManifestError as e:
            return str(e)
        return "loaded"

    with futures.ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(load, range(3)))
    assert all(o.startswith("bad.yaml") and "malformed YAML" in o for o in outcomes), outcomes
    assert not plain._parsing


def test_short_strings_are_shared_across_documents(tmp_path: pathlib.Path) -> None:
    """Keys and short values are one object however many documents spell them; long values are left alone."""
    long_value = "x" * (kubeyaml.INTERN_MAX_CHARS + 1)
    docs = [
        f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web-{i}}}\ndata: {{k: {long_value}}}\n"
        for i in range(2)
    ]
    write(tmp_path, "two.yaml", "---\n".join(docs))
    a, b = (m.body for m in manifests.load_paths(tmp_path, ["two.yaml"]))
    assert next(k for k in a if k == "apiVersion") is next(k for k in b if k == "apiVersion")
    assert a["apiVersion"] is b["apiVersion"]
    assert a["apiVersion"] == "apps/v1"
    assert a["data"]["k"] == b["data"]["k"] == long_value
    assert a["data"]["k"] is not b["data"]["k"]


@pytest.mark.parametrize(
    ("annotation", "value"),
    [("argocd.argoproj.io/hook", "PreSync"), ("helm.sh/hook", "post-install"), ("gitops-agent.io/phase", "PostSync")],
)
def test_a_hook_may_have_only_a_generate_name(tmp_path: pathlib.Path, annotation: str, value: str) -> None:
    """A hook Job as Argo CD users write it (``generateName``, no name) loads, keyed by its generateName; an
    ordinary object without a name is still refused, naming file and document."""
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"generateName": "migrate-", "annotations": {annotation: value}},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "m:1"}]}}},
    }
    plain = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "all.yaml").write_text(yaml.safe_dump_all([plain, job]))
    assert [m.key.name for m in manifests.load_paths(tmp_path, ["app"])] == ["c", "migrate-"]
    nameless = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "c-"}}
    (tmp_path / "app" / "all.yaml").write_text(yaml.safe_dump_all([plain, nameless]))
    with pytest.raises(errors.ManifestError, match=r"^app/all.yaml#1: metadata.name is missing \(ConfigMap\)$"):
        manifests.load_paths(tmp_path, ["app"])


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({"argocd.argoproj.io/hook": "PreSinc"}, "argocd.argoproj.io/hook: unknown phase 'PreSinc'"),
        ({"argocd.argoproj.io/sync-wave": "two"}, "argocd.argoproj.io/sync-wave: 'two' is not an integer wave"),
        ({"gitops-agent.io/phase": "Later"}, "gitops-agent.io/phase: unknown phase 'Later'"),
        ({"helm.sh/hook": "pre-instal"}, "helm.sh/hook: unknown Helm hook 'pre-instal'"),
        (
            {"argocd.argoproj.io/hook": "PreSync", "argocd.argoproj.io/hook-delete-policy": "OnSuccess"},
            "argocd.argoproj.io/hook-delete-policy: unknown delete policy 'OnSuccess'",
        ),
    ],
)
def test_malformed_phase_marks_name_file_document_and_annotation(
    tmp_path: pathlib.Path, annotations: dict[str, str], message: str
) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "annotations": annotations}}
    (tmp_path / "c.yaml").write_text(
        yaml.safe_dump_all([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}, body])
    )
    with pytest.raises(errors.ManifestError) as caught:
        manifests.load_paths(tmp_path, ["c.yaml"])
    assert str(caught.value).startswith(f"c.yaml#1: {message}")


def test_the_sync_phase_is_an_ordinary_object(tmp_path: pathlib.Path) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "annotations": {"gitops-agent.io/phase": "Sync"}},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(body))
    assert [m.key.name for m in manifests.load_paths(tmp_path, ["c.yaml"])] == ["c"]


def test_directory_options_select_files_as_argo_cd_does(tmp_path: pathlib.Path) -> None:
    """Argo CD's ``source.directory``: ``recurse: false`` reads the top only; ``include`` and ``exclude`` are globs
    over the path relative to the app's path, ``{a,b}`` alternatives included and ``*`` spanning ``/``."""
    from agent import config, kubeyaml
    from agent.sources import manifests as m
    from agent.sync import desired

    def cm(name: str) -> str:
        return kubeyaml.dump_all([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}])

    files = {
        "app/top.yaml": "top",
        "app/config.yaml": "config",
        "app/smoke.test.yaml": "smoke",
        "app/env-use2/east.yaml": "east",
        "app/env-euw1/west.yaml": "west",
        "app/env-use2/deep/deeper.yaml": "deeper",
    }
    for rel, name in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(cm(name))

    def names(**options: object) -> list[str]:
        chosen = desired.selection(config.DirectoryOptions.model_validate(options))
        return sorted(x.key.name for x in m.load_paths(tmp_path, ["app"], selection=chosen))

    assert names() == sorted(files.values())
    assert names(recurse=False) == ["config", "smoke", "top"]
    assert names(include="{config.yaml,env-use2/*}") == ["config", "deeper", "east"]
    assert names(exclude="*.test.yaml") == ["config", "deeper", "east", "top", "west"]
    assert names(recurse=False, include="*.yaml", exclude="smoke*") == ["config", "top"]

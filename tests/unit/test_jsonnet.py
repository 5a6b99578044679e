"""The jsonnet renderer's errors, each naming the file: an import leading outside the source, jsonnet's own error
(the checkout's path left out), a library path that is not a directory, an environment variable not set, an object
that is not a manifest; and the walk's rule for files no renderer reads."""

from __future__ import annotations

import pathlib

import pytest

from agent import config
from agent.sources import manifests
from agent.sources.render import jsonnet, protocol
from reconcilers import errors


def write(root: pathlib.Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_an_import_outside_the_source_is_refused(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "repo"
    write(tmp_path, "secret.libsonnet", "{ token: 'x' }\n")
    write(root, "app/main.jsonnet", "local s = import '../../secret.libsonnet'; [s]\n")
    with pytest.raises(errors.ManifestError) as exc:
        manifests.load_paths(root, ["app"])
    assert str(exc.value).startswith("app/main.jsonnet: jsonnet failed: ")
    assert "import '../../secret.libsonnet' leads outside the source" in str(exc.value)
    assert str(tmp_path) not in str(exc.value)


def test_jsonnets_own_error_names_the_file_in_the_repository(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "app/main.jsonnet", "{ a: }\n")
    with pytest.raises(errors.ManifestError) as exc:
        manifests.load_paths(tmp_path, ["app"])
    assert "STATIC ERROR: app/main.jsonnet:1:" in str(exc.value)
    assert str(tmp_path) not in str(exc.value)


def test_an_object_that_is_not_a_manifest_is_named_by_its_index(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "app/main.jsonnet", "[{apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'a'}}, [{kind: 'X'}]]")
    with pytest.raises(errors.ManifestError, match=r"app/main.jsonnet#1: apiVersion is missing"):
        manifests.load_paths(tmp_path, ["app"])


def test_libs_must_be_directories_and_env_values_must_be_set(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "app/main.jsonnet", "[]\n")
    with pytest.raises(errors.ManifestError, match=r"jsonnet libs: 'nowhere' is not a directory of the source"):
        manifests.load_paths(tmp_path, ["app"], jsonnet=protocol.JsonnetInputs(libs=("nowhere",)))
    options = config.JsonnetOptions.model_validate({"extVars": {"token": {"env": "NOT_SET_ANYWHERE"}}})
    with pytest.raises(errors.ManifestError, match=r"app: jsonnet extVars token: the environment variable NOT_SET"):
        jsonnet.inputs(options, "app", {})
    with pytest.raises(ValueError, match=r"exactly one of value, code or env"):
        config.JsonnetOptions.model_validate({"tlas": {"x": {"value": "a", "code": "1"}}})


def test_files_no_renderer_reads_are_ignored_beside_objects_and_an_error_alone(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "app/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    write(tmp_path, "app/README.md", "notes\n")
    assert [m.key.name for m in manifests.load_paths(tmp_path, ["app"])] == ["a"]
    write(tmp_path, "empty/.keep", "")
    assert manifests.load_paths(tmp_path, ["empty"]) == []  # hidden files only: nothing to say
    write(tmp_path, "docs/README.md", "documentation is not a manifest nobody reads\n")
    assert manifests.load_paths(tmp_path, ["docs"]) == []  # an empty desired state: sync.allowEmpty decides
    for i in range(7):
        write(tmp_path, f"docs/{i}.txt", "notes\n")
    with pytest.raises(
        errors.ManifestError, match=r"docs: holds no object: no renderer reads docs/0.txt, .* and 2 more"
    ):
        manifests.load_paths(tmp_path, ["docs"])

"""Config validation: camelCase keys, durations, clear errors naming file and key."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from agent import config
from reconcilers import errors

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_the_example_config_is_valid_and_documents_every_key() -> None:
    cfg = config.load_config(REPO / "config.example.yaml")
    text = (REPO / "config.example.yaml").read_text()
    models = (
        config.AgentConfig,
        config.SourceConfig,
        config.ClusterConfig,
        config.SyncConfig,
        config.ServerConfig,
        config.IgnoreDifference,
        config.LabelSelector,
        config.SecretRef,
        config.RolloutConfig,
        config.AwsConfig,
        config.WebhooksConfig,
        config.ShardingConfig,
        config.AppConfig,
        config.AppSync,
        config.Placement,
        config.SelectorRequirement,
        config.HelmOptions,
        config.ValuesFile,
        config.AppSetConfig,
        config.Generator,
        config.GitGenerator,
        config.ListGenerator,
        config.ClusterGenerator,
        config.MatrixGenerator,
        config.MergeGenerator,
        config.PathPattern,
        config.PullRequestGenerator,
        config.GitHubPullRequests,
        config.GitLabMergeRequests,
    )
    for model in models:
        for field in model.model_fields.values():
            assert f"{field.alias}:" in text, f"config.example.yaml does not document {model.__name__}.{field.alias}"
    assert cfg.clusters[0].paths
    sharding = yaml.safe_load(
        "\n".join(line.removeprefix("# ") for line in text.splitlines() if line.startswith(("# sharding:", "#   ")))
    )["sharding"]
    assert config.ShardingConfig.model_validate(sharding).identity == "gitops-agent-0"


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h", 3600), ("1m30s", 90), ("100ms", 0.1), (45, 45)]
)
def test_durations(text: object, seconds: float) -> None:
    assert config.parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "-5s", 0, "", True, "5 m", "1x", "m5"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        config.parse_duration(bad)


def test_relative_paths_resolve_against_the_config_file(tmp_path: pathlib.Path) -> None:
    (tmp_path / "agent.yaml").write_text(
        "source: {url: ./fleet, cacheDir: cache}\nclusters: [{name: dev, kubeconfig: kube/dev.yaml, paths: [apps]}]\n"
    )
    cfg = config.load_config(tmp_path / "agent.yaml")
    assert cfg.source.url == str(tmp_path / "fleet")
    assert cfg.clusters[0].kubeconfig == str(tmp_path / "kube" / "dev.yaml")
    assert cfg.sync.field_manager == "gitops-agent"
    assert cfg.sync.interval == 300
    (tmp_path / "agent.yaml").write_text(
        "source: {url: /r}\nclusters: [{name: dev}]\nserver: {tls: {certFile: tls/c.pem, keyFile: tls/k.pem}, "
        "oidc: {issuer: 'https://dex.example.com', clientID: a, caFile: ca/dex.pem}}\n"
    )
    server = config.load_config(tmp_path / "agent.yaml").server
    assert server.oidc is not None
    assert server.oidc.ca_file == str(tmp_path / "ca" / "dex.pem")
    assert server.tls is not None
    assert server.tls.cert_file == str(tmp_path / "tls" / "c.pem")


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("clusters: [{name: a, paths: [x]}]\n", "give source (or sources)"),
        (
            "source: {url: /r}\nclusters: [{name: a, paths: ['../up']}]\n",
            "clusters[0].paths: path '../up' must be relative",
        ),
        ("source: {url: /r}\nclusters: [{name: a, paths: [x]}, {name: a, paths: [y]}]\n", "a appear more than once"),
        (
            "source: {url: /r, branch: main}\nclusters: [{name: a, paths: [x]}]\n",
            "source.branch: unknown key (the keys here: ",
        ),
        (
            "source: {url: /r}\nsync: {intervall: 5m}\nclusters: [{name: a, paths: [x]}]\n",
            "sync.intervall: unknown key; did you mean sync.interval?",
        ),
        (
            "source: {url: /r}\nclusters: [{name: a}]\napps: [{name: x, path: x, depends_on: [y]}]\n",
            "apps[0].depends_on: config keys are camelCase: use apps[0].dependsOn",
        ),
        (
            "source: {url: /r}\nclusters: [{name: a}]\napps: [{name: x, path: x, clusters: [a]}]\n",
            "apps[0].clusters: should be a mapping (key: value), not list",
        ),
        (
            "source: {url: /r, interval: 500ms}\nclusters: [{name: a, paths: [x]}]\n",
            "source.interval: must be at least 1s",
        ),
        (
            "source: {url: /r}\nclusters: [{name: a, paths: [x]}]\nserver: {maxBodyBytes: ten megs}\n",
            "server.maxBodyBytes: invalid size 'ten megs': expected a size such as 512Mi, 1Gi or a number of bytes",
        ),
        ("source: {url: /r}\nclusters: [{name: a, paths: [x]}]\nserver: {listen: nope}\n", "server.listen"),
        ("source: {url: /r}\nclusters: [{name: a, paths: [x]}]\nsync: {concurrency: 0}\n", "sync.concurrency"),
        (  # verify is a union (git's or a chart registry's): a typo is named against the one it fits best
            "source: {url: /r}\nclusters: [{name: a}]\nsources: {oci: {type: oci, url: 'oci://r/c', verify: "
            "{provider: cosign, keys: [{file: /k}], keyz: 1}}}\n",
            "sources.oci.verify.keyz: unknown key; did you mean sources.oci.verify.keys?",
        ),
        (
            "source: {url: /r, verify: {provider: cosign, keys: [{file: /k}]}}\nclusters: [{name: a}]\n",
            "verify with provider cosign is for type: oci sources",
        ),
        (
            "source: {url: /r}\nclusters: [{name: a}]\nsources: {oci: {type: oci, url: 'oci://r/c', verify: "
            "{type: ssh, keys: [{file: /k}]}}}\n",
            "verify with type ssh or gpg is for git sources, not type: oci",
        ),
        ("- just a list\n", "must be a mapping"),
        ("source: [unclosed\n", "not valid YAML"),
    ],
)
def test_errors_name_file_and_key(tmp_path: pathlib.Path, yaml_text: str, expected: str) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(yaml_text)
    with pytest.raises(errors.ConfigError) as exc:
        config.load_config(path)
    assert str(exc.value).startswith(f"{path}: ")
    assert expected in str(exc.value)


def test_no_python_class_name_reaches_a_config_error(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("source: {url: /r}\nclusters: [{name: a}]\napps: [{name: x, path: x, clusters: [a]}]\n")
    with pytest.raises(errors.ConfigError) as exc:
        config.load_config(path)
    assert "Placement" not in str(exc.value)
    assert "instance of" not in str(exc.value)


def test_sizes_take_kubernetes_units(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "source: {url: /r}\nclusters: [{name: a, paths: [x]}]\n"
        "server: {maxBodyBytes: 10Mi}\nrender: {memoryLimit: 1.5Gi}\n"
    )
    cfg = config.load_config(path)
    assert cfg.server.max_body_bytes == 10 * 1024 * 1024
    assert cfg.render.memory_limit == 1536 * 1024 * 1024
    path.write_text("source: {url: /r}\nclusters: [{name: a, paths: [x]}]\nserver: {maxBodyBytes: 2M}\n")
    assert config.load_config(path).server.max_body_bytes == 2_000_000


def test_missing_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(errors.ConfigError, match="cannot read config"):
        config.load_config(tmp_path / "nope.yaml")

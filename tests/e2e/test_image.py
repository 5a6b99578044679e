"""The agent's OCI image (``make image``, image/build.sh): two builds of the same commit give the same digest, and
``make sbom`` lists its packages (Debian's, Python's at the pinned versions, the Go tools') in SPDX; the
image is pushed to a loopback OCI registry (go-containerregistry's, as the chart tests use) and its configuration
says what the agent needs (user 10001, the entrypoint, OCI labels naming this commit); its filesystem, exported
from the registry and unpacked, runs ``gitops-agent version`` and a ``gitops-agent sync`` of a git repository to
a test cluster in a chroot, as user 10001, with the root read-only (only /tmp and the cache volume writable, the
config and the repository mounted read-only, as a pod mounts them). No container runtime is needed: a mount
namespace and chroot, as root (CI runs as root)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from agent import __version__
from tests.conftest import REPO, GitRepo, live_object

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mmdebstrap, mount namespaces and chroot need root")

CRANE = str(REPO / "build" / "crane")
REGISTRY = str(REPO / "build" / "registry")
# What a pod gives the container: the root read-only, an emptyDir at /tmp and at the cache, the config (a
# ConfigMap) at /etc/gitops-agent and, here, the repository at /srv/fleet, both read-only. Then the image's user,
# environment and entrypoint (from its config), in a private mount namespace.
RUN = r"""
set -eu
root=$1 config=$2 repo=$3; shift 3
mount --bind "$root" "$root" && mount -o remount,bind,ro "$root"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
mount -t tmpfs -o uid=10001,gid=10001,mode=0700 tmpfs "$root/var/cache/gitops-agent"
mount --bind "$config" "$root/etc/gitops-agent" && mount -o remount,bind,ro "$root/etc/gitops-agent"
mount --bind "$repo" "$root/srv" && mount -o remount,bind,ro "$root/srv"
mount --rbind /proc "$root/proc"
exec chroot --userspec="$USERSPEC" "$root" /usr/bin/env -i $IMAGE_ENV "$@"
"""


def make_image(target: str = "image") -> str:
    """``make image`` (or ``make sbom``: the image, then its SBOM); the image's digest."""
    done = subprocess.run(["make", target], cwd=REPO, capture_output=True, text=True, timeout=1800, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return (REPO / "build" / "image" / "digest").read_text().strip()


@pytest.fixture
def registry() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([REGISTRY, "-port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, "build/registry did not start"
            assert time.monotonic() < deadline, "build/registry did not start"
            time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def crane(*args: str) -> str:
    done = subprocess.run([CRANE, "--insecure", *args], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def run_in_image(
    image: dict[str, Any],
    root: pathlib.Path,
    config: pathlib.Path,
    repo: pathlib.Path,
    *command: str,
    entrypoint: bool = True,
) -> subprocess.CompletedProcess[str]:
    """``command`` (after the image's entrypoint, unless not ``entrypoint``) as the image runs it: its user and
    environment."""
    env = {"USERSPEC": image["User"], "IMAGE_ENV": " ".join(image["Env"]), "PATH": os.environ["PATH"]}
    script = ["unshare", "--mount", "--propagation", "private", "sh", "-c", RUN, "run", str(root), str(config)]
    return subprocess.run(
        [*script, str(repo), *(image["Entrypoint"] if entrypoint else []), *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_image_is_reproducible_and_its_filesystem_syncs_read_only_as_10001(
    registry: str, clusters: Any, namespace: str, tmp_path: pathlib.Path
) -> None:
    first = make_image()
    assert make_image("sbom") == first  # the same commit, the same digest
    sbom = json.loads((REPO / "build" / "image" / "sbom.spdx.json").read_text())
    assert sbom["spdxVersion"] == "SPDX-2.3"
    found = {(p["name"], p.get("versionInfo")) for p in sbom["packages"]}
    pins = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().split() if "==" in line)
    assert {("gitops-agent", __version__), ("kubernetes", pins["kubernetes"]), ("pydantic", pins["pydantic"])} <= found
    assert ("helm.sh/helm/v4", "v4.3.1") in found  # the Go tools, read from their binaries
    assert any(name == "git" for name, _ in found)  # the Debian packages

    ref = f"{registry}/platform/gitops-agent:{__version__}"
    crane("push", str(REPO / "build" / "image" / "oci"), ref)
    assert crane("digest", ref).strip() == first
    image = json.loads(crane("config", ref))["config"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
    assert image["User"] == "10001:10001"
    assert image["Entrypoint"] == ["/opt/gitops-agent/bin/gitops-agent"]
    assert image["Labels"]["org.opencontainers.image.revision"] == head.stdout.strip()
    assert image["Labels"]["org.opencontainers.image.version"] == __version__

    exported = tmp_path / "fs.tar"
    crane("export", ref, str(exported))
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(exported) as tar:
        tar.extractall(root, filter="fully_trusted")  # our own image, device nodes included

    (tc,) = clusters(1)
    fleet = GitRepo(tmp_path / "fleet")
    fleet.write_objects(
        "app/all.yaml",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "from-image", "namespace": namespace}},
    )
    fleet.commit("fleet")
    repo = tmp_path / "srv"
    shutil.copytree(fleet.path, repo / "fleet", symlinks=True)
    subprocess.run(["chown", "-R", "10001:10001", str(repo)], check=True)  # git refuses a repository of another user
    config = tmp_path / "etc"
    config.mkdir()
    shutil.copy(tc.kubeconfig, config / "kubeconfig")
    (config / "kubeconfig").chmod(0o644)
    (config / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "instance": "image-test",
                "source": {"url": "/srv/fleet", "ref": "main", "cacheDir": "/var/cache/gitops-agent/fleet"},
                "clusters": [{"name": "a", "kubeconfig": "/etc/gitops-agent/kubeconfig", "paths": ["app"]}],
            }
        )
    )

    done = run_in_image(image, root, config, repo, "version", "-o", "json")
    assert done.returncode == 0, done.stderr
    versions = json.loads(done.stdout)
    assert versions["gitopsAgent"] == __version__
    assert versions["gitCommit"] == head.stdout.strip()
    assert all(versions[tool] for tool in ("helm", "kustomize", "sops")), versions  # the pinned tools are in

    done = run_in_image(image, root, config, repo, "sync", "--config", "/etc/gitops-agent/config.yaml", "--json")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert live_object(tc, "v1", "ConfigMap", "from-image", namespace) is not None

    probe = "touch /usr/local/bin/x /var/cache/gitops-agent/ok 2>&1; id -u; ls /var/cache/gitops-agent"
    done = run_in_image(image, root, config, repo, "sh", "-c", probe, entrypoint=False)
    assert "Read-only file system" in done.stdout, done.stdout + done.stderr  # the root, even where 10001 may not
    assert done.stdout.split("\n")[1:3] == ["10001", "ok"], done.stdout  # writes go to the volumes only

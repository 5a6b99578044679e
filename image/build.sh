#!/usr/bin/env bash
# `make image`: the agent's OCI image, reproducible (the same commit gives the same digest, given the same Debian
# packages): a Debian root filesystem made by mmdebstrap (python3, git, openssh-client, gnupg, ca-certificates;
# every file time clamped to the last commit's, SOURCE_DATE_EPOCH), the agent's wheel (make dist) and its pinned
# dependencies (constraints.txt) in a venv at /opt/gitops-agent, the pinned helm, kustomize, sops, age, cosign and the app
# set template helper (tools/template) in /usr/local/bin, user 10001; packed by go-containerregistry's crane through
# the loopback registry of the tests (build/registry), then pulled into an OCI layout. Output in build/image:
# rootfs.tar, oci/ (the OCI layout), digest (the manifest's sha256), ref (the tag it was built as).
set -euo pipefail
cd "$(dirname "$0")/.."

out=build/image
version=$(.venv/bin/python -c 'import agent; print(agent.__version__)')
commit=$(git rev-parse HEAD)
wheel=dist/gitops_agent-${version}-py3-none-any.whl
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
export SOURCE_DATE_EPOCH
[ -f "$wheel" ] || { echo "image: $wheel missing (make dist)" >&2; exit 2; }

rm -rf "$out"
mkdir -p "$out/wheels"
# Every wheel the venv needs, fetched here (the image's root has no network access of its own to rely on) and
# installed offline in the root: the agent's wheel and its pinned dependencies, and pip itself.
timeout 900 .venv/bin/pip wheel --quiet --wheel-dir "$out/wheels" -c constraints.txt "$wheel" "pip==26.3"
tools=()
for t in helm kustomize sops age cosign gitops-agent-template; do tools+=(".venv/bin/$t"); done

# The hooks run in the new root ($1) with mmdebstrap's environment: SOURCE_DATE_EPOCH makes pip compile the
# bytecode with source hashes instead of times, and mmdebstrap clamps every file's time to it.
timeout 900 mmdebstrap --variant=minbase --mode=root --format=tar \
  --include=python3,python3-venv,git,openssh-client,gnupg,ca-certificates \
  --customize-hook="copy-in $out/wheels constraints.txt /tmp" \
  --customize-hook='chroot "$1" python3 -m venv /opt/gitops-agent' \
  --customize-hook='chroot "$1" env -u PIP_FIND_LINKS /opt/gitops-agent/bin/python -m pip install --quiet --no-index --no-cache-dir --find-links /tmp/wheels "pip==26.3"' \
  --customize-hook='chroot "$1" env -u PIP_FIND_LINKS /opt/gitops-agent/bin/python -m pip install --quiet --no-index --no-cache-dir --find-links /tmp/wheels -c /tmp/constraints.txt gitops-agent' \
  --customize-hook='rm -rf "$1/tmp/wheels" "$1/tmp/constraints.txt" "$1/root/.cache"' \
  --customize-hook="copy-in ${tools[*]} /usr/local/bin" \
  --customize-hook='echo "gitops-agent:x:10001:10001:gitops-agent:/var/cache/gitops-agent:/usr/sbin/nologin" >> "$1/etc/passwd"' \
  --customize-hook='echo "gitops-agent:x:10001:" >> "$1/etc/group"' \
  --customize-hook='mkdir -p "$1/var/cache/gitops-agent" "$1/etc/gitops-agent" && chown 10001:10001 "$1/var/cache/gitops-agent"' \
  "$suite" "$out/rootfs.tar" "$mirror" > "$out/mmdebstrap.log" 2>&1 || { tail -30 "$out/mmdebstrap.log" >&2; exit 1; }

port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
build/registry -port "$port" > "$out/registry.log" 2>&1 &
registry=$!
trap 'kill $registry 2>/dev/null || true' EXIT
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

crane=(timeout 600 build/crane --insecure)  # the loopback registry: a hang ends the build
ref="127.0.0.1:$port/gitops-agent"
"${crane[@]}" append --oci-empty-base --platform linux/amd64 -f "$out/rootfs.tar" -t "$ref:rootfs" > /dev/null
"${crane[@]}" mutate "$ref:rootfs" -t "$ref:$version" \
  --set-platform linux/amd64 \
  --entrypoint /opt/gitops-agent/bin/gitops-agent \
  --cmd run,--config,/etc/gitops-agent/config/config.yaml \
  --user 10001:10001 \
  --workdir /var/cache/gitops-agent \
  --env PATH=/opt/gitops-agent/bin:/usr/local/bin:/usr/bin:/bin \
  --env HOME=/var/cache/gitops-agent \
  --exposed-ports 8080/tcp \
  --label org.opencontainers.image.title=gitops-agent \
  --label org.opencontainers.image.source=https://github.com/gitops-agent/gitops-agent \
  --label "org.opencontainers.image.revision=$commit" \
  --label "org.opencontainers.image.version=$version" \
  --label org.opencontainers.image.licenses=Apache-2.0 > /dev/null
"${crane[@]}" digest "$ref:$version" > "$out/digest"
"${crane[@]}" pull --format=oci "$ref:$version" "$out/oci"
echo "gitops-agent:$version" > "$out/ref"
echo "image gitops-agent:$version $(cat "$out/digest") in $out/oci"

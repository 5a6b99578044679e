# gitops-agent: `make demo` runs the agent on two local clusters; `make test` runs lint and the whole suite.
# Everything is installed here: the virtualenv (.venv, pinned by constraints.txt), the test cluster
# (build/testcluster, Go) and kubectl of the same release (build/kubectl), kustomize, helm and sops (pinned Go
# modules, into .venv/bin), an OCI registry for the tests (build/registry) and the reference jsonnet CLI
# (go-jsonnet, build/jsonnet) the jsonnet renderer is compared against.

PYTHON ?= python3
GO ?= go
VENV := .venv
BIN := $(VENV)/bin
KUSTOMIZE_VERSION := v5.8.2
HELM_VERSION := v4.3.1
SOPS_VERSION := v3.13.3
AGE_VERSION := v1.3.2
# The OCI registry the tests push charts to (go-containerregistry's in-memory registry, on loopback).
REGISTRY_VERSION := v0.22.1
# The agent's image: its root filesystem from Debian's packages by mmdebstrap (pinned Debian package), packed as an
# OCI image by go-containerregistry's crane (the registry's release).
MMDEBSTRAP_VERSION := 1.3.5-7
# The image's SBOM, by Anchore's syft.
SYFT_VERSION := v1.57.2
# The reference jsonnet CLI the tests compare the jsonnet renderer's output with (go-jsonnet).
GO_JSONNET_VERSION := v0.22.0
# cosign checks the signatures of OCI charts (a source's verify: {provider: cosign}); the image carries it.
COSIGN_VERSION := v3.1.3
# The OpenID provider the single-sign-on tests log in through: Dex at a pinned commit of its Go module (its gRPC admin
# API left out: tests/tools/build-dex.sh says why).
DEX_VERSION := v0.0.0-20260806151424-ab64ed778070
# The Kubernetes release the test cluster is built from (tests/cluster/go.mod), stamped in as its version.
K8S_VERSION := $(shell awk '$$1 == "k8s.io/kubernetes" && $$2 ~ /^v1\./ {print $$2; exit}' tests/cluster/go.mod)
K8S_LDFLAGS := -X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) \
  -X k8s.io/component-base/version.gitMajor=1 \
  -X k8s.io/component-base/version.gitMinor=$(word 2,$(subst ., ,$(K8S_VERSION)))
PYTEST_ARGS ?=

.PHONY: all venv lock dist image sbom crane syft mmdebstrap template testcluster kubectl kustomize helm sops registry jsonnet dex cosign browser signers lint test demo bench bench-testcluster clean

all: venv testcluster kustomize helm sops template

# Python packages come from constraints.txt (exact versions); `make lock` refreshes it deliberately.
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade 'pip==26.3'
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e '.[dev]'
	.lock-venv/bin/pip freeze --exclude-editable | grep -v '^gitops-agent' > constraints.txt
	rm -rf .lock-venv

# Release artifacts: the wheel and the sdist in dist/, built with setuptools pinned by build-constraints.txt and
# the last commit's time as every file's (SOURCE_DATE_EPOCH), carrying the commit they were built from
# (agent/build_info.json, read by `gitops-agent version`); checked with `twine check --strict`.
dist: venv
	rm -rf dist
	printf '{"gitCommit": "%s"}\n' "$$(git rev-parse HEAD)" > agent/build_info.json
	PIP_CONSTRAINT=$(abspath build-constraints.txt) SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct) \
	  $(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

# The agent's OCI image (image/build.sh): build/image/oci (an OCI layout), build/image/digest. Reproducible: the same
# commit gives the same digest (given the same Debian packages). Needs root (mmdebstrap's root mode).
image: dist crane registry kustomize helm sops cosign template mmdebstrap
	image/build.sh

# The image's software bill of materials (SPDX 2.3, JSON) by syft: build/image/sbom.spdx.json.
sbom: image syft
	SYFT_CHECK_FOR_APP_UPDATE=false build/syft scan oci-dir:build/image/oci -q -o spdx-json=build/image/sbom.spdx.json

syft: build/syft
build/syft:
	@mkdir -p build
	GOBIN=$(abspath build) $(GO) install github.com/anchore/syft/cmd/syft@$(SYFT_VERSION)

crane: build/crane
build/crane:
	@mkdir -p build
	GOBIN=$(abspath build) $(GO) install github.com/google/go-containerregistry/cmd/crane@$(REGISTRY_VERSION)

mmdebstrap:
	@command -v mmdebstrap >/dev/null 2>&1 || { \
	  echo "installing Debian's mmdebstrap $(MMDEBSTRAP_VERSION) for make image"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap=$(MMDEBSTRAP_VERSION) >/dev/null; }

testcluster: build/testcluster
build/testcluster: $(wildcard tests/cluster/*.go) tests/cluster/go.mod tests/cluster/go.sum
	@mkdir -p build
	@echo "building the test cluster (kube-apiserver + etcd + controllers; about 6 minutes the first time)"
	cd tests/cluster && $(GO) build -trimpath -ldflags "$(K8S_LDFLAGS)" -o ../../build/testcluster .

# The real kubectl of the same release: what the tests compare the agent's reading of YAML with, and the benchmarks'
# baseline.
kubectl: build/kubectl
build/kubectl: tests/cluster/cmd/kubectl/main.go tests/cluster/go.mod tests/cluster/go.sum
	@mkdir -p build
	cd tests/cluster && $(GO) build -trimpath -ldflags "$(K8S_LDFLAGS)" -o ../../build/kubectl ./cmd/kubectl

# App set templates render with Go's text/template + Sprig and fasttemplate, as Argo CD renders them
# (tools/template, its go.mod pinning both).
template: $(BIN)/gitops-agent-template
$(BIN)/gitops-agent-template: tools/template/main.go tools/template/go.mod tools/template/go.sum | $(VENV)/.installed
	cd tools/template && $(GO) build -trimpath -o $(abspath $(BIN))/gitops-agent-template .

kustomize: $(BIN)/kustomize
$(BIN)/kustomize: | $(VENV)/.installed
	GOBIN=$(abspath $(BIN)) $(GO) install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

helm: $(BIN)/helm
$(BIN)/helm: | $(VENV)/.installed
	GOBIN=$(abspath $(BIN)) $(GO) install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)

cosign: $(BIN)/cosign
$(BIN)/cosign: | $(VENV)/.installed
	GOBIN=$(abspath $(BIN)) $(GO) install github.com/sigstore/cosign/v3/cmd/cosign@$(COSIGN_VERSION)

# sops decrypts; age-keygen (and age) make the tests' keys.
sops: $(BIN)/sops $(BIN)/age-keygen
$(BIN)/sops: | $(VENV)/.installed
	GOBIN=$(abspath $(BIN)) $(GO) install github.com/getsops/sops/v3/cmd/sops@$(SOPS_VERSION)
$(BIN)/age-keygen: | $(VENV)/.installed
	GOBIN=$(abspath $(BIN)) $(GO) install filippo.io/age/cmd/...@$(AGE_VERSION)

registry: build/registry
build/registry:
	@mkdir -p build
	GOBIN=$(abspath build) $(GO) install github.com/google/go-containerregistry/cmd/registry@$(REGISTRY_VERSION)

jsonnet: build/jsonnet
build/jsonnet:
	@mkdir -p build
	GOBIN=$(abspath build) $(GO) install github.com/google/go-jsonnet/cmd/jsonnet@$(GO_JSONNET_VERSION)

dex: build/dex
build/dex: tests/tools/build-dex.sh
	@mkdir -p build
	GO=$(GO) tests/tools/build-dex.sh $(DEX_VERSION) $@

# Debian's Chromium for the dashboard's browser test (Playwright drives it; it never downloads a browser).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the dashboard test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# ssh-keygen (OpenSSH) and gpg (GnuPG) check signed commits (source.verify); the image carries both.
signers:
	@command -v ssh-keygen >/dev/null 2>&1 && command -v gpg >/dev/null 2>&1 || { \
	  echo "installing Debian's openssh-client and gnupg for the signed-commit tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-client gnupg >/dev/null; }

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check agent reconcilers
	$(BIN)/mypy
	$(BIN)/lint-imports

test: venv testcluster kubectl kustomize helm sops cosign template registry jsonnet dex browser signers crane syft mmdebstrap lint
	$(BIN)/pytest $(PYTEST_ARGS)

demo: venv testcluster kustomize helm sops template
	$(BIN)/python examples/demo.py

bench-testcluster: venv testcluster
	$(BIN)/python bench/testcluster.py

bench: venv testcluster kustomize helm
	$(BIN)/python bench/testcluster.py
	$(BIN)/python bench/selfheal.py
	$(BIN)/python bench/resync.py

clean:
	rm -rf build .demo $(VENV)

# gitops-agent: `make demo` runs the agent on two local clusters; `make test` runs lint and the whole suite.
# Everything is installed here: the virtualenv (.venv), the test cluster (build/testcluster, Go) and kustomize.

PYTHON ?= python3
GO ?= go
VENV := .venv
BIN := $(VENV)/bin
KUSTOMIZE_VERSION := v5.8.2
# The Kubernetes release the test cluster is built from (tests/cluster/go.mod), stamped in as its version.
K8S_VERSION := $(shell awk '$$1 == "k8s.io/kubernetes" && $$2 ~ /^v1\./ {print $$2; exit}' tests/cluster/go.mod)
K8S_LDFLAGS := -X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) \
  -X k8s.io/component-base/version.gitMajor=1 \
  -X k8s.io/component-base/version.gitMinor=$(word 2,$(subst ., ,$(K8S_VERSION)))
PYTEST_ARGS ?=

.PHONY: all venv testcluster kubectl kustomize browser lint test demo bench bench-testcluster clean

all: venv testcluster kustomize

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

testcluster: build/testcluster
build/testcluster: $(wildcard tests/cluster/*.go) tests/cluster/go.mod tests/cluster/go.sum
	@mkdir -p build
	@echo "building the test cluster (kube-apiserver + etcd + controllers; about 6 minutes the first time)"
	cd tests/cluster && $(GO) build -trimpath -ldflags "$(K8S_LDFLAGS)" -o ../../build/testcluster .

# The real kubectl of the same release, for the benchmarks' baseline (not needed by the tests).
kubectl: build/kubectl
build/kubectl: tests/cluster/cmd/kubectl/main.go tests/cluster/go.mod tests/cluster/go.sum
	@mkdir -p build
	cd tests/cluster && $(GO) build -trimpath -ldflags "$(K8S_LDFLAGS)" -o ../../build/kubectl ./cmd/kubectl

kustomize: $(BIN)/kustomize
$(BIN)/kustomize: | $(VENV)/.installed
	GOBIN=$(abspath $(BIN)) $(GO) install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

# Debian's Chromium for the dashboard's browser test (Playwright drives it; it never downloads a browser).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the dashboard test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check agent reconcilers
	$(BIN)/mypy
	$(BIN)/lint-imports

test: venv testcluster kustomize browser lint
	$(BIN)/pytest $(PYTEST_ARGS)

demo: venv testcluster kustomize
	$(BIN)/python examples/demo.py

bench-testcluster: venv testcluster
	$(BIN)/python bench/testcluster.py

bench: venv testcluster kustomize
	$(BIN)/python bench/testcluster.py
	$(BIN)/python bench/selfheal.py
	$(BIN)/python bench/resync.py

clean:
	rm -rf build .demo $(VENV)

# gitops-agent: `make demo` runs the agent on two local clusters; `make test` runs lint and the whole suite.
# Everything is installed here: the virtualenv (.venv), the test cluster (build/testcluster, Go) and kustomize.

PYTHON ?= python3
GO ?= go
VENV := .venv
BIN := $(VENV)/bin
KUSTOMIZE_VERSION := v5.8.2
PYTEST_ARGS ?=

.PHONY: all venv testcluster kustomize lint test demo bench bench-testcluster clean

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
	cd tests/cluster && $(GO) build -trimpath -o ../../build/testcluster .

kustomize: $(BIN)/kustomize
$(BIN)/kustomize: | $(VENV)/.installed
	GOBIN=$(abspath $(BIN)) $(GO) install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check agent reconcilers
	$(BIN)/mypy
	$(BIN)/lint-imports

test: venv testcluster kustomize lint
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

# deploywatch: `make help` lists the targets. Every target installs what it needs by itself.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | cksum | cut -d' ' -f1)

.DEFAULT_GOAL := help
.PHONY: help install demo test lint typecheck unit run clean

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'

# -e, setuptools' default (lenient) editable install: it imports deploywatch from this tree,
# deploywatch.testing included, which the wheel and the image leave out (docs/design.md).
# Constrained to the image's versions (requirements.lock), without its hashes: pip would
# otherwise require a hash of every dev tool and of the editable tree too.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	grep -E '^[A-Za-z0-9._-]+==' requirements.lock | cut -d' ' -f1 > $(VENV)/constraints.txt
	$(BIN)/python -m pip install --quiet -c $(VENV)/constraints.txt -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP) ## Create .venv and install deploywatch with its dev tools

demo: $(STAMP) ## Run deploywatch against a local emulated API server and play a scenario
	$(BIN)/python -m deploywatch.testing.demo

# pytest-xdist workers for make test: most tests wait on processes, not on the CPU, so more
# than the cores; 0 runs them in one process. Against a real cluster (DEPLOYWATCH_E2E_KUBECONFIG)
# the suite stays in one process: some scenarios restart or freeze its kube-apiserver.
TEST_WORKERS ?= 4
XDIST := $(if $(DEPLOYWATCH_E2E_KUBECONFIG),,-n $(TEST_WORKERS) --dist worksteal)

test: lint typecheck ## Lint, type-check and run every test, TEST_WORKERS at once (real clusters too, one at a time, if DEPLOYWATCH_E2E_KUBECONFIG is set)
	$(BIN)/pytest $(XDIST)

lint: $(STAMP) ## ruff, and the import contracts of the layers (lint-imports)
	$(BIN)/ruff check deploywatch operator tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP) ## mypy --strict
	$(BIN)/mypy

unit: $(STAMP) ## Only the fast tests that start no process
	$(BIN)/pytest tests/unit tests/emulator

# requirements.lock: the image's dependencies (pyproject.toml's, and the build backend for
# `pip install --no-build-isolation .`), every version pinned with the hashes of its files,
# for `pip install --require-hashes` in the Dockerfile. pip-compile of pip-tools (dev extras).
# LOCK_FLAGS=--upgrade-package=NAME refreshes one package only; the default, all of them.
LOCK_FLAGS ?= --upgrade
.PHONY: lock image audit
lock: $(STAMP) ## Refresh requirements.lock (pip-compile --generate-hashes) from pyproject.toml's dependencies
	CUSTOM_COMPILE_COMMAND='make lock' $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe \
	  --strip-extras --build-deps-for=wheel --no-emit-index-url --no-emit-find-links $(LOCK_FLAGS) \
	  --output-file requirements.lock pyproject.toml

image: $(STAMP) ## Build the Dockerfile with buildah (base from mmdebstrap, cached), its size and SBOM in build/image/ (installs the tools as root)
	.ci/image

audit: $(STAMP) ## Check requirements.lock against a vulnerability database (pip-audit: PyPI's, then OSV's)
	.ci/audit

.PHONY: e2e e2e-local
e2e: $(STAMP) ## Only the real-cluster scenarios (pytest -m e2e), on the cluster of DEPLOYWATCH_E2E_KUBECONFIG
	@test -n "$$DEPLOYWATCH_E2E_KUBECONFIG" || { echo 'make e2e: set DEPLOYWATCH_E2E_KUBECONFIG to an admin kubeconfig of the cluster to test (make e2e-local starts a loopback one)' >&2; exit 2; }
	$(BIN)/pytest -m e2e

e2e-local: $(STAMP) ## make e2e on the loopback control plane of tests/cluster, v1.37 and v1.34, each fresh, always stopped (builds them first: needs Go)
	.ci/e2e-local

run: $(STAMP) ## Run deploywatch against the current kubeconfig, all namespaces
	$(BIN)/kopf run operator/handlers.py --all-namespaces

.PHONY: bench bench-quick bench-apiserver baselines
baselines: ## Build make bench's Go informer baseline (bench/informer, client-go v0.37) into .cache/bin; prints its path last
	cd bench/informer && PATH="$$PATH:/usr/local/go/bin" CGO_ENABLED=0 go build -buildvcs=false -trimpath -o $(CURDIR)/.cache/bin/client-go-informer .
	@echo $(CURDIR)/.cache/bin/client-go-informer

bench: $(STAMP) baselines ## Benchmark against kubectl, a Go informer, a raw watch loop, Kopf and today's deploywatch, and profile (~10 min; bench/results/)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.run

bench-quick: $(STAMP) baselines ## The same benchmark with smaller N and M, no profile (~2 min)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.run --quick

bench-apiserver: $(STAMP) baselines ## What each client costs a real kube-apiserver v1.37: CPU, RSS, time to list 20,000 Deployments, and a relist (~15 min; bench/results/apiserver.json)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.apiserver $(BENCH_ARGS)

clean: ## Remove the venv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info build

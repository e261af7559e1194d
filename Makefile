# Every developer task is a target here. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
K8S_VERSION ?= v1.36.3
export K8S_VERSION
PROMETHEUS_VERSION ?= v0.316.0
export PROMETHEUS_VERSION
CLUSTER_DIR ?= $(CURDIR)/.cluster
export WORKERFLEET_CLUSTER_DIR := $(CLUSTER_DIR)
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-16s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create the virtualenv with an editable install

.PHONY: k8s-bin
k8s-bin: ## Build (or reuse the cached) etcd, kube-apiserver, controller-manager, scheduler and helm
	@bash localcluster/build-k8s.sh >/dev/null

.PHONY: promtool
promtool: ## Build (or reuse the cached) promtool, which tests the chart's alert rules
	@bash localcluster/build-tools.sh promtool >/dev/null

.PHONY: keda-bin
keda-bin: ## Build (or reuse the cached) KEDA operator and metrics adapter, for bench-scale and its test (about 11 minutes cold)
	@bash localcluster/build-tools.sh keda >/dev/null

.PHONY: setup
setup: venv k8s-bin promtool ## Everything needed to run the tests and the demo (KEDA's test skips unless `make keda-bin` ran)

.PHONY: lint
lint: venv ## ruff and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

.PHONY: fmt
fmt: venv ## Format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: test-unit
test-unit: venv ## Unit tests only (no I/O)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

.PHONY: test-integration
test-integration: setup ## Integration tests (real PostgreSQL, real kube-apiserver)
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

.PHONY: test-e2e
test-e2e: setup ## End-to-end tests on the local cluster
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

.PHONY: test
test: setup ## All tiers; bootstraps what it needs on a fresh machine
	$(BIN)/pytest tests $(PYTEST_ARGS)

.PHONY: cluster-up
cluster-up: setup ## Start the local cluster (idempotent) and print the KUBECONFIG to export
	$(BIN)/python -m localcluster up

.PHONY: cluster-down
cluster-down: venv ## Stop the local cluster; no process is left behind
	$(BIN)/python -m localcluster down

.PHONY: cluster-status
cluster-status: venv ## Show what the local cluster runs
	$(BIN)/python -m localcluster status

.PHONY: crds
crds: venv ## Generate crds/ from the operator's pydantic models (a unit test fails on drift)
	$(BIN)/python -m workerfleet.operator.crds crds

DEMO_SECONDS ?=
DEMO_INSTALL ?=
.PHONY: demo
demo: setup ## Local cluster + PostgreSQL + operator + examples/; drains demo jobs (DEMO_SECONDS=60 runs unattended, DEMO_INSTALL=helm installs the operator with the chart)
	DEMO_SECONDS=$(DEMO_SECONDS) DEMO_INSTALL=$(DEMO_INSTALL) $(BIN)/python -m localcluster.demo

SOAK_ARGS ?=
.PHONY: soak
soak: setup ## Chaos soak on the local cluster: 20,000 jobs, kills, restarts; prints what was lost (SOAK_ARGS=--short: 2,000 jobs)
	$(BIN)/python -m localcluster.soak $(SOAK_ARGS)

.PHONY: bench-worker
bench-worker: venv ## Queue benchmark vs PgQueuer and procrastinate (prints figures; a few minutes)
	$(BIN)/python bench/bench_worker.py

BENCH_SCALE_ARGS ?=
.PHONY: bench-scale
bench-scale: setup ## Autoscaling on the local cluster: workerfleet beside a real KEDA (built if missing), same pods and queue (about 2 hours)
	$(BIN)/python bench/bench_scale.py $(BENCH_SCALE_ARGS)
BENCH_OPERATOR_ARGS ?=
.PHONY: bench-operator
bench-operator: setup ## One operator for 10, 100 and 1,000 pools: RSS, CPU, API traffic at rest, status freshness, old cadence vs new (about 30 minutes)
	$(BIN)/python bench/bench_operator.py $(BENCH_OPERATOR_ARGS)
.PHONY: bench-prune
bench-prune: venv ## Claim and completion latency while retention prunes 100,000 jobs, per batch size (prints figures)
	$(BIN)/python bench/bench_prune.py

# -- the image, and kind for users with a Docker engine --
KIND_CLUSTER ?= workerfleet
IMAGE ?= workerfleet:dev
# buildah builds without a Docker engine (apt-get install buildah); docker otherwise.
IMAGE_BUILDER ?= $(if $(shell command -v buildah),buildah,docker)

.PHONY: image
image: ## Build the workerfleet image (worker and operator) with buildah, or docker
ifeq ($(IMAGE_BUILDER),buildah)
	buildah --storage-driver vfs build --isolation chroot --layers -t $(IMAGE) .
else
	docker build -t $(IMAGE) .
endif

.PHONY: kind-up
kind-up: ## Create a kind cluster from kind-config.yaml (needs Docker and kind)
	kind create cluster --name $(KIND_CLUSTER) --config kind-config.yaml

.PHONY: kind-image
kind-image: image ## Build the image and load it into the kind cluster
ifeq ($(IMAGE_BUILDER),buildah)
	buildah --storage-driver vfs push $(IMAGE) docker-archive:$(CURDIR)/.image.tar:$(IMAGE)
	kind load image-archive $(CURDIR)/.image.tar --name $(KIND_CLUSTER) && rm -f $(CURDIR)/.image.tar
else
	kind load docker-image $(IMAGE) --name $(KIND_CLUSTER)
endif

.PHONY: deploy
deploy: k8s-bin ## helm install the operator (CRDs included) into the current kube context
	$(shell bash localcluster/build-k8s.sh 2>/dev/null)/helm upgrade --install workerfleet charts/workerfleet \
	  --namespace workerfleet --create-namespace \
	  --set image.repository=$(firstword $(subst :, ,$(IMAGE))) --set image.tag=$(lastword $(subst :, ,$(IMAGE)))

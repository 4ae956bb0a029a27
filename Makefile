# NodeAgentSet. `make help` lists the targets.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

# Every binary the tests and the local cluster need is built into bin/ from
# the Go module proxy by test/tools/install.sh (see README).
BIN := $(CURDIR)/bin
export KUBEBUILDER_ASSETS := $(BIN)
export PATH := $(BIN):$(PATH)
# Component logs of end-to-end tests, one folder per test.
export CLUSTER_LOG_DIR := $(CURDIR)/_output/logs

CONTROLLER_GEN := $(BIN)/controller-gen
CHART := config/helm/nodeagentset
GOLANGCI_LINT := $(BIN)/golangci-lint

# Flags of `go test`; for example `make test GOTEST_FLAGS=-v`.
GOTEST_FLAGS ?=
NODES ?= 10

# The same build line as the Dockerfile's.
GO_BUILD := CGO_ENABLED=0 go build -trimpath -ldflags "-s -w"

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: tools ## Generate the CRD and RBAC under config/ from the API types and markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd:generateEmbeddedObjectMeta=true paths="./api/...;./internal/..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	@# What markers cannot say about the embedded pod template, and int32
	@# bounds everywhere (see test/cmd/crdfinish).
	go run ./test/cmd/crdfinish config/crd/bases/*.yaml
	@# The Helm chart ships the same CRD and RBAC rules.
	cp config/crd/bases/*.yaml $(CHART)/crds/
	cp config/rbac/role.yaml $(CHART)/files/manager-role.yaml
	cp config/rbac/startup_taint_role.yaml $(CHART)/files/startup-taint-role.yaml
	cp config/admission/node_overrides_policy.yaml $(CHART)/files/node-overrides-policy.yaml

.PHONY: generate
generate: tools ## Generate deepcopy code for the API types.
	$(CONTROLLER_GEN) object paths="./api/..."

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: tools ## Run golangci-lint.
	$(GOLANGCI_LINT) run --allow-parallel-runners ./...

.PHONY: verify-generated
verify-generated: manifests generate ## Fail when generated files are stale.
	@if [ -n "$$(git status --porcelain -- config api)" ]; then \
		echo "generated files are stale; run 'make manifests generate' and commit:"; \
		git status --porcelain -- config api; git diff --stat -- config api; exit 1; \
	fi

##@ Test

.PHONY: test
test: tools verify-generated vet lint ## Run unit, envtest integration and end-to-end tests, fuzz targets briefly, and lint.
	go test -count=1 $(GOTEST_FLAGS) -timeout 30m ./...
	@# The image tool is a module of its own (go-containerregistry stays out of go.mod).
	cd test/tools/image && go test -count=1 $(GOTEST_FLAGS) ./...
	$(MAKE) --no-print-directory test-fuzz

# Each fuzz target runs this long in make test; longer by hand, e.g.
# make test-fuzz FUZZTIME=10m.
FUZZTIME ?= 10s

.PHONY: test-fuzz
test-fuzz: ## Run every fuzz target for FUZZTIME (default 10s) beyond its checked-in corpus.
	go test ./internal/plan -run '^$$' -fuzz '^FuzzRollout$$' -fuzztime $(FUZZTIME)
	go test ./internal/eligibility -run '^$$' -fuzz '^FuzzEvaluate$$' -fuzztime $(FUZZTIME)

CHAOS_NODES ?= 500
CHAOS_KILLS ?= 30

.PHONY: test-chaos
test-chaos: tools ## Reliability tests at size (CHAOS_NODES=500, CHAOS_KILLS=30) and 2 minutes per fuzz target; make test runs them small.
	NAS_CHAOS_NODES=$(CHAOS_NODES) NAS_CHAOS_KILLS=$(CHAOS_KILLS) go test -count=1 -v -timeout 60m \
		-run 'Crashes|LeaderFailover|APIServerRestart|Refused' ./test/e2e/ | grep -E '^(=== RUN|--- |\s+reliability|ok|FAIL|PASS)'
	$(MAKE) --no-print-directory test-fuzz FUZZTIME=2m

BENCH_NODES ?= 100,500,1000
BENCH_ROUNDS ?= 3
BENCH_OUT ?= test/bench/results

.PHONY: bench
bench: tools build ## Benchmark against the DaemonSet controller on BENCH_NODES (100,500,1000) fake nodes; tables and chart into BENCH_OUT.
	rm -rf _output/bench
	go run ./test/cmd/bench --manager $(BIN)/manager --nodes $(BENCH_NODES) --rounds $(BENCH_ROUNDS) \
		--out $(BENCH_OUT) --dir $(CURDIR)/_output/bench $(BENCH_FLAGS)

.PHONY: test-e2e
test-e2e: tools ## Run only the end-to-end tests on the local cluster.
	go test -count=1 $(GOTEST_FLAGS) -timeout 30m ./test/e2e/...

##@ Build

.PHONY: build
build: ## Build the manager and the kubectl plugin into bin/.
	$(GO_BUILD) -o $(BIN)/manager ./cmd/manager
	$(GO_BUILD) -o $(BIN)/kubectl-nodeagentset ./cmd/kubectl-nodeagentset

.PHONY: install-plugin
install-plugin: ## Install kubectl-nodeagentset into $(go env GOPATH)/bin (on PATH: kubectl nodeagentset ...).
	CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" ./cmd/kubectl-nodeagentset
	@echo "installed $$(go env GOPATH)/bin/kubectl-nodeagentset; with that folder on PATH, run: kubectl nodeagentset --help"

.PHONY: run
run: ## Run the manager against the cluster in $KUBECONFIG.
	go run ./cmd/manager

.PHONY: docker-build
docker-build: ## Build the container image with a Docker engine (`make image` needs none).
	docker build -t nodeagentset:dev .

# The image and release: `make image` needs no container engine (see README
# "Image and release").
IMAGE ?= ghcr.io/nodeagentset/manager
VERSION ?= $(shell awk '/^appVersion:/ {print $$2}' $(CHART)/Chart.yaml)
PLATFORMS ?= linux/amd64 linux/arm64
IMAGE_DIR ?= _output/image
# File and image times: the last commit's, so a rebuild of it is identical.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

.PHONY: image
image: ## Build the manager image for PLATFORMS (linux/amd64 linux/arm64) as an OCI image layout in IMAGE_DIR; PUSH=REF also pushes it.
	@for p in $(PLATFORMS); do \
		echo "go build manager for $$p"; \
		GOOS=$${p%/*} GOARCH=$${p#*/} $(GO_BUILD) -o _output/bin/$${p/\//_}/manager ./cmd/manager; \
	done
	cd test/tools/image && go run . --out $(abspath $(IMAGE_DIR)) --tag $(VERSION) --source-date-epoch $(SOURCE_DATE_EPOCH) \
		$(foreach p,$(PLATFORMS),--binary $(p)=$(CURDIR)/_output/bin/$(subst /,_,$(p))/manager) $(if $(PUSH),--push $(PUSH))

.PHONY: release
release: tools ## Build a release into _output/release: images (pushed with PUSH=1), chart, plugin archives, krew manifest.
	bash .ci/release

##@ Local cluster

.PHONY: tools
tools: ## Build the pinned control plane, kwok and dev tools into bin/ (only what is missing or changed).
	@bash test/tools/install.sh $(BIN)

.PHONY: demo
demo: tools build ## The guided demo on a local simulated cluster; stays up until Ctrl-C.
	go run ./test/cmd/demo --manager $(BIN)/manager

.PHONY: demo-canary
demo-canary: tools build ## The demo of a bad release caught by the canary and aborted; stays up until Ctrl-C.
	go run ./test/cmd/demo --canary --manager $(BIN)/manager --plugin $(BIN)/kubectl-nodeagentset

.PHONY: dev-cluster
dev-cluster: tools ## Run a local cluster with NODES fake nodes (default 10) until Ctrl-C.
	go run ./test/cmd/dev-cluster --nodes $(NODES)

# lull — asynchronous LLM inference on idle GPUs.
# `make help` lists the targets.

SHELL := bash
GO    ?= go
PKGS  := ./...

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

.PHONY: run
run: ## Run the whole system locally (emulators, API on :8080, worker, simulator, webhook dispatcher, batch Lambda, DLQ consumer, sweeper)
	$(GO) run ./localstack/cmd/lull-dev

.PHONY: build
build: ## Build every runtime binary into bin/
	$(GO) build -o bin/ ./gpuworker ./localstack/cmd/... ./cmd/...

.PHONY: cli
cli: ## Build the lull command line into bin/lull
	$(GO) build -o bin/lull ./cmd/lull

.PHONY: vet
vet: ## go vet and gofmt check
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^infra/')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: test
test: lint ## Run every test: lint, then the runtime module with -race against in-process AND external emulators, then infra
	LULL_REQUIRE_EXTERNAL=1 bash localstack/scripts/emulators.sh run -- $(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(MAKE) --no-print-directory test-infra

.PHONY: browser
browser: ## Install headless Chromium for the console's browser tests (Debian's chromium package; needs root once)
	bash localstack/scripts/browser.sh install

# make test also runs the console's browser tests: a missing browser fails
# them instead of skipping them, and their screenshots stay in build/artifacts.
test: browser
test: export LULL_REQUIRE_BROWSER = 1
test: export LULL_ARTIFACTS_DIR = $(CURDIR)/build/artifacts

.PHONY: test-short
test-short: ## Runtime tests against the in-process emulators only (no install step)
	$(GO) test -race -count=1 $(PKGS)

.PHONY: bench
bench: ## Benchmarks as tables: accept latency/throughput, end-to-end, webhooks; batch ingest of 50,000 lines (~100 MB) on DynamoDB Local + fauxqs
	$(GO) run ./localstack/cmd/lull-bench -only requests
	$(GO) build -o bin/lull-bench ./localstack/cmd/lull-bench
	bash localstack/scripts/emulators.sh run -- bin/lull-bench -only batch

.PHONY: bench-gate
bench-gate: ## Compare async intake policies (fixed, queue-depth, lull gate) on one simulated engine, two engine behaviours, as tables (~9 min)
	$(GO) run ./localstack/cmd/lull-gatebench

PROFILE ?= long

.PHONY: chaos
chaos: ## Fault-injection run on DynamoDB Local + fauxqs behind failing proxies, worker SIGKILLs, engine 5xx/stalls, failing webhook receiver; checks every guarantee and prints a table (PROFILE=long, the default: 5,000 requests, 3 batches of 600 lines, ~10 min; PROFILE=short: ~1 min, also run by make test as TestChaosShort)
	$(GO) build -o bin/gpuworker ./gpuworker
	bash localstack/scripts/emulators.sh run -- $(GO) run ./localstack/cmd/lull-chaos -profile $(PROFILE) -worker bin/gpuworker

.PHONY: lint
lint: vet ## Static checks: go vet, gofmt and staticcheck (its version is pinned in go.mod's tool block)
	$(GO) tool staticcheck $(PKGS)

ifneq ($(wildcard infra/infra.mk),)
include infra/infra.mk
else
.PHONY: test-infra
test-infra:
	@echo "infra: no CDK module in this checkout"
endif

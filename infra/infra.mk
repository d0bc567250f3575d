# infra/infra.mk — build, synthesize, test and deploy the CDK app in infra/.
# Included by the root Makefile; run every target from the repository root.
#
#   make lambdas gpuworker-dist   prebuilt assets under build/
#   make synth                    CloudFormation into infra/cdk.out (offline once cdk.context.json holds the zones)
#   make deploy                   cdk deploy (needs AWS credentials; see docs/deploy.md)
#   make test-infra               the infra module's tests (one synthesis, cdk-nag included)
#
# Variables: INFRA_CONFIG (default infra/lull.config.json, else the example),
# CDK_ARGS (extra cdk arguments, e.g. --profile prod).

GO            ?= go
INFRA_DIR     := infra
LAMBDA_NAMES  := api webhooks batch scaler dlq
LAMBDA_OUT    := build/lambda
# The template says arm64; localstack/cdklocal.sh builds for its host instead.
LAMBDA_GOARCH ?= arm64
WORKER_OUT    := build/gpuworker
WORKER_ARCHES := amd64 arm64
CDK           := $(INFRA_DIR)/node_modules/.bin/cdk
INFRA_CONFIG  ?= $(if $(wildcard $(INFRA_DIR)/lull.config.json),lull.config.json,lull.config.example.json)
CDK_ARGS      ?=
# jsii starts Node from the Go process: keep its notices quiet.
INFRA_ENV     := JSII_DEPRECATED=quiet JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 \
                 CDK_DISABLE_VERSION_CHECK=1 CDK_DISABLE_CLI_TELEMETRY=true

.PHONY: lambdas
lambdas: ## Cross-build each Lambda to build/lambda/<name>/bootstrap (linux/arm64); a failing placeholder where lambdas/<name> has no main package yet
	@set -e; for n in $(LAMBDA_NAMES); do \
	  mkdir -p $(LAMBDA_OUT)/$$n; \
	  if grep -qs '^package main$$' lambdas/$$n/*.go; then \
	    echo "lambda $$n"; \
	    GOOS=linux GOARCH=$(LAMBDA_GOARCH) CGO_ENABLED=0 $(GO) build -tags lambda.norpc -trimpath -ldflags=-s \
	      -o $(LAMBDA_OUT)/$$n/bootstrap ./lambdas/$$n; \
	  else \
	    echo "lambda $$n: no main package in lambdas/$$n; writing a placeholder that fails every invocation"; \
	    printf '#!/bin/sh\necho "lull: lambdas/%s was not built (placeholder asset)" >&2\nexit 1\n' $$n > $(LAMBDA_OUT)/$$n/bootstrap; \
	    chmod 0755 $(LAMBDA_OUT)/$$n/bootstrap; \
	  fi; \
	done

.PHONY: gpuworker-dist
gpuworker-dist: ## Build the GPU worker for linux/amd64 and linux/arm64 into build/gpuworker/linux-<arch>/ (uploaded as CDK assets)
	@set -e; for a in $(WORKER_ARCHES); do \
	  echo "gpuworker linux/$$a"; \
	  GOOS=linux GOARCH=$$a CGO_ENABLED=0 $(GO) build -trimpath -ldflags=-s \
	    -o $(WORKER_OUT)/linux-$$a/gpuworker ./gpuworker; \
	done

# The pinned CDK CLI (aws-cdk 2.1148.1; 3.x cannot read this app's output).
$(CDK): $(INFRA_DIR)/package.json $(INFRA_DIR)/package-lock.json
	cd $(INFRA_DIR) && npm ci --no-audit --no-fund
	@touch $@

.PHONY: infra-deps
infra-deps: $(CDK) ## Install the pinned CDK CLI into infra/node_modules

# vLLM (and uv) as the GPU instances install them: every package pinned by
# hash. Needs uv and network access to PyPI; rerun when vllmVersion changes
# (infra/lull: DefaultVLLMVersion, UVVersion; Python 3.12 as the boot uses).
VLLM_VERSION  ?= 0.33.0
UV_VERSION    ?= 0.13.8
VLLM_LOCK_DIR ?= build/vllm

.PHONY: vllm-lock
vllm-lock: ## Hash-pin vLLM and uv for the GPU instances into build/vllm (needs uv and PyPI; see docs/deploy.md)
	@command -v uv >/dev/null || { echo "vllm-lock needs uv (https://docs.astral.sh/uv/)"; exit 1; }
	mkdir -p $(VLLM_LOCK_DIR)
	echo "uv==$(UV_VERSION)" | uv pip compile - --generate-hashes --no-header --python-version 3.9 \
	  -o $(VLLM_LOCK_DIR)/requirements-uv-$(UV_VERSION).txt
	echo "vllm==$(VLLM_VERSION)" | uv pip compile - --generate-hashes --no-header --python-version 3.12 \
	  --python-platform x86_64-manylinux_2_28 -o $(VLLM_LOCK_DIR)/requirements-vllm-$(VLLM_VERSION)-amd64.txt
	echo "vllm==$(VLLM_VERSION)" | uv pip compile - --generate-hashes --no-header --python-version 3.12 \
	  --python-platform aarch64-manylinux_2_28 -o $(VLLM_LOCK_DIR)/requirements-vllm-$(VLLM_VERSION)-arm64.txt

.PHONY: synth
synth: lambdas gpuworker-dist $(CDK) ## Synthesize CloudFormation into infra/cdk.out (offline without credentials, or once infra/cdk.context.json holds the zones; cdk-nag runs, a finding fails it)
	cd $(INFRA_DIR) && $(INFRA_ENV) ./node_modules/.bin/cdk synth --quiet --no-notices -c config=$(INFRA_CONFIG) $(CDK_ARGS)
	@echo "templates: $(INFRA_DIR)/cdk.out/*.template.json"

.PHONY: deploy
deploy: lambdas gpuworker-dist $(CDK) ## Deploy the stack with the current AWS credentials (run infra-bootstrap once per account/region first)
	cd $(INFRA_DIR) && $(INFRA_ENV) ./node_modules/.bin/cdk deploy --no-notices -c config=$(INFRA_CONFIG) $(CDK_ARGS)

.PHONY: infra-bootstrap
infra-bootstrap: $(CDK) ## cdk bootstrap the current account/region (once; creates the CDK asset bucket and roles)
	cd $(INFRA_DIR) && $(INFRA_ENV) ./node_modules/.bin/cdk bootstrap --no-notices $(CDK_ARGS)

.PHONY: infra-destroy
infra-destroy: $(CDK) ## Delete the stack (the table and bucket are retained unless destroyOnRemoval is set)
	cd $(INFRA_DIR) && $(INFRA_ENV) ./node_modules/.bin/cdk destroy --no-notices -c config=$(INFRA_CONFIG) $(CDK_ARGS)

# test-infra ends with the scaler packages the policies act on: the metric
# math (backlog), the EMF lines (emf) and the per-model step (scale).
.PHONY: test-infra
test-infra: ## Test the CDK app: resources, IAM, env contract vs settings/worker.Config, scaling, cdk-nag (no -race: jsii), and the scaler metrics it scales on
	cd $(INFRA_DIR) && $(GO) vet ./...
	@cd $(INFRA_DIR) && out=$$(find . -name '*.go' -not -path './node_modules/*' -not -path './cdk.out/*' | xargs gofmt -l); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	cd $(INFRA_DIR) && $(INFRA_ENV) $(GO) test -count=1 -timeout 30m ./...
	$(GO) test -count=1 ./lambdas/scaler/backlog/ ./lambdas/scaler/emf/ ./lambdas/scaler/scale/

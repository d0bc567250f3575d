#!/usr/bin/env bash
# cdklocal.sh deploys lull's CDK stack into LocalStack (docker-compose.yml
# beside this script) with cdklocal, the CDK CLI wrapper that points every
# AWS call at LocalStack.
#
#   localstack/cdklocal.sh [deploy|synth|diff|destroy] [cdk args...]
#
# Environment: LOCALSTACK_ENDPOINT (default http://localhost:4566),
# AWS_REGION (default us-east-1), INFRA_CONFIG (relative to infra/; default
# lull.config.json, else lull.config.example.json).
#
# It builds the Lambdas for this machine's architecture (LocalStack runs them
# in local containers with LAMBDA_IGNORE_ARCHITECTURE=1), installs the pinned
# CDK CLI, bootstraps LocalStack's CDK environment and runs the command.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cmd=${1:-deploy}
shift || true

export AWS_ENDPOINT_URL=${LOCALSTACK_ENDPOINT:-http://localhost:4566}
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=${AWS_REGION:-us-east-1} AWS_DEFAULT_REGION=${AWS_REGION:-us-east-1}
export JSII_DEPRECATED=quiet JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20
export CDK_DISABLE_VERSION_CHECK=1 CDK_DISABLE_CLI_TELEMETRY=true

curl -fsS "$AWS_ENDPOINT_URL/_localstack/health" >/dev/null ||
  { echo "cdklocal.sh: LocalStack does not answer at $AWS_ENDPOINT_URL (docker compose -f localstack/docker-compose.yml up -d)" >&2; exit 1; }

case $(uname -m) in
  x86_64 | amd64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "cdklocal.sh: unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac
make -C "$root" --no-print-directory lambdas gpuworker-dist infra-deps LAMBDA_GOARCH="$arch"

config=${INFRA_CONFIG:-}
if [ -z "$config" ]; then
  if [ -f "$root/infra/lull.config.json" ]; then config=lull.config.json; else config=lull.config.example.json; fi
fi

# cdklocal (aws-cdk-local) drives the CDK CLI pinned in infra/package.json.
cdklocal() {
  (cd "$root/infra" && npm exec --yes --package=aws-cdk-local@3.0.4 --package=aws-cdk@2.1148.1 -- cdklocal "$@")
}

extra=()
case $cmd in
  deploy) cdklocal bootstrap --no-notices; extra=(--require-approval never) ;;
  destroy) extra=(--force) ;;
esac
cdklocal "$cmd" --no-notices -c config="$config" "${extra[@]}" "$@"

#!/usr/bin/env bash
# Installs, starts and stops the external AWS emulators lull's tests also run
# against: DynamoDB Local (Java; the jar comes from the npm package
# amplify-dynamodb-simulator) and fauxqs (Node; SQS and S3). Everything binds
# to 127.0.0.1 and lives under .cache/emulators in the repository.
#
#   emulators.sh install          npm install the pinned packages (idempotent)
#   emulators.sh start            start both on free ports; writes .cache/emulators/env
#   emulators.sh stop             stop both
#   emulators.sh run -- CMD ...   install, start, run CMD with LULL_EXT_*_URL set, stop; exits with CMD's status
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
dir="$root/.cache/emulators"
pkg="$root/localstack/scripts/emulators-package.json"
mkdir -p "$dir"

die() { echo "emulators: $*" >&2; exit 1; }

install() {
  command -v node >/dev/null || die "node is required (Node 20+)"
  command -v java >/dev/null || die "java is required for DynamoDB Local (Java 17+)"
  if [ -f "$dir/installed" ] && cmp -s "$pkg" "$dir/package.json"; then return 0; fi
  cp "$pkg" "$dir/package.json"
  echo "emulators: installing DynamoDB Local and fauxqs into $dir (first run only)" >&2
  (cd "$dir" && timeout 900 npm install --no-audit --no-fund --loglevel=error --omit=dev >&2) || die "npm install failed"
  touch "$dir/installed"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()' 2>/dev/null \
  || node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

wait_http() { # url seconds
  local deadline=$((SECONDS + $2))
  until curl -s -o /dev/null "$1"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

start() {
  install
  stop >/dev/null 2>&1 || true
  local ddb_port sqs_port jar_dir
  ddb_port=$(free_port); sqs_port=$(free_port)
  jar_dir="$dir/node_modules/amplify-dynamodb-simulator/emulator"
  [ -f "$jar_dir/DynamoDBLocal.jar" ] || die "DynamoDBLocal.jar not found under $jar_dir"
  (cd "$jar_dir" && exec setsid java -Xmx512m -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
      -inMemory -port "$ddb_port" >"$dir/dynamodb.log" 2>&1) &
  echo $! >"$dir/dynamodb.pid"
  (cd "$dir" && FAUXQS_PORT="$sqs_port" FAUXQS_HOST=127.0.0.1 exec setsid node node_modules/fauxqs/dist/cli.js >"$dir/fauxqs.log" 2>&1) &
  echo $! >"$dir/fauxqs.pid"
  wait_http "http://127.0.0.1:$ddb_port" 60 || { tail -20 "$dir/dynamodb.log" >&2; stop; die "DynamoDB Local did not start within 60s"; }
  wait_http "http://127.0.0.1:$sqs_port" 60 || { tail -20 "$dir/fauxqs.log" >&2; stop; die "fauxqs did not start within 60s"; }
  cat >"$dir/env" <<ENV
LULL_EXT_DYNAMODB_URL=http://127.0.0.1:$ddb_port
LULL_EXT_SQS_URL=http://127.0.0.1:$sqs_port
LULL_EXT_S3_URL=http://127.0.0.1:$sqs_port
ENV
  echo "emulators: DynamoDB Local on :$ddb_port, fauxqs (SQS+S3) on :$sqs_port" >&2
}

stop() {
  local f pid
  for f in "$dir"/dynamodb.pid "$dir"/fauxqs.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    rm -f "$f"
  done
  rm -f "$dir/env"
}

case "${1:-}" in
  install) install ;;
  start) start; cat "$dir/env" ;;
  stop) stop ;;
  run)
    shift; [ "${1:-}" = "--" ] && shift
    [ $# -gt 0 ] || die "usage: emulators.sh run -- CMD [ARGS...]"
    start
    trap stop EXIT INT TERM
    set -a; . "$dir/env"; set +a
    set +e; "$@"; status=$?; set -e
    exit $status
    ;;
  *) die "usage: emulators.sh install|start|stop|run -- CMD [ARGS...]" ;;
esac

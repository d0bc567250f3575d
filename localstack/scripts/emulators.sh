#!/usr/bin/env bash
# emulators.sh installs, starts and stops the external AWS emulators that
# lull's storage adapters are also tested against, with no Docker:
#
#   DynamoDB Local  AWS's jar (Java 17+), shipped inside the npm package
#                   amplify-dynamodb-simulator; run in memory.
#   fauxqs          Node; SQS and S3 (and SNS) on one port.
#
# Usage:
#   emulators.sh install         fetch the pinned versions into .cache/emulators
#                                (idempotent; needs no network once installed)
#   emulators.sh start           start both on free 127.0.0.1 ports, wait until
#                                they answer, write .cache/emulators/env, print it
#   emulators.sh stop            stop what `start` started (whole process groups)
#   emulators.sh status          say whether what `start` started is running
#   emulators.sh run -- CMD ...  install, start a private pair, run CMD with the
#                                LULL_EXT_* variables exported, always stop them,
#                                exit with CMD's status
#
# The env file (and `run`'s environment) holds:
#   LULL_EXT_DYNAMODB_URL=http://127.0.0.1:P1   DynamoDB Local
#   LULL_EXT_SQS_URL=http://127.0.0.1:P2        fauxqs
#   LULL_EXT_S3_URL=http://127.0.0.1:P2         fauxqs (same server; use path-style)
#
# Knobs (environment):
#   LULL_EMULATORS_DIR             cache and state folder (default REPO/.cache/emulators)
#   LULL_EMULATORS_START_TIMEOUT   seconds to wait for both to listen (default 90)
#   LULL_EMULATORS_INSTALL_TIMEOUT seconds for each npm step (default 600)
#   LULL_EMULATORS_JAVA_OPTS       JVM options for DynamoDB Local
#                                  (default -Xms64m -Xmx512m -XX:+UseSerialGC)
#   FAUXQS_LOGGER=true             log every fauxqs request
#
# Everything listens on 127.0.0.1 only (both are started through the small
# launchers beside this script, since neither has a bind-address option) and
# nothing contacts anything but 127.0.0.1 and, during install, the npm registry.
# See EMULATORS.md beside this script for what each emulator gets right and wrong.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${LULL_EMULATORS_DIR:-$root/.cache/emulators}
start_timeout=${LULL_EMULATORS_START_TIMEOUT:-90}
install_timeout=${LULL_EMULATORS_INSTALL_TIMEOUT:-600}
java_opts=${LULL_EMULATORS_JAVA_OPTS:--Xms64m -Xmx512m -XX:+UseSerialGC}
pkg_json="$here/emulators-package.json"
pkg_lock="$here/emulators-package-lock.json"
launcher_java="$here/DynamoDBLocalLoopback.java"
launcher_node="$here/fauxqs-loopback.mjs"

die() { echo "emulators: error: $*" >&2; exit 1; }
note() { echo "emulators: $*" >&2; }
now_ms() { date +%s%3N; }

need() { # cmd hint
  command -v "$1" >/dev/null 2>&1 || die "$1 not found on PATH: $2"
}

check_tools() {
  need node "fauxqs needs Node.js 20+ (Debian: apt-get install nodejs npm, or nodesource)"
  need npm "the emulators are installed with npm"
  need tar "needed to unpack DynamoDB Local"
  need timeout "coreutils' timeout bounds every step"
  need setsid "util-linux' setsid puts each emulator in its own process group"
  need flock "util-linux' flock serialises concurrent installs"
  local major
  major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  [ "$major" -ge 20 ] || die "fauxqs needs Node.js 20+, found $(node --version 2>&1)"
}

check_java() {
  command -v java >/dev/null 2>&1 \
    || die "java not found on PATH: DynamoDB Local needs a Java 17+ runtime (Debian: apt-get install openjdk-17-jdk-headless)"
  local v major
  v=$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -1)
  major=${v%%.*}
  [ "$major" = 1 ] && major=$(echo "$v" | cut -d. -f2)
  if ! [ "${major:-0}" -ge 17 ] 2>/dev/null; then
    die "DynamoDB Local here is run on Java 17+, found '${v:-unknown}' ($(command -v java))"
  fi
}

# load_pins reads lull.dynamodbLocal (package, version, integrity) from
# emulators-package.json once; pin FIELD prints one of them.
pins=""
load_pins() {
  [ -n "$pins" ] && return 0
  pins=$(node -e 'const p=require(process.argv[1]).lull.dynamodbLocal; console.log(p.package, p.version, p.integrity)' "$pkg_json") \
    || die "cannot read lull.dynamodbLocal from $pkg_json"
}
pin() {
  local a b c
  read -r a b c <<<"$pins"
  case $1 in package) echo "$a" ;; version) echo "$b" ;; integrity) echo "$c" ;; esac
}

hash_files() { cat "$@" | sha256sum | cut -c1-16; }

ddb_dir() { echo "$cache/dynamodb-local-$(pin version)"; }

# ---------------------------------------------------------------- install

install_fauxqs() {
  local want dest tmp
  want=$(hash_files "$pkg_json" "$pkg_lock")
  dest="$cache/fauxqs"
  if [ -f "$dest/.lull-stamp" ] && [ "$(cat "$dest/.lull-stamp")" = "$want" ] \
     && [ -f "$dest/node_modules/fauxqs/package.json" ]; then
    return 0
  fi
  note "installing fauxqs with npm ci into $dest"
  tmp=$(mktemp -d "$cache/.fauxqs.XXXXXX")
  cp "$pkg_json" "$tmp/package.json"
  cp "$pkg_lock" "$tmp/package-lock.json"
  local t0; t0=$(now_ms)
  if ! (cd "$tmp" && timeout "$install_timeout" npm ci --omit=dev --ignore-scripts --prefer-offline \
        --no-audit --no-fund --no-update-notifier --loglevel=error >&2); then
    rm -rf "$tmp"
    die "npm ci of fauxqs failed or ran past ${install_timeout}s (offline with an empty npm cache? the registry must be reachable the first time)"
  fi
  echo "$want" >"$tmp/.lull-stamp"
  rm -rf "$dest.old"
  [ -e "$dest" ] && mv "$dest" "$dest.old"
  chmod 755 "$tmp"
  mv "$tmp" "$dest"
  rm -rf "$dest.old"
  note "fauxqs installed in $(( ($(now_ms) - t0) / 1000 ))s"
}

install_dynamodb() {
  local name version integrity dest tmp tgz got
  name=$(pin package); version=$(pin version); integrity=$(pin integrity)
  dest=$(ddb_dir)
  if [ -f "$dest/.lull-stamp" ] && [ "$(cat "$dest/.lull-stamp")" = "$integrity" ] \
     && [ -f "$dest/DynamoDBLocal.jar" ]; then
    return 0
  fi
  note "fetching DynamoDB Local ($name@$version, ~55 MB) into $dest"
  local t0; t0=$(now_ms)
  tmp=$(mktemp -d "$cache/.dynamodb.XXXXXX")
  # npm pack fetches just this tarball (through npm's cache, so a warm ~/.npm
  # needs no network), not the package's ~250 Node dependencies: only its JS
  # wrapper needs those, and the jar is run directly.
  if ! tgz=$(cd "$tmp" && timeout "$install_timeout" npm pack "$name@$version" --prefer-offline \
        --no-update-notifier --loglevel=error 2>"$tmp/npm.err" | tail -1) || [ ! -f "$tmp/$tgz" ]; then
    cat "$tmp/npm.err" >&2 || true
    rm -rf "$tmp"
    die "npm pack $name@$version failed or ran past ${install_timeout}s (the npm registry must be reachable the first time)"
  fi
  got=$(node -e 'const c=require("crypto"),f=require("fs");process.stdout.write("sha512-"+c.createHash("sha512").update(f.readFileSync(process.argv[1])).digest("base64"))' "$tmp/$tgz")
  if [ "$got" != "$integrity" ]; then
    rm -rf "$tmp"
    die "$name@$version tarball integrity $got does not match the pinned $integrity"
  fi
  mkdir -p "$tmp/out"
  tar -xzf "$tmp/$tgz" -C "$tmp/out" package/emulator \
    || { rm -rf "$tmp"; die "unpacking $tgz failed"; }
  [ -f "$tmp/out/package/emulator/DynamoDBLocal.jar" ] \
    || { rm -rf "$tmp"; die "$name@$version has no emulator/DynamoDBLocal.jar"; }
  echo "$integrity" >"$tmp/out/package/emulator/.lull-stamp"
  rm -rf "$dest"
  mv "$tmp/out/package/emulator" "$dest"
  rm -rf "$tmp"
  note "DynamoDB Local $(sed -n 's/^.*(\([0-9.]*\))$/\1/p' "$dest/README.txt" | head -1) installed in $(( ($(now_ms) - t0) / 1000 ))s"
}

# The launcher class binds DynamoDB Local to 127.0.0.1. Without javac (a JRE
# only) DynamoDB Local is run as it comes, on every interface, with a warning.
build_launcher() {
  local dest want out
  dest=$(ddb_dir)
  out="$dest/lull-launcher"
  want=$(hash_files "$launcher_java")
  if [ -f "$out/.lull-stamp" ] && [ "$(cat "$out/.lull-stamp")" = "$want" ] \
     && [ -f "$out/DynamoDBLocalLoopback.class" ]; then
    return 0
  fi
  if ! command -v javac >/dev/null 2>&1; then
    note "warning: javac not found (a JRE without the JDK): DynamoDB Local will listen on all interfaces, not only 127.0.0.1"
    return 0
  fi
  rm -rf "$out"; mkdir -p "$out"
  timeout 120 javac -nowarn -cp "$dest/DynamoDBLocal.jar" -d "$out" "$launcher_java" >&2 \
    || { rm -rf "$out"; die "compiling DynamoDBLocalLoopback.java failed"; }
  echo "$want" >"$out/.lull-stamp"
}

# The layout before this script used npm install of both packages into
# .cache/emulators/node_modules (~410 MB). Remove it once nothing of it runs.
drop_legacy() {
  if [ -d "$cache/node_modules" ] && [ ! -e "$cache/dynamodb.pid" ] && [ ! -e "$cache/fauxqs.pid" ]; then
    rm -rf "$cache/node_modules" "$cache/package.json" "$cache/package-lock.json" \
      "$cache/installed" "$cache/dynamodb.log" "$cache/fauxqs.log"
  fi
}

install() {
  check_tools
  check_java
  load_pins
  mkdir -p "$cache"
  exec 9>"$cache/.install.lock"
  flock -w "$install_timeout" 9 || die "another install held $cache/.install.lock for ${install_timeout}s"
  rm -rf "$cache"/.fauxqs.* "$cache"/.dynamodb.*   # left by an interrupted install
  drop_legacy
  install_fauxqs
  install_dynamodb
  build_launcher
  exec 9>&-
}

# ---------------------------------------------------------------- start/stop

# spawn STATE NAME CMD...: runs CMD in a new session (so its process group can
# be killed whole), output to STATE/NAME.log, its pid (= its group) to STATE/NAME.pid.
spawn() {
  local state=$1 name=$2; shift 2
  : >"$state/$name.log"
  # shellcheck disable=SC2016 # $$ and $1 are the inner shell's
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$state/$name.pid" "$@" \
    </dev/null >>"$state/$name.log" 2>&1 &
}

listening_port() { # LOG -> port, once the launcher said so
  sed -n 's/^LULL_LISTENING 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$1" 2>/dev/null | head -1
}

# proc_state PID: the process' state letter from /proc (R, S, Z, ...), empty
# when it is gone. A zombie (Z) has exited already; kill -0 still succeeds on
# it until its parent (here often a slow init) reaps it.
proc_state() {
  local rest
  read -r rest 2>/dev/null <"/proc/$1/stat" || return 0
  rest=${rest##*) }
  echo "${rest%% *}"
}

alive() { # PIDFILE
  local st
  [ -s "$1" ] || return 1
  st=$(proc_state "$(cat "$1")")
  [ -n "$st" ] && [ "$st" != Z ]
}

# group_alive PGID: whether any live (non-zombie) process is in the group.
group_alive() {
  local g=$1 f rest st pgrp
  for f in /proc/[0-9]*/stat; do
    read -r rest 2>/dev/null <"$f" || continue
    rest=${rest##*) }            # "STATE PPID PGRP ..."
    read -r st _ pgrp _ <<<"$rest"
    [ "$pgrp" = "$g" ] && [ "$st" != Z ] && return 0
  done
  return 1
}

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# start_into STATE [WATCH_PID]: start both emulators with state (pids, logs,
# env) in STATE. With WATCH_PID, both exit by themselves once it is gone.
start_into() {
  local state=$1 watch=${2:-}
  local dest ddb_port fq_port t0 deadline
  load_pins
  dest=$(ddb_dir)
  [ -f "$dest/DynamoDBLocal.jar" ] || die "DynamoDB Local is not installed; run: $0 install"
  [ -f "$cache/fauxqs/node_modules/fauxqs/package.json" ] || die "fauxqs is not installed; run: $0 install"
  mkdir -p "$state"
  rm -f "$state/env"
  t0=$(now_ms)

  # DynamoDB Local: in memory; -sharedDb so every client sees the same tables
  # whatever its access key and region (otherwise each key+region pair gets
  # its own database); telemetry off; cwd in STATE.
  local plain_ddb=""
  if [ -f "$dest/lull-launcher/DynamoDBLocalLoopback.class" ]; then
    # shellcheck disable=SC2086
    (cd "$state" && LULL_EMULATORS_WATCH_PID=$watch DDB_LOCAL_TELEMETRY=0 spawn "$state" dynamodb \
      java $java_opts "-Djava.library.path=$dest/DynamoDBLocal_lib" \
      -cp "$dest/lull-launcher:$dest/DynamoDBLocal.jar" DynamoDBLocalLoopback \
      -inMemory -sharedDb -disableTelemetry -port 0)
  else
    plain_ddb=$(free_port)
    # shellcheck disable=SC2086
    (cd "$state" && DDB_LOCAL_TELEMETRY=0 spawn "$state" dynamodb \
      java $java_opts "-Djava.library.path=$dest/DynamoDBLocal_lib" -jar "$dest/DynamoDBLocal.jar" \
      -inMemory -sharedDb -disableTelemetry -port "$plain_ddb")
  fi
  (cd "$state" && LULL_EMULATORS_WATCH_PID=$watch spawn "$state" fauxqs \
    node "$launcher_node" "$cache/fauxqs/node_modules/fauxqs")

  deadline=$((SECONDS + start_timeout))
  ddb_port=""; fq_port=""
  while :; do
    if [ -z "$ddb_port" ]; then
      if [ -n "$plain_ddb" ]; then
        grep -q "CorsParams" "$state/dynamodb.log" 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$plain_ddb") 2>/dev/null && ddb_port=$plain_ddb
      else
        ddb_port=$(listening_port "$state/dynamodb.log")
      fi
      [ -n "$ddb_port" ] && note "DynamoDB Local listening on ${plain_ddb:+all interfaces, }127.0.0.1:$ddb_port after $(( $(now_ms) - t0 )) ms"
    fi
    if [ -z "$fq_port" ]; then
      fq_port=$(listening_port "$state/fauxqs.log")
      [ -n "$fq_port" ] && note "fauxqs listening on 127.0.0.1:$fq_port after $(( $(now_ms) - t0 )) ms"
    fi
    [ -n "$ddb_port" ] && [ -n "$fq_port" ] && break
    local failed=""
    if [ -z "$ddb_port" ] && [ -s "$state/dynamodb.pid" ] && ! alive "$state/dynamodb.pid"; then failed=dynamodb; fi
    if [ -z "$fq_port" ] && [ -s "$state/fauxqs.pid" ] && ! alive "$state/fauxqs.pid"; then failed=fauxqs; fi
    if [ -n "$failed" ] || [ $SECONDS -ge $deadline ]; then
      local which=${failed:-$([ -z "$ddb_port" ] && echo dynamodb || echo fauxqs)}
      echo "----- $state/$which.log (last 30 lines)" >&2
      tail -30 "$state/$which.log" >&2 || true
      stop_state "$state"
      if [ -n "$failed" ]; then die "$which exited before it listened (log above)"; fi
      die "$which did not listen within ${start_timeout}s (LULL_EMULATORS_START_TIMEOUT; log above)"
    fi
    sleep 0.1
  done

  # One real request each, so "listening" also means "answering".
  probe_dynamodb "$ddb_port" || { stop_state "$state"; die "DynamoDB Local on :$ddb_port does not answer ListTables"; }
  probe_fauxqs "$fq_port" || { stop_state "$state"; die "fauxqs on :$fq_port does not answer GET /health"; }

  cat >"$state/env.tmp" <<ENV
LULL_EXT_DYNAMODB_URL=http://127.0.0.1:$ddb_port
LULL_EXT_SQS_URL=http://127.0.0.1:$fq_port
LULL_EXT_S3_URL=http://127.0.0.1:$fq_port
ENV
  mv "$state/env.tmp" "$state/env"
  note "both answering after $(( $(now_ms) - t0 )) ms"
}

# probe_* PORT: one bounded request through node (no curl needed).
probe_dynamodb() {
  timeout 15 node -e '
    const req = require("http").request({host: "127.0.0.1", port: +process.argv[1], method: "POST", path: "/",
      headers: {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "DynamoDB_20120810.ListTables",
        "Authorization": "AWS4-HMAC-SHA256 Credential=probe/20200101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0"}},
      res => { let b = ""; res.on("data", d => b += d); res.on("end", () => process.exit(res.statusCode === 200 && b.includes("TableNames") ? 0 : 1)); });
    req.on("error", () => process.exit(1)); req.end("{}");' "$1"
}
probe_fauxqs() {
  timeout 15 node -e '
    require("http").get({host: "127.0.0.1", port: +process.argv[1], path: "/health"},
      res => process.exit(res.statusCode === 200 ? 0 : 1)).on("error", () => process.exit(1));' "$1"
}

# stop_state STATE: TERM each emulator's whole process group, KILL after 10s.
stop_state() {
  local state=$1 name pid _
  for name in dynamodb fauxqs; do
    [ -s "$state/$name.pid" ] || { rm -f "$state/$name.pid"; continue; }
    pid=$(cat "$state/$name.pid")
    if group_alive "$pid"; then
      kill -TERM -- "-$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do group_alive "$pid" || break; sleep 0.1; done
      if group_alive "$pid"; then
        note "$name (group $pid) still running 10s after SIGTERM; SIGKILL"
        kill -KILL -- "-$pid" 2>/dev/null || true
      fi
    fi
    rm -f "$state/$name.pid"
  done
  rm -f "$state/env"
}

# ---------------------------------------------------------------- commands

cmd_start() {
  install
  local state="$cache/state"
  stop_state "$state"   # a pair left by an earlier `start`
  start_into "$state"
  cp "$state/env" "$cache/env.tmp" && mv "$cache/env.tmp" "$cache/env"
  note "wrote $cache/env; stop with: $0 stop"
  cat "$cache/env"
}

cmd_stop() {
  stop_state "$cache/state"
  rm -f "$cache/env"
}

cmd_status() {
  local state="$cache/state" name rc=0
  for name in dynamodb fauxqs; do
    if alive "$state/$name.pid"; then echo "$name: running (pid $(cat "$state/$name.pid"))"
    else echo "$name: not running"; rc=1; fi
  done
  [ -f "$cache/env" ] && cat "$cache/env"
  return $rc
}

cmd_run() {
  [ "${1:-}" = "--" ] && shift
  [ $# -gt 0 ] || die "usage: $0 run -- CMD [ARGS...]"
  install
  mkdir -p "$cache/runs"
  # Runs older than a day were left by a killed runner; their emulators
  # exited on their own (they watch the runner's pid).
  find "$cache/runs" -mindepth 1 -maxdepth 1 -type d -mmin +1440 -exec rm -rf {} + 2>/dev/null || true
  local state
  state=$(mktemp -d "$cache/runs/run.XXXXXX")
  RUN_STATE=$state
  trap 'stop_state "$RUN_STATE"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  start_into "$state" $$
  set -a
  # shellcheck disable=SC1091
  . "$state/env"
  set +a
  local status=0
  "$@" || status=$?
  stop_state "$state"
  if [ $status -eq 0 ]; then rm -rf "$state"
  else note "$* exited $status; emulator logs kept in $state"; fi
  exit $status
}

case "${1:-}" in
  install) install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  run) shift; cmd_run "$@" ;;
  -h|--help|help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' ;;
  *) die "usage: $0 install | start | stop | status | run -- CMD [ARGS...]  (see $0 help)" ;;
esac

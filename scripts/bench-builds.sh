#!/usr/bin/env bash
# Build benchmark, local executor:
#   1. push -> first build command running, p50/p99 over 200 pushes in a row (each waits
#      for its build, so the queue is empty): the push event's stored time (sqlite) to the
#      $EPOCHREALTIME the buildspec's first command writes, matched by commit;
#   2. trivial builds per minute: 60 new branches in one push, first push to last build end;
#   3. the engine's overhead: a small C project (22 commands) with `slipway build --local`
#      against the same commands in one bash script, timed in alternating pairs; goal ratio
#      <= 1.05. Also 3 phases x 10 tiny commands and a 1-command build (hyperfine), which
#      split the cost into a fixed part and a per-command part.
# Prints a table and writes all numbers as JSON (its path is printed last).
#
#   scripts/bench-builds.sh [--quick]     (--quick: 20 pushes, 10 branches, 5 runs; < 1 min)
#
# Run as root, the server runs builds as `nobody`, as in production. Needs hyperfine
# (installed with apt when missing). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
QUICK=0
for arg in "$@"; do
  case $arg in
    --quick) QUICK=1 ;;
    *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
  esac
done
PUSHES=200
BRANCHES=60
RUNS=30      # hyperfine runs per command, split into ROUNDS invocations (load drifts)
ROUNDS=3
WARMUP=2     # per round
if [ $QUICK = 1 ]; then PUSHES=20; BRANCHES=10; RUNS=5; ROUNDS=1; WARMUP=1; fi
PY=/usr/bin/python3
if ! command -v hyperfine >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null
fi
RUN=$(mktemp -d /tmp/slipway-bench-builds.XXXXXX)
# Builds run as nobody: it must pass through $RUN (to the data directory) and write marks.
chmod 711 "$RUN"
mkdir -m 1777 "$RUN/marks"
chmod 1777 "$RUN/marks"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
log() { echo "bench-builds: $*" >&2; }

log "building slipway (release); work dir $RUN"
# The target directory is shared: a build may fail while someone's edit is half-way.
for attempt in 1 2 3; do
  if cargo build --release -q; then break; fi
  [ $attempt = 3 ] && { log "cargo build failed 3 times"; exit 1; }
  log "cargo build failed (attempt $attempt); retrying in 60 s"
  sleep 60
done
BIN=$ROOT/target/release/slipway
mkdir -p "$RUN/keys"
ssh-keygen -q -t ed25519 -N '' -C bench -f "$RUN/keys/client"
SSHOPTS="-F /dev/null -i $RUN/keys/client -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes"

# ---- 1 + 2: the server --------------------------------------------------------------------
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)   # the machine is shared: say how busy it was
log "server: $PUSHES pushes in a row, then $BRANCHES branches in one push"
"$BIN" init --data "$RUN/slipway" --admin-key "$RUN/keys/client.pub" --admin-name bench >"$RUN/init.out" 2>&1 ||
  { cat "$RUN/init.out" >&2; exit 1; }
RUST_LOG=warn "$BIN" serve --data "$RUN/slipway" --ssh-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  >"$RUN/serve.out" 2>"$RUN/serve.err" &
SERVER_PID=$!
PIDS+=($SERVER_PID)
for _ in $(seq 1 100); do grep -q listening "$RUN/serve.out" 2>/dev/null && break; sleep 0.1; done
S_PORT=$(grep -o 'ssh=[0-9.:]*' "$RUN/serve.out" | sed 's/.*://')
[ -n "$S_PORT" ] || { log "the server did not start:"; cat "$RUN/serve.err" >&2; exit 1; }
$PY scripts/bench/builds_load.py --url-base "ssh://git@127.0.0.1:$S_PORT/" --ssh "ssh $SSHOPTS" \
  --ssh-port "$S_PORT" --work "$RUN/work" --db "$RUN/slipway/slipway.db" --marks "$RUN/marks" \
  --pushes $PUSHES --branches $BRANCHES >"$RUN/load.json"
kill $SERVER_PID
wait $SERVER_PID 2>/dev/null || true

# ---- 3: engine overhead (no server running) ---------------------------------------------
LOAD3=$(cut -d' ' -f1-3 /proc/loadavg)
log "engine overhead: slipway build --local vs bash, $RUNS runs each"
$PY scripts/bench/builds_overhead.py --bin "$BIN" --work "$RUN/overhead" --runs $RUNS --rounds $ROUNDS --warmup $WARMUP \
  >"$RUN/overhead.json"

# ---- report ------------------------------------------------------------------------------
REV=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo "+dirty")
printf '{"mode": "%s", "date": "%s", "rev": "%s", "pushes": %s, "branches": %s, "runs": %s, "nproc": %s, "loadavg_before_server": "%s", "loadavg_before_overhead": "%s"}\n' \
  "$([ $QUICK = 1 ] && echo quick || echo full)" "$(date -u +%Y-%m-%dT%H:%MZ)" "$REV" \
  $PUSHES $BRANCHES $RUNS "$(nproc)" "$LOAD1" "$LOAD3" >"$RUN/meta.json"
$PY scripts/bench/builds_report.py "$RUN/load.json" "$RUN/overhead.json" "$RUN/meta.json" "$RUN/builds.json"

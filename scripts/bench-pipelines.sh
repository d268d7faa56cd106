#!/usr/bin/env bash
# Pipeline latency benchmark: a repository whose pipeline.yml has two stages of one trivial
# build each, PUSHES pushes in a row to main, each waiting for its execution to end (so
# the queues are empty). From the stored event log (ms resolution), per execution:
#   1. push -> first action started: `git/push` to the first `pipeline/action-state-change`
#      STARTED of the execution that push started; and push -> that action's build
#      running (`build/build-state-change` IN_PROGRESS of its build_id);
#   2. stage -> next stage: `pipeline/stage-state-change` SUCCEEDED of stage 1 to STARTED
#      of stage 2;
# with the steps in between. Goal: each under 50 ms. Prints a table with p50/p99 against
# the goal and writes everything as JSON in the run directory (its path is printed last).
#
#   scripts/bench-pipelines.sh [--quick]      (--quick: 15 pushes, well under a minute)
#
# Builds slipway (release) into $CARGO_TARGET_DIR (default /tmp/bench-pipelines-target, not
# the shared target/), or uses SLIPWAY_BIN=path when set. Run as root, the server runs
# builds as `nobody`, as in production. Loopback only.
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
PUSHES=100
if [ $QUICK = 1 ]; then PUSHES=15; fi
PY=/usr/bin/python3
RUN=$(mktemp -d /tmp/slipway-bench-pipelines.XXXXXX)
# Builds run as nobody: it must pass through $RUN to the data directory.
chmod 711 "$RUN"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
log() { echo "bench-pipelines: $*" >&2; }

if [ -n "${SLIPWAY_BIN:-}" ]; then
  BIN=$SLIPWAY_BIN
else
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/bench-pipelines-target}
  log "building slipway (release) in $CARGO_TARGET_DIR; work dir $RUN"
  # The sources may be mid-edit: a build may fail; try again a little later.
  for attempt in 1 2 3; do
    if cargo build --release -q; then break; fi
    [ $attempt = 3 ] && { log "cargo build failed 3 times"; exit 1; }
    log "cargo build failed (attempt $attempt); retrying in 60 s"
    sleep 60
  done
  BIN=$CARGO_TARGET_DIR/release/slipway
fi
mkdir -p "$RUN/keys"
ssh-keygen -q -t ed25519 -N '' -C bench -f "$RUN/keys/client"
SSHOPTS="-F /dev/null -i $RUN/keys/client -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes"

# The machine may be shared: log other processes' CPU while the benchmark runs.
"$PY" scripts/bench/noise_monitor.py --root $$ --out "$RUN/noise.log" &
PIDS+=($!)

"$BIN" init --data "$RUN/slipway" --admin-key "$RUN/keys/client.pub" --admin-name admin >"$RUN/init.out" 2>&1 ||
  { cat "$RUN/init.out" >&2; exit 1; }
RUST_LOG=warn "$BIN" serve --data "$RUN/slipway" --ssh-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  >"$RUN/serve.out" 2>"$RUN/serve.err" &
SERVER_PID=$!
PIDS+=($SERVER_PID)
for _ in $(seq 1 100); do grep -q listening "$RUN/serve.out" 2>/dev/null && break; sleep 0.1; done
S_PORT=$(grep -o 'ssh=[0-9.:]*' "$RUN/serve.out" | sed 's/.*://')
[ -n "$S_PORT" ] || { log "the server did not start:"; cat "$RUN/serve.err" >&2; exit 1; }

REV=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo "+dirty")
T0=$(date +%s.%N)
printf '{"mode": "%s", "date": "%s", "rev": "%s", "nproc": %s, "loadavg_before": "%s"}\n' \
  "$([ $QUICK = 1 ] && echo quick || echo full)" "$(date -u +%Y-%m-%dT%H:%MZ)" "$REV" "$(nproc)" \
  "$(cut -d' ' -f1-3 /proc/loadavg)" >"$RUN/meta.json"
log "$PUSHES pushes in a row (server ssh port $S_PORT)"
# The driver writes the JSON and a table (kept in table.txt); the table printed below is
# the same with the machine's noise during the pushes added.
$PY scripts/bench/pipelines.py --url-base "ssh://git@127.0.0.1:$S_PORT/" --ssh "ssh $SSHOPTS" \
  --ssh-port "$S_PORT" --work "$RUN/work" --out "$RUN/pipelines.json" --meta "$RUN/meta.json" \
  --pushes $PUSHES >"$RUN/table.txt"
T1=$(date +%s.%N)
kill $SERVER_PID
wait $SERVER_PID 2>/dev/null || true
# The server's start-up self-test of the hook logs one bad-token refusal: anything else
# it wrote is worth a look.
if awk '/hook request refused/ && /bad-token/ && !seen++ {next} {found=1} END {exit !found}' "$RUN/serve.err"; then
  log "the server wrote to stderr ($RUN/serve.err):"
  tail -n 20 "$RUN/serve.err" >&2
fi
sleep 0.6   # one more noise sample
NOISE=$("$PY" scripts/bench/noise_monitor.py --summary "$RUN/noise.log" "$T0" "$T1" || echo "?")
# noise_monitor prints "<other processes' cores> <idle cores> <top commands>".
$PY - "$RUN/pipelines.json" "$NOISE" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'EOF'
import json, sys
sys.path.insert(0, "scripts/bench")
from pipelines import table
path, noise, load = sys.argv[1:4]
r = json.load(open(path))
parts = noise.split(" ", 2)
if len(parts) == 3:
    r["meta"]["noise"] = f"{parts[0]} cores busy, {parts[1]} idle (top: {parts[2]})"
else:
    r["meta"]["noise"] = noise
r["meta"]["loadavg_after"] = load
json.dump(r, open(path, "w"), indent=2)
print(table(r, r["meta"]))
print(f"JSON: {path}")
EOF

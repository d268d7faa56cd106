#!/usr/bin/env bash
# Deployment benchmark: a trivial revision (one tiny file, one trivial ValidateService
# hook) deployed all at once to AGENTS real `slipway-agent` processes on loopback, RUNS
# times in a row, from the server's own times (`deploy status --json`):
#   1. time to done: deployment created -> SUCCEEDED, and the overhead beyond the hooks'
#      own time on the host that ended last (goal: under 2 s plus script time);
#   2. dispatch latency through the long-poll: a lifecycle event READY -> the agent's
#      acknowledgement (IN_PROGRESS), over every event of every run (goal: p99 < 20 ms);
#   3. the server's memory per connected agent: its RSS with 0, AGENTS and AGENTS+IDLE
#      agents long-polling (the idle ones are in no group), divided by the count;
#   4. the baseline, interleaved with the runs: the same zip to AGENTS host directories
#      through a private OpenSSH sshd on loopback, one `ssh` per host all at once (cold,
#      and over open ControlMaster connections), printed as slipway / baseline.
# Prints a table and writes everything as JSON in the run directory (its path is printed
# last). scripts/bench/noise_monitor.py logs what other processes did meanwhile.
#
#   scripts/bench-deploy.sh [--quick]     (--quick: 3 runs, 30 idle agents, ~70 s)
#
# Builds slipway and slipway-agent (release) into $CARGO_TARGET_DIR (default
# /tmp/bench-deploy-target, not the shared target/), or uses SLIPWAY_BIN=path and
# AGENT_BIN=path when set; both are copied first, so a rebuild during the run cannot swap
# them. Run as root (the server runs builds as `nobody`; the baseline's sshd needs root).
# Loopback only. BENCH_AGENT_STATE=tmpfs puts the agents' state directories (where they
# fsync their in-progress file around every command) on /dev/shm, to see what the disk
# costs; BENCH_PIN=1 runs the server on CPU 0 and every agent on CPU 1 (taskset), as if
# the agents were on other machines; BENCH_KEEP_IDLE=1 keeps the idle agents polling
# during the deployments; BENCH_RUNS, BENCH_AGENTS and BENCH_IDLE_AGENTS
# override the counts.
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=0
for arg in "$@"; do
  case $arg in
    --quick) QUICK=1 ;;
    *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
  esac
done
AGENTS=${BENCH_AGENTS:-20}
if [ $QUICK = 1 ]; then RUNS=3; IDLE=30; QUIET_WAIT=10; else RUNS=10; IDLE=80; QUIET_WAIT=300; fi
RUNS=${BENCH_RUNS:-$RUNS}
IDLE=${BENCH_IDLE_AGENTS:-$IDLE}
PY=/usr/bin/python3
for t in git ssh ssh-keygen unzip /usr/sbin/sshd "$PY"; do
  command -v "$t" >/dev/null || { echo "bench-deploy: $t is needed" >&2; exit 1; }
done
RUN=$(mktemp -d /tmp/slipway-bench-deploy.XXXXXX)
# Builds run as nobody: it must pass through $RUN to the data directory.
chmod 711 "$RUN"
STATE_ARGS=()
SERVER_PIN=()
PINNED=
if [ "${BENCH_PIN:-}" = 1 ]; then
  SERVER_PIN=(taskset -c 0)
  STATE_ARGS+=(--agent-cpus 1)
  PINNED="server on CPU 0, agents on CPU 1"
fi
if [ "${BENCH_KEEP_IDLE:-}" = 1 ]; then STATE_ARGS+=(--keep-idle); fi
SHM=
if [ "${BENCH_AGENT_STATE:-}" = tmpfs ]; then
  SHM=$(mktemp -d /dev/shm/slipway-bench-deploy.XXXXXX)
  STATE_ARGS+=(--agent-state "$SHM")
fi
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$SHM" ]; then rm -rf "$SHM"; fi
}
trap cleanup EXIT
log() { echo "bench-deploy: $*" >&2; }

if [ -n "${SLIPWAY_BIN:-}" ] && [ -n "${AGENT_BIN:-}" ]; then
  :
else
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/bench-deploy-target}
  log "building slipway and slipway-agent (release) in $CARGO_TARGET_DIR; work dir $RUN"
  # The sources may be mid-edit: a build may fail; try again a little later.
  for attempt in 1 2 3; do
    if cargo build --release -q -p slipway -p slipway-agent; then break; fi
    [ $attempt = 3 ] && { log "cargo build failed 3 times"; exit 1; }
    log "cargo build failed (attempt $attempt); retrying in 60 s"
    sleep 60
  done
  SLIPWAY_BIN=$CARGO_TARGET_DIR/release/slipway
  AGENT_BIN=$CARGO_TARGET_DIR/release/slipway-agent
fi
mkdir -p "$RUN/bin" "$RUN/keys"
cp "$SLIPWAY_BIN" "$RUN/bin/slipway"
cp "$AGENT_BIN" "$RUN/bin/slipway-agent"
BIN=$RUN/bin/slipway
ssh-keygen -q -t ed25519 -N '' -C bench -f "$RUN/keys/client"
SSHOPTS="-F /dev/null -i $RUN/keys/client -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes"

# The machine may be shared: log other processes' CPU while the benchmark runs.
"$PY" scripts/bench/noise_monitor.py --root $$ --out "$RUN/noise.log" &
PIDS+=($!)

"$BIN" init --data "$RUN/slipway" --admin-key "$RUN/keys/client.pub" --admin-name admin >"$RUN/init.out" 2>&1 ||
  { cat "$RUN/init.out" >&2; exit 1; }
RUST_LOG=warn "${SERVER_PIN[@]}" "$BIN" serve --data "$RUN/slipway" --ssh-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  >"$RUN/serve.out" 2>"$RUN/serve.err" &
SERVER_PID=$!
PIDS+=($SERVER_PID)
for _ in $(seq 1 100); do grep -q listening "$RUN/serve.out" 2>/dev/null && break; sleep 0.1; done
LINE=$(grep 'listening ssh=' "$RUN/serve.out") || { log "the server did not start:"; cat "$RUN/serve.err" >&2; exit 1; }
S_SSH=$(sed -n 's/.*ssh=\([^ ]*\).*/\1/p' <<<"$LINE")
S_HTTP=$(sed -n 's/.*http=\([^ ]*\).*/\1/p' <<<"$LINE")
case "$S_SSH $S_HTTP" in 127.0.0.1:*\ 127.0.0.1:*) ;; *) log "not on loopback: ssh=$S_SSH http=$S_HTTP"; exit 1 ;; esac

REV=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo "+dirty")
printf '{"mode": "%s", "date": "%s", "rev": "%s", "nproc": %s, "loadavg_before": "%s", "slipway_sha256": "%s", "pinned": "%s"}\n' \
  "$([ $QUICK = 1 ] && echo quick || echo full)" "$(date -u +%Y-%m-%dT%H:%MZ)" "$REV" "$(nproc)" \
  "$(cut -d' ' -f1-3 /proc/loadavg)" "$(sha256sum "$BIN" | cut -c1-12)" "$PINNED" >"$RUN/meta.json"
log "server pid $SERVER_PID ssh=$S_SSH http=$S_HTTP; $AGENTS agents, $RUNS runs, $IDLE idle agents"
$PY scripts/bench/deploy.py --ssh "ssh $SSHOPTS" --ssh-port "${S_SSH##*:}" --http-port "${S_HTTP##*:}" \
  --server-pid $SERVER_PID --agent-bin "$RUN/bin/slipway-agent" --client-key "$RUN/keys/client" \
  --work "$RUN/work" --out "$RUN/deploy.json" --meta "$RUN/meta.json" --noise-log "$RUN/noise.log" \
  --agents "$AGENTS" --idle-agents "$IDLE" --runs "$RUNS" --quiet-wait "$QUIET_WAIT" "${STATE_ARGS[@]}" \
  >"$RUN/table.txt"
kill $SERVER_PID
wait $SERVER_PID 2>/dev/null || true
# The server's start-up self-test of the hook logs one bad-token refusal: anything else
# it wrote is worth a look.
if awk '/hook request refused/ && /bad-token/ && !seen++ {next} {found=1} END {exit !found}' "$RUN/serve.err"; then
  log "the server wrote to stderr ($RUN/serve.err):"
  tail -n 20 "$RUN/serve.err" >&2
fi
$PY - "$RUN/deploy.json" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PYEOF'
import json, sys
sys.path.insert(0, "scripts/bench")
from deploy import table
path, load = sys.argv[1:3]
r = json.load(open(path))
r["meta"]["loadavg_after"] = load
json.dump(r, open(path, "w"), indent=2)
print(table(r))
print(f"JSON: {path}")
PYEOF

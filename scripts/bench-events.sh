#!/usr/bin/env bash
# Notification-path benchmark: push accepted -> event stored -> mail accepted by a real
# SMTP server (aiosmtpd), for 500 pushes in a row and for 20 clients pushing at once,
# side by side with the baseline a team would otherwise run: OpenSSH + git-shell with a
# post-receive hook that mails through smtplib. Prints p50/p99 and ratios, and checks
# that no event was lost.
#
#   scripts/bench-events.sh [--quick] [--slipway-only]   (results go in docs/benchmarks.md by hand)
#
# --slipway-only skips the baseline and prints slipway's JSON, with the time split into
# stored -> queued (rules engine) and queued -> accepted (notifier + SMTP).
# BENCH_GIT_NICE=N runs slipway with git.nice N instead of the default.
#
# Needs: openssh-server, python3-aiosmtpd (installed with apt when missing). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
QUICK=0
ONLY=0
for arg in "$@"; do
  case $arg in
    --quick) QUICK=1 ;;
    --slipway-only) ONLY=1 ;;
    *) echo "usage: $0 [--quick] [--slipway-only]" >&2; exit 2 ;;
  esac
done
SEQ=500
CLIENTS=20
PER=25
if [ $QUICK = 1 ]; then SEQ=40; CLIENTS=4; PER=5; fi
PY=/usr/bin/python3
if ! $PY -c 'import aiosmtpd' 2>/dev/null || [ ! -x /usr/sbin/sshd ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server python3-aiosmtpd >/dev/null
fi
RUN=$(mktemp -d /tmp/slipway-bench-events.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
log() { echo "bench-events: $*" >&2; }
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

log "building slipway (release); work dir $RUN"
cargo build --release -q
BIN=$ROOT/target/release/slipway
mkdir -p "$RUN/keys"
ssh-keygen -q -t ed25519 -N '' -C bench -f "$RUN/keys/client"
ssh-keygen -q -t ed25519 -N '' -C host -f "$RUN/keys/host"
SSHOPTS="-F /dev/null -i $RUN/keys/client -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes"

# Starts an SMTP sink writing to $1; sets SINK_PORT.
start_sink() {
  local dir=$1
  $PY "$ROOT/tests/e2e/smtp_sink.py" --dir "$dir" >"$dir.out" &
  PIDS+=($!)
  for _ in $(seq 1 100); do grep -q listening "$dir.out" 2>/dev/null && break; sleep 0.1; done
  SINK_PORT=$(awk '/listening/ {print $2}' "$dir.out")
}

# ---- slipway ---------------------------------------------------------------------------
log "slipway: $SEQ pushes in a row, then $CLIENTS clients x $PER pushes"
mkdir -p "$RUN/slipway-mail"
start_sink "$RUN/slipway-mail"
"$BIN" init --data "$RUN/slipway" --admin-key "$RUN/keys/client.pub" --admin-name bench >/dev/null
printf 'smtp: { host: 127.0.0.1, port: %s, tls: none }\n' "$SINK_PORT" >>"$RUN/slipway/slipway.yaml"
if [ -n "${BENCH_GIT_NICE:-}" ]; then
  sed -i "s/^  nice: [0-9]*$/  nice: $BENCH_GIT_NICE/" "$RUN/slipway/slipway.yaml"
  grep -q "^  nice: $BENCH_GIT_NICE$" "$RUN/slipway/slipway.yaml" || { echo "cannot set git.nice" >&2; exit 1; }
fi
RUST_LOG=warn "$BIN" serve --data "$RUN/slipway" --ssh-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  >"$RUN/serve.out" 2>"$RUN/serve.err" &
SERVER_PID=$!
PIDS+=($SERVER_PID)
for _ in $(seq 1 100); do grep -q listening "$RUN/serve.out" 2>/dev/null && break; sleep 0.1; done
S_PORT=$(grep -o 'ssh=[0-9.:]*' "$RUN/serve.out" | sed 's/.*://')
export GIT_SSH_COMMAND="ssh $SSHOPTS"
git -c init.defaultBranch=main clone -q "ssh://git@127.0.0.1:$S_PORT/admin.git" "$RUN/admin"
printf '%s\n' 'rules:' '  - name: mail-pushes' '    match: { source: git, type: push, repo: "bench-*" }' \
  '    targets:' '      - email: [team@example.com]' >"$RUN/admin/rules.yaml"
git -C "$RUN/admin" add rules.yaml
git -C "$RUN/admin" -c user.name=b -c user.email=b@b commit -qm rules
git -C "$RUN/admin" push -q origin main
$PY scripts/bench/events_load.py --mode slipway --url-base "ssh://git@127.0.0.1:$S_PORT/" \
  --ssh "ssh $SSHOPTS" --work "$RUN/work-slipway" --sink "$RUN/slipway-mail" \
  --db "$RUN/slipway/slipway.db" --sequential $SEQ --clients $CLIENTS --per-client $PER \
  >"$RUN/slipway.json"
SLIPWAY_RSS=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
if [ $ONLY = 1 ]; then
  $PY -m json.tool "$RUN/slipway.json"
  exit 0
fi

# ---- baseline: OpenSSH + git-shell + a mailing post-receive hook --------------------------
log "baseline: OpenSSH + git-shell + smtplib post-receive hook"
mkdir -p "$RUN/baseline-mail"
start_sink "$RUN/baseline-mail"
B_PORT=$(free_port)
mkdir -p "$RUN/openssh" "$RUN/repos" /run/sshd
printf 'command="git-shell -c \\"$SSH_ORIGINAL_COMMAND\\"",restrict %s\n' "$(cat "$RUN/keys/client.pub")" \
  >"$RUN/openssh/authorized_keys"
{
  echo "ListenAddress 127.0.0.1"
  echo "HostKey $RUN/keys/host"
  echo "PidFile $RUN/openssh/sshd.pid"
  echo "AuthorizedKeysFile $RUN/openssh/authorized_keys"
  echo "StrictModes no"
  echo "UsePAM no"
  echo "PermitRootLogin prohibit-password"
  echo "PasswordAuthentication no"
  echo "KbdInteractiveAuthentication no"
  echo "MaxStartups 100:30:200"
  # A dedicated git account has no pyenv-loading ~/.bashrc; SHLVL=1 skips root's.
  echo "SetEnv SHLVL=1 BENCH_SMTP_PORT=$SINK_PORT BENCH_HOOK_LOG=$RUN/hook.log"
  echo "PrintMotd no"
  echo "LogLevel ERROR"
} >"$RUN/openssh/sshd_config"
for name in bench-sequential-0 $(seq -f 'bench-concurrent-%g' 0 $((CLIENTS - 1))); do
  git init -q --bare -b main "$RUN/repos/$name.git"
  install -m 755 scripts/bench/baseline_post_receive.py "$RUN/repos/$name.git/hooks/post-receive"
done
touch "$RUN/hook.log"
/usr/sbin/sshd -D -e -f "$RUN/openssh/sshd_config" -p "$B_PORT" 2>"$RUN/sshd.err" &
PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$RUN/openssh/sshd.pid" ] && break; sleep 0.1; done
$PY scripts/bench/events_load.py --mode baseline --url-base "ssh://root@127.0.0.1:$B_PORT$RUN/repos/" \
  --ssh "ssh $SSHOPTS" --work "$RUN/work-baseline" --sink "$RUN/baseline-mail" \
  --hook-log "$RUN/hook.log" --sequential $SEQ --clients $CLIENTS --per-client $PER \
  >"$RUN/baseline.json"

# ---- report ------------------------------------------------------------------------------
$PY scripts/bench/events_report.py "$RUN/slipway.json" "$RUN/baseline.json" "$SLIPWAY_RSS"

#!/usr/bin/env bash
# bench-git.sh: slipway's git-over-SSH transport against the baseline a user would
# otherwise run, OpenSSH sshd + git-shell, both serving copies of the same generated
# repository on 127.0.0.1. Prints slipway/OpenSSH ratios. See docs/benchmarks.md.
#
#   scripts/bench-git.sh [--quick] [--work DIR] [--slipway BIN] [--tests LIST]
#
#   --quick        5,000 commits / ~20 MB repository and fewer runs (smoke run)
#   --work DIR     work directory (default $SLIPWAY_BENCH_DIR or /tmp/slipway-bench);
#                  generated repositories are cached there, results land in
#                  DIR/results/<timestamp>/ (DIR/results/latest points at the last one)
#   --slipway BIN  the slipway binary (default target/release/slipway, built with
#                  `cargo build --release` if missing); it is copied before use
#   --no-wait      measure at once even when other processes are busy on the machine
#                  (by default each measurement first waits, up to 5 minutes, for
#                  5 quiet seconds, i.e. other processes using <= 0.15 cores, and is
#                  repeated once if they used more while it ran; see
#                  bench/noise_monitor.py)
#   --x32-runs N   runs of the 32-concurrent-clone test (default 2, quick 1)
#   --tests LIST   comma-separated subset of
#                  clone,noop-fetch,incr-fetch,push,ls-remote,ls-remote-samekex,
#                  pack-stream,clone-x32,pack-stream-x32
#
# Everything binds 127.0.0.1 only. Every process the script starts is stopped by PID
# on exit. Exits non-zero if any step or any measured git command fails.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BENCH="$HERE/bench"
PY=/usr/bin/python3

QUICK=0
WORK=${SLIPWAY_BENCH_DIR:-/tmp/slipway-bench}
SLIPWAY_SRC=""
WAIT_QUIET=1
X32_RUNS=""
QUIET_MAX_WAIT=300
TESTS="clone,noop-fetch,incr-fetch,push,ls-remote,ls-remote-samekex,pack-stream,clone-x32,pack-stream-x32"
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --work) WORK=$2; shift ;;
    --slipway) SLIPWAY_SRC=$2; shift ;;
    --tests) TESTS=$2; shift ;;
    --no-wait) WAIT_QUIET=0 ;;
    --x32-runs) X32_RUNS=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    *) echo "bench-git.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

# ---- sizes and run counts -------------------------------------------------------------
SEED=20240601
EXTRA_COMMITS=100   # the incremental fetch brings this many new commits
PUSH_MIB=50
PARALLEL=32
if [ "$QUICK" = 1 ]; then
  COMMITS=5000; RANDOM_MB=15; MODE=quick
  R_CLONE=3; R_NOOP=10; R_INCR=5; R_PUSH=3; R_LS=15; R_STREAM=3; R_X32=1
else
  COMMITS=50000; RANDOM_MB=100; MODE=full
  R_CLONE=5; R_NOOP=20; R_INCR=10; R_PUSH=5; R_LS=30; R_STREAM=5; R_X32=2
fi
R_X32=${X32_RUNS:-$R_X32}

log() { printf '\n== %s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { echo "bench-git.sh: $*" >&2; exit 1; }
want_test() { case ",$TESTS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

# ---- process bookkeeping: everything started here is stopped here, by PID ------------
PIDS=()
stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
}
# A PID that was stopped or waited for is forgotten at once, so that cleanup never
# signals a number the kernel may have given to someone else's process since.
forget_pid() {
  local i
  for i in "${!PIDS[@]}"; do
    if [ "${PIDS[$i]}" = "$1" ]; then unset 'PIDS[i]'; fi
  done
}
cleanup() {
  local rc=$? i list
  trap - EXIT INT TERM
  list=("${PIDS[@]}")
  for ((i = ${#list[@]} - 1; i >= 0; i--)); do stop_pid "${list[$i]}"; done
  if [ -n "${RUN:-}" ] && [ -d "$RUN" ]; then rm -rf "$RUN"; fi
  if [ "$rc" != 0 ]; then echo "bench-git.sh: FAILED (exit $rc); logs in ${RES:-?}" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- tools ---------------------------------------------------------------------------
if ! command -v hyperfine >/dev/null || [ ! -x /usr/sbin/sshd ] || ! command -v git-shell >/dev/null; then
  log "installing openssh-server hyperfine"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server hyperfine git >/dev/null
fi
for t in git git-shell ssh ssh-keygen hyperfine "$PY"; do
  command -v "$t" >/dev/null || die "missing $t"
done
GIT_SHELL=$(command -v git-shell)

if [ -z "$SLIPWAY_SRC" ]; then
  SLIPWAY_SRC="$ROOT/target/release/slipway"
  if [ ! -x "$SLIPWAY_SRC" ]; then
    log "building slipway (cargo build --release)"
    (cd "$ROOT" && cargo build --release)
  fi
fi
[ -x "$SLIPWAY_SRC" ] || die "no slipway binary at $SLIPWAY_SRC"

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
STAMP=$(date +%Y%m%d-%H%M%S)
RES="$WORK/results/$STAMP-$MODE"
RUN="$WORK/run-$STAMP"      # servers, clients; removed on exit
mkdir -p "$RES" "$RUN"
ln -sfn "$RES" "$WORK/results/latest"

# Background CPU of everything that is not this benchmark, logged all along.
"$PY" "$BENCH/noise_monitor.py" --root $$ --out "$RES/noise.log" &
PIDS+=("$!")

# The client side: no user or system configuration, no automatic gc.
export GIT_CONFIG_NOSYSTEM=1
export GIT_CONFIG_GLOBAL="$RUN/client.gitconfig"
cat >"$GIT_CONFIG_GLOBAL" <<EOF
[user]
	name = bench
	email = bench@example.invalid
[gc]
	auto = 0
[maintenance]
	auto = false
[init]
	defaultBranch = main
[advice]
	detachedHead = false
EOF
export GIT_TERMINAL_PROMPT=0

# ---- the repository (cached) ---------------------------------------------------------
GEN_HASH=$(sha256sum "$BENCH/gen_repo.py" | cut -c1-12)
REPO="$WORK/repo-${COMMITS}c-${RANDOM_MB}m-s$SEED-$GEN_HASH"
if [ ! -f "$REPO/DONE" ]; then
  log "generating the repository: $COMMITS commits + $EXTRA_COMMITS, ${RANDOM_MB} MiB random blobs -> $REPO"
  rm -rf "$REPO"
  mkdir -p "$REPO"
  git init -q --bare "$REPO/base.git"
  git -C "$REPO/base.git" symbolic-ref HEAD refs/heads/main
  "$PY" "$BENCH/gen_repo.py" --commits "$COMMITS" --random-mb "$RANDOM_MB" --seed "$SEED" \
      --extra "$EXTRA_COMMITS" --extra-out "$REPO/extra.fi" |
    git -C "$REPO/base.git" fast-import --quiet
  # base.git: the history before the incremental fetch (what the fetching client has).
  git -C "$REPO/base.git" repack -a -d -f -q --write-bitmap-index
  git -C "$REPO/base.git" commit-graph write --reachable
  git -C "$REPO/base.git" pack-refs --all
  # served.git: base + EXTRA_COMMITS, packed as a server would keep it. Served by both.
  cp -a "$REPO/base.git" "$REPO/served.git"
  git -C "$REPO/served.git" fast-import --quiet <"$REPO/extra.fi"
  git -C "$REPO/served.git" repack -a -d -q --write-bitmap-index
  git -C "$REPO/served.git" commit-graph write --reachable
  git -C "$REPO/served.git" pack-refs --all
  git -C "$REPO/served.git" fsck --connectivity-only --no-progress
  touch "$REPO/DONE"
else
  log "using the cached repository $REPO"
fi
MAIN=$(git -C "$REPO/served.git" rev-parse refs/heads/main)
BASE_MAIN=$(git -C "$REPO/base.git" rev-parse refs/heads/main)
N_COMMITS=$(git -C "$REPO/served.git" rev-list --count "$MAIN")
PACK_BYTES=$(du -cb "$REPO"/served.git/objects/pack/*.pack | tail -1 | cut -f1)
N_OBJECTS=$(git -C "$REPO/served.git" count-objects -v | sed -n 's/^in-pack: //p')
[ "$(git -C "$REPO/served.git" rev-list --count "$BASE_MAIN..$MAIN")" = "$EXTRA_COMMITS" ] ||
  die "served.git is not base.git + $EXTRA_COMMITS commits"
echo "repository: $N_COMMITS commits, $N_OBJECTS objects, pack $((PACK_BYTES / 1048576)) MiB" >&2

# ---- keys ----------------------------------------------------------------------------
mkdir -p "$RUN/keys"
ssh-keygen -q -t ed25519 -N '' -C bench-client -f "$RUN/keys/client"
ssh-keygen -q -t ed25519 -N '' -C bench-sshd-host -f "$RUN/keys/sshd_host"
export GIT_SSH_COMMAND="ssh -F /dev/null -i $RUN/keys/client -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes"

# ---- slipway ------------------------------------------------------------------------
log "starting slipway"
SLIPWAY="$RUN/slipway"
cp "$SLIPWAY_SRC" "$SLIPWAY"   # a private copy: a rebuild during the run cannot swap it
SDATA="$RUN/slipway-data"
"$SLIPWAY" init --data "$SDATA" --admin-key "$RUN/keys/client.pub" --admin-name bench >"$RES/slipway-init.log" 2>&1 ||
  { cat "$RES/slipway-init.log" >&2; die "slipway init failed"; }
"$SLIPWAY" serve --data "$SDATA" --ssh-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  >"$RES/slipway.stdout" 2>"$RES/slipway.stderr" &
SLIPWAY_PID=$!
PIDS+=("$SLIPWAY_PID")
for _ in $(seq 1 300); do
  grep -q '^slipway: listening ssh=' "$RES/slipway.stdout" 2>/dev/null && break
  kill -0 "$SLIPWAY_PID" 2>/dev/null || { cat "$RES/slipway.stderr" >&2; die "slipway serve exited"; }
  sleep 0.1
done
LINE=$(grep '^slipway: listening ssh=' "$RES/slipway.stdout") || die "slipway did not report its address"
S_SSH=$(sed -n 's/.*ssh=\([^ ]*\).*/\1/p' <<<"$LINE")
S_HTTP=$(sed -n 's/.*http=\([^ ]*\).*/\1/p' <<<"$LINE")
S_PORT=${S_SSH##*:}
case $S_SSH in 127.0.0.1:*) ;; *) die "slipway listens on $S_SSH, not 127.0.0.1" ;; esac
echo "slipway pid $SLIPWAY_PID ssh=$S_SSH http=$S_HTTP" >&2

# ---- OpenSSH sshd + git-shell --------------------------------------------------------
log "starting OpenSSH sshd"
ODIR="$RUN/openssh"
mkdir -p "$ODIR" /run/sshd
O_PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'command="%s -c \\"$SSH_ORIGINAL_COMMAND\\"",restrict %s\n' "$GIT_SHELL" "$(cat "$RUN/keys/client.pub")" \
  >"$ODIR/authorized_keys"
cat >"$ODIR/sshd_config" <<EOF
# Private sshd for the benchmark: loopback only, one key, forced git-shell.
ListenAddress 127.0.0.1
HostKey $RUN/keys/sshd_host
PidFile $ODIR/sshd.pid
AuthorizedKeysFile $ODIR/authorized_keys
# The files live under /tmp, which StrictModes refuses.
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
# Git protocol v2 needs the client's GIT_PROTOCOL, as slipway accepts it.
AcceptEnv GIT_PROTOCOL
# The default 10:30:100 randomly drops connections beyond 10 unauthenticated at once;
# the 32-clone test needs 32 (slipway's own limit is 64).
MaxStartups 100:30:200
# sshd runs the forced command through the login shell (bash here), and Debian's bash
# sources ~/.bashrc for commands run by sshd unless SHLVL says it is nested. This host's
# root ~/.bashrc runs pyenv (~0.1 s), which a dedicated git account would not have.
SetEnv SHLVL=1
PrintMotd no
X11Forwarding no
LogLevel ERROR
EOF
/usr/sbin/sshd -t -f "$ODIR/sshd_config" -p "$O_PORT" || die "sshd rejects its configuration"
/usr/sbin/sshd -D -e -f "$ODIR/sshd_config" -p "$O_PORT" 2>"$RES/sshd.stderr" &
SSHD_PID=$!
PIDS+=("$SSHD_PID")
for _ in $(seq 1 100); do
  [ -s "$ODIR/sshd.pid" ] && break # written once it listens
  kill -0 "$SSHD_PID" 2>/dev/null || { cat "$RES/sshd.stderr" >&2; die "sshd exited"; }
  sleep 0.1
done
echo "sshd pid $SSHD_PID port $O_PORT" >&2

# ---- the served copies ---------------------------------------------------------------
S_REPO="$SDATA/repos/bench.git"
O_REPO="$ODIR/bench.git"
reset_server_repos() {
  rm -rf "$S_REPO" "$O_REPO"
  mkdir -p "$SDATA/repos"
  cp -a "$REPO/served.git" "$S_REPO"
  cp -a "$REPO/served.git" "$O_REPO"
}
reset_server_repos
declare -A URL TARGET PORT RPATH PIDOF COMM
URL[slipway]="ssh://git@127.0.0.1:$S_PORT/bench.git"
URL[openssh]="ssh://root@127.0.0.1:$O_PORT$O_REPO"
TARGET[slipway]="git@127.0.0.1"; TARGET[openssh]="root@127.0.0.1"
PORT[slipway]=$S_PORT; PORT[openssh]=$O_PORT
RPATH[slipway]="bench.git"; RPATH[openssh]="$O_REPO"
PIDOF[slipway]=$SLIPWAY_PID; PIDOF[openssh]=$SSHD_PID
COMM[slipway]=slipway; COMM[openssh]=sshd

for s in slipway openssh; do
  got=$(git ls-remote "${URL[$s]}" refs/heads/main | cut -f1) || die "$s: ls-remote failed"
  [ "$got" = "$MAIN" ] || die "$s: main is '$got', expected $MAIN"
done

# ---- metadata ------------------------------------------------------------------------
algos() {
  # shellcheck disable=SC2086
  printf 0000 | $GIT_SSH_COMMAND -v -p "${PORT[$1]}" "${TARGET[$1]}" "git-upload-pack '${RPATH[$1]}'" 2>&1 >/dev/null | tr -d '\r' |
    sed -n 's/^debug1: kex: algorithm: \(.*\)/kex \1,/p; s/^debug1: kex: server->client cipher: \([^ ]*\) .*/cipher \1/p' |
    tr '\n' ' '
}
ALGOS="slipway: $(algos slipway)| openssh: $(algos openssh)"
SLIPWAY_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$ROOT" status --porcelain -- src actors hooks Cargo.toml Cargo.lock 2>/dev/null)" ]; then
  SLIPWAY_REV="$SLIPWAY_REV+uncommitted-changes"
fi
SLIPWAY_REV="tree at $SLIPWAY_REV; binary $SLIPWAY_SRC built $(date -u -r "$SLIPWAY_SRC" '+%Y-%m-%d %H:%M UTC'), sha256 $(sha256sum "$SLIPWAY" | cut -c1-12)"
M_DATE=$(date -u '+%Y-%m-%d %H:%M UTC') M_MODE=$MODE \
M_REPO="$N_COMMITS commits, $N_OBJECTS objects, pack $((PACK_BYTES / 1048576)) MiB (seed $SEED, generator $GEN_HASH)" \
M_NPROC=$(nproc) M_UNAME=$(uname -sr) M_GIT="$(git --version) (client and both servers)" \
M_OPENSSH="$(ssh -V 2>&1), sshd from openssh-server $(dpkg-query -W -f='${Version}' openssh-server 2>/dev/null || echo '?')" \
M_SLIPWAY=$SLIPWAY_REV M_HYPERFINE=$(hyperfine --version) M_ALGOS=$ALGOS \
"$PY" - "$RES/meta.json" <<'EOF'
import json, os, sys
e = os.environ
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = int(next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")))
json.dump({
  "date": e["M_DATE"],
  "mode": e["M_MODE"],
  "repo": e["M_REPO"],
  "machine": f"{e['M_NPROC']} cores, {cpu}, {round(mem / 1048576)} GiB RAM, {e['M_UNAME']}",
  "git": e["M_GIT"],
  "openssh": e["M_OPENSSH"],
  "slipway": e["M_SLIPWAY"],
  "hyperfine": e["M_HYPERFINE"],
  "ssh_algorithms": " ".join(e["M_ALGOS"].split()),
}, open(sys.argv[1], "w"), indent=1)
EOF
cat "$RES/meta.json" >&2

# ---- measurement helpers -------------------------------------------------------------
CLI="$RUN/clients"
mkdir -p "$CLI"
: >"$RES/hyperfine.log"
# hf NAME SERVER [--sample PHASE] HYPERFINE-ARGS...: one measurement, exported to
# RES/NAME.SERVER.json. It first waits for a quiet machine (unless --no-wait); if other
# processes still used more than NOISY_CORES while it ran, it is measured once more.
# With --sample, the server's memory and CPU are sampled during the (last) attempt.
NOISY_CORES=0.15
hf() {
  local name=$1 server=$2 phase="" attempt bg
  shift 2
  if [ "${1:-}" = --sample ]; then phase=$2; shift 2; fi
  local best_bg="" best=0 attempt
  for attempt in 1 2; do
    wait_quiet
    if [ "$attempt" = 1 ]; then log "$name: $server"; else log "$name: $server (again: other processes disturbed the first attempt)"; fi
    [ -z "$phase" ] || start_sampler "$phase" "$server"
    local t0 t1 from rc=0 bg fg idle
    t0=$(date +%s.%N)
    from=$(($(wc -l <"$RES/hyperfine.log") + 1))
    # The parallel_*.sh scripts log each run's start and end here.
    export BENCH_RUNLOG="$RES/runs.$name.$server.try$attempt.tsv"
    rm -f "$BENCH_RUNLOG"
    # In the background and waited for, so that INT/TERM stop it at once (see cleanup).
    hyperfine --style basic --export-json "$RES/$name.$server.try$attempt.json" "$@" >>"$RES/hyperfine.log" 2>&1 &
    HF_PID=$!
    PIDS+=("$HF_PID")
    wait "$HF_PID" || rc=$?
    forget_pid "$HF_PID"
    t1=$(date +%s.%N)
    if [ -n "$phase" ]; then
      sleep 1 # let the server reap its last children before the sampler's final reading
      stop_samplers
      mv "$RES/mem.$phase.$server.json" "$RES/mem.$phase.$server.try$attempt.json"
    fi
    tail -n +"$from" "$RES/hyperfine.log" | grep -E 'Time|Range|Benchmark' >&2 || true
    [ "$rc" = 0 ] || die "$name on $server failed (see $RES/hyperfine.log)"
    sleep 0.6 # one more monitor interval
    bg=$("$PY" "$BENCH/noise_monitor.py" --summary "$RES/noise.log" "$t0" "$t1")
    read -r fg idle _ <<<"$bg"
    echo "  meanwhile: other processes used $fg cores (${bg#* * }), $idle cores idle" >&2
    if [ -f "$BENCH_RUNLOG" ]; then # per run: start end seconds other-cores idle-cores top
      while read -r a b; do
        echo "$a $b $("$PY" -c "print(f'{$b - $a:.3f}')") $("$PY" "$BENCH/noise_monitor.py" --summary "$RES/noise.log" "$a" "$b")"
      done <"$BENCH_RUNLOG" >"$BENCH_RUNLOG.tmp"
      mv "$BENCH_RUNLOG.tmp" "$BENCH_RUNLOG"
      sed 's/^[^ ]* [^ ]* /  run: /; s/$/ (seconds, other cores, idle cores, top)/' "$BENCH_RUNLOG" >&2
    fi
    unset BENCH_RUNLOG
    # Keep the attempt that other processes disturbed least.
    if [ -z "$best_bg" ] || "$PY" -c "import sys; sys.exit(not $fg < ${best_bg%% *})"; then
      best_bg=$bg best=$attempt
      printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$server" "$t0" "$t1" "$bg" >"$RES/.best-timeline"
    fi
    if [ "$WAIT_QUIET" = 0 ] || "$PY" -c "import sys; sys.exit(not $fg <= $NOISY_CORES)"; then
      break
    fi
  done
  cp "$RES/$name.$server.try$best.json" "$RES/$name.$server.json"
  [ -z "$phase" ] || cp "$RES/mem.$phase.$server.try$best.json" "$RES/mem.$phase.$server.json"
  [ ! -f "$RES/runs.$name.$server.try$best.tsv" ] || cp "$RES/runs.$name.$server.try$best.tsv" "$RES/runs.$name.$server.tsv"
  cat "$RES/.best-timeline" >>"$RES/timeline.tsv"
}
wait_quiet() {
  [ "$WAIT_QUIET" = 1 ] || return 0
  local waited=0
  until "$PY" "$BENCH/noise_monitor.py" --quiet "$RES/noise.log" 5 "$NOISY_CORES"; do
    if [ "$waited" -ge "$QUIET_MAX_WAIT" ]; then
      echo "bench-git.sh: machine still busy after ${QUIET_MAX_WAIT}s; measuring anyway (flagged)" >&2
      return 0
    fi
    if [ $((waited % 30)) = 0 ] && [ "$waited" -gt 0 ]; then
      echo "  waiting for other processes on the machine to calm down (${waited}s): $(tail -1 "$RES/noise.log" | cut -d' ' -f2-)" >&2
    fi
    sleep 1
    waited=$((waited + 1))
  done
}
# The servers are measured in alternating order from one test to the next.
ORDER="openssh slipway"
next_order() {
  if [ "$ORDER" = "openssh slipway" ]; then ORDER="slipway openssh"; else ORDER="openssh slipway"; fi
}
SAMPLERS=()
start_sampler() { # PHASE SERVER
  "$PY" "$BENCH/rss_sampler.py" --pid "${PIDOF[$2]}" --server-comm "${COMM[$2]}" \
    --out "$RES/mem.$1.$2.json" &
  SAMPLERS+=("$!")
  PIDS+=("$!")
}
stop_samplers() {
  local p
  for p in "${SAMPLERS[@]}"; do stop_pid "$p"; forget_pid "$p"; done
  SAMPLERS=()
}

log "idle memory (3 s)"
for s in slipway openssh; do start_sampler idle "$s"; done
sleep 3
stop_samplers

# ---- 1. full clone -------------------------------------------------------------------
if want_test clone; then
  next_order
  for s in $ORDER; do
    d="$CLI/clone-$s.git"
    hf clone "$s" --warmup 1 --runs "$R_CLONE" --prepare "rm -rf '$d'" \
      "git clone -q --mirror '${URL[$s]}' '$d'"
    [ "$(git -C "$d" rev-parse refs/heads/main)" = "$MAIN" ] || die "clone from $s is wrong"
    rm -rf "$d"
  done
fi

# ---- 2. no-op fetch ------------------------------------------------------------------
if want_test noop-fetch; then
  next_order
  for s in $ORDER; do
    d="$CLI/noop-$s.git"
    git clone -q --mirror "${URL[$s]}" "$d"
    hf noop-fetch "$s" --warmup 3 --runs "$R_NOOP" "git -C '$d' fetch -q origin"
    rm -rf "$d"
  done
fi

# ---- 3. incremental fetch ------------------------------------------------------------
if want_test incr-fetch; then
  next_order
  for s in $ORDER; do
    t="$CLI/incr-template-$s.git" d="$CLI/incr-$s.git"
    cp -a "$REPO/base.git" "$t"
    git -C "$t" remote add origin "${URL[$s]}"
    git -C "$t" config remote.origin.fetch '+refs/heads/*:refs/heads/*'
    hf incr-fetch "$s" --warmup 2 --runs "$R_INCR" --prepare "rm -rf '$d' && cp -a '$t' '$d'" \
      "git -C '$d' fetch -q origin"
    [ "$(git -C "$d" rev-parse refs/heads/main)" = "$MAIN" ] || die "incremental fetch from $s is wrong"
    [ "$(git -C "$d" rev-list --count "$MAIN")" = "$N_COMMITS" ] || die "incremental fetch from $s: history incomplete"
    rm -rf "$t" "$d"
  done
fi

# ---- 4. push of 50 MiB ---------------------------------------------------------------
if want_test push; then
  next_order
  for s in $ORDER; do
    d="$CLI/push-$s.git"
    git clone -q --bare "$REPO/served.git" "$d"
    hf push "$s" --warmup 1 --runs "$R_PUSH" \
      --prepare "'$BENCH/push_prepare.sh' '$d' '${URL[$s]}' '$CLI/push-$s.sha' $PUSH_MIB" \
      "git -C '$d' push -q '${URL[$s]}' \$(cat '$CLI/push-$s.sha'):refs/heads/bench-push"
    got=$(git ls-remote "${URL[$s]}" refs/heads/bench-push | cut -f1)
    [ "$got" = "$(cat "$CLI/push-$s.sha")" ] || die "push to $s did not land"
    git -C "$d" push -q "${URL[$s]}" :refs/heads/bench-push
    rm -rf "$d"
  done
  reset_server_repos # drop the pushed objects
fi

# ---- 5. ls-remote --------------------------------------------------------------------
if want_test ls-remote; then
  next_order
  for s in $ORDER; do
    hf ls-remote "$s" --warmup 5 --runs "$R_LS" "git ls-remote '${URL[$s]}' >/dev/null"
  done
fi

# ---- supplementary: ls-remote with OpenSSH held to slipway's key exchange ------------
# OpenSSH 9.2 prefers sntrup761x25519 (post-quantum, slow to compute); slipway offers
# curve25519. This run makes both use the key exchange slipway negotiates.
if want_test ls-remote-samekex; then
  SLIPWAY_KEX=$(sed -n 's/.*slipway: kex \([^,]*\),.*/\1/p' <<<"$ALGOS")
  [ -n "$SLIPWAY_KEX" ] || die "could not tell slipway's key exchange from: $ALGOS"
  next_order
  for s in $ORDER; do
    GIT_SSH_COMMAND="$GIT_SSH_COMMAND -o KexAlgorithms=$SLIPWAY_KEX" \
      hf ls-remote-samekex "$s" --warmup 5 --runs "$R_LS" "git ls-remote '${URL[$s]}' >/dev/null"
  done
fi

# ---- supplementary: the pack stream alone --------------------------------------------
if want_test pack-stream; then
  next_order
  for s in $ORDER; do
    hf pack-stream "$s" --warmup 1 --runs "$R_STREAM" \
      "'$BENCH/pack_stream.sh' '${TARGET[$s]}' ${PORT[$s]} '${RPATH[$s]}' $MAIN $((PACK_BYTES * 9 / 10))"
  done
fi

# ---- 6. 32 concurrent clones, with memory --------------------------------------------
if want_test clone-x32; then
  next_order
  for s in $ORDER; do
    d="$CLI/x32-$s"
    hf clone-x32 "$s" --sample x32 --runs "$R_X32" --prepare "rm -rf '$d'" \
      "'$BENCH/parallel_clone.sh' '${URL[$s]}' $PARALLEL '$d'"
    for i in $(seq 1 "$PARALLEL"); do
      [ "$(git -C "$d/c$i.git" rev-parse refs/heads/main)" = "$MAIN" ] || die "parallel clone $i from $s is wrong"
    done
    rm -rf "$d"
  done
fi

# ---- supplementary: 32 concurrent pack streams (no client indexing), with memory -------
if want_test pack-stream-x32; then
  next_order
  for s in $ORDER; do
    hf pack-stream-x32 "$s" --sample x32s --warmup 1 --runs "$R_STREAM" \
      "'$BENCH/parallel_stream.sh' $PARALLEL '${TARGET[$s]}' ${PORT[$s]} '${RPATH[$s]}' $MAIN $((PACK_BYTES * 9 / 10))"
  done
fi

log "idle memory after the tests (3 s)"
sleep 2
for s in slipway openssh; do start_sampler idle-after "$s"; done
sleep 3
stop_samplers

# ---- server-side sanity --------------------------------------------------------------
"$PY" - "http://$S_HTTP/metrics" "$RES/slipway-metrics.txt" <<'EOF'
import sys, urllib.request
body = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
open(sys.argv[2], "w").write(body)
bad = [l for l in body.splitlines() if l.startswith("slipway_git_operations_total") and 'failed' in l and not l.rstrip().endswith(" 0")]
if bad:
    sys.exit("slipway reports failed git operations:\n" + "\n".join(bad))
EOF
if grep -qiE 'error|panic' "$RES/slipway.stderr"; then
  echo "note: slipway.stderr has error lines:" >&2
  grep -iE 'error|panic' "$RES/slipway.stderr" | head -5 >&2
fi

"$PY" "$BENCH/report.py" "$RES" | tee "$RES/summary.txt"
echo
echo "results: $RES"

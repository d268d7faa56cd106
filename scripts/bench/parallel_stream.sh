#!/usr/bin/env bash
# parallel_stream.sh N USER@HOST PORT REMOTE_PATH WANT MIN_BYTES: N concurrent
# pack_stream.sh runs (full pack to a byte counter, no client index-pack); fails if any
# failed. The server side of N concurrent clones without the clients' indexing work.
set -euo pipefail
n=$1
shift
here=$(dirname "${BASH_SOURCE[0]}")
start=$(date +%s.%N)
pids=()
for _ in $(seq 1 "$n"); do
  "$here/pack_stream.sh" "$@" &
  pids+=("$!")
done
rc=0
for p in "${pids[@]}"; do
  wait "$p" || rc=1
done
# bench-git.sh reads the run's start and end to tell which runs were disturbed.
if [ -n "${BENCH_RUNLOG:-}" ]; then echo "$start $(date +%s.%N)" >>"$BENCH_RUNLOG"; fi
exit "$rc"

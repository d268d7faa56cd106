#!/usr/bin/env bash
# parallel_clone.sh URL N DEST: N concurrent `git clone --mirror URL` into DEST/cI.git;
# waits for all of them and fails if any failed. Used by bench-git.sh (timed by hyperfine).
set -euo pipefail
url=$1 n=$2 dest=$3
mkdir -p "$dest"
start=$(date +%s.%N)
pids=()
for i in $(seq 1 "$n"); do
  git clone -q --mirror "$url" "$dest/c$i.git" &
  pids+=("$!")
done
rc=0
for p in "${pids[@]}"; do
  wait "$p" || rc=1
done
# bench-git.sh reads the run's start and end to tell which runs were disturbed.
if [ -n "${BENCH_RUNLOG:-}" ]; then echo "$start $(date +%s.%N)" >>"$BENCH_RUNLOG"; fi
exit "$rc"

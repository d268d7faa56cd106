#!/usr/bin/env bash
# push_prepare.sh CLIENT_REPO URL SHA_FILE MIB: untimed preparation of one push run.
# Deletes refs/heads/bench-push on the server (left by the previous run), then makes a
# fresh commit on top of main holding MIB MiB of new random data and writes its id
# to SHA_FILE. Fresh data every run, so the server never already has the blob.
set -euo pipefail
repo=$1 url=$2 sha_file=$3 mib=$4
if git ls-remote --exit-code "$url" refs/heads/bench-push >/dev/null 2>&1; then
  git -C "$repo" push -q "$url" :refs/heads/bench-push
fi
blob=$(head -c $((mib * 1024 * 1024)) /dev/urandom | git -C "$repo" hash-object -w --stdin)
tree=$(printf '100644 blob %s\tpayload.bin\n' "$blob" | git -C "$repo" mktree)
commit=$(git -C "$repo" commit-tree -p refs/heads/main -m "bench push $(date +%s%N)" "$tree")
echo "$commit" >"$sha_file"

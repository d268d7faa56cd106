#!/usr/bin/env bash
# pack_stream.sh USER@HOST PORT REMOTE_PATH WANT MIN_BYTES
# Asks git-upload-pack (protocol v2) over ssh for the full pack of WANT and counts the
# bytes instead of indexing them: the transport and server side of a clone without the
# client's index-pack. Fails if fewer than MIN_BYTES arrive. Uses $GIT_SSH_COMMAND.
set -euo pipefail
target=$1 port=$2 path=$3 want=$4 min=$5
pkt() { printf '%04x%s' $((${#1} + 4)) "$1"; }
request() {
  pkt $'command=fetch\n'
  printf '0001'
  pkt $'ofs-delta\n'
  pkt $'no-progress\n'
  pkt "want $want"$'\n'
  pkt $'done\n'
  printf '0000'
}
# shellcheck disable=SC2086 # GIT_SSH_COMMAND is a command line with options
bytes=$(request | GIT_PROTOCOL=version=2 $GIT_SSH_COMMAND -o SendEnv=GIT_PROTOCOL -p "$port" "$target" "git-upload-pack '$path'" | wc -c)
if [ "$bytes" -lt "$min" ]; then
  echo "pack_stream.sh: only $bytes bytes (expected >= $min)" >&2
  exit 1
fi

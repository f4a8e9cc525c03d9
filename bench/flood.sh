#!/usr/bin/env bash
# Room isolation under flood: join latency of a fresh client while FLOODERS sockets send
# maximum-size messages at the rate limit. Prints a markdown table (the one in README).
# Usage: bench/flood.sh [BEFORE_BIN]   (BEFORE_BIN: an older `callsight` to compare with)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/callsight-target}
PROFILE=${PROFILE:-dev}
FLOODERS=${FLOODERS:-200}
PROBES=${PROBES:-40}
# Extra flags for this build's server, e.g. SERVER_FLAGS="--max-outbox-bytes 67108864"
# to keep slow flooders connected as the old 1024-frame queue did.
SERVER_FLAGS=${SERVER_FLAGS:-}
LABEL=${LABEL:-this build}

cargo build --profile "$PROFILE" --workspace --bins >&2
bin="$CARGO_TARGET_DIR/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"
ulimit -n 65536 2>/dev/null || true

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null || true' EXIT
run() { # label server-binary flooders [header]
  local label=$1 server=$2 flooders=$3 header=${4:-} port extra=()
  port=$(free_port)
  # All flooders come from 127.0.0.1: lift the per-address cap where the server has one.
  if "$server" --help | grep -q -- --max-connections-per-ip; then extra=(--max-connections-per-ip 0 $SERVER_FLAGS); fi
  "$server" --bind "127.0.0.1:$port" --no-stun --no-media "${extra[@]}" 2>/dev/null &
  pid=$!
  wait_port "$port"
  "$bin/callsight-flood" --server "127.0.0.1:$port" --flooders "$flooders" --probes "$PROBES" --label "$label" $header
  kill "$pid"; wait "$pid" 2>/dev/null || true
  pid=
}

header=--header
if [ $# -gt 0 ]; then
  run "before (global lock)" "$1" 0 $header; header=
  run "before (global lock)" "$1" "$FLOODERS"
fi
run "$LABEL" "$bin/callsight" 0 $header
run "$LABEL" "$bin/callsight" "$FLOODERS"

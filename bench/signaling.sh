#!/usr/bin/env bash
# Signaling load benchmark: callsight vs the classic socket.io baseline, same client,
# same machine, one run. Prints a markdown table (the one in README).
# Usage: bench/signaling.sh [PEERS...]   (default: 200 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/callsight-target}
PROFILE=${PROFILE:-release}
if [ $# -gt 0 ]; then PEERS=("$@"); else PEERS=(200 1000); fi
RATE=${RATE:-20}
DURATION=${DURATION:-10}

cargo build --profile "$PROFILE" --workspace --bins >&2
bin="$CARGO_TARGET_DIR/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"
(cd bench/baseline && [ -d node_modules ] || npm ci --silent --no-audit --no-fund >&2)
ulimit -n 65536 2>/dev/null || true

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

header=--header
for n in "${PEERS[@]}"; do
  port=$(free_port)
  "$bin/callsight" --bind "127.0.0.1:$port" --no-stun --rate-per-sec 1000 --rate-burst 1000 --max-connections-per-ip 0 2>/dev/null &
  pid=$!
  wait_port "$port"
  "$bin/callsight-load" --server "127.0.0.1:$port" --protocol callsight --peers "$n" --rate "$RATE" \
    --duration "$DURATION" --server-pid "$pid" --label "callsight (Rust)" $header
  header=
  kill "$pid"; wait "$pid" 2>/dev/null || true

  port=$(free_port)
  node bench/baseline/server.js "$port" >/dev/null &
  pid=$!
  wait_port "$port"
  "$bin/callsight-load" --server "127.0.0.1:$port" --protocol socketio --peers "$n" --rate "$RATE" \
    --duration "$DURATION" --server-pid "$pid" --label "socket.io baseline (Node)"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done

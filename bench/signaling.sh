#!/usr/bin/env bash
# Signaling load benchmark: callsight vs the classic socket.io baseline, same client,
# same machine, one run. Prints a markdown table (the one in README).
# Usage: bench/signaling.sh [PEERS...]   (default: 200 1000)
#        NODES="1 2 3" bench/signaling.sh [PEERS...]: instead, callsight alone vs 1, 2, 3
#        nodes sharing rooms through one redis-server (each room's two peers on two
#        different nodes when there are several, so every relay crosses Redis).
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

if [ -n "${NODES:-}" ]; then
  rport=$(free_port)
  redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
  rpid=$!
  trap 'kill $rpid 2>/dev/null || true' EXIT
  wait_port "$rport"
  header=--header
  for n in "${PEERS[@]}"; do
    for k in 0 $NODES; do
      pids=(); servers=()
      for _ in $(seq "$(( k == 0 ? 1 : k ))"); do
        port=$(free_port)
        redis_flag=(); [ "$k" -gt 0 ] && redis_flag=(--redis "redis://127.0.0.1:$rport/")
        "$bin/callsight" --bind "127.0.0.1:$port" --no-stun --no-media --rate-per-sec 1000 --rate-burst 1000 \
          --max-connections-per-ip 0 "${redis_flag[@]}" 2>/dev/null &
        pids+=($!); servers+=("127.0.0.1:$port")
        wait_port "$port"
        if [ "$k" -gt 0 ]; then
          for _ in $(seq 100); do curl -s "http://127.0.0.1:$port/healthz" | grep -q '"up":true' && break; sleep 0.1; done
        fi
      done
      label="1 node, no Redis"; [ "$k" -gt 0 ] && label="$k node(s), Redis"
      "$bin/callsight-load" --server "$(IFS=,; echo "${servers[*]}")" --protocol callsight --peers "$n" --rate "$RATE" \
        --duration "$DURATION" --server-pid "${pids[0]}" --label "$label" $header
      header=
      kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
    done
  done
  exit 0
fi

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

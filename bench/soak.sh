#!/usr/bin/env bash
# Soak run: one release server on loopback, ROOMS rooms × 2 real callers relaying signals
# plus a hostile mix (half-open requests, never-joining sockets, garbage and oversized
# frames, identity hijacks, join/publish/leave churn, junk UDP at STUN) for DURATION
# seconds. Prints a table sampled every SAMPLE seconds (server RSS, relayed msg/s, p99,
# caller errors, hostile connections, hijacks) and exits non-zero on any caller error or
# successful hijack. Loopback only; bounded in count and time.
# Usage: bench/soak.sh            (defaults: ROOMS=50 HOSTILE=10 DURATION=1800 SAMPLE=60)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/callsight-target}
PROFILE=${PROFILE:-release}
ROOMS=${ROOMS:-50}
HOSTILE=${HOSTILE:-10}
DURATION=${DURATION:-1800}
SAMPLE=${SAMPLE:-60}

cargo build --profile "$PROFILE" --workspace --bins >&2
bin="$CARGO_TARGET_DIR/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"
ulimit -n 65536 2>/dev/null || true

free_port() { python3 -c 'import socket, sys; s=socket.socket(socket.AF_INET, getattr(socket, sys.argv[1])); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"; }
port=$(free_port SOCK_STREAM)
stun=$(free_port SOCK_DGRAM)
"$bin/callsight" --bind "127.0.0.1:$port" --stun-port "$stun" --no-media 2>"${TMPDIR:-/tmp}/callsight-soak-server.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

"$bin/callsight-soak" --server "127.0.0.1:$port" --stun-port "$stun" --rooms "$ROOMS" \
  --hostile "$HOSTILE" --duration "$DURATION" --sample "$SAMPLE" --server-pid "$pid"

#!/usr/bin/env bash
# SFU forwarding benchmark: Callsight's media hub vs Janus's VideoRoom (Debian package
# `janus`), the same str0m load (rooms of N participants, each publishing one synthetic
# 640×480@30 H.264 stream and receiving all the others), one after the other in one run.
# Prints both tables (the ones in README).
# Usage: bench/sfu.sh [ROOM SIZES]   (default: 2,4,8,16)
#        SECONDS_PER_ROOM=8 PROFILE=dev|release
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/callsight-target}
PROFILE=${PROFILE:-release}
ROOMS=${1:-2,4,8,16}
SECS=${SECONDS_PER_ROOM:-8}
command -v janus >/dev/null || { echo "bench/sfu.sh: needs Janus (apt-get install janus)" >&2; exit 2; }

cargo build --profile "$PROFILE" --workspace --features callsight-media/testing --bin sfu-load --bin janus-load >&2
bin="$CARGO_TARGET_DIR/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"
echo "## Callsight (hub thread CPU), $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin/sfu-load" --rooms "$ROOMS" --seconds "$SECS"
echo
echo "## Janus $(dpkg-query -W -f '${Version}' janus 2>/dev/null) VideoRoom (whole process CPU), $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin/janus-load" --rooms "$ROOMS" --seconds "$SECS"

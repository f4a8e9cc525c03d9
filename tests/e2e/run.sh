#!/usr/bin/env bash
# Browser end-to-end tests: headless Chromium (Debian package) + playwright-core,
# run by Node's built-in test runner against the real `callsight` binary.
#
#   tests/e2e/run.sh                 all tests
#   tests/e2e/run.sh call.test.js    one file
#   tests/e2e/run.sh --test-name-pattern=glare
#
# Env: CALLSIGHT_BIN (default $CARGO_TARGET_DIR/debug/callsight), CHROMIUM_BIN
# (default /usr/bin/chromium), CALLSIGHT_TEST_DATA (default <repo>/test-data),
# E2E_SERVER_LOGS=1 to stream the server's log. Screenshots go to artifacts/e2e/.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
export CALLSIGHT_BIN="${CALLSIGHT_BIN:-${CARGO_TARGET_DIR:-/root/.cache/callsight-target}/debug/callsight}"
if [[ ! -x "$CALLSIGHT_BIN" ]]; then
  echo "e2e: no server binary at $CALLSIGHT_BIN (cargo build -p callsight-server, or set CALLSIGHT_BIN)" >&2
  exit 1
fi
if [[ ! -d node_modules/playwright-core ]]; then
  npm ci --no-audit --no-fund
fi
# The client has no build step: at least every module must parse.
for f in ../../web/*.js; do node --check "$f"; done
# Options (e.g. --test-name-pattern=glare) pass through; without a file, all files.
files=0
for a in "$@"; do [[ "$a" == *.js ]] && files=1; done
if [[ $files -eq 0 ]]; then
  set -- "$@" *.test.js
fi
# One test at a time: each starts its own server and browser, and the machine is small.
exec node --test --test-concurrency=1 "$@"

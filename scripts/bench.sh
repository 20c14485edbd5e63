#!/usr/bin/env bash
# Benchmarks: prints latency percentiles and memory. No pass/fail thresholds:
# these machines are noisy, so compare medians and ratios between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
(cd tests/opencode && [ -d node_modules ] || npm install --no-audit --no-fund --loglevel=error)
(cd opencode-plugin && [ -d node_modules ] || npm install --no-audit --no-fund --loglevel=error)
bin="${CARGO_TARGET_DIR:-$PWD/target}/release/opencode-mattermost"
echo "agent binary: $(stat -c %s "$bin") bytes, $(du -h "$bin" | cut -f1) ($bin)"
OPENCODE_MATTERMOST_BIN="$bin" XDG_STATE_HOME="$(mktemp -d)" OPENCODE_MM_LOG=warn \
  tests/opencode/node_modules/.bin/bun run tests/shim/bench.ts

echo
echo "Mattermost link on loopback against the simulator (release):"
cargo test --release --quiet --test bench_link -- --ignored --nocapture 2>&1 | grep -v -E "^(running|test result|$)|^test "

echo
echo "Remote-control loop (real OpenCode, scripted model, simulator; release):"
cargo test --release --quiet --test bench_bridge -- --ignored --nocapture 2>&1 | grep -v -E "^(running|test result|$)|^test "

echo
echo "Bursts of new sessions and a long reply, limiter off and at Mattermost's defaults (release):"
cargo test --release --quiet --test bench_burst -- --ignored --nocapture 2>&1 | grep -v -E "^(running|test result|$)|^test "

echo
echo "State store, SQLite and PostgreSQL (release; PostgreSQL when OPENCODE_MM_TEST_DATABASE_URL is set):"
cargo test --release --quiet --test bench_store -- --ignored --nocapture 2>&1 | grep -v -E "^(running|test result|$)|^test "

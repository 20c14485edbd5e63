#!/usr/bin/env bash
# Runs the conformance test: the official @mattermost/client against the
# simulator binary. Exits non-zero on any failure.
#
#   bash tests/mattermost-sim/conformance/run.sh
#
# MM_SIM_BIN: use this simulator binary instead of building one with cargo
# (cargo honours the caller's CARGO_TARGET_DIR).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"

if [ ! -d "$here/node_modules/@mattermost/client" ]; then
    (cd "$here" && npm ci --no-audit --no-fund)
fi

bin="${MM_SIM_BIN:-}"
if [ -z "$bin" ]; then
    (cd "$repo" && cargo build --quiet -p mattermost-sim --bin mattermost-sim)
    target="${CARGO_TARGET_DIR:-$repo/target}"
    bin="$target/debug/mattermost-sim"
fi
if [ ! -x "$bin" ]; then
    echo "run.sh: simulator binary not found at $bin" >&2
    exit 1
fi

workdir="$(mktemp -d)"
sim_pid=""
cleanup() {
    if [ -n "$sim_pid" ]; then
        kill "$sim_pid" 2>/dev/null || true
        wait "$sim_pid" 2>/dev/null || true
    fi
    rm -rf "$workdir"
}
trap cleanup EXIT

# Port 0: the simulator picks a free port and reports it in its JSON line.
"$bin" --port 0 >"$workdir/seed.json" 2>"$workdir/sim.log" &
sim_pid=$!

for _ in $(seq 1 100); do
    if [ -s "$workdir/seed.json" ]; then
        break
    fi
    if ! kill -0 "$sim_pid" 2>/dev/null; then
        echo "run.sh: simulator exited early:" >&2
        cat "$workdir/sim.log" >&2
        exit 1
    fi
    sleep 0.1
done
if [ ! -s "$workdir/seed.json" ]; then
    echo "run.sh: simulator did not print its seed line within 10 s" >&2
    exit 1
fi

export MM_SIM_SEED="$(head -n 1 "$workdir/seed.json")"
cd "$here"
node --test --test-reporter=spec client.test.js

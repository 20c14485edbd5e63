#!/usr/bin/env bash
# Everything CI runs: formatting, lints, the contract check, unit, integration
# and end-to-end tests (real OpenCode, the shim under Bun, the Mattermost
# simulator with the official JS client). Installs its npm packages itself.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

step "npm packages (pinned OpenCode and Bun; the shim's dependency)"
(cd tests/opencode && npm install --no-audit --no-fund --loglevel=error)
(cd opencode-plugin && npm install --no-audit --no-fund --loglevel=error)

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tool contract (tools/) is current"
cargo run --quiet --locked -- tools check tools

step "cargo test (unit, integration, end to end with real OpenCode)"
cargo test --workspace --locked

step "shim tests under Bun, against the agent binary"
OPENCODE_MATTERMOST_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/opencode-mattermost" XDG_STATE_HOME="$(mktemp -d)" \
  tests/opencode/node_modules/.bin/bun test tests/shim

if [ -x tests/mattermost-sim/conformance/run.sh ] || [ -f tests/mattermost-sim/conformance/run.sh ]; then
  step "Mattermost simulator conformance with the official @mattermost/client"
  bash tests/mattermost-sim/conformance/run.sh
fi

step "all tests passed"

#!/usr/bin/env bash
# Try opencode-mattermost without a Mattermost server: a simulator, real
# OpenCode with the plugin and a scripted model (or your own model with
# --own-model) run on this machine; type as a Mattermost user and watch the
# bot's reply stream back.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v npm >/dev/null || { echo "demo: npm is needed (Node.js 20 or newer)" >&2; exit 1; }
for dir in tests/opencode opencode-plugin; do
  [ -d "$dir/node_modules" ] || (cd "$dir" && npm install --no-audit --no-fund --loglevel=error)
done
cargo build -q --bin opencode-mattermost
cargo build -q -p harness --bin demo
target="${CARGO_TARGET_DIR:-target}"
export OPENCODE_MATTERMOST_BIN="$PWD/$target/debug/opencode-mattermost"
[ -x "$OPENCODE_MATTERMOST_BIN" ] || OPENCODE_MATTERMOST_BIN="$target/debug/opencode-mattermost"
exec "$target/debug/demo" "$@"

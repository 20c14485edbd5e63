#!/usr/bin/env bash
# Everything CI runs: formatting, lints, the contract check, unit, integration
# and end-to-end tests (real OpenCode, the shim under Bun, the Mattermost
# simulator with the official JS client, the npm install path through a
# loopback registry). Installs its npm packages itself.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

step "npm packages (pinned OpenCode and Bun; the shim's dependency; verdaccio for the install test)"
(cd tests/opencode && npm install --no-audit --no-fund --loglevel=error)
# Without the optional prebuilt agents: the tests name the agent they built.
(cd opencode-plugin && npm install --omit=optional --no-audit --no-fund --loglevel=error)
(cd tests/registry && npm install --no-audit --no-fund --loglevel=error)

step "versions agree (Cargo, plugin, platform packages)"
scripts/version.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tool contract (tools/) is current"
cargo run --quiet --locked -- tools check tools

step "PostgreSQL for the store's contract tests"
# The store's behaviour is tested on SQLite and on a real PostgreSQL server.
# In CI (CI=true) a server that does not answer fails the run; elsewhere the
# PostgreSQL half is skipped with a note.
pg_url="${OPENCODE_MM_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
pg_answers() {
  if command -v psql >/dev/null; then
    psql "$pg_url" -Atqc 'select 1' >/dev/null 2>&1
  elif command -v pg_isready >/dev/null; then
    pg_isready -q -d "$pg_url"
  else
    return 1
  fi
}
pg_ok=false
for _ in $(seq 1 10); do
  if pg_answers; then pg_ok=true; break; fi
  sleep 1
done
if $pg_ok; then
  export OPENCODE_MM_TEST_DATABASE_URL="$pg_url"
  echo "PostgreSQL answers at ${pg_url%%\?*}"
elif [ "${CI:-}" = "true" ]; then
  echo "error: PostgreSQL does not answer at $pg_url (psql/pg_isready); the store's" \
    "PostgreSQL tests cannot run. Start the server or set OPENCODE_MM_TEST_DATABASE_URL." >&2
  exit 1
else
  echo "warning: PostgreSQL does not answer at $pg_url; its store tests are skipped" >&2
  unset OPENCODE_MM_TEST_DATABASE_URL
fi

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

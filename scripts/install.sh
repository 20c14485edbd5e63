#!/usr/bin/env bash
# Install opencode-mattermost from source: build the agent, install it, install
# the plugin shim with its one dependency, and register the shim with OpenCode.
# (Without a Rust toolchain, name the npm package in opencode.json instead; see
# the README.)
#
#   scripts/install.sh              # global: every OpenCode project loads it
#   scripts/install.sh --no-global  # only install; add the plugin line yourself
#
# PREFIX (default ~/.local) receives bin/opencode-mattermost; the shim goes to
# $XDG_DATA_HOME/opencode-mattermost/plugin (default ~/.local/share/...).
set -euo pipefail
cd "$(dirname "$0")/.."
global=1
for arg in "$@"; do
  case "$arg" in
    --no-global) global=0 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown option: $arg" >&2; exit 2 ;;
  esac
done

prefix="${PREFIX:-$HOME/.local}"
data="${XDG_DATA_HOME:-$HOME/.local/share}/opencode-mattermost"
config="${XDG_CONFIG_HOME:-$HOME/.config}/opencode"

command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm is required to install the shim's dependency" >&2; exit 1; }

echo "building the agent (release)…"
cargo build --release --locked --quiet
install -d "$prefix/bin"
install -m 0755 target/release/opencode-mattermost "$prefix/bin/opencode-mattermost"
echo "installed $prefix/bin/opencode-mattermost"

plugin="$data/plugin"
install -d "$plugin/tools"
install -m 0644 opencode-plugin/index.ts opencode-plugin/agent.js opencode-plugin/package.json opencode-plugin/package-lock.json "$plugin/"
install -m 0644 tools/*.json "$plugin/tools/"
printf '{"bin": "%s"}\n' "$prefix/bin/opencode-mattermost" > "$plugin/agent.json"
# No optional dependencies: they are the prebuilt agents, which the shim would
# prefer to the one just built.
(cd "$plugin" && npm install --omit=dev --omit=optional --no-audit --no-fund --loglevel=error)
echo "installed the plugin shim in $plugin"

if [ "$global" = 1 ]; then
  install -d "$config/plugin"
  printf 'export { OpencodeMattermost } from "%s/index.ts"\n' "$plugin" > "$config/plugin/opencode-mattermost.ts"
  echo "registered with OpenCode: $config/plugin/opencode-mattermost.ts"
else
  echo "add to your opencode.json:  \"plugin\": [\"file://$plugin/index.ts\"]"
fi
echo "next: set MATTERMOST_URL, MATTERMOST_TOKEN and MATTERMOST_OWNER_USER_ID (see README), then ask OpenCode to run mattermost_status"

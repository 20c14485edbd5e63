#!/usr/bin/env bash
# Pack the npm packages with `npm pack`: the plugin `opencode-mattermost` (the
# shim, the tool contract, the README) and one `opencode-mattermost-<platform>`
# per prebuilt agent. Only a platform whose agent is at hand is packed: a
# platform package without its binary would install nothing that runs.
#
#   scripts/package.sh                          build this machine's agent (release) and pack
#   scripts/package.sh --agent PLATFORM=PATH    pack PATH as PLATFORM's agent (repeatable; no build
#                                               for a platform given this way)
#   scripts/package.sh --all                    fail unless every platform got an agent (releases)
#   scripts/package.sh --out DIR                where the tarballs go (default dist/npm)
#
# PLATFORM is one of the npm/ package suffixes: linux-x64, linux-arm64,
# darwin-arm64, darwin-x64. The other platforms' agents are cross-compiled by
# .github/workflows/release.yml.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

out="dist/npm"
all=0
declare -A agents=()
while [ $# -gt 0 ]; do
  case "$1" in
    --agent)
      [ $# -ge 2 ] || { echo "--agent needs PLATFORM=PATH" >&2; exit 2; }
      spec="$2"; shift 2
      platform="${spec%%=*}"; path="${spec#*=}"
      if [ "$platform" = "$spec" ] || [ -z "$path" ]; then echo "--agent needs PLATFORM=PATH, got '$spec'" >&2; exit 2; fi
      [[ "$platform" =~ ^[a-z0-9]+-[a-z0-9]+$ ]] && [ -f "npm/opencode-mattermost-$platform/package.json" ] || {
        echo "unknown platform '$platform'; known: $(ls npm | sed 's/^opencode-mattermost-//' | tr '\n' ' ')" >&2; exit 2; }
      [ -f "$path" ] && [ -x "$path" ] || { echo "agent for $platform is not an executable file: $path" >&2; exit 2; }
      agents[$platform]="$(cd "$(dirname "$path")" && pwd)/$(basename "$path")"
      ;;
    --all) all=1; shift ;;
    --out)
      [ $# -ge 2 ] || { echo "--out needs a directory" >&2; exit 2; }
      out="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done

command -v npm >/dev/null || { echo "npm is required" >&2; exit 1; }
version=$(scripts/version.sh)

# This machine's platform in npm's words (process.platform-process.arch).
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) host=linux-x64 ;;
  Linux-aarch64|Linux-arm64) host=linux-arm64 ;;
  Darwin-arm64) host=darwin-arm64 ;;
  Darwin-x86_64) host=darwin-x64 ;;
  *) host="" ;;
esac

if [ ${#agents[@]} -eq 0 ]; then
  [ -n "$host" ] || { echo "no prebuilt platform for $(uname -s)-$(uname -m); pass --agent" >&2; exit 1; }
  echo "building the agent for $host (release)…"
  cargo build --release --locked --quiet
  agents[$host]="${CARGO_TARGET_DIR:-$root/target}/release/opencode-mattermost"
fi

if [ "$all" = 1 ]; then
  for dir in npm/*/; do
    platform=$(basename "$dir"); platform=${platform#opencode-mattermost-}
    [ -n "${agents[$platform]:-}" ] || { echo "--all: no agent for $platform" >&2; exit 1; }
  done
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

pack() { # staged dir → tarball path in $out
  local file
  file=$(npm pack --silent --pack-destination "$out" "$1" | tail -n 1)
  echo "$out/$file"
}

packed=()
for platform in $(printf '%s\n' "${!agents[@]}" | sort); do
  bin="${agents[$platform]}"
  # An agent this machine can run must be of this release.
  if [ "$platform" = "$host" ]; then
    said=$("$bin" --version 2>/dev/null || true)
    [ "$said" = "opencode-mattermost $version" ] || {
      echo "the agent $bin says '$said', not version $version; rebuild it" >&2; exit 1; }
  fi
  pkg="opencode-mattermost-$platform"
  install -d "$stage/$pkg/bin"
  install -m 0644 "npm/$pkg/package.json" "npm/$pkg/README.md" "$stage/$pkg/"
  install -m 0755 "$bin" "$stage/$pkg/bin/opencode-mattermost"
  packed+=("$(pack "$stage/$pkg")")
done

plugin="$stage/opencode-mattermost"
install -d "$plugin/tools"
install -m 0644 opencode-plugin/index.ts opencode-plugin/agent.js opencode-plugin/package.json README.md "$plugin/"
install -d "$plugin/bin"
install -m 0755 opencode-plugin/bin/opencode-mattermost.js "$plugin/bin/"
install -m 0644 tools/*.json "$plugin/tools/"
packed+=("$(pack "$plugin")")

for f in "${packed[@]}"; do
  printf '%s\t%s bytes\n' "$f" "$(stat -c %s "$f" 2>/dev/null || stat -f %z "$f")"
done

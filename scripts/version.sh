#!/usr/bin/env bash
# Keep every version of the release in step: the agent (Cargo.toml and its
# Cargo.lock entry), the plugin (opencode-plugin/package.json, its lock file
# and its optionalDependencies) and the platform packages (npm/*/package.json).
# The plugin pins its platform packages exactly, so a mismatch would install an
# agent of another release.
#
#   scripts/version.sh           check that every place agrees; print the version
#   scripts/version.sh X.Y.Z     set X.Y.Z (semver, optional -prerelease) everywhere
set -euo pipefail
cd "$(dirname "$0")/.."

command -v node >/dev/null || { echo "node is required" >&2; exit 1; }

# Every place a version lives, as "file<TAB>version"; the JSON ones read with node.
places() {
  local cargo lock
  cargo=$(awk '/^\[/{section=$0} section=="[package]" && /^version *=/{gsub(/.*= *"|".*/,""); print; exit}' Cargo.toml)
  printf 'Cargo.toml\t%s\n' "$cargo"
  lock=$(awk '/^\[\[package\]\]/{name=""} /^name = "opencode-mattermost"$/{name=1; next} name && /^version = /{gsub(/.*= *"|".*/,""); print; exit}' Cargo.lock)
  printf 'Cargo.lock\t%s\n' "$lock"
  node - <<'EOF'
const fs = require("fs")
const read = (f) => JSON.parse(fs.readFileSync(f, "utf8"))
const out = (f, v) => console.log(`${f}\t${v}`)
const plugin = read("opencode-plugin/package.json")
out("opencode-plugin/package.json", plugin.version)
const dirs = fs.readdirSync("npm").filter((d) => fs.existsSync(`npm/${d}/package.json`)).sort()
const optional = Object.keys(plugin.optionalDependencies ?? {}).sort()
if (JSON.stringify(dirs) !== JSON.stringify(optional)) {
  out("opencode-plugin/package.json optionalDependencies", `names ${optional.join(",")} are not npm/: ${dirs.join(",")}`)
}
for (const [name, v] of Object.entries(plugin.optionalDependencies ?? {})) out(`opencode-plugin/package.json optionalDependencies.${name}`, v)
const lock = read("opencode-plugin/package-lock.json")
out("opencode-plugin/package-lock.json", lock.version)
out("opencode-plugin/package-lock.json packages[\"\"]", lock.packages?.[""]?.version)
for (const [name, v] of Object.entries(lock.packages?.[""]?.optionalDependencies ?? {})) {
  out(`opencode-plugin/package-lock.json optionalDependencies.${name}`, v)
}
for (const d of dirs) out(`npm/${d}/package.json`, read(`npm/${d}/package.json`).version)
EOF
}

set_version() {
  local v="$1"
  awk -v v="$v" '/^\[/{section=$0} section=="[package]" && !done && /^version *=/{print "version = \"" v "\""; done=1; next} {print}' \
    Cargo.toml > Cargo.toml.tmp && mv Cargo.toml.tmp Cargo.toml
  awk -v v="$v" '/^\[\[package\]\]/{name=0} /^name = "opencode-mattermost"$/{name=1} name && /^version = /{print "version = \"" v "\""; name=0; next} {print}' \
    Cargo.lock > Cargo.lock.tmp && mv Cargo.lock.tmp Cargo.lock
  VERSION="$v" node - <<'EOF'
const fs = require("fs")
const v = process.env.VERSION
const edit = (f, fn) => {
  const json = JSON.parse(fs.readFileSync(f, "utf8"))
  fn(json)
  fs.writeFileSync(f, JSON.stringify(json, null, 2) + "\n")
}
const pin = (deps) => { for (const k of Object.keys(deps ?? {})) deps[k] = v }
edit("opencode-plugin/package.json", (p) => { p.version = v; pin(p.optionalDependencies) })
edit("opencode-plugin/package-lock.json", (l) => {
  l.version = v
  if (l.packages?.[""]) { l.packages[""].version = v; pin(l.packages[""].optionalDependencies) }
})
for (const d of fs.readdirSync("npm")) {
  if (fs.existsSync(`npm/${d}/package.json`)) edit(`npm/${d}/package.json`, (p) => { p.version = v })
}
EOF
}

case "${1:-}" in
  -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
  "") ;;
  *)
    [ $# -eq 1 ] || { echo "usage: scripts/version.sh [X.Y.Z]" >&2; exit 2; }
    # Strict semver: the value lands in TOML and JSON files and in npm package specs.
    if ! [[ "$1" =~ ^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z]+(\.[0-9A-Za-z]+)*)?$ ]]; then
      echo "not a version: '$1' (want X.Y.Z or X.Y.Z-pre.N)" >&2
      exit 2
    fi
    set_version "$1"
    ;;
esac

want=$(awk '/^\[/{section=$0} section=="[package]" && /^version *=/{gsub(/.*= *"|".*/,""); print; exit}' Cargo.toml)
bad=0
while IFS=$'\t' read -r file got; do
  if [ "$got" != "$want" ]; then
    echo "version mismatch: $file has '$got', Cargo.toml has '$want'" >&2
    bad=1
  fi
done < <(places)
[ "$bad" = 0 ] || { echo "run scripts/version.sh $want to put every place in step" >&2; exit 1; }
echo "$want"

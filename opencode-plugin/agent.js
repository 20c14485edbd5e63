// Where the opencode-mattermost agent binary is: shared by the plugin shim
// (index.ts, under OpenCode's Bun) and the `npx opencode-mattermost` launcher
// (bin/opencode-mattermost.js, under Node). Plain JavaScript so both can load it.
import { existsSync, readFileSync, realpathSync } from "node:fs"
import { createRequire } from "node:module"
import { delimiter, dirname, join } from "node:path"

export const BUILD_FROM_SOURCE =
  "build it from source instead: clone the opencode-mattermost repository, run `cargo build --release --locked` " +
  "(or scripts/install.sh) and set OPENCODE_MATTERMOST_BIN to target/release/opencode-mattermost"

/** The package.json in `dir` (the plugin's own), or {} when it cannot be read. */
export function readManifest(dir) {
  try {
    return JSON.parse(readFileSync(join(dir, "package.json"), "utf8"))
  } catch {
    return {}
  }
}

/** A launcher of this package (npm links `bin` entries onto PATH): never the agent itself. */
function isLauncher(path) {
  try {
    return realpathSync(path).endsWith(join("bin", "opencode-mattermost.js"))
  } catch {
    return false
  }
}

/**
 * The agent binary for the plugin installed in `dir` with package.json `manifest`.
 * An explicit $OPENCODE_MATTERMOST_BIN wins (used as given, so a wrong one fails loudly);
 * then the prebuilt platform package npm installed beside the plugin; then PATH (skipping this
 * package's own launcher); then what scripts/install.sh recorded. Throws a message saying how to
 * get an agent when none is found.
 */
export function findAgent(dir, manifest) {
  const env = process.env.OPENCODE_MATTERMOST_BIN
  if (env) return env
  const platform = `${process.platform}-${process.arch}`
  const prefix = `${manifest.name ?? "opencode-mattermost"}-`
  const pkg = prefix + platform
  const prebuilt = Object.keys(manifest.optionalDependencies ?? {})
  if (prebuilt.includes(pkg)) {
    try {
      const bin = join(dirname(createRequire(join(dir, "index.ts")).resolve(`${pkg}/package.json`)), "bin", "opencode-mattermost")
      if (existsSync(bin)) return bin
    } catch {} // not installed: fall through to PATH
  }
  for (const d of (process.env.PATH ?? "").split(delimiter)) {
    const bin = d && join(d, "opencode-mattermost")
    if (bin && existsSync(bin) && !isLauncher(bin)) return bin
  }
  try {
    const bin = JSON.parse(readFileSync(join(dir, "agent.json"), "utf8")).bin
    if (typeof bin === "string" && bin) return bin
  } catch {}
  const why = prebuilt.includes(pkg)
    ? `its platform package ${pkg} is not installed (npm leaves optional packages out with --omit=optional or ` +
      `when the platform does not match) and none is on PATH; reinstall the plugin with optional dependencies, or ${BUILD_FROM_SOURCE}`
    : `there is no prebuilt agent for ${platform} (prebuilt: ${prebuilt.map((p) => p.slice(prefix.length)).join(", ") || "none"}) and none is on PATH; ${BUILD_FROM_SOURCE}`
  throw new Error(`opencode-mattermost agent not found: ${why}`)
}

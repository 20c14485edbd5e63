#!/usr/bin/env node
// `npx opencode-mattermost <command>`: the agent's command line (setup, doctor, send, sessions,
// schedules) without a Rust toolchain or a path to remember. It runs the agent this package
// brought (found as the plugin finds it) with the same arguments, terminal and exit status.
import { spawnSync } from "node:child_process"
import { realpathSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { findAgent, readManifest } from "../agent.js"

const dir = join(dirname(realpathSync(fileURLToPath(import.meta.url))), "..")
let bin
try {
  bin = findAgent(dir, readManifest(dir))
} catch (e) {
  console.error(e.message)
  process.exit(1)
}
const run = spawnSync(bin, process.argv.slice(2), { stdio: "inherit" })
if (run.error) {
  console.error(`opencode-mattermost: cannot run the agent ${bin}: ${run.error.message}`)
  process.exit(1)
}
// Ended by a signal (Ctrl-C in setup): end the same way, so callers see it.
if (run.signal) process.kill(process.pid, run.signal)
process.exit(run.status ?? 1)

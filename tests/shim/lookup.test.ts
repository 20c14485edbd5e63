// Where the shim finds its agent, and which agents it refuses. Each test lays
// out a copy of the plugin the way npm installs it (index.ts, package.json,
// tools/ and node_modules/ with zod and, maybe, the platform package), then
// loads that copy. The agents are tests/shim/fake-agent.ts launched by small
// scripts tagged with where they live, so the test sees which one ran.
import { afterAll, expect, test } from "bun:test"
import { spawnSync } from "node:child_process"
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { delimiter, join } from "node:path"
import { ctx, fakeInput } from "./fake-opencode.ts"

const repo = join(import.meta.dir, "..", "..")
const platformPkg = `opencode-mattermost-${process.platform}-${process.arch}`
const version = JSON.parse(readFileSync(join(repo, "opencode-plugin", "package.json"), "utf8")).version
const dirs: string[] = []
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})
const text = (out: any): string => (typeof out === "string" ? out : out.output)

/** An executable that runs the fake agent with `tag`. */
function agentScript(path: string, tag: string) {
  writeFileSync(path, `#!/bin/sh\nexec "${process.execPath}" "${join(import.meta.dir, "fake-agent.ts")}" ${tag}\n`)
  chmodSync(path, 0o755)
}

/** A plugin installed the npm way in a fresh directory; returns its index.ts and a directory for PATH. */
function install(opts: { platformPackage: boolean; onPath: boolean }) {
  const root = mkdtempSync(join(tmpdir(), "shim-lookup-"))
  dirs.push(root)
  const plugin = join(root, "node_modules", "opencode-mattermost")
  mkdirSync(join(plugin, "tools"), { recursive: true })
  for (const f of ["index.ts", "agent.js", "bin/opencode-mattermost.js"]) {
    mkdirSync(join(plugin, f, ".."), { recursive: true })
    cpSync(join(repo, "opencode-plugin", f), join(plugin, f))
  }
  cpSync(join(repo, "opencode-plugin", "package.json"), join(plugin, "package.json"))
  cpSync(join(repo, "tools"), join(plugin, "tools"), { recursive: true })
  symlinkSync(join(repo, "opencode-plugin", "node_modules", "zod"), join(root, "node_modules", "zod"))
  if (opts.platformPackage) {
    const pkg = join(root, "node_modules", platformPkg)
    mkdirSync(join(pkg, "bin"), { recursive: true })
    writeFileSync(join(pkg, "package.json"), JSON.stringify({ name: platformPkg, version: "0.0.0" }))
    agentScript(join(pkg, "bin", "opencode-mattermost"), "platform-package")
  }
  const pathDir = join(root, "path-bin")
  mkdirSync(pathDir)
  if (opts.onPath) agentScript(join(pathDir, "opencode-mattermost"), "path")
  return { index: join(plugin, "index.ts"), pathDir }
}

/** Loads the installed copy with only `pathDir` on PATH and `env` set; returns what fake_report says, or the error. */
async function load(index: string, pathDir: string, env: Record<string, string | undefined>) {
  const saved = { ...process.env }
  process.env.PATH = pathDir + delimiter + "/usr/bin" + delimiter + "/bin"
  delete process.env.OPENCODE_MATTERMOST_BIN
  for (const [k, v] of Object.entries(env)) v === undefined ? delete process.env[k] : (process.env[k] = v)
  try {
    const { OpencodeMattermost } = await import(index)
    const hooks: any = await OpencodeMattermost(fakeInput().input)
    try {
      if (hooks.tool.fake_report) return { tag: JSON.parse(text(await hooks.tool.fake_report.execute({}, ctx()))).tag as string }
      return { tools: Object.keys(hooks.tool), error: await hooks.tool.mattermost_status.execute({}, ctx()).then(() => "", (e: Error) => e.message) }
    } finally {
      await hooks.dispose()
    }
  } finally {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k]
    Object.assign(process.env, saved)
  }
}

test("OPENCODE_MATTERMOST_BIN comes before the platform package and PATH", async () => {
  const { index, pathDir } = install({ platformPackage: true, onPath: true })
  const explicit = join(pathDir, "explicit-agent")
  agentScript(explicit, "env")
  expect(await load(index, pathDir, { OPENCODE_MATTERMOST_BIN: explicit })).toEqual({ tag: "env" })
})

test("without OPENCODE_MATTERMOST_BIN the platform package comes before PATH", async () => {
  const { index, pathDir } = install({ platformPackage: true, onPath: true })
  expect(await load(index, pathDir, {})).toEqual({ tag: "platform-package" })
})

test("without the platform package the agent on PATH runs", async () => {
  const { index, pathDir } = install({ platformPackage: false, onPath: true })
  expect(await load(index, pathDir, {})).toEqual({ tag: "path" })
})

test("no agent anywhere: the bundled tools explain how to install or build one", async () => {
  const { index, pathDir } = install({ platformPackage: false, onPath: false })
  const got: any = await load(index, pathDir, {})
  // Every tool of the contract is still offered, so the model sees the explanation.
  const contract = JSON.parse(readFileSync(join(repo, "tools", "mattermost_status.json"), "utf8")).name
  expect(got.tools).toContain(contract)
  expect(got.error).toContain(`mattermost_status failed: opencode-mattermost agent not found: its platform package ${platformPkg} is not installed`)
  expect(got.error).toContain("cargo build --release --locked")
  expect(got.error).toContain("OPENCODE_MATTERMOST_BIN")
})

test("a platform package without its binary falls through to PATH", async () => {
  const { index, pathDir } = install({ platformPackage: true, onPath: true })
  rmSync(join(index, "..", "..", platformPkg, "bin", "opencode-mattermost"))
  expect(await load(index, pathDir, {})).toEqual({ tag: "path" })
})

test("a platform without a prebuilt agent says so and how to build one", async () => {
  const { index, pathDir } = install({ platformPackage: false, onPath: false })
  // The installed manifest lists no package for this machine (as on, say, Windows).
  const manifest = join(index, "..", "package.json")
  const pkg = JSON.parse(readFileSync(manifest, "utf8"))
  delete pkg.optionalDependencies[platformPkg]
  writeFileSync(manifest, JSON.stringify(pkg))
  const got: any = await load(index, pathDir, {})
  expect(got.error).toContain(`there is no prebuilt agent for ${process.platform}-${process.arch}`)
  expect(got.error).toContain("cargo build --release --locked")
})

/** Loads the repo's shim against the fake agent reporting `protocol`; returns the error and the pids started. */
async function refused(protocol: string) {
  const root = mkdtempSync(join(tmpdir(), "shim-protocol-"))
  dirs.push(root)
  const bin = join(root, "agent")
  agentScript(bin, "old")
  const pids = join(root, "pids")
  const { OpencodeMattermost } = await import("../../opencode-plugin/index.ts")
  const saved = { ...process.env }
  Object.assign(process.env, { OPENCODE_MATTERMOST_BIN: bin, FAKE_AGENT_PROTOCOL: protocol, FAKE_AGENT_PIDS: pids })
  try {
    const hooks: any = await OpencodeMattermost(fakeInput().input)
    try {
      // The fake agent's own tools were not registered: the contract's were.
      expect(Object.keys(hooks.tool)).not.toContain("fake_report")
      const error = await hooks.tool.mattermost_status.execute({}, ctx()).then(() => "", (e: Error) => e.message)
      const started = readFileSync(pids, "utf8").trim().split("\n").map(Number)
      return { error, started }
    } finally {
      await hooks.dispose()
    }
  } finally {
    for (const k of ["OPENCODE_MATTERMOST_BIN", "FAKE_AGENT_PROTOCOL", "FAKE_AGENT_PIDS"]) delete process.env[k]
    Object.assign(process.env, saved)
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

test("an agent of another protocol version is refused with a clear message, and killed", async () => {
  const { error, started } = await refused("2")
  expect(error).toContain("mattermost_status failed:")
  expect(error).toContain(`(version 0.0.0-fake) speaks protocol 2, this plugin ${version} speaks protocol 1`)
  expect(error).toContain("install matching versions")
  // One agent at load, one for the call: each refused and gone before the error came back.
  expect(started.length).toBe(2)
  expect(started.filter(alive)).toEqual([])
})

test("an agent that reports no protocol version is refused too", async () => {
  const { error, started } = await refused("none")
  expect(error).toContain(`speaks no protocol version (an older agent), this plugin ${version} speaks protocol 1`)
  expect(started.filter(alive)).toEqual([])
})

test("an agent that answers initialize with garbage instead of a protocol version is refused", async () => {
  const { error } = await refused("not-a-number")
  expect(error).toContain("speaks no protocol version")
})

/** Runs the installed copy's `npx` launcher under Node with only `pathDir` (then the system) on PATH. */
function launch(index: string, pathDir: string, args: string[]) {
  const launcher = join(index, "..", "bin", "opencode-mattermost.js")
  const env: Record<string, string> = { ...(process.env as Record<string, string>) }
  delete env.OPENCODE_MATTERMOST_BIN
  env.PATH = pathDir + delimiter + "/usr/local/bin" + delimiter + "/usr/bin" + delimiter + "/bin"
  const run = spawnSync("node", [launcher, ...args], { env, encoding: "utf8", timeout: 30_000 })
  return { status: run.status, stdout: run.stdout, stderr: run.stderr }
}

/** An agent that says where it lives and what it was given, and exits with 3. */
function echoAgent(path: string, tag: string) {
  writeFileSync(path, `#!/bin/sh\necho "${tag}: $*"\nexit 3\n`)
  chmodSync(path, 0o755)
}

test("the npx launcher runs the platform package's agent with the arguments and its exit status", () => {
  const { index, pathDir } = install({ platformPackage: true, onPath: false })
  echoAgent(join(index, "..", "..", platformPkg, "bin", "opencode-mattermost"), "platform-package")
  const run = launch(index, pathDir, ["setup", "--url", "https://chat.example.com"])
  expect(run.stdout).toBe("platform-package: setup --url https://chat.example.com\n")
  expect(run.status).toBe(3)
})

test("the npx launcher linked onto PATH never runs itself", () => {
  const { index, pathDir } = install({ platformPackage: false, onPath: false })
  // As `npm install -g` links it: first on PATH, named like the agent.
  symlinkSync(join(index, "..", "bin", "opencode-mattermost.js"), join(pathDir, "opencode-mattermost"))
  const later = mkdtempSync(join(tmpdir(), "shim-later-"))
  dirs.push(later)
  echoAgent(join(later, "opencode-mattermost"), "path")
  expect(launch(index, pathDir + delimiter + later, ["--version"]).stdout).toBe("path: --version\n")
  // Nothing else anywhere: a clear error, not a launcher calling itself forever.
  const none = launch(index, pathDir, ["--version"])
  expect(none.status).toBe(1)
  expect(none.stderr).toContain(`opencode-mattermost agent not found: its platform package ${platformPkg} is not installed`)
})

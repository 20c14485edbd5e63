// The shim outside OpenCode: real agent binary (or tests/shim/fake-agent.ts
// where the real one cannot be made to misbehave), fake PluginInput.
import { afterAll, expect, test } from "bun:test"
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { OpencodeMattermost } from "../../opencode-plugin/index.ts"
import { ctx, fakeInput } from "./fake-opencode.ts"

const bin = process.env.OPENCODE_MATTERMOST_BIN
if (!bin) throw new Error("set OPENCODE_MATTERMOST_BIN to the agent binary")
const hooksToStop: any[] = []
afterAll(async () => {
  for (const h of hooksToStop) await h.dispose?.()
})
const text = (out: any): string => (typeof out === "string" ? out : out.output)
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i)

/** A /bin/sh script in a fresh temp dir, for OPENCODE_MATTERMOST_BIN. */
function script(body: string) {
  const path = join(mkdtempSync(join(tmpdir(), "shim-test-")), "agent")
  writeFileSync(path, `#!/bin/sh\n${body}\n`, { mode: 0o755 })
  return path
}
const fakeAgent = () => script(`exec "${process.execPath}" "${join(import.meta.dir, "fake-agent.ts")}"`)

async function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]))
  Object.assign(process.env, vars)
  try {
    return await fn()
  } finally {
    for (const [k, v] of Object.entries(saved)) v === undefined ? delete process.env[k] : (process.env[k] = v)
  }
}

/** Runs `fn` with the plugin loaded against tests/shim/fake-agent.ts (restarts included). */
async function withFakeAgent(fn: (hooks: any, fake: ReturnType<typeof fakeInput>) => Promise<void>) {
  const fake = fakeInput()
  await withEnv({ OPENCODE_MATTERMOST_BIN: fakeAgent() }, async () => {
    const hooks: any = await OpencodeMattermost(fake.input)
    try {
      await fn(hooks, fake)
    } finally {
      await hooks.dispose()
    }
  })
}

test("registers the agent's catalog and forwards calls with context and fetches", async () => {
  const { input, seen } = fakeInput()
  const hooks: any = await OpencodeMattermost(input)
  hooksToStop.push(hooks)
  expect(Object.keys(hooks.tool)).toContain("mattermost_status")
  const status = hooks.tool.mattermost_status
  // JSON Schema → zod: an optional boolean.
  expect(status.args.json.safeParse(true).success).toBe(true)
  expect(status.args.json.safeParse(undefined).success).toBe(true)
  expect(status.args.json.safeParse("yes").success).toBe(false)

  await hooks.event({ event: { type: "session.idle", properties: { sessionID: "ses_fake1" } } })
  const out = await status.execute({}, ctx())
  const text = typeof out === "string" ? out : out.output
  expect(text).toContain("OpenCode: 9.9.9-fake")
  expect(text).toContain('fake-one ses_fake1 "Fake" (this session)')
  expect(text).toContain("OpenCode events received: 1")
  expect(seen.map((s) => s.url).sort()).toEqual(["/global/health", "/session"])
  expect(seen.every((s) => s.directory === encodeURIComponent("/tmp/fake-project"))).toBe(true)
})

test("bad arguments come back as a clear tool error", async () => {
  const hooks: any = await OpencodeMattermost(fakeInput().input)
  hooksToStop.push(hooks)
  await expect(hooks.tool.mattermost_status.execute({ json: "yes" }, ctx())).rejects.toThrow(/mattermost_status failed: invalid arguments/)
})

test("a killed agent is restarted by the next call", async () => {
  const hooks: any = await OpencodeMattermost(fakeInput().input)
  hooksToStop.push(hooks)
  const pidOf = async () => {
    const out = await hooks.tool.mattermost_status.execute({ json: true }, ctx())
    return JSON.parse(typeof out === "string" ? out : out.output).agent.pid as number
  }
  const first = await pidOf()
  process.kill(first, "SIGKILL")
  await Bun.sleep(100)
  const second = await pidOf()
  expect(second).not.toBe(first)
})

test("a missing agent binary is a clear tool error, not a hang", async () => {
  const saved = process.env.OPENCODE_MATTERMOST_BIN
  process.env.OPENCODE_MATTERMOST_BIN = "/nonexistent/opencode-mattermost"
  try {
    const hooks: any = await OpencodeMattermost(fakeInput().input)
    // Tools still exist (from the bundled contract) and explain themselves.
    expect(Object.keys(hooks.tool)).toContain("mattermost_status")
    const started = Date.now()
    await expect(hooks.tool.mattermost_status.execute({}, ctx())).rejects.toThrow(/agent unavailable|cannot start/)
    expect(Date.now() - started).toBeLessThan(5000)
    await hooks.dispose()
  } finally {
    process.env.OPENCODE_MATTERMOST_BIN = saved
  }
})

test("a hung initialize kills the agent and the next call starts a fresh one", async () => {
  // The first run records its pid and never answers; any later run is the real agent.
  const path = script(`if [ ! -e "$0.hung" ]; then : > "$0.hung"; echo $$ > "$0.pid"; exec sleep 1000; fi\nexec "${bin}"`)
  const hooks: any = await withEnv({ OPENCODE_MATTERMOST_BIN: path, OPENCODE_MM_SHIM_INIT_TIMEOUT_MS: "300" }, () => OpencodeMattermost(fakeInput().input))
  hooksToStop.push(hooks)
  // Loading fails over to the bundled catalog only once the hung child has exited.
  const pid = Number(readFileSync(`${path}.pid`, "utf8"))
  expect(() => process.kill(pid, 0)).toThrow()
  expect(text(await hooks.tool.mattermost_status.execute({}, ctx()))).toContain("OpenCode: 9.9.9-fake")
})

test("events forwarded while the agent is down reach the restarted agent", async () => {
  const { input, hold } = fakeInput()
  const hooks: any = await OpencodeMattermost(input)
  hooksToStop.push(hooks)
  const status = hooks.tool.mattermost_status
  const pid = JSON.parse(text(await status.execute({ json: true }, ctx()))).agent.pid
  // Kill the agent inside a call: that call failing is when the shim knows it is down.
  const parked = hold("/session")
  const call = status.execute({}, ctx())
  await parked
  process.kill(pid, "SIGKILL")
  await expect(call).rejects.toThrow(/agent unavailable/)
  await hooks.event({ event: { type: "session.idle", properties: { sessionID: "ses_while_down" } } })
  expect(text(await status.execute({}, ctx()))).toContain("OpenCode events received: 1")
})

test("events held while the agent is down: the newest 1000 replayed in order after initialized, the rest counted", () =>
  withFakeAgent(async (hooks) => {
    await expect(hooks.tool.fake_die.execute({}, ctx())).rejects.toThrow(/agent unavailable/)
    await Promise.all(range(0, 1500).map((n) => hooks.event({ event: { type: "fake", properties: { n } } })))
    const got = JSON.parse(text(await hooks.tool.fake_report.execute({}, ctx())))
    expect(got.events).toEqual(range(500, 1500))
    expect(got.dropped).toEqual([500])
    expect(got.methods).toEqual(["initialize", "initialized", ...got.events.map(() => "opencode/event"), "opencode/eventsDropped", "tools/call"])
  }))

test("an agent that stops reading: events wait for the pipe to drain, bounded, and the next call still arrives", () =>
  withFakeAgent(async (hooks) => {
    const { pid } = JSON.parse(text(await hooks.tool.fake_pause.execute({}, ctx())))
    const padding = "x".repeat(20_000)
    await Promise.all(range(0, 2000).map((n) => hooks.event({ event: { type: "fake", properties: { n, padding } } })))
    process.kill(pid, "SIGUSR1") // read again
    const got = JSON.parse(text(await hooks.tool.fake_report.execute({}, ctx())))
    // What fit in the pipe went through; of the rest the newest 1000 waited; every other one is counted.
    expect(got.dropped.length).toBe(1)
    expect(got.events.length + got.dropped[0]).toBe(2000)
    expect(got.events.slice(-1000)).toEqual(range(1000, 2000))
    expect(got.events).toEqual([...got.events].sort((a: number, b: number) => a - b))
    expect(got.methods.at(-1)).toBe("tools/call")
  }))

test("the agent's tui/toast notifications become OpenCode toasts; malformed ones are ignored", () =>
  withFakeAgent(async (hooks, { toasts }) => {
    expect(text(await hooks.tool.fake_toast.execute({}, ctx()))).toBe("toasted")
    expect(toasts).toEqual([
      { title: "Mattermost", message: "connected", variant: "success" },
      { message: "odd variant", variant: "info" },
      { message: "rejected by OpenCode", variant: "error" },
    ])
    // OpenCode refusing a toast did not upset the shim.
    expect(JSON.parse(text(await hooks.tool.fake_report.execute({}, ctx()))).methods.at(-1)).toBe("tools/call")
  }))

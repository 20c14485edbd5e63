// The shim outside OpenCode: real agent binary, fake PluginInput.
import { afterAll, expect, test } from "bun:test"
import { OpencodeMattermost } from "../../opencode-plugin/index.ts"
import { ctx, fakeInput } from "./fake-opencode.ts"

const bin = process.env.OPENCODE_MATTERMOST_BIN
if (!bin) throw new Error("set OPENCODE_MATTERMOST_BIN to the agent binary")
const hooksToStop: any[] = []
afterAll(async () => {
  for (const h of hooksToStop) await h.dispose?.()
})

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

// A stand-in for the Rust agent, for shim behaviour the real one cannot be made
// to show on demand. Same wire: JSON-RPC 2.0 over stdio, one object per line.
// Its tools:
//   fake_report  what it received: every method in order, event numbers, drop notices
//   fake_die     exits without answering
//   fake_pause   answers with its pid, then stops reading stdin until SIGUSR1
//   fake_toast   sends tui/toast notifications (good and malformed), then answers
// Its first argument, if any, is a tag fake_report returns (which copy was launched).
// FAKE_AGENT_PROTOCOL overrides the protocol version it reports ("none": it reports none);
// FAKE_AGENT_PIDS names a file it appends its pid to at start.
import { appendFileSync } from "node:fs"
import { createInterface } from "node:readline"

const tag = process.argv[2] ?? ""
const protocolEnv = process.env.FAKE_AGENT_PROTOCOL
const protocolVersion = protocolEnv === "none" ? undefined : protocolEnv ? Number(protocolEnv) : 1
if (process.env.FAKE_AGENT_PIDS) appendFileSync(process.env.FAKE_AGENT_PIDS, `${process.pid}\n`)

const methods: string[] = []
const events: number[] = []
const dropped: number[] = []
const send = (frame: object) => process.stdout.write(JSON.stringify({ jsonrpc: "2.0", ...frame }) + "\n")
const answer = (id: unknown, output: unknown) => send({ id, result: { output: typeof output === "string" ? output : JSON.stringify(output) } })
const tools = ["fake_report", "fake_die", "fake_pause", "fake_toast"].map((name) => ({
  name,
  description: name,
  inputSchema: { type: "object", properties: {} },
}))

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
// A paused stdin does not keep the process alive; this timer does, while paused.
let paused: ReturnType<typeof setInterval> | undefined
process.on("SIGUSR1", () => {
  clearInterval(paused)
  lines.resume()
})
lines.on("close", () => process.exit(0))

lines.on("line", (line) => {
  const msg = JSON.parse(line)
  methods.push(msg.method)
  if (msg.method === "initialize") return send({ id: msg.id, result: { agentVersion: "0.0.0-fake", tools, protocolVersion } })
  if (msg.method === "opencode/event") return void events.push(msg.params.event.properties.n)
  if (msg.method === "opencode/eventsDropped") return void dropped.push(msg.params.count)
  if (msg.method === "exit") return process.exit(0)
  if (msg.method !== "tools/call") return
  switch (msg.params.name) {
    case "fake_report":
      return answer(msg.id, { tag, methods, events, dropped })
    case "fake_die":
      return process.exit(1)
    case "fake_pause":
      lines.pause()
      paused = setInterval(() => {}, 60_000)
      return answer(msg.id, { pid: process.pid })
    case "fake_toast":
      for (const params of [
        { title: "Mattermost", message: "connected", variant: "success" },
        { message: "odd variant", variant: "purple", title: 7 },
        { message: "rejected by OpenCode", variant: "error" },
        "not an object",
        null,
        { message: 42, variant: "info" },
        { title: "no message", variant: "warning" },
      ]) {
        send({ method: "tui/toast", params })
      }
      return answer(msg.id, "toasted")
  }
})

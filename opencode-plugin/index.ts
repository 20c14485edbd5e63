// opencode-mattermost plugin shim: spawns the Rust agent and relays between it
// and OpenCode over stdio JSON-RPC 2.0 (one JSON object per line). No logic of
// its own: tools, Mattermost and state all live in the agent.
// Types only: at run time the shim needs zod alone, so installing it stays small.
import type { Plugin, ToolContext, ToolDefinition } from "@opencode-ai/plugin"
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { z } from "zod"
import { findAgent, readManifest } from "./agent.js"

// Must equal the agent's PROTOCOL_VERSION (src/rpc/protocol.rs; tests/versions.rs checks).
const PROTOCOL_VERSION = 1
// The handshake's deadline; OPENCODE_MM_SHIM_INIT_TIMEOUT_MS overrides it (tests shorten it).
const initTimeoutMs = () => Number(process.env.OPENCODE_MM_SHIM_INIT_TIMEOUT_MS) || 15_000
const CALL_TIMEOUT_MS = 15 * 60_000
// Events held while the agent is not ready or not reading; beyond this the oldest go.
const MAX_HELD_EVENTS = 1000
type Variant = "info" | "success" | "warning" | "error"
const TOAST_VARIANTS: Variant[] = ["info", "success", "warning", "error"]
const here = new URL(".", import.meta.url).pathname
/** package.json beside the shim: its version is ours, its optionalDependencies the prebuilt platforms. */
const manifest: any = readManifest(here)
const SHIM_VERSION: string = typeof manifest.version === "string" ? manifest.version : "unknown"

// The token goes to the agent alone: shells OpenCode starts for the model never inherit it.
const secrets: Record<string, string> = {}
for (const key of ["MATTERMOST_TOKEN"]) {
  if (process.env[key] !== undefined) secrets[key] = process.env[key]!
  delete process.env[key]
}

type Spec = { name: string; description: string; inputSchema: any }
type Waiter = { resolve: (v: any) => void; reject: (e: Error) => void; timer: ReturnType<typeof setTimeout> }
/** A line not yet written to the agent; events may wait for `live` and may be dropped, other frames not. */
type Out = { line: string; event: boolean }
const frame = (f: object) => JSON.stringify({ jsonrpc: "2.0", ...f }) + "\n"

/** The tool contract shipped beside the shim, so tools exist (and explain) even when the agent cannot start. */
function bundledCatalog(): Spec[] {
  for (const dir of [join(here, "tools"), join(here, "..", "tools")]) {
    if (!existsSync(dir)) continue
    return readdirSync(dir).filter((f) => f.endsWith(".json")).map((f) => JSON.parse(readFileSync(join(dir, f), "utf8")))
  }
  return []
}

/** JSON Schema (the subset our catalog uses) → zod. */
function toZod(z: any, s: any): any {
  if (!s || typeof s !== "object") return z.any()
  let types: string[] = Array.isArray(s.type) ? s.type : s.type ? [s.type] : []
  const nullable = types.includes("null")
  types = types.filter((t) => t !== "null")
  let out: any
  if (Array.isArray(s.enum)) out = s.enum.every((v: any) => typeof v === "string") ? z.enum(s.enum.filter((v: any) => v !== null)) : z.any()
  else if (types[0] === "string") out = z.string()
  else if (types[0] === "integer") out = z.number().int()
  else if (types[0] === "number") out = z.number()
  else if (types[0] === "boolean") out = z.boolean()
  else if (types[0] === "array") out = z.array(toZod(z, s.items))
  else if (types[0] === "object") out = z.object(shape(z, s))
  else out = z.any()
  if (nullable) out = out.nullable()
  return s.description ? out.describe(s.description) : out
}

function shape(z: any, s: any): Record<string, any> {
  const required = new Set<string>(s?.required ?? [])
  return Object.fromEntries(
    Object.entries(s?.properties ?? {}).map(([k, v]) => [k, required.has(k) ? toZod(z, v) : toZod(z, v).optional()]),
  )
}

class Agent {
  child?: ChildProcessWithoutNullStreams
  ready?: Promise<Spec[]>
  pending = new Map<string, Waiter>()
  nextId = 1
  stderrTail: string[] = []
  failures = 0
  stopping = false
  restartTimer?: ReturnType<typeof setTimeout>
  live = false // handshake done: events may flow
  blocked = false // stdin refused more (write returned false) until 'drain'
  out: Out[] = [] // in order; only this.pump() writes to the child
  heldEvents = 0 // events in `out`
  dropped = 0 // events dropped since the agent last heard of it
  incompatible = false // the last agent spoke another protocol: no background restarts

  constructor(
    private init: Record<string, unknown>,
    private serveFetch: (p: any) => Promise<any>,
    private toast: (p: any) => Promise<void>,
  ) {}

  /** Start (or reuse) the agent and finish the handshake; resolves to the catalog. */
  start(): Promise<Spec[]> {
    if (this.ready) return this.ready
    let bin: string
    try {
      bin = findAgent(here, manifest)
    } catch (e) {
      return Promise.reject(e)
    }
    const child = spawn(bin, [], { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, ...secrets } })
    this.child = child
    const started = Date.now()
    createInterface({ input: child.stdout, crlfDelay: Infinity }).on("line", (line) => this.onLine(line))
    createInterface({ input: child.stderr }).on("line", (line) => {
      this.stderrTail.push(line)
      if (this.stderrTail.length > 20) this.stderrTail.shift()
    })
    child.stdin.on("error", () => {}) // EPIPE after a crash; the exit handler reports it.
    child.stdin.on("drain", () => {
      if (this.child !== child) return
      this.blocked = false
      this.pump()
    })
    child.on("error", (e) => this.onExit(child, `cannot start ${bin}: ${e.message}`))
    child.on("exit", (code, signal) => {
      if (Date.now() - started > 60_000) this.failures = 0
      this.onExit(child, `agent exited (${signal ?? `code ${code}`})`)
    })
    const params = { ...this.init, shimVersion: SHIM_VERSION, protocolVersion: PROTOCOL_VERSION }
    this.ready = this.handshake(child, bin, params)
    return this.ready
  }

  /** `initialize`, refusing an agent of another protocol; on any failure the child is killed before this rejects. */
  private async handshake(child: ChildProcessWithoutNullStreams, bin: string, params: object): Promise<Spec[]> {
    try {
      const r: any = await this.request("initialize", params, initTimeoutMs())
      if (r?.protocolVersion !== PROTOCOL_VERSION) {
        // Restarting cannot help: wait for a tool call (the binary may have been replaced by then).
        this.incompatible = true
        const theirs = typeof r?.protocolVersion === "number" ? `protocol ${r.protocolVersion}` : "no protocol version (an older agent)"
        throw new Error(
          `the agent ${bin} (version ${r?.agentVersion ?? "unknown"}) speaks ${theirs}, this plugin ${SHIM_VERSION} speaks protocol ${PROTOCOL_VERSION}: ` +
            "install matching versions (reinstall the plugin so npm brings its own agent, or rebuild the agent from the plugin's source)",
        )
      }
      this.incompatible = false
      if (this.child === child) {
        // `initialized` first, then the events held meanwhile, in order.
        this.out.unshift({ line: frame({ method: "initialized", params: {} }), event: false })
        this.live = true
        this.pump()
      }
      return r.tools as Spec[]
    } catch (e: any) {
      // The agent refused our protocol version: as final as us refusing its.
      if (/speaks protocol/.test(String(e?.message))) this.incompatible = true
      // Hung or refused: a live child would linger and this rejection stay cached
      // forever. Forget it (the next call spawns afresh), kill it, and fail only
      // once it is gone. (If it died by itself, onExit already forgot it.)
      if (this.child === child) {
        const gone = new Promise((resolve) => child.once("exit", resolve))
        this.onExit(child, `initialize failed: ${e?.message ?? e}`)
        child.kill("SIGKILL")
        await gone
      }
      throw e
    }
  }

  onExit(child: ChildProcessWithoutNullStreams, why: string) {
    if (this.child !== child) return
    this.child = undefined
    this.ready = undefined
    this.live = false
    this.blocked = false
    // Requests and answers were for that child (its calls fail below); events wait for the next.
    this.out = this.out.filter((o) => o.event)
    const tail = this.stderrTail.length ? `; last log lines:\n${this.stderrTail.slice(-5).join("\n")}` : ""
    for (const [id, w] of this.pending) {
      clearTimeout(w.timer)
      w.reject(new Error(`opencode-mattermost agent unavailable: ${why}${tail}`))
      this.pending.delete(id)
    }
    if (this.stopping || this.incompatible) return
    // Restart in the background with backoff; a tool call restarts at once.
    const delay = Math.min(30_000, 250 * 2 ** this.failures++)
    clearTimeout(this.restartTimer)
    this.restartTimer = setTimeout(() => this.start().catch(() => {}), delay)
  }

  onLine(line: string) {
    let msg: any
    try {
      msg = JSON.parse(line)
    } catch {
      return // stdout carries frames only; nothing else is expected
    }
    if (msg.method && msg.id !== undefined) return void this.onRequest(msg)
    if (msg.method === "tui/toast") return void this.toast(msg.params)
    if (msg.method) return // log/message (the agent keeps its own log) and unknown ones: nothing to do
    const w = this.pending.get(String(msg.id))
    if (!w) return
    this.pending.delete(String(msg.id))
    clearTimeout(w.timer)
    if (msg.error) w.reject(new Error(msg.error.message ?? "agent error"))
    else w.resolve(msg.result)
  }

  async onRequest(msg: any) {
    if (msg.method !== "opencode/fetch") {
      return this.send({ id: msg.id, error: { code: -32601, message: `shim has no method ${msg.method}` } })
    }
    try {
      this.send({ id: msg.id, result: await this.serveFetch(msg.params) })
    } catch (e: any) {
      this.send({ id: msg.id, error: { code: -32000, message: `fetch failed: ${e?.message ?? e}` } })
    }
  }

  /** Requests and answers: for the running child only. */
  send(f: object) {
    if (!this.child) return
    this.out.push({ line: frame(f), event: false })
    this.pump()
  }

  /** OpenCode bus events: held, bounded, until an agent is live and reading. */
  event(event: unknown) {
    this.out.push({ line: frame({ method: "opencode/event", params: { event } }), event: true })
    if (++this.heldEvents > MAX_HELD_EVENTS) {
      this.out.splice(this.out.findIndex((o) => o.event), 1)
      this.heldEvents--
      this.dropped++
    }
    this.pump()
  }

  /** Write what may go now, in order, until stdin pushes back ('drain' resumes). */
  pump() {
    while (this.child && !this.blocked) {
      // Before the handshake, events wait and everything else passes them.
      const i = this.live ? 0 : this.out.findIndex((o) => !o.event)
      if (i < 0 || i >= this.out.length) return
      const next = this.out.splice(i, 1)[0]
      let line = next.line
      if (next.event && --this.heldEvents === 0 && this.dropped) {
        // The backlog is out: tell the agent how many it missed, so it resyncs.
        line += frame({ method: "opencode/eventsDropped", params: { count: this.dropped } })
        this.dropped = 0
      }
      this.blocked = !this.child.stdin.write(line)
    }
  }

  request(method: string, params: unknown, timeoutMs: number): Promise<any> {
    const id = `shim-${this.nextId++}`
    return new Promise((resolve, reject) => {
      if (!this.child) return reject(new Error("opencode-mattermost agent is not running"))
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`opencode-mattermost agent did not answer ${method} within ${timeoutMs / 1000}s`))
      }, timeoutMs)
      this.pending.set(id, { resolve, reject, timer })
      this.send({ id, method, params })
    })
  }

  async call(name: string, args: unknown, context: unknown): Promise<any> {
    clearTimeout(this.restartTimer)
    await this.start()
    return this.request("tools/call", { name, arguments: args, context }, CALL_TIMEOUT_MS)
  }

  stop() {
    this.stopping = true
    clearTimeout(this.restartTimer)
    this.send({ method: "exit" })
    const child = this.child
    setTimeout(() => child?.kill(), 1000).unref?.()
  }
}

export const OpencodeMattermost: Plugin = async ({ client, directory, worktree, project, serverUrl }) => {
  const sdk: any = (client as any)._client
  const cfg = sdk?.getConfig?.() ?? {}
  const baseUrl: string = cfg.baseUrl ?? String(serverUrl)
  const doFetch: typeof fetch = cfg.fetch ?? fetch

  // Serve the agent's HTTP requests with OpenCode's own client fetch: in TUI
  // and `opencode run` mode nothing listens on serverUrl.
  async function serveFetch(p: any) {
    const url = new URL(p.path, baseUrl)
    for (const [k, v] of p.query ?? []) url.searchParams.append(k, v)
    const headers = new Headers(cfg.headers ?? {})
    for (const [k, v] of Object.entries(p.headers ?? {})) headers.set(k, String(v))
    const res = await doFetch(new Request(url, { method: p.method ?? "GET", headers, body: p.body ?? undefined }))
    const bytes = new Uint8Array(await res.arrayBuffer())
    let body: string
    let bodyEncoding: string | undefined
    try {
      body = new TextDecoder("utf-8", { fatal: true }).decode(bytes)
    } catch {
      body = Buffer.from(bytes).toString("base64")
      bodyEncoding = "base64"
    }
    return { status: res.status, headers: Object.fromEntries(res.headers.entries()), body, bodyEncoding }
  }

  // The agent's `tui/toast`: best effort, so malformed ones and OpenCode's refusals are ignored.
  async function toast(p: any) {
    if (!p || typeof p !== "object" || typeof p.message !== "string") return
    const body = {
      title: typeof p.title === "string" ? p.title : undefined,
      message: p.message,
      variant: TOAST_VARIANTS.includes(p.variant) ? (p.variant as Variant) : "info",
    }
    try {
      await client.tui.showToast({ body })
    } catch {}
  }

  const init = { directory, worktree, projectID: project?.id ?? "", serverUrl: String(serverUrl) }
  const agent = new Agent(init, serveFetch, toast)
  let catalog: Spec[]
  let startError = ""
  try {
    catalog = await agent.start()
  } catch (e: any) {
    startError = e?.message ?? String(e)
    catalog = bundledCatalog()
  }
  const tools = Object.fromEntries(
    catalog.map((spec) => [
      spec.name,
      {
        description: spec.description,
        args: shape(z, spec.inputSchema),
        async execute(args: Record<string, unknown>, ctx: ToolContext) {
          const context = { sessionID: ctx.sessionID, messageID: ctx.messageID, agent: ctx.agent, directory: ctx.directory, worktree: ctx.worktree }
          try {
            const r = await agent.call(spec.name, args, context)
            return r.title || r.metadata ? { output: r.output, title: r.title, metadata: r.metadata ?? {} } : r.output
          } catch (e: any) {
            const message = String(e?.message ?? e)
            const hint = startError && !agent.child && !message.includes(startError) ? ` (at start-up: ${startError})` : ""
            throw new Error(`${spec.name} failed: ${message}${hint}`)
          }
        },
      } as ToolDefinition,
    ]),
  )
  return {
    tool: tools,
    event: async ({ event }) => agent.event(event),
    dispose: async () => agent.stop(),
  }
}

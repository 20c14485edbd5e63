// Benchmark: tools/call round trips through the real shim code and the real
// agent binary (each call also makes two opencode/fetch round trips back
// through the shim), and the agent's memory when idle. Prints numbers only;
// no thresholds.
import { readFileSync } from "node:fs"
import { OpencodeMattermost } from "../../opencode-plugin/index.ts"
import { ctx, fakeInput } from "./fake-opencode.ts"

const CALLS = Number(process.env.BENCH_CALLS ?? 1000)

function rss(pid: number) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8")
  const kb = (key: string) => Number(status.match(new RegExp(`${key}:\\s+(\\d+) kB`))?.[1] ?? NaN)
  return { rss: kb("VmRSS") / 1024, hwm: kb("VmHWM") / 1024 }
}
const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]

const hooks: any = await OpencodeMattermost(fakeInput().input)
const status = hooks.tool.mattermost_status
const first = await status.execute({ json: true }, ctx())
const pid = JSON.parse(typeof first === "string" ? first : first.output).agent.pid as number
await Bun.sleep(500)
const idle = rss(pid)

const times: number[] = []
for (let i = 0; i < CALLS; i++) {
  const t0 = Bun.nanoseconds()
  await status.execute({}, ctx())
  times.push((Bun.nanoseconds() - t0) / 1e6)
}
await Bun.sleep(500)
const after = rss(pid)
times.sort((a, b) => a - b)
const f = (n: number) => n.toFixed(3)
console.log(`tools/call mattermost_status through the shim (${CALLS} calls, each with 2 opencode/fetch round trips):`)
console.log(`  median ${f(pct(times, 50))} ms  p90 ${f(pct(times, 90))} ms  p99 ${f(pct(times, 99))} ms  max ${f(times[times.length - 1])} ms`)
console.log(`agent memory: idle RSS ${idle.rss.toFixed(1)} MiB; after ${CALLS} calls RSS ${after.rss.toFixed(1)} MiB (peak ${after.hwm.toFixed(1)} MiB)`)
await hooks.dispose()
process.exit(0)

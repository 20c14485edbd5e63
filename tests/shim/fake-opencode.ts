// A stand-in for what OpenCode hands a plugin: just enough of PluginInput for
// the shim, with a fetch that records requests and answers like OpenCode's API.
export type Seen = { method: string; url: string; directory: string | null }

export function fakeInput(directory = "/tmp/fake-project") {
  const seen: Seen[] = []
  const fetch = async (req: Request) => {
    const url = new URL(req.url)
    seen.push({ method: req.method, url: url.pathname + url.search, directory: req.headers.get("x-opencode-directory") })
    const json = (v: unknown, status = 200) => new Response(JSON.stringify(v), { status, headers: { "content-type": "application/json" } })
    if (url.pathname === "/global/health") return json({ healthy: true, version: "9.9.9-fake" })
    if (url.pathname === "/session") return json([{ id: "ses_fake1", slug: "fake-one", title: "Fake", time: { created: 1, updated: 2 } }])
    return json({ message: "not found" }, 404)
  }
  const client = {
    _client: {
      getConfig: () => ({ baseUrl: "http://localhost:4096", fetch, headers: { "x-opencode-directory": encodeURIComponent(directory) } }),
    },
  }
  return {
    seen,
    input: { client, directory, worktree: directory, project: { id: "fakeproj" }, serverUrl: new URL("http://localhost:4096"), $: undefined } as any,
  }
}

export const ctx = (sessionID = "ses_fake1") => ({ sessionID, messageID: "msg_1", agent: "build", directory: "/tmp/fake-project", worktree: "/tmp/fake-project", abort: new AbortController().signal, metadata() {}, ask: async () => {} }) as any

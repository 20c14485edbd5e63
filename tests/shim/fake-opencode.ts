// A stand-in for what OpenCode hands a plugin: just enough of PluginInput for
// the shim, with a fetch that records requests and answers like OpenCode's API,
// and a TUI that records toasts.
export type Seen = { method: string; url: string; directory: string | null }
export type Toast = { title?: string; message: string; variant: string }

export function fakeInput(directory = "/tmp/fake-project") {
  const seen: Seen[] = []
  const toasts: Toast[] = []
  const held = new Map<string, () => void>()
  const fetch = async (req: Request) => {
    const url = new URL(req.url)
    seen.push({ method: req.method, url: url.pathname + url.search, directory: req.headers.get("x-opencode-directory") })
    const json = (v: unknown, status = 200) => new Response(JSON.stringify(v), { status, headers: { "content-type": "application/json" } })
    const park = held.get(url.pathname)
    if (park) {
      held.delete(url.pathname)
      park()
      return new Promise<Response>(() => {})
    }
    if (url.pathname === "/global/health") return json({ healthy: true, version: "9.9.9-fake" })
    if (url.pathname === "/session") return json([{ id: "ses_fake1", slug: "fake-one", title: "Fake", time: { created: 1, updated: 2 } }])
    return json({ message: "not found" }, 404)
  }
  const client = {
    _client: {
      getConfig: () => ({ baseUrl: "http://localhost:4096", fetch, headers: { "x-opencode-directory": encodeURIComponent(directory) } }),
    },
    tui: {
      // Like the SDK: { body } in; OpenCode refusing is an error to swallow.
      async showToast({ body }: { body: Toast }) {
        toasts.push(body)
        if (body.message === "rejected by OpenCode") throw new Error("toast refused")
        return { data: true }
      },
    },
  }
  return {
    seen,
    toasts,
    /** Parks the next request for `path`, never answering it; resolves once it has arrived. */
    hold: (path: string) => new Promise<void>((resolve) => held.set(path, resolve)),
    input: { client, directory, worktree: directory, project: { id: "fakeproj" }, serverUrl: new URL("http://localhost:4096"), $: undefined } as any,
  }
}

export const ctx = (sessionID = "ses_fake1") => ({ sessionID, messageID: "msg_1", agent: "build", directory: "/tmp/fake-project", worktree: "/tmp/fake-project", abort: new AbortController().signal, metadata() {}, ask: async () => {} }) as any

/**
 * The emulator is safe to leave running: over real HTTP on 127.0.0.1 (node:http, so any Host and
 * Origin header can be sent), the test API needs the key, refuses web pages and non-JSON posts,
 * every route refuses foreign Host names (DNS rebinding), and reset deletes only what the
 * emulator wrote under its state dir.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises"
import { request } from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type EmulatorHandle, startEmulator } from "../src/Emulator.js"
import { getFaults, getLedger, resetEmulator, setFaults } from "../src/EmulatorControl.js"

interface Answer {
  readonly status: number
  readonly body: string
}

/** One request to 127.0.0.1:port with exactly these headers (Host included when given). */
const send = (port: number, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> =>
  new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, method, path, headers: { ...headers, ...(body === undefined ? {} : { "content-length": String(Buffer.byteLength(body)) }) } }, (res) => {
      let text = ""
      res.setEncoding("utf8")
      res.on("data", (chunk: string) => (text += chunk))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }))
      res.on("error", reject)
    })
    req.on("error", reject)
    req.end(body)
  })

const KEY = "sk-emulator-access-key"
const auth = { authorization: `Bearer ${KEY}` }
const json = { "content-type": "application/json" }

/** Every route of the test API, with a request that succeeds when all is in order. */
const CONTROL_CALLS: ReadonlyArray<{ readonly method: string; readonly path: string; readonly body?: string }> = [
  { method: "GET", path: "/_emulator/health" },
  { method: "GET", path: "/_emulator/ledger" },
  { method: "GET", path: "/_emulator/faults" },
  { method: "GET", path: "/_emulator/inflight" },
  { method: "POST", path: "/_emulator/faults", body: JSON.stringify({ errorRate: 0 }) },
  { method: "POST", path: "/_emulator/reset", body: "{}" }
]

describe("the test API with an API key", () => {
  let emulator: EmulatorHandle
  beforeAll(async () => {
    emulator = await startEmulator({ apiKey: KEY, validatingMs: 0, finalizingMs: 0, requestsPerSecond: Infinity })
  })
  afterAll(() => emulator.close())

  it("answers every route only with the key, in any of the API's header styles", async () => {
    for (const call of CONTROL_CALLS) {
      const headers = call.body === undefined ? {} : json
      const without = await send(emulator.port, call.method, call.path, headers, call.body)
      expect(without.status, `${call.method} ${call.path} without a key`).toBe(401)
      const wrong = await send(emulator.port, call.method, call.path, { ...headers, authorization: "Bearer not-the-key" }, call.body)
      expect(wrong.status, `${call.method} ${call.path} with a wrong key`).toBe(401)
      expect(wrong.body).not.toContain("not-the-key")
      for (const style of [auth, { "x-api-key": KEY }, { "api-key": KEY }, { "x-goog-api-key": KEY }]) {
        const ok = await send(emulator.port, call.method, call.path, { ...headers, ...style }, call.body)
        expect(ok.status, `${call.method} ${call.path} with ${Object.keys(style)[0]}`).toBe(200)
      }
    }
  })

  it("EmulatorControl sends the key and JSON bodies", async () => {
    await expect(getLedger(emulator.url)).rejects.toThrow(/401/)
    const options = { apiKey: KEY }
    expect((await setFaults(emulator.url, { dropLines: 0.25 }, options)).dropLines).toBe(0.25)
    expect((await getFaults(emulator.url, options)).dropLines).toBe(0.25)
    expect(await resetEmulator(emulator.url, options)).toEqual({ ok: true })
    expect((await getFaults(emulator.url, options)).dropLines).toBe(0)
    expect(await getLedger(emulator.url, options)).toEqual({ batches: [], deliveries: [], calls: [], calls_dropped: 0 })
  })
})

describe("the test API refuses what a web page could send", () => {
  let emulator: EmulatorHandle
  beforeAll(async () => {
    emulator = await startEmulator({ errorRate: 0.5 })
  })
  afterAll(() => emulator.close())

  it("refuses any request carrying an Origin header, on every route, with 403", async () => {
    for (const origin of ["https://evil.example", "null", `http://127.0.0.1:${emulator.port}`]) {
      for (const call of CONTROL_CALLS) {
        const answer = await send(emulator.port, call.method, call.path, { origin, ...(call.body === undefined ? {} : json) }, call.body)
        expect(answer.status, `${call.method} ${call.path} from ${origin}`).toBe(403)
      }
    }
    expect((await getFaults(emulator.url)).errorRate).toBe(0.5) // nothing was changed
  })

  it("refuses a POST whose body is not declared JSON (what a cross-site form can send) with 415", async () => {
    const patch = JSON.stringify({ errorRate: 0 })
    for (const type of ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", undefined]) {
      const headers = type === undefined ? {} : { "content-type": type }
      const faults = await send(emulator.port, "POST", "/_emulator/faults", headers, patch)
      expect(faults.status, `faults as ${type}`).toBe(415)
      const reset = await send(emulator.port, "POST", "/_emulator/reset", headers, "{}")
      expect(reset.status, `reset as ${type}`).toBe(415)
    }
    expect((await getFaults(emulator.url)).errorRate).toBe(0.5) // nothing was changed
    const declared = await send(emulator.port, "POST", "/_emulator/faults", { "content-type": "application/json; charset=utf-8" }, patch)
    expect(declared.status).toBe(200)
    expect((await getFaults(emulator.url)).errorRate).toBe(0)
  })
})

describe("Host names (DNS rebinding)", () => {
  const API_CALLS: ReadonlyArray<{ readonly method: string; readonly path: string }> = [
    { method: "GET", path: "/v1/files" },
    { method: "GET", path: "/v1/batches" },
    { method: "GET", path: "/v1/messages/batches" },
    { method: "GET", path: "/v1beta/batches" }
  ]
  const anthropic = { "x-api-key": "k", "anthropic-version": "2023-06-01" }

  it("answers loopback names and refuses any other Host with 403, on the test API and the API routes", async () => {
    const emulator = await startEmulator({})
    try {
      const port = emulator.port
      for (const call of [...CONTROL_CALLS.filter((c) => c.method === "GET"), ...API_CALLS]) {
        for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `LOCALHOST:${port}`, "localhost"]) {
          const ok = await send(port, call.method, call.path, { host, ...anthropic }, undefined)
          expect(ok.status, `${call.method} ${call.path} as ${host}`).toBe(200)
        }
        for (const host of [`evil.example:${port}`, "evil.example", `localhost.evil.example:${port}`, `127.0.0.1.nip.io:${port}`, `user@127.0.0.1:${port}`]) {
          const refused = await send(port, call.method, call.path, { host, ...anthropic }, undefined)
          expect(refused.status, `${call.method} ${call.path} as ${host}`).toBe(403)
        }
      }
      // A state-changing API call from a rebound name never takes effect.
      const created = await send(port, "POST", "/v1/chat/completions", { host: `evil.example:${port}`, ...json }, JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }))
      expect(created.status).toBe(403)
    } finally {
      await emulator.close()
    }
  })

  it("answers the names of allowedHosts too, and any name with '*'; refuses a malformed option", async () => {
    const named = await startEmulator({ allowedHosts: ["Emulator.Internal", "10.1.2.3"] })
    const any = await startEmulator({ allowedHosts: ["*"] })
    try {
      for (const host of [`emulator.internal:${named.port}`, "EMULATOR.INTERNAL", `10.1.2.3:${named.port}`, `localhost:${named.port}`]) {
        expect((await send(named.port, "GET", "/v1/files", { host })).status, host).toBe(200)
        expect((await send(named.port, "GET", "/_emulator/health", { host })).status, host).toBe(200)
      }
      expect((await send(named.port, "GET", "/v1/files", { host: `evil.example:${named.port}` })).status).toBe(403)
      expect((await send(any.port, "GET", "/v1/files", { host: `evil.example:${any.port}` })).status).toBe(200)
      // The test API keeps its other checks whatever the Host policy.
      expect((await send(any.port, "GET", "/_emulator/health", { host: "evil.example", origin: "https://evil.example" })).status).toBe(403)
    } finally {
      await named.close()
      await any.close()
    }
    await expect(startEmulator({ allowedHosts: ["emulator:8080"] })).rejects.toThrow(/allowedHosts/)
  })
})

describe("reset under a state dir", () => {
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "sluice-emulator-access-"))
  })
  afterAll(() => rm(dir, { recursive: true, force: true }))

  const upload = async (url: string, content: string): Promise<string> => {
    const form = new FormData()
    form.append("purpose", "batch")
    form.append("file", new Blob([content]), "input.jsonl")
    const response = await fetch(`${url}/v1/files`, { method: "POST", body: form })
    expect(response.status).toBe(200)
    return ((await response.json()) as { id: string }).id
  }

  const runBatch = async (url: string): Promise<void> => {
    const line = { custom_id: "r-1", method: "POST", url: "/v1/chat/completions", body: { model: "gpt-4o-mini", messages: [{ role: "user", content: "x" }] } }
    const fileId = await upload(url, `${JSON.stringify(line)}\n`)
    const created = await fetch(`${url}/v1/batches`, {
      method: "POST",
      headers: json,
      body: JSON.stringify({ input_file_id: fileId, endpoint: "/v1/chat/completions", completion_window: "24h" })
    })
    expect(created.status).toBe(200)
    const { id } = (await created.json()) as { id: string }
    // validatingMs 0 and instant processing: the first retrieves end it; none waits on the clock.
    for (let i = 0; i < 200; i++) {
      const batch = (await (await fetch(`${url}/v1/batches/${id}`)).json()) as { status: string }
      if (batch.status === "completed") return
    }
    throw new Error(`batch ${id} did not complete`)
  }

  /**
   * How the first emulator's state.json is handed to the second: as written; as an earlier
   * version wrote it (no list of the files it wrote: its records name them); or edited by hand
   * to claim the user's files (never deleted: only names the emulator gives are taken).
   */
  const handovers = {
    "as written": (state: Record<string, unknown>) => state,
    "by an earlier version": ({ format: _format, owned: _owned, ...state }: Record<string, unknown>) => state,
    "claiming the user's files": (state: Record<string, unknown>) => ({
      ...state,
      owned: [...(state["owned"] as Array<string>), "files/dataset.jsonl/", "notes.txt", "files/../notes.txt", "batches/../../outside.txt"]
    })
  }

  it.each(Object.entries(handovers))("deletes only the files the emulator wrote, those of an earlier emulator on the dir included (state %s)", async (name, handover) => {
    const stateDir = join(dir, name.replaceAll(" ", "-").replaceAll("'", ""))
    await mkdir(join(stateDir, "files"), { recursive: true })
    await mkdir(join(stateDir, "batches"), { recursive: true })
    const foreign = {
      [join(stateDir, "notes.txt")]: "mine\n",
      [join(stateDir, "files", "dataset.jsonl")]: '{"mine":true}\n',
      [join(stateDir, "batches", "plan.md")]: "# mine\n",
      [join(stateDir, "..", "outside.txt")]: "beside the state dir\n"
    }
    for (const [path, text] of Object.entries(foreign)) await writeFile(path, text)
    const options = { stateDir, validatingMs: 0, finalizingMs: 0, requestsPerSecond: Infinity }

    const first = await startEmulator(options)
    try {
      await runBatch(first.url)
    } finally {
      await first.close()
    }
    const statePath = join(stateDir, "state.json")
    const written = JSON.parse(await readFile(statePath, "utf8")) as Record<string, unknown>
    expect(written["owned"]).toEqual(expect.arrayContaining([expect.stringMatching(/^files\/file-/)]))
    await writeFile(statePath, JSON.stringify(handover(written)))
    const second = await startEmulator(options)
    try {
      await runBatch(second.url)
      expect((await readdir(join(stateDir, "files"))).length).toBeGreaterThan(1) // the emulator's files sit beside the user's
      expect((await getLedger(second.url)).batches).toHaveLength(2)
      await resetEmulator(second.url)
      expect(await getLedger(second.url)).toEqual({ batches: [], deliveries: [], calls: [], calls_dropped: 0 })
    } finally {
      await second.close()
    }
    for (const [path, text] of Object.entries(foreign)) expect(await readFile(path, "utf8"), path).toBe(text)
    expect((await readdir(join(stateDir, "files"))).sort()).toEqual(["dataset.jsonl"])
    expect((await readdir(join(stateDir, "batches"))).sort()).toEqual(["plan.md"])
    expect((await readdir(stateDir)).sort()).toEqual(["batches", "files", "notes.txt", "state.json"])
  })

  it("refuses a state dir whose state.json is not the emulator's, and leaves it as it was", async () => {
    const stateDir = join(dir, "foreign")
    await mkdir(stateDir, { recursive: true })
    for (const text of ['{"name":"my-app","version":"1.0.0"}', "not json at all", '{"version":1}']) {
      await writeFile(join(stateDir, "state.json"), text)
      await expect(startEmulator({ stateDir })).rejects.toThrow(/state\.json is not the emulator's state file/)
      expect(await readFile(join(stateDir, "state.json"), "utf8")).toBe(text)
    }
  })
})

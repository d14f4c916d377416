/**
 * The emulator over raw HTTP: wire details the SDK hides (multipart framing,
 * validation codes, fault switches, the test API).
 */
import { request } from "node:http"
import { Ajv } from "ajv"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Emulator from "../src/Emulator.js"
import { advanceClock, getClock, getFaults, getLedger, holdClock, releaseClock, resetEmulator, setClock, setFaults } from "../src/EmulatorControl.js"
import { Tokens } from "@sluice/core"

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const chatLine = (customId: string, text: string, body: Record<string, unknown> = {}) => ({
  custom_id: customId,
  method: "POST",
  url: "/v1/chat/completions",
  body: { model: "gpt-4o-mini", messages: [{ role: "user", content: text }], ...body }
})

const toJsonl = (items: ReadonlyArray<unknown>): string => items.map((item) => (typeof item === "string" ? item : JSON.stringify(item))).join("\n") + "\n"

const SCHEMA = {
  type: "object",
  properties: { sentiment: { enum: ["positive", "negative", "neutral"] }, score: { type: "integer", minimum: 0, maximum: 10 } },
  required: ["sentiment", "score"],
  additionalProperties: false
}
const structured = { response_format: { type: "json_schema", json_schema: { name: "S", strict: true, schema: SCHEMA } } }
const validate = new Ajv({ strict: false }).compile(SCHEMA)

interface Http {
  readonly status: number
  readonly headers: Headers
  readonly body: any
}

/**
 * `tick` moves the emulator's clock (when the test drives it) between two polls: every state
 * is reached by polling, never by waiting for wall-clock time.
 */
const client = (base: string, tick: () => void = () => undefined) => {
  const json = async (method: string, path: string, body?: unknown): Promise<Http> => {
    const response = await fetch(`${base}${path}`, {
      method,
      headers: { "content-type": "application/json" },
      ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) })
    })
    const text = await response.text()
    return { status: response.status, headers: response.headers, body: text.length > 0 && text.startsWith("{") ? JSON.parse(text) : text }
  }
  const upload = async (content: string, filename = "input.jsonl", purpose = "batch"): Promise<Http> => {
    const form = new FormData()
    form.append("purpose", purpose)
    form.append("file", new Blob([content]), filename)
    const response = await fetch(`${base}/v1/files`, { method: "POST", body: form })
    return { status: response.status, headers: response.headers, body: await response.json() }
  }
  const submit = async (items: ReadonlyArray<unknown>, endpoint = "/v1/chat/completions"): Promise<any> => {
    const file = await upload(toJsonl(items))
    expect(file.status).toBe(200)
    const created = await json("POST", "/v1/batches", { input_file_id: file.body.id, endpoint, completion_window: "24h" })
    expect(created.status).toBe(200)
    return created.body
  }
  const poll = async (id: string, done = (b: any) => ["completed", "failed", "expired", "cancelled"].includes(b.status)): Promise<any> => {
    let body: any
    for (let i = 0; i < 1000; i++) {
      body = (await json("GET", `/v1/batches/${id}`)).body
      if (done(body)) return body
      tick()
    }
    throw new Error(`batch ${id} stuck in ${body.status}`)
  }
  const lines = async (fileId: string | null): Promise<Array<any>> => {
    if (fileId === null) return []
    const text = await (await fetch(`${base}/v1/files/${fileId}/content`)).text()
    return text.split("\n").filter((line) => line.length > 0).map((line) => JSON.parse(line))
  }
  return { json, upload, submit, poll, lines }
}

/** Sends a request body in the given chunks, with pauses, over node:http. */
const sendChunked = (url: string, path: string, headers: Record<string, string>, chunks: ReadonlyArray<Buffer>) =>
  new Promise<{ status: number; body: any }>((resolve, reject) => {
    const req = request(`${url}${path}`, { method: "POST", headers }, (res) => {
      const parts: Array<Buffer> = []
      res.on("data", (chunk: Buffer) => parts.push(chunk))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(parts).toString("utf8")) }))
    })
    req.on("error", reject)
    void (async () => {
      for (const chunk of chunks) {
        req.write(chunk)
        await sleep(0)
      }
      req.end()
    })()
  })

describe("emulator over raw HTTP", () => {
  let emulator: Emulator.EmulatorHandle
  let api: ReturnType<typeof client>
  /** The emulator's clock: moved 10 ms by each poll that has not seen what it waits for. */
  let now = Date.now()

  beforeAll(async () => {
    emulator = await Emulator.startEmulator({ clock: () => now, validatingMs: 10, finalizingMs: 10, cancellingMs: 20, requestsPerSecond: 5000 })
    api = client(emulator.url, () => void (now += 10))
  })
  afterAll(async () => {
    await emulator.close()
  })

  it("binds 127.0.0.1 on a free port and answers unknown routes with an OpenAI-shaped 404", async () => {
    expect(emulator.url).toBe(`http://127.0.0.1:${emulator.port}`)
    expect(emulator.port).toBeGreaterThan(0)
    const res = await api.json("GET", "/v1/nothing-here")
    expect(res.status).toBe(404)
    expect(res.body.error).toEqual({ message: "Invalid URL (GET /v1/nothing-here)", type: "invalid_request_error", param: null, code: null })
  })

  it("parses multipart uploads streamed in odd chunks, whatever the field order", async () => {
    const boundary = "----sluiceBoundary7MA4YWxkTrZu0gW"
    // Content with CRLFs and a near-boundary to trip a naive parser.
    const content = Buffer.from(
      Array.from({ length: 20_000 }, (_, i) => `{"i":${i},"note":"\\r\\n--${boundary.slice(0, 10)}"}`).join("\r\n") + "\r\n"
    )
    const body = Buffer.concat([
      Buffer.from(`preamble to ignore\r\n--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="odd.jsonl"\r\nContent-Type: application/jsonl\r\n\r\n`),
      content,
      Buffer.from(`\r\n--${boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n--${boundary}--\r\nepilogue`)
    ])
    const chunks: Array<Buffer> = []
    const sizes = [1, 7, 13, boundary.length + 3, 4096, 65_537]
    for (let offset = 0, i = 0; offset < body.length; i++) {
      const size = sizes[i % sizes.length]!
      chunks.push(body.subarray(offset, offset + size))
      offset += size
    }
    const res = await sendChunked(emulator.url, "/v1/files", { "content-type": `multipart/form-data; boundary=${boundary}` }, chunks)
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({ object: "file", purpose: "user_data", filename: "odd.jsonl", bytes: content.length })
    const downloaded = Buffer.from(await (await fetch(`${emulator.url}/v1/files/${res.body.id}/content`)).arrayBuffer())
    expect(downloaded.equals(content)).toBe(true)
  })

  it("rejects bad uploads with 400s", async () => {
    expect((await api.upload("{}\n", "data.csv")).body.error.message).toBe("Invalid file format for Batch API. Must be .jsonl")
    const noPurpose = new FormData()
    noPurpose.append("file", new Blob(["{}\n"]), "x.jsonl")
    const r1 = await fetch(`${emulator.url}/v1/files`, { method: "POST", body: noPurpose })
    expect(r1.status).toBe(400)
    expect(((await r1.json()) as any).error.param).toBe("purpose")
    const noFile = new FormData()
    noFile.append("purpose", "batch")
    const r2 = await fetch(`${emulator.url}/v1/files`, { method: "POST", body: noFile })
    expect(r2.status).toBe(400)
    expect(((await r2.json()) as any).error.param).toBe("file")
    const notMultipart = await api.json("POST", "/v1/files", { purpose: "batch" })
    expect(notMultipart.status).toBe(400)
    const truncated = await sendChunked(emulator.url, "/v1/files", { "content-type": "multipart/form-data; boundary=abc" }, [
      Buffer.from('--abc\r\nContent-Disposition: form-data; name="file"; filename="x.jsonl"\r\n\r\n{"a":1}\n')
    ])
    expect(truncated.status).toBe(400)
    expect(truncated.body.error.message).toMatch(/Malformed multipart/)
    // Malformed JSONL is accepted at upload time (it fails at batch validation).
    expect((await api.upload("this is not json\n")).status).toBe(200)
  })

  it("refuses to download batch input files, like the real service", async () => {
    const file = await api.upload(toJsonl([chatLine("d-1", "x")]))
    const res = await api.json("GET", `/v1/files/${file.body.id}/content`)
    expect(res.status).toBe(400)
    expect(res.body.error.message).toBe("Not allowed to download files of purpose: batch")
  })

  it("validates batch creation bodies", async () => {
    const file = (await api.upload(toJsonl([chatLine("v-1", "x")]))).body.id
    const other = (await api.upload("{}\n", "other.jsonl", "user_data")).body.id
    const ok = { input_file_id: file, endpoint: "/v1/chat/completions", completion_window: "24h" }
    const cases: Array<[unknown, number, string | null]> = [
      [{ ...ok, input_file_id: undefined }, 400, "input_file_id"],
      [{ ...ok, endpoint: undefined }, 400, "endpoint"],
      [{ ...ok, endpoint: "/v1/nope" }, 400, "endpoint"],
      [{ ...ok, endpoint: "/v1/responses" }, 400, "endpoint"],
      [{ ...ok, completion_window: undefined }, 400, "completion_window"],
      [{ ...ok, completion_window: "48h" }, 400, "completion_window"],
      [{ ...ok, metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, "v"])) }, 400, "metadata"],
      [{ ...ok, metadata: { k: 1 } }, 400, "metadata.k"],
      [{ ...ok, metadata: { ["k".repeat(65)]: "v" } }, 400, "metadata"],
      [{ ...ok, metadata: { k: "v".repeat(513) } }, 400, "metadata.k"],
      [{ ...ok, input_file_id: "file-missing" }, 404, "input_file_id"],
      [{ ...ok, input_file_id: other }, 400, "input_file_id"],
      ["not json", 400, null]
    ]
    for (const [body, status, param] of cases) {
      const res = await api.json("POST", "/v1/batches", body)
      expect([res.status, res.body.error?.param], JSON.stringify(body).slice(0, 80)).toEqual([status, param])
      expect(res.body.error.type).toBe("invalid_request_error")
    }
    const sixteen = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, "v"]))
    expect((await api.json("POST", "/v1/batches", { ...ok, metadata: sixteen })).status).toBe(200)
  })

  it("fails validation with the documented error codes and line numbers", async () => {
    const cases: Array<[string, { code: string; line: number | null; param: string | null }]> = [
      [toJsonl([chatLine("a", "x"), "{not json"]), { code: "invalid_json_line", line: 2, param: null }],
      [toJsonl([chatLine("a", "x"), { ...chatLine("b", "y"), url: "/v1/embeddings" }]), { code: "url_mismatch", line: 2, param: "url" }],
      [toJsonl([chatLine("a", "x"), "", chatLine("b", "y", { model: "gpt-4o" })]), { code: "model_mismatch", line: 3, param: "body.model" }],
      [toJsonl([{ ...chatLine("a", "x"), method: "GET" }]), { code: "invalid_request", line: 1, param: "method" }],
      [toJsonl([{ method: "POST", url: "/v1/chat/completions", body: { model: "gpt-4o-mini" } }]), { code: "invalid_request", line: 1, param: "custom_id" }],
      ["", { code: "empty_file", line: null, param: null }]
    ]
    for (const [content, expected] of cases) {
      const file = await api.upload(content)
      const created = await api.json("POST", "/v1/batches", { input_file_id: file.body.id, endpoint: "/v1/chat/completions", completion_window: "24h" })
      const batch = await api.poll(created.body.id)
      expect(batch.status).toBe("failed")
      expect(batch.errors.object).toBe("list")
      expect(batch.errors.data[0]).toMatchObject(expected)
      expect(typeof batch.errors.data[0].message).toBe("string")
      expect(batch.request_counts).toEqual({ total: 0, completed: 0, failed: 0 })
    }
  })

  it("fails a file over 50,000 requests with too_many_tasks", async () => {
    const line = (i: number) => `{"custom_id":"t${i}","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}]}}`
    const content = Array.from({ length: 50_001 }, (_, i) => line(i)).join("\n")
    const batch = await api.poll((await api.submit([content])).id)
    expect(batch.status).toBe("failed")
    expect(batch.errors.data).toEqual([expect.objectContaining({ code: "too_many_tasks", line: null })])
  })

  it("answers malformed requests inside a batch with 400 lines in the error file", async () => {
    const bad = { custom_id: "bad-1", method: "POST", url: "/v1/chat/completions", body: { model: "gpt-4o-mini" } }
    const batch = await api.poll((await api.submit([chatLine("good-1", "fine"), bad])).id)
    expect(batch.status).toBe("completed")
    expect(batch.request_counts).toEqual({ total: 2, completed: 1, failed: 1 })
    const [line] = await api.lines(batch.error_file_id)
    expect(line).toMatchObject({
      custom_id: "bad-1",
      error: null,
      response: { status_code: 400, body: { error: { type: "invalid_request_error", param: "messages" } } }
    })
    expect(await api.lines(batch.output_file_id)).toHaveLength(1)
  })

  it("reports output_file_id null when nothing succeeded", async () => {
    const bad = { custom_id: "only-bad", method: "POST", url: "/v1/chat/completions", body: { model: "gpt-4o-mini" } }
    const batch = await api.poll((await api.submit([bad])).id)
    expect(batch.status).toBe("completed")
    expect(batch.output_file_id).toBeNull()
    expect(batch.error_file_id).not.toBeNull()
  })

  it("serverErrorRate answers 500/502/503, never twice in a row on one path", async () => {
    await setFaults(emulator.url, { serverErrorRate: 0.5 })
    try {
      const statuses: Array<number> = []
      for (let i = 0; i < 12; i++) statuses.push((await api.json("GET", "/v1/files?limit=1")).status)
      expect(statuses.filter((s) => s >= 500).length).toBeGreaterThanOrEqual(4)
      expect(new Set(statuses.filter((s) => s >= 500))).toEqual(new Set([500, 502, 503]))
      for (let i = 1; i < statuses.length; i++) expect(statuses[i]! >= 500 && statuses[i - 1]! >= 500).toBe(false)
    } finally {
      await setFaults(emulator.url, { serverErrorRate: 0 })
    }
  })

  it("resetRate drops the response after the call took effect (a batch created, its answer lost)", async () => {
    const file = await api.upload(toJsonl([chatLine("lost-1", "x")]))
    await setFaults(emulator.url, { resetRate: 1 })
    let failed = false
    try {
      await fetch(`${emulator.url}/v1/batches`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ input_file_id: file.body.id, endpoint: "/v1/chat/completions", completion_window: "24h", metadata: { orphan: "yes" } })
      })
    } catch {
      failed = true
    } finally {
      await setFaults(emulator.url, { resetRate: 0 })
    }
    expect(failed).toBe(true)
    const listed = await api.json("GET", "/v1/batches?limit=100")
    expect(listed.body.data.filter((b: any) => b.metadata?.orphan === "yes")).toHaveLength(1)
  })

  it("dropLines silently omits lines from the result files (the ledger agrees)", async () => {
    await setFaults(emulator.url, { dropLines: 0.5 })
    try {
      const items = Array.from({ length: 40 }, (_, i) => chatLine(`drop-${i}`, `text ${i}`))
      const batch = await api.poll((await api.submit(items)).id)
      expect(batch.request_counts).toEqual({ total: 40, completed: 40, failed: 0 })
      const output = await api.lines(batch.output_file_id)
      expect(output.length).toBeGreaterThan(0)
      expect(output.length).toBeLessThan(40)
      const ledger = await getLedger(emulator.url)
      expect(ledger.deliveries.filter((d) => d.batch_id === batch.id).map((d) => d.custom_id).sort()).toEqual(output.map((l) => l.custom_id).sort())
    } finally {
      await setFaults(emulator.url, { dropLines: 0 })
    }
  })

  it("lateOutputFileMs hides output_file_id for a while after completion", async () => {
    await setFaults(emulator.url, { lateOutputFileMs: 300 })
    try {
      const created = await api.submit([chatLine("late-1", "x")])
      const completed = await api.poll(created.id)
      expect(completed.status).toBe("completed")
      expect(completed.output_file_id).toBeNull()
      const later = await api.poll(created.id, (b) => b.output_file_id !== null)
      expect(later.output_file_id).toMatch(/^file-/)
      expect(await api.lines(later.output_file_id)).toHaveLength(1)
    } finally {
      await setFaults(emulator.url, { lateOutputFileMs: 0 })
    }
  })

  it("invalidJsonRate spoils first-time structured answers only", async () => {
    await setFaults(emulator.url, { invalidJsonRate: 1 })
    try {
      const items = Array.from({ length: 10 }, (_, i) => chatLine(`inv-${i}`, `text ${i}`, structured))
      const conforms = (content: string) => {
        try {
          return validate(JSON.parse(content))
        } catch {
          return false
        }
      }
      const contents = async (batch: any) =>
        (await api.lines(batch.output_file_id)).map((l) => l.response.body.choices[0].message.content as string)
      const first = await api.poll((await api.submit(items)).id)
      expect(first.request_counts).toEqual({ total: 10, completed: 10, failed: 0 })
      expect((await contents(first)).some(conforms)).toBe(false)
      const second = await api.poll((await api.submit(items)).id)
      expect((await contents(second)).every(conforms)).toBe(true)

      const body = { model: "gpt-4o-mini", messages: [{ role: "user", content: "sync structured" }], ...structured }
      const a = await api.json("POST", "/v1/chat/completions", body)
      const b = await api.json("POST", "/v1/chat/completions", body)
      expect(conforms(a.body.choices[0].message.content)).toBe(false)
      expect(conforms(b.body.choices[0].message.content)).toBe(true)
    } finally {
      await setFaults(emulator.url, { invalidJsonRate: 0 })
    }
  })

  it("answers chat deterministically: json_object, plain text, n choices, and 400 for bad bodies", async () => {
    // a model without a known tokenizer (a gateway's Llama)
    const body = { model: "llama-3.1-8b-instant", messages: [{ role: "user", content: "same question" }] }
    const a = await api.json("POST", "/v1/chat/completions", body)
    const b = await api.json("POST", "/v1/chat/completions", body)
    expect(a.body.choices[0].message.content).toBe(b.body.choices[0].message.content)
    expect(a.body).toMatchObject({ object: "chat.completion", model: "llama-3.1-8b-instant", system_fingerprint: null })
    expect(a.body.choices[0]).toMatchObject({ index: 0, finish_reason: "stop", logprobs: null, message: { role: "assistant", refusal: null } })
    expect(a.body.usage).toEqual({
      // no tokenizer for the model: about four characters a token, plus the chat framing
      prompt_tokens: Tokens.chat("llama-3.1-8b-instant", body.messages).tokens,
      completion_tokens: Math.ceil(a.body.choices[0].message.content.length / 4),
      total_tokens: a.body.usage.prompt_tokens + a.body.usage.completion_tokens,
      prompt_tokens_details: { cached_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 0 }
    })
    const obj = await api.json("POST", "/v1/chat/completions", { ...body, response_format: { type: "json_object" }, n: 2 })
    expect(obj.body.choices).toHaveLength(2)
    expect(typeof JSON.parse(obj.body.choices[1].message.content)).toBe("object")
    const missing = await api.json("POST", "/v1/chat/completions", { model: "gpt-4o-mini" })
    expect(missing.status).toBe(400)
    expect(missing.body.error.param).toBe("messages")
    const streaming = await api.json("POST", "/v1/chat/completions", { ...body, stream: true })
    expect(streaming.status).toBe(400)
  })

  it("gets and validates faults at runtime", async () => {
    const faults = await getFaults(emulator.url)
    expect(faults).toMatchObject({ errorRate: 0, rateLimitRate: 0, requestsPerSecond: 5000 })
    const bad = await api.json("POST", "/_emulator/faults", { errorRate: 2 })
    expect(bad.status).toBe(400)
    const unknown = await api.json("POST", "/_emulator/faults", { nope: 1 })
    expect(unknown.status).toBe(400)
    expect((await setFaults(emulator.url, { requestsPerSecond: "Infinity" })).requestsPerSecond).toBe("Infinity")
    await setFaults(emulator.url, { requestsPerSecond: 5000 })
  })
})

describe("emulator state", () => {
  it("resets all state on POST /_emulator/reset", async () => {
    const emulator = await Emulator.startEmulator({ validatingMs: 0, finalizingMs: 0, requestsPerSecond: Infinity, errorRate: 0.5 })
    try {
      const api = client(emulator.url)
      await api.poll((await api.submit([chatLine("r-1", "x")])).id)
      await setFaults(emulator.url, { errorRate: 0 })
      expect((await getLedger(emulator.url)).batches).toHaveLength(1)
      await resetEmulator(emulator.url)
      expect(await getLedger(emulator.url)).toEqual({ batches: [], deliveries: [], calls: [], calls_dropped: 0 })
      expect((await api.json("GET", "/v1/files")).body.data).toEqual([])
      expect((await getFaults(emulator.url)).errorRate).toBe(0.5) // back to the start-up settings
    } finally {
      await emulator.close()
    }
  })

  it("derives the lifecycle from the clock: validating, in_progress with growing counts, finalizing, completed", async () => {
    let now = 1_700_000_000_000
    const emulator = await Emulator.startEmulator({
      clock: () => now,
      validatingMs: 1000,
      requestsPerSecond: 10,
      finalizingMs: 1000
    })
    try {
      const api = client(emulator.url)
      const created = await api.submit(Array.from({ length: 20 }, (_, i) => chatLine(`clk-${i}`, `t${i}`)))
      const at = async (ms: number) => {
        now = 1_700_000_000_000 + ms
        return (await api.json("GET", `/v1/batches/${created.id}`)).body
      }
      expect((await at(999)).status).toBe("validating")
      const started = await at(1000)
      expect(started).toMatchObject({ status: "in_progress", in_progress_at: 1_700_000_001, request_counts: { total: 20, completed: 0 } })
      expect((await at(1500)).request_counts.completed).toBe(5)
      expect((await at(2900)).request_counts.completed).toBe(19)
      expect(await at(3000)).toMatchObject({ status: "finalizing", finalizing_at: 1_700_000_003, request_counts: { completed: 20 } })
      const done = await at(4000)
      expect(done).toMatchObject({ status: "completed", completed_at: 1_700_000_004, created_at: 1_700_000_000 })
      expect(await api.lines(done.output_file_id)).toHaveLength(20)
    } finally {
      await emulator.close()
    }
  })

  it("holds, advances and releases its clock through POST /_emulator/clock", async () => {
    const emulator = await Emulator.startEmulator({ validatingMs: 1000, requestsPerSecond: 10, finalizingMs: 1000 })
    try {
      const api = client(emulator.url)
      const held = await holdClock(emulator.url)
      expect(held.held).toBe(true)
      const created = await api.submit(Array.from({ length: 20 }, (_, i) => chatLine(`hold-${i}`, `t${i}`)))
      expect(created.status).toBe("validating")
      // Held: however long this takes, the clock stands still and the batch stays where it is.
      await sleep(20)
      expect(await getClock(emulator.url)).toEqual(held)
      expect((await api.json("GET", `/v1/batches/${created.id}`)).body.status).toBe("validating")
      const at = async (advanceMs: number) => {
        await advanceClock(emulator.url, advanceMs)
        return (await api.json("GET", `/v1/batches/${created.id}`)).body
      }
      expect(await at(1000)).toMatchObject({ status: "in_progress", in_progress_at: Math.floor((held.now + 1000) / 1000) })
      expect((await at(500)).request_counts.completed).toBe(5)
      expect((await at(1500)).status).toBe("finalizing")
      expect(await at(999)).toMatchObject({ status: "finalizing", request_counts: { completed: 20 } })
      const done = await at(1)
      expect(done).toMatchObject({ status: "completed", completed_at: Math.floor((held.now + 4000) / 1000) })
      expect(await api.lines(done.output_file_id)).toHaveLength(20)
      expect((await getClock(emulator.url)).now).toBe(held.now + 4000)

      // Released, it runs on from where it stood (it never jumps back to the wall clock).
      const released = await releaseClock(emulator.url)
      expect(released.held).toBe(false)
      expect(released.now).toBeGreaterThanOrEqual(held.now + 4000)
      // Advance and release in one call; bad settings are refused and change nothing.
      expect((await setClock(emulator.url, { hold: true, advanceMs: 60_000 })).now).toBeGreaterThanOrEqual(held.now + 64_000)
      const before = await getClock(emulator.url)
      for (const body of [{ advanceMs: -1 }, { advanceMs: "5" }, { hold: false }, { hold: true, release: true }, { rewind: 1 }, [1]]) {
        const res = await api.json("POST", "/_emulator/clock", body)
        expect(res.status, JSON.stringify(body)).toBe(400)
        expect(res.body.error.type).toBe("invalid_request_error")
      }
      expect(await getClock(emulator.url)).toEqual(before)
      expect((await setClock(emulator.url, { advanceMs: 1000, release: true })).held).toBe(false)
      expect((await getClock(emulator.url)).now).toBeGreaterThanOrEqual(before.now + 1000)
    } finally {
      await emulator.close()
    }
  })

  it("works as a scoped Effect resource", async () => {
    const url = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const handle = yield* Emulator.scoped({})
          const health = yield* Effect.promise(() => fetch(`${handle.url}/_emulator/health`).then((r) => r.json()))
          expect(health).toEqual({ ok: true })
          return handle.url
        })
      )
    )
    await expect(fetch(`${url}/_emulator/health`)).rejects.toThrow()
  })
})

describe("approximateTokens", () => {
  // Text whose real gpt-4o-mini count is far from four characters a token.
  const messages = [{ role: "user", content: "internationalization ".repeat(40) }]
  const format = { name: "S", schema: SCHEMA }
  const line = chatLine("r1", "", { messages, response_format: { type: "json_schema", json_schema: { ...format, strict: true } } })
  const real = Tokens.chat("gpt-4o-mini", messages).tokens + Tokens.schema("gpt-4o-mini", format).tokens
  // No model, no tokenizer: the approximation `sluice estimate` uses for other models.
  const approximate = Tokens.chat("", messages).tokens + Tokens.schema("", format).tokens

  const usageOf = async (options: Emulator.EmulatorOptions) => {
    let now = Date.now()
    const emulator = await Emulator.startEmulator({ clock: () => now, validatingMs: 10, finalizingMs: 10, requestsPerSecond: 5000, ...options })
    try {
      const api = client(emulator.url, () => void (now += 10))
      const batch = await api.poll((await api.submit([line])).id)
      const [result] = await api.lines(batch.output_file_id)
      const online = await api.json("POST", "/v1/chat/completions", line.body)
      return { batch: result.response.body.usage.prompt_tokens, online: online.body.usage.prompt_tokens }
    } finally {
      await emulator.close()
    }
  }

  it("counts usage with the model's tokenizer by default, at ~4 characters a token when asked (batch and real-time)", async () => {
    expect(real).not.toBe(approximate)
    expect(await usageOf({})).toEqual({ batch: real, online: real })
    expect(await usageOf({ approximateTokens: true })).toEqual({ batch: approximate, online: approximate })
  })
})

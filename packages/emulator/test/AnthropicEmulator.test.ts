/**
 * The emulator's Anthropic routes over plain HTTP: auth and versions, synchronous envelope
 * validation (400 / 413), the streamed body reader, state errors, dropLines and the ledger,
 * and a restart on the same state directory.
 */
import { request as httpRequest } from "node:http"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type EmulatorHandle, startEmulator } from "../src/Emulator.js"
import { getLedger, setFaults } from "../src/EmulatorControl.js"
import { BodyError, RequestsScanner } from "../src/internal/anthropicBody.js"

const KEY = "sk-ant-emulator-raw"
/** The test API takes the same key. */
const control = { apiKey: KEY }
const HEADERS = { "x-api-key": KEY, "anthropic-version": "2023-06-01", "content-type": "application/json" }

const request = (customId: string, text = "hello") => ({
  custom_id: customId,
  params: { model: "claude-haiku-4-5", max_tokens: 64, messages: [{ role: "user", content: text }] }
})

interface Http {
  readonly status: number
  readonly headers: Headers
  readonly body: any
  readonly text: string
}

const call = async (base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = HEADERS): Promise<Http> => {
  const response = await fetch(`${base}${path}`, {
    method,
    headers,
    ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) })
  })
  const text = await response.text()
  let parsed: unknown = undefined
  try {
    parsed = JSON.parse(text)
  } catch {
    // JSONL or empty
  }
  return { status: response.status, headers: response.headers, body: parsed, text }
}

/**
 * A clock for an emulator that the test drives: batches move only when `tick` moves it, so
 * every state is reached by polling, never by waiting for wall-clock time.
 */
const drivenClock = () => {
  let now = Date.now()
  return { now: () => now, tick: () => void (now += 10) }
}

/** Gets the batch until it has ended, moving the emulator's clock 10 ms between gets. */
const pollEnded = async (base: string, id: string, tick: () => void) => {
  for (let i = 0; i < 2000; i++) {
    const batch = await call(base, "GET", `/v1/messages/batches/${id}`)
    if (batch.body.processing_status === "ended") return batch.body
    tick()
  }
  throw new Error(`batch ${id} did not end`)
}

const anthropicError = (http: Http, status: number, type: string, message?: RegExp) => {
  expect(http.status).toBe(status)
  expect(http.body).toMatchObject({ type: "error", error: { type } })
  expect(http.body.request_id).toMatch(/^req_/)
  expect(http.headers.get("request-id")).toBe(http.body.request_id)
  if (message !== undefined) expect(http.body.error.message).toMatch(message)
}

describe("emulator: Anthropic routes over HTTP", () => {
  let emulator: EmulatorHandle
  let base: string
  const clock = drivenClock()

  beforeAll(async () => {
    emulator = await startEmulator({ apiKey: KEY, clock: clock.now, requestsPerSecond: 2000, finalizingMs: 10, cancellingMs: 30 })
    base = emulator.url
  })
  afterAll(async () => {
    await emulator.close()
  })

  it("auth: a key is required (x-api-key or Bearer), anthropic-version on the Messages API only", async () => {
    anthropicError(await call(base, "GET", "/v1/messages/batches", undefined, { "anthropic-version": "2023-06-01" }), 401, "authentication_error")
    anthropicError(await call(base, "GET", "/v1/messages/batches", undefined, { ...HEADERS, "x-api-key": "wrong-key-value" }), 401, "authentication_error")
    anthropicError(await call(base, "GET", "/v1/messages/batches", undefined, { "x-api-key": KEY }), 400, "invalid_request_error", /anthropic-version/)
    anthropicError(
      await call(base, "GET", "/v1/messages/batches", undefined, { "x-api-key": KEY, "anthropic-version": "latest" }),
      400,
      "invalid_request_error",
      /not a valid version/
    )
    expect((await call(base, "GET", "/v1/messages/batches", undefined, { authorization: `Bearer ${KEY}`, "anthropic-version": "2026-10-21" })).status).toBe(200)
    // the gateway shape: bearer, no version header needed
    expect((await call(base, "GET", "/anthropic-gateway/v1/batches", undefined, { authorization: `Bearer ${KEY}` })).status).toBe(200)
    anthropicError(await call(base, "GET", "/anthropic-gateway/v1/batches", undefined, {}), 401, "authentication_error")
    // unknown routes under the prefix are Anthropic-shaped 404s; OpenAI routes keep their shape
    anthropicError(await call(base, "GET", "/v1/messages/batches/a/b/c"), 404, "not_found_error")
    anthropicError(await call(base, "GET", "/v1/messages/batches/msgbatch_nope"), 404, "not_found_error")
    const openai = await call(base, "GET", "/v1/batches/batch_nope", undefined, { authorization: `Bearer ${KEY}` })
    expect(openai.status).toBe(404)
    expect(openai.body.error.type).toBe("invalid_request_error")
  })

  it("validates the envelope synchronously (400), whatever the params", async () => {
    const cases: Array<[unknown, RegExp]> = [
      ['{"requests": [', /not valid JSON/],
      ["[]", /must be a JSON object/],
      ["{}", /requests: Field required/],
      [{ requests: {} }, /requests: Input should be a valid list/],
      [{ requests: [request("a")], user: "x" }, /user: Extra inputs are not permitted/],
      [{ requests: [1] }, /requests\.0: Input should be a valid dictionary/],
      [{ requests: [{ ...request("a"), extra: 1 }] }, /requests\.0\.extra: Extra inputs/],
      [{ requests: [request("a"), request("a b")] }, /requests\.1\.custom_id: String should match pattern/],
      [{ requests: [request("")] }, /requests\.0\.custom_id: String should match pattern/],
      [{ requests: [request("a"), request("b"), request("a")] }, /requests\.2\.custom_id: Duplicate custom_id 'a'/],
      [{ requests: [{ custom_id: "a", params: "x" }] }, /requests\.0\.params: Input should be a valid dictionary/],
      ['{"requests": [{"custom_id": "a", "params": {}},]}', /not valid JSON/],
      ['{"requests": []} x', /data after/]
    ]
    const before = (await getLedger(base, control)).batches.length
    for (const [body, message] of cases) anthropicError(await call(base, "POST", "/v1/messages/batches", body), 400, "invalid_request_error", message)
    // nothing was created
    expect((await getLedger(base, control)).batches.length).toBe(before)
    // params problems are not envelope problems: created, then errored
    const created = await call(base, "POST", "/v1/messages/batches", { requests: [{ custom_id: "p", params: { nonsense: true } }] })
    expect(created.status).toBe(200)
    const ended = await pollEnded(base, created.body.id, clock.tick)
    expect(ended.request_counts).toMatchObject({ errored: 1 })
  })

  it("takes at most 100,000 requests", async () => {
    const tiny = (i: number) => `{"custom_id":"r${i}","params":{}}`
    const body = `{"requests":[${Array.from({ length: 100_001 }, (_, i) => tiny(i)).join(",")}]}`
    anthropicError(await call(base, "POST", "/v1/messages/batches", body), 400, "invalid_request_error", /at most 100000 items/)
  })

  it("refuses a body over 256 MB with 413 request_too_large (from content-length, before reading it)", async () => {
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(`${base}/v1/messages/batches`, {
        method: "POST",
        headers: { ...HEADERS, "content-length": String(300_000_000) }
      })
      req.on("response", (res) => {
        let text = ""
        res.on("data", (c: Buffer) => (text += c.toString()))
        res.on("end", () => {
          resolve({ status: res.statusCode ?? 0, body: text })
          req.destroy()
        })
      })
      req.on("error", reject)
      req.write('{"requests":[')
    })
    expect(answer.status).toBe(413)
    // `request_too_large` is what Anthropic documents for 413; the SDK's ErrorObject union lacks it.
    expect(JSON.parse(answer.body)).toMatchObject({ type: "error", error: { type: "request_too_large" } })
  })

  it("state errors: results before the end (404), delete before the end (400), cancel after the end (400)", async () => {
    await setFaults(base, { requestsPerSecond: 20 }, control)
    let id: string
    try {
      id = (await call(base, "POST", "/v1/messages/batches", { requests: Array.from({ length: 40 }, (_, i) => request(`s${i}`)) })).body.id
    } finally {
      await setFaults(base, { requestsPerSecond: 2000 }, control)
    }
    anthropicError(await call(base, "GET", `/v1/messages/batches/${id}/results`), 404, "not_found_error", /has not ended/)
    anthropicError(await call(base, "DELETE", `/v1/messages/batches/${id}`), 400, "invalid_request_error", /still processing/)
    const canceling = await call(base, "POST", `/v1/messages/batches/${id}/cancel`)
    expect(canceling.body.processing_status).toBe("canceling")
    // canceling twice is fine
    expect((await call(base, "POST", `/v1/messages/batches/${id}/cancel`)).body.cancel_initiated_at).toBe(canceling.body.cancel_initiated_at)
    const ended = await pollEnded(base, id, clock.tick)
    expect(ended.request_counts.canceled).toBeGreaterThan(0)
    anthropicError(await call(base, "POST", `/v1/messages/batches/${id}/cancel`), 400, "invalid_request_error", /already ended/)
    const results = await call(base, "GET", `/v1/messages/batches/${id}/results`)
    expect(results.headers.get("content-type")).toBe("application/x-jsonl")
    expect(results.text.trim().split("\n")).toHaveLength(40)
    // a batch is visible only on the surface it was created on, never among OpenAI's batches
    anthropicError(await call(base, "GET", `/anthropic-gateway/v1/batches/${id}`), 404, "not_found_error")
    const openai = await call(base, "GET", "/v1/batches?limit=100", undefined, { authorization: `Bearer ${KEY}` })
    expect(openai.body.data.some((b: { id: string }) => b.id === id)).toBe(false)
  })

  it("dropLines: lines missing from the results, counts unchanged, the ledger agrees", async () => {
    await setFaults(base, { dropLines: 0.5 }, control)
    try {
      const created = await call(base, "POST", "/v1/messages/batches", { requests: Array.from({ length: 40 }, (_, i) => request(`d${i}`, `text ${i}`)) })
      const ended = await pollEnded(base, created.body.id, clock.tick)
      expect(ended.request_counts).toEqual({ processing: 0, succeeded: 40, errored: 0, canceled: 0, expired: 0 })
      const lines = (await call(base, "GET", `/v1/messages/batches/${created.body.id}/results`)).text.trim().split("\n").map((l) => JSON.parse(l))
      expect(lines.length).toBeGreaterThan(0)
      expect(lines.length).toBeLessThan(40)
      const ledger = await getLedger(base, control)
      const entry = ledger.batches.find((b) => b.id === created.body.id)!
      expect(entry.custom_ids).toEqual(Array.from({ length: 40 }, (_, i) => `d${i}`))
      expect(ledger.deliveries.filter((d) => d.batch_id === created.body.id).map((d) => d.custom_id).sort()).toEqual(
        lines.map((l: { custom_id: string }) => l.custom_id).sort()
      )
    } finally {
      await setFaults(base, { dropLines: 0 }, control)
    }
  })

  it("answers max_tokens-bound text with stop_reason max_tokens", async () => {
    const long = "word ".repeat(200)
    const created = await call(base, "POST", "/v1/messages/batches", {
      requests: [{ custom_id: "m", params: { model: "claude-haiku-4-5", max_tokens: 2, messages: [{ role: "user", content: long }] } }]
    })
    await pollEnded(base, created.body.id, clock.tick)
    const line = JSON.parse((await call(base, "GET", `/v1/messages/batches/${created.body.id}/results`)).text)
    expect(line.result.message.stop_reason).toBe("max_tokens")
    expect(line.result.message.usage.output_tokens).toBe(2)
  })
})

describe("emulator: Anthropic batches survive a restart on the same state directory", () => {
  it("continues the lifecycle and serves the results", async () => {
    const stateDir = await mkdtemp(join(tmpdir(), "sluice-anthropic-state-"))
    try {
      // One clock for both emulators, as the wall clock would be.
      const clock = drivenClock()
      const first = await startEmulator({ stateDir, clock: clock.now, requestsPerSecond: 100, finalizingMs: 10 })
      const created = await call(first.url, "POST", "/v1/messages/batches", { requests: Array.from({ length: 30 }, (_, i) => request(`k${i}`)) })
      expect(created.body.processing_status).toBe("in_progress")
      await first.close()
      const second = await startEmulator({ stateDir, clock: clock.now })
      try {
        const ended = await pollEnded(second.url, created.body.id, clock.tick)
        expect(ended.request_counts.succeeded).toBe(30)
        expect(ended.results_url).toBe(`${second.url}/v1/messages/batches/${created.body.id}/results`)
        const lines = (await call(second.url, "GET", `/v1/messages/batches/${created.body.id}/results`)).text.trim().split("\n")
        expect(lines).toHaveLength(30)
        expect((await getLedger(second.url)).deliveries).toHaveLength(30)
      } finally {
        await second.close()
      }
    } finally {
      await rm(stateDir, { recursive: true, force: true })
    }
  })
})

describe("the streamed body reader", () => {
  const elementsOf = (body: string, chunkSizes: ReadonlyArray<number>) => {
    const bytes = Buffer.from(body)
    const scanner = new RequestsScanner()
    const out: Array<unknown> = []
    let at = 0
    for (let i = 0; at < bytes.length; i++) {
      const size = chunkSizes[i % chunkSizes.length]!
      out.push(...scanner.feed(bytes.subarray(at, at + size)))
      at += size
    }
    scanner.end()
    return out
  }

  it("cuts elements at any chunk boundary (escapes, unicode, nesting, scalars)", () => {
    const requests = [
      { custom_id: "a", params: { messages: [{ role: "user", content: 'quote " and \\ backslash, brackets ]}[{, comma' }] } },
      { custom_id: "b", params: { content: "héllo wörld ✓ 😀", n: [1, [2, { x: null }]], t: true } },
      { custom_id: "c", params: {} }
    ]
    const body = ` \n{ "requests" : [ ${requests.map((r) => JSON.stringify(r)).join(" ,\n")} ] }\n`
    for (const sizes of [[1], [2], [3], [7], [1, 5, 2], [body.length]]) {
      expect(elementsOf(body, sizes)).toEqual(requests)
    }
    expect(elementsOf('{"requests":[1, "s", null]}', [1])).toEqual([1, "s", null])
    expect(elementsOf('{"re\\u0071uests":[]}', [3])).toEqual([])
  })

  it("refuses what is not a requests object", () => {
    for (const bad of ['{"requests":[}', '{"requests":[1]', '{"a":1}', '{"requests":[1],"requests":[2]}', "nope"]) {
      expect(() => elementsOf(bad, [4])).toThrow(BodyError)
    }
  })
})

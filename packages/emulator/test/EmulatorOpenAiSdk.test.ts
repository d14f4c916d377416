/**
 * The emulator checked with the official `openai` client, unchanged: if the
 * SDK works against it, users' code does too.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Ajv } from "ajv"
import OpenAI, { toFile } from "openai"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type EmulatorHandle, type EmulatorOptions, startEmulator } from "../src/Emulator.js"
import { getLedger, setFaults } from "../src/EmulatorControl.js"
import { Tokens } from "@sluice/core"

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

const LabelSchema = {
  type: "object",
  properties: {
    sentiment: { type: "string", enum: ["positive", "negative", "neutral"] },
    topics: { type: "array", items: { type: "string" } },
    confidence: { type: "number", minimum: 0, maximum: 1 },
    stars: { type: "integer", minimum: 1, maximum: 5 },
    note: { anyOf: [{ type: "string", maxLength: 20 }, { type: "null" }] },
    meta: { $ref: "#/$defs/Meta" }
  },
  required: ["sentiment", "topics", "confidence", "stars", "note", "meta"],
  additionalProperties: false,
  $defs: {
    Meta: {
      type: "object",
      properties: {
        lang: { type: "string", enum: ["en", "fr"] },
        tags: { type: ["array", "null"], items: { type: "string" }, maxItems: 2 }
      },
      required: ["lang", "tags"],
      additionalProperties: false
    }
  }
} as const

const validateLabel = new Ajv({ strict: false }).compile(LabelSchema)

type Line = { custom_id: string; method: "POST"; url: string; body: Record<string, unknown> }

const chatLine = (customId: string, text: string, structured = false): Line => ({
  custom_id: customId,
  method: "POST",
  url: "/v1/chat/completions",
  body: {
    model: "gpt-4o-mini",
    messages: [
      { role: "system", content: "You label product reviews." },
      { role: "user", content: text }
    ],
    ...(structured ? { response_format: { type: "json_schema", json_schema: { name: "Label", strict: true, schema: LabelSchema } } } : {})
  }
})

const lines = (count: number, prefix: string, structured = false): Array<Line> =>
  Array.from({ length: count }, (_, i) => chatLine(`${prefix}-${i}`, `Review ${i} of ${prefix}: the product is ${["great", "awful", "okay"][i % 3]}.`, structured))

const toJsonl = (items: ReadonlyArray<unknown>): string => items.map((item) => JSON.stringify(item)).join("\n") + "\n"

const TERMINAL = ["completed", "failed", "expired", "cancelled"]

interface OutputLine {
  id: string
  custom_id: string
  response: { status_code: number; request_id: string; body: any } | null
  error: { code: string; message: string } | null
}

/**
 * A clock for an emulator that the test drives: batches move only when `tick` moves it (by
 * `stepMs`), so every state is reached by polling, never by waiting for wall-clock time.
 */
const drivenClock = (stepMs = 10) => {
  let now = Date.now()
  return { now: () => now, tick: () => void (now += stepMs) }
}

const makeHelpers = (client: OpenAI, tick: () => void) => {
  const upload = async (items: ReadonlyArray<unknown>, name = "input.jsonl") =>
    client.files.create({ file: await toFile(Buffer.from(toJsonl(items)), name), purpose: "batch" })

  const submit = async (items: ReadonlyArray<unknown>, metadata?: Record<string, string>) => {
    const file = await upload(items)
    return client.batches.create({
      input_file_id: file.id,
      endpoint: "/v1/chat/completions",
      completion_window: "24h",
      ...(metadata === undefined ? {} : { metadata })
    })
  }

  /** Polls until `done` holds, moving the clock between polls; returns the last batch and every status seen on the way. */
  const poll = async (id: string, done: (batch: OpenAI.Batch) => boolean = (b) => TERMINAL.includes(b.status)) => {
    const seen: Array<OpenAI.Batch> = []
    for (let i = 0; i < 2000; i++) {
      const batch = await client.batches.retrieve(id)
      seen.push(batch)
      if (done(batch)) return { batch, seen }
      tick()
    }
    throw new Error(`batch ${id} still ${seen[seen.length - 1]!.status} after 2000 polls`)
  }

  const download = async (fileId: string | null | undefined): Promise<Array<OutputLine>> => {
    if (!fileId) return []
    const text = await (await client.files.content(fileId)).text()
    return text.split("\n").filter((line) => line.length > 0).map((line) => JSON.parse(line) as OutputLine)
  }

  return { upload, submit, poll, download }
}

// ---------------------------------------------------------------------------------------------

const BASE: EmulatorOptions = { validatingMs: 20, finalizingMs: 20, cancellingMs: 50, requestsPerSecond: 500 }

describe("emulator with the official openai client", () => {
  let emulator: EmulatorHandle
  let client: OpenAI
  let h: ReturnType<typeof makeHelpers>
  const logLines: Array<string> = []
  const clock = drivenClock()

  beforeAll(async () => {
    emulator = await startEmulator({ ...BASE, clock: clock.now, log: (line) => logLines.push(line) })
    client = new OpenAI({ apiKey: "test", baseURL: `${emulator.url}/v1` })
    h = makeHelpers(client, clock.tick)
  })
  afterAll(async () => {
    await emulator.close()
  })

  it("runs a batch end to end: upload, create, poll, download, schema-conforming answers out of input order", async () => {
    const input = lines(40, "rt", true)
    const created = await h.submit(input, { run: "r1", shard: "0" })
    expect(created.status).toBe("validating")
    expect(created.request_counts).toEqual({ total: 0, completed: 0, failed: 0 })
    expect(created.expires_at! - created.created_at).toBe(86_400)
    expect(created.metadata).toEqual({ run: "r1", shard: "0" })
    expect(created.id).toMatch(/^batch_/)
    expect(Object.keys(created).sort()).toEqual(
      [
        "id", "object", "endpoint", "model", "errors", "input_file_id", "completion_window", "status", "output_file_id",
        "error_file_id", "created_at", "in_progress_at", "expires_at", "finalizing_at", "completed_at", "failed_at",
        "expired_at", "cancelling_at", "cancelled_at", "request_counts", "usage", "metadata"
      ].sort()
    )

    const { batch, seen } = await h.poll(created.id)
    expect(batch.status).toBe("completed")
    expect(batch.model).toBe("gpt-4o-mini")
    expect(batch.request_counts).toEqual({ total: 40, completed: 40, failed: 0 })
    expect(batch.error_file_id).toBeNull()
    expect(batch.in_progress_at).not.toBeNull()
    expect(batch.finalizing_at).not.toBeNull()
    expect(batch.completed_at).not.toBeNull()
    // progress never goes backwards
    const completedCounts = seen.map((b) => b.request_counts?.completed ?? 0)
    expect([...completedCounts].sort((a, b) => a - b)).toEqual(completedCounts)
    // every state on the way, in order (the clock moves 10 ms a poll)
    expect([...new Set(seen.map((b) => b.status))]).toEqual(["validating", "in_progress", "finalizing", "completed"])

    const output = await h.download(batch.output_file_id)
    const ids = output.map((line) => line.custom_id)
    expect(new Set(ids).size).toBe(40)
    expect([...ids].sort()).toEqual(input.map((line) => line.custom_id).sort())
    expect(ids).not.toEqual(input.map((line) => line.custom_id)) // not input order

    let promptTokens = 0
    let completionTokens = 0
    const sentiments = new Set<string>()
    for (const line of output) {
      expect(line.id).toMatch(/^batch_req_[0-9a-f]+$/)
      expect(line.error).toBeNull()
      expect(line.response?.status_code).toBe(200)
      expect(line.response?.request_id).toMatch(/^req_/)
      const body = line.response!.body
      expect(body.object).toBe("chat.completion")
      expect(body.id).toMatch(/^chatcmpl-/)
      expect(body.choices[0].finish_reason).toBe("stop")
      expect(body.choices[0].message.role).toBe("assistant")
      const value = JSON.parse(body.choices[0].message.content)
      expect(validateLabel(value), JSON.stringify(validateLabel.errors)).toBe(true)
      sentiments.add(value.sentiment)
      expect(body.usage.total_tokens).toBe(body.usage.prompt_tokens + body.usage.completion_tokens)
      expect(body.usage.prompt_tokens_details).toEqual({ cached_tokens: 0 })
      promptTokens += body.usage.prompt_tokens
      completionTokens += body.usage.completion_tokens
    }
    expect(sentiments.size).toBeGreaterThan(1) // the enum pick varies across requests
    expect(batch.usage?.input_tokens).toBe(promptTokens)
    expect(batch.usage?.output_tokens).toBe(completionTokens)
    expect(batch.usage?.total_tokens).toBe(promptTokens + completionTokens)

    const outputFile = await client.files.retrieve(batch.output_file_id!)
    expect(outputFile.purpose).toBe("batch_output")
    expect(outputFile.filename).toBe(`${batch.id}_output.jsonl`)
  })

  it("lists batches newest first with cursor pagination", async () => {
    const mine: Array<string> = []
    for (let i = 0; i < 5; i++) mine.push((await h.submit(lines(1, `page${i}`))).id)

    const first = await client.batches.list({ limit: 2 })
    expect(first.data).toHaveLength(2)
    expect(first.has_more).toBe(true)
    expect(first.data.map((b) => b.id)).toEqual([mine[4], mine[3]])

    let pages = 0
    for await (const page of (await client.batches.list({ limit: 2 })).iterPages()) {
      pages++
      expect(page.data.length).toBeLessThanOrEqual(2)
    }
    expect(pages).toBeGreaterThan(2)

    const all: Array<string> = []
    for await (const batch of client.batches.list({ limit: 2 })) all.push(batch.id)
    expect(new Set(all).size).toBe(all.length)
    expect(all.filter((id) => mine.includes(id))).toEqual([...mine].reverse())
  })

  it("serves files: list, retrieve, delete; rejects non-.jsonl batch uploads", async () => {
    const file = await h.upload(lines(2, "files"), "two.jsonl")
    expect(file).toMatchObject({ object: "file", purpose: "batch", status: "processed", filename: "two.jsonl", expires_at: null })
    expect(file.bytes).toBe(Buffer.byteLength(toJsonl(lines(2, "files"))))

    const listed: Array<string> = []
    for await (const f of client.files.list({ purpose: "batch" })) listed.push(f.id)
    expect(listed).toContain(file.id)
    expect((await client.files.retrieve(file.id)).id).toBe(file.id)

    expect(await client.files.delete(file.id)).toMatchObject({ id: file.id, object: "file", deleted: true })
    await expect(client.files.retrieve(file.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError)

    const bad = client.files.create({ file: await toFile(Buffer.from(toJsonl(lines(1, "txt"))), "input.txt"), purpose: "batch" })
    await expect(bad).rejects.toBeInstanceOf(OpenAI.BadRequestError)
    await expect(bad).rejects.toThrow(/Invalid file format for Batch API. Must be .jsonl/)
  })

  it("cancels a slow batch: cancelling, then cancelled with partial results", async () => {
    await setFaults(emulator.url, { requestsPerSecond: 20 })
    try {
      const input = lines(100, "cancel")
      const created = await h.submit(input)
      await h.poll(created.id, (b) => (b.request_counts?.completed ?? 0) >= 3)
      const cancelling = await client.batches.cancel(created.id)
      expect(cancelling.status).toBe("cancelling")
      expect(cancelling.cancelling_at).not.toBeNull()

      const { batch } = await h.poll(created.id)
      expect(batch.status).toBe("cancelled")
      expect(batch.cancelled_at).not.toBeNull()
      const done = batch.request_counts!.completed
      expect(done).toBeGreaterThanOrEqual(3)
      expect(done).toBeLessThan(100)

      const output = await h.download(batch.output_file_id)
      const errors = await h.download(batch.error_file_id)
      expect(output).toHaveLength(done)
      expect(errors).toHaveLength(100 - done)
      for (const line of errors) {
        expect(line.response).toBeNull()
        expect(line.error?.code).toBe("batch_cancelled")
      }
      const ids = [...output, ...errors].map((line) => line.custom_id).sort()
      expect(ids).toEqual(input.map((line) => line.custom_id).sort())

      await expect(client.batches.cancel(created.id)).rejects.toBeInstanceOf(OpenAI.BadRequestError)
    } finally {
      await setFaults(emulator.url, { requestsPerSecond: 500 })
    }
  })

  it("expires a batch on demand (expireBatch fault), keeping finished results", async () => {
    await setFaults(emulator.url, { requestsPerSecond: 20 })
    try {
      const input = lines(100, "expire")
      const created = await h.submit(input)
      await h.poll(created.id, (b) => (b.request_counts?.completed ?? 0) >= 3)
      await setFaults(emulator.url, { expireBatch: created.id })
      const batch = await client.batches.retrieve(created.id)
      expect(batch.status).toBe("expired")
      expect(batch.expired_at).not.toBeNull()
      const done = batch.request_counts!.completed
      expect(done).toBeGreaterThanOrEqual(3)
      const output = await h.download(batch.output_file_id)
      const errors = await h.download(batch.error_file_id)
      expect(output).toHaveLength(done)
      expect(errors).toHaveLength(100 - done)
      expect(errors[0]).toEqual({
        id: expect.stringMatching(/^batch_req_/),
        custom_id: expect.stringMatching(/^expire-/),
        response: null,
        error: { code: "batch_expired", message: "This request could not be executed before the completion window expired." }
      })
      expect([...output, ...errors].map((l) => l.custom_id).sort()).toEqual(input.map((l) => l.custom_id).sort())
    } finally {
      await setFaults(emulator.url, { requestsPerSecond: 500 })
    }
  })

  it("expires a batch when the completion window (expireAfterMs) runs out", async () => {
    const clock = drivenClock()
    const short = await startEmulator({ ...BASE, clock: clock.now, expireAfterMs: 300, requestsPerSecond: 50 })
    try {
      const c = new OpenAI({ apiKey: "test", baseURL: `${short.url}/v1` })
      const s = makeHelpers(c, clock.tick)
      const created = await s.submit(lines(100, "window"))
      expect(created.expires_at! - created.created_at).toBeLessThanOrEqual(1)
      const { batch } = await s.poll(created.id)
      expect(batch.status).toBe("expired")
      const done = batch.request_counts!.completed
      expect(done).toBe(14) // (300 ms - 20 ms validating) at 50 requests a second
      expect(await s.download(batch.output_file_id)).toHaveLength(done)
      const errors = await s.download(batch.error_file_id)
      expect(errors).toHaveLength(100 - done)
      expect(errors.every((line) => line.error?.code === "batch_expired")).toBe(true)
    } finally {
      await short.close()
    }
  })

  it("fails validation for a duplicate custom_id, with errors.data", async () => {
    const input = [chatLine("dup-a", "one"), chatLine("dup-b", "two"), chatLine("dup-a", "three")]
    const created = await h.submit(input)
    const { batch } = await h.poll(created.id)
    expect(batch.status).toBe("failed")
    expect(batch.failed_at).not.toBeNull()
    expect(batch.output_file_id).toBeNull()
    expect(batch.error_file_id).toBeNull()
    expect(batch.errors?.data).toEqual([
      { code: "duplicate_custom_id", line: 3, param: "custom_id", message: expect.stringContaining("dup-a") }
    ])
  })

  it("errorRate: failed requests land in the error file as 500s and succeed when resubmitted", async () => {
    await setFaults(emulator.url, { errorRate: 0.3 })
    try {
      const input = lines(60, "flaky")
      const first = await h.poll((await h.submit(input, { attempt: "1" })).id)
      expect(first.batch.status).toBe("completed")
      const failedCount = first.batch.request_counts!.failed
      expect(failedCount).toBeGreaterThan(0)
      expect(first.batch.request_counts!.completed).toBe(60 - failedCount)

      const errors = await h.download(first.batch.error_file_id)
      expect(errors).toHaveLength(failedCount)
      for (const line of errors) {
        expect(line.error).toBeNull()
        expect(line.response).toEqual({
          status_code: 500,
          request_id: expect.stringMatching(/^req_/),
          body: {
            error: {
              message: "The server had an error while processing your request.",
              type: "server_error",
              param: null,
              code: "server_error"
            }
          }
        })
      }

      // Resubmit exactly the failed requests (same custom_id and body), errorRate still on.
      const failedIds = new Set(errors.map((line) => line.custom_id))
      const retry = await h.poll((await h.submit(input.filter((line) => failedIds.has(line.custom_id)), { attempt: "2" })).id)
      expect(retry.batch.request_counts).toEqual({ total: failedCount, completed: failedCount, failed: 0 })
      expect(retry.batch.error_file_id).toBeNull()

      // The ledger proves every row was delivered exactly once across both batches.
      const ledger = await getLedger(emulator.url)
      const batchIds = new Set([first.batch.id, retry.batch.id])
      const delivered = ledger.deliveries.filter((d) => batchIds.has(d.batch_id)).map((d) => d.custom_id)
      expect(delivered).toHaveLength(60)
      expect(new Set(delivered).size).toBe(60)
      const entry = ledger.batches.find((b) => b.id === first.batch.id)!
      expect(entry).toMatchObject({ status: "completed", metadata: { attempt: "1" }, input_file_id: first.batch.input_file_id })
      expect(entry.custom_ids).toEqual(input.map((line) => line.custom_id)) // input order
    } finally {
      await setFaults(emulator.url, { errorRate: 0 })
    }
  })

  it("rate limits with 429 + Retry-After, and the SDK's own retries get through", async () => {
    await setFaults(emulator.url, { rateLimitRate: 0.5, retryAfterMs: 30 })
    try {
      const statuses: Array<number> = []
      let limited: { headers: Headers; body: any } | undefined
      for (let i = 0; i < 4; i++) {
        const response = await fetch(`${emulator.url}/v1/batches?limit=1`, { headers: { authorization: "Bearer test" } })
        statuses.push(response.status)
        const body = await response.json()
        if (response.status === 429) limited = { headers: response.headers, body }
      }
      expect(statuses).toContain(429)
      expect(limited!.headers.get("retry-after")).toBe("1")
      expect(limited!.headers.get("retry-after-ms")).toBe("30")
      expect(limited!.body.error).toMatchObject({ type: "requests", code: "rate_limit_exceeded" })
      // never twice in a row on the same path
      for (let i = 1; i < statuses.length; i++) expect(statuses[i] === 429 && statuses[i - 1] === 429).toBe(false)

      const before = logLines.filter((line) => line.includes("RateLimited")).length
      const created = await h.submit(lines(2, "ratelimited"))
      for (let i = 0; i < 6; i++) expect((await client.batches.retrieve(created.id)).id).toBe(created.id)
      const after = logLines.filter((line) => line.includes("RateLimited")).length
      expect(after - before).toBeGreaterThan(0) // the SDK did meet 429s, and retried them
    } finally {
      await setFaults(emulator.url, { rateLimitRate: 0 })
    }
  })

  it("answers chat completions and embeddings synchronously, consistently with batches", async () => {
    const line = chatLine("sync-0", "A synchronous review: lovely.", true)
    const completion = await client.chat.completions.create(line.body as any)
    expect(completion.object).toBe("chat.completion")
    const content = completion.choices[0]!.message.content!
    expect(validateLabel(JSON.parse(content))).toBe(true)

    const batch = (await h.poll((await h.submit([line])).id)).batch
    const [out] = await h.download(batch.output_file_id)
    expect(out!.response!.body.choices[0].message.content).toBe(content) // same body, same answer

    const plain = await client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Tell me about otters" }] })
    expect(plain.choices[0]!.message.content).toContain("Tell me about otters")
    // counted with gpt-4o-mini's own tokenizer, as `sluice estimate` counts it
    const messages = [{ role: "user", content: "Tell me about otters" }]
    expect(plain.usage).toMatchObject({ prompt_tokens: Tokens.chat("gpt-4o-mini", messages).tokens, completion_tokens: expect.any(Number) })

    // The SDK asks for base64 by default and decodes it; both encodings give the same vectors.
    const decoded = await client.embeddings.create({ model: "text-embedding-3-small", input: ["otters", "beavers"] })
    const floats = await client.embeddings.create({ model: "text-embedding-3-small", input: ["otters", "beavers"], encoding_format: "float" })
    expect(decoded.data).toHaveLength(2)
    expect(decoded.data[0]!.embedding).toHaveLength(8)
    expect(decoded.data.map((d) => d.embedding)).toEqual(floats.data.map((d) => d.embedding))
    expect(decoded.data[0]!.embedding).not.toEqual(decoded.data[1]!.embedding)
    expect(decoded.usage).toEqual({ prompt_tokens: 4, total_tokens: 4 })
  })

  it("runs an embeddings batch", async () => {
    const input = ["a", "b", "c"].map((text, i) => ({
      custom_id: `emb-${i}`,
      method: "POST",
      url: "/v1/embeddings",
      body: { model: "text-embedding-3-small", input: text, encoding_format: "float" }
    }))
    const file = await h.upload(input)
    const created = await client.batches.create({ input_file_id: file.id, endpoint: "/v1/embeddings", completion_window: "24h" })
    const { batch } = await h.poll(created.id)
    expect(batch.status).toBe("completed")
    const output = await h.download(batch.output_file_id)
    expect(output.map((l) => l.custom_id).sort()).toEqual(["emb-0", "emb-1", "emb-2"])
    expect(output[0]!.response!.body.data[0].embedding).toHaveLength(8)
  })
})

describe("emulator API key and state dir", () => {
  it("enforces the API key when one is configured", async () => {
    const secured = await startEmulator({ ...BASE, apiKey: "sk-emulator" })
    try {
      const wrong = new OpenAI({ apiKey: "nope", baseURL: `${secured.url}/v1`, maxRetries: 0 })
      await expect(wrong.batches.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError)
      const right = new OpenAI({ apiKey: "sk-emulator", baseURL: `${secured.url}/v1` })
      expect((await right.batches.list()).data).toEqual([])

      for (const headers of [{ "x-api-key": "sk-emulator" }, { "api-key": "sk-emulator" }, { authorization: "Bearer sk-emulator" }]) {
        expect((await fetch(`${secured.url}/v1/files`, { headers })).status).toBe(200)
      }
      const missing = await fetch(`${secured.url}/v1/files`)
      expect(missing.status).toBe(401)
      const body = (await missing.json()) as { error: { type: string; message: string } }
      expect(body.error.type).toBe("invalid_request_error")
      const wrongKey = await fetch(`${secured.url}/v1/files`, { headers: { authorization: "Bearer sk-leaked-secret" } })
      expect(wrongKey.status).toBe(401)
      expect(await wrongKey.text()).not.toContain("sk-leaked-secret") // keys are never echoed
    } finally {
      await secured.close()
    }
  })

  it("keeps batches across a restart on the same stateDir and continues their lifecycle", async () => {
    const stateDir = await mkdtemp(join(tmpdir(), "sluice-emulator-test-"))
    // One clock for the three emulators, as the wall clock would be.
    const clock = drivenClock()
    try {
      const first = await startEmulator({ ...BASE, clock: clock.now, stateDir, requestsPerSecond: 100 })
      const c1 = new OpenAI({ apiKey: "test", baseURL: `${first.url}/v1` })
      const input = lines(50, "restart", true)
      const created = await makeHelpers(c1, clock.tick).submit(input, { run: "persisted" })
      expect(created.status).toBe("validating")
      await first.close()

      const second = await startEmulator({ ...BASE, clock: clock.now, stateDir })
      let batchId: string
      try {
        const c2 = new OpenAI({ apiKey: "test", baseURL: `${second.url}/v1` })
        const h2 = makeHelpers(c2, clock.tick)
        expect((await c2.files.retrieve(created.input_file_id)).filename).toBe("input.jsonl")
        const { batch } = await h2.poll(created.id)
        batchId = batch.id
        expect(batch.status).toBe("completed")
        expect(batch.metadata).toEqual({ run: "persisted" })
        const output = await h2.download(batch.output_file_id)
        expect(output.map((l) => l.custom_id).sort()).toEqual(input.map((l) => l.custom_id).sort())
      } finally {
        await second.close()
      }

      // A third start serves the finished batch and its files as they were.
      const third = await startEmulator({ ...BASE, clock: clock.now, stateDir })
      try {
        const c3 = new OpenAI({ apiKey: "test", baseURL: `${third.url}/v1` })
        const batch = await c3.batches.retrieve(batchId)
        expect(batch.status).toBe("completed")
        expect(await makeHelpers(c3, clock.tick).download(batch.output_file_id)).toHaveLength(50)
        const ledger = await getLedger(third.url)
        expect(ledger.batches.map((b) => b.id)).toEqual([batchId])
        expect(ledger.batches[0]!.custom_ids).toHaveLength(50)
        expect(ledger.deliveries).toHaveLength(50)
      } finally {
        await third.close()
      }
    } finally {
      await rm(stateDir, { recursive: true, force: true })
    }
  })
})

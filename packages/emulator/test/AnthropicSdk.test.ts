/**
 * The emulator's Anthropic Message Batches API checked with the official `@anthropic-ai/sdk`
 * client, unchanged, and every JSON answer validated against the JSON Schemas of the SDK's own
 * types (`specs/anthropic-sdk-types-*.schema.json`) with ajv.
 *
 * The schemas are used as they are: nothing is relaxed. (They are draft-07 schemas generated
 * from the SDK's TypeScript types; the emulator sends every required member, nullable ones as
 * null, so no relaxation is needed. Extra members would be allowed anyway: the schemas do not
 * set additionalProperties.)
 */
import Anthropic from "@anthropic-ai/sdk"
import { Ajv, type ValidateFunction } from "ajv"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type EmulatorHandle, startEmulator } from "../src/Emulator.js"
import { getLedger, setFaults } from "../src/EmulatorControl.js"

// ---------------------------------------------------------------------------------------------
// the SDK type schemas
// ---------------------------------------------------------------------------------------------

const specsDir = process.env["SLUICE_SPECS_DIR"] ?? fileURLToPath(new URL("../../../specs/", import.meta.url))
const ajv = new Ajv({ strict: false, allErrors: true })
const load = (type: string): ValidateFunction => {
  const schema = JSON.parse(readFileSync(`${specsDir}/anthropic-sdk-types-${type}.schema.json`, "utf8")) as Record<string, unknown>
  return ajv.compile({ ...schema, $id: `sdk-${type}` })
}
const validators = {
  MessageBatch: load("MessageBatch"),
  MessageBatchListPage: load("MessageBatchListPage"),
  MessageBatchIndividualResponse: load("MessageBatchIndividualResponse"),
  DeletedMessageBatch: load("DeletedMessageBatch")
}
// The error body has no file of its own: it is a definition inside the results schema.
const validateErrorResponse = ajv.getSchema("sdk-MessageBatchIndividualResponse#/definitions/ErrorResponse")!

type SchemaName = keyof typeof validators | "ErrorResponse"

/** What a route answers, by method and path (the SDK's own typing of each call). */
const schemaOf = (method: string, path: string, status: number): SchemaName | undefined => {
  if (status >= 400) return "ErrorResponse"
  if (/\/results$/.test(path)) return "MessageBatchIndividualResponse"
  if (method === "GET" && /\/v1\/messages\/batches$/.test(path)) return "MessageBatchListPage"
  if (method === "DELETE") return "DeletedMessageBatch"
  if (/\/v1\/messages\/batches(\/[^/]+(\/cancel)?)?$/.test(path)) return "MessageBatch"
  return undefined
}

interface Checked {
  readonly method: string
  readonly path: string
  readonly status: number
  readonly schema: SchemaName
  readonly headers: Headers
}

/** A fetch for the SDK that validates every answer (each JSONL line for results) before the SDK sees it. */
const validatingFetch = (checked: Array<Checked>, problems: Array<string>): typeof fetch => async (input, init) => {
  const response = await fetch(input, init)
  const url = new URL(typeof input === "string" ? input : input instanceof URL ? input.href : input.url)
  const method = (init?.method ?? "GET").toUpperCase()
  const schema = schemaOf(method, url.pathname, response.status)
  if (schema === undefined) {
    problems.push(`${method} ${url.pathname}: no schema for this route`)
    return response
  }
  const text = await response.clone().text()
  const bodies = schema === "MessageBatchIndividualResponse" ? text.split("\n").filter((l) => l.length > 0) : [text]
  for (const body of bodies) {
    const validate = schema === "ErrorResponse" ? validateErrorResponse : validators[schema]
    if (!validate(JSON.parse(body))) {
      problems.push(`${method} ${url.pathname} (${schema}): ${ajv.errorsText(validate.errors)} in ${body.slice(0, 300)}`)
    }
  }
  checked.push({ method, path: url.pathname, status: response.status, schema, headers: response.headers })
  return response
}

// ---------------------------------------------------------------------------------------------
// requests
// ---------------------------------------------------------------------------------------------

const LabelSchema = {
  type: "object",
  properties: {
    sentiment: { type: "string", enum: ["positive", "negative", "neutral"] },
    topics: { type: "array", items: { type: "string" }, maxItems: 3 },
    stars: { type: "integer", minimum: 1, maximum: 5 },
    note: { anyOf: [{ type: "string" }, { type: "null" }] }
  },
  required: ["sentiment", "topics", "stars", "note"],
  additionalProperties: false
} as const
const validateLabel = new Ajv({ strict: false }).compile(LabelSchema)

type BatchRequest = Anthropic.Messages.BatchCreateParams.Request

const textRequest = (customId: string, text: string): BatchRequest => ({
  custom_id: customId,
  params: {
    model: "claude-haiku-4-5",
    max_tokens: 256,
    system: "You label product reviews.",
    messages: [{ role: "user", content: text }]
  }
})

const toolRequest = (customId: string, text: string): BatchRequest => ({
  custom_id: customId,
  params: {
    model: "claude-haiku-4-5",
    max_tokens: 256,
    messages: [{ role: "user", content: text }],
    tools: [{ name: "Label", description: "Record the label.", input_schema: LabelSchema as unknown as Anthropic.Messages.Tool.InputSchema }],
    tool_choice: { type: "tool", name: "Label" }
  }
})

const requests = (count: number, prefix: string): Array<BatchRequest> =>
  Array.from({ length: count }, (_, i) =>
    (i % 2 === 0 ? toolRequest : textRequest)(`${prefix}-${i}`, `Review ${i} of ${prefix}: the product is ${["great", "awful", "okay"][i % 3]}.`))

// ---------------------------------------------------------------------------------------------

describe("emulator with the official @anthropic-ai/sdk client", () => {
  let emulator: EmulatorHandle
  let client: Anthropic
  const checked: Array<Checked> = []
  const problems: Array<string> = []
  const API_KEY = "sk-ant-emulator-test"
  /** The test API takes the same key. */
  const control = { apiKey: API_KEY }
  /** The emulator's clock: batches move only when the test moves it (poll does, 10 ms a get). */
  let now = Date.now()

  beforeAll(async () => {
    emulator = await startEmulator({ apiKey: API_KEY, clock: () => now, requestsPerSecond: 2000, finalizingMs: 20, cancellingMs: 60 })
    client = new Anthropic({ apiKey: API_KEY, baseURL: emulator.url, fetch: validatingFetch(checked, problems), maxRetries: 4 })
  })
  afterAll(async () => {
    await emulator.close()
    // Every answer the SDK got, in every test, conforms to the SDK's types.
    expect(problems).toEqual([])
  })

  const poll = async (id: string) => {
    const seen: Array<Anthropic.Messages.MessageBatch> = []
    for (let i = 0; i < 2000; i++) {
      const batch = await client.messages.batches.retrieve(id)
      seen.push(batch)
      if (batch.processing_status === "ended") return { batch, seen }
      now += 10
    }
    throw new Error(`batch ${id} still ${seen[seen.length - 1]!.processing_status} after 2000 polls`)
  }

  const results = async (id: string) => {
    const out: Array<Anthropic.Messages.MessageBatchIndividualResponse> = []
    for await (const line of await client.messages.batches.results(id)) out.push(line)
    return out
  }

  it("runs a batch end to end: create, retrieve until ended, stream results", async () => {
    const input = [
      ...requests(30, "rt"),
      // params are validated after create: these two become errored results, not a 400
      { custom_id: "rt-no-max-tokens", params: { model: "claude-haiku-4-5", messages: [{ role: "user", content: "hi" }] } } as unknown as BatchRequest,
      { custom_id: "rt-system-role", params: { model: "claude-haiku-4-5", max_tokens: 10, messages: [{ role: "system", content: "x" }, { role: "user", content: "hi" }] } } as unknown as BatchRequest
    ]
    await setFaults(emulator.url, { requestsPerSecond: 200 }, control)
    const created = await client.messages.batches.create({ requests: input }).finally(() =>
      setFaults(emulator.url, { requestsPerSecond: 2000 }, control)
    )
    expect(created.id).toMatch(/^msgbatch_/)
    expect(created.type).toBe("message_batch")
    expect(created.processing_status).toBe("in_progress")
    expect(created.request_counts).toEqual({ processing: 32, succeeded: 0, errored: 0, canceled: 0, expired: 0 })
    expect(created.results_url).toBeNull()
    expect(created.ended_at).toBeNull()
    expect(Date.parse(created.expires_at) - Date.parse(created.created_at)).toBe(24 * 3600 * 1000)
    expect(created.created_at).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/)


    const { batch, seen } = await poll(created.id)
    // counts are frozen at {processing: N} until the batch has ended (160 ms of the clock: 16 polls)
    expect(seen.filter((b) => b.processing_status === "in_progress").length).toBeGreaterThan(10)
    for (const view of seen.filter((b) => b.processing_status !== "ended")) {
      expect(view.request_counts).toEqual({ processing: 32, succeeded: 0, errored: 0, canceled: 0, expired: 0 })
      expect(view.results_url).toBeNull()
    }
    expect(batch.request_counts).toEqual({ processing: 0, succeeded: 30, errored: 2, canceled: 0, expired: 0 })
    expect(batch.results_url).toBe(`${emulator.url}/v1/messages/batches/${batch.id}/results`)
    expect(batch.ended_at).not.toBeNull()

    const lines = await results(batch.id)
    expect(lines.map((l) => l.custom_id).sort()).toEqual(input.map((r) => r.custom_id).sort())
    expect(lines.map((l) => l.custom_id)).not.toEqual(input.map((r) => r.custom_id)) // arbitrary order
    for (const line of lines) {
      const i = Number(line.custom_id.split("-")[1])
      if (line.custom_id.startsWith("rt-no") || line.custom_id.startsWith("rt-system")) {
        expect(line.result.type).toBe("errored")
        if (line.result.type === "errored") {
          expect(line.result.error.error.type).toBe("invalid_request_error")
          expect(line.result.error.error.message).toMatch(line.custom_id === "rt-no-max-tokens" ? /max_tokens/ : /role/)
        }
        continue
      }
      expect(line.result.type).toBe("succeeded")
      if (line.result.type !== "succeeded") continue
      const message = line.result.message
      expect(message.usage.input_tokens).toBeGreaterThan(0)
      expect(message.usage.output_tokens).toBeGreaterThan(0)
      if (i % 2 === 0) {
        // the forced tool: a tool_use block whose input conforms to the tool's input_schema
        expect(message.stop_reason).toBe("tool_use")
        const block = message.content[0]!
        expect(block.type).toBe("tool_use")
        if (block.type === "tool_use") {
          expect(block.name).toBe("Label")
          expect(validateLabel(block.input)).toBe(true)
        }
      } else {
        expect(message.stop_reason).toBe("end_turn")
        expect(message.content[0]!.type).toBe("text")
      }
    }

    // the same request answers the same way in another batch (deterministic)
    const again = await client.messages.batches.create({ requests: [input[0]!, input[1]!] })
    await poll(again.id)
    const second = new Map((await results(again.id)).map((l) => [l.custom_id, l]))
    const first = new Map(lines.map((l) => [l.custom_id, l]))
    for (const id of ["rt-0", "rt-1"]) {
      const a = first.get(id)!.result
      const b = second.get(id)!.result
      if (a.type !== "succeeded" || b.type !== "succeeded") throw new Error("expected successes")
      expect(b.message.content).toEqual(a.message.content.map((c) => (c.type === "tool_use" ? { ...c, id: (b.message.content[0] as { id: string }).id } : c)))
    }

    const ledger = await getLedger(emulator.url, control)
    const entry = ledger.batches.find((b) => b.id === batch.id)!
    expect(entry).toMatchObject({ status: "ended", metadata: {}, input_file_id: null, api: "anthropic" })
    expect([...entry.custom_ids].sort()).toEqual(input.map((r) => r.custom_id).sort())
    expect(ledger.deliveries.filter((d) => d.batch_id === batch.id)).toHaveLength(30)
  })

  it("lists batches newest first with auto-pagination (limit 2), both directions", async () => {
    const ids: Array<string> = []
    for (let i = 0; i < 5; i++) ids.push((await client.messages.batches.create({ requests: requests(1, `list${i}`) })).id)
    const pagesBefore = checked.filter((c) => c.schema === "MessageBatchListPage").length
    const listed: Array<string> = []
    for await (const batch of client.messages.batches.list({ limit: 2 })) listed.push(batch.id)
    const pages = checked.filter((c) => c.schema === "MessageBatchListPage").length - pagesBefore
    // newest first: ours are the five newest, in reverse creation order
    expect(listed.slice(0, 5)).toEqual([...ids].reverse())
    expect(new Set(listed).size).toBe(listed.length)
    expect(pages).toBe(Math.ceil(listed.length / 2))

    const page = await client.messages.batches.list({ limit: 2, after_id: ids[4] })
    expect(page.data.map((b) => b.id)).toEqual([ids[3], ids[2]])
    expect(page.first_id).toBe(ids[3])
    expect(page.last_id).toBe(ids[2])
    expect(page.has_more).toBe(true)
    // before_id pages towards newer batches
    const newer = await client.messages.batches.list({ limit: 2, before_id: ids[1] })
    expect(newer.data.map((b) => b.id)).toEqual([ids[3], ids[2]])
    expect(newer.has_more).toBe(true)
    const newest = await client.messages.batches.list({ limit: 2, before_id: ids[3] })
    expect(newest.data.map((b) => b.id)).toEqual([ids[4]])
    expect(newest.has_more).toBe(false)
  })

  it("cancels: canceling, then ended with succeeded and canceled results", async () => {
    await setFaults(emulator.url, { requestsPerSecond: 40 }, control)
    try {
      const created = await client.messages.batches.create({ requests: requests(120, "cx") })
      // results before the end: the SDK refuses (results_url is null)
      await expect(client.messages.batches.results(created.id)).rejects.toThrow(/results_url/)
      now += 400 // 16 of the 120 requests processed
      const canceling = await client.messages.batches.cancel(created.id)
      expect(canceling.processing_status).toBe("canceling")
      expect(canceling.cancel_initiated_at).not.toBeNull()
      expect(canceling.request_counts.processing).toBe(120)
      const { batch } = await poll(created.id)
      const counts = batch.request_counts
      expect(counts.canceled).toBe(120 - 16)
      expect(counts.succeeded + counts.errored).toBe(16)
      expect(counts.succeeded).toBeGreaterThan(0)
      expect(counts.succeeded + counts.errored + counts.canceled + counts.expired).toBe(120)
      const lines = await results(batch.id)
      expect(lines).toHaveLength(120)
      expect(lines.filter((l) => l.result.type === "canceled")).toHaveLength(counts.canceled)
      // an ended batch cannot be canceled again
      await expect(client.messages.batches.cancel(batch.id)).rejects.toBeInstanceOf(Anthropic.BadRequestError)
    } finally {
      await setFaults(emulator.url, { requestsPerSecond: 2000 }, control)
    }
  })

  it("expires a batch (expireBatch fault): unfinished requests become expired", async () => {
    await setFaults(emulator.url, { requestsPerSecond: 40 }, control)
    try {
      const created = await client.messages.batches.create({ requests: requests(120, "ex") })
      now += 400 // 16 of the 120 requests processed
      await setFaults(emulator.url, { expireBatch: created.id }, control)
      const { batch } = await poll(created.id)
      expect(batch.request_counts.expired).toBe(120 - 16)
      expect(batch.request_counts.succeeded).toBeGreaterThan(0)
      expect(batch.cancel_initiated_at).toBeNull()
      const types = new Set((await results(batch.id)).map((l) => l.result.type))
      expect([...types].sort()).toEqual(["expired", "succeeded"])
    } finally {
      await setFaults(emulator.url, { requestsPerSecond: 2000 }, control)
    }
  })

  it("errorRate: errored api_error results that succeed when resubmitted", async () => {
    await setFaults(emulator.url, { errorRate: 0.4 }, control)
    try {
      const input = requests(40, "err")
      const { batch } = await poll((await client.messages.batches.create({ requests: input })).id)
      const failed = (await results(batch.id)).filter((l) => l.result.type === "errored")
      expect(failed.length).toBeGreaterThan(0)
      for (const line of failed) {
        if (line.result.type === "errored") expect(line.result.error.error.type).toBe("api_error")
      }
      const retry = input.filter((r) => failed.some((f) => f.custom_id === r.custom_id))
      const second = await poll((await client.messages.batches.create({ requests: retry })).id)
      expect(second.batch.request_counts).toMatchObject({ succeeded: retry.length, errored: 0 })
    } finally {
      await setFaults(emulator.url, { errorRate: 0 }, control)
    }
  })

  it("deletes only after the end; a deleted batch is gone", async () => {
    await setFaults(emulator.url, { requestsPerSecond: 20 }, control)
    let id: string
    try {
      id = (await client.messages.batches.create({ requests: requests(50, "del") })).id
      await expect(client.messages.batches.delete(id)).rejects.toBeInstanceOf(Anthropic.BadRequestError)
      await client.messages.batches.cancel(id)
    } finally {
      await setFaults(emulator.url, { requestsPerSecond: 2000 }, control)
    }
    await poll(id)
    const deleted = await client.messages.batches.delete(id)
    expect(deleted).toEqual({ id, type: "message_batch_deleted" })
    await expect(client.messages.batches.retrieve(id)).rejects.toBeInstanceOf(Anthropic.NotFoundError)
    const listed: Array<string> = []
    for await (const b of client.messages.batches.list({ limit: 100 })) listed.push(b.id)
    expect(listed).not.toContain(id)
    // the ledger remembers it
    expect((await getLedger(emulator.url, control)).batches.find((b) => b.id === id)).toMatchObject({ deleted: true })
  })

  it("rejects bad envelopes synchronously with Anthropic-shaped 400s", async () => {
    const bad: Array<[unknown, RegExp]> = [
      [{ requests: [{ custom_id: "has.dot", params: {} }] }, /custom_id: String should match pattern/],
      [{ requests: [{ custom_id: "x".repeat(65), params: {} }] }, /at most 64 characters/],
      [{ requests: [{ custom_id: "a", params: {} }, { custom_id: "a", params: {} }] }, /requests\.1\.custom_id: Duplicate/],
      [{ requests: [{ custom_id: "a" }] }, /requests\.0\.params: Field required/],
      [{ requests: [] }, /at least 1 item/]
    ]
    for (const [body, message] of bad) {
      const error = await client.messages.batches.create(body as Anthropic.Messages.BatchCreateParams).then(
        () => undefined,
        (e: unknown) => e
      )
      expect(error).toBeInstanceOf(Anthropic.BadRequestError)
      const apiError = error as InstanceType<typeof Anthropic.BadRequestError>
      expect(apiError.status).toBe(400)
      expect(apiError.message).toMatch(message)
      expect((apiError.error as { type: string; error: { type: string } }).error.type).toBe("invalid_request_error")
      expect(apiError.requestID).toMatch(/^req_/)
    }
  })

  it("authenticates: a wrong key is a 401 authentication_error; retries honour 429 retry-after", async () => {
    const wrong = new Anthropic({ apiKey: "sk-ant-wrong-key", baseURL: emulator.url, fetch: validatingFetch(checked, problems), maxRetries: 0 })
    await expect(wrong.messages.batches.list()).rejects.toBeInstanceOf(Anthropic.AuthenticationError)

    await setFaults(emulator.url, { rateLimitRate: 0.5, retryAfterMs: 20 }, control)
    try {
      const created = await client.messages.batches.create({ requests: requests(2, "rl") })
      await poll(created.id)
      expect((await results(created.id)).length).toBe(2)
      expect(checked.some((c) => c.status === 429 && c.headers.get("retry-after-ms") === "20")).toBe(true)
    } finally {
      await setFaults(emulator.url, { rateLimitRate: 0 }, control)
    }
  })

  it("serves results as application/x-jsonl with a request-id", () => {
    const result = checked.find((c) => c.schema === "MessageBatchIndividualResponse" && c.status === 200)!
    expect(result.headers.get("content-type")).toBe("application/x-jsonl")
    expect(checked.every((c) => (c.headers.get("request-id") ?? c.headers.get("x-request-id") ?? "").startsWith("req_"))).toBe(true)
    // every route the SDK used was validated
    expect(new Set(checked.map((c) => c.schema))).toEqual(
      new Set(["MessageBatch", "MessageBatchListPage", "MessageBatchIndividualResponse", "DeletedMessageBatch", "ErrorResponse"])
    )
  })
})

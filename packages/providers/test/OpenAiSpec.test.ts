/**
 * Wire fidelity of the OpenAI side against the OpenAI OpenAPI spec (`specs/`), with
 * ajv (see openApiSchemas.ts for how the spec is loaded):
 *
 * 1. Every JSON answer of the emulator, as the official `openai` client receives it (a `fetch`
 *    that validates each response before the SDK sees it), against the component the spec's
 *    `paths` name for that route (`Batch`, `OpenAIFile`, `ListBatchesResponse`,
 *    `ListFilesResponse`, `DeleteFileResponse`, `CreateChatCompletionResponse` …), or
 *    `ErrorResponse` for a 4xx; every line of every output and error file against
 *    `BatchRequestOutput`, and the `response.body` in it against the endpoint's response (or
 *    `ErrorResponse`). Answers are validated RELAXED: optional members may be null.
 * 2. Every request our provider (`OpenAiBatch.makeWithClient`) sends, recorded on the
 *    `HttpClient` it is given: the operation exists in the spec, its query parameters are
 *    declared ones with valid values, its body validates against the spec's request body
 *    (`CreateBatchRequest`, `CreateFileRequest` for the multipart upload), and every line of
 *    the uploaded file (what `encode` produced) against `BatchRequestInput`, its `body` against
 *    the request of its `url` (`CreateChatCompletionRequest`, `CreateEmbeddingRequest`).
 *    Requests are validated STRICTLY: the spec as published.
 */
import { HttpClient } from "@effect/platform"
import type { HttpBody, HttpClientRequest } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import type { BatchRequest } from "@sluice/core"
import { Chunk, Context, Effect, Layer, Redacted, Stream } from "effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import OpenAI, { toFile } from "openai"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type BatchInfo, type BatchProvider, isTerminal } from "../src/BatchProvider.js"
import { type EmulatorHandle, startEmulator } from "@sluice/emulator"
import { setFaults } from "@sluice/emulator/control"
import { encode, makeWithClient } from "../src/openai/OpenAiBatch.js"
import { formOf } from "./multipartBody.js"
import { openAiValidators, specOperation } from "./openApiSchemas.js"

const answers = openAiValidators({ relaxed: true })
const requests = openAiValidators({ relaxed: false })

const FAST = { validatingMs: 20, finalizingMs: 20, cancellingMs: 50, requestsPerSecond: 2000 } as const
const ALL_STATUSES = ["validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled"]

type Obj = { readonly [key: string]: unknown }
const isObject = (value: unknown): value is Obj => typeof value === "object" && value !== null && !Array.isArray(value)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const excerpt = (value: unknown) => JSON.stringify(value).slice(0, 300)

/** `/v1/batches/x` -> `/batches/x`: the spec's paths are relative to its server `https://api.openai.com/v1`. */
const specPath = (pathname: string): string => pathname.replace(/^\/v1(?=\/)/, "")

// ---------------------------------------------------------------------------------------------
// input lines
// ---------------------------------------------------------------------------------------------

const LabelSchema = {
  type: "object",
  properties: {
    sentiment: { type: "string", enum: ["positive", "negative", "neutral"] },
    topics: { type: "array", items: { type: "string" } },
    stars: { type: "integer", minimum: 1, maximum: 5 },
    note: { anyOf: [{ type: "string" }, { type: "null" }] }
  },
  required: ["sentiment", "topics", "stars", "note"],
  additionalProperties: false
} as const

const messages = (text: string) => [
  { role: "system" as const, content: "You label product reviews." },
  { role: "user" as const, content: text }
]

const structuredChat = (i: number): BatchRequest => ({
  _tag: "chat",
  model: "gpt-4o-mini",
  messages: messages(`Review ${i}: the product is ${["great", "awful", "okay"][i % 3]}.`),
  params: { temperature: 0, max_completion_tokens: 200, seed: 7 },
  output: { name: "Label", schema: LabelSchema }
})

const plainChat = (i: number): BatchRequest => ({
  _tag: "chat",
  model: "gpt-4o-mini",
  messages: [...messages(`Review ${i}: fine.`), { role: "assistant", content: "Noted." }, { role: "user", content: "Summarise." }],
  params: { top_p: 0.9, n: 1, max_tokens: 64, stop: ["\n\n"] }
})

const embedding = (i: number): BatchRequest => ({
  _tag: "embeddings",
  model: "text-embedding-3-small",
  input: `review number ${i}`,
  params: i % 2 === 0 ? { dimensions: 8, encoding_format: "float" } : {}
})

/** A raw JSONL line (for the SDK-driven tests), encoded the provider's way. */
const line = (customId: string, request: BatchRequest): Obj => JSON.parse(encode(request, customId)) as Obj

const toJsonl = (items: ReadonlyArray<unknown>): string => items.map((item) => JSON.stringify(item)).join("\n") + "\n"

// ---------------------------------------------------------------------------------------------
// 0. the validators themselves
// ---------------------------------------------------------------------------------------------

describe("the spec validators", () => {
  const batch = {
    id: "batch_1", object: "batch", endpoint: "/v1/chat/completions", input_file_id: "file-1", completion_window: "24h",
    status: "validating", created_at: 1_700_000_000
  }
  const file = { id: "file-1", object: "file", bytes: 1, created_at: 1_700_000_000, filename: "a.jsonl", purpose: "batch", status: "processed" }

  it("relaxed: optional members may be null; nothing else is relaxed", () => {
    expect(answers.problems("Batch", batch)).toEqual([])
    expect(answers.problems("Batch", { ...batch, output_file_id: null, in_progress_at: null, errors: null, model: null })).toEqual([])
    expect(answers.problems("Batch", { ...batch, created_at: null })).not.toEqual([]) // required stays non-null
    expect(answers.problems("Batch", { ...batch, status: "running" })).not.toEqual([])
    expect(answers.problems("Batch", { ...batch, output_file_id: 7 })).not.toEqual([])
    expect(answers.problems("Batch", { ...batch, request_counts: { total: 1 } })).not.toEqual([])
    expect(answers.problems("Batch", { ...batch, metadata: { n: 1 } })).not.toEqual([])
    expect(answers.problems("OpenAIFile", { ...file, expires_at: null, status_details: null })).toEqual([])
    expect(answers.problems("OpenAIFile", { ...file, created_at: -1 })).not.toEqual([]) // format: unixtime
    expect(answers.problems("OpenAIFile", { ...file, purpose: "batch-api" })).not.toEqual([])
    expect(answers.problems("ErrorResponse", { error: { message: "m", type: "t", param: null, code: null } })).toEqual([])
    expect(answers.problems("ErrorResponse", { error: { message: "m", type: "t" } })).not.toEqual([])
  })

  it("strict: the spec as published; OpenAPI 3.0 `nullable` honoured in both", () => {
    expect(requests.problems("Batch", { ...batch, output_file_id: null })).not.toEqual([])
    const line = { id: "batch_req_1", custom_id: "a", response: null, error: { code: "batch_expired", message: "m" } }
    expect(requests.problems("BatchRequestOutput", line)).toEqual([])
    expect(answers.problems("BatchRequestOutput", line)).toEqual([])
    expect(answers.problems("BatchRequestOutput", { ...line, response: { status_code: "200" } })).not.toEqual([])
    expect(requests.problems("CreateBatchRequest", { input_file_id: "f", endpoint: "/v1/chat/completions", completion_window: "24h" })).toEqual([])
    expect(requests.problems("CreateBatchRequest", { input_file_id: "f", endpoint: "/v1/chat/completions", completion_window: "48h" })).not.toEqual([])
  })
})

// ---------------------------------------------------------------------------------------------
// 1. the emulator's answers, through the official client
// ---------------------------------------------------------------------------------------------

interface Checked {
  readonly method: string
  /** The spec's path template. */
  readonly route: string
  readonly status: number
  readonly schema: string
}

describe("the emulator's OpenAI answers conform to the OpenAI spec (relaxed: optional members may be null)", () => {
  let emulator: EmulatorHandle
  let client: OpenAI
  const checked: Array<Checked> = []
  const problems: Array<string> = []
  /** Batch status -> how many Batch objects in that status were validated. */
  const statuses = new Map<string, number>()
  /** Output/error file id -> the endpoint of its batch (to validate `response.body`). */
  const fileEndpoints = new Map<string, string>()
  /** Result lines validated, by kind. */
  const lineKinds = new Map<string, number>()
  /** The emulator's clock: batches move only when `poll` moves it, so every status is seen. */
  let now = Date.now()

  const count = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1)

  const validate = (schema: string, value: unknown, where: string) => {
    for (const problem of answers.problems(schema, value)) problems.push(`${where}: ${problem} in ${excerpt(value)}`)
  }

  const noteBatch = (batch: unknown) => {
    if (!isObject(batch)) return
    count(statuses, String(batch["status"]))
    for (const key of ["output_file_id", "error_file_id"]) {
      if (typeof batch[key] === "string") fileEndpoints.set(batch[key], String(batch["endpoint"]))
    }
  }

  /** One line of an output or error file. */
  const validateResultLine = (text: string, fileId: string, where: string) => {
    let value: unknown
    try {
      value = JSON.parse(text)
    } catch {
      problems.push(`${where}: a line is not JSON: ${text.slice(0, 200)}`)
      return
    }
    validate("BatchRequestOutput", value, where)
    // The per-line schema lists no required members; what every line carries is checked here.
    if (!isObject(value) || typeof value["id"] !== "string" || typeof value["custom_id"] !== "string") {
      problems.push(`${where}: a line without id / custom_id: ${excerpt(value)}`)
      return
    }
    const response = value["response"]
    const error = value["error"]
    if ((response === null) === (error === null) || response === undefined || error === undefined) {
      problems.push(`${where}: a line needs exactly one of response / error non-null: ${excerpt(value)}`)
      return
    }
    if (isObject(response)) {
      const status = response["status_code"]
      const endpoint = fileEndpoints.get(fileId)
      const ok = typeof status === "number" && status >= 200 && status < 300
      const bodySchema = ok ? (endpoint === undefined ? undefined : specOperation("POST", specPath(endpoint))?.response) : "ErrorResponse"
      if (bodySchema === undefined) problems.push(`${where}: no response schema for endpoint ${endpoint}`)
      else validate(bodySchema, response["body"], `${where} response.body`)
      if (typeof response["request_id"] !== "string") problems.push(`${where}: response without request_id: ${excerpt(value)}`)
      count(lineKinds, ok ? "success" : `http_${String(status)}`)
    } else if (isObject(error)) {
      if (typeof error["code"] !== "string" || typeof error["message"] !== "string") {
        problems.push(`${where}: error without code / message: ${excerpt(value)}`)
      }
      count(lineKinds, String(error["code"]))
    }
  }

  /** A fetch for the SDK that validates every answer before the SDK sees it. */
  const validatingFetch: typeof fetch = async (input, init) => {
    const response = await fetch(input, init)
    const url = new URL(typeof input === "string" ? input : input instanceof URL ? input.href : input.url)
    // Only the emulator's answers (the SDK also fetches `data:,` while building a multipart body).
    if (url.origin !== emulator.url) return response
    const method = (init?.method ?? (input instanceof Request ? input.method : "GET")).toUpperCase()
    const path = specPath(url.pathname)
    const operation = specOperation(method, path)
    const where = `${method} ${url.pathname} -> ${response.status}`
    if (operation === undefined) {
      problems.push(`${where}: the spec has no such operation`)
      return response
    }
    const text = await response.clone().text()
    let schema: string
    if (response.status >= 400) {
      schema = "ErrorResponse"
      validate(schema, JSON.parse(text), where)
    } else if (operation.template === "/files/{file_id}/content") {
      // JSONL (`type: string` in the spec): the output and error files are checked line by line.
      schema = "BatchRequestOutput"
      const fileId = path.split("/")[2]!
      for (const l of text.split("\n").filter((l) => l.length > 0)) validateResultLine(l, fileId, where)
    } else if (operation.response !== undefined) {
      schema = operation.response
      const body = JSON.parse(text) as unknown
      validate(schema, body, where)
      if (schema === "Batch") noteBatch(body)
      if (schema === "ListBatchesResponse" && isObject(body) && Array.isArray(body["data"])) body["data"].forEach(noteBatch)
    } else {
      problems.push(`${where}: the spec names no JSON answer for ${operation.template}`)
      return response
    }
    checked.push({ method, route: operation.template, status: response.status, schema })
    return response
  }

  beforeAll(async () => {
    emulator = await startEmulator({ ...FAST, clock: () => now })
    client = new OpenAI({ apiKey: "test", baseURL: `${emulator.url}/v1`, fetch: validatingFetch, maxRetries: 0 })
  })
  afterAll(async () => {
    await emulator?.close()
    // Every answer the client got, in every test, conforms to the spec.
    expect(problems).toEqual([])
  })

  const upload = async (items: ReadonlyArray<unknown>, name = "input.jsonl") =>
    client.files.create({ file: await toFile(Buffer.from(toJsonl(items)), name), purpose: "batch" })

  const submit = async (items: ReadonlyArray<unknown>, endpoint: "/v1/chat/completions" | "/v1/embeddings" = "/v1/chat/completions") => {
    const file = await upload(items)
    return client.batches.create({ input_file_id: file.id, endpoint, completion_window: "24h", metadata: { suite: "spec" } })
  }

  /** Retrieves until `done`, moving the emulator's clock 10 ms after each retrieve (every status lasts 20 ms or more). */
  const poll = async (id: string, done: (b: OpenAI.Batch) => boolean = (b) => ["completed", "failed", "expired", "cancelled"].includes(b.status)) => {
    let batch: OpenAI.Batch | undefined
    for (let i = 0; i < 2000; i++) {
      batch = await client.batches.retrieve(id)
      if (done(batch)) return batch
      now += 10
    }
    throw new Error(`batch ${id} still ${batch?.status} after 2000 polls`)
  }

  /** Downloads a result file (the fetch validates each line). */
  const download = async (fileId: string | null | undefined): Promise<Array<Obj>> => {
    if (fileId === null || fileId === undefined) return []
    const text = await (await client.files.content(fileId)).text()
    return text.split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l) as Obj)
  }

  const withFaults = async <A>(patch: Parameters<typeof setFaults>[1], body: () => Promise<A>): Promise<A> => {
    await setFaults(emulator.url, patch)
    try {
      return await body()
    } finally {
      await setFaults(emulator.url, { errorRate: 0, requestsPerSecond: FAST.requestsPerSecond })
    }
  }

  it("files: upload (multipart), retrieve, list page by page, delete", async () => {
    const uploaded: Array<string> = []
    for (let i = 0; i < 3; i++) uploaded.push((await upload([line(`f-${i}`, plainChat(i))], `files-${i}.jsonl`)).id)
    const file = await client.files.retrieve(uploaded[0]!)
    expect(file).toMatchObject({ object: "file", purpose: "batch", filename: "files-0.jsonl" })

    const listed: Array<string> = []
    for await (const f of client.files.list({ purpose: "batch", limit: 2 })) listed.push(f.id)
    expect(listed.slice(0, 3)).toEqual([...uploaded].reverse())
    expect(checked.filter((c) => c.schema === "ListFilesResponse").length).toBeGreaterThanOrEqual(2)

    // An empty page: the emulator sends `first_id: null, last_id: null` (as the real API does), where the
    // spec declares both required strings. The one known deviation from the spec, checked exactly here
    // (outside validatingFetch) so that any other difference still fails.
    const empty = await (await fetch(`${emulator.url}/v1/files?purpose=vision`, { headers: { authorization: "Bearer test" } })).json()
    expect(empty).toEqual({ object: "list", data: [], first_id: null, last_id: null, has_more: false })
    expect(answers.problems("ListFilesResponse", empty)).toEqual([
      'ListFilesResponse/first_id must be string {"type":"string"}',
      'ListFilesResponse/last_id must be string {"type":"string"}'
    ])

    expect(await client.files.delete(uploaded[2]!)).toEqual({ id: uploaded[2], object: "file", deleted: true })
    await expect(client.files.retrieve(uploaded[2]!)).rejects.toBeInstanceOf(OpenAI.NotFoundError)
  })

  it("a chat batch: every Batch on the way validates; output and error lines (200, 400, 500) validate", async () => {
    const input = [
      ...Array.from({ length: 24 }, (_, i) => line(`chat-${i}`, i % 2 === 0 ? structuredChat(i) : plainChat(i))),
      // the endpoint refuses this one (no messages): a 400 line in the error file
      line("chat-bad", { ...plainChat(99), messages: [] } as BatchRequest)
    ]
    const batch = await withFaults({ errorRate: 0.3 }, async () => {
      const created = await submit(input)
      expect(created.status).toBe("validating")
      return poll(created.id)
    })
    expect(batch.status).toBe("completed")
    expect(batch.request_counts!.failed).toBeGreaterThan(1) // the 400 and some 500s
    const output = await download(batch.output_file_id)
    const errors = await download(batch.error_file_id)
    expect(output.length + errors.length).toBe(input.length)
    expect(lineKinds.get("success")).toBeGreaterThan(0)
    expect(lineKinds.get("http_400")).toBe(1)
    expect(lineKinds.get("http_500")).toBeGreaterThan(0)

    // the result files are files too
    expect((await client.files.retrieve(batch.output_file_id!)).purpose).toBe("batch_output")
    await client.files.retrieve(batch.error_file_id!)
  })

  it("an embeddings batch: output lines validate against CreateEmbeddingResponse", async () => {
    const batch = await poll((await submit(Array.from({ length: 4 }, (_, i) => line(`emb-${i}`, embedding(i))), "/v1/embeddings")).id)
    expect(batch.status).toBe("completed")
    expect(await download(batch.output_file_id)).toHaveLength(4)
  })

  it("finalizing: a Batch seen while finalizing validates", async () => {
    const before = statuses.get("finalizing") ?? 0
    await poll((await submit([line("fin", plainChat(1))])).id)
    // finalizing lasts 20 ms of the emulator's clock: two polls see it
    expect((statuses.get("finalizing") ?? 0) - before).toBe(2)
  })

  it("cancel: the cancelling Batch, then cancelled; batch_cancelled lines validate", async () => {
    const batch = await withFaults({ requestsPerSecond: 20 }, async () => {
      const created = await submit(Array.from({ length: 60 }, (_, i) => line(`cx-${i}`, plainChat(i))))
      await poll(created.id, (b) => (b.request_counts?.completed ?? 0) >= 2)
      const cancelling = await client.batches.cancel(created.id)
      expect(cancelling.status).toBe("cancelling")
      return poll(created.id)
    })
    expect(batch.status).toBe("cancelled")
    await download(batch.output_file_id)
    const errors = await download(batch.error_file_id)
    expect(errors.length).toBeGreaterThan(0)
    expect(lineKinds.get("batch_cancelled")).toBe(errors.length)
  })

  it("expireBatch: the expired Batch; batch_expired lines validate", async () => {
    const batch = await withFaults({ requestsPerSecond: 20 }, async () => {
      const created = await submit(Array.from({ length: 60 }, (_, i) => line(`ex-${i}`, structuredChat(i))))
      await poll(created.id, (b) => (b.request_counts?.completed ?? 0) >= 2)
      await setFaults(emulator.url, { expireBatch: created.id })
      return poll(created.id)
    })
    expect(batch.status).toBe("expired")
    expect((await download(batch.output_file_id)).length).toBeGreaterThanOrEqual(2)
    const errors = await download(batch.error_file_id)
    expect(errors.length).toBeGreaterThan(0)
    expect(lineKinds.get("batch_expired")).toBe(errors.length)
  })

  it("failed validation: the failed Batch with errors.data (BatchError) validates", async () => {
    const batch = await poll((await submit([line("dup", plainChat(1)), line("dup", plainChat(2))])).id)
    expect(batch.status).toBe("failed")
    expect(batch.errors?.data?.[0]).toMatchObject({ code: "duplicate_custom_id", line: 2 })
  })

  it("lists batches page by page (ListBatchesResponse)", async () => {
    const before = checked.filter((c) => c.schema === "ListBatchesResponse").length
    const ids: Array<string> = []
    for await (const b of client.batches.list({ limit: 2 })) ids.push(b.id)
    expect(ids.length).toBeGreaterThanOrEqual(5)
    expect(new Set(ids).size).toBe(ids.length)
    expect(checked.filter((c) => c.schema === "ListBatchesResponse").length - before).toBe(Math.ceil(ids.length / 2))
  })

  it("synchronous chat completions and embeddings validate against their responses", async () => {
    const structured = JSON.parse(encode(structuredChat(1), "sync")) as { body: OpenAI.Chat.ChatCompletionCreateParamsNonStreaming }
    const completion = await client.chat.completions.create(structured.body)
    expect(completion.object).toBe("chat.completion")
    await client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Tell me about otters" }] })
    // float: the spec types `embedding` as numbers (the SDK's default base64 is a string on the wire)
    await client.embeddings.create({ model: "text-embedding-3-small", input: ["otters", "beavers"], encoding_format: "float" })
  })

  it("answers errors with the spec's ErrorResponse (400, 404)", async () => {
    const raw = (method: string, path: string, body?: unknown) =>
      validatingFetch(`${emulator.url}/v1${path}`, {
        method,
        headers: { authorization: "Bearer test", "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) })
      })
    const file = await upload([line("e-1", plainChat(1))])
    const cases: Array<[string, string, unknown, number]> = [
      ["GET", "/batches/batch_doesnotexist", undefined, 404],
      ["POST", "/batches/batch_doesnotexist/cancel", undefined, 404],
      ["GET", "/files/file-doesnotexist", undefined, 404],
      ["DELETE", "/files/file-doesnotexist", undefined, 404],
      ["POST", "/batches", {}, 400],
      ["POST", "/batches", { input_file_id: file.id, endpoint: "/v1/nope", completion_window: "24h" }, 400],
      ["POST", "/batches", { input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "48h" }, 400],
      ["POST", "/batches", { input_file_id: "file-doesnotexist", endpoint: "/v1/chat/completions", completion_window: "24h" }, 404],
      ["GET", `/files/${file.id}/content`, undefined, 400], // batch inputs cannot be downloaded
      ["POST", "/chat/completions", { model: "gpt-4o-mini", messages: [] }, 400]
    ]
    for (const [method, path, body, status] of cases) expect([method, path, (await raw(method, path, body)).status]).toEqual([method, path, status])
    // through the SDK too: a bad upload, and cancelling a finished batch
    await expect(upload([line("t", plainChat(1))], "input.txt")).rejects.toBeInstanceOf(OpenAI.BadRequestError)
    const done = await poll((await submit([line("c", plainChat(1))])).id)
    await expect(client.batches.cancel(done.id)).rejects.toBeInstanceOf(OpenAI.BadRequestError)
    expect(checked.filter((c) => c.schema === "ErrorResponse").map((c) => c.status).sort()).toEqual(
      expect.arrayContaining([400, 404])
    )
  })

  it("covered every Batch status and every Files/Batches route", () => {
    expect([...statuses.keys()].sort()).toEqual([...ALL_STATUSES].sort())
    const routes = new Set(checked.filter((c) => c.status < 400).map((c) => `${c.method} ${c.route}`))
    for (const route of [
      "POST /files", "GET /files", "GET /files/{file_id}", "DELETE /files/{file_id}", "GET /files/{file_id}/content",
      "POST /batches", "GET /batches", "GET /batches/{batch_id}", "POST /batches/{batch_id}/cancel",
      "POST /chat/completions", "POST /embeddings"
    ]) expect(routes).toContain(route)
    expect([...lineKinds.keys()].sort()).toEqual(["batch_cancelled", "batch_expired", "http_400", "http_500", "success"])
  })
})

// ---------------------------------------------------------------------------------------------
// 2. what our provider sends
// ---------------------------------------------------------------------------------------------

interface Sent {
  readonly method: string
  readonly url: URL
  readonly query: URLSearchParams
  readonly contentType: string | undefined
  readonly authorization: string | undefined
  readonly body: HttpBody.HttpBody
}

/** An undici-backed client whose Agent lives as long as the scope. */
const undiciClient = Effect.map(Layer.build(NodeHttpClient.layerUndici), (ctx) => Context.get(ctx, HttpClient.HttpClient))

const recordRequest = (sent: Array<Sent>) => (request: HttpClientRequest.HttpClientRequest) =>
  Effect.sync(() => {
    sent.push({
      method: request.method,
      url: new URL(request.url),
      query: new URLSearchParams(request.urlParams.map(([k, v]) => [k, v] as [string, string])),
      contentType: request.body.contentType ?? request.headers["content-type"],
      authorization: request.headers["authorization"],
      body: request.body
    })
  })

/** Problems of one recorded request against the spec (strict). */
const requestProblems = async (request: Sent, seenLines: Map<string, number>): Promise<Array<string>> => {
  const where = `${request.method} ${request.url.pathname}`
  const operation = specOperation(request.method, specPath(request.url.pathname))
  if (operation === undefined) return [`${where}: the spec has no such operation`]
  const problems = operation.queryProblems(request.query).map((p) => `${where}: ${p}`)
  // The spec's security scheme (ApiKeyAuth): HTTP bearer.
  if (!/^Bearer \S+$/.test(request.authorization ?? "")) problems.push(`${where}: no Authorization: Bearer header`)
  const body = request.body
  if (operation.request === undefined) {
    if (body._tag !== "Empty") problems.push(`${where}: the spec declares no request body, but one was sent (${body._tag})`)
    return problems
  }
  const { contentType, schema } = operation.request
  if (contentType === "application/json") {
    if (body._tag !== "Uint8Array" || !(request.contentType ?? "").startsWith("application/json")) {
      return [...problems, `${where}: expected a JSON body, got ${body._tag} ${request.contentType}`]
    }
    const value = JSON.parse(new TextDecoder().decode(body.body)) as unknown
    problems.push(...requests.problems(schema, value).map((p) => `${where}: ${p} in ${excerpt(value)}`))
  } else if (contentType === "multipart/form-data") {
    const form = await Effect.runPromise(Effect.either(formOf(body)))
    if (form._tag === "Left") return [...problems, `${where}: ${String(form.left)}`]
    const fields: Record<string, unknown> = {}
    const files: Array<Blob> = []
    for (const [name, value] of form.right.entries()) {
      if (typeof value === "string") fields[name] = value
      else {
        fields[name] = "<binary>" // `format: binary`
        files.push(value)
      }
    }
    problems.push(...requests.problems(schema, fields).map((p) => `${where}: ${p} in ${excerpt(fields)}`))
    // The uploaded shard: each line a BatchRequestInput whose body is its url's request.
    for (const file of files) {
      for (const text of (await file.text()).split("\n").filter((l) => l.length > 0)) {
        problems.push(...inputLineProblems(text, `${where} line`))
        seenLines.set("uploaded", (seenLines.get("uploaded") ?? 0) + 1)
      }
    }
  } else {
    problems.push(`${where}: unexpected request media type ${contentType} in the spec`)
  }
  return problems
}

/** Problems of one input line (as `encode` wrote it) against BatchRequestInput and its url's request body. */
const inputLineProblems = (text: string, where: string): Array<string> => {
  const value = JSON.parse(text) as unknown
  const problems = requests.problems("BatchRequestInput", value).map((p) => `${where}: ${p} in ${excerpt(value)}`)
  // BatchRequestInput lists no required members and has no `body`: both are checked here.
  if (!isObject(value) || typeof value["custom_id"] !== "string" || value["method"] !== "POST" || typeof value["url"] !== "string") {
    return [...problems, `${where}: custom_id, method POST and url are required: ${excerpt(value)}`]
  }
  const request = specOperation("POST", specPath(value["url"]))?.request
  if (request === undefined) return [...problems, `${where}: the spec has no request body for ${value["url"]}`]
  problems.push(...requests.problems(request.schema, value["body"]).map((p) => `${where} body: ${p} in ${excerpt(value)}`))
  return problems
}

describe("our OpenAI provider's requests conform to the OpenAI spec (strict)", () => {
  it("every line encode produces is a BatchRequestInput whose body is its endpoint's request", () => {
    const cases: Array<[string, BatchRequest]> = [
      ["structured", structuredChat(1)],
      ["structured-odd-name", { ...structuredChat(2), output: { name: "Review label (v2)!", schema: LabelSchema } } as BatchRequest],
      ["plain", plainChat(3)],
      ["plain-no-params", { _tag: "chat", model: "gpt-4o-mini", messages: messages("hello"), params: {} }],
      ["embedding", embedding(0)],
      ["embedding-no-params", embedding(1)]
    ]
    const problems = cases.flatMap(([id, request]) => inputLineProblems(encode(request, id), id))
    expect(problems).toEqual([])
    // The spec gives the schema name's rule in prose only ("a-z, A-Z, 0-9, or contain underscores and dashes,
    // with a maximum length of 64"): checked by hand.
    for (const [id, request] of cases) {
      const format = (JSON.parse(encode(request, id)) as { body: { response_format?: { json_schema: { name: string } } } }).body.response_format
      if (format !== undefined) expect(format.json_schema.name).toMatch(/^[A-Za-z0-9_-]{1,64}$/)
    }
    // sanity: the strict validators do catch a broken line
    expect(inputLineProblems(JSON.stringify({ custom_id: "x", method: "GET", url: "/v1/chat/completions", body: { model: "m" } }), "broken").length)
      .toBeGreaterThan(0)
  })

  it("stage, findStaged, create, retrieve, list, results, cancel, deleteStaged, storage (files, deleteFile): every request validates", async () => {
    // The emulator's clock moves only when `wait` moves it: the slow batch is still running when cancelled.
    let now = Date.now()
    const emulator = await startEmulator({ ...FAST, clock: () => now })
    const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-oai-spec-"))
    const sent: Array<Sent> = []
    try {
      const program = Effect.gen(function*() {
        const client = HttpClient.tapRequest(yield* undiciClient, recordRequest(sent))
        const provider = makeWithClient(client, {
          apiKey: Redacted.make("sk-test"),
          baseUrl: `${emulator.url}/v1`,
          organization: "org-test",
          project: "proj-test",
          // one item a page: list and findStaged follow `after` cursors
          listPageSize: 1,
          filesPageSize: 1
        })
        const shard = (name: string, rows: ReadonlyArray<BatchRequest>) => {
          const path = NodePath.join(dir, `${name}.jsonl`)
          NodeFs.writeFileSync(path, rows.map((r, i) => provider.encode(r, `${name}-${i}`) + "\n").join(""))
          return path
        }
        const wait = (id: string) =>
          provider.retrieve(id).pipe(
            Effect.tap(() => Effect.sync(() => void (now += 10))),
            Effect.repeat({ until: (b: BatchInfo) => isTerminal(b.status), times: 2000 })
          )
        const run = (p: BatchProvider, name: string, endpoint: "chat" | "embeddings", rows: ReadonlyArray<BatchRequest>) =>
          Effect.gen(function*() {
            const path = shard(name, rows)
            const staged = yield* p.stage(path, name)
            const created = yield* p.create({ inputRef: staged.inputRef, path, endpoint, metadata: { run: "spec", shard: name } })
            const done = yield* wait(created.id)
            const results = Chunk.toReadonlyArray(yield* Stream.runCollect(p.results(done)))
            return { staged, done, results }
          })

        const chat = yield* run(provider, "chat", "chat", Array.from({ length: 6 }, (_, i) => (i % 2 === 0 ? structuredChat(i) : plainChat(i))))
        expect(chat.done.status).toBe("completed")
        expect(chat.results).toHaveLength(6)
        const emb = yield* run(provider, "emb", "embeddings", Array.from({ length: 3 }, (_, i) => embedding(i)))
        expect(emb.done.status).toBe("completed")

        // findStaged pages through the file list to the older shard
        expect((yield* provider.findStaged("chat"))._tag).toBe("Some")
        expect(Chunk.size(yield* Stream.runCollect(provider.list))).toBe(2)

        // cancel a slow batch
        yield* Effect.promise(() => setFaults(emulator.url, { requestsPerSecond: 20 }))
        const slowPath = shard("slow", Array.from({ length: 40 }, (_, i) => plainChat(i)))
        const slow = yield* provider.create({
          inputRef: (yield* provider.stage(slowPath, "slow")).inputRef,
          path: slowPath,
          endpoint: "chat",
          metadata: {}
        })
        yield* provider.cancel(slow.id)
        yield* provider.deleteStaged(chat.staged.inputRef)

        // storage: every file of every purpose, page by page, with its bytes; a delete of a file already gone is done
        const storage = provider.storage!
        const output = chat.done.outputFileId!
        const listed = Chunk.toReadonlyArray(yield* Stream.runCollect(storage.files))
        expect(listed.map((f) => f.id)).not.toContain(chat.staged.inputRef)
        expect(listed.find((f) => f.id === emb.staged.inputRef)).toMatchObject({
          name: "emb.jsonl",
          purpose: "batch",
          bytes: NodeFs.statSync(NodePath.join(dir, "emb.jsonl")).size
        })
        expect(listed.find((f) => f.id === output)).toMatchObject({ purpose: "batch_output" })
        expect(listed.find((f) => f.id === output)!.bytes).toBeGreaterThan(0)
        expect(storage.outputFiles(chat.done)).toContain(output)
        yield* storage.deleteFile(output)
        yield* storage.deleteFile(output)
        expect(Chunk.toReadonlyArray(yield* Stream.runCollect(storage.files)).map((f) => f.id)).not.toContain(output)
      })
      await Effect.runPromise(Effect.scoped(program))

      const seenLines = new Map<string, number>()
      const problems: Array<string> = []
      for (const request of sent) problems.push(...(await requestProblems(request, seenLines)))
      expect(problems).toEqual([])
      expect(seenLines.get("uploaded")).toBe(6 + 3 + 40)
      expect([...new Set(sent.filter((s) => s.query.has("after")).map((s) => s.url.pathname))].sort()).toEqual(["/v1/batches", "/v1/files"])
      const routes = new Set(sent.map((s) => `${s.method} ${specOperation(s.method, specPath(s.url.pathname))?.template}`))
      expect([...routes].sort()).toEqual([
        "DELETE /files/{file_id}", "GET /batches", "GET /batches/{batch_id}", "GET /files", "GET /files/{file_id}/content",
        "POST /batches", "POST /batches/{batch_id}/cancel", "POST /files"
      ])
    } finally {
      await emulator.close()
      NodeFs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

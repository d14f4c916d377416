/**
 * Unit tests of the OpenAI provider: wire mapping, error mapping and retry timing, over a fake
 * HttpClient (no sockets). The end-to-end lifecycle against the emulator is in
 * OpenAiBatchEmulator.test.ts.
 */
import { HttpClient, HttpClientError, HttpClientResponse } from "@effect/platform"
import type { HttpClientRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import type { BatchRequest, BatchResult } from "@sluice/core"
import {
  Chunk,
  ConfigProvider,
  Effect,
  Either,
  Exit,
  Fiber,
  Logger,
  LogLevel,
  Option,
  Redacted,
  Stream,
  TestClock
} from "effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import type { BatchInfo } from "../src/BatchProvider.js"
import { parseRetryAfter } from "../src/internal/retry.js"
import {
  decodeBatchInfo,
  encode,
  makeWithClient,
  missingVersionHint,
  normaliseStatus,
  OpenAiConfig,
  parseResultLine
} from "../src/openai/OpenAiBatch.js"
import type { OpenAiConfig as OpenAiConfigType } from "../src/openai/OpenAiBatch.js"
import { ProviderError } from "../src/ProviderError.js"
import { formOf } from "./multipartBody.js"

// ---------------------------------------------------------------------------------------
// A fake HttpClient: a handler answers each request; every request is recorded.
// ---------------------------------------------------------------------------------------

interface Recorded {
  readonly method: string
  readonly url: URL
  readonly headers: Readonly<Record<string, string>>
  readonly request: HttpClientRequest.HttpClientRequest
}

type Answer = Response | "transport" | "refused" | "never"

const fakeClient = (handler: (req: Recorded, n: number) => Answer) => {
  const calls: Array<Recorded> = []
  const client = HttpClient.make((request, url) =>
    Effect.suspend(() => {
      const rec: Recorded = { method: request.method, url, headers: { ...request.headers }, request }
      calls.push(rec)
      const answer = handler(rec, calls.length)
      if (answer === "never") return Effect.never
      if (answer === "transport") {
        return Effect.fail(
          new HttpClientError.RequestError({ request, reason: "Transport", cause: new Error("socket hang up") })
        )
      }
      if (answer === "refused") {
        const cause = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" })
        return Effect.fail(new HttpClientError.RequestError({ request, reason: "Transport", cause }))
      }
      return Effect.succeed(HttpClientResponse.fromWeb(request, answer))
    })
  )
  return { client, calls }
}

const json = (body: unknown, status = 200, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } })

const apiKey = "sk-test-SECRET-0123456789"

const baseConfig: OpenAiConfigType = {
  apiKey: Redacted.make(apiKey),
  baseUrl: "https://fake.local/v1/",
  retry: { maxRetries: 3 }
}

const wireBatch = (over: Record<string, unknown> = {}) => ({
  id: "batch_1",
  object: "batch",
  endpoint: "/v1/chat/completions",
  errors: null,
  input_file_id: "file-in",
  completion_window: "24h",
  status: "in_progress",
  output_file_id: null,
  error_file_id: null,
  created_at: 1_700_000_000,
  in_progress_at: 1_700_000_010,
  expires_at: 1_700_086_400,
  request_counts: { total: 10, completed: 4, failed: 1 },
  metadata: { run: "r1", shard: "3" },
  ...over
})

const expectError = <A>(exit: Exit.Exit<A, ProviderError>): ProviderError => {
  if (Exit.isSuccess(exit)) throw new Error(`expected a failure, got ${JSON.stringify(exit.value)}`)
  const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
  if (!(failure instanceof ProviderError)) throw new Error(`expected a ProviderError, got ${String(exit.cause)}`)
  return failure
}

// ---------------------------------------------------------------------------------------

describe("encode", () => {
  it("encodes a chat request with params and structured output", () => {
    const request: BatchRequest = {
      _tag: "chat",
      model: "gpt-4o-mini",
      messages: [{ role: "system", content: "Label." }, { role: "user", content: "great \"product\"\n" }],
      params: { temperature: 0, max_tokens: 50, model: "ignored" },
      output: { name: "Label", schema: { type: "object", properties: {}, additionalProperties: false } }
    }
    const line = encode(request, "label-abc_1")
    assert.notInclude(line, "\n")
    assert.deepStrictEqual(JSON.parse(line), {
      custom_id: "label-abc_1",
      method: "POST",
      url: "/v1/chat/completions",
      body: {
        model: "gpt-4o-mini",
        messages: request.messages,
        temperature: 0,
        max_tokens: 50,
        response_format: {
          type: "json_schema",
          json_schema: {
            name: "Label",
            strict: true,
            schema: { type: "object", properties: {}, additionalProperties: false }
          }
        }
      }
    })
  })

  it("sanitises a schema name OpenAI would reject", () => {
    const line = encode({
      _tag: "chat",
      model: "m",
      messages: [{ role: "user", content: "x" }],
      params: {},
      output: { name: "my label.v2", schema: {} }
    }, "id")
    assert.strictEqual(JSON.parse(line).body.response_format.json_schema.name, "my_label_v2")
  })

  it("encodes an embeddings request", () => {
    const line = encode({ _tag: "embeddings", model: "text-embedding-3-small", input: "hello", params: { dimensions: 8 } }, "e1")
    assert.deepStrictEqual(JSON.parse(line), {
      custom_id: "e1",
      method: "POST",
      url: "/v1/embeddings",
      body: { model: "text-embedding-3-small", input: "hello", dimensions: 8 }
    })
  })
})

describe("wire Batch -> BatchInfo", () => {
  it("maps a full object", () => {
    const info = Either.getOrThrow(decodeBatchInfo(wireBatch({
      status: "completed",
      output_file_id: "file-out",
      error_file_id: "file-err",
      usage: { input_tokens: 1 },
      some_future_field: { nested: true }
    })))
    assert.deepStrictEqual(info, {
      id: "batch_1",
      status: "completed",
      rawStatus: "completed",
      counts: { total: 10, succeeded: 4, failed: 1 },
      inputRef: "file-in",
      outputFileId: "file-out",
      errorFileId: "file-err",
      metadata: { run: "r1", shard: "3" },
      createdAt: 1_700_000_000,
      errors: []
    } satisfies BatchInfo)
  })

  it("keeps an unknown status as rawStatus instead of failing", () => {
    const info = Either.getOrThrow(decodeBatchInfo(wireBatch({ status: "paused_for_maintenance" })))
    assert.strictEqual(info.status, "unknown")
    assert.strictEqual(info.rawStatus, "paused_for_maintenance")
  })

  it("tolerates nulls, missing fields, empty-string file ids and gateway spellings", () => {
    const info = Either.getOrThrow(decodeBatchInfo({
      id: "batch_2",
      status: "InProgress",
      output_file_id: "",
      error_file_id: "",
      request_counts: null,
      metadata: { run: "r", weird: 5 },
      created_at: "2024-01-01T00:00:00Z",
      errors: { object: "list", data: [{ code: "invalid_json_line", message: "bad", line: 3, param: null }] }
    }))
    assert.strictEqual(info.status, "in_progress")
    assert.strictEqual(info.outputFileId, null)
    assert.strictEqual(info.errorFileId, null)
    assert.strictEqual(info.inputRef, null)
    assert.deepStrictEqual(info.counts, { total: 0, succeeded: 0, failed: 0 })
    assert.deepStrictEqual(info.metadata, { run: "r" })
    assert.strictEqual(info.createdAt, 1_704_067_200)
    assert.deepStrictEqual(info.errors, [{ code: "invalid_json_line", message: "bad", line: 3 }])
  })

  it("normalises every documented status", () => {
    for (const s of ["validating", "in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled"]) {
      assert.strictEqual(normaliseStatus(s), s)
    }
    assert.strictEqual(normaliseStatus("Cancelled"), "cancelled")
    assert.strictEqual(normaliseStatus("canceling"), "cancelling")
  })

  it("fails (Left) only when the object has no id", () => {
    assert.isTrue(Either.isLeft(decodeBatchInfo({ status: "completed" })))
    assert.isTrue(Either.isLeft(decodeBatchInfo("nope")))
  })
})

describe("result lines", () => {
  const line = (o: unknown) => Either.getOrThrow(parseResultLine(JSON.stringify(o)))
  const chatBody = (message: Record<string, unknown>, finish = "stop") => ({
    id: "chatcmpl-1",
    object: "chat.completion",
    choices: [{ index: 0, message: { role: "assistant", ...message }, finish_reason: finish }],
    usage: { prompt_tokens: 11, completion_tokens: 7, total_tokens: 18, prompt_tokens_details: { cached_tokens: 3 } }
  })

  it("a 200 chat line succeeds with text, finish reason and usage", () => {
    const raw = { id: "batch_req_1", custom_id: "a", response: { status_code: 200, request_id: "r", body: chatBody({ content: "{\"x\":1}" }) }, error: null }
    const result = line(raw)
    assert.deepStrictEqual(result, {
      _tag: "Succeeded",
      customId: "a",
      text: "{\"x\":1}",
      finishReason: "stop",
      usage: { inputTokens: 11, outputTokens: 7, cachedInputTokens: 3 },
      raw,
      // The line as received, for the runner to write without serialising `raw` again.
      rawText: JSON.stringify(raw)
    })
  })

  it("a refusal is a permanent failure with code refusal", () => {
    const result = line({ custom_id: "a", response: { status_code: 200, body: chatBody({ content: null, refusal: "I can't." }) }, error: null })
    assert.strictEqual(result._tag, "Failed")
    if (result._tag !== "Failed") return
    assert.strictEqual(result.failure, "permanent")
    assert.strictEqual(result.code, "refusal")
    assert.strictEqual(result.message, "I can't.")
  })

  it("an embeddings line succeeds with the vector as JSON", () => {
    const result = line({
      custom_id: "e",
      response: { status_code: 200, body: { object: "list", data: [{ object: "embedding", index: 0, embedding: [0.5, -1] }], usage: { prompt_tokens: 4, total_tokens: 4 } } },
      error: null
    })
    assert.deepStrictEqual([result._tag, result._tag === "Succeeded" ? result.text : "", result._tag === "Succeeded" ? result.usage : null], [
      "Succeeded",
      "[0.5,-1]",
      { inputTokens: 4, outputTokens: 0, cachedInputTokens: 0 }
    ])
  })

  const failure = (r: BatchResult) => {
    if (r._tag !== "Failed") throw new Error("expected Failed")
    return [r.failure, r.code, r.message, r.status] as const
  }

  it("non-200 status codes are failures classified by status", () => {
    const http = (status: number, error: unknown) =>
      line({ custom_id: "a", response: { status_code: status, body: { error } }, error: null })
    assert.deepStrictEqual(failure(http(400, { message: "bad param", type: "invalid_request_error", code: "invalid_value" })), [
      "permanent",
      "invalid_value",
      "bad param",
      400
    ])
    assert.deepStrictEqual(failure(http(429, { message: "slow", type: "rate_limit", code: null })), ["retryable", "rate_limit", "slow", 429])
    assert.deepStrictEqual(failure(http(500, { message: "oops" })), ["retryable", "http_500", "oops", 500])
    assert.deepStrictEqual(failure(http(408, null)), ["retryable", "http_408", "HTTP 408", 408])
    assert.deepStrictEqual(failure(http(404, { message: "no model" })), ["permanent", "http_404", "no model", 404])
  })

  it("top-level errors: expired, cancelled, other", () => {
    const top = (code: string) => line({ custom_id: "a", response: null, error: { code, message: `m-${code}` } })
    assert.deepStrictEqual(failure(top("batch_expired")), ["expired", "batch_expired", "m-batch_expired", null])
    assert.deepStrictEqual(failure(top("batch_cancelled")), ["cancelled", "batch_cancelled", "m-batch_cancelled", null])
    assert.deepStrictEqual(failure(top("server_error")), ["retryable", "server_error", "m-server_error", null])
    assert.deepStrictEqual(failure(top("invalid_request")), ["permanent", "invalid_request", "m-invalid_request", null])
  })

  it("garbage lines are Left (not a crash)", () => {
    assert.isTrue(Either.isLeft(parseResultLine("{not json")))
    assert.isTrue(Either.isLeft(parseResultLine("[1,2]")))
    assert.isTrue(Either.isLeft(parseResultLine("{\"response\":{}}")))
  })
})

describe("parseRetryAfter", () => {
  it("prefers retry-after-ms, then seconds, then an HTTP date", () => {
    const now = Date.parse("2025-01-01T00:00:00Z")
    assert.strictEqual(parseRetryAfter({ "retry-after-ms": "1500", "retry-after": "9" }, now), 1500)
    assert.strictEqual(parseRetryAfter({ "retry-after": "7" }, now), 7000)
    assert.strictEqual(parseRetryAfter({ "retry-after": "1.5" }, now), 1500)
    assert.strictEqual(parseRetryAfter({ "retry-after": "Wed, 01 Jan 2025 00:00:20 GMT" }, now), 20_000)
    assert.strictEqual(parseRetryAfter({ "retry-after": "Tue, 31 Dec 2024 00:00:00 GMT" }, now), 0)
    assert.strictEqual(parseRetryAfter({ "retry-after": "soon" }, now), undefined)
    assert.strictEqual(parseRetryAfter({ "retry-after-ms": "-5" }, now), undefined)
    assert.strictEqual(parseRetryAfter({}, now), undefined)
  })
})

describe("requests", () => {
  it.effect("retrieve sends auth, org/project, extra headers and Cache-Control: no-cache", () =>
    Effect.gen(function*() {
      const fake = fakeClient(() => json(wireBatch()))
      const provider = makeWithClient(fake.client, {
        ...baseConfig,
        organization: "org-1",
        project: "proj-1",
        headers: { "x-gateway": "g1" }
      })
      const info = yield* provider.retrieve("batch_1")
      assert.strictEqual(info.id, "batch_1")
      assert.strictEqual(fake.calls.length, 1)
      const call = fake.calls[0]!
      assert.strictEqual(call.method, "GET")
      assert.strictEqual(call.url.toString(), "https://fake.local/v1/batches/batch_1")
      assert.strictEqual(call.headers["cache-control"], "no-cache")
      assert.strictEqual(call.headers["authorization"], `Bearer ${apiKey}`)
      assert.strictEqual(call.headers["openai-organization"], "org-1")
      assert.strictEqual(call.headers["openai-project"], "proj-1")
      assert.strictEqual(call.headers["x-gateway"], "g1")
    }))

  it.effect("api-key header style for gateways", () =>
    Effect.gen(function*() {
      const fake = fakeClient(() => json(wireBatch()))
      const provider = makeWithClient(fake.client, { ...baseConfig, auth: { header: "api-key" } })
      yield* provider.retrieve("batch_1")
      assert.strictEqual(fake.calls[0]!.headers["api-key"], apiKey)
      assert.isUndefined(fake.calls[0]!.headers["authorization"])
    }))

  it.effect("create posts the batch body and returns BatchInfo", () =>
    Effect.gen(function*() {
      let sent: unknown
      const fake = fakeClient((req) => {
        const body = req.request.body
        sent = body._tag === "Uint8Array" ? JSON.parse(new TextDecoder().decode(body.body)) : undefined
        return json(wireBatch({ status: "validating", request_counts: { total: 0, completed: 0, failed: 0 } }))
      })
      const provider = makeWithClient(fake.client, baseConfig)
      const info = yield* provider.create({ inputRef: "file-in", path: "/x", endpoint: "embeddings", metadata: { run: "r1" } })
      assert.strictEqual(info.status, "validating")
      assert.deepStrictEqual(sent, {
        input_file_id: "file-in",
        endpoint: "/v1/embeddings",
        completion_window: "24h",
        metadata: { run: "r1" }
      })
      assert.strictEqual(fake.calls[0]!.method, "POST")
      assert.strictEqual(fake.calls[0]!.url.pathname, "/v1/batches")
    }))

  it.effect("stage uploads a multipart form named *.jsonl with purpose=batch", () =>
    Effect.gen(function*() {
      const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-oai-"))
      const path = NodePath.join(dir, "shard.jsonl")
      NodeFs.writeFileSync(path, "{\"custom_id\":\"a\"}\n")
      const fake = fakeClient(() =>
        json({ id: "file-123", object: "file", bytes: 18, purpose: "batch", filename: "run-1-shard-0.jsonl" })
      )
      const provider = makeWithClient(fake.client, baseConfig)
      const staged = yield* provider.stage(path, "run-1-shard-0")
      assert.deepStrictEqual(staged, { inputRef: "file-123" })
      const form = yield* formOf(fake.calls[0]!.request.body)
      const file = form.get("file") as File
      assert.deepStrictEqual(
        { purpose: form.get("purpose"), filename: file.name, type: file.type, text: yield* Effect.promise(() => file.text()) },
        { purpose: "batch", filename: "run-1-shard-0.jsonl", type: "application/jsonl", text: "{\"custom_id\":\"a\"}\n" }
      )
      assert.strictEqual(fake.calls[0]!.url.pathname, "/v1/files")

      const missing = yield* Effect.exit(provider.stage(NodePath.join(dir, "nope.jsonl"), "x"))
      const error = expectError(missing)
      assert.strictEqual(error.reason, "Rejected")
      assert.strictEqual(fake.calls.length, 1)
      NodeFs.rmSync(dir, { recursive: true })
    }))

  it.effect("stage streams a file of several read pieces, with the upload's own fields, byte for byte", () =>
    Effect.gen(function*() {
      const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-oai-"))
      const path = NodePath.join(dir, "shard.jsonl")
      // Over two 4 MiB pieces, with multi-byte characters split across the pieces' edges.
      const line = `{"custom_id":"é-${"ü".repeat(500)}"}\n`
      const content = line.repeat(Math.ceil((9 * 1024 * 1024) / Buffer.byteLength(line)))
      NodeFs.writeFileSync(path, content)
      const fake = fakeClient(() => json({ id: "file-9", object: "file", bytes: 1, purpose: "batch", filename: "x.jsonl" }))
      const provider = makeWithClient(fake.client, {
        ...baseConfig,
        upload: { path: "/files/upload", fileNameField: "file_name", fields: { note: 'a "quoted"\nvalue' } }
      })
      yield* provider.stage(path, "run \"1\"")
      assert.strictEqual(fake.calls[0]!.url.pathname, "/v1/files/upload")
      const form = yield* formOf(fake.calls[0]!.request.body)
      const file = form.get("file") as File
      assert.deepStrictEqual(
        { purpose: form.get("purpose"), name: form.get("file_name"), note: form.get("note"), filename: file.name },
        // FormData sends line breaks as CRLF; a `"` in a filename travels as %22 and is read back.
        { purpose: "batch", name: 'run "1".jsonl', note: 'a "quoted"\r\nvalue', filename: 'run "1".jsonl' }
      )
      assert.isTrue(Buffer.from(yield* Effect.promise(() => file.arrayBuffer())).equals(Buffer.from(content)))
      NodeFs.rmSync(dir, { recursive: true })
    }))

  it.effect("deleteStaged treats 404 as already deleted", () =>
    Effect.gen(function*() {
      const fake = fakeClient(() => json({ error: { message: "No such File object", code: null } }, 404))
      const provider = makeWithClient(fake.client, baseConfig)
      yield* provider.deleteStaged("file-x")
      assert.strictEqual(fake.calls[0]!.method, "DELETE")
      assert.strictEqual(fake.calls[0]!.url.pathname, "/v1/files/file-x")
    }))
})

describe("retries", () => {
  it.effect("a 429 on GET is retried after Retry-After, not the (shorter) backoff", () =>
    Effect.gen(function*() {
      const fake = fakeClient((_, n) =>
        n === 1 ? json({ error: { message: "Rate limit", code: "rate_limit_exceeded" } }, 429, { "retry-after": "30" }) : json(wireBatch())
      )
      const provider = makeWithClient(fake.client, baseConfig)
      const fiber = yield* Effect.fork(provider.retrieve("batch_1"))
      yield* TestClock.adjust("29 seconds")
      assert.strictEqual(fake.calls.length, 1)
      yield* TestClock.adjust("1 second")
      const info = yield* Fiber.join(fiber)
      assert.strictEqual(info.id, "batch_1")
      assert.strictEqual(fake.calls.length, 2)
    }))

  it.effect("retry-after-ms is honoured; long hints are capped at maxRetryAfter", () =>
    Effect.gen(function*() {
      const fake = fakeClient((_, n) =>
        n === 1 ? json({}, 503, { "retry-after-ms": "4000" }) : n === 2 ? json({}, 429, { "retry-after": "3600" }) : json(wireBatch())
      )
      const provider = makeWithClient(fake.client, { ...baseConfig, retry: { maxRetries: 3, maxRetryAfter: "20 seconds" } })
      const fiber = yield* Effect.fork(provider.retrieve("batch_1"))
      yield* TestClock.adjust("3999 millis")
      assert.strictEqual(fake.calls.length, 1)
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(fake.calls.length, 2)
      yield* TestClock.adjust("19 seconds")
      assert.strictEqual(fake.calls.length, 2)
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(fiber)
      assert.strictEqual(fake.calls.length, 3)
    }))

  it.effect("transient failures give up after maxRetries with the last error", () =>
    Effect.gen(function*() {
      const fake = fakeClient(() => "transport")
      const provider = makeWithClient(fake.client, { ...baseConfig, retry: { maxRetries: 2, baseDelay: "100 millis" } })
      const fiber = yield* Effect.fork(Effect.exit(provider.cancel("batch_1")))
      yield* TestClock.adjust("10 seconds")
      const error = expectError(yield* Fiber.join(fiber))
      assert.strictEqual(fake.calls.length, 3)
      assert.strictEqual(error.reason, "Transport")
      assert.strictEqual(error.operation, "POST /batches/batch_1/cancel")
      assert.include(error.description, "socket hang up")
    }))

  it.effect("each retry is logged with what failed, where, when it is retried and how many attempts are left", () =>
    Effect.gen(function*() {
      const fake = fakeClient(() => "refused")
      const provider = makeWithClient(fake.client, { ...baseConfig, retry: { maxRetries: 2, baseDelay: "100 millis" } })
      const warnings: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => {
        if (logLevel._tag === "Warning") warnings.push(String(Array.isArray(message) ? message[0] : message))
      })
      const fiber = yield* Effect.fork(
        Effect.exit(provider.retrieve("batch_1")).pipe(
          Effect.provide(Logger.replace(Logger.defaultLogger, logger)),
          Logger.withMinimumLogLevel(LogLevel.Warning)
        )
      )
      yield* TestClock.adjust("10 seconds")
      const error = expectError(yield* Fiber.join(fiber))
      assert.strictEqual(fake.calls.length, 3)
      assert.strictEqual(warnings.length, 2)
      assert.match(
        warnings[0]!,
        /^openai: cannot reach https:\/\/fake\.local\/v1 \(ECONNREFUSED\): retrying GET \/batches\/batch_1 in \d+ ms \(attempt 2 of 3\)$/
      )
      assert.match(warnings[1]!, /retrying GET \/batches\/batch_1 in \d+ ms \(attempt 3 of 3\)$/)
      // Giving up: the error says where it could not get, and after how many attempts.
      assert.strictEqual(error.attempts, 3)
      assert.strictEqual(error.endpoint, "https://fake.local/v1")
      assert.include(error.message, "cannot reach https://fake.local/v1")
      assert.include(error.message, "gave up after 3 attempts")
    }))

  it.effect("a 404 under a base URL without its API version suggests the /v1", () =>
    Effect.gen(function*() {
      const fake = fakeClient(() => json({ error: { message: "Invalid URL (GET /batches/batch_1)", type: "invalid_request_error" } }, 404))
      const bare = makeWithClient(fake.client, { ...baseConfig, baseUrl: "https://fake.local:8080/" })
      const error = expectError(yield* Effect.exit(bare.retrieve("batch_1")))
      assert.strictEqual(error.reason, "NotFound")
      assert.include(error.message, "did you mean https://fake.local:8080/v1?")
      // With the version in place, a 404 is only a 404.
      const versioned = makeWithClient(fake.client, baseConfig)
      const plain = expectError(yield* Effect.exit(versioned.retrieve("batch_1")))
      assert.notInclude(plain.message, "did you mean")
    }))

  it("the /v1 hint is left out when the version is there or travels in the query (Azure)", () => {
    assert.isUndefined(missingVersionHint("https://api.openai.com/v1", undefined))
    assert.isUndefined(missingVersionHint("https://gw.example.com/azure/v1", undefined))
    assert.isUndefined(missingVersionHint("https://r.openai.azure.com/openai", { "api-version": "2024-10-21" }))
    assert.strictEqual(
      missingVersionHint("http://user:pw@localhost:8080", undefined),
      "the base URL http://localhost:8080 has no API version: did you mean http://localhost:8080/v1?"
    )
  })

  it.effect("create is NOT retried on 500, and the error is ambiguous", () =>
    Effect.gen(function*() {
      const fake = fakeClient(() => json({ error: { message: "The server had an error", type: "server_error" } }, 500))
      const provider = makeWithClient(fake.client, baseConfig)
      const fiber = yield* Effect.fork(
        Effect.exit(provider.create({ inputRef: "file-1", path: "/x", endpoint: "chat", metadata: {} }))
      )
      yield* TestClock.adjust("10 minutes")
      const error = expectError(yield* Fiber.join(fiber))
      assert.strictEqual(fake.calls.length, 1)
      assert.strictEqual(error.reason, "Server")
      assert.strictEqual(error.status, 500)
      assert.isTrue(error.ambiguous)
      assert.isTrue(error.retryable)
      assert.include(error.message, "The server had an error")
    }))

  it.effect("create is NOT retried on 429 either; the hint is passed to the caller", () =>
    Effect.gen(function*() {
      const fake = fakeClient(() => json({ error: { message: "slow down" } }, 429, { "retry-after": "12" }))
      const provider = makeWithClient(fake.client, baseConfig)
      const fiber = yield* Effect.fork(
        Effect.exit(provider.create({ inputRef: "file-1", path: "/x", endpoint: "chat", metadata: {} }))
      )
      yield* TestClock.adjust("10 minutes")
      const error = expectError(yield* Fiber.join(fiber))
      assert.strictEqual(fake.calls.length, 1)
      assert.strictEqual(error.reason, "RateLimited")
      assert.strictEqual(error.retryAfterMs, 12_000)
      assert.isFalse(error.ambiguous)
    }))

  it.effect("a call with no answer times out after requestTimeout", () =>
    Effect.gen(function*() {
      const fake = fakeClient(() => "never")
      const provider = makeWithClient(fake.client, { ...baseConfig, requestTimeout: "5 seconds", retry: { maxRetries: 1 } })
      const fiber = yield* Effect.fork(Effect.exit(provider.retrieve("batch_1")))
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual(fake.calls.length, 1)
      yield* TestClock.adjust("2 seconds") // backoff 500ms ±20 %
      assert.strictEqual(fake.calls.length, 2)
      yield* TestClock.adjust("5 seconds")
      const error = expectError(yield* Fiber.join(fiber))
      assert.strictEqual(error.reason, "Timeout")
      assert.isTrue(error.ambiguous)
    }))
})

describe("status -> ProviderError", () => {
  const errorFor = (response: () => Response) =>
    Effect.gen(function*() {
      const fake = fakeClient(response)
      const provider = makeWithClient(fake.client, { ...baseConfig, retry: { maxRetries: 0 } })
      return expectError(yield* Effect.exit(provider.retrieve("batch_9")))
    })

  it.effect("maps statuses and codes to reasons", () =>
    Effect.gen(function*() {
      const e401 = yield* errorFor(() => json({ error: { message: "Incorrect API key provided", code: "invalid_api_key" } }, 401))
      assert.strictEqual(e401.reason, "Unauthorized")
      const e404 = yield* errorFor(() => json({ error: { message: "No batch found" } }, 404))
      assert.strictEqual(e404.reason, "NotFound")
      assert.strictEqual(e404.operation, "GET /batches/batch_9")
      const e400 = yield* errorFor(() => json({ error: { message: "x".repeat(2000), code: "invalid_value" } }, 400))
      assert.strictEqual(e400.reason, "Rejected")
      assert.isBelow(e400.description.length, 600)
      assert.include(e400.description, "invalid_value")
      const quota = yield* errorFor(() => json({ error: { message: "You exceeded your current quota", code: "insufficient_quota" } }, 429))
      assert.strictEqual(quota.reason, "Quota")
      assert.isFalse(quota.retryable)
      const e503 = yield* errorFor(() => new Response("<html>bad gateway</html>", { status: 503 }))
      assert.strictEqual(e503.reason, "Server")
      assert.include(e503.description, "bad gateway")
      const e409 = yield* errorFor(() => json({}, 409))
      assert.isTrue(e409.retryable)
      const notJson = yield* errorFor(() => new Response("definitely not json", { status: 200 }))
      assert.strictEqual(notJson.reason, "Decode")
      const shape = yield* errorFor(() => json({ object: "batch" }))
      assert.strictEqual(shape.reason, "Decode")
    }))

  it.effect("the API key never appears in an error, even when the server echoes it", () =>
    Effect.gen(function*() {
      const fake = fakeClient((req) =>
        json({ error: { message: `Incorrect API key provided: ${req.headers["authorization"]}`, code: "invalid_api_key" } }, 401)
      )
      const provider = makeWithClient(fake.client, baseConfig)
      const error = expectError(yield* Effect.exit(provider.retrieve("batch_1")))
      for (const text of [error.message, error.description, String(error), JSON.stringify(error), error.stack ?? ""]) {
        assert.notInclude(text, apiKey)
      }
      assert.include(error.description, "[redacted]")
    }))
})

describe("list, findStaged, results", () => {
  it.effect("list paginates lazily with after=last_id", () =>
    Effect.gen(function*() {
      const pages: Record<string, { data: Array<unknown>; has_more: boolean }> = {
        "": { data: [wireBatch({ id: "b5" }), wireBatch({ id: "b4" })], has_more: true },
        b4: { data: [wireBatch({ id: "b3" }), wireBatch({ id: "b2" })], has_more: true },
        b2: { data: [wireBatch({ id: "b1" })], has_more: false }
      }
      const fake = fakeClient((req) => {
        const page = pages[req.url.searchParams.get("after") ?? ""]!
        return json({ object: "list", ...page, first_id: null, last_id: (page.data.at(-1) as { id: string }).id })
      })
      const provider = makeWithClient(fake.client, { ...baseConfig, listPageSize: 2 })
      const first = yield* Stream.runCollect(Stream.take(provider.list, 2))
      assert.deepStrictEqual(Chunk.toReadonlyArray(first).map((b) => b.id), ["b5", "b4"])
      assert.strictEqual(fake.calls.length, 1)
      const all = yield* Stream.runCollect(provider.list)
      assert.deepStrictEqual(Chunk.toReadonlyArray(all).map((b) => b.id), ["b5", "b4", "b3", "b2", "b1"])
      assert.deepStrictEqual(fake.calls.slice(1).map((c) => c.url.search), ["?limit=2", "?limit=2&after=b4", "?limit=2&after=b2"])
      assert.strictEqual(fake.calls[1]!.headers["cache-control"], "no-cache")
    }))

  it.effect("findStaged pages through /files (purpose=batch, desc) until the name matches", () =>
    Effect.gen(function*() {
      const file = (id: string, filename: string, purpose = "batch") => ({ id, object: "file", filename, purpose, bytes: 1, created_at: 1 })
      const fake = fakeClient((req) =>
        req.url.searchParams.get("after") === null
          ? json({ object: "list", data: [file("f3", "other.jsonl"), file("f2", "s.jsonl", "batch_output")], has_more: true, last_id: "f2" })
          : json({ object: "list", data: [file("f1", "s.jsonl"), file("f0", "s.jsonl")], has_more: false, last_id: "f0" })
      )
      const provider = makeWithClient(fake.client, baseConfig)
      const found = yield* provider.findStaged("s")
      assert.deepStrictEqual(found, Option.some({ inputRef: "f1" }))
      assert.strictEqual(fake.calls[0]!.url.searchParams.get("purpose"), "batch")
      assert.strictEqual(fake.calls[0]!.url.searchParams.get("order"), "desc")
      const none = yield* provider.findStaged("absent")
      assert.isTrue(Option.isNone(none))
    }))

  it.effect("results reads the output and error files, classifies lines and skips garbage with a warning", () =>
    Effect.gen(function*() {
      const outLines = [
        JSON.stringify({ id: "r1", custom_id: "a", response: { status_code: 200, body: { choices: [{ message: { content: "A" }, finish_reason: "stop" }], usage: { prompt_tokens: 1, completion_tokens: 2 } } }, error: null }),
        "{this is not json",
        JSON.stringify({ id: "r2", custom_id: "b", response: { status_code: 200, body: { choices: [{ message: { content: "B" }, finish_reason: "length" }] } }, error: null })
      ]
      const errLines = [
        JSON.stringify({ id: "r3", custom_id: "c", response: { status_code: 500, body: { error: { message: "boom", type: "server_error" } } }, error: null }),
        JSON.stringify({ id: "r4", custom_id: "d", response: null, error: { code: "batch_expired", message: "expired" } })
      ]
      const fake = fakeClient((req) => {
        if (req.url.pathname === "/v1/files/file-out/content") return new Response(outLines.join("\r\n") + "\r\n")
        if (req.url.pathname === "/v1/files/file-err/content") return new Response(errLines.join("\n"))
        return json({ error: { message: "unexpected" } }, 404)
      })
      const provider = makeWithClient(fake.client, baseConfig)
      const info = Either.getOrThrow(decodeBatchInfo(wireBatch({ status: "expired", output_file_id: "file-out", error_file_id: "file-err" })))
      const warnings: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => {
        if (logLevel._tag === "Warning") warnings.push(String(Array.isArray(message) ? message[0] : message))
      })
      const results = yield* Stream.runCollect(provider.results(info)).pipe(
        Effect.provide(Logger.replace(Logger.defaultLogger, logger)),
        Logger.withMinimumLogLevel(LogLevel.Warning)
      )
      const summary = Chunk.toReadonlyArray(results).map((r) =>
        r._tag === "Succeeded" ? [r.customId, "ok", r.text] : [r.customId, r.failure, r.code]
      )
      assert.deepStrictEqual(summary, [
        ["a", "ok", "A"],
        ["b", "ok", "B"],
        ["c", "retryable", "server_error"],
        ["d", "expired", "batch_expired"]
      ])
      assert.strictEqual(warnings.length, 1)
      assert.include(warnings[0]!, "file-out")
      assert.include(warnings[0]!, "line 2")
      assert.strictEqual(fake.calls[0]!.headers["accept"], "application/binary")

      // no files at all (and Azure's empty-string ids): no request
      const before = fake.calls.length
      const none = yield* Stream.runCollect(provider.results({ ...info, outputFileId: null, errorFileId: "" }))
      assert.strictEqual(Chunk.size(none), 0)
      assert.strictEqual(fake.calls.length, before)
    }))

  it.effect("a content download that fails to start is retried", () =>
    Effect.gen(function*() {
      const fake = fakeClient((_, n) =>
        n === 1 ? json({}, 502) : new Response(JSON.stringify({ custom_id: "a", response: null, error: { code: "batch_cancelled", message: "c" } }) + "\n")
      )
      const provider = makeWithClient(fake.client, baseConfig)
      const info = Either.getOrThrow(decodeBatchInfo(wireBatch({ status: "cancelled", error_file_id: "file-err" })))
      const fiber = yield* Effect.fork(Stream.runCollect(provider.results(info)))
      yield* TestClock.adjust("5 seconds")
      const results = Chunk.toReadonlyArray(yield* Fiber.join(fiber))
      assert.strictEqual(fake.calls.length, 2)
      assert.deepStrictEqual(results.map((r) => r._tag === "Failed" ? r.failure : "ok"), ["cancelled"])
    }))

  it.effect("a stalled download fails with Timeout after the idle timeout", () =>
    Effect.gen(function*() {
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode(JSON.stringify({ custom_id: "a", error: { code: "x" } }) + "\n"))
          // ...and then nothing more, ever
        }
      })
      const fake = fakeClient(() => new Response(body))
      const provider = makeWithClient(fake.client, { ...baseConfig, downloadIdleTimeout: "30 seconds" })
      const info = Either.getOrThrow(decodeBatchInfo(wireBatch({ status: "completed", output_file_id: "file-out" })))
      const fiber = yield* Effect.fork(Effect.exit(Stream.runCollect(provider.results(info))))
      yield* TestClock.adjust("31 seconds")
      const error = expectError(yield* Fiber.join(fiber))
      assert.strictEqual(error.reason, "Timeout")
      assert.include(error.description, "stalled")
    }))
})

describe("OpenAiConfig.fromEnv", () => {
  const load = (env: Record<string, string>, overrides: Partial<OpenAiConfigType> = {}) =>
    Effect.withConfigProvider(OpenAiConfig.fromEnv(overrides), ConfigProvider.fromMap(new Map(Object.entries(env))))

  it.effect("a missing key is a ConfigError saying OPENAI_API_KEY is not set", () =>
    Effect.gen(function*() {
      for (const env of [{}, { OPENAI_API_KEY: "" }]) {
        const exit = yield* Effect.exit(load(env))
        assert.isTrue(Exit.isFailure(exit))
        if (Exit.isFailure(exit) && exit.cause._tag === "Fail") {
          assert.strictEqual(exit.cause.error._tag, "ConfigError")
          assert.strictEqual(exit.cause.error.message, "OPENAI_API_KEY is not set")
        } else {
          assert.fail(`unexpected cause ${String(exit)}`)
        }
      }
    }))

  it.effect("reads the key (Redacted) and base URL, with defaults and overrides", () =>
    Effect.gen(function*() {
      const a = yield* load({ OPENAI_API_KEY: "sk-env" })
      assert.strictEqual(a.baseUrl, "https://api.openai.com/v1")
      assert.strictEqual(Redacted.value(a.apiKey), "sk-env")
      assert.notInclude(String(a.apiKey), "sk-env")
      assert.notInclude(JSON.stringify(a), "sk-env")
      const b = yield* load({ OPENAI_API_KEY: "sk-env", OPENAI_BASE_URL: "https://gw/v1", OPENAI_PROJECT_ID: "p" })
      assert.strictEqual(b.baseUrl, "https://gw/v1")
      assert.strictEqual(b.project, "p")
      const c = yield* load({}, { apiKey: Redacted.make("sk-code"), baseUrl: "https://x/v1", listPageSize: 5 })
      assert.strictEqual(Redacted.value(c.apiKey), "sk-code")
      assert.strictEqual(c.baseUrl, "https://x/v1")
      assert.strictEqual(c.listPageSize, 5)
    }))
})

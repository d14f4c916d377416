/**
 * Unit tests of the Anthropic provider: request lines, status and result mapping, the
 * streamed create body, configuration, and where results are read — over a fake HttpClient
 * (no sockets). The lifecycle against the emulator is in AnthropicBatchEmulator.test.ts.
 */
import { HttpClient, HttpClientResponse } from "@effect/platform"
import type { HttpClientRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import type { BatchRequest } from "@sluice/core"
import { Chunk, ConfigProvider, Effect, Either, Exit, Redacted, Stream } from "effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import {
  AnthropicConfig,
  classifyResult,
  decodeBatchInfo,
  encode,
  encodeWith,
  makeWithClient,
  measureRequestBody,
  parseResultLine,
  requestBody,
  shardCustomIds
} from "../src/anthropic/AnthropicBatch.js"
import type { BatchInfo } from "../src/BatchProvider.js"

const chat = (extra: Partial<Extract<BatchRequest, { _tag: "chat" }>> = {}): BatchRequest => ({
  _tag: "chat",
  model: "claude-haiku-4-5",
  messages: [
    { role: "system", content: "Be brief." },
    { role: "system", content: "Answer in French." },
    { role: "user", content: "Hello" },
    { role: "assistant", content: "Bonjour" },
    { role: "user", content: "How are you?" }
  ],
  params: {},
  ...extra
})

describe("encode", () => {
  it("hoists system messages, keeps user/assistant turns, defaults max_tokens", () => {
    const line = JSON.parse(encode(chat(), "s-k-0123456789abcdef"))
    assert.deepStrictEqual(line, {
      custom_id: "s-k-0123456789abcdef",
      params: {
        model: "claude-haiku-4-5",
        max_tokens: 1024,
        system: "Be brief.\n\nAnswer in French.",
        messages: [
          { role: "user", content: "Hello" },
          { role: "assistant", content: "Bonjour" },
          { role: "user", content: "How are you?" }
        ]
      }
    })
    assert.strictEqual(Object.keys(line)[0], "custom_id")
  })

  it("passes params through; maps OpenAI names; drops OpenAI-only params; model/messages cannot be overridden", () => {
    const params = {
      max_tokens: 50,
      temperature: 0.2,
      top_k: 5,
      stop: "END",
      response_format: { type: "json_object" },
      seed: 7,
      n: 1,
      model: "other",
      messages: []
    }
    const line = JSON.parse(encode(chat({ params }), "id"))
    assert.deepStrictEqual(line.params, {
      model: "claude-haiku-4-5",
      max_tokens: 50,
      system: "Be brief.\n\nAnswer in French.",
      messages: line.params.messages,
      temperature: 0.2,
      top_k: 5,
      stop_sequences: ["END"]
    })
    assert.strictEqual(line.params.messages.length, 3)
    assert.strictEqual(JSON.parse(encode(chat({ params: { max_completion_tokens: 9 } }), "id")).params.max_tokens, 9)
    assert.strictEqual(JSON.parse(encodeWith(77)(chat(), "id")).params.max_tokens, 77)
  })

  it("structured output is a forced tool whose input_schema is the output schema", () => {
    const schema = { type: "object", properties: { a: { type: "string" } }, required: ["a"], additionalProperties: false }
    const line = JSON.parse(encode(chat({ output: { name: "My Label!", schema } }), "id"))
    assert.deepStrictEqual(line.params.tools, [
      { name: "My_Label_", description: line.params.tools[0].description, input_schema: schema }
    ])
    assert.deepStrictEqual(line.params.tool_choice, { type: "tool", name: "My_Label_" })
    // a user's own tools are kept, ours is added
    const own = { name: "lookup", input_schema: { type: "object" } }
    const both = JSON.parse(encode(chat({ output: { name: "Label", schema }, params: { tools: [own] } }), "id"))
    assert.deepStrictEqual(both.params.tools.map((t: { name: string }) => t.name), ["lookup", "Label"])
  })

  it("has no embeddings endpoint", () => {
    assert.throws(() => encode({ _tag: "embeddings", model: "m", input: "x", params: {} }, "id"), /no embeddings endpoint/)
  })
})

const wire = (fields: Record<string, unknown>) => ({
  id: "msgbatch_1",
  type: "message_batch",
  processing_status: "in_progress",
  request_counts: { processing: 10, succeeded: 0, errored: 0, canceled: 0, expired: 0 },
  created_at: "2026-11-20T10:00:00.123456Z",
  expires_at: "2026-11-21T10:00:00.123456Z",
  ended_at: null,
  cancel_initiated_at: null,
  archived_at: null,
  results_url: null,
  ...fields
})

const info = (fields: Record<string, unknown>): BatchInfo => Either.getOrThrow(decodeBatchInfo(wire(fields)))

describe("toBatchInfo", () => {
  it("maps an in-progress batch", () => {
    assert.deepStrictEqual(info({}), {
      id: "msgbatch_1",
      status: "in_progress",
      rawStatus: "in_progress",
      counts: { total: 10, succeeded: 0, failed: 0 },
      inputRef: null,
      outputFileId: null,
      errorFileId: null,
      metadata: {},
      createdAt: Math.floor(Date.parse("2026-11-20T10:00:00Z") / 1000),
      errors: []
    })
    assert.strictEqual(info({ processing_status: "canceling" }).status, "cancelling")
    const unknown = info({ processing_status: "paused" })
    assert.strictEqual(unknown.status, "unknown")
    assert.strictEqual(unknown.rawStatus, "paused")
  })

  it("classifies an ended batch: cancelled, expired or completed; counts and results_url", () => {
    const ended = (counts: Record<string, number>, extra: Record<string, unknown> = {}) =>
      info({
        processing_status: "ended",
        results_url: "https://api.anthropic.com/v1/messages/batches/msgbatch_1/results",
        request_counts: { processing: 0, succeeded: 0, errored: 0, canceled: 0, expired: 0, ...counts },
        ...extra
      })
    const done = ended({ succeeded: 7, errored: 3 })
    assert.strictEqual(done.status, "completed")
    assert.strictEqual(done.rawStatus, "ended")
    assert.deepStrictEqual(done.counts, { total: 10, succeeded: 7, failed: 3 })
    assert.strictEqual(done.outputFileId, "https://api.anthropic.com/v1/messages/batches/msgbatch_1/results")
    assert.strictEqual(ended({ succeeded: 4, expired: 6 }).status, "expired")
    assert.strictEqual(ended({ expired: 10 }).status, "expired")
    assert.strictEqual(ended({ succeeded: 4, canceled: 6 }).status, "cancelled")
    // cancel initiated but everything had finished: still a cancelled batch
    assert.strictEqual(ended({ succeeded: 10 }, { cancel_initiated_at: "2026-11-20T10:01:00Z" }).status, "cancelled")
    assert.deepStrictEqual(ended({ succeeded: 2, errored: 1, canceled: 3, expired: 4 }).counts, { total: 10, succeeded: 2, failed: 8 })
  })

  it("rejects a batch without an id", () => {
    assert.isTrue(Either.isLeft(decodeBatchInfo({ processing_status: "ended" })))
  })
})

const message = (content: Array<unknown>, extra: Record<string, unknown> = {}) => ({
  id: "msg_1",
  type: "message",
  role: "assistant",
  model: "claude-haiku-4-5",
  content,
  stop_reason: "end_turn",
  stop_sequence: null,
  usage: { input_tokens: 10, output_tokens: 5, cache_read_input_tokens: 100, cache_creation_input_tokens: 20 },
  ...extra
})

describe("results", () => {
  it("succeeded: text blocks concatenated; tool_use input as JSON text; usage with caches", () => {
    const text = classifyResult({
      custom_id: "a",
      result: { type: "succeeded", message: message([{ type: "text", text: "Hel" }, { type: "text", text: "lo" }]) }
    })
    assert.deepInclude(text, { _tag: "Succeeded", text: "Hello", finishReason: "end_turn" })
    if (text._tag === "Succeeded") assert.deepStrictEqual(text.usage, { inputTokens: 130, outputTokens: 5, cachedInputTokens: 100 })
    const tool = classifyResult({
      custom_id: "b",
      result: {
        type: "succeeded",
        message: message([{ type: "tool_use", id: "toolu_1", name: "Label", input: { sentiment: "positive", n: 2 } }], { stop_reason: "tool_use" })
      }
    })
    assert.deepInclude(tool, { _tag: "Succeeded", text: '{"sentiment":"positive","n":2}', finishReason: "tool_use" })
  })

  it("succeeded without content is a parse failure; a refusal is permanent", () => {
    assert.deepInclude(classifyResult({ custom_id: "a", result: { type: "succeeded", message: message([]) } }), {
      _tag: "Failed",
      failure: "parse",
      code: "no_content"
    })
    const refusal = classifyResult({
      custom_id: "a",
      result: { type: "succeeded", message: message([], { stop_reason: "refusal", stop_details: { type: "refusal", explanation: "no" } }) }
    })
    assert.deepInclude(refusal, { _tag: "Failed", failure: "permanent", code: "refusal", message: "no" })
  })

  it("errored: server-side types are retryable, refused requests permanent", () => {
    const errored = (type: string) =>
      classifyResult({
        custom_id: "e",
        result: { type: "errored", error: { type: "error", error: { type, message: `it is ${type}` }, request_id: "req_1" } }
      })
    assert.deepInclude(errored("overloaded_error"), { _tag: "Failed", failure: "retryable", code: "overloaded_error", status: 529 })
    assert.deepInclude(errored("api_error"), { failure: "retryable", status: 500, message: "it is api_error" })
    assert.deepInclude(errored("rate_limit_error"), { failure: "retryable", status: 429 })
    assert.deepInclude(errored("timeout_error"), { failure: "retryable" })
    assert.deepInclude(errored("invalid_request_error"), { failure: "permanent", status: 400 })
    assert.deepInclude(errored("not_found_error"), { failure: "permanent", status: 404 })
    assert.deepInclude(errored("billing_error"), { failure: "permanent" })
    assert.deepInclude(errored("something_new"), { failure: "retryable", status: null })
    // a gateway that puts {type, message} directly under `error`
    assert.deepInclude(
      classifyResult({ custom_id: "g", result: { type: "errored", error: { type: "invalid_request_error", message: "bad" } } }),
      { failure: "permanent", message: "bad" }
    )
  })

  it("canceled, expired and unknown result types", () => {
    assert.deepInclude(classifyResult({ custom_id: "c", result: { type: "canceled" } }), { failure: "cancelled", code: "canceled" })
    assert.deepInclude(classifyResult({ custom_id: "x", result: { type: "expired" } }), { failure: "expired", code: "expired" })
    assert.deepInclude(classifyResult({ custom_id: "u", result: { type: "later" } }), { failure: "retryable", code: "unknown_result" })
  })

  it("unusable lines are Left", () => {
    assert.isTrue(Either.isLeft(parseResultLine("{nope")))
    assert.isTrue(Either.isLeft(parseResultLine('{"result":{"type":"expired"}}')))
    assert.isTrue(Either.isRight(parseResultLine('{"custom_id":"a","result":{"type":"expired"}}')))
  })
})

const tmpFile = (content: string) => {
  const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-anthropic-unit-"))
  const path = NodePath.join(dir, "shard.jsonl")
  NodeFs.writeFileSync(path, content)
  return path
}

const readBody = async (path: string) => {
  const chunks: Array<Uint8Array> = []
  for await (const chunk of requestBody(path)) chunks.push(chunk)
  return Buffer.concat(chunks).toString("utf8")
}

describe("the create body", () => {
  it("joins the shard's lines into {requests: [...]}, skipping blank lines, handling CRLF", async () => {
    const a = encode(chat(), "a")
    const b = encode(chat({ params: { max_tokens: 5 } }), "b")
    const path = tmpFile(`${a}\r\n\n  \n${b}`)
    const body = await readBody(path)
    assert.deepStrictEqual(JSON.parse(body), { requests: [JSON.parse(a), JSON.parse(b)] })
    assert.deepStrictEqual(await measureRequestBody(path), { bytes: Buffer.byteLength(body), requests: 2 })
    assert.deepStrictEqual(await shardCustomIds(path), ["a", "b"])
  })

  it("streams across read chunks (lines longer than a chunk)", async () => {
    const long = encode(chat({ messages: [{ role: "user", content: "x".repeat(3 << 20) }] }), "long")
    const lines = [encode(chat(), "s1"), long, encode(chat(), "s2")]
    const path = tmpFile(lines.join("\n") + "\n")
    const body = await readBody(path)
    assert.deepStrictEqual(JSON.parse(body).requests.map((r: { custom_id: string }) => r.custom_id), ["s1", "long", "s2"])
    assert.strictEqual(Buffer.byteLength(body), NodeFs.statSync(path).size + 14)
  })
})

describe("configuration", () => {
  const read = (env: Record<string, string>) =>
    Effect.runSyncExit(Effect.withConfigProvider(AnthropicConfig.fromEnv(), ConfigProvider.fromMap(new Map(Object.entries(env)))))

  it("reads ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL; a missing key says so", () => {
    const ok = read({ ANTHROPIC_API_KEY: "sk-ant-x", ANTHROPIC_BASE_URL: "https://gw.local" })
    assert.isTrue(Exit.isSuccess(ok))
    if (Exit.isSuccess(ok)) {
      assert.strictEqual(Redacted.value(ok.value.apiKey), "sk-ant-x")
      assert.strictEqual(ok.value.baseUrl, "https://gw.local")
    }
    const defaults = read({ ANTHROPIC_API_KEY: "sk-ant-x" })
    if (Exit.isSuccess(defaults)) assert.strictEqual(defaults.value.baseUrl, "https://api.anthropic.com")
    for (const env of [{}, { ANTHROPIC_API_KEY: "  " }]) {
      const missing = read(env)
      assert.isTrue(Exit.isFailure(missing))
      assert.include(String(Exit.isFailure(missing) ? missing.cause : ""), "ANTHROPIC_API_KEY is not set")
    }
  })
})

// ---------------------------------------------------------------------------------------------
// where results are read (a fake client answering every GET with one result line)
// ---------------------------------------------------------------------------------------------

const resultsVia = (baseUrl: string, resultsUrl: string | null) =>
  Effect.gen(function*() {
    const calls: Array<{ url: string; headers: Record<string, string> }> = []
    const client = HttpClient.make((request: HttpClientRequest.HttpClientRequest, url) =>
      Effect.sync(() => {
        calls.push({ url: url.href, headers: { ...request.headers } })
        return HttpClientResponse.fromWeb(
          request,
          new Response('{"custom_id":"a","result":{"type":"expired"}}\n', { headers: { "content-type": "application/x-jsonl" } })
        )
      })
    )
    const provider = makeWithClient(client, { apiKey: Redacted.make("sk-ant-secret-key"), baseUrl })
    const batch: BatchInfo = { ...info({ processing_status: "ended" }), outputFileId: resultsUrl }
    const results = Chunk.toReadonlyArray(yield* Stream.runCollect(provider.results(batch)))
    assert.strictEqual(results.length, 1)
    return calls
  })

describe("results location", () => {
  it.effect("results_url at the base origin is read with our key (any prefix, query kept)", () =>
    Effect.gen(function*() {
      const direct = yield* resultsVia("https://api.anthropic.com", "https://api.anthropic.com/v1/messages/batches/msgbatch_1/results")
      assert.strictEqual(direct[0]!.url, "https://api.anthropic.com/v1/messages/batches/msgbatch_1/results")
      assert.strictEqual(direct[0]!.headers["x-api-key"], "sk-ant-secret-key")
      const prefixed = yield* resultsVia("https://gw.local/anthropic", "https://gw.local/anthropic/v1/batches/msgbatch_1/results?sig=abc")
      assert.strictEqual(prefixed[0]!.url, "https://gw.local/anthropic/v1/batches/msgbatch_1/results?sig=abc")
      const outside = yield* resultsVia("https://gw.local/anthropic", "https://gw.local/files/msgbatch_1.jsonl")
      assert.strictEqual(outside[0]!.url, "https://gw.local/files/msgbatch_1.jsonl")
    }))

  it.effect("a results_url at another origin never gets our key: the documented path is read instead", () =>
    Effect.gen(function*() {
      const calls = yield* resultsVia("https://gw.local", "https://api.anthropic.com/v1/messages/batches/msgbatch_1/results")
      assert.strictEqual(calls[0]!.url, "https://gw.local/v1/messages/batches/msgbatch_1/results")
      const none = yield* resultsVia("https://gw.local", null)
      assert.strictEqual(none[0]!.url, "https://gw.local/v1/messages/batches/msgbatch_1/results")
    }))
})

describe("a bad base URL", () => {
  it.effect("fails calls with a clear error instead of throwing at construction", () =>
    Effect.gen(function*() {
      const client = HttpClient.make(() => Effect.die("never called"))
      const provider = makeWithClient(client, { apiKey: Redacted.make("sk-ant-secret-key"), baseUrl: "not a url" })
      const exit = yield* Effect.exit(provider.retrieve("msgbatch_1"))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit) && exit.cause._tag === "Fail") {
        assert.strictEqual(exit.cause.error.reason, "Rejected")
        assert.include(exit.cause.error.message, "the base URL is not a URL")
      }
    }))
})

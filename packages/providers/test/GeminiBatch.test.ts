/**
 * The Gemini batch provider: wire mapping without network, then the provider over real HTTP
 * (undici) against the emulator on 127.0.0.1.
 */
import { HttpClient } from "@effect/platform"
import type { HttpClientResponse } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import type { BatchRequest, BatchResult } from "@sluice/core"
import { StructuredOutput } from "@sluice/core"
import { Chunk, Context, Effect, Either, Exit, Layer, Option, Redacted, Schema, Stream } from "effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import type { BatchInfo, BatchProvider } from "../src/BatchProvider.js"
import { isTerminal, Providers } from "../src/BatchProvider.js"
import { scoped as emulatorScoped, startEmulator } from "@sluice/emulator"
import type { EmulatorOptions } from "@sluice/emulator"
import type { GeminiConfig } from "../src/gemini/GeminiBatch.js"
import {
  capabilities,
  count,
  decodeBatchInfo,
  displayNameOf,
  encode,
  inlineResponseLines,
  inlineResponses,
  limits,
  make,
  metadataOfDisplayName,
  normaliseState,
  parseResultLine,
  toGeminiJsonSchema,
  WireOperation
} from "../src/gemini/GeminiBatch.js"
import { ProviderError } from "../src/ProviderError.js"
import * as Registry from "../src/Registry.js"

// -----------------------------------------------------------------------------------------
// Fixtures
// -----------------------------------------------------------------------------------------

const Label = Schema.Struct({
  sentiment: Schema.Literal("positive", "negative", "neutral"),
  topics: Schema.Array(Schema.String),
  score: Schema.NullOr(Schema.Number)
})
const labelOutput = StructuredOutput.toOutputFormat("Label", Label)
const decodeLabel = StructuredOutput.decoder(Label, { wrapped: labelOutput.wrapped })

const chat = (i: number, structured: boolean): BatchRequest => ({
  _tag: "chat",
  model: "gemini-2.5-flash",
  messages: [{ role: "system", content: "Label the review." }, { role: "user", content: `review number ${i}` }],
  params: { temperature: 0, max_tokens: 256 },
  ...(structured ? { output: labelOutput.format } : {})
})

const operation = (over: Record<string, unknown> = {}, meta: Record<string, unknown> = {}) => ({
  name: "batches/abc123",
  metadata: {
    "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch",
    model: "models/gemini-2.5-flash",
    displayName: "sluice.classify-1a2b3c4d.label-00001.s2",
    createTime: "2026-08-21T10:00:00.123456Z",
    state: "BATCH_STATE_RUNNING",
    batchStats: { requestCount: "10", successfulRequestCount: "7", failedRequestCount: "2", pendingRequestCount: "1" },
    ...meta
  },
  ...over
})

const decodeInfo = (u: unknown): BatchInfo => Either.getOrThrow(decodeBatchInfo(u))

// -----------------------------------------------------------------------------------------
// Unit: mapping without network
// -----------------------------------------------------------------------------------------

describe("GeminiBatch wire mapping", () => {
  it("limits and capabilities", () => {
    assert.deepStrictEqual(limits, { maxRequests: 100_000, maxBytes: 1_900_000_000, oneModelPerShard: true })
    assert.deepStrictEqual(capabilities, { cancel: true, list: true, metadata: true, partialResults: false })
  })

  it("normalises BATCH_STATE_* and JOB_STATE_*, unknown kept as unknown", () => {
    const cases: ReadonlyArray<readonly [string, string]> = [
      ["BATCH_STATE_PENDING", "validating"],
      ["BATCH_STATE_RUNNING", "in_progress"],
      ["BATCH_STATE_SUCCEEDED", "completed"],
      ["BATCH_STATE_FAILED", "failed"],
      ["BATCH_STATE_CANCELLED", "cancelled"],
      ["BATCH_STATE_EXPIRED", "expired"],
      ["JOB_STATE_PENDING", "validating"],
      ["JOB_STATE_RUNNING", "in_progress"],
      ["JOB_STATE_SUCCEEDED", "completed"],
      ["JOB_STATE_CANCELLING", "cancelling"],
      ["BATCH_STATE_UNSPECIFIED", "unknown"],
      ["BATCH_STATE_PAUSED_FOR_LUNCH", "unknown"],
      ["", "unknown"]
    ]
    for (const [raw, status] of cases) assert.strictEqual(normaliseState(raw), status, raw)
  })

  it("reads int64 counts given as strings (or numbers)", () => {
    assert.strictEqual(count("12345"), 12345)
    assert.strictEqual(count(" 7 "), 7)
    assert.strictEqual(count(3), 3)
    assert.strictEqual(count(undefined), 0)
    assert.strictEqual(count("n/a"), 0)
    assert.strictEqual(count(null), 0)
  })

  it("maps an Operation: string counts, raw state kept, metadata from displayName, time", () => {
    const info = decodeInfo(operation())
    assert.deepStrictEqual(info, {
      id: "batches/abc123",
      status: "in_progress",
      rawStatus: "BATCH_STATE_RUNNING",
      counts: { total: 10, succeeded: 7, failed: 2 },
      inputRef: null,
      outputFileId: null,
      errorFileId: null,
      metadata: { sluice_run: "classify-1a2b3c4d", sluice_shard: "label-00001", sluice_submission: "2" },
      createdAt: Math.floor(Date.parse("2026-08-21T10:00:00Z") / 1000),
      errors: []
    })
    // an unknown state is kept raw, never a crash; counts absent early are 0
    const early = decodeInfo(operation({}, { state: "BATCH_STATE_NEW_THING", batchStats: undefined, displayName: "mine" }))
    assert.strictEqual(early.status, "unknown")
    assert.strictEqual(early.rawStatus, "BATCH_STATE_NEW_THING")
    assert.deepStrictEqual(early.counts, { total: 0, succeeded: 0, failed: 0 })
    assert.deepStrictEqual(early.metadata, {})
  })

  it("finds the output: responsesFile, inline responses (response or metadata.output), or none", () => {
    const file = decodeInfo(operation(
      { done: true, response: { "@type": "x.GenerateContentBatchOutput", responsesFile: "files/batch-out-1" } },
      { state: "BATCH_STATE_SUCCEEDED", inputConfig: { fileName: "files/in-1" } }
    ))
    assert.strictEqual(file.status, "completed")
    assert.strictEqual(file.outputFileId, "files/batch-out-1")
    assert.strictEqual(file.inputRef, "files/in-1")
    const inline = decodeInfo(operation(
      {},
      { state: "BATCH_STATE_SUCCEEDED", output: { inlinedResponses: { inlinedResponses: [] } } }
    ))
    assert.strictEqual(inline.outputFileId, inlineResponses)
    const expired = decodeInfo(operation({ done: true }, { state: "BATCH_STATE_EXPIRED" }))
    assert.strictEqual(expired.status, "expired")
    assert.strictEqual(expired.outputFileId, null)
    const failed = decodeInfo(operation(
      { done: true, error: { code: 3, message: "bad input" } },
      { state: "BATCH_STATE_FAILED" }
    ))
    assert.deepStrictEqual(failed.errors, [{ code: "3", message: "bad input", line: null }])
  })

  it("encodes a line: key, model, contents, systemInstruction, generationConfig, responseJsonSchema", () => {
    const line = JSON.parse(encode(
      {
        _tag: "chat",
        model: "gemini-2.5-flash",
        messages: [
          { role: "system", content: "Be brief." },
          { role: "user", content: "Hi" },
          { role: "assistant", content: "Hello" },
          { role: "user", content: "Label: great" }
        ],
        params: { temperature: 0.2, max_tokens: 100, stop: "END", reasoning_effort: "low", topK: 5 },
        output: { name: "Label", schema: { type: "object", properties: { a: { type: "string", pattern: "^x" } } } }
      },
      "row-1"
    ))
    assert.deepStrictEqual(line, {
      key: "row-1",
      request: {
        model: "models/gemini-2.5-flash",
        contents: [
          { role: "user", parts: [{ text: "Hi" }] },
          { role: "model", parts: [{ text: "Hello" }] },
          { role: "user", parts: [{ text: "Label: great" }] }
        ],
        systemInstruction: { parts: [{ text: "Be brief." }] },
        generationConfig: {
          temperature: 0.2,
          maxOutputTokens: 100,
          stopSequences: ["END"],
          topK: 5,
          responseMimeType: "application/json",
          responseJsonSchema: { type: "object", properties: { a: { type: "string" } } }
        }
      }
    })
    // no params, no output: no generationConfig at all
    const plain = JSON.parse(encode({ _tag: "chat", model: "models/x", messages: [{ role: "user", content: "q" }], params: {} }, "k"))
    assert.deepStrictEqual(plain, { key: "k", request: { model: "models/x", contents: [{ role: "user", parts: [{ text: "q" }] }] } })
  })

  it("reduces a JSON Schema to what responseJsonSchema supports", () => {
    assert.deepStrictEqual(
      toGeminiJsonSchema({
        $schema: "http://json-schema.org/draft-07/schema#",
        type: "object",
        properties: {
          kind: { const: "x", description: "d" },
          n: { type: "number", exclusiveMinimum: 0, multipleOf: 2, maximum: 9 },
          tags: { type: "array", items: { type: "string", pattern: "^[a-z]+$" }, minItems: 1 },
          node: { $ref: "#/$defs/Node", description: "dropped next to $ref" },
          maybe: { anyOf: [{ type: "string" }, { type: "null" }] }
        },
        required: ["kind"],
        additionalProperties: false,
        $defs: { Node: { type: "object", properties: {}, required: [], additionalProperties: false } }
      }),
      {
        type: "object",
        properties: {
          kind: { enum: ["x"], description: "d" },
          n: { type: "number", maximum: 9 },
          tags: { type: "array", items: { type: "string" }, minItems: 1 },
          node: { $ref: "#/$defs/Node" },
          maybe: { anyOf: [{ type: "string" }, { type: "null" }] }
        },
        required: ["kind"],
        additionalProperties: false,
        $defs: { Node: { type: "object", properties: {}, required: [], additionalProperties: false } }
      }
    )
  })

  it("round-trips run, shard and submission through displayName", () => {
    const metadata = { sluice_run: "my-pipe-1a2b3c4d", sluice_shard: "label-00007", sluice_submission: "3" }
    const name = displayNameOf({ ...metadata, sluice_sha256: "ffff" })
    assert.strictEqual(name, "sluice.my-pipe-1a2b3c4d.label-00007.s3")
    assert.deepStrictEqual(metadataOfDisplayName(name), metadata)
    // dots and percent signs inside a field survive
    const odd = { sluice_run: "a.b%2E", sluice_shard: "s.1", sluice_submission: "1" }
    assert.deepStrictEqual(metadataOfDisplayName(displayNameOf(odd)), odd)
    assert.deepStrictEqual(metadataOfDisplayName("my batch"), {})
    assert.deepStrictEqual(metadataOfDisplayName(undefined), {})
    assert.strictEqual(displayNameOf({}), "sluice-batch")
  })

  it("classifies result lines: text, usage, errors (HTTP and google.rpc codes), blocked, unusable", () => {
    const ok = Either.getOrThrow(parseResultLine(JSON.stringify({
      key: "r1",
      response: {
        candidates: [{
          content: { role: "model", parts: [{ text: "thinking…", thought: true }, { text: "{\"a\":" }, { text: "1}" }] },
          finishReason: "STOP"
        }],
        usageMetadata: { promptTokenCount: 11, candidatesTokenCount: 5, thoughtsTokenCount: 2, cachedContentTokenCount: 4 }
      }
    })))
    assert.deepInclude(ok, {
      _tag: "Succeeded",
      customId: "r1",
      text: "{\"a\":1}",
      finishReason: "STOP",
      usage: { inputTokens: 11, outputTokens: 7, cachedInputTokens: 4 }
    })

    const failure = (error: unknown) => {
      const r = Either.getOrThrow(parseResultLine(JSON.stringify({ key: "r2", error })))
      if (r._tag !== "Failed") throw new Error("expected Failed")
      return { failure: r.failure, code: r.code, status: r.status }
    }
    assert.deepStrictEqual(failure({ code: 429, message: "slow down", status: "RESOURCE_EXHAUSTED" }), {
      failure: "retryable",
      code: "RESOURCE_EXHAUSTED",
      status: 429
    })
    assert.deepStrictEqual(failure({ code: 503, message: "overloaded", status: "UNAVAILABLE" }), {
      failure: "retryable",
      code: "UNAVAILABLE",
      status: 503
    })
    assert.deepStrictEqual(failure({ code: 500, message: "boom" }), { failure: "retryable", code: "http_500", status: 500 })
    assert.deepStrictEqual(failure({ code: 14, message: "unavailable" }), { failure: "retryable", code: "UNAVAILABLE", status: 503 })
    assert.deepStrictEqual(failure({ code: 3, message: "bad" }), { failure: "permanent", code: "INVALID_ARGUMENT", status: 400 })
    assert.deepStrictEqual(failure({ code: 400, message: "bad", status: "INVALID_ARGUMENT" }), {
      failure: "permanent",
      code: "INVALID_ARGUMENT",
      status: 400
    })
    // `status` instead of `error` (the key name is not documented)
    const viaStatus = Either.getOrThrow(parseResultLine(JSON.stringify({ key: "r3", status: { code: 8, message: "quota" } })))
    assert.deepInclude(viaStatus, { _tag: "Failed", failure: "retryable", code: "RESOURCE_EXHAUSTED" })

    const blocked = Either.getOrThrow(parseResultLine(JSON.stringify({
      key: "r4",
      response: { candidates: [{ finishReason: "SAFETY" }] }
    })))
    assert.deepInclude(blocked, { _tag: "Failed", failure: "permanent", code: "safety" })
    const promptBlocked = Either.getOrThrow(parseResultLine(JSON.stringify({
      key: "r5",
      response: { promptFeedback: { blockReason: "PROHIBITED_CONTENT" } }
    })))
    assert.deepInclude(promptBlocked, { _tag: "Failed", failure: "permanent", code: "prompt_blocked" })
    const empty = Either.getOrThrow(parseResultLine(JSON.stringify({ key: "r6", response: { candidates: [{ finishReason: "MAX_TOKENS" }] } })))
    assert.deepInclude(empty, { _tag: "Failed", failure: "parse", code: "no_content" })

    assert.isTrue(Either.isLeft(parseResultLine("{not json")))
    assert.isTrue(Either.isLeft(parseResultLine(JSON.stringify({ response: {} }))))
  })

  it("reads inline responses as result lines", () => {
    const wire = Schema.decodeUnknownSync(WireOperation)(operation({
      response: {
        inlinedResponses: {
          inlinedResponses: [
            { response: { candidates: [{ content: { parts: [{ text: "hi" }] } }] }, metadata: { key: "a" } },
            { error: { code: 13, message: "internal" }, metadata: { key: "b" } }
          ]
        }
      }
    }))
    const lines = inlineResponseLines(wire).map((l) => Either.getOrThrow(parseResultLine(JSON.stringify(l))))
    assert.deepStrictEqual(lines.map((r) => [r.customId, r._tag]), [["a", "Succeeded"], ["b", "Failed"]])
  })
})

// -----------------------------------------------------------------------------------------
// Against the emulator over real HTTP
// -----------------------------------------------------------------------------------------

interface Exchange {
  readonly method: string
  readonly path: string
  readonly headers: Readonly<Record<string, string>>
  readonly status: number
}

/** An undici-backed client whose Agent lives as long as the test's scope. */
const undiciClient = Effect.map(Layer.build(NodeHttpClient.layerUndici), (ctx) => Context.get(ctx, HttpClient.HttpClient))

/**
 * An emulator and the provider over undici, recording every exchange. The emulator's clock moves
 * only when the test moves it (`advance`): every state is reached by polling, never by waiting
 * for wall-clock time.
 */
const setup = (options: EmulatorOptions, config: Partial<GeminiConfig> = {}) =>
  Effect.gen(function*() {
    let now = Date.now()
    const emulator = yield* emulatorScoped({ clock: () => now, validatingMs: 20, finalizingMs: 20, cancellingMs: 50, ...options })
    const exchanges: Array<Exchange> = []
    const recording = HttpClient.tap(yield* undiciClient, (response: HttpClientResponse.HttpClientResponse) =>
      Effect.sync(() => {
        exchanges.push({
          method: response.request.method,
          path: new URL(response.request.url).pathname,
          headers: { ...response.request.headers },
          status: response.status
        })
      }))
    const provider = yield* make({
      apiKey: Redacted.make(options.apiKey ?? "gemini-emulator-key"),
      baseUrl: emulator.url,
      retry: { baseDelay: "10 millis" },
      ...config
    }).pipe(Effect.provideService(HttpClient.HttpClient, recording))
    // The test API takes the emulator's key, when it has one.
    const key: Record<string, string> = options.apiKey === undefined ? {} : { authorization: `Bearer ${options.apiKey}` }
    const control = (path: string, body?: Record<string, unknown>) =>
      Effect.promise(() =>
        fetch(`${emulator.url}/_emulator/${path}`, body === undefined ? { headers: key } : {
          method: "POST",
          headers: { ...key, "content-type": "application/json" },
          body: JSON.stringify(body)
        }).then((r) => r.json() as Promise<any>)
      )
    return {
      emulator,
      provider,
      exchanges,
      advance: (ms: number) => Effect.sync(() => void (now += ms)),
      faults: (body: Record<string, unknown>) => control("faults", body),
      ledger: control("ledger") as Effect.Effect<
        {
          batches: Array<{ id: string; status: string; metadata: Record<string, string> | null; custom_ids: Array<string> }>
          deliveries: Array<{ custom_id: string; batch_id: string }>
        }
      >
    }
  })

const tmpDir = Effect.acquireRelease(
  Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-gemini-"))),
  (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
)

/** Writes a shard file the way the runner does: one encoded line per request. */
const writeShard = (dir: string, provider: BatchProvider, requests: ReadonlyArray<readonly [string, BatchRequest]>) => {
  const path = NodePath.join(dir, `shard-${Math.random().toString(36).slice(2)}.jsonl`)
  NodeFs.writeFileSync(path, requests.map(([id, r]) => provider.encode(r, id) + "\n").join(""))
  return path
}

/** Polls until `done` (default: terminal), moving the emulator's clock 10 ms after each poll that is not. */
const waitTerminal = (
  provider: BatchProvider,
  id: string,
  advance: (ms: number) => Effect.Effect<void>,
  done: (b: BatchInfo) => boolean = (b) => isTerminal(b.status)
) =>
  provider.retrieve(id).pipe(
    Effect.tap((b) => (done(b) ? Effect.void : advance(10))),
    Effect.repeat({ until: done, times: 2000 }),
    Effect.filterOrFail(done, (b) => new Error(`batch ${id} still ${b.rawStatus} after 2000 polls`))
  )

const collect = (provider: BatchProvider, batch: BatchInfo) =>
  Stream.runCollect(provider.results(batch)).pipe(Effect.map((c) => Chunk.toReadonlyArray(c)))

const failureOf = (e: Exit.Exit<unknown, ProviderError>): ProviderError => {
  if (Exit.isSuccess(e) || e.cause._tag !== "Fail") throw new Error(`expected a ProviderError failure, got ${String(e)}`)
  return e.cause.error
}

/** The record id the emulator's ledger and `expireBatch` use. */
const ledgerId = (batchId: string) => batchId.replace(/^batches\//, "")

const runMetadata = (shard: string, submission = "1") => ({
  sluice_run: "classify-reviews-1a2b3c4d",
  sluice_shard: shard,
  sluice_submission: submission,
  sluice_sha256: "0123456789abcdef0123456789abcdef"
})

describe("GeminiBatch against the emulator", () => {
  it.scopedLive("inline lifecycle: errored lines, structured output, polls with no-cache, resubmission succeeds", () =>
    Effect.gen(function*() {
      const { advance, exchanges, ledger, provider } = yield* setup({ errorRate: 0.3, requestsPerSecond: 2000 })
      const dir = yield* tmpDir
      const requests = Array.from({ length: 30 }, (_, i) => [`row-${i}`, chat(i, i % 2 === 0)] as const)
      // a request the endpoint rejects (no contents): a permanent error line
      const bad = ["row-bad", { ...chat(99, false), messages: [{ role: "system", content: "only a system" }] }] as const
      const path = writeShard(dir, provider, [...requests, bad])

      const staged = yield* provider.stage(path, "sluice-run-label-00001-s1.jsonl")
      assert.strictEqual(staged.inputRef, `inline:${path}`)
      yield* provider.deleteStaged(staged.inputRef) // nothing was uploaded: a no-op

      const metadata = runMetadata("label-00001")
      const created = yield* provider.create({ inputRef: staged.inputRef, path, endpoint: "chat", metadata })
      assert.match(created.id, /^batches\//)
      assert.strictEqual(created.status, "validating")
      assert.strictEqual(created.rawStatus, "BATCH_STATE_PENDING")
      assert.strictEqual(created.counts.total, 31)
      const { sluice_sha256: _, ...kept } = metadata
      assert.deepStrictEqual(created.metadata, kept)

      const creates = exchanges.filter((x) => x.method === "POST" && x.path.endsWith(":batchGenerateContent"))
      assert.deepStrictEqual(creates.map((x) => x.path), ["/v1beta/models/gemini-2.5-flash:batchGenerateContent"])
      assert.strictEqual(creates[0]!.headers["x-goog-api-key"], "gemini-emulator-key")

      const done = yield* waitTerminal(provider, created.id, advance)
      assert.strictEqual(done.status, "completed")
      assert.strictEqual(done.rawStatus, "BATCH_STATE_SUCCEEDED")
      assert.strictEqual(done.outputFileId, inlineResponses)
      assert.strictEqual(done.counts.total, 31)
      assert.strictEqual(done.counts.succeeded + done.counts.failed, 31)
      assert.isTrue(done.counts.failed >= 2, "errorRate 0.3 should fail some requests")

      const polls = exchanges.filter((x) => x.method === "GET" && x.path === `/v1beta/${created.id}`)
      assert.isTrue(polls.length >= 2)
      for (const p of polls) assert.strictEqual(p.headers["cache-control"], "no-cache")

      const results = yield* collect(provider, done)
      const byId = new Map<string, BatchResult>(results.map((r) => [r.customId, r]))
      assert.strictEqual(results.length, 31)
      assert.strictEqual(byId.size, 31)
      const ok = results.filter((r) => r._tag === "Succeeded")
      const failed = results.filter((r) => r._tag === "Failed")
      assert.strictEqual(ok.length, done.counts.succeeded)
      assert.strictEqual(failed.length, done.counts.failed)
      for (const r of ok) {
        assert.isNotNull(r.usage)
        assert.isTrue(r.usage!.inputTokens > 0 && r.usage!.outputTokens > 0)
        assert.strictEqual(r.finishReason, "STOP")
        if (Number(r.customId.split("-")[1]) % 2 === 0) {
          // structured output decodes with the stage's own Schema
          const decoded = decodeLabel(r.text)
          assert.isTrue(Either.isRight(decoded), `${r.text}: ${Either.isLeft(decoded) ? decoded.left : ""}`)
        }
      }
      const badResult = byId.get("row-bad")!
      assert.deepInclude(badResult, { _tag: "Failed", failure: "permanent", code: "INVALID_ARGUMENT", status: 400 })
      const transient = failed.filter((r) => r.customId !== "row-bad")
      assert.isTrue(transient.length > 0)
      for (const r of transient) assert.deepInclude(r, { failure: "retryable", code: "UNAVAILABLE", status: 503 })

      // the ledger lists the batch with its keys, metadata and deliveries
      const book = yield* ledger
      const entry = book.batches.find((b) => b.id === ledgerId(created.id))!
      assert.deepStrictEqual(entry.metadata, kept)
      assert.deepStrictEqual([...entry.custom_ids].sort(), [...byId.keys()].sort())
      assert.strictEqual(book.deliveries.filter((d) => d.batch_id === ledgerId(created.id)).length, ok.length)

      // resubmitting the transient failures: they succeed the second time
      const again = writeShard(dir, provider, transient.map((r) => [r.customId, requests.find(([id]) => id === r.customId)![1]]))
      const retried = yield* provider.create({
        inputRef: (yield* provider.stage(again, "retry")).inputRef,
        path: again,
        endpoint: "chat",
        metadata: runMetadata("label-00001", "2")
      })
      const retriedResults = yield* collect(provider, yield* waitTerminal(provider, retried.id, advance))
      assert.strictEqual(retriedResults.length, transient.length)
      assert.isTrue(retriedResults.every((r) => r._tag === "Succeeded"))
    }))

  it.scopedLive("file lifecycle: resumable upload, findStaged by display name, responses file download", () =>
    Effect.gen(function*() {
      const { advance, exchanges, provider } = yield* setup({ requestsPerSecond: 5000 }, { inlineMaxBytes: 0 })
      const dir = yield* tmpDir
      const requests = Array.from({ length: 25 }, (_, i) => [`f-${i}`, chat(i, true)] as const)
      const path = writeShard(dir, provider, requests)
      const name = "sluice-classify-1a2b-label-00002-s1.jsonl"

      assert.isTrue(Option.isNone(yield* provider.findStaged(name)))
      const staged = yield* provider.stage(path, name)
      assert.match(staged.inputRef, /^files\/[a-z0-9]+$/)
      const uploads = exchanges.filter((x) => x.path === "/upload/v1beta/files")
      assert.deepStrictEqual(uploads.map((x) => x.headers["x-goog-upload-command"]), ["start", "upload, finalize"])
      assert.strictEqual(uploads[0]!.headers["x-goog-upload-protocol"], "resumable")
      assert.strictEqual(uploads[0]!.headers["x-goog-upload-header-content-length"], String(NodeFs.statSync(path).size))

      // found again by its display name (after a crash between upload and journal)
      assert.deepStrictEqual(yield* provider.findStaged(name), Option.some(staged))
      assert.isTrue(Option.isNone(yield* provider.findStaged("some-other-name.jsonl")))

      const created = yield* provider.create({ inputRef: staged.inputRef, path, endpoint: "chat", metadata: runMetadata("label-00002") })
      assert.strictEqual(created.inputRef, staged.inputRef)
      const done = yield* waitTerminal(provider, created.id, advance)
      assert.strictEqual(done.status, "completed")
      assert.match(done.outputFileId ?? "", /^files\/batch-/)
      const results = yield* collect(provider, done)
      assert.strictEqual(results.length, 25)
      for (const r of results) {
        assert.strictEqual(r._tag, "Succeeded")
        if (r._tag === "Succeeded") assert.isTrue(Either.isRight(decodeLabel(r.text)), r.text)
      }
      const downloads = exchanges.filter((x) => x.path.startsWith("/download/v1beta/files/"))
      assert.deepStrictEqual(downloads.map((x) => [x.path, x.status]), [[`/download/v1beta/${done.outputFileId}:download`, 200]])

      // the staged input can be deleted, twice (idempotent), and is then gone
      yield* provider.deleteStaged(staged.inputRef)
      yield* provider.deleteStaged(staged.inputRef)
      assert.isTrue(Option.isNone(yield* provider.findStaged(name)))
    }))

  it.scopedLive("storage: files listed page by page with their bytes, input and responses file deleted (idempotently), ended batch deleted", () =>
    Effect.gen(function*() {
      const { advance, provider } = yield* setup({ requestsPerSecond: 5000 }, { inlineMaxBytes: 0, filesPageSize: 1 })
      const storage = provider.storage!
      const dir = yield* tmpDir
      const path = writeShard(dir, provider, Array.from({ length: 5 }, (_, i) => [`s-${i}`, chat(i, false)] as const))
      const name = "sluice-classify-1a2b-label-00003-s1.jsonl"
      const staged = yield* provider.stage(path, name)
      assert.strictEqual(storage.inputFile(staged.inputRef), staged.inputRef)
      assert.isNull(storage.inputFile(`inline:${path}`))
      const done = yield* waitTerminal(provider, (yield* provider.create({ inputRef: staged.inputRef, path, endpoint: "chat", metadata: runMetadata("label-00003") })).id, advance)
      const outputs = storage.outputFiles(done)
      assert.deepStrictEqual(outputs, [done.outputFileId!])

      const listed = Chunk.toReadonlyArray(yield* Stream.runCollect(storage.files))
      const input = listed.find((f) => f.id === staged.inputRef)
      assert.deepInclude(input, { name, purpose: "UPLOADED", bytes: NodeFs.statSync(path).size })
      const output = listed.find((f) => f.id === outputs[0])
      assert.strictEqual(output?.purpose, "GENERATED")
      assert.isAbove(output?.bytes ?? 0, 0)

      for (const id of [staged.inputRef, ...outputs]) {
        yield* storage.deleteFile(id)
        yield* storage.deleteFile(id)
      }
      assert.deepStrictEqual(Chunk.toReadonlyArray(yield* Stream.runCollect(storage.files)).map((f) => f.id), [])

      yield* provider.deleteBatch!(done.id)
      yield* provider.deleteBatch!(done.id)
      const gone = failureOf(yield* Effect.exit(provider.retrieve(done.id)))
      assert.strictEqual(gone.reason, "NotFound")
    }))

  it.scopedLive("findStaged pages through the file list", () =>
    Effect.gen(function*() {
      const { exchanges, provider } = yield* setup({}, { inlineMaxBytes: 0, filesPageSize: 2 })
      const dir = yield* tmpDir
      const path = writeShard(dir, provider, [["a", chat(1, false)]])
      const first = yield* provider.stage(path, "oldest.jsonl")
      for (let i = 0; i < 4; i++) yield* provider.stage(path, `newer-${i}.jsonl`)
      const before = exchanges.length
      assert.deepStrictEqual(yield* provider.findStaged("oldest.jsonl"), Option.some(first))
      assert.strictEqual(exchanges.slice(before).filter((x) => x.path === "/v1beta/files").length, 3)
    }))

  it.scopedLive("an expired batch returns no results at all (and delivers nothing)", () =>
    Effect.gen(function*() {
      const { advance, faults, ledger, provider } = yield* setup({ requestsPerSecond: 20 })
      const dir = yield* tmpDir
      const path = writeShard(dir, provider, Array.from({ length: 60 }, (_, i) => [`x-${i}`, chat(i, false)] as const))
      const created = yield* provider.create({
        inputRef: (yield* provider.stage(path, "expire")).inputRef,
        path,
        endpoint: "chat",
        metadata: {}
      })
      yield* advance(20 + 250) // validated, then 5 of the 60 requests processed
      yield* faults({ expireBatch: ledgerId(created.id) })
      const done = yield* waitTerminal(provider, created.id, advance)
      assert.strictEqual(done.status, "expired")
      assert.strictEqual(done.rawStatus, "BATCH_STATE_EXPIRED")
      assert.isNull(done.outputFileId)
      assert.deepStrictEqual(yield* collect(provider, done), [])
      const book = yield* ledger
      assert.deepStrictEqual(book.batches.find((b) => b.id === ledgerId(created.id))!.metadata, {})
      assert.deepStrictEqual(book.deliveries.filter((d) => d.batch_id === ledgerId(created.id)), [])
    }))

  it.scopedLive("cancel: the batch ends CANCELLED with no results; cancelling again is refused", () =>
    Effect.gen(function*() {
      const { advance, provider } = yield* setup({ requestsPerSecond: 20 })
      const dir = yield* tmpDir
      const path = writeShard(dir, provider, Array.from({ length: 100 }, (_, i) => [`c-${i}`, chat(i, false)] as const))
      const created = yield* provider.create({
        inputRef: (yield* provider.stage(path, "cancel")).inputRef,
        path,
        endpoint: "chat",
        metadata: {}
      })
      yield* waitTerminal(provider, created.id, advance, (b) => b.status === "in_progress")
      const cancelling = yield* provider.cancel(created.id)
      // Gemini has no cancelling state: the batch runs until it has stopped
      assert.strictEqual(cancelling.status, "in_progress")
      const done = yield* waitTerminal(provider, created.id, advance)
      assert.strictEqual(done.status, "cancelled")
      assert.strictEqual(done.rawStatus, "BATCH_STATE_CANCELLED")
      assert.deepStrictEqual(yield* collect(provider, done), [])
      const error = failureOf(yield* Effect.exit(provider.cancel(created.id)))
      assert.strictEqual(error.reason, "Rejected")
      assert.strictEqual(error.status, 400)
    }))

  it.scopedLive("list: newest first across pages (page size 3, 7 batches), lazily; orphan metadata round-trips", () =>
    Effect.gen(function*() {
      const { exchanges, provider } = yield* setup({ requestsPerSecond: 5000 }, { listPageSize: 3 })
      const dir = yield* tmpDir
      const path = writeShard(dir, provider, [["a", chat(1, false)]])
      const staged = yield* provider.stage(path, "list")
      const ids: Array<string> = []
      for (let i = 0; i < 7; i++) {
        const b = yield* provider.create({
          inputRef: staged.inputRef,
          path,
          endpoint: "chat",
          metadata: runMetadata(`label-0000${i}`, String(i + 1))
        })
        ids.push(b.id)
      }
      const listed = Chunk.toReadonlyArray(yield* Stream.runCollect(provider.list))
      assert.deepStrictEqual(listed.map((b) => b.id), [...ids].reverse())
      assert.strictEqual(exchanges.filter((x) => x.method === "GET" && x.path === "/v1beta/batches").length, 3)
      // the runner's orphan search (Submitter.findOrphan) matches these three keys
      const orphan = listed.find((b) =>
        b.metadata["sluice_run"] === "classify-reviews-1a2b3c4d" &&
        b.metadata["sluice_shard"] === "label-00004" &&
        b.metadata["sluice_submission"] === "5"
      )
      assert.strictEqual(orphan?.id, ids[4])
      // lazily: taking 2 reads one page
      const before = exchanges.length
      yield* Stream.runCollect(Stream.take(provider.list, 2))
      assert.strictEqual(exchanges.length - before, 1)
    }))

  it.scopedLive("apiVersion v1 (as the official SDK 3.x calls): file and inline lifecycles under /v1, also with Bearer auth", () =>
    Effect.gen(function*() {
      // With Bearer auth no Google header is sent: the emulator tells Gemini's /v1 calls from
      // OpenAI's by their shape alone.
      const cases = [["api-key", 0], ["bearer", 0], ["bearer", undefined]] as const
      for (const [auth, inlineMaxBytes] of cases) {
        const { advance, exchanges, ledger, provider } = yield* setup({ requestsPerSecond: 5000 }, { apiVersion: "v1", auth, inlineMaxBytes })
        const dir = yield* tmpDir
        const path = writeShard(dir, provider, Array.from({ length: 8 }, (_, i) => [`v1-${i}`, chat(i, i % 2 === 0)] as const))
        const name = `v1-${auth}-${inlineMaxBytes}.jsonl`
        const staged = yield* provider.stage(path, name)
        assert.match(staged.inputRef, inlineMaxBytes === 0 ? /^files\// : /^inline:/)
        if (inlineMaxBytes === 0) assert.deepStrictEqual(yield* provider.findStaged(name), Option.some(staged))
        const created = yield* provider.create({ inputRef: staged.inputRef, path, endpoint: "chat", metadata: runMetadata("label-00009") })
        const done = yield* waitTerminal(provider, created.id, advance)
        assert.strictEqual(done.status, "completed")
        const results = yield* collect(provider, done)
        assert.deepStrictEqual(results.map((r) => r._tag), Array(8).fill("Succeeded"))
        assert.deepStrictEqual(Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.take(provider.list, 1))).map((b) => b.id), [created.id])
        yield* provider.deleteStaged(staged.inputRef)
        if (inlineMaxBytes === 0) assert.isTrue(Option.isNone(yield* provider.findStaged(name)))

        const paths = exchanges.map((x) => x.path)
        assert.isTrue(paths.length >= 5)
        assert.deepStrictEqual(paths.filter((p) => !/^\/(upload\/|download\/)?v1\//.test(p)), [])
        if (inlineMaxBytes === 0) assert.isTrue(paths.some((p) => p.startsWith("/download/v1/files/")))
        assert.isTrue(exchanges.every((x) => x.status < 400), JSON.stringify(exchanges.filter((x) => x.status >= 400)))
        const book = yield* ledger
        assert.strictEqual(book.deliveries.filter((d) => d.batch_id === ledgerId(created.id)).length, 8)
      }
    }))

  it.scopedLive("late output: SUCCEEDED without a response until it shows up", () =>
    Effect.gen(function*() {
      const { advance, provider } = yield* setup({ requestsPerSecond: 5000, lateOutputFileMs: 400 })
      const dir = yield* tmpDir
      const path = writeShard(dir, provider, [["a", chat(1, false)], ["b", chat(2, false)]])
      const created = yield* provider.create({ inputRef: (yield* provider.stage(path, "late")).inputRef, path, endpoint: "chat", metadata: {} })
      const done = yield* waitTerminal(provider, created.id, advance)
      assert.strictEqual(done.status, "completed")
      assert.isNull(done.outputFileId)
      yield* advance(400)
      const later = yield* provider.retrieve(created.id)
      assert.strictEqual(later.outputFileId, inlineResponses)
      assert.strictEqual((yield* collect(provider, later)).length, 2)
    }))

  it.scopedLive("dropLines: lost lines are simply absent (the runner finds them missing)", () =>
    Effect.gen(function*() {
      const { advance, provider } = yield* setup({ requestsPerSecond: 5000, dropLines: 0.5 })
      const dir = yield* tmpDir
      const path = writeShard(dir, provider, Array.from({ length: 40 }, (_, i) => [`d-${i}`, chat(i, false)] as const))
      const created = yield* provider.create({ inputRef: (yield* provider.stage(path, "drop")).inputRef, path, endpoint: "chat", metadata: {} })
      const done = yield* waitTerminal(provider, created.id, advance)
      assert.strictEqual(done.counts.succeeded, 40)
      const results = yield* collect(provider, done)
      assert.isTrue(results.length > 0 && results.length < 40, `${results.length} results`)
      assert.isTrue(results.every((r) => r._tag === "Succeeded"))
    }))

  it.scopedLive("a restarted emulator on the same stateDir continues a Gemini batch", () =>
    Effect.gen(function*() {
      const dir = yield* tmpDir
      const stateDir = NodePath.join(dir, "state")
      // One clock for both emulators, as the wall clock would be; it moves only when the test moves it.
      let now = Date.now()
      const advance = (ms: number) => Effect.sync(() => void (now += ms))
      const first = yield* Effect.promise(() => startEmulator({ clock: () => now, stateDir, requestsPerSecond: 50, validatingMs: 20, finalizingMs: 20 }))
      const client = yield* undiciClient
      const provider = yield* make({ apiKey: Redacted.make("k"), baseUrl: first.url, inlineMaxBytes: 0 }).pipe(
        Effect.provideService(HttpClient.HttpClient, client)
      )
      const path = writeShard(dir, provider, Array.from({ length: 20 }, (_, i) => [`p-${i}`, chat(i, true)] as const))
      const staged = yield* provider.stage(path, "persist.jsonl")
      const created = yield* provider.create({ inputRef: staged.inputRef, path, endpoint: "chat", metadata: runMetadata("label-00009") })
      yield* Effect.promise(() => first.close())
      const second = yield* Effect.acquireRelease(
        Effect.promise(() => startEmulator({ clock: () => now, stateDir, port: first.port })),
        (e) => Effect.promise(() => e.close())
      )
      assert.strictEqual(second.url, first.url)
      const done = yield* waitTerminal(provider, created.id, advance)
      assert.strictEqual(done.status, "completed")
      assert.deepStrictEqual(done.metadata, { sluice_run: "classify-reviews-1a2b3c4d", sluice_shard: "label-00009", sluice_submission: "1" })
      const results = yield* collect(provider, done)
      assert.strictEqual(results.filter((r) => r._tag === "Succeeded").length, 20)
      assert.deepStrictEqual(yield* provider.findStaged("persist.jsonl"), Option.some(staged))
    }))

  it.scopedLive("call faults: 429s and 5xx are retried on polls, uploads and downloads", () =>
    Effect.gen(function*() {
      const { advance, exchanges, faults, provider } = yield* setup({ requestsPerSecond: 5000 }, { inlineMaxBytes: 0 })
      const dir = yield* tmpDir
      const path = writeShard(dir, provider, Array.from({ length: 10 }, (_, i) => [`r-${i}`, chat(i, false)] as const))
      yield* faults({ rateLimitRate: 1, retryAfterMs: 20 })
      const staged = yield* provider.stage(path, "faulty.jsonl")
      yield* faults({ rateLimitRate: 0 })
      yield* Stream.runDrain(Stream.take(provider.list, 1)) // absorbs an owed fault before the unretried create
      const created = yield* provider.create({ inputRef: staged.inputRef, path, endpoint: "chat", metadata: {} })
      yield* faults({ rateLimitRate: 0.5, serverErrorRate: 0.2, retryAfterMs: 20 })
      const done = yield* waitTerminal(provider, created.id, advance)
      const results = yield* collect(provider, done)
      yield* faults({ rateLimitRate: 0, serverErrorRate: 0 })
      assert.strictEqual(results.length, 10)
      assert.isTrue(exchanges.some((x) => x.status === 429))
      const uploads = exchanges.filter((x) => x.path === "/upload/v1beta/files").map((x) => x.status)
      assert.isTrue(uploads.includes(429) && uploads[uploads.length - 1] === 200, `uploads: ${uploads.join(",")}`)
    }))

  it.scopedLive("a wrong API key is Unauthorized, and no key appears in the error", () =>
    Effect.gen(function*() {
      const wrongKey = "AIza-wrong-0123456789abcdef"
      const { provider } = yield* setup({ apiKey: "AIza-right-key-000000" }, { apiKey: Redacted.make(wrongKey), retry: { maxRetries: 0 } })
      const dir = yield* tmpDir
      const path = writeShard(dir, provider, [["a", chat(1, false)]])
      for (const exit of [
        yield* Effect.exit(provider.retrieve("batches/nope")),
        yield* Effect.exit(Stream.runDrain(provider.list)),
        yield* Effect.exit(provider.create({ inputRef: `inline:${path}`, path, endpoint: "chat", metadata: {} }))
      ]) {
        const error = failureOf(exit)
        assert.instanceOf(error, ProviderError)
        assert.strictEqual(error.reason, "Unauthorized")
        for (const text of [error.message, String(error), JSON.stringify(error), String(exit)]) {
          assert.notInclude(text, wrongKey)
          assert.notInclude(text, "AIza-right-key")
        }
      }
    }))

  it.scopedLive("emulator wire: responseSchema (OpenAPI subset) answers conform; Google-shaped auth errors", () =>
    Effect.gen(function*() {
      const emulator = yield* emulatorScoped({ validatingMs: 5, finalizingMs: 5, requestsPerSecond: 5000, apiKey: "right-key-123" })
      const call = (path: string, init: { method?: string; key?: string; body?: unknown } = {}) =>
        Effect.promise(async () => {
          const response = await fetch(`${emulator.url}${path}`, {
            method: init.method ?? "GET",
            headers: { "content-type": "application/json", ...(init.key === undefined ? {} : { "x-goog-api-key": init.key }) },
            ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) })
          })
          return { status: response.status, body: (await response.json()) as any }
        })
      const missing = yield* call("/v1beta/batches")
      assert.deepStrictEqual([missing.status, missing.body.error.status], [403, "PERMISSION_DENIED"])
      const wrong = yield* call("/v1beta/batches", { key: "wrong-key-456" })
      assert.deepStrictEqual([wrong.status, wrong.body.error.status], [400, "INVALID_ARGUMENT"])
      assert.strictEqual(wrong.body.error.details[0].reason, "API_KEY_INVALID")

      const responseSchema = {
        type: "OBJECT",
        properties: {
          mood: { type: "STRING", enum: ["up", "down"] },
          note: { type: "STRING", nullable: true },
          tags: { type: "ARRAY", items: { type: "STRING" }, minItems: 2 }
        },
        required: ["mood", "note", "tags"]
      }
      const created = yield* call("/v1beta/models/gemini-2.5-flash:batchGenerateContent", {
        method: "POST",
        key: "right-key-123",
        body: {
          batch: {
            display_name: "raw",
            input_config: {
              requests: {
                requests: [{
                  request: {
                    contents: [{ role: "user", parts: [{ text: "how is it going" }] }],
                    generation_config: { response_mime_type: "application/json", response_schema: responseSchema }
                  },
                  metadata: { key: "only" }
                }]
              }
            }
          }
        }
      })
      assert.strictEqual(created.status, 200)
      assert.strictEqual(created.body.metadata.state, "BATCH_STATE_PENDING")
      assert.strictEqual(created.body.metadata.batchStats.requestCount, "1")
      let op = created.body
      while (op.done !== true) {
        yield* Effect.sleep("20 millis")
        op = (yield* call(`/v1beta/${created.body.name}`, { key: "right-key-123" })).body
      }
      assert.strictEqual(op.metadata.state, "BATCH_STATE_SUCCEEDED")
      const [entry] = op.response.inlinedResponses.inlinedResponses
      assert.deepStrictEqual(entry.metadata, { key: "only" })
      const value = JSON.parse(entry.response.candidates[0].content.parts[0].text)
      assert.include(["up", "down"], value.mood)
      assert.isTrue(value.note === null || typeof value.note === "string")
      assert.isTrue(Array.isArray(value.tags) && value.tags.length >= 2)
    }))

  it.scopedLive("the registry reads GEMINI_API_VERSION (default v1beta) and refuses a malformed one", () =>
    Effect.gen(function*() {
      const paths: Array<string> = []
      const emulator = yield* emulatorScoped({ validatingMs: 0, finalizingMs: 0, log: (line) => {
        if (/^[A-Z]+ \//.test(line)) paths.push(line.split(" ")[1]!)
      } })
      const dir = yield* tmpDir
      const saved = Object.fromEntries(["GEMINI_API_KEY", "GEMINI_BASE_URL", "GEMINI_API_VERSION"].map((k) => [k, process.env[k]]))
      const fromRegistry = Effect.flatMap(Providers, (p) => p.get("gemini")).pipe(
        Effect.provide(Registry.layerFromEnv()),
        Effect.provideService(HttpClient.HttpClient, yield* undiciClient)
      )
      try {
        process.env["GEMINI_API_KEY"] = "test-key"
        process.env["GEMINI_BASE_URL"] = emulator.url
        for (const [version, root] of [[undefined, "/v1beta/"], [" v1 ", "/v1/"], ["v1beta", "/v1beta/"]] as const) {
          if (version === undefined) delete process.env["GEMINI_API_VERSION"]
          else process.env["GEMINI_API_VERSION"] = version
          const provider = yield* fromRegistry
          const path = writeShard(dir, provider, [["env", chat(1, false)]])
          paths.length = 0
          yield* provider.create({ inputRef: (yield* provider.stage(path, "env")).inputRef, path, endpoint: "chat", metadata: {} })
          assert.deepStrictEqual(paths, [`${root}models/gemini-2.5-flash:batchGenerateContent`])
        }
        process.env["GEMINI_API_VERSION"] = "1beta"
        const bad = yield* Effect.flip(fromRegistry)
        assert.strictEqual(bad._tag, "ProviderConfigError")
        assert.include(bad.message, "GEMINI_API_VERSION must be an API version such as v1beta or v1, got '1beta'")
      } finally {
        for (const [k, v] of Object.entries(saved)) {
          if (v === undefined) delete process.env[k]
          else process.env[k] = v
        }
      }
    }))

  it.effect("the registry builds `gemini` from GEMINI_API_KEY (and says so when it is missing)", () =>
    Effect.gen(function*() {
      assert.include(Registry.known, "gemini")
      const getGemini = Effect.flatMap(Providers, (p) => p.get("gemini")).pipe(
        Effect.provide(Registry.layerFromEnv()),
        Effect.provide(NodeHttpClient.layerUndici)
      )
      const saved = process.env["GEMINI_API_KEY"]
      try {
        delete process.env["GEMINI_API_KEY"]
        const missing = yield* Effect.flip(getGemini)
        assert.strictEqual(missing._tag, "ProviderConfigError")
        assert.include(missing.message, "GEMINI_API_KEY is not set")
        process.env["GEMINI_API_KEY"] = "test-key"
        const provider = yield* getGemini
        assert.strictEqual(provider.name, "gemini")
        assert.deepStrictEqual(provider.capabilities, capabilities)
      } finally {
        if (saved === undefined) delete process.env["GEMINI_API_KEY"]
        else process.env["GEMINI_API_KEY"] = saved
      }
    }))
})

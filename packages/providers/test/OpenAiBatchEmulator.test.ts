/**
 * The OpenAI provider over real HTTP (undici) against the emulator on 127.0.0.1.
 */
import { HttpClient } from "@effect/platform"
import type { HttpClientResponse } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import type { BatchRequest, BatchResult } from "@sluice/core"
import { Chunk, Context, Effect, Exit, Layer, Option, Redacted, Stream } from "effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import type { BatchInfo, BatchProvider } from "../src/BatchProvider.js"
import { isTerminal } from "../src/BatchProvider.js"
import { scoped as emulatorScoped } from "@sluice/emulator"
import type { EmulatorOptions } from "@sluice/emulator"
import type { OpenAiConfig } from "../src/openai/OpenAiBatch.js"
import { make } from "../src/openai/OpenAiBatch.js"
import { ProviderError } from "../src/ProviderError.js"

interface Exchange {
  readonly method: string
  readonly path: string
  readonly headers: Readonly<Record<string, string>>
  readonly status: number
  readonly at: number
}

/**
 * Starts an emulator and builds the provider over the undici client, recording every exchange.
 * The emulator's clock moves only when the test moves it (`advance`): every state is reached by
 * polling, never by waiting for wall-clock time.
 */
const setup = (options: EmulatorOptions, config: Partial<OpenAiConfig> = {}) =>
  Effect.gen(function*() {
    let now = Date.now()
    const advance = (ms: number) => Effect.sync(() => void (now += ms))
    const emulator = yield* emulatorScoped({ clock: () => now, validatingMs: 20, finalizingMs: 20, cancellingMs: 50, ...options })
    const exchanges: Array<Exchange> = []
    const undici = yield* undiciClient
    const recording = HttpClient.tap(undici, (response: HttpClientResponse.HttpClientResponse) =>
      Effect.sync(() => {
        const url = new URL(response.request.url)
        exchanges.push({
          method: response.request.method,
          path: url.pathname,
          headers: { ...response.request.headers },
          status: response.status,
          at: Date.now()
        })
      })
    )
    const provider = yield* make({
      apiKey: Redacted.make(options.apiKey ?? "sk-emulator"),
      baseUrl: `${emulator.url}/v1`,
      ...config
    }).pipe(Effect.provideService(HttpClient.HttpClient, recording))
    const faults = (body: Record<string, unknown>) =>
      Effect.promise(() =>
        fetch(`${emulator.url}/_emulator/faults`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body)
        }).then((r) => r.json())
      )
    const ledger = Effect.promise(() =>
      fetch(`${emulator.url}/_emulator/ledger`).then((r) => r.json() as Promise<{ batches: Array<{ id: string }> }>)
    )
    return { emulator, provider, exchanges, faults, ledger, advance }
  })

/** An undici-backed client whose Agent lives as long as the test's scope. */
const undiciClient = Effect.map(Layer.build(NodeHttpClient.layerUndici), (ctx) => Context.get(ctx, HttpClient.HttpClient))

const tmpDir = Effect.acquireRelease(
  Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-oai-e2e-"))),
  (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
)

/** Writes a shard file the way the runner does: one encoded line per request. */
const writeShard = (dir: string, provider: BatchProvider, requests: ReadonlyArray<readonly [string, BatchRequest]>) => {
  const path = NodePath.join(dir, `shard-${Math.random().toString(36).slice(2)}.jsonl`)
  NodeFs.writeFileSync(path, requests.map(([id, r]) => provider.encode(r, id) + "\n").join(""))
  return path
}

const chat = (i: number, structured: boolean): BatchRequest => ({
  _tag: "chat",
  model: "gpt-4o-mini",
  messages: [{ role: "system", content: "Label the review." }, { role: "user", content: `review number ${i}` }],
  params: { temperature: 0 },
  ...(structured ?
    {
      output: {
        name: "Label",
        schema: {
          type: "object",
          properties: { sentiment: { type: "string", enum: ["positive", "negative"] } },
          required: ["sentiment"],
          additionalProperties: false
        }
      }
    } :
    {})
})

/** Polls until the batch is terminal, moving the emulator's clock 10 ms after each poll that is not. */
const waitFor = (
  provider: BatchProvider,
  id: string,
  advance: (ms: number) => Effect.Effect<void>,
  done: (b: BatchInfo) => boolean = (b) => isTerminal(b.status)
) =>
  provider.retrieve(id).pipe(
    Effect.tap((b) => (done(b) ? Effect.void : advance(10))),
    Effect.repeat({ until: done, times: 2000 }),
    Effect.filterOrFail(done, (b) => new Error(`batch ${id} still ${b.status} after 2000 polls`))
  )

const collect = (provider: BatchProvider, batch: BatchInfo) =>
  Stream.runCollect(provider.results(batch)).pipe(Effect.map((c) => Chunk.toReadonlyArray(c)))

const failureOf = (e: Exit.Exit<unknown, ProviderError>): ProviderError => {
  if (Exit.isSuccess(e) || e.cause._tag !== "Fail") throw new Error(`expected a ProviderError failure, got ${String(e)}`)
  return e.cause.error
}

describe("OpenAiBatch against the emulator", () => {
  it.scopedLive("full lifecycle: stage, find, create with metadata, poll, results from output + error files", () =>
    Effect.gen(function*() {
      const { advance, exchanges, provider, ledger } = yield* setup({ errorRate: 0.3, requestsPerSecond: 2000 })
      const dir = yield* tmpDir
      const requests = Array.from({ length: 40 }, (_, i) => [`row-${i}`, chat(i, i % 2 === 0)] as const)
      // one request the endpoint will reject (400): no messages
      const bad = ["row-bad", { ...chat(99, false), messages: [] }] as const
      const path = writeShard(dir, provider, [...requests, bad])

      const staged = yield* provider.stage(path, "run-1-shard-0-attempt-0")
      assert.match(staged.inputRef, /^file-/)
      const found = yield* provider.findStaged("run-1-shard-0-attempt-0")
      assert.deepStrictEqual(found, Option.some(staged))
      assert.isTrue(Option.isNone(yield* provider.findStaged("run-1-shard-1-attempt-0")))

      const metadata = { run: "run-1", shard: "0", attempt: "0" }
      const created = yield* provider.create({ inputRef: staged.inputRef, path, endpoint: "chat", metadata })
      assert.strictEqual(created.status, "validating")
      assert.deepStrictEqual(created.metadata, metadata)
      assert.strictEqual(created.inputRef, staged.inputRef)

      const done = yield* waitFor(provider, created.id, advance)
      assert.strictEqual(done.status, "completed")
      assert.strictEqual(done.counts.total, 41)
      assert.strictEqual(done.counts.succeeded + done.counts.failed, 41)
      assert.isTrue(done.counts.failed > 0, "errorRate 0.3 should fail some requests")
      assert.isNotNull(done.outputFileId)
      assert.isNotNull(done.errorFileId)

      // status polls send Cache-Control: no-cache
      const polls = exchanges.filter((x) => x.method === "GET" && x.path === `/v1/batches/${created.id}`)
      assert.isTrue(polls.length >= 2)
      for (const p of polls) assert.strictEqual(p.headers["cache-control"], "no-cache")

      const results = yield* collect(provider, done)
      const byId = new Map<string, BatchResult>(results.map((r) => [r.customId, r]))
      assert.strictEqual(results.length, 41)
      assert.strictEqual(byId.size, 41)
      const ok = results.filter((r) => r._tag === "Succeeded")
      const failed = results.filter((r) => r._tag === "Failed")
      assert.strictEqual(ok.length, done.counts.succeeded)
      assert.strictEqual(failed.length, done.counts.failed)
      for (const r of ok) {
        assert.isNotNull(r.usage)
        assert.isTrue(r.usage!.inputTokens > 0)
        if (Number(r.customId.split("-")[1]) % 2 === 0) {
          const parsed = JSON.parse(r.text) as { sentiment: string }
          assert.include(["positive", "negative"], parsed.sentiment)
        }
      }
      const badResult = byId.get("row-bad")!
      assert.strictEqual(badResult._tag, "Failed")
      if (badResult._tag === "Failed") {
        assert.strictEqual(badResult.failure, "permanent")
        assert.strictEqual(badResult.status, 400)
      }
      const serverErrors = failed.filter((r) => r.customId !== "row-bad")
      assert.isTrue(serverErrors.length > 0)
      for (const r of serverErrors) {
        assert.deepInclude(r, { failure: "retryable", status: 500 })
      }

      // the batch is listed (orphan adoption) with its metadata
      const listed = yield* Stream.runCollect(provider.list.pipe(Stream.filter((b) => b.id === created.id)))
      assert.deepStrictEqual(Chunk.toReadonlyArray(listed).map((b) => b.metadata), [metadata])
      assert.deepStrictEqual((yield* ledger).batches.map((b) => b.id), [created.id])

      // the staged input can be deleted, twice (idempotent)
      yield* provider.deleteStaged(staged.inputRef)
      yield* provider.deleteStaged(staged.inputRef)
      assert.isTrue(Option.isNone(yield* provider.findStaged("run-1-shard-0-attempt-0")))
    }))

  it.scopedLive("embeddings batch: vectors as JSON text", () =>
    Effect.gen(function*() {
      const { advance, provider } = yield* setup({ requestsPerSecond: 5000 })
      const dir = yield* tmpDir
      const path = writeShard(dir, provider, [
        ["e-1", { _tag: "embeddings", model: "text-embedding-3-small", input: "hello", params: {} }],
        ["e-2", { _tag: "embeddings", model: "text-embedding-3-small", input: "world", params: {} }]
      ])
      const staged = yield* provider.stage(path, "emb.jsonl")
      const created = yield* provider.create({ inputRef: staged.inputRef, path, endpoint: "embeddings", metadata: {} })
      const done = yield* waitFor(provider, created.id, advance)
      assert.strictEqual(done.status, "completed")
      const results = yield* collect(provider, done)
      assert.deepStrictEqual(results.map((r) => r._tag).sort(), ["Succeeded", "Succeeded"])
      for (const r of results) {
        if (r._tag !== "Succeeded") continue
        const vector = JSON.parse(r.text) as Array<number>
        assert.isTrue(Array.isArray(vector) && vector.length > 0 && typeof vector[0] === "number")
        assert.isTrue(r.usage!.inputTokens > 0)
      }
    }))

  it.scopedLive("list paginates newest first across pages (page size 3, 8 batches)", () =>
    Effect.gen(function*() {
      const { exchanges, provider } = yield* setup({ requestsPerSecond: 5000 }, { listPageSize: 3 })
      const dir = yield* tmpDir
      const path = writeShard(dir, provider, [["a", chat(1, false)]])
      const staged = yield* provider.stage(path, "list-test")
      const ids: Array<string> = []
      for (let i = 0; i < 8; i++) {
        const b = yield* provider.create({ inputRef: staged.inputRef, path, endpoint: "chat", metadata: { i: String(i) } })
        ids.push(b.id)
        yield* Effect.sleep("5 millis")
      }
      const listed = Chunk.toReadonlyArray(yield* Stream.runCollect(provider.list)).map((b) => b.id)
      assert.deepStrictEqual(listed, [...ids].reverse())
      const pages = exchanges.filter((x) => x.method === "GET" && x.path === "/v1/batches")
      assert.strictEqual(pages.length, 3)
      // lazily: taking 2 reads one page
      const before = exchanges.length
      yield* Stream.runCollect(Stream.take(provider.list, 2))
      assert.strictEqual(exchanges.length - before, 1)
    }))

  it.scopedLive("cancel: cancelling -> cancelled, partial results, the rest marked cancelled", () =>
    Effect.gen(function*() {
      const { advance, provider } = yield* setup({ requestsPerSecond: 20 })
      const dir = yield* tmpDir
      const requests = Array.from({ length: 200 }, (_, i) => [`c-${i}`, chat(i, false)] as const)
      const path = writeShard(dir, provider, requests)
      const staged = yield* provider.stage(path, "cancel-test")
      const created = yield* provider.create({ inputRef: staged.inputRef, path, endpoint: "chat", metadata: {} })
      const running = yield* waitFor(provider, created.id, advance, (b) => b.status === "in_progress")
      assert.strictEqual(running.counts.succeeded, 0)
      yield* advance(300) // 6 of the 200 requests processed
      const cancelling = yield* provider.cancel(created.id)
      assert.strictEqual(cancelling.status, "cancelling")
      const done = yield* waitFor(provider, created.id, advance)
      assert.strictEqual(done.status, "cancelled")
      const results = yield* collect(provider, done)
      const classes = new Set(results.map((r) => (r._tag === "Succeeded" ? "ok" : r.failure)))
      assert.strictEqual(results.length, 200)
      assert.deepStrictEqual([...classes].sort(), ["cancelled", "ok"])
      assert.strictEqual(results.filter((r) => r._tag === "Succeeded").length, 6)
    }))

  it.scopedLive("expiry: unfinished requests come back as expired", () =>
    Effect.gen(function*() {
      const { advance, faults, provider } = yield* setup({ requestsPerSecond: 20 })
      const dir = yield* tmpDir
      const path = writeShard(dir, provider, Array.from({ length: 100 }, (_, i) => [`x-${i}`, chat(i, false)] as const))
      const staged = yield* provider.stage(path, "expire-test")
      const created = yield* provider.create({ inputRef: staged.inputRef, path, endpoint: "chat", metadata: {} })
      yield* advance(20 + 200) // validated, then 4 of the 100 requests processed
      yield* faults({ expireBatch: created.id })
      const done = yield* waitFor(provider, created.id, advance)
      assert.strictEqual(done.status, "expired")
      const results = yield* collect(provider, done)
      const expired = results.filter((r) => r._tag === "Failed" && r.failure === "expired")
      assert.strictEqual(expired.length, 96)
      for (const r of expired) assert.deepInclude(r, { code: "batch_expired" })
    }))

  it.scopedLive("a 429 on GET is retried after the advertised delay", () =>
    Effect.gen(function*() {
      const { exchanges, faults, provider } = yield* setup({ requestsPerSecond: 5000 })
      const dir = yield* tmpDir
      const path = writeShard(dir, provider, [["a", chat(1, false)]])
      const staged = yield* provider.stage(path, "rl-test")
      const created = yield* provider.create({ inputRef: staged.inputRef, path, endpoint: "chat", metadata: {} })
      yield* faults({ rateLimitRate: 1, retryAfterMs: 700 })
      const info = yield* provider.retrieve(created.id)
      yield* faults({ rateLimitRate: 0 })
      assert.strictEqual(info.id, created.id)
      const polls = exchanges.filter((x) => x.path === `/v1/batches/${created.id}`)
      assert.deepStrictEqual(polls.map((x) => x.status), [429, 200])
      assert.isAtLeast(polls[1]!.at - polls[0]!.at, 650)
    }))

  it.scopedLive("under 429s and 5xx, uploads (fresh body per attempt), polls and downloads still succeed", () =>
    Effect.gen(function*() {
      const { advance, exchanges, faults, provider } = yield* setup({ requestsPerSecond: 5000 }, { retry: { baseDelay: "10 millis" } })
      const dir = yield* tmpDir
      const path = writeShard(dir, provider, Array.from({ length: 30 }, (_, i) => [`f-${i}`, chat(i, false)] as const))
      // rate 1: every call is faulted, except the retry right after a faulted call
      yield* faults({ rateLimitRate: 1, retryAfterMs: 20 })
      const staged = yield* provider.stage(path, "faulty")
      yield* faults({ rateLimitRate: 0, serverErrorRate: 0 })
      // The emulator keeps an owed fault after a rate is set back to 0: let a retried call absorb it
      // before the (never retried) create.
      yield* Stream.runDrain(Stream.take(provider.list, 1))
      const created = yield* provider.create({ inputRef: staged.inputRef, path, endpoint: "chat", metadata: {} })
      yield* faults({ rateLimitRate: 0.5, serverErrorRate: 0.2, retryAfterMs: 20 })
      const done = yield* waitFor(provider, created.id, advance)
      yield* faults({ rateLimitRate: 0, serverErrorRate: 1 })
      const results = yield* collect(provider, done)
      yield* faults({ rateLimitRate: 0, serverErrorRate: 0 })
      assert.strictEqual(results.length, 30)
      assert.isTrue(results.every((r) => r._tag === "Succeeded"))
      const uploads = exchanges.filter((x) => x.method === "POST" && x.path === "/v1/files").map((x) => x.status)
      assert.isTrue(uploads.length >= 2 && uploads[uploads.length - 1] === 200, `uploads: ${uploads.join(",")}`)
      const downloads = exchanges.filter((x) => x.path.endsWith("/content")).map((x) => x.status)
      assert.isTrue(downloads.some((s) => s !== 200) && downloads[downloads.length - 1] === 200, `downloads: ${downloads.join(",")}`)
    }))

  it.scopedLive("create is not retried on a 500; nothing is created", () =>
    Effect.gen(function*() {
      const { exchanges, faults, ledger, provider } = yield* setup({ requestsPerSecond: 5000 })
      const dir = yield* tmpDir
      const path = writeShard(dir, provider, [["a", chat(1, false)]])
      const staged = yield* provider.stage(path, "create-500")
      yield* faults({ serverErrorRate: 1 })
      const exit = yield* Effect.exit(provider.create({ inputRef: staged.inputRef, path, endpoint: "chat", metadata: {} }))
      yield* faults({ serverErrorRate: 0 })
      const error = failureOf(exit)
      assert.strictEqual(error.reason, "Server")
      assert.isTrue(error.ambiguous)
      assert.strictEqual(exchanges.filter((x) => x.method === "POST" && x.path === "/v1/batches").length, 1)
      assert.deepStrictEqual((yield* ledger).batches, [])
    }))

  it.scopedLive("a wrong API key gives Unauthorized, and the key appears nowhere in the error", () =>
    Effect.gen(function*() {
      const wrongKey = "sk-wrong-0123456789abcdef"
      const { provider } = yield* setup({ apiKey: "sk-right-key-000000" }, { apiKey: Redacted.make(wrongKey) })
      const dir = yield* tmpDir
      const path = writeShard(dir, provider, [["a", chat(1, false)]])
      for (const exit of [
        yield* Effect.exit(provider.retrieve("batch_x")),
        yield* Effect.exit(provider.stage(path, "auth-test")),
        yield* Effect.exit(provider.create({ inputRef: "file-x", path, endpoint: "chat", metadata: {} }))
      ]) {
        const error = failureOf(exit)
        assert.instanceOf(error, ProviderError)
        assert.strictEqual(error.reason, "Unauthorized")
        assert.strictEqual(error.status, 401)
        for (const text of [error.message, String(error), JSON.stringify(error), error.stack ?? "", String(exit)]) {
          assert.notInclude(text, wrongKey)
          assert.notInclude(text, "sk-right-key")
        }
      }
    }))

  it.scopedLive("a refused connection is a Transport error after retries", () =>
    Effect.gen(function*() {
      const provider = yield* make({
        apiKey: Redacted.make("sk-x"),
        baseUrl: "http://127.0.0.1:9/v1",
        retry: { maxRetries: 1, baseDelay: "10 millis" }
      }).pipe(Effect.provideServiceEffect(HttpClient.HttpClient, undiciClient))
      const error = failureOf(yield* Effect.exit(provider.retrieve("batch_1")))
      assert.strictEqual(error.reason, "Transport")
      assert.strictEqual(error.operation, "GET /batches/batch_1")
      assert.notInclude(error.message, "sk-x")
    }))
})

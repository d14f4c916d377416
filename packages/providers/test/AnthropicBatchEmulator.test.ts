/**
 * The Anthropic provider over real HTTP (undici) against the emulator on 127.0.0.1: the
 * Message Batches API with both auth styles, and the Anthropic-shaped gateway path.
 */
import { HttpClient } from "@effect/platform"
import type { HttpClientResponse } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import type { BatchRequest, BatchResult } from "@sluice/core"
import { StructuredOutput } from "@sluice/core"
import { Chunk, ConfigProvider, Context, Effect, Either, Exit, Layer, Option, Redacted, Schema, Stream } from "effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import type { AnthropicBatchProvider, AnthropicConfig } from "../src/anthropic/AnthropicBatch.js"
import { gatewayConfig, make } from "../src/anthropic/AnthropicBatch.js"
import type { BatchInfo } from "../src/BatchProvider.js"
import { isTerminal, Providers } from "../src/BatchProvider.js"
import { scoped as emulatorScoped } from "@sluice/emulator"
import type { EmulatorOptions } from "@sluice/emulator"
import type { Ledger } from "@sluice/emulator/control"
import type { ProviderError } from "../src/ProviderError.js"
import * as Registry from "../src/Registry.js"

interface Exchange {
  readonly method: string
  readonly path: string
  readonly headers: Readonly<Record<string, string>>
  readonly status: number
}

/** An undici-backed client whose Agent lives as long as the test's scope. */
const undiciClient = Effect.map(Layer.build(NodeHttpClient.layerUndici), (ctx) => Context.get(ctx, HttpClient.HttpClient))

const API_KEY = "sk-ant-emulator-key"

/**
 * Starts an emulator and builds the provider over the undici client, recording every exchange.
 * The emulator's clock moves only when the test moves it (`advance`): every state is reached by
 * polling, never by waiting for wall-clock time.
 */
const setup = (options: EmulatorOptions, config: Partial<AnthropicConfig> = {}) =>
  Effect.gen(function*() {
    let now = Date.now()
    const advance = (ms: number) => Effect.sync(() => void (now += ms))
    const emulator = yield* emulatorScoped({ clock: () => now, finalizingMs: 20, cancellingMs: 50, apiKey: API_KEY, ...options })
    const exchanges: Array<Exchange> = []
    const undici = yield* undiciClient
    const recording = HttpClient.tap(undici, (response: HttpClientResponse.HttpClientResponse) =>
      Effect.sync(() => {
        exchanges.push({
          method: response.request.method,
          path: new URL(response.request.url).pathname,
          headers: { ...response.request.headers },
          status: response.status
        })
      })
    )
    const build = (c: Partial<AnthropicConfig>) =>
      make({ apiKey: Redacted.make(API_KEY), baseUrl: emulator.url, ...c }).pipe(
        Effect.provideService(HttpClient.HttpClient, recording)
      )
    const provider = yield* build(config)
    // The test API takes the emulator's key.
    const key = { authorization: `Bearer ${options.apiKey ?? API_KEY}` }
    const faults = (body: Record<string, unknown>) =>
      Effect.promise(() =>
        fetch(`${emulator.url}/_emulator/faults`, {
          method: "POST",
          headers: { ...key, "content-type": "application/json" },
          body: JSON.stringify(body)
        }).then((r) => r.json())
      )
    const ledger = Effect.promise(() => fetch(`${emulator.url}/_emulator/ledger`, { headers: key }).then((r) => r.json() as Promise<Ledger>))
    return { emulator, provider, build, exchanges, faults, ledger, advance, clockNow: () => now }
  })

const tmpDir = Effect.acquireRelease(
  Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-anthropic-e2e-"))),
  (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
)

/** Writes a shard file the way the runner does: one encoded line per request. */
const writeShard = (dir: string, provider: AnthropicBatchProvider, requests: ReadonlyArray<readonly [string, BatchRequest]>) => {
  const path = NodePath.join(dir, `shard-${Math.random().toString(36).slice(2)}.jsonl`)
  NodeFs.writeFileSync(path, requests.map(([id, r]) => provider.encode(r, id) + "\n").join(""))
  return path
}

const Label = Schema.Struct({
  sentiment: Schema.Literal("positive", "negative", "neutral"),
  topics: Schema.Array(Schema.String),
  stars: Schema.Int.pipe(Schema.between(1, 5))
})
const label = StructuredOutput.make("Label", Label)

const chat = (i: number, structured: boolean, model = "claude-haiku-4-5"): BatchRequest => ({
  _tag: "chat",
  model,
  messages: [{ role: "system", content: "Label the review." }, { role: "user", content: `review number ${i}` }],
  params: { temperature: 0 },
  ...(structured ? { output: label.format } : {})
})

const shardOf = (prefix: string, count: number, structured: (i: number) => boolean = (i) => i % 2 === 0) =>
  Array.from({ length: count }, (_, i) => [`${prefix}-${i}`, chat(i, structured(i))] as const)

/** Polls until the batch is terminal, moving the emulator's clock 10 ms after each poll that is not. */
const waitTerminal = (provider: AnthropicBatchProvider, id: string, advance: (ms: number) => Effect.Effect<void>) =>
  provider.retrieve(id).pipe(
    Effect.tap((b) => (isTerminal(b.status) ? Effect.void : advance(10))),
    Effect.repeat({ until: (b: BatchInfo) => isTerminal(b.status), times: 2000 }),
    Effect.filterOrFail((b) => isTerminal(b.status), (b) => new Error(`batch ${id} still ${b.rawStatus} after 2000 polls`))
  )

const collect = (provider: AnthropicBatchProvider, batch: BatchInfo) =>
  Stream.runCollect(provider.results(batch)).pipe(Effect.map((c) => Chunk.toReadonlyArray(c)))

const failureOf = (e: Exit.Exit<unknown, ProviderError>): ProviderError => {
  if (Exit.isSuccess(e) || e.cause._tag !== "Fail") throw new Error(`expected a ProviderError failure, got ${String(e)}`)
  return e.cause.error
}

const classes = (results: ReadonlyArray<BatchResult>) =>
  new Set(results.map((r) => (r._tag === "Succeeded" ? "ok" : r.failure)))

describe("AnthropicBatch against the emulator", () => {
  it.scopedLive("lifecycle: inline create, poll, results with an errored line, structured output decoded", () =>
    Effect.gen(function*() {
      const { advance, exchanges, provider, ledger } = yield* setup({ errorRate: 0.3, requestsPerSecond: 150 })
      const dir = yield* tmpDir
      // Anthropic refuses temperature > 1: an errored (permanent) line
      const bad = ["row-bad", { ...chat(99, false), params: { temperature: 5 } }] as const
      const path = writeShard(dir, provider, [...shardOf("row", 40), bad])

      const staged = yield* provider.stage(path, "run-1-shard-0")
      assert.strictEqual(staged.inputRef, path)
      assert.isTrue(Option.isNone(yield* provider.findStaged("run-1-shard-0")))

      const created = yield* provider.create({ inputRef: staged.inputRef, path, endpoint: "chat", metadata: { sluice_run: "r" } })
      assert.strictEqual(created.status, "in_progress")
      assert.strictEqual(created.rawStatus, "in_progress")
      assert.deepStrictEqual(created.counts, { total: 41, succeeded: 0, failed: 0 })
      assert.deepStrictEqual(created.metadata, {}) // Anthropic keeps no metadata
      assert.isNull(created.outputFileId)

      const done = yield* waitTerminal(provider, created.id, advance)
      assert.strictEqual(done.status, "completed")
      assert.strictEqual(done.rawStatus, "ended")
      assert.strictEqual(done.counts.total, 41)
      assert.isTrue(done.counts.failed >= 2, "errorRate 0.3 plus the bad line")
      assert.strictEqual(done.outputFileId, `${new URL(done.outputFileId!).origin}/v1/messages/batches/${created.id}/results`)

      // the create body was streamed with a content-length, as JSON; polls carry no-cache
      const post = exchanges.find((x) => x.method === "POST" && x.path === "/v1/messages/batches")!
      assert.strictEqual(post.headers["content-type"], "application/json")
      assert.strictEqual(post.headers["content-length"], String(NodeFs.statSync(path).size + 14))
      const polls = exchanges.filter((x) => x.method === "GET" && x.path === `/v1/messages/batches/${created.id}`)
      assert.isTrue(polls.length >= 1)
      for (const p of polls) assert.strictEqual(p.headers["cache-control"], "no-cache")
      for (const x of exchanges) {
        assert.strictEqual(x.headers["x-api-key"], API_KEY)
        assert.strictEqual(x.headers["anthropic-version"], "2023-06-01")
        assert.isUndefined(x.headers["authorization"])
      }

      const results = yield* collect(provider, done)
      const byId = new Map(results.map((r) => [r.customId, r]))
      assert.strictEqual(results.length, 41)
      assert.strictEqual(byId.size, 41)
      const ok = results.filter((r) => r._tag === "Succeeded")
      assert.strictEqual(ok.length, done.counts.succeeded)
      for (const r of ok) {
        assert.isTrue(r.usage!.inputTokens > 0 && r.usage!.outputTokens > 0)
        const i = Number(r.customId.split("-")[1])
        if (i % 2 === 0) {
          // the forced tool's input, as JSON text, decodes with the stage's Schema
          assert.strictEqual(r.finishReason, "tool_use")
          const decoded = label.decode(r.text)
          assert.isTrue(Either.isRight(decoded), Either.isLeft(decoded) ? decoded.left : "")
        } else {
          assert.strictEqual(r.finishReason, "end_turn")
          assert.match(r.text, /review number/)
        }
      }
      assert.deepInclude(byId.get("row-bad"), { _tag: "Failed", failure: "permanent", code: "invalid_request_error", status: 400 })
      const serverErrors = results.filter((r) => r._tag === "Failed" && r.customId !== "row-bad")
      assert.isTrue(serverErrors.length > 0)
      for (const r of serverErrors) assert.deepInclude(r, { failure: "retryable", code: "api_error", status: 500 })

      // resubmitting the retryable failures: they succeed (first-time faults)
      const retryPath = writeShard(
        dir,
        provider,
        serverErrors.map((r) => {
          const i = Number(r.customId.split("-")[1])
          return [r.customId, chat(i, i % 2 === 0)] as const
        })
      )
      const retried = yield* waitTerminal(provider, (yield* provider.create({ inputRef: retryPath, path: retryPath, endpoint: "chat", metadata: {} })).id, advance)
      assert.deepStrictEqual(retried.counts, { total: serverErrors.length, succeeded: serverErrors.length, failed: 0 })

      // the ledger lists both batches with their custom_ids, and the successes as deliveries
      const book = yield* ledger
      assert.deepStrictEqual(book.batches.map((b) => b.id), [created.id, retried.id])
      assert.deepStrictEqual([...book.batches[0]!.custom_ids].sort(), [...results.map((r) => r.customId)].sort())
      assert.strictEqual(book.deliveries.filter((d) => d.batch_id === created.id).length, ok.length)
      assert.deepStrictEqual(book.batches[0]!.metadata, {})
    }))

  it.scopedLive("expiry (expireBatch fault): status expired, unfinished requests fail as expired", () =>
    Effect.gen(function*() {
      const { advance, provider, faults } = yield* setup({ requestsPerSecond: 50 })
      const dir = yield* tmpDir
      const path = writeShard(dir, provider, shardOf("ex", 100))
      const created = yield* provider.create({ inputRef: path, path, endpoint: "chat", metadata: {} })
      yield* advance(300) // 15 of the 100 requests processed
      yield* faults({ expireBatch: created.id })
      const done = yield* waitTerminal(provider, created.id, advance)
      assert.strictEqual(done.status, "expired")
      assert.strictEqual(done.rawStatus, "ended")
      const results = yield* collect(provider, done)
      assert.strictEqual(results.length, 100)
      assert.deepStrictEqual([...classes(results)].sort(), ["expired", "ok"])
      const expired = results.filter((r) => r._tag === "Failed")
      assert.strictEqual(expired.length, done.counts.failed)
      assert.strictEqual(expired.length, 85)
      for (const r of expired) assert.deepInclude(r, { code: "expired", failure: "expired" })
    }))

  it.scopedLive("cancel: cancelling -> cancelled, partial results, the rest cancelled", () =>
    Effect.gen(function*() {
      const { advance, provider } = yield* setup({ requestsPerSecond: 50 })
      const dir = yield* tmpDir
      const path = writeShard(dir, provider, shardOf("c", 100))
      const created = yield* provider.create({ inputRef: path, path, endpoint: "chat", metadata: {} })
      yield* advance(300) // 15 of the 100 requests processed
      const cancelling = yield* provider.cancel(created.id)
      assert.strictEqual(cancelling.status, "cancelling")
      assert.strictEqual(cancelling.rawStatus, "canceling")
      const done = yield* waitTerminal(provider, created.id, advance)
      assert.strictEqual(done.status, "cancelled")
      const results = yield* collect(provider, done)
      assert.strictEqual(results.length, 100)
      assert.deepStrictEqual([...classes(results)].sort(), ["cancelled", "ok"])
      assert.strictEqual(results.filter((r) => r._tag === "Succeeded").length, 15)

      // deleting: refused while processing, then fine (and idempotent) once ended
      yield* provider.deleteBatch(done.id)
      yield* provider.deleteBatch(done.id)
      assert.strictEqual(failureOf(yield* Effect.exit(provider.retrieve(done.id))).reason, "NotFound")
      const live = yield* provider.create({ inputRef: path, path, endpoint: "chat", metadata: {} })
      const refused = failureOf(yield* Effect.exit(provider.deleteBatch(live.id)))
      assert.strictEqual(refused.reason, "Rejected")
      assert.match(refused.message, /still processing/)
    }))

  it.scopedLive("bearer auth with a newer anthropic-version; a wrong key is Unauthorized and never echoed", () =>
    Effect.gen(function*() {
      const { advance, provider, build, exchanges } = yield* setup({ requestsPerSecond: 5000 }, { auth: "bearer" })
      const dir = yield* tmpDir
      const path = writeShard(dir, provider, shardOf("b", 4))
      const done = yield* waitTerminal(provider, (yield* provider.create({ inputRef: path, path, endpoint: "chat", metadata: {} })).id, advance)
      assert.strictEqual(done.status, "completed")
      assert.strictEqual((yield* collect(provider, done)).filter((r) => r._tag === "Succeeded").length, 4)
      for (const x of exchanges) {
        assert.strictEqual(x.headers["authorization"], `Bearer ${API_KEY}`)
        assert.strictEqual(x.headers["anthropic-version"], "2026-10-21")
        assert.isUndefined(x.headers["x-api-key"])
      }
      const custom = yield* build({ auth: "bearer", version: "2027-01-01", betas: ["a-beta", "b-beta"] })
      yield* custom.retrieve(done.id)
      assert.strictEqual(exchanges[exchanges.length - 1]!.headers["anthropic-version"], "2027-01-01")
      assert.strictEqual(exchanges[exchanges.length - 1]!.headers["anthropic-beta"], "a-beta,b-beta")

      const wrong = yield* make({ apiKey: Redacted.make("sk-ant-wrong-key-123"), baseUrl: (yield* setup({})).emulator.url }).pipe(
        Effect.provideServiceEffect(HttpClient.HttpClient, undiciClient)
      )
      const error = failureOf(yield* Effect.exit(wrong.retrieve(done.id)))
      assert.strictEqual(error.reason, "Unauthorized")
      assert.strictEqual(error.status, 401)
      assert.notInclude(error.message, "sk-ant-wrong-key-123")
    }))

  it.scopedLive("an Anthropic-shaped gateway for other models: the batches path is configuration", () =>
    Effect.gen(function*() {
      const { advance, emulator, provider: native, build, exchanges, ledger } = yield* setup({ requestsPerSecond: 5000 })
      const dir = yield* tmpDir
      const gateway = yield* build(
        gatewayConfig({ apiKey: Redacted.make(API_KEY), baseUrl: `${emulator.url}/anthropic-gateway` })
      )
      assert.strictEqual(gateway.name, "anthropic-gateway")
      const requests = Array.from({ length: 6 }, (_, i) => [`gw-${i}`, chat(i, i % 2 === 0, "gpt-4o-mini")] as const)
      const path = writeShard(dir, gateway, requests)
      const created = yield* gateway.create({ inputRef: path, path, endpoint: "chat", metadata: {} })
      const done = yield* waitTerminal(gateway, created.id, advance)
      assert.strictEqual(done.status, "completed")
      assert.strictEqual(done.outputFileId, `${emulator.url}/anthropic-gateway/v1/batches/${created.id}/results`)
      const results = yield* collect(gateway, done)
      assert.strictEqual(results.filter((r) => r._tag === "Succeeded").length, 6)
      for (const r of results) {
        if (r._tag === "Succeeded" && Number(r.customId.split("-")[1]) % 2 === 0) assert.isTrue(Either.isRight(label.decode(r.text)))
        if (r._tag === "Succeeded") assert.strictEqual((r.raw as any).result.message.model, "gpt-4o-mini")
      }
      const gatewayCalls = exchanges.filter((x) => x.path.startsWith("/anthropic-gateway/v1/batches"))
      assert.isTrue(gatewayCalls.length >= 3)
      for (const x of gatewayCalls) assert.strictEqual(x.headers["authorization"], `Bearer ${API_KEY}`)

      // the same thing with the prefix in the path instead of the base URL
      const viaPath = yield* build({ auth: "bearer", batchesPath: "/anthropic-gateway/v1/batches" })
      const listed = Chunk.toReadonlyArray(yield* Stream.runCollect(viaPath.list)).map((b) => b.id)
      assert.deepStrictEqual(listed, [created.id])
      assert.strictEqual((yield* collect(viaPath, yield* viaPath.retrieve(created.id))).length, 6)
      // the gateway's batches are its own: the Message Batches API does not list them
      assert.isFalse(Chunk.toReadonlyArray(yield* Stream.runCollect(native.list)).some((b) => b.id === created.id))
      assert.strictEqual((yield* ledger).batches.find((b) => b.id === created.id)!.api, "anthropic-gateway")
    }))

  it.scopedLive("list: newest first, lazily paginated with after_id (page size 2, 5 batches)", () =>
    Effect.gen(function*() {
      const { exchanges, provider } = yield* setup({ requestsPerSecond: 5000 }, { listPageSize: 2 })
      const dir = yield* tmpDir
      const path = writeShard(dir, provider, shardOf("l", 1))
      const ids: Array<string> = []
      for (let i = 0; i < 5; i++) ids.push((yield* provider.create({ inputRef: path, path, endpoint: "chat", metadata: {} })).id)
      const listed = Chunk.toReadonlyArray(yield* Stream.runCollect(provider.list)).map((b) => b.id)
      assert.deepStrictEqual(listed, [...ids].reverse())
      const pages = exchanges.filter((x) => x.method === "GET" && x.path === "/v1/messages/batches")
      assert.strictEqual(pages.length, 3)
      for (const p of pages) assert.strictEqual(p.headers["cache-control"], "no-cache")
      const before = exchanges.length
      yield* Stream.runCollect(Stream.take(provider.list, 2))
      assert.strictEqual(exchanges.length - before, 1)
    }))

  it.scopedLive("rate limits and server errors on polls, lists and downloads are retried; create is not", () =>
    Effect.gen(function*() {
      const { advance, provider, faults, exchanges } = yield* setup({ requestsPerSecond: 50 }, { retry: { baseDelay: "5 millis" } })
      const dir = yield* tmpDir
      const path = writeShard(dir, provider, shardOf("rl", 10))
      const created = yield* provider.create({ inputRef: path, path, endpoint: "chat", metadata: {} })
      yield* faults({ rateLimitRate: 0.4, serverErrorRate: 0.3, retryAfterMs: 10 })
      const done = yield* waitTerminal(provider, created.id, advance)
      assert.strictEqual((yield* collect(provider, done)).length, 10)
      assert.strictEqual(Chunk.size(yield* Stream.runCollect(provider.list)), 1)
      assert.isTrue(exchanges.some((x) => x.status === 429) && exchanges.some((x) => x.status >= 500))

      yield* faults({ rateLimitRate: 1, serverErrorRate: 0 })
      const limited = failureOf(yield* Effect.exit(provider.create({ inputRef: path, path, endpoint: "chat", metadata: {} })))
      assert.strictEqual(limited.reason, "RateLimited")
      assert.strictEqual(limited.retryAfterMs, 10)
      assert.strictEqual(exchanges.filter((x) => x.method === "POST" && x.status === 429).length, 1)
    }))

  it.scopedLive("orphans without metadata: a lost create is found by time, count and (once ended) custom_ids", () =>
    Effect.gen(function*() {
      // both 20-request batches are still running at the first search: the clock has not moved
      const { advance, clockNow, provider, faults } = yield* setup({ requestsPerSecond: 15 })
      const dir = yield* tmpDir
      // two shards of the same size: the count alone cannot tell them apart
      const pathA = writeShard(dir, provider, shardOf("a", 20))
      const pathB = writeShard(dir, provider, shardOf("b", 20))
      const pathC = writeShard(dir, provider, shardOf("c", 7))
      const intentAt = Math.floor(clockNow() / 1000)
      const b = yield* provider.create({ inputRef: pathB, path: pathB, endpoint: "chat", metadata: {} })
      yield* provider.create({ inputRef: pathC, path: pathC, endpoint: "chat", metadata: {} })
      // the create of shard A takes effect, but its answer is lost
      yield* faults({ resetRate: 1 })
      const lost = failureOf(yield* Effect.exit(provider.create({ inputRef: pathA, path: pathA, endpoint: "chat", metadata: {} })))
      yield* faults({ resetRate: 0 })
      assert.isTrue(lost.ambiguous, `expected an ambiguous failure, got ${lost.reason}`)

      // while in progress: both 20-request batches are plausible, none is proven
      const early = yield* provider.findOrphan({ path: pathA, intentAt })
      assert.isTrue(Option.isNone(early.adopt))
      assert.strictEqual(early.undecided.length, 2)
      // batches journaled for other shards are excluded
      const excluding = yield* provider.findOrphan({ path: pathA, intentAt, exclude: new Set([b.id]) })
      assert.strictEqual(excluding.undecided.length, 1)
      const orphanId = excluding.undecided[0]!.id

      yield* waitTerminal(provider, orphanId, advance)
      yield* waitTerminal(provider, b.id, advance)
      const found = yield* provider.findOrphan({ path: pathA, intentAt })
      assert.strictEqual(Option.getOrThrow(found.adopt).id, orphanId)
      assert.deepStrictEqual(found.undecided, [])
      assert.strictEqual(yield* provider.matchShard(yield* provider.retrieve(b.id), { path: pathA, intentAt }), "mismatch")
      assert.strictEqual(yield* provider.matchShard(yield* provider.retrieve(b.id), { path: pathB, intentAt }), "match")
      // created before the intent (less skew): not ours
      assert.strictEqual(
        yield* provider.matchShard(yield* provider.retrieve(orphanId), { path: pathA, intentAt: intentAt + 3600 }),
        "mismatch"
      )
    }))

  it.scopedLive("a large shard is streamed as the create body (5,000 requests)", () =>
    Effect.gen(function*() {
      const { advance, provider, exchanges } = yield* setup({ requestsPerSecond: Infinity })
      const dir = yield* tmpDir
      const path = writeShard(dir, provider, shardOf("big", 5000, () => false))
      const created = yield* provider.create({ inputRef: path, path, endpoint: "chat", metadata: {} })
      assert.strictEqual(created.counts.total, 5000)
      const post = exchanges.find((x) => x.method === "POST")!
      assert.strictEqual(post.headers["content-length"], String(NodeFs.statSync(path).size + 14))
      const done = yield* waitTerminal(provider, created.id, advance)
      assert.strictEqual(done.counts.succeeded, 5000)
      assert.strictEqual((yield* collect(provider, done)).length, 5000)
    }))

  it.scopedLive("the registry builds `anthropic` from ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL", () =>
    Effect.gen(function*() {
      const { emulator } = yield* setup({ requestsPerSecond: 5000 })
      const client = yield* undiciClient
      const withEnv = (env: Record<string, string>) =>
        Effect.gen(function*() {
          const providers = yield* Providers
          return yield* Effect.exit(providers.get("anthropic"))
        }).pipe(
          Effect.provide(Registry.layerFromEnv()),
          Effect.provideService(HttpClient.HttpClient, client),
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))
        )
      const configured = yield* withEnv({ ANTHROPIC_API_KEY: API_KEY, ANTHROPIC_BASE_URL: emulator.url })
      assert.isTrue(Exit.isSuccess(configured))
      if (Exit.isSuccess(configured)) {
        assert.strictEqual(configured.value.name, "anthropic")
        assert.isFalse(configured.value.capabilities.metadata)
        assert.strictEqual(Chunk.size(yield* Stream.runCollect(configured.value.list)), 0)
      }
      const missing = yield* withEnv({})
      assert.isTrue(Exit.isFailure(missing))
      if (Exit.isFailure(missing) && missing.cause._tag === "Fail") {
        assert.strictEqual(missing.cause.error._tag, "ProviderConfigError")
        assert.include(missing.cause.error.message, "ANTHROPIC_API_KEY is not set")
      }
    }))
})

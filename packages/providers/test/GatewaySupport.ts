/**
 * Shared by the Azure and gateway lifecycle tests: an emulator behind a recording proxy (what
 * the server received: method, path with query, headers), and one lifecycle that every
 * OpenAI-compatible configuration must pass over real HTTP — a completed batch with errored
 * lines, an expired batch and a cancelled one. The emulator's clock moves only when the test
 * moves it: every state is reached by polling, never by waiting for wall-clock time.
 */
import { HttpClient } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { assert } from "@effect/vitest"
import type { BatchRequest, BatchResult } from "@sluice/core"
import { Chunk, Context, Effect, Layer, Stream } from "effect"
import * as NodeFs from "node:fs"
import { createServer, request as httpRequest } from "node:http"
import type { AddressInfo } from "node:net"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import type { BatchInfo, BatchProvider } from "../src/BatchProvider.js"
import { isTerminal } from "../src/BatchProvider.js"
import type { EmulatorOptions } from "@sluice/emulator"
import { scoped as emulatorScoped } from "@sluice/emulator"
import type { OpenAiConfig } from "../src/openai/OpenAiBatch.js"
import { make } from "../src/openai/OpenAiBatch.js"

export interface Seen {
  readonly method: string
  /** Path and query as received. */
  readonly url: string
  readonly path: string
  readonly query: URLSearchParams
  readonly headers: Readonly<Record<string, string | Array<string> | undefined>>
}

/** A forwarding HTTP proxy in front of `target` that records every request it receives. */
export const recordingProxy = (target: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const seen: Array<Seen> = []
      const server = createServer((req, res) => {
        const url = new URL(req.url ?? "/", "http://proxy.invalid")
        seen.push({
          method: req.method ?? "GET",
          url: req.url ?? "/",
          path: url.pathname,
          query: url.searchParams,
          headers: { ...req.headers }
        })
        const upstream = httpRequest(`${target}${req.url ?? "/"}`, { method: req.method, headers: req.headers }, (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers)
          answer.pipe(res)
        })
        upstream.on("error", () => res.destroy())
        req.pipe(upstream)
      })
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
      const { port } = server.address() as AddressInfo
      const close = () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve())
          server.closeAllConnections()
        })
      return { url: `http://127.0.0.1:${port}`, seen, close }
    }),
    (proxy) => Effect.promise(() => proxy.close())
  )

/** An undici-backed client whose Agent lives as long as the test's scope. */
export const undiciClient = Effect.map(
  Layer.build(NodeHttpClient.layerUndici),
  (ctx) => Context.get(ctx, HttpClient.HttpClient)
)

/**
 * Model names the gateway suites use besides the emulator's defaults: an Azure deployment and
 * a gateway's alias, which their owners name freely (the emulator refuses unknown models).
 */
export const deploymentNames: ReadonlyArray<string> = ["default", "gpt-4o-mini-batch", "my-gpt4o-global-batch"]

/** What a lifecycle test steers the emulator with: its faults, and its clock. */
export interface Steer {
  readonly faults: (body: Record<string, unknown>) => Effect.Effect<unknown>
  /** Moves the emulator's clock forward. */
  readonly advance: (ms: number) => Effect.Effect<void>
}

/** An emulator (fast lifecycle, on a clock the test moves with `advance`) behind a recording proxy. */
export const emulatorBehindProxy = (options: EmulatorOptions = {}) =>
  Effect.gen(function*() {
    let now = Date.now()
    const advance = (ms: number) => Effect.sync(() => void (now += ms))
    const emulator = yield* emulatorScoped({
      clock: () => now,
      validatingMs: 20,
      finalizingMs: 20,
      cancellingMs: 50,
      models: deploymentNames,
      ...options
    })
    const proxy = yield* recordingProxy(emulator.url)
    const faults = (body: Record<string, unknown>) =>
      Effect.promise(() =>
        fetch(`${emulator.url}/_emulator/faults`, {
          method: "POST",
          // The test API takes the emulator's key, when it has one.
          headers: { ...(options.apiKey === undefined ? {} : { authorization: `Bearer ${options.apiKey}` }), "content-type": "application/json" },
          body: JSON.stringify(body)
        }).then(async (r) => {
          if (!r.ok) throw new Error(`faults: ${r.status} ${await r.text()}`)
          return r.json() as Promise<Record<string, unknown>>
        })
      )
    return { emulator, proxy, faults, advance }
  })

/** Builds the OpenAI provider from a configuration over undici. */
export const provider = (config: OpenAiConfig) =>
  Effect.flatMap(undiciClient, (client) => make(config).pipe(Effect.provideService(HttpClient.HttpClient, client)))

export const tmpDir = Effect.acquireRelease(
  Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-gw-e2e-"))),
  (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
)

/** Writes a shard file the way the runner does: one encoded line per request. */
export const writeShard = (
  dir: string,
  p: BatchProvider,
  requests: ReadonlyArray<readonly [string, BatchRequest]>
): string => {
  const path = NodePath.join(dir, `shard-${Math.random().toString(36).slice(2)}.jsonl`)
  NodeFs.writeFileSync(path, requests.map(([id, r]) => p.encode(r, id) + "\n").join(""))
  return path
}

export const chat = (i: number, model = "gpt-4o-mini-batch"): BatchRequest => ({
  _tag: "chat",
  model,
  messages: [{ role: "system", content: "Label the review." }, { role: "user", content: `review number ${i}` }],
  params: { temperature: 0 },
  output: {
    name: "Label",
    schema: {
      type: "object",
      properties: { sentiment: { type: "string", enum: ["positive", "negative"] } },
      required: ["sentiment"],
      additionalProperties: false
    }
  }
})

/** Polls until `done` (default: terminal), moving the emulator's clock 10 ms after each poll that is not. */
export const waitFor = (
  p: BatchProvider,
  id: string,
  advance: Steer["advance"],
  done: (b: BatchInfo) => boolean = (b) => isTerminal(b.status)
) =>
  p.retrieve(id).pipe(
    Effect.tap((b) => (done(b) ? Effect.void : advance(10))),
    Effect.repeat({ until: done, times: 2000 }),
    Effect.filterOrFail(done, (b) => new Error(`batch ${id} still ${b.rawStatus} after 2000 polls`))
  )

export const collect = (p: BatchProvider, batch: BatchInfo) =>
  Stream.runCollect(p.results(batch)).pipe(Effect.map((c) => Chunk.toReadonlyArray(c)))

export interface LifecycleReport {
  readonly completed: BatchInfo
  /** A batch without failures: no error file. */
  readonly clean: BatchInfo
  readonly expired: BatchInfo
  readonly cancelled: BatchInfo
  /** Every raw status seen, in order. */
  readonly rawStatuses: ReadonlyArray<string>
}

/**
 * The lifecycle every configuration passes: stage (found again by name), create with
 * metadata, poll, results with errored lines (emulator `errorRate`) and a rejected request; a
 * clean batch (no error file); an expired batch (`expireBatch`); a cancelled batch. Needs an
 * emulator started with `errorRate` > 0 and on a clock the test moves (emulatorBehindProxy).
 */
export const lifecycle = (
  p: BatchProvider,
  { advance, faults }: Steer,
  options: { readonly model?: string; readonly tag?: string } = {}
) =>
  Effect.gen(function*() {
    const dir = yield* tmpDir
    const model = options.model ?? "gpt-4o-mini-batch"
    const tag = options.tag ?? p.name
    const raw: Array<string> = []
    const track = (b: BatchInfo) => {
      if (raw[raw.length - 1] !== b.rawStatus) raw.push(b.rawStatus)
      return b
    }
    const poll = (id: string, done?: (b: BatchInfo) => boolean) =>
      waitFor({ ...p, retrieve: (batchId) => Effect.map(p.retrieve(batchId), track) }, id, advance, done)

    // 1. Completed, with errored lines (500s from errorRate) and a rejected request (400).
    const requests = Array.from({ length: 30 }, (_, i) => [`${tag}-ok-${i}`, chat(i, model)] as const)
    const bad = [`${tag}-bad`, { ...chat(99, model), messages: [] }] as const
    const path = writeShard(dir, p, [...requests, bad])
    const staged = yield* p.stage(path, `${tag}-shard-0`)
    const found = yield* p.findStaged(`${tag}-shard-0`)
    assert.deepStrictEqual(found._tag === "Some" ? found.value : undefined, staged)
    const metadata = { sluice_run: `${tag}-run`, sluice_shard: "0" }
    const created = yield* p.create({ inputRef: staged.inputRef, path, endpoint: "chat", metadata })
    assert.strictEqual(created.status, "validating")
    const completed = yield* poll(created.id)
    assert.strictEqual(completed.status, "completed")
    assert.strictEqual(completed.counts.total, 31)
    assert.isTrue(completed.counts.failed > 0, "errorRate should fail some requests")
    assert.isNotNull(completed.outputFileId)
    assert.isNotNull(completed.errorFileId)
    const results = yield* collect(p, completed)
    assert.strictEqual(results.length, 31)
    const byId = new Map<string, BatchResult>(results.map((r) => [r.customId, r]))
    assert.strictEqual(byId.size, 31)
    const failed = results.filter((r) => r._tag === "Failed")
    assert.strictEqual(failed.length, completed.counts.failed)
    assert.deepInclude(byId.get(`${tag}-bad`)!, { _tag: "Failed", failure: "permanent", status: 400 })
    const errored = failed.filter((r) => r.customId !== `${tag}-bad`)
    assert.isTrue(errored.length > 0)
    for (const r of errored) assert.deepInclude(r, { failure: "retryable", status: 500 })
    for (const r of results) {
      if (r._tag === "Succeeded") assert.include(["positive", "negative"], (JSON.parse(r.text) as { sentiment: string }).sentiment)
    }

    // 2. A clean batch: no failures, no error file (Azure sends "" for it).
    yield* faults({ errorRate: 0 })
    const cleanPath = writeShard(dir, p, [[`${tag}-clean-0`, chat(1, model)], [`${tag}-clean-1`, chat(2, model)]])
    const cleanStaged = yield* p.stage(cleanPath, `${tag}-shard-1`)
    const cleanCreated = yield* p.create({ inputRef: cleanStaged.inputRef, path: cleanPath, endpoint: "chat", metadata: {} })
    const clean = yield* poll(cleanCreated.id)
    assert.strictEqual(clean.status, "completed")
    assert.isNull(clean.errorFileId)
    assert.deepStrictEqual((yield* collect(p, clean)).map((r) => r._tag), ["Succeeded", "Succeeded"])

    // 3. Expired: the unfinished requests come back as `expired`.
    yield* faults({ requestsPerSecond: 20 })
    const slow = Array.from({ length: 100 }, (_, i) => [`${tag}-x-${i}`, chat(i, model)] as const)
    const expirePath = writeShard(dir, p, slow)
    const expireStaged = yield* p.stage(expirePath, `${tag}-shard-2`)
    const toExpire = yield* p.create({ inputRef: expireStaged.inputRef, path: expirePath, endpoint: "chat", metadata: {} })
    yield* poll(toExpire.id, (b) => b.status === "in_progress")
    yield* advance(150) // 3 of the 100 requests processed
    yield* faults({ expireBatch: toExpire.id })
    const expired = yield* poll(toExpire.id)
    assert.strictEqual(expired.status, "expired")
    const expiredResults = yield* collect(p, expired)
    const expiredLines = expiredResults.filter((r) => r._tag === "Failed" && r.failure === "expired")
    assert.strictEqual(expiredLines.length, 97)
    assert.strictEqual(expiredResults.filter((r) => r._tag === "Succeeded").length, 3)
    for (const r of expiredLines) assert.deepInclude(r, { code: "batch_expired" })

    // 4. Cancelled: cancelling -> cancelled, the rest marked cancelled.
    const cancelPath = writeShard(dir, p, slow.map(([id, r]) => [id.replace("-x-", "-c-"), r] as const))
    const cancelStaged = yield* p.stage(cancelPath, `${tag}-shard-3`)
    const toCancel = yield* p.create({ inputRef: cancelStaged.inputRef, path: cancelPath, endpoint: "chat", metadata: {} })
    yield* poll(toCancel.id, (b) => b.status === "in_progress")
    yield* advance(150) // 3 of the 100 requests processed
    const cancelling = track(yield* p.cancel(toCancel.id))
    assert.strictEqual(cancelling.status, "cancelling")
    const cancelled = yield* poll(toCancel.id)
    assert.strictEqual(cancelled.status, "cancelled")
    const cancelledResults = yield* collect(p, cancelled)
    assert.strictEqual(cancelledResults.filter((r) => r._tag === "Failed" && r.failure === "cancelled").length, 97)
    assert.strictEqual(cancelledResults.filter((r) => r._tag === "Succeeded").length, 3)
    yield* faults({ requestsPerSecond: 1000 })

    // The batches are listed (newest first), metadata kept where the service keeps it.
    const listed = Chunk.toReadonlyArray(yield* Stream.runCollect(p.list))
    assert.deepStrictEqual(listed.map((b) => b.id), [toCancel.id, toExpire.id, cleanCreated.id, created.id])
    if (p.capabilities.metadata) assert.deepStrictEqual(listed[3]!.metadata, metadata)

    return { completed, clean, expired, cancelled, rawStatuses: raw } satisfies LifecycleReport
  })

/** Header value as a string (node gives arrays for repeated headers). */
export const header = (seen: Seen, name: string): string | undefined => {
  const value = seen.headers[name]
  return Array.isArray(value) ? value.join(", ") : value
}

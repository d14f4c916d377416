/**
 * Running a planned shard online: each of its lines — the request exactly as a batch would
 * upload it — goes to the provider's real-time endpoint, paced by the provider's limiter, and
 * each answer, classified like a batch result line, is appended to the shard's online file
 * (`shards/<shard>.online.jsonl`). When every line has its answer the shard is journaled
 * terminal, and the Collector takes it from that file as it takes a batch's results: parsing,
 * repair, the cache, the sink, retries and costs are the batch path's.
 *
 * Crash safety: an answer counts once it is durable in the online file. Answers are appended
 * and fsynced in small groups (whatever arrived while the last fsync ran), and a request's
 * slot is freed only after its answer is synced, so the requests "sent and not durable" are
 * never more than the slots: after a SIGKILL, at most `--concurrency` requests are sent again.
 * A resume sends only the lines without an answer in the file.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import type { PlatformError } from "@effect/platform/Error"
import type { BatchResult } from "@sluice/core"
import type { BatchCounts, OnlineApi, ProviderError } from "@sluice/providers"
import { Chunk, Clock, Deferred, Effect, Exit, FiberSet, Queue, Schema, Stream } from "effect"
import * as Failpoint from "./internal/Failpoint.js"
import * as LineFile from "./internal/LineFile.js"
import { lines } from "./internal/lines.js"
import type { Limiter, Permit } from "./OnlineLimiter.js"
import type { RowLine } from "./Rows.js"
import { lineTokens } from "./RequestTokens.js"
import type { BatchContext, RunContext } from "./RunContext.js"
import type { ShardState } from "./RunState.js"
import * as Telemetry from "./Telemetry.js"

/** Attempts of one request within its shard; after them its row fails `retryable` and is rescheduled. */
export const maxAttempts = 8

/**
 * Attempts of a request that timed out: the provider may have produced (and billed) the
 * answer we never got, so a timeout is tried once more, not eight times.
 */
export const maxAttemptsAfterTimeout = 2

/** What the online shards of a run share. */
export interface OnlineRuntime {
  /** The limiter of a provider (by name): one per provider, shared by its shards. */
  readonly limiterOf: (provider: string) => Limiter
  /** Requests in flight across the run: the hard cap (`--concurrency` online). */
  readonly slots: Effect.Semaphore
  /** Output tokens assumed for a request that names no `max_tokens`. */
  readonly defaultOutputTokens: number
  /** Told how many of a shard's lines have their answer. */
  readonly progress?: ((shard: string, answered: number, total: number) => void) | undefined
}

export class OnlineFileError extends Schema.TaggedError<OnlineFileError>()("OnlineFileError", {
  path: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return `${this.path}: ${this.description}`
  }
}

/** The answers already in a shard's online file (complete lines only) and the file's committed length. */
const recover = (path: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const done = new Map<string, boolean>()
    if (!(yield* fs.exists(path))) return { done, length: 0 }
    const bytes = yield* fs.readFile(path)
    // A line counts once its newline is written: a torn tail (a crash mid-append) is dropped.
    const length = bytes.lastIndexOf(10) + 1
    const text = new TextDecoder().decode(bytes.subarray(0, length))
    let lineNo = 0
    for (const line of text.split("\n")) {
      lineNo++
      if (line === "") continue
      let result: BatchResult
      try {
        result = JSON.parse(line) as BatchResult
      } catch {
        return yield* new OnlineFileError({ path, description: `line ${lineNo} is not an answer sluice wrote (not JSON)` })
      }
      if (typeof result?.customId !== "string") {
        return yield* new OnlineFileError({ path, description: `line ${lineNo} is not an answer sluice wrote (no customId)` })
      }
      done.set(result.customId, (done.get(result.customId) ?? false) || result._tag === "Succeeded")
    }
    return { done, length }
  })

interface GroupCommit {
  /** Appends one line; done once it is fsynced. */
  readonly append: (text: string) => Effect.Effect<void, PlatformError>
}

/**
 * Appends lines and fsyncs them in groups: whatever was offered while the previous fsync ran
 * goes in the next one. Each caller waits for its own line's fsync.
 */
const groupCommit = (path: string, length: number) =>
  Effect.gen(function* () {
    const file = yield* LineFile.open(path, length)
    const queue = yield* Queue.unbounded<{ readonly text: string; readonly done: Deferred.Deferred<void, PlatformError> }>()
    yield* Effect.forkScoped(
      Effect.forever(
        Effect.gen(function* () {
          const group = Chunk.toReadonlyArray(yield* Queue.takeBetween(queue, 1, 512))
          for (const entry of group) file.append(entry.text)
          // Crash tests: the group is buffered, not yet written.
          Failpoint.hit("online-appended")
          const synced = yield* Effect.exit(file.sync)
          Failpoint.hit("online-synced")
          for (const entry of group) yield* Deferred.done(entry.done, Exit.asVoid(synced))
        })
      )
    )
    const commit: GroupCommit = {
      append: (text) =>
        Effect.flatMap(Deferred.make<void, PlatformError>(), (done) => Effect.zipRight(Queue.offer(queue, { text, done }), Deferred.await(done)))
    }
    return commit
  })

/** A row's result when its request kept failing in passing: rescheduled like a batch's retryable failure. */
const gaveUp = (customId: string, error: ProviderError, attempts: number): BatchResult => ({
  _tag: "Failed",
  customId,
  failure: "retryable",
  code: error.reason === "RateLimited" ? "rate_limited" : error.reason === "Server" ? "server_error" : error.reason.toLowerCase(),
  message: `${error.message} (after ${attempts} attempts online)`,
  status: error.status ?? null,
  raw: null
})

const usedTokens = (result: BatchResult): number | undefined =>
  result._tag === "Succeeded" && result.usage !== null ? result.usage.inputTokens + result.usage.outputTokens : undefined

/**
 * Brings an online shard (planned, or started before a crash) to terminal: every line sent
 * that has no answer in the online file yet. Fails with the provider's error when a request
 * fails in a way retrying cannot help (a rejected key, no credit, no such endpoint), after
 * the requests in flight have their answers written. `hybrid`: why a hybrid stage sends it
 * online (journaled with OnlineStarted).
 */
export const execute = (ctx: RunContext, shard: ShardState, runtime: OnlineRuntime, hybrid?: ShardState["hybrid"]) =>
  Effect.scoped(
    Effect.gen(function* () {
      const { provider } = ctx.stageOf(shard.stage)
      const online: OnlineApi | undefined = provider.online
      if (online === undefined) return yield* Effect.dieMessage(`provider ${provider.name} cannot answer online`)
      if (shard.phase === "planned") {
        const at = yield* Clock.currentTimeMillis
        yield* ctx.record({ _tag: "OnlineStarted", shard: shard.id, at, ...(hybrid === undefined || hybrid === null ? {} : { hybrid }) })
      }
      if (shard.phase !== "online") return

      const path = ctx.paths.onlineFile(shard.id)
      const { done, length } = yield* recover(path)
      const commit = yield* groupCommit(path, length)
      const limiter = runtime.limiterOf(provider.name)
      const total = shard.requests
      let answered = done.size
      let succeeded = [...done.values()].filter((ok) => ok).length
      runtime.progress?.(shard.id, answered, total)

      // What stops the shard: a failure retrying cannot help, or an answer that could not be written.
      let fatal: ProviderError | PlatformError | undefined
      let lastWarning = 0

      const acquire = (tokens: number) =>
        Effect.zipRight(runtime.slots.take(1), Effect.onInterrupt(limiter.acquire(tokens), () => runtime.slots.release(1)))
      const release = (permit: Permit) => Effect.zipRight(limiter.release(permit), runtime.slots.release(1))

      /** One row's request, until it has an answer (or its attempts run out, or the run must stop). */
      const settle = (customId: string, line: string, tokens: number, first: Permit) =>
        Effect.gen(function* () {
          let permit = first
          for (let attempt = 1; ; attempt++) {
            yield* Telemetry.onlineRequest(shard)
            const outcome = yield* Effect.either(online.send(line, customId))
            if (outcome._tag === "Right") {
              const { limits, result } = outcome.right
              Failpoint.hit("online-answered")
              yield* commit.append(JSON.stringify(result))
              yield* limiter.answered(permit, limits, usedTokens(result))
              yield* release(permit)
              answered++
              if (result._tag === "Succeeded") succeeded++
              runtime.progress?.(shard.id, answered, total)
              return
            }
            const error = outcome.left
            if (!error.retryable) {
              fatal ??= error
              return yield* release(permit)
            }
            const wait = yield* limiter.failed(permit, { throttled: error.reason === "RateLimited", waitMs: error.retryAfterMs, attempt, limits: error.rateLimits })
            yield* release(permit)
            if (attempt >= (error.reason === "Timeout" ? maxAttemptsAfterTimeout : maxAttempts)) {
              yield* commit.append(JSON.stringify(gaveUp(customId, error, attempt)))
              answered++
              runtime.progress?.(shard.id, answered, total)
              return
            }
            const now = yield* Clock.currentTimeMillis
            if (now - lastWarning >= 10_000) {
              lastWarning = now
              yield* Effect.logWarning(
                `${provider.name}: ${error.reason === "RateLimited" ? "rate-limited" : error.message}; ` +
                  `sending fewer requests at once (now ${limiter.state().window}) and retrying (shard ${shard.id})`
              )
            }
            yield* Effect.sleep(wait)
            if (fatal !== undefined) return
            permit = yield* acquire(tokens)
          }
        })

      const fibers = yield* FiberSet.make<void>()
      const rows = lines(ctx.paths.rowsFile(shard.id)).pipe(
        Stream.map((l) => JSON.parse(l) as RowLine),
        // Rows answered from the cache have no line in the shard file.
        Stream.filter((r) => r.c === undefined)
      )
      yield* Stream.zip(rows, lines(ctx.paths.shardFile(shard.id))).pipe(
        Stream.filter(([row]) => !done.has(row.id)),
        Stream.takeWhile(() => fatal === undefined),
        Stream.runForEach(([row, line]) =>
          Effect.gen(function* () {
            const tokens = lineTokens(shard.model, line, runtime.defaultOutputTokens)
            const permit = yield* acquire(tokens)
            if (fatal !== undefined) return yield* release(permit)
            yield* FiberSet.run(
              fibers,
              // An answer that cannot be written leaves the file's state unknown: the shard stops.
              settle(row.id, line, tokens, permit).pipe(Effect.catchAll((e) => Effect.sync(() => void (fatal ??= e))))
            )
          })
        )
      )
      yield* FiberSet.awaitEmpty(fibers)
      if (fatal !== undefined) return yield* Effect.fail(fatal)
      const counts: BatchCounts = { total, succeeded, failed: answered - succeeded }
      yield* ctx.record({ _tag: "OnlineCompleted", shard: shard.id, counts })
    })
  ).pipe(Telemetry.shardSpan("sluice.online", shard))

/**
 * Ends an online shard without sending the rest (a cancelled run): its unsent rows end
 * `cancelled`. Needs only the run directory and the journal (`sluice cancel` calls it from the
 * journal alone): the answers already in the online file are kept for the collection.
 */
export const cancel = (ctx: Pick<BatchContext, "paths" | "record">, shard: ShardState) =>
  Effect.gen(function* () {
    const { done } = yield* recover(ctx.paths.onlineFile(shard.id))
    const succeeded = [...done.values()].filter((ok) => ok).length
    yield* ctx.record({
      _tag: "OnlineCompleted",
      shard: shard.id,
      counts: { total: shard.requests, succeeded, failed: done.size - succeeded },
      cancelled: true
    })
  })

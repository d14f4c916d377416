/**
 * `sluice retry`: new shards from the rows that ended failed, replaying their identical
 * request lines from the original shard files. Only the chosen failure classes are taken
 * (permanent and sink_rejected failures only when asked for), and each row's attempts are capped.
 * Under a known enqueued-token limit (configured, or learned) the shards are cut by tokens too,
 * counted from the request lines (RequestTokens.wireTokens).
 */
import type { FailureClass } from "@sluice/core"
import { Effect, Exit, Scope, Stream } from "effect"
import { createHash } from "node:crypto"
import * as LineFile from "./internal/LineFile.js"
import { lines } from "./internal/lines.js"
import type { RunContext } from "./RunContext.js"
import { wireTokens } from "./RequestTokens.js"
import type { RunState } from "./RunState.js"

/**
 * Classes `retry` takes when none are named. Not `permanent` (the provider would reject the
 * request again) nor `sink_rejected` (the sink would refuse the same answer again; asking
 * again is paid again).
 */
export const defaultClasses: ReadonlyArray<FailureClass> = ["retryable", "expired", "cancelled", "missing", "parse"]

/** A row is not submitted more often than this, however many times it is retried. */
export const MAX_ATTEMPTS = 10

/**
 * True when a failures.jsonl line (at byte `at`) was resubmitted by an earlier retry: its
 * class was chosen and it was under the attempt cap.
 */
export const superseded = (
  state: RunState,
  at: number,
  line: {
    readonly custom_id: string | null
    readonly shard: string | null
    readonly class: string
    readonly attempt: number
    readonly cached?: boolean
  }
): boolean =>
  line.custom_id !== null &&
  line.shard !== null &&
  line.cached !== true &&
  line.attempt < MAX_ATTEMPTS &&
  state.retries.some((r) => at < r.failuresOffset && r.classes.includes(line.class))

interface FailureLine {
  readonly cached?: boolean
  readonly custom_id: string | null
  readonly shard: string | null
  readonly attempt: number
  readonly class: string
}

export interface RetryPlan {
  readonly rows: number
  readonly shards: number
  /** Rows left failed because they reached MAX_ATTEMPTS. */
  readonly overCap: number
}

/** Plans the retry shards and journals them in one event. */
export const plan = (ctx: RunContext, classes: ReadonlyArray<FailureClass>) =>
  Effect.gen(function* () {
    const { state, settings } = ctx
    const failuresOffset = state.offsets.failures
    const wanted = new Set<string>(classes)
    const selected = new Map<string, Map<string, { attempt: number; cls: string }>>() // shard -> custom_id -> failure
    const taken: Record<string, number> = {}
    let overCap = 0
    let position = 0
    yield* lines(ctx.paths.failures).pipe(
      Stream.runForEach((text) =>
        Effect.sync(() => {
          const at = position
          position += Buffer.byteLength(text) + 1
          if (at >= failuresOffset) return
          const f = JSON.parse(text) as FailureLine
          // A row answered from the cache has no request line to replay.
          if (f.custom_id === null || f.shard === null || f.cached === true || !wanted.has(f.class)) return
          if (superseded(state, at, f)) return
          if (f.attempt >= MAX_ATTEMPTS) {
            overCap++
            return
          }
          let ids = selected.get(f.shard)
          if (ids === undefined) selected.set(f.shard, (ids = new Map()))
          ids.set(f.custom_id, { attempt: f.attempt, cls: f.class })
        })
      )
    )
    if (selected.size === 0) return { rows: 0, shards: 0, overCap } satisfies RetryPlan
    const stageIndex = (shard: string) => ctx.stageOf(state.shards.get(shard)?.stage ?? ctx.stages[0]!.stage.name).index

    const round = state.retries.length + 1
    const planned: Array<{ shard: string; requests: number; bytes: number; sha256: string; attempt: number; stage: string; inputTokens?: number }> = []
    let current:
      | {
          id: string
          stage: string
          scope: Scope.CloseableScope
          requests: LineFile.LineFile
          rows: LineFile.LineFile
          hash: ReturnType<typeof createHash>
          count: number
          bytes: number
          tokens: number
          counted: boolean
          attempt: number
        }
      | undefined
    const close = Effect.gen(function* () {
      if (current === undefined) return
      const c = current
      current = undefined
      yield* c.requests.sync
      yield* c.rows.sync
      yield* Scope.close(c.scope, Exit.void)
      planned.push({
        shard: c.id,
        requests: c.count,
        bytes: c.bytes,
        sha256: c.hash.digest("hex"),
        attempt: c.attempt + 1,
        stage: c.stage,
        ...(c.counted ? { inputTokens: c.tokens } : {})
      })
    })
    // Shards of one stage after another: a retry shard holds one stage's rows (one model, one endpoint).
    const byStage = [...selected].sort(([a], [b]) => stageIndex(a) - stageIndex(b))
    for (const [source, ids] of byStage) {
      const rt = ctx.stageOf(state.shards.get(source)?.stage ?? ctx.stages[0]!.stage.name)
      const maxRequests = Math.max(1, Math.min(settings.shardSize, rt.provider.limits.maxRequests))
      const maxBytes = Math.min(settings.shardBytes, rt.provider.limits.maxBytes)
      // Online stages have no enqueued tokens to count.
      const tokenLimit = rt.mode === "online" ? undefined : ctx.enqueuedLimit?.(rt)
      if (current !== undefined && current.stage !== rt.stage.name) yield* close
      // Rows answered from the cache have no request line to replay.
      const rows = lines(ctx.paths.rowsFile(source)).pipe(
        Stream.map((text) => ({ text, row: JSON.parse(text) as { id: string; c?: 1 } })),
        Stream.filter(({ row }) => row.c === undefined),
        Stream.map(({ text, row }) => ({ text, id: row.id }))
      )
      yield* Stream.zip(rows, lines(ctx.paths.shardFile(source))).pipe(
        Stream.runForEach(([row, request]) =>
          Effect.gen(function* () {
            const failure = ids.get(row.id)
            if (failure === undefined) return
            const attempt = failure.attempt
            taken[failure.cls] = (taken[failure.cls] ?? 0) + 1
            const bytes = Buffer.byteLength(request) + 1
            const tokens = tokenLimit === undefined ? 0 : wireTokens(rt.stage.model, request)
            const overTokens = tokenLimit !== undefined && current !== undefined && current.tokens + tokens > tokenLimit
            if (current !== undefined && (current.count >= maxRequests || current.bytes + bytes > maxBytes || overTokens)) yield* close
            if (current === undefined) {
              const id = `${rt.stage.name}-r${round}-${String(planned.length + 1).padStart(5, "0")}`
              const scope = yield* Scope.make()
              current = {
                id,
                stage: rt.stage.name,
                scope,
                requests: yield* LineFile.open(ctx.paths.shardFile(id), 0).pipe(Scope.extend(scope)),
                rows: yield* LineFile.open(ctx.paths.rowsFile(id), 0).pipe(Scope.extend(scope)),
                hash: createHash("sha256"),
                count: 0,
                bytes: 0,
                tokens: 0,
                counted: tokenLimit !== undefined,
                attempt: 0
              }
            }
            current.count++
            current.bytes += bytes
            current.tokens += tokens
            current.attempt = Math.max(current.attempt, attempt)
            current.hash.update(request + "\n")
            yield* current.requests.line(request)
            yield* current.rows.line(row.text)
          })
        )
      )
    }
    yield* close
    const total = Object.values(taken).reduce((a, b) => a + b, 0)
    if (total === 0) return { rows: 0, shards: 0, overCap } satisfies RetryPlan
    yield* ctx.record({ _tag: "RetryPlanned", round, classes: [...classes], failuresOffset, taken, shards: planned })
    return { rows: total, shards: planned.length, overCap } satisfies RetryPlan
  })

/**
 * Collection: a finished shard's results are joined to its rows and written out. Every
 * row of the shard ends in exactly one place: the sink (succeeded), failures.jsonl (failed
 * for good), or a retry shard (rescheduled). Rows with no result line at all are `missing`
 * — providers drop lines — and are rescheduled like retryable failures.
 *
 * Memory is bounded by one shard: results are read into a map keyed by custom_id, then the
 * shard's row sidecar is streamed against it.
 */
import type { FileSystem } from "@effect/platform"
import type { BatchResult, FailureClass } from "@sluice/core"
import { Chunk, Effect, Exit, Scope, Stream } from "effect"
import { createHash } from "node:crypto"
import * as Failpoint from "./internal/Failpoint.js"
import * as LineFile from "./internal/LineFile.js"
import { lines } from "./internal/lines.js"
import * as Repair from "./Repair.js"
import type { TokenUsage } from "./JournalEvent.js"
import type { FailureRecord, Outputs } from "./Outputs.js"
import type { RunContext } from "./RunContext.js"
import type { ShardState } from "./RunState.js"

type Outcome =
  | { readonly ok: true; readonly output: unknown }
  | {
      readonly ok: false
      readonly failure: FailureClass
      readonly code: string
      readonly message: string
      /** For `parse` failures: the answer that did not decode, and why the model stopped. */
      readonly answer?: { readonly text: string; readonly finishReason: string | null }
    }

/** Failure classes the runner reschedules on its own, within the row's attempt budget. */
const automatic: ReadonlySet<FailureClass> = new Set(["retryable", "expired", "missing"])

interface RowLine {
  readonly id: string
  readonly key: string
  readonly loc: string
  readonly input: unknown
}

/** The id of the shard that retries `shard`'s failed rows. */
export const retryShardId = (shard: ShardState): string => `${shard.id.replace(/-a\d+$/, "")}-a${shard.attempt + 1}`

/** Classifies a whole shard that produced no results (rejected at create, or failed validation). */
const wholeShardFailure = (shard: ShardState): Outcome | undefined => {
  if (shard.phase === "rejected" && shard.rejection !== null) {
    return { ok: false, failure: shard.rejection.failure as FailureClass, code: "create_rejected", message: shard.rejection.message }
  }
  if (shard.status === "failed") {
    const text = shard.errors.join("; ") || "the provider failed the batch without saying why"
    // An enqueued-token limit clears as other batches finish: worth another attempt.
    const failure: FailureClass = /token_limit_exceeded/.test(text) ? "retryable" : "permanent"
    return { ok: false, failure, code: "batch_failed", message: text }
  }
  return undefined
}

/**
 * Collects one shard. With `reschedule` false (a cancelled run), rows that would be
 * rescheduled end failed instead, for `sluice retry` to pick up.
 */
export const collect = (ctx: RunContext, outputs: Outputs, shard: ShardState, reschedule = true) =>
  outputs.exclusive(
    Effect.gen(function* () {
      const { stage, provider } = ctx
      const outcomes = new Map<string, Outcome>()
      const usage: { -readonly [K in keyof TokenUsage]: number } = { input: 0, output: 0, cached: 0 }
      const whole = wholeShardFailure(shard)

      if (whole === undefined && shard.batchId !== null) {
        const info = yield* provider.retrieve(shard.batchId)
        // Rows are handled synchronously, chunk by chunk; Effects only for I/O.
        const record = (result: BatchResult): boolean => {
          const full = outputs.results.append(JSON.stringify({ shard: shard.id, attempt: shard.attempt, ...result }))
          const previous = outcomes.get(result.customId)
          if (previous !== undefined && previous.ok) return full // a duplicated line: the first success stands
          if (result._tag === "Succeeded") {
            if (result.usage !== null) {
              usage.input += result.usage.inputTokens
              usage.output += result.usage.outputTokens
              usage.cached += result.usage.cachedInputTokens
            }
            const decoded = stage.decode(result.text)
            outcomes.set(
              result.customId,
              decoded._tag === "Right"
                ? { ok: true, output: decoded.right }
                : {
                    ok: false,
                    failure: "parse",
                    code: result.finishReason === "length" ? "truncated" : "parse_error",
                    message: decoded.left,
                    answer: { text: result.text, finishReason: result.finishReason }
                  }
            )
          } else {
            outcomes.set(result.customId, { ok: false, failure: result.failure, code: result.code, message: result.message })
          }
          return full
        }
        yield* provider.results(info).pipe(
          Stream.runForEachChunk((chunk) => {
            let full = false
            for (const result of Chunk.toReadonlyArray(chunk)) full = record(result) || full
            return full ? outputs.results.flush : Effect.void
          })
        )
      }

      // Rescheduled rows go to a retry shard with their identical request lines. If a crash
      // hit after the retry shard was journaled, it exists already and is left as it is.
      const retryId = retryShardId(shard)
      const retryPlanned = ctx.state.shards.has(retryId)
      let retry: { scope: Scope.CloseableScope; requests: LineFile.LineFile; rows: LineFile.LineFile } | undefined
      const retryHash = createHash("sha256")
      let rescheduled = 0
      let retryBytes = 0
      let succeeded = 0
      const failed: Record<string, number> = {}
      let sinkBatch: Array<unknown> = []
      const flushSink = Effect.suspend(() => {
        if (sinkBatch.length === 0) return Effect.void
        const batch = sinkBatch
        sinkBatch = []
        return outputs.sink.write(batch)
      })

      const rows = lines(ctx.paths.rowsFile(shard.id)).pipe(Stream.map((l) => JSON.parse(l) as RowLine))
      const requests = lines(ctx.paths.shardFile(shard.id))
      /** One row; synchronous, returning an Effect only when there is I/O to do. */
      const settle = (row: RowLine, request: string): Effect.Effect<void, unknown, FileSystem.FileSystem> | undefined => {
        const outcome: Outcome = whole ??
          outcomes.get(row.id) ?? {
            ok: false,
            failure: "missing",
            code: "missing",
            message: `no result line for ${row.id} in batch ${shard.batchId ?? "?"}`
          }
        if (outcome.ok) {
          succeeded++
          sinkBatch.push({ key: row.key, customId: row.id, input: row.input, output: outcome.output })
          return sinkBatch.length >= 1000 ? flushSink : undefined
        }
        const repair =
          outcome.failure === "parse" && outcome.answer !== undefined && stage.repair
            ? Repair.request(stage, row, outcome.answer, outcome.message, provider)
            : undefined
        if (reschedule && (automatic.has(outcome.failure) || repair !== undefined) && shard.attempt < stage.maxAttempts) {
          rescheduled++
          if (retryPlanned) return undefined
          // A repair is a new request (and so a new custom_id); anything else is resent as it was.
          const line = repair?.line ?? request
          const rowLine = JSON.stringify(repair === undefined ? row : { ...row, id: repair.customId })
          const append = (r: NonNullable<typeof retry>) => {
            retryHash.update(line)
            retryHash.update("\n")
            retryBytes += Buffer.byteLength(line) + 1
            const full = r.requests.append(line)
            return r.rows.append(rowLine) || full ? Effect.zipRight(r.requests.flush, r.rows.flush) : undefined
          }
          if (retry !== undefined) return append(retry)
          return Effect.gen(function* () {
            const scope = yield* Scope.make()
            const opened = {
              scope,
              requests: yield* LineFile.open(ctx.paths.shardFile(retryId), 0).pipe(Scope.extend(scope)),
              rows: yield* LineFile.open(ctx.paths.rowsFile(retryId), 0).pipe(Scope.extend(scope))
            }
            retry = opened
            const pending = append(opened)
            if (pending !== undefined) yield* pending
          })
        }
        failed[outcome.failure] = (failed[outcome.failure] ?? 0) + 1
        const record: FailureRecord = {
          custom_id: row.id,
          key: row.key,
          shard: shard.id,
          attempt: shard.attempt,
          class: outcome.failure,
          code: outcome.code,
          message: outcome.message,
          location: row.loc
        }
        return outputs.failures.append(JSON.stringify(record)) ? outputs.failures.flush : undefined
      }
      yield* Stream.zip(rows, requests).pipe(
        Stream.runForEachChunk((chunk) =>
          Effect.gen(function* () {
            for (const [row, request] of Chunk.toReadonlyArray(chunk)) {
              const io = settle(row, request)
              if (io !== undefined) yield* io
            }
          })
        )
      )
      yield* flushSink
      Failpoint.hit("collect-before-commit")

      if (retry !== undefined) {
        yield* retry.requests.sync
        yield* retry.rows.sync
        yield* Scope.close(retry.scope, Exit.void)
        yield* ctx.record({
          _tag: "ShardPlanned",
          shard: retryId,
          stage: shard.stage,
          provider: shard.provider,
          model: shard.model,
          endpoint: shard.endpoint,
          requests: rescheduled,
          bytes: retryBytes,
          sha256: retryHash.digest("hex"),
          attempt: shard.attempt + 1,
          parent: shard.id,
          sourceOffset: null,
          invalid: 0,
          offsets: null,
          ...(shard.inputTokens === undefined ? {} : { inputTokens: Math.round((shard.inputTokens * rescheduled) / shard.requests) })
        })
      }
      const offsets = yield* outputs.commit
      yield* ctx.record({
        _tag: "Collected",
        shard: shard.id,
        succeeded,
        failed,
        rescheduled,
        retryShard: rescheduled > 0 ? retryId : null,
        usage,
        offsets
      })
      // A retry shard that existed already is driven by whoever found it open.
      return retry !== undefined ? retryId : null
    })
  )

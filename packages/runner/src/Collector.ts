/**
 * Collection: a finished shard's results are joined to its rows and written out. Every
 * row of the shard ends in exactly one place: the sink or the next stage's inbox
 * (succeeded), failures.jsonl (failed for good), or a retry shard (rescheduled). Rows with
 * no result line at all are `missing` — providers drop lines — and are rescheduled like
 * retryable failures. Every answer received is also stored in the response cache.
 *
 * A collection reads, then writes. Reading (no lock): the shard's results are downloaded and
 * parsed, their results.jsonl lines written to a file of the shard's own and their answers to
 * the response cache, and what each row got kept compactly (internal/ShardAnswers.ts). Writing
 * (holding the outputs): those lines are copied into results.jsonl, the row sidecar is streamed
 * against the answers (each decoded now), rows go to the sink, inboxes, failures or a retry
 * shard, and all is committed and journaled. One shard is read while another is written
 * (`Outputs.reading`): downloads overlap writes, and memory holds at most two shards' answers.
 * The shard's request file is read only when rows are resent.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import { Pipeline } from "@sluice/core"
import type { BatchResult, FailureClass } from "@sluice/core"
import { Cause, Chunk, Effect, Exit, Option, Scope, Stream } from "effect"
import { createHash } from "node:crypto"
import * as Failpoint from "./internal/Failpoint.js"
import * as LineFile from "./internal/LineFile.js"
import { lines } from "./internal/lines.js"
import { encodeFailed } from "./internal/resultLine.js"
import { ShardAnswers } from "./internal/ShardAnswers.js"
import * as Poller from "./Poller.js"
import * as Repair from "./Repair.js"
import { wireTokens } from "./RequestTokens.js"
import type { TokenUsage } from "./JournalEvent.js"
import type { FailureRecord, Outputs } from "./Outputs.js"
import type { InboxLine, RowLine } from "./Rows.js"
import * as ResponseCache from "./ResponseCache.js"
import type { RunContext } from "./RunContext.js"
import type { ShardState } from "./RunState.js"
import * as Telemetry from "./Telemetry.js"

/** A row's request line not read yet (see `settle`). */
const unread: unique symbol = Symbol("unread")

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

/**
 * The cache key of a row sidecar line (undefined for a row without a key, or answered from the
 * cache), read without parsing the row: the planner writes it last but the cached mark.
 */
const sidecarCacheKey = (line: string): string | undefined => {
  // `"ck":"<64 hex>"}` ends the line when the row has a key and no cached mark.
  const at = line.length - 72
  if (at < 0 || !line.startsWith(`"ck":"`, at) || !line.endsWith(`"}`)) return undefined
  const ck = line.slice(at + 6, at + 70)
  return /^[0-9a-f]{64}$/.test(ck) ? ck : undefined
}

/**
 * The custom_id of a row sidecar line: its first field, read without parsing the row when it
 * is written plainly (as the planner writes ids), else by parsing the line.
 */
const rowId = (line: string): string => {
  if (line.startsWith(`{"id":"`)) {
    const end = line.indexOf(`"`, 7)
    const id = line.slice(7, end)
    if (end !== -1 && !id.includes("\\")) return id
  }
  return (JSON.parse(line) as RowLine).id
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
 * rescheduled end failed instead, for `sluice retry` to pick up — as do the rows of a batch
 * that ended cancelled (`sluice cancel` journals that, and leaves the collection to `resume`).
 */
export const collect = (ctx: RunContext, outputs: Outputs, shard: ShardState, rescheduleFailed = true) =>
  Effect.scoped(
    Effect.gen(function* () {
      // Reading: held until this collection holds the outputs (or fails). Waiting for it can be
      // interrupted; once taken, it is given back whatever happens.
      let reading = true
      yield* Effect.uninterruptibleMask((restore) =>
        Effect.zipRight(
          restore(outputs.reading.take(1)),
          Effect.addFinalizer(() => (reading ? outputs.reading.release(1) : Effect.void))
        )
      )
      // A batch recalled at the deadline was cancelled by the run itself: its unfinished rows go on (online).
      const reschedule = rescheduleFailed && (shard.status !== "cancelled" || shard.recalled)
      const rt = ctx.stageOf(shard.stage)
      const { stage, provider } = rt
      const multiStage = ctx.stages.length > 1
      const next = rt.next === null ? undefined : outputs.inbox.get(rt.next)
      const answers = new ShardAnswers(shard.requests + shard.cachedRows)
      const usage: { -readonly [K in keyof TokenUsage]: number } = { input: 0, output: 0, cached: 0 }
      const whole = wholeShardFailure(shard)
      const caching = ctx.cache !== ResponseCache.disabled
      // The cache saves money on later runs; failing to write it must not fail this one.
      const flushCache = ctx.cache.flush.pipe(
        Effect.catchAll((e) => Effect.logWarning(`response cache not written: ${e.message}`))
      )
      // The custom_ids the shard sent, and (with the cache on) their cache keys, to store each
      // answer under its request's hash. A result naming another id is none of this shard's:
      // counted, never kept, never in usage or cost (a provider's answers are untrusted).
      let unknown = 0
      let unknownSample = ""
      // Answers came from the provider: a batch's results, or an online shard's file.
      const answered = shard.batchId !== null || shard.online
      if (whole === undefined && (answered || shard.cachedRows > 0)) {
        yield* lines(ctx.paths.rowsFile(shard.id)).pipe(
          Stream.runForEach((text) =>
            Effect.sync(() => answers.addRow(rowId(text), caching && answered ? sidecarCacheKey(text) : undefined))
          )
        )
      }

      // This shard's results.jsonl lines, until it holds the outputs.
      const staged = ctx.paths.collectingFile(shard.id)
      const stagedFile = yield* LineFile.open(staged, 0)
      // Rows are handled synchronously, chunk by chunk; Effects only for I/O.
      const record = (result: BatchResult, fromCache: boolean): boolean => {
        const row = answers.row(result.customId)
        if (row < 0) {
          if (unknown++ === 0) unknownSample = result.customId
          return false
        }
        const prefix = `{"shard":${JSON.stringify(shard.id)},"attempt":${shard.attempt},${fromCache ? `"cached":true,` : ""}`
        let full: boolean
        if (result._tag === "Succeeded") {
          // The answer is serialised once: for the cache, and as the tail of its results line.
          const answer = ResponseCache.encodeAnswer(result)
          full = stagedFile.append(`${prefix}"_tag":"Succeeded","customId":${JSON.stringify(result.customId)},${answer.slice(1)}`)
          const ck = fromCache ? undefined : answers.cacheKey(row)
          if (ck !== undefined) full = ctx.cache.putEncoded(ck, answer) || full
        } else {
          full = stagedFile.append(prefix + encodeFailed(result).slice(1))
        }
        if (answers.answered(row)) return full // a duplicated line: the first answer stands
        if (result._tag === "Failed") {
          answers.fail(row, { failure: result.failure, code: result.code, message: result.message })
          return full
        }
        // Answers from the cache were paid for by an earlier run.
        if (result.usage !== null && !fromCache) {
          usage.input += result.usage.inputTokens
          usage.output += result.usage.outputTokens
          usage.cached += result.usage.cachedInputTokens
        }
        // Decoded when the row is settled: nothing of it is held as objects meanwhile.
        answers.answer(row, result.text, result.finishReason)
        return full
      }
      /** A row's outcome, its answer decoded with the stage's Schema. */
      const outcomeOf = (id: string): Outcome | undefined => {
        const row = answers.row(id)
        if (row < 0) return undefined
        const got = answers.get(row)
        if (got._tag === "None") return undefined
        if (got._tag === "Failure") return { ok: false, failure: got.failure, code: got.code, message: got.message }
        const decoded = stage.decode(got.text)
        return decoded._tag === "Right"
          ? { ok: true, output: decoded.right }
          : {
              ok: false,
              failure: "parse",
              code: got.finishReason === "length" ? "truncated" : "parse_error",
              message: decoded.left,
              answer: { text: got.text, finishReason: got.finishReason }
            }
      }
      const recordChunk = (fromCache: boolean) => (chunk: Chunk.Chunk<BatchResult>) => {
        let full = false
        for (const result of Chunk.toReadonlyArray(chunk)) full = record(result, fromCache) || full
        return full ? Effect.zipRight(stagedFile.flush, flushCache) : Effect.void
      }
      if (whole === undefined && shard.batchId !== null) {
        // The poll that saw it end has its state (file ids) already; after a resume, ask.
        const info = Poller.terminalInfo(shard) ?? (yield* provider.retrieve(shard.batchId))
        yield* provider.results(info).pipe(Stream.runForEachChunk(recordChunk(false)))
        if (unknown > 0) {
          const sample = JSON.stringify(unknownSample.length > 80 ? `${unknownSample.slice(0, 80)}…` : unknownSample)
          yield* Effect.logWarning(
            `shard ${shard.id}: ${unknown} result ${unknown === 1 ? "line names a custom_id" : "lines name custom_ids"} ` +
              `this shard never sent (e.g. ${sample}) in batch ${shard.batchId}: ignored, not counted in usage or cost`
          )
        }
      }
      if (whole === undefined && shard.online) {
        // Online answers, classified as result lines when they came (see OnlineExecutor.ts).
        const file = ctx.paths.onlineFile(shard.id)
        const fs = yield* FileSystem.FileSystem
        if (yield* fs.exists(file)) {
          yield* lines(file).pipe(
            // Lines are fsynced before the shard is journaled terminal; a cancel journals it where
            // the file stands, so a torn tail (a crash mid-append) may be here: `lines` drops a
            // line without its newline, as the executor's recovery does.
            Stream.map((text) => JSON.parse(text) as BatchResult),
            Stream.runForEachChunk(recordChunk(false))
          )
        }
      }
      if (shard.cachedRows > 0) {
        yield* lines(ctx.paths.cachedFile(shard.id)).pipe(
          Stream.map((text) => JSON.parse(text) as BatchResult),
          Stream.runForEachChunk(recordChunk(true))
        )
      }
      yield* stagedFile.flush
      return yield* outputs.exclusive(
        Effect.gen(function* () {
          yield* Effect.uninterruptible(Effect.suspend(() => {
            reading = false
            return outputs.reading.release(1)
          }))
          yield* outputs.results.appendFile(staged)
          // Its lines are in results.jsonl now (committed below, or cut at the next open and read again).
          yield* (yield* FileSystem.FileSystem).remove(staged).pipe(Effect.ignore)

          // Rescheduled rows go to a retry shard with their identical request lines. If a crash
          // hit after the retry shard was journaled, it exists already and is left as it is.
          const retryId = retryShardId(shard)
          const retryPlanned = ctx.state.shards.has(retryId)
          let retry:
            | { scope: Scope.CloseableScope; requests: LineFile.LineFile; rows: LineFile.LineFile; answers: LineFile.LineFile }
            | undefined
          let retryCached = 0
          const retryHash = createHash("sha256")
          let rescheduled = 0
          let retryBytes = 0
          // Under a known enqueued-token limit the retry shard's lines are counted (a repair is longer
          // than the request it repairs): one over the limit is re-cut before it is sent (Recut.ts).
          const countRetry = !shard.online && ctx.enqueuedLimit?.(rt) !== undefined
          let retryTokens = 0
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
          let children = 0

          const fail = (row: RowLine, failure: FailureClass, code: string, message: string) => {
            failed[failure] = (failed[failure] ?? 0) + 1
            const record: FailureRecord = {
              custom_id: row.id,
              key: row.key,
              shard: shard.id,
              attempt: shard.attempt,
              class: failure,
              code,
              message,
              location: row.loc,
              ...(row.c === undefined ? {} : { cached: true })
            }
            return outputs.failures.append(JSON.stringify(record)) ? outputs.failures.flush : undefined
          }

          const transformFailed = (row: RowLine, e: unknown) =>
            fail(row, "permanent", "transform_error", `transform failed: ${e instanceof Error ? e.message : String(e)}`)

          /** A succeeded row goes on: through the stage's transforms, to the next stage or the sink. */
          const passOn = (row: RowLine, output: unknown): Effect.Effect<void, unknown> | undefined => {
            let values: Pipeline.LinkRows | Effect.Effect<Pipeline.LinkRows, unknown>
            try {
              values = rt.after.length === 0 ? [[row.key, output]] : Pipeline.applyLink(rt.after, row.key, output, row.input)
            } catch (e) {
              return transformFailed(row, e)
            }
            if (!Effect.isEffect(values)) return emit(row, values)
            // An Effect transform: its failure (or defect) fails the row; an interruption stops the collection.
            return Effect.flatMap(Effect.exit(values), (exit) =>
              Exit.isSuccess(exit) ? emit(row, exit.value) ?? Effect.void
              : Cause.isInterruptedOnly(exit.cause) ? Effect.failCause(exit.cause)
              : transformFailed(row, Cause.squash(exit.cause)) ?? Effect.void
            )
          }

          const emit = (row: RowLine, values: Pipeline.LinkRows): Effect.Effect<void, unknown> | undefined => {
            const src = row.src === undefined ? row.input : row.src
            if (next !== undefined) {
              succeeded++
              let full = false
              const lin = [...(row.lin ?? []), row.id]
              for (const [key, value] of values) {
                const line: InboxLine = { key, loc: row.loc, input: value, src, lin }
                full = next.append(JSON.stringify(line)) || full
                children++
              }
              return full ? next.flush : undefined
            }
            const records = values.map(([key, value]) =>
              multiStage
                ? { key, customId: row.id, input: src, output: value, lineage: row.lin ?? [] }
                : { key, customId: row.id, input: src, output: value }
            )
            // A row the sink cannot store (U+0000 for PostgreSQL, say) fails alone, before the
            // write: in the batch it would fail the sink's commit, and every later one.
            const refuse = outputs.sink.refuse
            if (refuse !== undefined) {
              for (const record of records) {
                const reason = refuse(record)
                if (reason !== undefined) return fail(row, "sink_rejected", "sink_rejected", reason)
              }
            }
            succeeded++
            for (const record of records) sinkBatch.push(record)
            // Small batches: records held across many rows outlive young-generation collections.
            return sinkBatch.length >= 100 ? flushSink : undefined
          }

          // Rows that may be resent, with their place among the rows that have a request line: the
          // shard file is read (a second pass) only for them.
          const resend: Array<{ readonly at: number; readonly row: RowLine }> = []
          let sentRows = 0

          /**
           * One row; synchronous, returning an Effect only when there is I/O to do. `request` is
           * its line in the shard file (none for a row answered from the cache), or `unread`: a row
           * that may be resent is then put aside for the second pass, which has its line.
           */
          const settle = (row: RowLine, request: string | undefined | typeof unread): Effect.Effect<void, unknown, FileSystem.FileSystem> | undefined => {
            const at = request === unread ? sentRows++ : -1
            const outcome: Outcome = (row.c === undefined ? whole : undefined) ??
              outcomeOf(row.id) ??
              (shard.cancelled
                ? { ok: false, failure: "cancelled", code: "cancelled", message: "the run was cancelled before this request was sent online" }
                : {
                    ok: false,
                    failure: "missing",
                    code: "missing",
                    message: shard.online ? `no answer for ${row.id} in ${shard.id}'s online answers` : `no result line for ${row.id} in batch ${shard.batchId ?? "?"}`
                  })
            if (outcome.ok) return passOn(row, outcome.output)
            if (request === unread) {
              // A superset of the test below (which the second pass makes): rows outside it fail here.
              const resendable = automatic.has(outcome.failure) ||
                (outcome.failure === "parse" && outcome.answer !== undefined && stage.repair) ||
                (shard.recalled && outcome.failure === "cancelled")
              if (reschedule && resendable && shard.attempt < stage.maxAttempts) {
                resend.push({ at, row })
                return undefined
              }
            }
            const repair =
              outcome.failure === "parse" && outcome.answer !== undefined && stage.repair
                ? Repair.request(stage, row, outcome.answer, outcome.message, provider)
                : undefined
            // A repair is a new request (and so a new custom_id); anything else is resent as it was.
            const line = repair?.line ?? (request === unread ? undefined : request)
            const again = automatic.has(outcome.failure) || repair !== undefined || (shard.recalled && outcome.failure === "cancelled")
            if (reschedule && line !== undefined && again && shard.attempt < stage.maxAttempts) {
              rescheduled++
              if (retryPlanned) return undefined
              // A repair is keyed by its own request: answered before (in an earlier run, or
              // carried over from before a pipeline change), it is not asked again.
              const { ck: _ck, c: _c, ...rest } = row
              const repairKey = repair === undefined || !caching || rt.cacheNamespace === undefined
                ? undefined
                : ResponseCache.key(rt.cacheNamespace, stage.requestHash(repair.request))
              const answered = repair === undefined || !caching ? undefined
                : (repairKey === undefined ? undefined : ctx.cache.read(repairKey)) ??
                  (ctx.carry === undefined ? undefined : ctx.cache.read(ResponseCache.key(ctx.carry, repair.customId)))
              const rowLine = repair === undefined ? JSON.stringify(row)
                : JSON.stringify({ ...rest, id: repair.customId, ...(repairKey === undefined ? {} : { ck: repairKey }), ...(answered === undefined ? {} : { c: 1 }) })
              const append = (r: NonNullable<typeof retry>) => {
                let full = r.rows.append(rowLine)
                if (answered !== undefined) {
                  retryCached++
                  full = r.answers.append(`{"_tag":"Succeeded","customId":${JSON.stringify(repair!.customId)},${answered.slice(1)}`) || full
                } else {
                  retryHash.update(line)
                  retryHash.update("\n")
                  retryBytes += Buffer.byteLength(line) + 1
                  if (countRetry) retryTokens += wireTokens(shard.model, line)
                  full = r.requests.append(line) || full
                }
                return full ? Effect.all([r.requests.flush, r.rows.flush, r.answers.flush], { discard: true }) : undefined
              }
              if (retry !== undefined) return append(retry)
              return Effect.gen(function* () {
                const scope = yield* Scope.make()
                const opened = {
                  scope,
                  requests: yield* LineFile.open(ctx.paths.shardFile(retryId), 0).pipe(Scope.extend(scope)),
                  rows: yield* LineFile.open(ctx.paths.rowsFile(retryId), 0).pipe(Scope.extend(scope)),
                  answers: yield* LineFile.open(ctx.paths.cachedFile(retryId), 0).pipe(Scope.extend(scope))
                }
                retry = opened
                const pending = append(opened)
                if (pending !== undefined) yield* pending
              })
            }
            return fail(row, outcome.failure, outcome.code, outcome.message)
          }
          const settleAll = <E, R>(stream: Stream.Stream<readonly [RowLine, string | undefined | typeof unread], E, R>) =>
            stream.pipe(
              Stream.runForEachChunk((chunk) =>
                Effect.gen(function* () {
                  for (const [row, request] of Chunk.toReadonlyArray(chunk)) {
                    const io = settle(row, request)
                    if (io !== undefined) yield* io
                  }
                })
              )
            )
          // Rows with a request line pair up with the shard file, which is read only when some of them
          // may be resent (it is often bigger than the results). Rows answered from the cache have none.
          if (shard.requests > 0) {
            yield* settleAll(rows.pipe(Stream.filter((r) => r.c === undefined), Stream.map((r) => [r, unread] as const)))
            if (resend.length > 0) {
              let next = 0
              yield* settleAll(
                requests.pipe(
                  // Stops reading once the last row put aside has its line (checked chunk by chunk).
                  Stream.takeWhile(() => next < resend.length),
                  Stream.zipWithIndex,
                  Stream.filterMap(([line, i]) =>
                    next < resend.length && i === resend[next]!.at ? Option.some([resend[next++]!.row, line] as const) : Option.none()
                  )
                )
              )
              // A shard file shorter than its sidecar (damage) leaves rows without their line: they fail, not vanish.
              if (next < resend.length) yield* settleAll(Stream.fromIterable(resend.slice(next).map(({ row }) => [row, undefined] as const)))
            }
          }
          if (shard.cachedRows > 0) {
            yield* settleAll(rows.pipe(Stream.filter((r) => r.c !== undefined), Stream.map((r) => [r, undefined] as const)))
          }
          yield* flushSink
          Failpoint.hit("collect-before-commit")

          if (retry !== undefined) {
            yield* retry.requests.sync
            yield* retry.rows.sync
            yield* retry.answers.sync
            yield* Scope.close(retry.scope, Exit.void)
            yield* ctx.record({
              _tag: "ShardPlanned",
              shard: retryId,
              stage: shard.stage,
              provider: shard.provider,
              model: shard.model,
              endpoint: shard.endpoint,
              requests: rescheduled - retryCached,
              bytes: retryBytes,
              sha256: retryHash.digest("hex"),
              attempt: shard.attempt + 1,
              parent: shard.id,
              sourceOffset: null,
              invalid: 0,
              offsets: null,
              ...(countRetry
                ? { inputTokens: retryTokens }
                : shard.inputTokens === undefined || shard.requests === 0
                ? {}
                : { inputTokens: Math.round((shard.inputTokens * (rescheduled - retryCached)) / shard.requests) }),
              ...(retryCached > 0 ? { cachedRows: retryCached } : {})
            })
          }
          // The answers are made durable in the cache before the shard counts as collected.
          yield* flushCache
          const offsets = yield* outputs.commit
          yield* ctx.record({
            _tag: "Collected",
            shard: shard.id,
            succeeded,
            failed,
            rescheduled,
            retryShard: rescheduled > 0 ? retryId : null,
            usage,
            offsets,
            ...(rt.next === null ? {} : { children: { stage: rt.next, rows: children } }),
            ...(shard.cachedRows > 0 ? { fromCache: shard.cachedRows } : {})
          })
          // A retry shard that existed already is driven by whoever found it open.
          return retry !== undefined ? retryId : null
        })
      )
    })
  ).pipe(Telemetry.shardSpan("sluice.collect", shard))

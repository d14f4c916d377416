/**
 * Re-cutting a shard over its model's enqueued-token limit. Shards are cut by the limit at
 * planning only when it is known then; one learned later (a `token_limit_exceeded` failure) or
 * lowered by a resume leaves planned shards that can never fit, and a lone batch over the limit
 * fails every time. Such a shard, never run, is re-cut before it is submitted: its rows go to
 * child shards (`<shard>-t<n>`) of at most the limit each, the rows answered from the cache to
 * a last child of their own; a row alone over the limit ends failed (`oversize`), named by its
 * custom_id.
 *
 * Crash-safe by order, like the duplicate-key rewrite (KeyCheck.ts): the children's files are
 * written and fsynced first (a crash then leaves files no event names, written again next
 * time), then the failures are committed and the re-cut journaled in one event (ShardRecut)
 * under the outputs lock. The shard's own files stay: `sluice retry` replays a failed row
 * from them.
 */
import { Chunk, Effect, Exit, Scope, Stream } from "effect"
import { createHash } from "node:crypto"
import * as EnqueuedTokens from "./EnqueuedTokens.js"
import * as Failpoint from "./internal/Failpoint.js"
import * as LineFile from "./internal/LineFile.js"
import { lines } from "./internal/lines.js"
import type { FailureRecord, Outputs } from "./Outputs.js"
import { requestTokens, wireTokens } from "./RequestTokens.js"
import { isCachedRowLine } from "./Rows.js"
import type { RowLine } from "./Rows.js"
import type { RunContext } from "./RunContext.js"
import type { ShardState } from "./RunState.js"

/** Whether a shard never run must be re-cut before it may go: its tokens exceed a known limit. */
export const needed = (shard: ShardState, limit: number | undefined): limit is number =>
  limit !== undefined && shard.requests > 0 && EnqueuedTokens.estimate(shard) > limit

/** The id of a shard's `n`th child (from 1). */
export const childId = (shard: { readonly id: string }, n: number): string => `${shard.id}-t${n}`


interface Child {
  readonly id: string
  readonly scope: Scope.CloseableScope
  readonly requests: LineFile.LineFile
  readonly rows: LineFile.LineFile
  readonly answers: LineFile.LineFile | undefined
  readonly hash: ReturnType<typeof createHash>
  count: number
  cachedRows: number
  bytes: number
  tokens: number
}

/**
 * Input tokens of each of the shard's request lines, as the planner counts them: the row's
 * request rendered again, when it encodes to the very line sent (a repair, or an input that
 * did not survive JSON, does not); else counted from the wire line (the JSON around the
 * prompt and the schema's text included: more than the provider counts), scaled to the
 * shard's own count when it has one and no row could be rendered again.
 */
const rowTokens = (ctx: RunContext, shard: ShardState) =>
  Effect.gen(function* () {
    const { stage, provider } = ctx.stageOf(shard.stage)
    const counts: Array<number> = []
    let exact = 0
    const count = (rowLine: string, line: string): number => {
      try {
        const row = JSON.parse(rowLine) as RowLine
        const request = stage.render(row.input)
        if (provider.encode(request, row.id) === line) {
          exact++
          return requestTokens(request).tokens
        }
      } catch {
        // A prompt that throws now is counted from its line, as one whose line differs.
      }
      return wireTokens(shard.model, line)
    }
    const rows = lines(ctx.paths.rowsFile(shard.id)).pipe(Stream.filter((text) => !isCachedRowLine(text)))
    yield* Stream.zip(rows, lines(ctx.paths.shardFile(shard.id))).pipe(
      Stream.runForEachChunk((chunk) => Effect.sync(() => { for (const [rowLine, line] of Chunk.toReadonlyArray(chunk)) counts.push(count(rowLine, line)) }))
    )
    const sum = counts.reduce((a, b) => a + b, 0)
    const scale = exact > 0 || shard.inputTokens === undefined || sum === 0 ? 1 : shard.inputTokens / sum
    return counts.map((n) => Math.max(1, Math.ceil(n * scale)))
  })

/**
 * Re-cuts a shard that was never run (planned, or back to waiting after `token_limit_exceeded`)
 * into shards of at most `limit` input tokens, and journals it. Returns the children's ids.
 */
export const recut = (ctx: RunContext, outputs: Outputs, shard: ShardState, limit: number) =>
  Effect.gen(function* () {
    const tokens = yield* rowTokens(ctx, shard)
    if (tokens.length !== shard.requests) {
      return yield* Effect.dieMessage(`shard ${shard.id}: its file has ${tokens.length} requests, the journal ${shard.requests}`)
    }
    const done: Array<Child> = []
    const failures: Array<FailureRecord> = []
    let current: Child | undefined
    const open = (withAnswers: boolean) =>
      Effect.gen(function* () {
        const id = childId(shard, done.length + 1)
        const scope = yield* Scope.make()
        const child: Child = {
          id,
          scope,
          requests: yield* LineFile.open(ctx.paths.shardFile(id), 0).pipe(Scope.extend(scope)),
          rows: yield* LineFile.open(ctx.paths.rowsFile(id), 0).pipe(Scope.extend(scope)),
          answers: withAnswers ? yield* LineFile.open(ctx.paths.cachedFile(id), 0).pipe(Scope.extend(scope)) : undefined,
          hash: createHash("sha256"),
          count: 0,
          cachedRows: 0,
          bytes: 0,
          tokens: 0
        }
        return child
      })
    const close = Effect.gen(function* () {
      const c = current
      if (c === undefined) return
      current = undefined
      yield* c.requests.sync
      yield* c.rows.sync
      if (c.answers !== undefined) yield* c.answers.sync
      yield* Scope.close(c.scope, Exit.void)
      done.push(c)
    })

    // Rows with a request line, in the order of the shard file.
    let index = 0
    const rows = lines(ctx.paths.rowsFile(shard.id)).pipe(Stream.filter((text) => !isCachedRowLine(text)))
    yield* Stream.zip(rows, lines(ctx.paths.shardFile(shard.id))).pipe(
      Stream.runForEach(([rowLine, request]) =>
        Effect.gen(function* () {
          const n = tokens[index++]!
          if (n > limit) {
            const row = JSON.parse(rowLine) as RowLine
            failures.push({
              custom_id: row.id,
              key: row.key,
              shard: shard.id,
              attempt: shard.attempt,
              class: "permanent",
              code: "oversize",
              message: `request ${row.id} is about ${n} input tokens, over the enqueued-token limit of ${limit} for ${shard.model}: it can never be enqueued`,
              location: row.loc
            })
            return
          }
          if (current !== undefined && current.tokens + n > limit) yield* close
          if (current === undefined) current = yield* open(false)
          const c = current
          const bytes = Buffer.byteLength(request) + 1
          c.count++
          c.bytes += bytes
          c.tokens += n
          c.hash.update(request + "\n")
          if (c.requests.append(request)) yield* c.requests.flush
          if (c.rows.append(rowLine)) yield* c.rows.flush
        })
      )
    )
    if (index !== shard.requests) {
      return yield* Effect.dieMessage(`shard ${shard.id}: its row sidecar pairs ${index} rows with requests, the journal ${shard.requests}`)
    }
    yield* close
    // Rows answered from the cache hold no tokens: a last child of their own, never submitted.
    if (shard.cachedRows > 0) {
      const answers = lines(ctx.paths.cachedFile(shard.id))
      const cachedRows = lines(ctx.paths.rowsFile(shard.id)).pipe(Stream.filter(isCachedRowLine))
      current = yield* open(true)
      const c = current
      yield* Stream.zip(cachedRows, answers).pipe(
        Stream.runForEach(([rowLine, answer]) =>
          Effect.gen(function* () {
            c.cachedRows++
            if (c.rows.append(rowLine)) yield* c.rows.flush
            if (c.answers!.append(answer)) yield* c.answers!.flush
          })
        )
      )
      yield* close
    }
    Failpoint.hit("recut-before-journal")

    // The failed rows are listed and the re-cut journaled in one event, under the outputs lock:
    // a resume lists no row twice.
    yield* outputs.exclusive(
      Effect.gen(function* () {
        for (const f of failures) yield* outputs.failure(f)
        const offsets = failures.length === 0 ? null : yield* outputs.commit
        yield* ctx.record({
          _tag: "ShardRecut",
          shard: shard.id,
          limit,
          children: done.map((c) => ({
            shard: c.id,
            requests: c.count,
            bytes: c.bytes,
            sha256: c.hash.digest("hex"),
            inputTokens: c.tokens,
            cachedRows: c.cachedRows
          })),
          failed: failures.length,
          offsets
        })
      })
    )
    const shown = failures.slice(0, 3).map((f) => f.custom_id).join(", ")
    yield* Effect.logWarning(
      `shard ${shard.id}: about ${EnqueuedTokens.estimate(shard)} input tokens, over the enqueued-token limit of ${limit} for ${shard.model}; ` +
        `re-cut into ${done.length} shard${done.length === 1 ? "" : "s"}` +
        (failures.length === 0 ? "" : `; ${failures.length} request${failures.length === 1 ? "" : "s"} alone over the limit failed (${shown}${failures.length > 3 ? ", …" : ""})`)
    )
    return done.map((c) => c.id)
  })

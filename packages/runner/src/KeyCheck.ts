/**
 * The run's duplicate-key check: once the whole source is planned, and before any of the
 * first stage's shards is submitted, the key records the planner wrote (`keys/<shard>.keys`)
 * are sorted and grouped (DuplicateKeys.ts). Then:
 *
 * - conflicting keys with onInvalid "fail": every such row goes to `duplicate-keys.jsonl`, the
 *   plan is refused (journaled: the next run plans the source again) and the run stops,
 *   naming the first of them;
 * - otherwise each shard holding duplicates (or, with "skip", conflicting rows) is rewritten
 *   without them, and the rows are listed in failures.jsonl (`duplicate`, `duplicate_key`).
 *
 * A rewrite is crash-safe by order: the new files are written and fsynced under `keys/rewrite/`,
 * the failures committed, the rewrite journaled (ShardRewritten, with the new count, bytes and
 * hash), and only then are the files renamed over the shard's. A crash before the event leaves
 * the shard as planned (the check runs again and decides the same: the key records are never
 * changed); after it, the renames left are done first thing. `KeysChecked` ends the check.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import { Chunk, Effect, Schema, Stream } from "effect"
import { createHash } from "node:crypto"
import * as DuplicateKeys from "./DuplicateKeys.js"
import * as ExternalSort from "./internal/ExternalSort.js"
import * as Failpoint from "./internal/Failpoint.js"
import * as LineFile from "./internal/LineFile.js"
import { lines } from "./internal/lines.js"
import * as RecordFile from "./internal/RecordFile.js"
import type { FailureRecord, Outputs } from "./Outputs.js"
import { shardId } from "./Planner.js"
import { isCachedRowLine } from "./Rows.js"
import type { RowLine } from "./Rows.js"
import type { RunContext } from "./RunContext.js"
import type { ShardState } from "./RunState.js"
import * as PrivateFiles from "./internal/PrivateFiles.js"

/** How many conflicting rows the error names (all of them are in duplicate-keys.jsonl). */
const NAMED = 10

export class ConflictingKeys extends Schema.TaggedError<ConflictingKeys>()("ConflictingKeys", {
  rows: Schema.Number,
  keys: Schema.Number,
  /** The first rows, each as a line naming its location. */
  named: Schema.Array(Schema.String),
  /** The file listing all of them. */
  file: Schema.String
}) {
  override get message(): string {
    const more = this.rows - this.named.length
    return [
      `${this.rows} rows share ${this.keys} key${this.keys === 1 ? "" : "s"} with different requests; nothing was submitted:`,
      ...this.named.map((l) => `  ${l}`),
      more > 0 ? `  … and ${more} more; every one is listed in ${this.file}` : `  (listed in ${this.file})`,
      `Give each row its own key, or leave such rows out with Pipeline.from(source, { key, onInvalid: "skip" }); the next run plans the source again.`
    ].join("\n")
  }
}

/** Bounds of the sort (tests make them small). */
export interface Bounds {
  readonly maxRunBytes?: number
  readonly maxRunRecords?: number
  readonly maxGroup?: number
}

/** The first stage's shards the check covers (planned first attempts), in planning order. */
const firstShards = (ctx: RunContext): Array<ShardState> => {
  const stage = ctx.stages[0]!.stage.name
  return [...ctx.state.shards.values()]
    .filter((s) => s.stage === stage && s.parent === null)
    .sort((a, b) => seqOf(a.id) - seqOf(b.id))
}

const seqOf = (id: string) => Number(id.slice(id.lastIndexOf("-") + 1))

/** Not yet submitted or collected: a shard the check may still change. */
const untouched = (s: ShardState) => s.phase === "planned" || (s.phase === "terminal" && s.batchId === null && s.collected === null)

/**
 * True when the run must check its first stage's keys before submitting: they can repeat,
 * the check has not been done, and no first-stage shard has gone anywhere yet (a run planned
 * before sluice checked keys is left as it was).
 */
export const pending = (ctx: RunContext): boolean => {
  const rt = ctx.stages[0]!
  return (
    !ctx.state.keysChecked &&
    DuplicateKeys.possible(ctx.pipeline, rt.stage, rt.before) &&
    firstShards(ctx).every(untouched)
  )
}

const rewriteDir = (ctx: RunContext) => `${ctx.paths.keys}/rewrite`

/** The files of a shard: its requests, its row sidecar and its cached answers. */
const shardFiles = (ctx: RunContext, id: string) =>
  [ctx.paths.shardFile(id), ctx.paths.rowsFile(id), ctx.paths.cachedFile(id)].map((target) => ({
    target,
    staged: `${rewriteDir(ctx)}/${target.slice(target.lastIndexOf("/") + 1)}`
  }))

/** Moves a journaled rewrite's files into place (those a crash left behind). */
const finishRewrite = (ctx: RunContext, id: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    for (const { staged, target } of shardFiles(ctx, id)) {
      if (!(yield* fs.exists(staged))) continue
      yield* fs.rename(staged, target)
      Failpoint.hit("rewrite-rename")
    }
  })

/** Checks the first stage's keys; see the module comment. */
export const check = (ctx: RunContext, outputs: Outputs, bounds: Bounds = {}) =>
  Effect.scoped(
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const rt = ctx.stages[0]!
      const stage = rt.stage.name
      const what = rt.stage.customId === undefined ? "key" : "custom_id"
      const shards = firstShards(ctx)
      if (!shards.every(untouched)) return yield* Effect.dieMessage("the duplicate-key check found a submitted shard")
      for (const s of shards) if (s.rewritten) yield* finishRewrite(ctx, s.id)
      // What is left there belongs to rewrites a crash cut short before they were journaled.
      yield* fs.remove(rewriteDir(ctx), { recursive: true }).pipe(Effect.catchAll(() => Effect.void))

      const work = `${ctx.paths.keys}/sort`
      yield* fs.remove(work, { recursive: true }).pipe(Effect.catchAll(() => Effect.void))
      const keys = yield* ExternalSort.make({ ...bounds, order: DuplicateKeys.keyOrder, dir: `${work}/keys` })
      for (const s of shards) yield* RecordFile.forEach(ctx.paths.keysFile(s.id), (r) => keys.add(r))
      const verdicts = yield* ExternalSort.make({ ...bounds, order: DuplicateKeys.verdictOrder, dir: `${work}/verdicts` })
      const found = yield* DuplicateKeys.find(keys, verdicts, { spoolDir: work, ...(bounds.maxGroup === undefined ? {} : { maxGroup: bounds.maxGroup }) })

      if (found.conflictRows > 0 && ctx.pipeline.onInvalid === "fail") {
        const named: Array<string> = []
        yield* Effect.scoped(
          Effect.gen(function* () {
            const file = yield* LineFile.open(ctx.paths.duplicateKeys, 0)
            yield* verdicts.forEach((r) => {
              const v = DuplicateKeys.decodeVerdict(r)
              if (v.kind !== "conflict") return undefined
              if (named.length < NAMED) named.push(DuplicateKeys.describe(v, what))
              const line = { [what]: v.identity, location: v.location, rows: v.rows, another: v.other }
              return file.append(JSON.stringify(line)) ? file.flush : undefined
            })
            yield* file.sync
          })
        )
        yield* ctx.record({ _tag: "PlanRefused", stage, rows: found.conflictRows, keys: found.conflictKeys })
        yield* fs.remove(ctx.paths.keys, { recursive: true }).pipe(Effect.catchAll(() => Effect.void))
        return yield* new ConflictingKeys({ rows: found.conflictRows, keys: found.conflictKeys, named, file: ctx.paths.duplicateKeys })
      }

      // The verdicts come by position: one shard's at a time (at most a shard's rows in memory).
      let batch: Array<DuplicateKeys.Verdict> = []
      const flush = () => {
        const these = batch
        batch = []
        if (these.length === 0) return undefined
        const shard = ctx.state.shards.get(shardId(stage, these[0]!.major))
        if (shard === undefined) return Effect.dieMessage(`the key records name shard ${these[0]!.major} of ${stage}, which the journal does not have`)
        return shard.rewritten ? undefined : rewrite(ctx, outputs, shard, these, what)
      }
      yield* verdicts.forEach((r) => {
        const v = DuplicateKeys.decodeVerdict(r)
        const io = batch.length > 0 && batch[0]!.major !== v.major ? flush() : undefined
        batch.push(v)
        return io
      })
      const last = flush()
      if (last !== undefined) yield* last
      yield* ctx.record({ _tag: "KeysChecked", stage, duplicates: found.duplicates, conflicts: found.conflictRows })
      // The key records served their purpose; the journal holds the outcome.
      yield* fs.remove(ctx.paths.keys, { recursive: true }).pipe(Effect.catchAll(() => Effect.void))
    })
  )

/** The failures.jsonl line of a row taken out. */
const failureOf = (row: RowLine, v: DuplicateKeys.Verdict, what: "key" | "custom_id"): FailureRecord =>
  v.kind === "duplicate"
    ? {
        custom_id: row.id,
        key: row.key,
        shard: null,
        attempt: 0,
        class: "duplicate",
        code: "duplicate",
        message: `not sent: the row at ${v.other} has the same ${what} and request, and its answer stands for both`,
        location: row.loc
      }
    : {
        custom_id: row.id,
        key: row.key,
        shard: null,
        attempt: 0,
        class: "duplicate_key",
        code: "duplicate_key",
        message: `${what} ${JSON.stringify(v.identity)} is used by ${v.rows} rows with different requests (another at ${v.other}): none of them is sent`,
        location: row.loc
      }

/** Copies the lines of `from` to a new file `to`, leaving out those whose ordinal is in `drop`. */
const copyLines = (from: string, to: string, drop: ReadonlySet<number>, each: (line: string, bytes: number) => void) =>
  Effect.scoped(
    Effect.gen(function* () {
      const out = yield* LineFile.open(to, 0)
      let ordinal = 0
      yield* lines(from).pipe(
        Stream.runForEachChunk((chunk) =>
          Effect.gen(function* () {
            for (const text of Chunk.toReadonlyArray(chunk)) {
              if (drop.has(ordinal++)) continue
              const bytes = Buffer.byteLength(text) + 1
              each(text, bytes)
              if (out.append(text)) yield* out.flush
            }
          })
        )
      )
      yield* out.sync
    })
  )

/** Rewrites one shard without the rows of `verdicts` (one shard's, by row), and journals it. */
const rewrite = (ctx: RunContext, outputs: Outputs, shard: ShardState, verdicts: ReadonlyArray<DuplicateKeys.Verdict>, what: "key" | "custom_id") =>
  Effect.gen(function* () {
    yield* PrivateFiles.makeDirectory(rewriteDir(ctx))
    const [requestsFile, rowsFile, cachedFile] = shardFiles(ctx, shard.id)
    const excluded = new Map(verdicts.map((v) => [v.minor, v]))
    const failures: Array<FailureRecord> = []
    // Request lines and cached answers to leave out, by their ordinal in their own file.
    const dropRequests = new Set<number>()
    const dropAnswers = new Set<number>()
    let duplicates = 0
    let conflicts = 0

    // The row sidecar: a row's position is its line; a row answered from the cache ends with
    // the planner's `"c":1` mark (it has an answer line, not a request line).
    let index = 0
    let requestOrdinal = 0
    let answerOrdinal = 0
    yield* Effect.scoped(
      Effect.gen(function* () {
        const out = yield* LineFile.open(rowsFile!.staged, 0)
        yield* lines(rowsFile!.target).pipe(
          Stream.runForEachChunk((chunk) =>
            Effect.gen(function* () {
              for (const text of Chunk.toReadonlyArray(chunk)) {
                const cached = isCachedRowLine(text)
                const ordinal = cached ? answerOrdinal++ : requestOrdinal++
                const v = excluded.get(index++)
                if (v === undefined) {
                  if (out.append(text)) yield* out.flush
                  continue
                }
                ;(cached ? dropAnswers : dropRequests).add(ordinal)
                failures.push(failureOf(JSON.parse(text) as RowLine, v, what))
                if (v.kind === "duplicate") duplicates++
                else conflicts++
              }
            })
          )
        )
        yield* out.sync
      })
    )
    if (failures.length !== excluded.size || requestOrdinal !== shard.requests || answerOrdinal !== shard.cachedRows) {
      return yield* Effect.dieMessage(
        `shard ${shard.id}: its row sidecar has ${index} rows, the journal ${shard.requests + shard.cachedRows}; its key records do not match it`
      )
    }

    const hash = createHash("sha256")
    let requests = 0
    let bytes = 0
    yield* copyLines(requestsFile!.target, requestsFile!.staged, dropRequests, (line, n) => {
      hash.update(line)
      hash.update("\n")
      requests++
      bytes += n
    })
    let cachedRows = 0
    if (shard.cachedRows > 0) yield* copyLines(cachedFile!.target, cachedFile!.staged, dropAnswers, () => void cachedRows++)
    Failpoint.hit("rewrite-before-journal")

    // The rows taken out are listed and the rewrite journaled in one event, under the outputs
    // lock: a resume lists no row twice.
    yield* outputs.exclusive(
      Effect.gen(function* () {
        for (const f of failures) yield* outputs.failure(f)
        const offsets = yield* outputs.commit
        yield* ctx.record({
          _tag: "ShardRewritten",
          shard: shard.id,
          requests,
          bytes,
          sha256: hash.digest("hex"),
          cachedRows,
          ...(shard.inputTokens === undefined || shard.requests === 0
            ? {}
            : { inputTokens: Math.round((shard.inputTokens * requests) / shard.requests) }),
          duplicates,
          conflicts,
          offsets
        })
      })
    )
    yield* finishRewrite(ctx, shard.id)
  })

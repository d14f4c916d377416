/**
 * Planning: rows → rendered requests → custom_ids → shard files, packed to the tightest of
 * the provider's limits and the run's settings (requests and bytes; one stage, so one model
 * and one endpoint, per shard). The first stage reads the pipeline's source; a later stage
 * reads its inbox, the rows its upstream stage passed on, as each upstream shard is
 * collected. Each shard is journaled once its files are on disk and handed on at once, so
 * submission overlaps planning. A resume skips the source items (or inbox bytes) planned.
 *
 * Rows whose exact request was answered before are served from the response cache: they go
 * into the shard's row sidecar with their answer in `<shard>.cached.jsonl`, and only the
 * other requests are written to the shard file and submitted.
 *
 * When the first stage's rows can share a key (see DuplicateKeys.possible), each row also
 * gets a key record in `keys/<shard>.keys`; duplicates are found across the whole source
 * once it is planned (KeyCheck.ts), not shard by shard.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import { CustomId, Hash, Pipeline } from "@sluice/core"
import type { BatchRequest, SourceItem } from "@sluice/core"
import { Cause, Chunk, Effect, Exit, Schema, Scope, Stream } from "effect"
import { createHash } from "node:crypto"
import * as ContextWindow from "./ContextWindow.js"
import * as DuplicateKeys from "./DuplicateKeys.js"
import { requestTokens } from "./RequestTokens.js"
import * as Failpoint from "./internal/Failpoint.js"
import * as LineFile from "./internal/LineFile.js"
import * as RecordFile from "./internal/RecordFile.js"
import { lines } from "./internal/lines.js"
import type { Offsets, SourceFile } from "./JournalEvent.js"
import { cachedEnding } from "./Rows.js"
import type { InboxLine } from "./Rows.js"
import type { Outputs } from "./Outputs.js"
import * as Pricing from "./Pricing.js"
import * as ResponseCache from "./ResponseCache.js"
import * as SourceFiles from "./SourceFiles.js"
import type { RunContext, StageRuntime } from "./RunContext.js"
import * as PrivateFiles from "./internal/PrivateFiles.js"

export class InvalidInput extends Schema.TaggedError<InvalidInput>()("InvalidInput", {
  location: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return `invalid input at ${this.location}: ${this.description}`
  }
}

export class DuplicateRow extends Schema.TaggedError<DuplicateRow>()("DuplicateRow", {
  customId: Schema.String,
  location: Schema.String
}) {
  override get message(): string {
    return `duplicate row at ${this.location}: its key and request repeat an earlier row of the same shard (custom_id ${this.customId}); give each row a unique key`
  }
}

/** Requests an online stage's shard holds at most. */
export const onlineShardSize = 1000

export type { InboxLine, RowLine } from "./Rows.js"

/** Shard ids: `<stage>-00001`; a retry of a shard appends `-a<attempt>`. */
export const shardId = (stage: string, seq: number): string => `${stage}-${String(seq).padStart(5, "0")}`

interface OpenShard {
  readonly id: string
  readonly seq: number
  readonly scope: Scope.CloseableScope
  readonly requests: LineFile.LineFile
  readonly rows: LineFile.LineFile
  readonly answers: LineFile.LineFile | undefined
  /** Key records of its rows, when the stage's keys are checked across shards. */
  readonly keys: RecordFile.RecordWriter | undefined
  readonly hash: ReturnType<typeof createHash>
  readonly ids: Set<string>
  count: number
  cachedRows: number
  bytes: number
  tokens: number
}

interface Rejected {
  readonly location: string
  readonly message: string
  readonly code: string
  readonly customId: string | null
  readonly key: string | null
}

/** A row ready to pack: its request line, or its cached answer. */
interface Candidate {
  readonly customId: string
  /** What makes the row a duplicate of another: its key, or its custom_id when the stage makes its own. */
  readonly identity: string
  /** The hash of its request. */
  readonly digest: string
  readonly line: string
  readonly lineBytes: number
  readonly request: BatchRequest
  /** Its input tokens, when the run counts them (0 otherwise, and for a cached row). */
  readonly tokens: number
  readonly rowLine: string
  /** The cached answer as a result line, when the cache has one. */
  readonly answer: string | undefined
}

/**
 * Packs one stage's first attempts into shards. `at` positions are source item indexes
 * (first stage) or inbox byte offsets (later stages): a journaled shard claims everything
 * before its position.
 */
const packer = (ctx: RunContext, outputs: Outputs, rt: StageRuntime, onShard: (shard: string) => Effect.Effect<void>) => {
  const { stage, provider } = rt
  const { settings, state } = ctx
  const first = rt.index === 0
  // Online shards are collected (and reach the sink) as each one is answered: smaller ones
  // show results sooner. Batches are packed to the provider's limits.
  const maxRequests = Math.max(1, Math.min(settings.shardSize, provider.limits.maxRequests, rt.mode === "online" ? onlineShardSize : Infinity))
  const maxBytes = Math.min(settings.shardBytes, provider.limits.maxBytes)
  // An enqueued-token limit (configured, or learned by an earlier run) cuts batches by tokens too.
  const tokenLimit = rt.mode === "online" ? undefined : ctx.enqueuedLimit?.(rt)
  const countTokens = settings.budget !== undefined || settings.onlineBudget !== undefined || tokenLimit !== undefined
  const caching = ctx.cache !== ResponseCache.disabled && rt.cacheNamespace !== undefined
  const namespace = rt.cacheNamespace ?? ""
  const carry = ctx.cache === ResponseCache.disabled ? undefined : ctx.carry
  // Context windows by model (a row may name another model than its stage's).
  const windows = new Map<string, number | undefined>()
  const windowOf = (model: string) => {
    if (!windows.has(model)) windows.set(model, Pricing.contextWindow(model, ctx.prices))
    return windows.get(model)
  }
  // Keys that may repeat are checked across all shards once planning is done (KeyCheck.ts).
  const checkKeys = first && DuplicateKeys.possible(ctx.pipeline, stage, rt.before)
  let keysDir = false
  // The highest number journaled, not the count: numbers are never reused for other rows.
  let seq = 0
  for (const s of state.shards.values()) {
    if (s.parent === null && s.stage === stage.name) seq = Math.max(seq, Number(s.id.slice(s.id.lastIndexOf("-") + 1)) || 0)
  }
  let current: OpenShard | undefined
  let rejected: Array<Rejected> = []

  const openShard = Effect.gen(function* () {
    seq++
    const id = shardId(stage.name, seq)
    const scope = yield* Scope.make()
    const requests = yield* LineFile.open(ctx.paths.shardFile(id), 0).pipe(Scope.extend(scope))
    const rows = yield* LineFile.open(ctx.paths.rowsFile(id), 0).pipe(Scope.extend(scope))
    const answers = caching ? yield* LineFile.open(ctx.paths.cachedFile(id), 0).pipe(Scope.extend(scope)) : undefined
    if (checkKeys && !keysDir) {
      yield* PrivateFiles.makeDirectory(ctx.paths.keys)
      keysDir = true
    }
    const keys = checkKeys ? yield* RecordFile.create(ctx.paths.keysFile(id)).pipe(Scope.extend(scope)) : undefined
    const shard: OpenShard = {
      id, seq, scope, requests, rows, answers, keys, hash: createHash("sha256"), ids: new Set(), count: 0, cachedRows: 0, bytes: 0, tokens: 0
    }
    return shard
  })

  /**
   * Lists rejected rows in failures.jsonl and returns the committed offsets. The caller
   * journals them in the same event as the shard (or plan end) that follows, under the
   * outputs lock, so a resume never lists a row twice.
   */
  const withRejected = <A, E, R>(record: (invalid: number, offsets: Offsets | null) => Effect.Effect<A, E, R>) =>
    Effect.suspend(() => {
      const batch = rejected
      rejected = []
      // Nothing to list: the event carries no offsets, so it need not wait for the outputs
      // lock, which a collection holds for a whole shard.
      if (batch.length === 0) return record(0, null)
      return outputs.exclusive(
        Effect.gen(function* () {
          for (const r of batch) {
            yield* outputs.failure({
              custom_id: r.customId,
              key: r.key,
              shard: null,
              attempt: 0,
              class: "permanent",
              code: r.code,
              message: r.message,
              location: r.location
            })
          }
          return yield* record(batch.length, yield* outputs.commit)
        })
      )
    })

  const position = (at: number) => (first ? { sourceOffset: at } : { sourceOffset: null, inboxOffset: at })

  /** Closes the open shard; `at` is the position of the first row not in it. */
  const close = (at: number) =>
    Effect.gen(function* () {
      const shard = current
      if (shard === undefined) return
      current = undefined
      yield* shard.requests.sync
      yield* shard.rows.sync
      if (shard.answers !== undefined) yield* shard.answers.sync
      if (shard.keys !== undefined) yield* shard.keys.sync
      yield* Scope.close(shard.scope, Exit.void)
      // Opened for a row that was then rejected: nothing to journal (its seq stays unused).
      if (shard.count === 0 && shard.cachedRows === 0) return
      yield* withRejected((invalid, offsets) =>
        ctx.record({
          _tag: "ShardPlanned",
          shard: shard.id,
          stage: stage.name,
          provider: stage.provider,
          model: stage.model,
          endpoint: stage.endpoint,
          requests: shard.count,
          bytes: shard.bytes,
          sha256: shard.hash.digest("hex"),
          attempt: 1,
          parent: null,
          invalid,
          offsets,
          ...position(at),
          ...(countTokens ? { inputTokens: shard.tokens } : {}),
          ...(shard.cachedRows > 0 ? { cachedRows: shard.cachedRows } : {})
        })
      )
      yield* onShard(shard.id)
    })

  const reject = (r: Rejected) => void rejected.push(r)

  /** Renders one row into a candidate, or lists it as rejected and returns undefined. */
  const prepare = (
    row: unknown,
    key: string,
    loc: string,
    upstream: { readonly src: unknown; readonly lin: ReadonlyArray<string> } | undefined,
    stageCustomId: string | undefined
  ): Candidate | undefined => {
    let request: BatchRequest
    try {
      request = stage.render(row)
    } catch (e) {
      // A prompt that throws on one row fails that row, not the run (a later stage's rows
      // were paid for upstream: stopping would strand them).
      reject({ location: loc, message: `the prompt failed: ${errorText(e)}`, code: "render_error", customId: null, key })
      return undefined
    }
    const digest = stage.requestHash(request)
    const customId = stageCustomId ?? CustomId.make(stage.name, key, digest)
    const problem = !CustomId.pattern.test(customId)
      ? `custom_id "${customId.slice(0, 80)}" does not match ${CustomId.pattern.source}`
      : provider.limits.oneModelPerShard && request.model !== stage.model
      ? `model "${request.model}" differs from the stage's model "${stage.model}" (${provider.name} takes one model per batch)`
      : undefined
    if (problem !== undefined) {
      reject({ location: loc, message: problem, code: "invalid_request", customId, key })
      return undefined
    }
    // The request's digest covers all of it (model, params, schema, messages): hashing it
    // again with the provider's namespace keys the cache without serialising the request twice.
    const ck = caching ? ResponseCache.key(namespace, digest) : undefined
    // An unchanged request of the generation before an accepted pipeline change has the same
    // custom_id (when the stage derives it from the request).
    const cached =
      (ck === undefined ? undefined : ctx.cache.read(ck)) ??
      (carry === undefined || stageCustomId !== undefined ? undefined : ctx.cache.read(ResponseCache.key(carry, customId)))
    let line = ""
    if (cached === undefined) {
      try {
        line = provider.encode(request, customId)
      } catch (e) {
        // A request the provider cannot express (an image in an assistant turn, say) fails its row.
        reject({ location: loc, message: `the request cannot be encoded: ${errorText(e)}`, code: "invalid_request", customId, key })
        return undefined
      }
    }
    const lineBytes = cached === undefined ? Buffer.byteLength(line) + 1 : 0
    if (lineBytes > maxBytes) {
      reject({ location: loc, message: `request is ${lineBytes} bytes, over the shard limit of ${maxBytes} bytes`, code: "oversize", customId, key })
      return undefined
    }
    // A request the model cannot take is refused by the provider: fail it here, unsent.
    const window = cached === undefined ? windowOf(request.model) : undefined
    const overflow = window === undefined ? undefined : ContextWindow.check(request, lineBytes, window)
    if (overflow !== undefined) {
      reject({ location: loc, message: ContextWindow.describe(request.model, overflow), code: "context_length", customId, key })
      return undefined
    }
    // The sidecar line (a RowLine), built as text: a million rows should not cost a million
    // intermediate objects. Collector.rowId and sidecarCacheKey rely on `id` first and `ck` last but `c`.
    let rowLine = `{"id":${JSON.stringify(customId)},"key":${JSON.stringify(key)},"loc":${JSON.stringify(loc)},"input":${JSON.stringify(row) ?? "null"}`
    if (upstream !== undefined) rowLine += `,"src":${JSON.stringify(upstream.src) ?? "null"},"lin":${JSON.stringify(upstream.lin)}`
    if (ck !== undefined) rowLine += `,"ck":"${ck}"`
    rowLine += cached === undefined ? "}" : cachedEnding
    // The stored answer is a JSON object: it becomes a result line by adding its custom_id.
    const answer = cached === undefined ? undefined : `{"_tag":"Succeeded","customId":${JSON.stringify(customId)},${cached.slice(1)}`
    const tokens = countTokens && cached === undefined ? requestTokens(request).tokens : 0
    if (tokenLimit !== undefined && tokens > tokenLimit) {
      reject({ location: loc, message: `request is ${tokens} input tokens, over the enqueued-token limit of ${tokenLimit}`, code: "oversize", customId, key })
      return undefined
    }
    return { customId, identity: stageCustomId ?? key, digest, line, lineBytes, request, tokens, rowLine, answer }
  }

  const empty = { count: 0, cachedRows: 0, bytes: 0, tokens: 0 }
  const fits = (
    shard: { readonly count: number; readonly cachedRows: number; readonly bytes: number; readonly tokens: number },
    group: ReadonlyArray<Candidate>
  ): boolean => {
    let count = shard.count
    let cachedRows = shard.cachedRows
    let bytes = shard.bytes
    let tokens = shard.tokens
    for (const c of group) {
      if (c.answer === undefined) count++
      else cachedRows++
      bytes += c.lineBytes
      tokens += c.tokens
    }
    return count <= maxRequests && cachedRows <= maxRequests && bytes <= maxBytes && (tokenLimit === undefined || tokens <= tokenLimit)
  }

  const write = (shard: OpenShard, c: Candidate, loc: string): Effect.Effect<void, unknown> | undefined => {
    let full = false
    if (shard.keys !== undefined) {
      // Its position is its line in the row sidecar; repeats are found once the source is planned.
      full = shard.keys.append(DuplicateKeys.keyRecord(c.identity, c.digest, shard.seq, shard.count + shard.cachedRows, loc))
    } else {
      if (shard.ids.has(c.customId)) {
        if (first) return Effect.fail(new DuplicateRow({ customId: c.customId, location: loc }))
        // In a later stage the rows come from paid answers (a list naming one item twice, say):
        // the repeat fails alone rather than stranding the run.
        reject({ location: loc, message: `its key repeats an earlier row's (custom_id ${c.customId})`, code: "duplicate_row", customId: c.customId, key: null })
        return undefined
      }
      shard.ids.add(c.customId)
    }
    if (c.answer === undefined) {
      shard.count++
      shard.bytes += c.lineBytes
      // Tokenizing costs time on every row: only a run with a budget (or an online budget) needs the counts.
      shard.tokens += c.tokens
      shard.hash.update(c.line)
      shard.hash.update("\n")
      full = shard.requests.append(c.line) || full
    } else {
      shard.cachedRows++
      full = shard.answers!.append(c.answer) || full
    }
    full = shard.rows.append(c.rowLine) || full
    Failpoint.hit("plan-row")
    return full
      ? Effect.all([shard.requests.flush, shard.rows.flush, shard.answers?.flush ?? Effect.void, shard.keys?.flush ?? Effect.void], { discard: true })
      : undefined
  }

  /**
   * Adds the rows of one item (several when a transform fans out) to one shard together, so
   * that a shard's position never splits an item. Synchronous unless there is I/O to do.
   */
  const add = (group: ReadonlyArray<Candidate>, at: number, loc: string): Effect.Effect<void, unknown, FileSystem.FileSystem> | undefined => {
    if (group.length === 0) return undefined
    if (current !== undefined && fits(current, group)) {
      if (group.length === 1) return write(current, group[0]!, loc)
      return writeAll(current, group, loc)
    }
    if (!fits(empty, group)) {
      // Too many for any shard: rejected without touching the open shard.
      for (const c of group) {
        reject({
          location: loc,
          message: `the row fans out into ${group.length} requests, more than one shard holds`,
          code: "fanout_too_large",
          customId: c.customId,
          key: null
        })
      }
      return undefined
    }
    return Effect.gen(function* () {
      yield* close(at)
      const shard = yield* openShard
      current = shard
      yield* writeAll(shard, group, loc)
    })
  }

  const writeAll = (shard: OpenShard, group: ReadonlyArray<Candidate>, loc: string) =>
    Effect.gen(function* () {
      for (const c of group) {
        const io = write(shard, c, loc)
        if (io !== undefined) yield* io
      }
    })

  return {
    prepare,
    add,
    close,
    reject,
    /**
     * Runs `f` (which prepares an item's rows) and `add` for what it returns, queueing the
     * rows `f` rejected only after the add: a shard closed by the add claims positions before
     * this item, so its rejections must go with a later event.
     */
    addItem: (at: number, loc: string, f: () => ReadonlyArray<Candidate>) => {
      const mark = rejected.length
      const group = f()
      const held = rejected.splice(mark)
      const io = add(group, at, loc)
      if (held.length === 0) return io
      if (io === undefined) {
        rejected.push(...held)
        return undefined
      }
      return Effect.tap(io, () => Effect.sync(() => void rejected.push(...held)))
    },
    /** Journals a later stage's position when no shard closed there (rows all rejected). */
    finishInbox: (at: number) =>
      Effect.gen(function* () {
        yield* close(at)
        if (rejected.length === 0 && (state.stages.get(stage.name)?.consumed ?? 0) >= at) return
        yield* withRejected((invalid, offsets) => ctx.record({ _tag: "StagePlanned", stage: stage.name, inboxOffset: at, invalid, offsets }))
      }),
    finishSource: (at: number, sourceFiles: ReadonlyArray<SourceFile>) =>
      Effect.gen(function* () {
        yield* close(at)
        yield* withRejected((invalid, offsets) =>
          ctx.record({ _tag: "PlanComplete", sourceOffset: at, invalid, offsets, ...(sourceFiles.length > 0 ? { sourceFiles } : {}) })
        )
      })
  }
}

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e))

/** Plans the rest of the source into the first stage; `onShard` receives each shard id once it is journaled. */
export const plan = (ctx: RunContext, outputs: Outputs, onShard: (shard: string) => Effect.Effect<void>) =>
  Effect.gen(function* () {
    const { pipeline, state } = ctx
    const rt = ctx.stages[0]!
    const source = pipeline.source!
    const skip = state.sourceOffset
    const userKey = pipeline.key
    const contentKey = CustomId.contentKeys()
    const pack = packer(ctx, outputs, rt, onShard)
    const fansOut = rt.before.length > 0
    const stageCustomId = rt.stage.customId

    let index = 0 // source items seen, including the skipped prefix
    const sourceFiles = yield* SourceFiles.record(source.paths ?? [])

    /**
     * One source item. Runs synchronously and returns an Effect only when there is I/O to do
     * (a shard to close or open, a buffer to flush, a failure): a million rows should not cost
     * a million Effects.
     */
    const step = (item: SourceItem<unknown>, i: number): Effect.Effect<void, unknown, FileSystem.FileSystem> | undefined => {
      if (item._tag === "Invalid") {
        if (i < skip) return undefined
        if (pipeline.onInvalid === "fail") {
          return Effect.fail(new InvalidInput({ location: item.location, description: item.message }))
        }
        pack.reject({ location: item.location, message: item.message, code: "invalid_input", customId: null, key: null })
        return undefined
      }
      const row = item.row
      // Content keys must see the skipped prefix too: their occurrence counters depend on it.
      const key = userKey !== undefined ? userKey(row) : contentKey(Hash.sha256(JSON.stringify(row)))
      if (i < skip) return undefined
      if (!fansOut) {
        const c = pack.prepare(row, key, item.location, undefined, stageCustomId?.(row))
        return c === undefined ? undefined : pack.add([c], i, item.location)
      }
      const transformFailed = (e: unknown) =>
        void pack.reject({ location: item.location, message: `transform failed: ${errorText(e)}`, code: "transform_error", customId: null, key })
      const addChildren = (children: Pipeline.LinkRows) =>
        pack.addItem(i, item.location, () => {
          const group: Array<Candidate> = []
          for (const [childKey, child] of children) {
            const c = pack.prepare(child, childKey, item.location, { src: row, lin: [] }, stageCustomId?.(child))
            if (c !== undefined) group.push(c)
          }
          return group
        })
      let children: Pipeline.LinkRows | Effect.Effect<Pipeline.LinkRows, unknown>
      try {
        children = Pipeline.applyLink(rt.before, key, row, row)
      } catch (e) {
        return transformFailed(e)
      }
      if (!Effect.isEffect(children)) return addChildren(children)
      return Effect.flatMap(Effect.exit(children), (exit) =>
        Exit.isSuccess(exit) ? addChildren(exit.value) ?? Effect.void
        : Cause.isInterruptedOnly(exit.cause) ? Effect.failCause(exit.cause)
        : Effect.sync(() => transformFailed(Cause.squash(exit.cause)))
      )
    }

    yield* source.rows.pipe(
      Stream.runForEachChunk((chunk) =>
        Effect.gen(function* () {
          for (const item of Chunk.toReadonlyArray(chunk)) {
            const io = step(item, index++)
            if (io !== undefined) yield* io
          }
        })
      )
    )
    yield* pack.finishSource(index, sourceFiles)
  })

/**
 * Plans a later stage's inbox from where its planning stopped to its committed length.
 * Called after each upstream collection (and on resume), one call at a time per stage.
 */
export const planInbox = (ctx: RunContext, outputs: Outputs, rt: StageRuntime, onShard: (shard: string) => Effect.Effect<void>) =>
  Effect.gen(function* () {
    const name = rt.stage.name
    const from = ctx.state.stages.get(name)?.consumed ?? 0
    const to = ctx.state.offsets.inbox?.[name] ?? 0
    if (from >= to) return
    const pack = packer(ctx, outputs, rt, onShard)
    const stageCustomId = rt.stage.customId
    let at = from
    yield* lines(ctx.paths.inbox(name), { offset: from, bytesToRead: to - from }).pipe(
      Stream.runForEachChunk((chunk) =>
        Effect.gen(function* () {
          for (const text of Chunk.toReadonlyArray(chunk)) {
            const here = at
            at += Buffer.byteLength(text) + 1
            const row = JSON.parse(text) as InboxLine
            const c = pack.prepare(row.input, row.key, row.loc, { src: row.src, lin: row.lin }, stageCustomId?.(row.input))
            if (c === undefined) continue
            const io = pack.add([c], here, row.loc)
            if (io !== undefined) yield* io
          }
        })
      )
    )
    yield* pack.finishInbox(to)
  })

/**
 * Planning: source rows → rendered requests → custom_ids → shard files, packed to the
 * tightest of the provider's limits and the run's settings (requests and bytes; one model
 * and one endpoint per shard by construction: one stage per pipeline). Each shard is
 * journaled once its files are on disk and handed on at once, so submission overlaps
 * planning. On resume, the source items already planned are skipped.
 */
import type { FileSystem } from "@effect/platform"
import { CustomId, Hash } from "@sluice/core"
import type { SourceItem } from "@sluice/core"
import { Chunk, Effect, Exit, Schema, Scope, Stream } from "effect"
import { createHash } from "node:crypto"
import { requestTokens } from "./Estimate.js"
import * as Failpoint from "./internal/Failpoint.js"
import * as LineFile from "./internal/LineFile.js"
import type { Offsets } from "./JournalEvent.js"
import type { Outputs } from "./Outputs.js"
import type { RunContext } from "./RunContext.js"

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

/** Shard ids: `<stage>-00001`; a retry of a shard appends `-a<attempt>`. */
export const shardId = (stage: string, seq: number): string => `${stage}-${String(seq).padStart(5, "0")}`

interface OpenShard {
  readonly id: string
  readonly scope: Scope.CloseableScope
  readonly requests: LineFile.LineFile
  readonly rows: LineFile.LineFile
  readonly hash: ReturnType<typeof createHash>
  readonly ids: Set<string>
  count: number
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

/** Plans the rest of the source; `onShard` receives each shard id once it is journaled. */
export const plan = (ctx: RunContext, outputs: Outputs, onShard: (shard: string) => Effect.Effect<void>) =>
  Effect.gen(function* () {
    const { stage, provider, pipeline, settings, state } = ctx
    const source = pipeline.source!
    const maxRequests = Math.max(1, Math.min(settings.shardSize, provider.limits.maxRequests))
    const maxBytes = Math.min(settings.shardBytes, provider.limits.maxBytes)
    const skip = state.sourceOffset
    const userKey = pipeline.key
    const contentKey = CustomId.contentKeys()
    const countTokens = settings.budget !== undefined

    let index = 0 // source items seen, including the skipped prefix
    let seq = [...state.shards.values()].filter((s) => s.parent === null).length
    let current: OpenShard | undefined
    let rejected: Array<Rejected> = []

    const openShard = Effect.gen(function* () {
      seq++
      const id = shardId(stage.name, seq)
      const scope = yield* Scope.make()
      const requests = yield* LineFile.open(ctx.paths.shardFile(id), 0).pipe(Scope.extend(scope))
      const rows = yield* LineFile.open(ctx.paths.rowsFile(id), 0).pipe(Scope.extend(scope))
      return { id, scope, requests, rows, hash: createHash("sha256"), ids: new Set<string>(), count: 0, bytes: 0, tokens: 0 }
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

    /** Closes the open shard; `sourceOffset` counts every item before the one being handled. */
    const closeShard = (sourceOffset: number) =>
      Effect.gen(function* () {
        const shard = current
        if (shard === undefined) return
        current = undefined
        yield* shard.requests.sync
        yield* shard.rows.sync
        yield* Scope.close(shard.scope, Exit.void)
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
            sourceOffset,
            invalid,
            offsets,
            ...(countTokens ? { inputTokens: shard.tokens } : {})
          })
        )
        yield* onShard(shard.id)
      })

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
        rejected.push({ location: item.location, message: item.message, code: "invalid_input", customId: null, key: null })
        return undefined
      }
      const row = item.row
      // Content keys must see the skipped prefix too: their occurrence counters depend on it.
      const key = userKey !== undefined ? userKey(row) : contentKey(Hash.sha256(JSON.stringify(row)))
      if (i < skip) return undefined
      const request = stage.render(row)
      const customId = stage.customId !== undefined ? stage.customId(row) : CustomId.make(stage.name, key, stage.requestHash(request))
      const problem =
        !CustomId.pattern.test(customId)
          ? `custom_id "${customId.slice(0, 80)}" does not match ${CustomId.pattern.source}`
          : provider.limits.oneModelPerShard && request.model !== stage.model
          ? `model "${request.model}" differs from the stage's model "${stage.model}" (${provider.name} takes one model per batch)`
          : undefined
      if (problem !== undefined) {
        rejected.push({ location: item.location, message: problem, code: "invalid_request", customId, key })
        return undefined
      }
      const line = provider.encode(request, customId)
      const lineBytes = Buffer.byteLength(line) + 1
      if (lineBytes > maxBytes) {
        rejected.push({
          location: item.location,
          message: `request is ${lineBytes} bytes, over the shard limit of ${maxBytes} bytes`,
          code: "oversize",
          customId,
          key
        })
        return undefined
      }
      const write = (shard: OpenShard): Effect.Effect<void, unknown> | undefined => {
        if (shard.ids.has(customId)) return Effect.fail(new DuplicateRow({ customId, location: item.location }))
        shard.ids.add(customId)
        shard.count++
        shard.bytes += lineBytes
        // Tokenizing costs time on every row: only a run with a budget needs the counts.
        if (countTokens) shard.tokens += requestTokens(request).tokens
        shard.hash.update(line)
        shard.hash.update("\n")
        const full = shard.requests.append(line, lineBytes)
        const rowsFull = shard.rows.append(JSON.stringify({ id: customId, key, loc: item.location, input: row }))
        Failpoint.hit("plan-row")
        return full || rowsFull ? Effect.zipRight(shard.requests.flush, shard.rows.flush) : undefined
      }
      if (current !== undefined && current.count < maxRequests && current.bytes + lineBytes <= maxBytes) return write(current)
      return Effect.gen(function* () {
        if (current !== undefined) yield* closeShard(i)
        current = yield* openShard
        const pending = write(current)
        if (pending !== undefined) yield* pending
      })
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
    yield* closeShard(index)
    yield* withRejected((invalid, offsets) =>
      ctx.record({ _tag: "PlanComplete", sourceOffset: index, invalid, offsets })
    )
  })

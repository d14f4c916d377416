/**
 * A run's files at the provider, deleted once they are no longer needed. After a shard is
 * collected and its outputs committed, its uploaded input and (unless the run keeps them)
 * its output and error files are deleted, then `ProviderFilesDeleted` is journaled. The order
 * is what makes it safe: the rows are on disk before anything at the provider goes, and a
 * crash between the commit and the event leaves the shard listed as holding files, which the
 * next resume deletes again (a file already gone counts as deleted).
 *
 * Batches themselves are left alone: OpenAI cannot delete them, an Anthropic or Gemini batch
 * holds no storage quota and is the provider's record of what was billed, so deleting ended
 * batches is `sluice gc`'s, on request (Gc.ts).
 */
import type { ProviderError } from "@sluice/providers"
import { Effect, Either } from "effect"
import type { JournalIOError } from "./Journal.js"
import * as Poller from "./Poller.js"
import type { BatchContext } from "./RunContext.js"
import type { ShardState } from "./RunState.js"
import { holdsFiles } from "./RunState.js"

/** The files a collected shard holds at the provider: its input, and its batch's output and error files. */
const filesOf = (ctx: BatchContext, shard: ShardState): Effect.Effect<{ input: Array<string>; outputs: Array<string> }, ProviderError> =>
  Effect.gen(function* () {
    const provider = ctx.stageOf(shard.stage).provider
    const storage = provider.storage
    if (storage === undefined) return { input: [], outputs: [] }
    const inputFile = shard.inputRef === null ? null : storage.inputFile(shard.inputRef)
    // The batch's file ids as this process's poll saw them end; after a resume, asked again.
    const seen = Poller.terminalInfo(shard)
    const outputs = shard.batchId === null ? [] : seen !== undefined ? storage.outputFiles(seen) : yield* provider.retrieve(shard.batchId).pipe(
      Effect.map((batch) => storage.outputFiles(batch)),
      // The batch is gone (deleted by gc, or expired from the provider's records): so are its results.
      Effect.catchIf((e) => e.reason === "NotFound", () => Effect.succeed([] as ReadonlyArray<string>))
    )
    return { input: inputFile === null ? [] : [inputFile], outputs: [...outputs] }
  })

/**
 * Deletes a collected shard's files at the provider and journals it. Never fails the run: a
 * deletion that fails is logged, and the shard stays listed as holding files (`status` says
 * so) until a later resume deletes them.
 */
export const release = (ctx: BatchContext, shard: ShardState): Effect.Effect<void, JournalIOError> =>
  Effect.gen(function* () {
    if (!holdsFiles(shard)) return
    const provider = ctx.stageOf(shard.stage).provider
    const deleted = yield* Effect.gen(function* () {
      const { input, outputs } = yield* filesOf(ctx, shard)
      const keep = ctx.settings.keepProviderFiles === true
      const files = keep ? input : [...input, ...outputs]
      const deleteFile = provider.storage?.deleteFile
      if (deleteFile !== undefined) yield* Effect.forEach(files, deleteFile, { discard: true })
      return { files, kept: keep ? outputs : [] }
    }).pipe(Effect.either)
    if (Either.isLeft(deleted)) {
      return yield* Effect.logWarning(
        `shard ${shard.id}: could not delete its files at ${provider.name} (${deleted.left.message}); ` +
          `they stay there until a later resume deletes them`
      )
    }
    yield* ctx.record({ _tag: "ProviderFilesDeleted", shard: shard.id, ...deleted.right })
  })

/**
 * Deletes what `shards` still hold (collected before a crash, or a deletion that failed): see
 * `release`. The caller lists them before anything else runs, so they are never the shards a
 * collection is releasing at the same time.
 */
export const releaseAll = (ctx: BatchContext, shards: ReadonlyArray<ShardState>): Effect.Effect<void, JournalIOError> =>
  Effect.forEach(shards, (shard) => release(ctx, shard), { discard: true, concurrency: 4 })

/**
 * Accepting a changed pipeline (`--allow-changed`): rows whose request is unchanged keep
 * their answers, changed rows get new custom_ids and are submitted. The run's current
 * generation is wound up first — batches in flight are waited for (an orphan of a crashed
 * submission is adopted, never re-created) — and every answer it received, collected or
 * not, is carried over through the response cache under its custom_id (a custom_id names
 * the stage, the row and the hash of its request, so an equal id is an unchanged request).
 * Then its journal, shards and outputs move to `previous/<generation>/`, and the run starts
 * over under a new run id with the changed pipeline; the planner finds the carried answers
 * by custom_id. File sinks are rewritten from scratch; a PostgreSQL table keeps rows whose
 * custom_ids the new pipeline no longer produces.
 *
 * Crash-safe by order: the manifest takes the new fingerprint last, so a crash anywhere
 * before leaves a run that `--allow-changed` winds up again (answers already carried are not
 * stored twice; files already moved stay moved).
 */
import * as FileSystem from "@effect/platform/FileSystem"
import type { Pipeline } from "@sluice/core"
import type { BatchResult } from "@sluice/core"
import type { BatchProvider } from "@sluice/providers"
import { Effect, Stream } from "effect"
import * as Failpoint from "./internal/Failpoint.js"
import * as PrivateFiles from "./internal/PrivateFiles.js"
import * as JournalStore from "./JournalStore.js"
import { lines } from "./internal/lines.js"
import * as Poller from "./Poller.js"
import * as Pricing from "./Pricing.js"
import * as ResponseCache from "./ResponseCache.js"
import type { RunContext, RunSettings, StageRuntime } from "./RunContext.js"
import * as RunDir from "./RunDir.js"
import * as RunState from "./RunState.js"
import * as Submitter from "./Submitter.js"

/** The cache namespace of the answers a generation carries over, found by custom_id. */
export const carryNamespace = (runId: string): string => `carry ${runId}`

/** What moves to `previous/<generation>/` besides its journal: everything of a generation but its manifest and lock. */
const generationFiles = (paths: RunDir.RunPaths) => [
  paths.results,
  paths.failures,
  paths.outputs,
  paths.shards,
  paths.stages,
  paths.keys,
  paths.duplicateKeys
]

const carry = (ctx: RunContext, namespace: string, result: BatchResult) => {
  if (result._tag !== "Succeeded") return Effect.void
  const full = ctx.cache.putEncoded(ResponseCache.key(namespace, result.customId), ResponseCache.encodeAnswer(result))
  return full ? ctx.cache.flush : Effect.void
}

/**
 * Waits for one shard's batch (adopting it if a crash lost its creation) and carries its
 * answers. Detached, asks once: false while the batch is still running.
 */
const windUp = (ctx: RunContext, shard: RunState.ShardState, namespace: string) =>
  Effect.gen(function* () {
    if (shard.online) {
      // An online shard's answers are in its file; requests not sent yet are simply not sent.
      const fs = yield* FileSystem.FileSystem
      const file = ctx.paths.onlineFile(shard.id)
      if (yield* fs.exists(file)) {
        yield* lines(file).pipe(Stream.runForEach((text) => carry(ctx, namespace, JSON.parse(text) as BatchResult)))
      }
      return true
    }
    if (shard.phase === "intent" || shard.phase === "staged") {
      // Without an orphan nothing was created: nothing was paid for, nothing to wait for.
      if (!(yield* Submitter.adoptOrphan(ctx, shard))) return true
    }
    if (shard.phase === "created" && !(yield* Poller.poll(ctx, shard, () => {}, ctx.settings.detach))) return false
    if (shard.phase !== "terminal" || shard.batchId === null) return true
    const provider = ctx.stageOf(shard.stage).provider
    const info = yield* provider.retrieve(shard.batchId)
    yield* provider.results(info).pipe(Stream.runForEach((result) => carry(ctx, namespace, result)))
    return true
  })

/**
 * Winds up the current generation and starts the next; returns the new manifest, or
 * undefined when (detached) batches of the current one are still running.
 */
export const rebase = (options: {
  readonly paths: RunDir.RunPaths
  readonly manifest: RunDir.Manifest
  readonly fingerprint: string
  readonly pipeline: Pipeline.Pipeline<any, any>
  readonly cache: ResponseCache.ResponseCache
  readonly settings: RunSettings
  readonly providerOf: (name: string) => Effect.Effect<BatchProvider, unknown>
}) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const { paths, manifest } = options
    const generation = manifest.generation ?? 1
    const namespace = carryNamespace(manifest.runId)
    const state = yield* JournalStore.replay(paths).pipe(Stream.runFold(RunState.empty(), RunState.apply))
    // The old generation's shards need only their providers: nothing is decoded or sunk.
    const runtimes = new Map<string, StageRuntime>()
    for (const s of state.shards.values()) {
      if (runtimes.has(s.stage)) continue
      runtimes.set(s.stage, {
        index: 0,
        stage: { name: s.stage } as Pipeline.BatchStage<any, any>,
        provider: yield* options.providerOf(s.provider),
        before: [],
        after: [],
        next: null,
        cacheNamespace: undefined
      })
    }
    const journal = yield* JournalStore.open(paths)
    const ctx: RunContext = {
      runId: manifest.runId,
      paths,
      pipeline: options.pipeline,
      stages: [...runtimes.values()],
      stageOf: (name) => runtimes.get(name)!,
      cache: options.cache,
      state,
      settings: options.settings,
      // Winding up plans nothing: no request is measured against a context window here.
      prices: Pricing.builtin,
      createLock: yield* Effect.makeSemaphore(1),
      record: (event) => journal.append(event).pipe(Effect.map(() => void RunState.apply(state, event)))
    }
    const open = [...state.shards.values()].filter(
      (s) => s.phase === "intent" || s.phase === "staged" || s.phase === "created" || s.phase === "online" || s.phase === "terminal"
    )
    if (open.length > 0) {
      yield* Effect.logInfo(`the pipeline changed: waiting for ${open.length} batch(es) of the run so far, to keep their answers`)
      const done = yield* Effect.forEach(open, (s) => windUp(ctx, s, namespace), { concurrency: options.settings.concurrency })
      if (done.some((d) => !d)) return undefined
    }
    // Every answer collected so far, served from the cache or not. (After a crash mid-move
    // the journal has gone ahead to the archive: its answers were carried before it went.)
    let at = 0
    if (state.offsets.results > 0) yield* lines(paths.results).pipe(
      Stream.runForEach((text) => {
        const line = at
        at += Buffer.byteLength(text) + 1
        return line < state.offsets.results ? carry(ctx, namespace, JSON.parse(text) as BatchResult) : Effect.void
      })
    )
    yield* ctx.cache.flush

    const archive = `${paths.root}/previous/${generation}`
    yield* PrivateFiles.makeDirectory(archive)
    yield* JournalStore.archive(paths, archive)
    Failpoint.hit("rebase-moved")
    for (const file of generationFiles(paths)) {
      if (!(yield* fs.exists(file))) continue
      const target = `${archive}/${file.slice(paths.root.length + 1)}`
      if (yield* fs.exists(target)) {
        // Moved before a crash; what is here now was recreated empty since (the shards
        // directory, an empty journal).
        const info = yield* fs.stat(file)
        const empty = info.type === "Directory" ? (yield* fs.readDirectory(file)).length === 0 : info.size === BigInt(0)
        if (!empty) return yield* Effect.dieMessage(`${file} and ${target} both exist: move one of them away and run again`)
        yield* fs.remove(file, { recursive: true })
        continue
      }
      yield* fs.rename(file, target)
      Failpoint.hit("rebase-moved")
    }
    yield* PrivateFiles.makeDirectory(paths.shards)
    const base = manifest.runId.replace(/-g\d+$/, "")
    const next: RunDir.Manifest = {
      ...manifest,
      fingerprint: options.fingerprint,
      stages: options.pipeline.stages.map((s) => {
        // A stage that keeps its provider keeps its binding (the runner records the others).
        const binding = manifest.stages.find((b) => b.name === s.name && b.provider === s.provider)?.binding
        return { name: s.name, provider: s.provider, model: s.model, ...(binding === undefined ? {} : { binding }) }
      }),
      sink: options.pipeline.sink?.name ?? null,
      // A new run id: batch metadata of the old generation can never be taken for the new one's.
      runId: `${base}-g${generation + 1}`,
      generation: generation + 1,
      carriedFrom: manifest.runId
    }
    yield* RunDir.writeManifest(paths, next)
    return next
  }).pipe(Effect.scoped)

/**
 * Accepting a changed pipeline (`--allow-changed`): rows whose request is unchanged keep
 * their answers, changed rows get new custom_ids and are submitted. The run's current
 * generation is wound up first — batches in flight are waited for (an orphan of a crashed
 * submission is adopted, never re-created) and their answers stored in the response cache —
 * then its journal, shards and outputs move to `previous/<generation>/`, and the run starts
 * over under a new run id with the changed pipeline, answering every unchanged request from
 * the cache. File sinks are rewritten from scratch; a PostgreSQL table keeps rows whose
 * custom_ids the new pipeline no longer produces.
 *
 * Crash-safe by order: the manifest takes the new fingerprint last, so a crash anywhere
 * before leaves a run that `--allow-changed` winds up again (answers already cached are not
 * stored twice; files already moved are not moved again).
 */
import { FileSystem } from "@effect/platform"
import type { Pipeline } from "@sluice/core"
import type { BatchProvider } from "@sluice/providers"
import { Effect, Stream } from "effect"
import * as Journal from "./Journal.js"
import { lines } from "./internal/lines.js"
import * as Poller from "./Poller.js"
import type { RowLine } from "./Planner.js"
import type { ResponseCache } from "./ResponseCache.js"
import type { RunContext, RunSettings, StageRuntime } from "./RunContext.js"
import * as RunDir from "./RunDir.js"
import * as RunState from "./RunState.js"
import * as Submitter from "./Submitter.js"

/** What moves to `previous/<generation>/`: everything of a generation but its manifest and lock. */
const generationFiles = (paths: RunDir.RunPaths) => [paths.journal, paths.results, paths.failures, paths.outputs, paths.shards, paths.stages]

/** Waits for one shard's batch (adopting it if a crash lost its creation) and caches its answers. */
const windUp = (ctx: RunContext, shard: RunState.ShardState) =>
  Effect.gen(function* () {
    if (shard.phase === "intent" || shard.phase === "staged") {
      // Without an orphan nothing was created: nothing was paid for, nothing to wait for.
      if (!(yield* Submitter.adoptOrphan(ctx, shard))) return
    }
    if (shard.phase === "created") yield* Poller.poll(ctx, shard, () => {})
    if (shard.phase !== "terminal" || shard.batchId === null) return
    const keys = new Map<string, string>()
    yield* lines(ctx.paths.rowsFile(shard.id)).pipe(
      Stream.runForEach((text) =>
        Effect.sync(() => {
          const row = JSON.parse(text) as RowLine
          if (row.ck !== undefined && row.c === undefined) keys.set(row.id, row.ck)
        })
      )
    )
    const provider = ctx.stageOf(shard.stage).provider
    const info = yield* provider.retrieve(shard.batchId)
    yield* provider.results(info).pipe(
      Stream.runForEach((result) =>
        Effect.suspend(() => {
          const ck = result._tag === "Succeeded" ? keys.get(result.customId) : undefined
          if (result._tag !== "Succeeded" || ck === undefined) return Effect.void
          const full = ctx.cache.put(ck, { text: result.text, finishReason: result.finishReason, usage: result.usage, raw: result.raw })
          return full ? ctx.cache.flush : Effect.void
        })
      )
    )
    yield* ctx.cache.flush
  })

export const rebase = (options: {
  readonly paths: RunDir.RunPaths
  readonly manifest: RunDir.Manifest
  readonly fingerprint: string
  readonly pipeline: Pipeline.Pipeline<any, any>
  readonly cache: ResponseCache
  readonly settings: RunSettings
  readonly providerOf: (name: string) => Effect.Effect<BatchProvider, unknown>
}) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const { paths, manifest } = options
    const generation = manifest.generation ?? 1
    const state = yield* Journal.replay(paths.journal).pipe(Stream.runFold(RunState.empty(), RunState.apply))
    const open = [...state.shards.values()].filter(
      (s) => s.phase === "intent" || s.phase === "staged" || s.phase === "created" || s.phase === "terminal"
    )
    if (open.length > 0) {
      yield* Effect.logInfo(`the pipeline changed: waiting for ${open.length} batch(es) of the run so far, to keep their answers`)
      // The old generation's shards need only their providers: nothing is decoded or sunk.
      const runtimes = new Map<string, StageRuntime>()
      for (const s of open) {
        if (runtimes.has(s.stage)) continue
        runtimes.set(s.stage, {
          index: 0,
          stage: { name: s.stage } as Pipeline.BatchStage<any, any>,
          provider: yield* options.providerOf(s.provider),
          before: [],
          after: [],
          next: null,
          cacheNamespace: ""
        })
      }
      const journal = yield* Journal.open(paths.journal)
      const ctx: RunContext = {
        runId: manifest.runId,
        paths,
        pipeline: options.pipeline,
        stages: [...runtimes.values()],
        stageOf: (name) => runtimes.get(name)!,
        cache: options.cache,
        state,
        settings: options.settings,
        createLock: yield* Effect.makeSemaphore(1),
        record: (event) => journal.append(event).pipe(Effect.map(() => void RunState.apply(state, event)))
      }
      yield* Effect.forEach(open, (s) => windUp(ctx, s), { concurrency: options.settings.concurrency, discard: true })
    }
    const archive = `${paths.root}/previous/${generation}`
    yield* fs.makeDirectory(archive, { recursive: true })
    for (const file of generationFiles(paths)) {
      if (yield* fs.exists(file)) yield* fs.rename(file, `${archive}/${file.slice(paths.root.length + 1)}`)
    }
    yield* fs.makeDirectory(paths.shards, { recursive: true })
    const base = manifest.runId.replace(/-g\d+$/, "")
    const next: RunDir.Manifest = {
      ...manifest,
      fingerprint: options.fingerprint,
      stages: options.pipeline.stages.map((s) => ({ name: s.name, provider: s.provider, model: s.model })),
      sink: options.pipeline.sink?.name ?? null,
      // A new run id: batch metadata of the old generation can never be taken for the new one's.
      runId: `${base}-g${generation + 1}`,
      generation: generation + 1
    }
    yield* RunDir.writeManifest(paths, next)
    return next
  }).pipe(Effect.scoped)

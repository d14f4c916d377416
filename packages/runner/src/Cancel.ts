/**
 * Cancelling a run from its directory alone (`sluice cancel`). The journal says which batches
 * are in flight, the manifest which provider identity each stage is bound to; the providers
 * come from the registry by name. Nothing the run directory names is loaded — no pipeline
 * file, no Schema — so cancelling runs no code from it, and works whatever its pipeline file
 * holds now.
 *
 * Each batch in flight is cancelled and polled until the provider has stopped it, and its
 * terminal status journaled; a shard not submitted yet is journaled as rejected (`cancelled`)
 * after adopting a batch a crash may have left for it. An online shard (its requests sent by
 * the run's own process, which holds no lock any more) is ended where its online file stands:
 * its answers are kept, its unsent rows end `cancelled` (OnlineExecutor.cancel). Collecting what the cancelled batches
 * finished needs the pipeline (its Schemas decode the answers, its sink takes them): the next
 * `resume` does it, loading the pipeline file the run recorded. Rows of a cancelled batch are
 * never resubmitted by it: they end failed (`cancelled`, or their own class) for `retry`.
 * (`Runner.cancel`, given the pipeline by its caller, collects at once.)
 */
import * as Path from "@effect/platform/Path"
import { ProviderIdentity, Providers } from "@sluice/providers"
import type { BatchProvider } from "@sluice/providers"
import { Effect } from "effect"
import type { Duration } from "effect"
import * as JournalStore from "./JournalStore.js"
import * as OnlineExecutor from "./OnlineExecutor.js"
import type * as LockFile from "./internal/LockFile.js"
import * as RunLock from "./internal/RunLock.js"
import * as Poller from "./Poller.js"
import type * as Pricing from "./Pricing.js"
import * as ProviderBinding from "./ProviderBinding.js"
import type { BatchContext } from "./RunContext.js"
import * as RunDir from "./RunDir.js"
import { defaultSettings, loadState, remotePollFloor, summarize } from "./Runner.js"
import type { RunObserver, RunSummary } from "./Runner.js"
import * as RunState from "./RunState.js"
import * as Settings from "./Settings.js"
import * as Submitter from "./Submitter.js"
import * as Telemetry from "./Telemetry.js"

export interface CancelOptions {
  /** A fixed wait between status polls of a cancelled batch (at least a second against a remote provider); default: adaptive. */
  readonly pollInterval?: Duration.Duration
  /** The adaptive schedule's longest wait between polls (default 30 s). */
  readonly maxPollInterval?: Duration.Duration
  /** How long a batch that completed without an output file is waited for (see `RunSettings`). */
  readonly outputFileWait?: Duration.Duration
  /** Batches cancelled and polled at once (default 4). */
  readonly concurrency?: number
  /** Take over a lock of another host, or one that names no process (see `RunOptions.breakLock`). */
  readonly breakLock?: boolean
  /**
   * Held by `sluice cancel --cluster` while it holds the run's lock in the cluster's database
   * (Cluster.ts): a lock file a dead step of another host left is taken over, as a step does.
   */
  readonly clusterLock?: LockFile.ClusterMark
  /** Prices for the summary's cost. */
  readonly prices?: Pricing.Prices
  readonly observer?: RunObserver
}

export interface CancelSummary extends RunSummary {
  /** Where the run's outputs go: its sink, or outputs.jsonl in the run directory. */
  readonly output: string
  /**
   * What this call did: batches that ended cancelled, batches that had ended on their own
   * first, shards never submitted, online shards stopped with rows unsent.
   */
  readonly cancel: { readonly cancelled: number; readonly ended: number; readonly unsubmitted: number; readonly online: number }
}

/** Cancels every batch of the run in `runDir` still in flight and waits until the provider has stopped them. */
export const fromJournal = (runDir: string, options: CancelOptions = {}) =>
  Effect.scoped(
    Effect.gen(function* () {
      const invalid = Settings.problems(options)
      if (invalid.length > 0) return yield* new Settings.InvalidSettings({ problems: invalid })
      const path = yield* Path.Path
      const paths = RunDir.paths(path.resolve(runDir), path)
      // A directory without a run is said so before a lock file is written into it.
      yield* RunDir.readManifest(paths)
      yield* RunLock.acquire(paths.lock, { breakLock: options.breakLock === true, ...(options.clusterLock === undefined ? {} : { cluster: options.clusterLock }) })
      const providers = yield* Providers
      const manifest = yield* ProviderBinding.check({
        paths,
        manifest: yield* RunDir.readManifest(paths),
        currentOf: (name) => providers.get(name).pipe(Effect.map(ProviderIdentity.of), Effect.option),
        rebind: false
      })
      yield* Effect.annotateCurrentSpan({ "sluice.pipeline": manifest.pipeline, "sluice.run_id": manifest.runId, "sluice.run_dir": paths.root })
      const state = yield* loadState(paths)
      const open = RunState.openShards(state).filter(
        (s) => s.phase === "planned" || s.phase === "intent" || s.phase === "staged" || s.phase === "created" || s.phase === "online"
      )
      // The providers of the stages with batches (or maybe, after a crash), as configured now
      // (their identity checked above); a shard only planned needs none.
      const byName = new Map<string, BatchProvider>()
      const byStage = new Map<string, BatchProvider>()
      for (const shard of open) {
        if (shard.phase === "planned" || shard.phase === "online") continue
        if (!byName.has(shard.provider)) byName.set(shard.provider, yield* providers.get(shard.provider))
        byStage.set(shard.stage, byName.get(shard.provider)!)
      }
      const settings = yield* remotePollFloor(
        {
          ...defaultSettings,
          ...(options.pollInterval === undefined ? {} : { pollInterval: options.pollInterval }),
          ...(options.maxPollInterval === undefined ? {} : { maxPollInterval: options.maxPollInterval }),
          ...(options.outputFileWait === undefined ? {} : { outputFileWait: options.outputFileWait }),
          ...(options.concurrency === undefined ? {} : { concurrency: options.concurrency })
        },
        [...byName.values()].map((provider) => ({ provider }))
      )
      const journal = yield* JournalStore.open(paths)
      const observer = options.observer ?? {}
      observer.started?.(state)
      const ctx: BatchContext = {
        runId: manifest.runId,
        paths,
        state,
        settings,
        stageOf: (stage) => ({ provider: byStage.get(stage)! }),
        record: (event) =>
          journal.append(event).pipe(
            Effect.map(() => {
              RunState.apply(state, event)
              observer.event?.(event, state)
            })
          )
      }
      const done = { cancelled: 0, ended: 0, unsubmitted: 0, online: 0 }
      yield* Effect.forEach(
        open,
        (shard) =>
          Effect.gen(function* () {
            if (shard.phase === "online") {
              yield* OnlineExecutor.cancel(ctx, shard)
              return void done.online++
            }
            yield* Submitter.withdraw(ctx, shard)
            if (shard.phase === "rejected") return void done.unsubmitted++
            yield* Poller.cancel(ctx, shard, (info) => observer.polled?.(shard.id, info))
            if (shard.status === "cancelled") done.cancelled++
            else done.ended++
          }).pipe(Telemetry.shardSpan("sluice.shard", shard, { when: (s) => s.batchId !== null })),
        { concurrency: settings.concurrency, discard: true }
      )
      const summary = summarize({
        runId: manifest.runId,
        paths,
        state,
        models: manifest.stages.map((s) => s.model),
        ...(options.prices === undefined ? {} : { prices: options.prices })
      })
      const output = manifest.sink ?? paths.outputs
      return { ...summary, output, cancel: done } satisfies CancelSummary
    })
  ).pipe(Effect.withSpan("sluice.run", { attributes: { "sluice.action": "cancel" } }))

/**
 * Running a pipeline: open (or continue) its run directory, plan the source into shards,
 * submit them with at most `concurrency` batches in flight, poll, collect, and reschedule
 * what failed — from whatever point the journal says the run had reached.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Pipeline } from "@sluice/core"
import type { FailureClass } from "@sluice/core"
import { ProviderIdentity, Providers } from "@sluice/providers"
import type { BatchInfo, BatchProvider } from "@sluice/providers"
import { Clock, Deferred, Duration, Effect, Either, Option, Queue, Ref, Schema, Stream, Take } from "effect"
import { randomBytes } from "node:crypto"
import * as Collector from "./Collector.js"
import { checkDefinition, PipelineInvalid } from "./Definition.js"
import * as EnqueuedTokens from "./EnqueuedTokens.js"
import * as Hybrid from "./Hybrid.js"
import * as JournalStore from "./JournalStore.js"
import * as KeptSettings from "./KeptSettings.js"
import * as KeyCheck from "./KeyCheck.js"
import type { JournalEvent } from "./JournalEvent.js"
import * as Modes from "./Modes.js"
import * as OnlineExecutor from "./OnlineExecutor.js"
import * as OnlineLimiter from "./OnlineLimiter.js"
import * as Outputs from "./Outputs.js"
import * as Planner from "./Planner.js"
import * as ProviderBinding from "./ProviderBinding.js"
import * as Pricing from "./Pricing.js"
import * as Rebase from "./Rebase.js"
import * as Recut from "./Recut.js"
import * as Poller from "./Poller.js"
import * as PollSchedule from "./PollSchedule.js"
import * as ResponseCache from "./ResponseCache.js"
import type { RunContext, RunSettings, StageRuntime } from "./RunContext.js"
import * as RunDir from "./RunDir.js"
import { RunDirError } from "./RunDir.js"
import * as RunState from "./RunState.js"
import { loadState } from "./JournalState.js"
import { summarize } from "./RunSummary.js"
import type { RunSummary } from "./RunSummary.js"
import * as Failpoint from "./internal/Failpoint.js"
import * as ProviderFiles from "./ProviderFiles.js"
import { ioProblem } from "./internal/ioError.js"
import * as PrivateFiles from "./internal/PrivateFiles.js"
import type * as LockFile from "./internal/LockFile.js"
import * as RunLock from "./internal/RunLock.js"
import * as RunEvent from "./RunEvent.js"
import * as Retry from "./Retry.js"
import * as Settings from "./Settings.js"
import * as SourceFiles from "./SourceFiles.js"
import * as Submitter from "./Submitter.js"
import * as Telemetry from "./Telemetry.js"
import * as TokenLedger from "./TokenLedger.js"

export { ModeUnsupported } from "./Modes.js"
export { ProviderChanged, RebindRefused } from "./ProviderBinding.js"
export { BaseDirMismatch } from "./RunDir.js"
export type { RunSummary } from "./RunSummary.js"
export { summarize } from "./RunSummary.js"
export { loadState } from "./JournalState.js"
export { checkDefinition, PipelineInvalid } from "./Definition.js"

export class PipelineChanged extends Schema.TaggedError<PipelineChanged>()("PipelineChanged", {
  runDir: Schema.String,
  before: Schema.String,
  after: Schema.String
}) {
  override get message(): string {
    return (
      `the pipeline changed since run ${this.runDir} started (fingerprint ${this.before} → ${this.after}); ` +
      `start a new run directory, or resume anyway with --allow-changed`
    )
  }
}

/** A budget cannot hold back what it cannot price: a model without a price would spend without limit. */
export class UnpricedBudget extends Schema.TaggedError<UnpricedBudget>()("UnpricedBudget", {
  models: Schema.Array(Schema.String),
  /** The flag that needs the prices (default --budget). */
  flag: Schema.optional(Schema.String)
}) {
  override get message(): string {
    const models = this.models.map((m) => `"${m}"`).join(", ")
    return (
      `${this.flag ?? "--budget"} needs a price for every model, and the price table has none for ${models}. ` +
      `Check the model name; or give its prices with --prices FILE (or ${Pricing.envVariable}=FILE): ` +
      `a JSON file like {"models": {${JSON.stringify(this.models[0] ?? "model")}: {"realtime": {"input": 0.15, "cachedInput": 0.075, "output": 0.6}, ` +
      `"batch": {"input": 0.075, "cachedInput": 0.0375, "output": 0.3}}}} (USD per 1M tokens)`
    )
  }
}

/** Observes a run: journaled events and every status poll. For progress displays. */
export interface RunObserver {
  /** The run's state as its journal left it, before this call does anything. */
  readonly started?: (state: RunState.RunState) => void
  readonly event?: (event: JournalEvent, state: RunState.RunState) => void
  readonly polled?: (shard: string, info: BatchInfo) => void
  /** An online shard's progress: how many of its requests have their answer. */
  readonly answered?: (shard: string, answered: number, total: number) => void
  /** Given once the run is under way: asks, at any time, what it waits for (see RunWaits). */
  readonly waits?: (probe: () => RunWaits) => void
}

/** What a run waits for besides the provider, as a display asks it (see Progress.ts). */
export interface RunWaits {
  /** Batches in flight at most (`--concurrency`). */
  readonly concurrency: number
  /** Planned shards that go online, not started yet (two online shards run at a time). */
  readonly onlineQueued: number
  /** Shards held until the source is planned (onInvalid "fail", the duplicate-key check). */
  readonly heldForPlanning: number
  /** Shards held back by `--budget`, and by `--online-budget`. */
  readonly overBudget: number
  readonly overOnlineBudget: number
  /** Shards waiting for their provider and model's enqueued tokens to fall under the limit. */
  readonly enqueuedTokens?: number
  /** Each provider's online limiter: `pausedUntil` (unix ms) after a 429, `window` of `cap` requests at once. */
  readonly limiters: ReadonlyArray<{ readonly provider: string; readonly pausedUntil: number; readonly window: number; readonly cap: number; readonly inFlight: number }>
}

export interface RunOptions extends Partial<Omit<RunSettings, "deadline">> {
  /**
   * Hybrid stages (mode `auto`): how long the batches may take, from when the run is first
   * given a deadline: a Duration, or as the CLI takes it ("90s", "2h", "1h30m"). See Hybrid.ts.
   */
  readonly deadline?: Duration.Duration | string | undefined
  /** The run directory; default `.sluice/runs/<pipeline name>`. */
  readonly runDir?: string
  /**
   * Absolute path of the pipeline file, recorded so `resume` needs only the run directory;
   * on an existing run it replaces the one recorded (`sluice run <file>` names it explicitly).
   */
  readonly pipelineFile?: string
  /** The SHA-256 (hex) of the pipeline file's bytes as loaded: `resume` and `retry` load only a file that has it. */
  readonly pipelineSha256?: string
  /**
   * Take over the run directory's lock although it names a process of another host (which may
   * still run: nothing here can tell) or no process at all. Never a live process of this host.
   */
  readonly breakLock?: boolean
  /**
   * Leave a collected shard's output and error files at the provider (by default they are
   * deleted once its results are committed; its input file is deleted either way). Kept by the
   * run once given (KeptSettings.ts), like `budget`.
   */
  readonly keepProviderFiles?: boolean
  /** Continue a run whose pipeline fingerprint differs from the manifest's. */
  readonly allowChanged?: boolean
  /**
   * Move a run bound to other provider identities (another base URL, Azure resource …) to the
   * providers as configured now. Refused while a batch is in flight; answers collected so far
   * are kept.
   */
  readonly rebindProvider?: boolean
  /** Base URLs of the providers, recorded in the manifest (never keys). */
  readonly providerEndpoints?: Record<string, { baseUrl: string }>
  readonly observer?: RunObserver
  /**
   * How every stage's requests are sent, over the stages' own `mode`: `batch`, `online`, or
   * `auto` (batch where the provider has a batch API, online where it has none). Shards that
   * started one way stay that way. Kept by the run, like `onlineBudget` and `onlineBelow`
   * (KeptSettings.ts): a later call on the run directory that does not give it uses it.
   */
  readonly mode?: Pipeline.Mode
  /**
   * "run" (default) plans and drives the run; "retry" first builds new shards from the rows
   * that ended failed in `retryClasses`; "cancel" cancels every batch in flight, collects
   * their partial results, and submits nothing more.
   */
  readonly action?: "run" | "retry" | "cancel"
  readonly retryClasses?: ReadonlyArray<FailureClass>
  /**
   * The response cache's directory, or false for none. Default: `$SLUICE_CACHE_DIR`, else
   * `.sluice/cache` in the working directory; `SLUICE_CACHE=off` turns it off.
   *
   * Relative paths (this one, `runDir`, and the pipeline's sources and sinks) resolve against
   * `process.cwd()`, which is recorded in the manifest (`baseDir`): a run directory opened
   * from another directory is refused (`BaseDirMismatch`) rather than writing elsewhere.
   */
  readonly cache?: string | false
  /** Prices and context windows by model (default: the built-in table; see `Pricing.load`). */
  readonly prices?: Pricing.Prices
  /**
   * The id a new run directory takes (default: the pipeline's name and random hex). A distributed
   * run chooses it before the run directory exists: it is the workflow's idempotency key.
   */
  readonly runId?: string
  /**
   * One step of a distributed run (Cluster.ts): plan (the source, and the later stages' inboxes)
   * only with `plan`, and drive only the shards in `shards` — each as a detached run does, asked
   * once — leaving the others as the journal has them. Retry shards that a collection plans are
   * left to the next step that names them.
   */
  readonly scope?: { readonly plan: boolean; readonly shards: ReadonlyArray<string> }
  /**
   * The enqueued-token ledger a distributed run shares with every run of its cluster
   * (ClusterLedger.ts), in place of the cache directory's; its entries are leased (TokenLedger.ts).
   */
  readonly tokenLedger?: { readonly store: TokenLedger.Store; readonly leases: TokenLedger.Leases }
  /**
   * A step of a distributed run that holds the run's lock in the cluster's database
   * (ClusterRunLock.ts): its lock records carry this mark, and records of another host with the
   * same mark (steps whose database session ended) are taken over.
   */
  readonly clusterLock?: LockFile.ClusterMark
  /**
   * A distributed run whose files the cluster's database holds (RunFiles.ts): recorded in the
   * manifest of the run this call creates (`files`), `runDir` being this worker's copy.
   */
  readonly files?: "postgres"
}

/** Where the response cache lives for these options (false: no cache). */
export const cacheDir = (options: { readonly cache?: string | false }): string | false => {
  if (options.cache !== undefined) return options.cache
  if (process.env["SLUICE_CACHE"] === "off") return false
  return process.env["SLUICE_CACHE_DIR"] ?? ".sluice/cache"
}

export const defaultSettings: RunSettings = {
  concurrency: Settings.defaultConcurrency.batch,
  onlineConcurrency: Settings.defaultConcurrency.online,
  shardSize: 50_000,
  shardBytes: 190_000_000,
  outputFileWait: Duration.minutes(10),
  detach: false
}

const settingsFor = (options: RunOptions, planned: { readonly maxRequests: number; readonly maxBytes: number } | undefined): RunSettings => ({
  concurrency: options.concurrency ?? defaultSettings.concurrency,
  onlineConcurrency: options.onlineConcurrency ?? options.concurrency ?? defaultSettings.onlineConcurrency,
  rpm: options.rpm,
  tpm: options.tpm,
  shardSize: options.shardSize ?? planned?.maxRequests ?? defaultSettings.shardSize,
  shardBytes: options.shardBytes ?? planned?.maxBytes ?? defaultSettings.shardBytes,
  pollInterval: options.pollInterval,
  maxPollInterval: options.maxPollInterval,
  outputFileWait: options.outputFileWait ?? defaultSettings.outputFileWait,
  detach: options.detach ?? false,
  keepProviderFiles: options.keepProviderFiles,
  budget: options.budget,
  maxEnqueuedTokens: options.maxEnqueuedTokens,
  maxBatches: options.maxBatches,
  budgetOutputTokens: options.budgetOutputTokens,
  deadline: typeof options.deadline === "string" ? Either.getOrUndefined(Hybrid.parseDuration(options.deadline)) : options.deadline,
  onlineBudget: options.onlineBudget,
  onlineBelow: options.onlineBelow
})

/** A new run's id: the pipeline's name (cut to 24 characters) and 8 random hex digits. */
export const newRunId = (pipelineName: string): string => `${pipelineName.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 24)}-${randomBytes(4).toString("hex")}`

export const defaultRunDir = (pipelineName: string) => `.sluice/runs/${pipelineName.replace(/[^A-Za-z0-9_.-]/g, "_")}`

/** The absolute run directory of a pipeline: the one given, else its default. */
export const runDirFor = (pipeline: Pipeline.Pipeline<any, any>, runDir: string | undefined, path: Path.Path): string =>
  path.resolve(runDir ?? defaultRunDir(pipeline.name))


/**
 * A fixed poll interval faster than once a second is for the emulator on this machine: a remote
 * provider rate-limits status calls, so against one the interval is raised to a second (and said
 * so). The adaptive schedule has floors of its own per provider family (PollSchedule.ts).
 */
export const remotePollFloor = (settings: RunSettings, stages: ReadonlyArray<{ readonly provider: BatchProvider }>) =>
  Effect.gen(function* () {
    if (settings.pollInterval === undefined || Duration.greaterThanOrEqualTo(settings.pollInterval, Settings.minimumRemotePoll)) return settings
    const remote = stages.find((s) => s.provider.origin !== undefined && !PollSchedule.isLocalOrigin(s.provider.origin))
    if (remote === undefined) return settings
    yield* Effect.logInfo(
      `polling every ${Duration.format(Settings.minimumRemotePoll)}, not ${Duration.format(settings.pollInterval)}: ` +
        `${remote.provider.name} at ${remote.provider.origin} is not a local emulator`
    )
    return { ...settings, pollInterval: Settings.minimumRemotePoll }
  })

/**
 * Records the pipeline file the caller named (`sluice run <file>`) when the manifest names
 * another one, or another version of it: the file `resume` and `retry` will load.
 */
const recordPipelineFile = (paths: RunDir.RunPaths, manifest: RunDir.Manifest, options: RunOptions) =>
  Effect.gen(function* () {
    const file = options.pipelineFile
    const sha256 = options.pipelineSha256
    if (file === undefined || (manifest.pipelineFile === file && (sha256 === undefined || manifest.pipelineSha256 === sha256))) return manifest
    // A hash recorded for another file is dropped with it.
    const { pipelineSha256: _, ...rest } = manifest
    const next: RunDir.Manifest = { ...rest, pipelineFile: file, ...(sha256 === undefined ? {} : { pipelineSha256: sha256 }) }
    yield* RunDir.writeManifest(paths, next)
    if (manifest.pipelineFile !== null && (manifest.pipelineFile !== file || manifest.pipelineSha256 !== undefined)) {
      yield* Effect.logInfo(`run ${paths.root}: resume and retry load ${file} as it is now from here on`)
    }
    return next
  })

/**
 * Records the kept settings (KeptSettings.ts) a call gave that differ from the manifest's, and
 * says what stands: a changed one, and the recorded ones this call did not give.
 */
const recordSettings = (paths: RunDir.RunPaths, manifest: RunDir.Manifest, kept: KeptSettings.Merged) =>
  Effect.gen(function* () {
    if (kept.fromRecord.length > 0) {
      const standing = kept.fromRecord.map((n) => KeptSettings.said(n, kept.settings[n]!)).join(", ")
      yield* Effect.logInfo(`${standing}: as the run recorded ${kept.fromRecord.length === 1 ? "it" : "them"} (given again, a flag replaces the recorded value)`)
    }
    if (kept.changes.length === 0) return manifest
    for (const c of kept.changes) {
      if (c.from === undefined) {
        yield* Effect.logInfo(`${KeptSettings.said(c.name, c.to)} recorded: later resumes and retries of the run keep it unless given again`)
      } else {
        yield* Effect.logInfo(
          `${KeptSettings.said(c.name, c.to)} replaces the run's recorded ${KeptSettings.said(c.name, c.from)}: applied from now on, and kept by later resumes and retries`
        )
      }
    }
    const next: RunDir.Manifest = { ...manifest, settings: kept.settings }
    yield* RunDir.writeManifest(paths, next)
    return next
  })

export const run = (pipeline: Pipeline.Pipeline<any, any>, options: RunOptions = {}) =>
  Effect.scoped(
    Effect.gen(function* () {
      // Shards hang under the run's span, whichever fiber launches them (see Telemetry.ts).
      const runSpan = Option.getOrUndefined(yield* Effect.option(Effect.currentSpan))
      const fs = yield* FileSystem.FileSystem
      const path = yield* Path.Path
      yield* checkDefinition(pipeline)
      const invalid = Settings.problems(options)
      if (invalid.length > 0) return yield* new Settings.InvalidSettings({ problems: invalid })
      const prices = options.prices ?? Pricing.builtin
      const checkPriced = (flag: "--budget" | "--online-budget", limit: number | undefined) => {
        if (limit === undefined) return Effect.void
        const unpriced = [...new Set(pipeline.stages.map((s) => s.model))].filter((m) => !Pricing.isPriced(m, prices))
        return unpriced.length > 0 ? new UnpricedBudget({ models: unpriced, ...(flag === "--budget" ? {} : { flag }) }) : Effect.void
      }
      yield* checkPriced("--budget", options.budget)
      yield* checkPriced("--online-budget", options.onlineBudget)
      const providers = yield* Providers
      const bound: Array<{ readonly stage: Pipeline.BatchStage<any, any>; readonly provider: BatchProvider }> = []
      for (const stage of pipeline.stages) bound.push({ stage, provider: yield* providers.get(stage.provider) })
      /** Each stage's mode under the run's (`--mode`, given or recorded); what a stage cannot do is refused before anything is sent. */
      const resolveStages = (override: Pipeline.Mode | undefined) =>
        Effect.gen(function* () {
          const out: Array<StageRuntime> = []
          for (const [index, { stage, provider }] of bound.entries()) {
            // A cancel sends nothing new: any mode will do.
            const resolved = Modes.resolve(stage, provider, override)
            const mode = resolved instanceof Modes.ModeUnsupported
              ? options.action === "cancel" ? "batch" as const : yield* resolved
              : resolved
            const hybrid = Modes.hybrid(stage, provider, override)
            if (hybrid === undefined && options.deadline !== undefined && options.action !== "cancel") {
              yield* Effect.logWarning(
                `stage "${stage.name}": ${provider.name} cannot answer in real time, so the deadline cannot help it: its rows go by batch only`
              )
            }
            out.push({
              index,
              stage,
              provider,
              mode,
              hybrid: hybrid === true,
              before: index === 0 ? pipeline.links[0] ?? [] : [],
              after: pipeline.links[index + 1] ?? [],
              next: pipeline.stages[index + 1]?.name ?? null,
              // Answers are reused only from the same provider at the same address.
              cacheNamespace: provider.origin === undefined ? undefined : `${provider.name} ${provider.origin}`
            })
          }
          return out
        })
      for (const { stage, provider } of bound) {
        if (options.shardSize !== undefined && options.shardSize > provider.limits.maxRequests) {
          yield* Effect.logInfo(
            `stage ${stage.name}: a shard size of ${options.shardSize} is over ${provider.name}'s limit of ${provider.limits.maxRequests} requests a batch; shards hold at most ${provider.limits.maxRequests}`
          )
        }
      }
      // A stage's provider identity now, by provider name (none when it is not configured).
      const currentOf = (name: string) => {
        const runtime = bound.find((s) => s.stage.provider === name)
        return runtime !== undefined
          ? Effect.succeed(Option.some(ProviderIdentity.of(runtime.provider)))
          : providers.get(name).pipe(Effect.map(ProviderIdentity.of), Effect.option)
      }
      const root = runDirFor(pipeline, options.runDir, path)
      const paths = RunDir.paths(root, path)
      const fingerprint = Pipeline.fingerprint(pipeline)
      // One process per run directory, from before the manifest is read or written.
      yield* PrivateFiles.makeDirectory(paths.shards).pipe(
        Effect.mapError((e) => new RunDirError({ path: root, description: `cannot create it: ${ioProblem(e.description ?? e.message)}` }))
      )
      const lockOptions = { breakLock: options.breakLock === true, ...(options.clusterLock === undefined ? {} : { cluster: options.clusterLock }) }
      yield* RunLock.acquire(paths.lock, lockOptions)

      const cachePath = cacheDir(options)
      // A cache that cannot be opened costs the run its savings, not the run.
      const cache =
        cachePath === false
          ? ResponseCache.disabled
          : yield* ResponseCache.open(path.resolve(cachePath)).pipe(
            Effect.catchAll((e) => Effect.as(Effect.logWarning(`${e.message}; running without the response cache`), ResponseCache.disabled))
          )
      const mode = options.action ?? "run"

      let runId: string
      let carriedFrom: string | undefined
      let planned: { readonly maxRequests: number; readonly maxBytes: number } | undefined
      let existing: RunDir.Manifest | undefined
      if (yield* RunDir.exists(paths)) {
        existing = yield* RunDir.readManifest(paths)
        // Before anything is asked of a provider: the run's paths and providers are the ones it started with.
        existing = yield* RunDir.checkBaseDir(paths, existing)
        existing = yield* ProviderBinding.check({ paths, manifest: existing, currentOf, rebind: options.rebindProvider === true })
      }
      // One run per output file too (two runs in two directories must not write one sink),
      // once relative paths are known to resolve where the run started.
      // (A directory that cannot be made is the sink's to report, naming its path as given.)
      for (const target of new Set((pipeline.sink?.paths ?? []).map((p) => path.resolve(p)))) {
        const made = yield* Effect.either(fs.makeDirectory(path.dirname(target), { recursive: true }))
        if (made._tag === "Right") yield* RunLock.acquireSink(pipeline.sink!.name, target, lockOptions)
      }
      // The settings the run keeps (KeptSettings.ts): what this call gives, else what the run
      // recorded. (A cancel gives none and changes none.)
      const kept = KeptSettings.merge(existing?.settings, mode === "cancel" ? {} : options)
      const effective: RunOptions = { ...options, ...kept.settings }
      // A recorded budget needs prices as a given one does (a model may have left the table).
      if (options.budget === undefined) yield* checkPriced("--budget", kept.settings.budget)
      if (options.onlineBudget === undefined) yield* checkPriced("--online-budget", kept.settings.onlineBudget)
      const stages = yield* resolveStages(effective.mode)
      const byName = new Map(stages.map((s) => [s.stage.name, s]))
      const stageOf = (name: string): StageRuntime => {
        const s = byName.get(name)
        if (s === undefined) throw new Error(`the run names stage "${name}", which the pipeline does not have`)
        return s
      }
      if (existing !== undefined) {
        let manifest = existing
        planned = manifest.shards
        // Cancelling works on the batches as they are, whatever the pipeline file says now.
        if (manifest.fingerprint !== fingerprint && mode !== "cancel") {
          if (options.allowChanged !== true) {
            return yield* new PipelineChanged({ runDir: root, before: manifest.fingerprint, after: fingerprint })
          }
          if (cache === ResponseCache.disabled) {
            return yield* new PipelineInvalid({
              description:
                `the pipeline changed since run ${root} started; accepting the change keeps the answers of unchanged ` +
                `requests through the response cache, which is off. Turn it on, or start a new run directory`
            })
          }
          const rebased = yield* Rebase.rebase({
            paths,
            manifest,
            fingerprint,
            pipeline,
            cache,
            settings: settingsFor(options, planned),
            providerOf: (name) => providers.get(name)
          })
          if (rebased === undefined) {
            // Detached, and batches of the run so far are still running: the change is
            // accepted once they have ended, at a later resume.
            yield* Effect.logInfo("the pipeline changed: batches of the run so far are still running; resume later to accept the change")
            const old = yield* loadState(paths)
            return summarize({ runId: manifest.runId, paths, state: old, models: manifest.stages.map((s) => s.model), prices }) satisfies RunSummary
          }
          manifest = yield* ProviderBinding.complete({ paths, manifest: rebased, currentOf })
        }
        manifest = yield* recordPipelineFile(paths, manifest, options)
        if (mode !== "cancel") manifest = yield* recordSettings(paths, manifest, kept)
        if (options.clusterLock !== undefined && manifest.cluster?.database !== options.clusterLock.database) {
          manifest = { ...manifest, cluster: { database: options.clusterLock.database } }
          yield* RunDir.writeManifest(paths, manifest)
        }
        runId = manifest.runId
        carriedFrom = manifest.carriedFrom
      } else {
        runId = options.runId ?? newRunId(pipeline.name)
        const journalKind = yield* JournalStore.kindForNewRuns
        yield* RunDir.writeManifest(paths, {
          version: 1,
          runId,
          pipeline: pipeline.name,
          fingerprint,
          pipelineFile: options.pipelineFile ?? null,
          ...(options.pipelineSha256 === undefined ? {} : { pipelineSha256: options.pipelineSha256 }),
          stages: stages.map((s) => ({
            name: s.stage.name,
            provider: s.stage.provider,
            model: s.stage.model,
            binding: ProviderIdentity.of(s.provider)
          })),
          providers: options.providerEndpoints ?? {},
          baseDir: process.cwd(),
          sink: pipeline.sink?.name ?? null,
          shards: { maxRequests: options.shardSize ?? defaultSettings.shardSize, maxBytes: options.shardBytes ?? defaultSettings.shardBytes },
          ...(KeptSettings.isEmpty(kept.settings) ? {} : { settings: kept.settings }),
          ...(options.clusterLock === undefined ? {} : { cluster: { database: options.clusterLock.database } }),
          // Where its journal is, for good (JournalStore.ts): absent, the run directory.
          ...(journalKind === "file" ? {} : { journal: journalKind }),
          ...(options.files === undefined ? {} : { files: options.files }),
          createdAt: new Date().toISOString()
        })
      }
      yield* Effect.annotateCurrentSpan({ "sluice.run_id": runId, "sluice.run_dir": root })
      const settings = yield* remotePollFloor(settingsFor(effective, planned), stages)
      const state = yield* loadState(paths)
      const alreadyFinished = mode === "run" && RunState.isFinished(state)
      // Shards of a stage the pipeline file no longer has (`cancel` takes any pipeline file).
      const strange = [...new Set([...state.shards.values()].map((s) => s.stage))].filter((name) => !byName.has(name))
      if (strange.length > 0) {
        return yield* new PipelineInvalid({
          description:
            `run ${root} has batches of stage ${strange.join(", ")}, which ${pipeline.name}'s pipeline file no longer has; ` +
            `use the pipeline file the run started with`
        })
      }
      const journal = yield* JournalStore.open(paths)
      // Enqueued tokens are shared with the runs using the same cache directory (TokenLedger.ts),
      // or with the runs of a cluster.
      const tokens = yield* TokenLedger.scheduler({
        // Next to the cache, when the cache could be opened; else this run schedules its own batches only.
        store: options.tokenLedger?.store ??
          (cachePath === false || cache === ResponseCache.disabled ? TokenLedger.inMemory() : TokenLedger.file(path.resolve(cachePath))),
        runId,
        configured: settings.maxEnqueuedTokens,
        ...(settings.maxBatches === undefined ? {} : { batches: settings.maxBatches }),
        ...(options.tokenLedger === undefined ? {} : { leases: options.tokenLedger.leases })
      })
      // What the journal learned is in the ledger too, unless that ledger did not outlive a crash
      // (in memory: the cache off) or was lost: the journal's limits go in first.
      for (const [key, limit] of state.learnedLimits) yield* tokens.learn(key, limit)
      const learnedLimits = new Map<string, number | undefined>()
      for (const s of stages) {
        const key = EnqueuedTokens.keyOf(s.provider, s.stage.model)
        if (!learnedLimits.has(key)) learnedLimits.set(key, yield* tokens.limitOf(key))
      }
      const observer = options.observer ?? {}
      observer.started?.(state)
      const ctx: RunContext = {
        runId,
        paths,
        pipeline,
        stages,
        stageOf,
        cache,
        carry: carriedFrom === undefined ? undefined : Rebase.carryNamespace(carriedFrom),
        state,
        settings,
        prices,
        createLock: yield* Effect.makeSemaphore(1),
        enqueuedLimit: (rt) => learnedLimits.get(EnqueuedTokens.keyOf(rt.provider, rt.stage.model)),
        record: (event) =>
          journal.append(event).pipe(
            Effect.map(() => {
              Failpoint.hit(`after:${event._tag}`)
              RunState.apply(state, event)
              observer.event?.(event, state)
            }),
            Effect.zipRight(Telemetry.count(event, state, prices, stages[0]!.stage.name))
          )
      }
      yield* Telemetry.inFlight(state)
      const outputs = yield* Outputs.open(ctx)
      const retryPlan = mode === "retry" ? yield* Retry.plan(ctx, options.retryClasses ?? Retry.defaultClasses) : undefined

      // Submission and polling hold a permit: at most `concurrency` batches in flight.
      const inFlight = yield* Effect.makeSemaphore(settings.concurrency)
      // Online: one limiter per provider, under one cap of requests in flight for the run.
      // Two online shards run at a time: the next one starts while the last requests of the
      // other finish, and shards finish (and reach the sink) in order rather than all at the end.
      const onlineConcurrency = settings.onlineConcurrency ?? Settings.defaultConcurrency.online
      const limiters = new Map<string, OnlineLimiter.Limiter>()
      for (const { mode: stageMode, hybrid, provider } of stages) {
        if (stageMode === "online" || hybrid === true || [...state.shards.values()].some((s) => s.online && s.provider === provider.name)) {
          if (!limiters.has(provider.name)) {
            limiters.set(provider.name, yield* OnlineLimiter.make({ concurrency: onlineConcurrency, rpm: settings.rpm, tpm: settings.tpm }))
          }
        }
      }
      const onlineRuntime: OnlineExecutor.OnlineRuntime = {
        limiterOf: (name) => {
          const limiter = limiters.get(name)
          if (limiter === undefined) throw new Error(`no online limiter for provider ${name}`)
          return limiter
        },
        slots: yield* Effect.makeSemaphore(onlineConcurrency),
        defaultOutputTokens: settings.budgetOutputTokens ?? Settings.defaultOutputTokens,
        progress: observer.answered
      }
      const onlineShards = yield* Effect.makeSemaphore(2)

      // Hybrid stages: the deadline, journaled as an absolute time when first given (a resume
      // keeps it), and a fiber that marks it passed.
      const anyHybrid = stages.some((s) => s.hybrid === true)
      const hybridFlags = [
        ...(options.deadline === undefined ? [] : ["a deadline"]),
        ...(options.onlineBudget === undefined ? [] : ["an online budget"]),
        ...(options.onlineBelow === undefined ? [] : ["--online-below"])
      ]
      if (!anyHybrid && hybridFlags.length > 0 && mode !== "cancel" && !stages.some((s) => Modes.hybrid(s.stage, s.provider, effective.mode) === undefined)) {
        yield* Effect.logWarning(`${hybridFlags.join(", ")} ${hybridFlags.length === 1 ? "applies" : "apply"} to stages in auto mode only (--mode auto), and no stage of this run is: ignored`)
      }
      if (settings.deadline !== undefined && anyHybrid && mode !== "cancel") {
        if (state.deadline === null) {
          const now = yield* Clock.currentTimeMillis
          yield* ctx.record({ _tag: "DeadlineSet", deadline: now + Duration.toMillis(settings.deadline), given: Duration.format(settings.deadline) })
        } else {
          yield* Effect.logInfo(`the run's deadline stays ${new Date(state.deadline.at).toISOString()} (--deadline ${state.deadline.given}, given when it was first set)`)
        }
      }
      const deadlineReached = yield* Deferred.make<void>()
      const deadline = state.deadline
      // Passed already (a resume after it): no shard may start by batch meanwhile.
      let deadlinePassed = deadline !== null && (yield* Clock.currentTimeMillis) >= deadline.at
      if (deadline !== null && anyHybrid && mode !== "cancel") {
        yield* Effect.gen(function* () {
          const wait = deadline.at - (yield* Clock.currentTimeMillis)
          if (wait > 0) yield* Effect.sleep(Duration.millis(wait))
          deadlinePassed = true
          yield* Effect.logInfo(
            `the deadline (${new Date(deadline.at).toISOString()}) has passed: batches in flight are cancelled, and rows still unanswered go online`
          )
          yield* Deferred.succeed(deadlineReached, undefined)
        }).pipe(Effect.forkScoped)
      }
      const onlineBelow = settings.onlineBelow ?? Hybrid.defaultOnlineBelow
      /** Why a planned shard of a hybrid stage goes online rather than by batch (null: it does not). */
      const hybridReason = (shard: RunState.ShardState): Hybrid.Reason | null => {
        if (shard.phase !== "planned" || stageOf(shard.stage).hybrid !== true) return null
        const parent = shard.parent === null ? undefined : state.shards.get(shard.parent)
        return Hybrid.decide({ hybrid: true, deadlinePassed, onlineBelow }, shard, parent)
      }
      /** Whether a shard goes (or went) online: started so, or not started and its stage runs online (or a hybrid stage sends it). */
      const isOnline = (shard: RunState.ShardState) =>
        shard.online || (shard.phase === "planned" && (stageOf(shard.stage).mode === "online" || hybridReason(shard) !== null))
      const outstanding = yield* Ref.make(0)
      const done = yield* Deferred.make<void, unknown>()
      // Rows whose keys may repeat are checked once the source is planned, before anything of
      // the first stage is submitted (KeyCheck.ts).
      const checkKeys = mode !== "cancel" && KeyCheck.pending(ctx)
      const planDone = yield* Ref.make(state.planComplete && !checkKeys)

      const checkDone = Effect.gen(function* () {
        if ((yield* Ref.get(planDone)) && (yield* Ref.get(outstanding)) === 0) yield* Deferred.succeed(done, undefined)
      })

      const drive = (id: string): Effect.Effect<void, unknown, FileSystem.FileSystem> =>
        Effect.gen(function* () {
          const shard = state.shards.get(id)!
          if (mode === "cancel") return yield* cancelShard(id)
          const hybrid = stageOf(shard.stage).hybrid === true
          let goOnline = shard.phase === "online" || (shard.phase === "planned" && isOnline(shard))
          const tokenLimited = () => shard.phase === "terminal" && shard.status === "failed" && EnqueuedTokens.isTokenLimit(shard.errors)
          if (!goOnline && (shard.phase === "planned" || shard.phase === "intent" || shard.phase === "staged" || shard.phase === "created" || tokenLimited())) {
            // Detached, a batch is asked about once: finished ones are collected, the rest
            // left to the provider until the next resume.
            goOnline = yield* inFlight.withPermits(1)(
              Effect.gen(function* () {
                // The deadline may have passed while this shard waited for a permit.
                if (shard.phase === "planned" && isOnline(shard)) return true
                if (yield* recutOver(shard)) return false
                if (shard.phase === "planned" && !(yield* reserveBudget(shard))) return false
                const onStatus = (info: BatchInfo) => observer.polled?.(id, info)
                const submitAndPoll = Effect.gen(function* () {
                  // The deadline may have passed while this shard waited for token headroom.
                  if (shard.phase === "planned" && isOnline(shard)) return
                  yield* Submitter.submit(ctx, shard)
                  yield* Poller.poll(ctx, shard, onStatus, settings.detach, hybrid ? Deferred.await(deadlineReached) : undefined)
                  if (hybrid && deadlinePassed && shard.phase === "created" && shard.batchId !== null) {
                    // Recalled: cancelled, and polled until the provider has stopped it. Its
                    // finished rows are collected; the rest are rescheduled and go online.
                    if (!shard.recalled) yield* ctx.record({ _tag: "BatchRecalled", shard: id, batchId: shard.batchId, at: yield* Clock.currentTimeMillis })
                    yield* Poller.cancel(ctx, shard, onStatus)
                  }
                })
                // A token-limit failure found on resume goes back to waiting first (nothing known of what was in flight).
                if (tokenLimited()) yield* requeue(shard, undefined)
                for (;;) {
                  // Over a limit learned since it was planned (or just now): re-cut rather than sent.
                  if (yield* recutOver(shard)) return false
                  const key = EnqueuedTokens.keyOf(stageOf(shard.stage).provider, shard.model)
                  // Kept past this call while its batch is (or is about to be) enqueued: a cluster's next step goes on with it.
                  const keep = () => shard.phase === "intent" || shard.phase === "staged" || shard.phase === "created"
                  const held = { id, key, tokens: EnqueuedTokens.estimate(shard), wait: shard.phase !== "created", keep }
                  const outcome = yield* tokens.hold(
                    held,
                    submitAndPoll.pipe(Effect.as(undefined), Effect.catchTag("TokenLimitRefused", (e) => Effect.succeed(e)))
                  ).pipe(Effect.catchTag("NoHeadroom", () => Effect.succeed(undefined)))
                  // No headroom in the cluster's ledger: the shard stays in line, its workflow asks again later.
                  if (outcome === undefined) return false
                  const [refused, others] = outcome
                  if (refused !== undefined) {
                    // Refused at create (Azure): a learned limit like a failed batch's, never a blind re-create.
                    if (yield* requeue(shard, others, [refused.error])) continue
                    // Alone, and nothing lower to learn: its rows fail retryable, for `sluice retry` once the provider has room.
                    yield* ctx.record({ _tag: "CreateRejected", shard: id, submission: shard.submission, failure: "retryable", message: refused.error })
                    break
                  }
                  if (!tokenLimited() || !(yield* requeue(shard, others))) break
                }
                return shard.phase === "planned" && isOnline(shard)
              })
            )
          }
          if (goOnline) {
            const reason = hybridReason(shard)
            if (shard.phase === "planned" && !(yield* reserveBudget(shard, reason !== null))) return
            // Online work is done by this process, detached or not: there is nothing to leave running.
            yield* onlineShards.withPermits(1)(OnlineExecutor.execute(ctx, shard, onlineRuntime, reason))
          }
          if (shard.phase === "planned") return // held back by a budget
          if (shard.phase === "terminal" || shard.phase === "rejected") {
            const retry = yield* Collector.collect(ctx, outputs, shard)
            // Held past its batch's end only if a step died in between (a cluster's lease): given back now.
            yield* tokens.release(id)
            if (retry !== null) yield* launch(retry)
            // What this shard passed on is planned into the next stage's shards at once.
            const next = stageOf(shard.stage).next
            if (next !== null) yield* planInbox(next)
            // Its results are committed: its files at the provider can go (ProviderFiles.ts).
            yield* ProviderFiles.release(ctx, shard)
          }
        })

      /**
       * A batch that failed with `token_limit_exceeded` was never run: the shard goes back to
       * waiting (TokenLimitReached), and the run learns a lower limit for its provider and model.
       * A shard that went alone learns a limit under its own tokens, and is re-cut before it goes
       * again (`recutOver`). Only when nothing lower can be learned (a shard of one token) do its
       * rows fail retryable (Collector.ts), for `sluice retry` once the provider has room.
       */
      const requeue = (shard: RunState.ShardState, others: number | undefined, errors: ReadonlyArray<string> = shard.errors) =>
        Effect.gen(function* () {
          const key = EnqueuedTokens.keyOf(stageOf(shard.stage).provider, shard.model)
          const own = EnqueuedTokens.estimate(shard)
          const limit = EnqueuedTokens.learn({ stated: EnqueuedTokens.statedLimit(errors), inFlight: others === undefined ? undefined : others + own })
          if (others === 0 && (limit === undefined || limit >= own)) return false
          const what = shard.batchId === null ? "its batch was refused at create" : `batch ${shard.batchId} failed`
          const next = limit !== undefined && own > limit
            ? `it is re-cut into shards under the ${limit} enqueued tokens learned`
            : `it waits for headroom and is submitted again${limit === undefined ? "" : `, under ${limit} enqueued tokens from now on`}`
          yield* Effect.logWarning(`shard ${shard.id}: ${what} with token_limit_exceeded (the provider's enqueued-token limit for ${shard.model}); ${next}`)
          yield* ctx.record({
            _tag: "TokenLimitReached",
            shard: shard.id,
            batchId: shard.batchId ?? "",
            submission: shard.submission + 1,
            at: Math.floor((yield* Clock.currentTimeMillis) / 1000),
            key,
            ...(others === undefined ? {} : { inFlight: others + own }),
            ...(limit === undefined ? {} : { limit })
          })
          if (limit !== undefined) {
            yield* tokens.learn(key, limit)
            // Shards planned from now on are cut to it too.
            learnedLimits.set(key, EnqueuedTokens.lower(learnedLimits.get(key), limit))
          }
          return true
        })

      /**
       * Re-cuts a shard never run whose tokens exceed its model's limit as known now (Recut.ts),
       * and drives its children instead; true when it did. A shard back to waiting after
       * `token_limit_exceeded` may have had its next batch created before a crash: that one
       * is adopted and goes on.
       */
      const recutOver = (shard: RunState.ShardState) =>
        Effect.gen(function* () {
          if (shard.phase !== "planned" && !(shard.phase === "staged" && shard.batchId === null)) return false
          const limit = yield* tokens.limitOf(EnqueuedTokens.keyOf(stageOf(shard.stage).provider, shard.model))
          if (!Recut.needed(shard, limit)) return false
          if (shard.phase === "staged" && (yield* Submitter.adoptOrphan(ctx, shard))) return false
          // A shard past planning counted under the budget already: its children count instead.
          if (shard.phase !== "planned" && settings.budget !== undefined) {
            const cost = projected(shard)
            yield* budgetLock.withPermits(1)(Effect.sync(() => void (committed -= cost)))
          }
          const children = yield* Recut.recut(ctx, outputs, shard, limit)
          yield* tokens.release(shard.id)
          // An upload it had goes (it is collected now, its rows elsewhere).
          yield* ProviderFiles.release(ctx, shard)
          for (const id of children) yield* launch(id)
          return true
        })

      // A later stage is planned one pass at a time, each from where the last one stopped.
      const inboxLocks = new Map<string, Effect.Semaphore>()
      for (const s of stages.slice(1)) inboxLocks.set(s.stage.name, yield* Effect.makeSemaphore(1))
      const planInbox = (name: string): Effect.Effect<void, unknown, FileSystem.FileSystem> =>
        inboxLocks.get(name)!.withPermits(1)(Planner.planInbox(ctx, outputs, stageOf(name), launch))

      // A budget holds back shards whose projected cost (input tokens counted at planning,
      // output tokens assumed per request) would take the submitted total past it.
      const outputPerRequest = settings.budgetOutputTokens ?? Settings.defaultOutputTokens
      const projected = (s: RunState.ShardState) => {
        const cost = Pricing.cost(s.model, { input: s.inputTokens ?? 0, output: s.requests * outputPerRequest, cached: 0 }, prices)
        // Online requests are paid at real-time prices.
        return (isOnline(s) ? cost?.realtime : cost?.batch) ?? 0
      }
      let committed = [...state.shards.values()].filter((s) => s.phase !== "planned").reduce((a, s) => a + projected(s), 0)
      const overBudget = new Set<string>()
      const budgetLock = yield* Effect.makeSemaphore(1)
      // The online budget caps what hybrid stages send online instead of by batch, at real-time prices.
      let onlineCommitted = [...state.shards.values()].filter((s) => s.hybrid !== null).reduce((a, s) => a + projected(s), 0)
      const overOnlineBudget = new Set<string>()
      /** Reserves a planned shard's projected cost under the budget, and (sent online by a hybrid stage) the online budget: both, or neither. */
      const reserveBudget = (shard: RunState.ShardState, hybridOnline = false) =>
        budgetLock.withPermits(1)(
          Effect.sync(() => {
            const cost = projected(shard)
            if (hybridOnline && settings.onlineBudget !== undefined && onlineCommitted + cost > settings.onlineBudget) {
              overOnlineBudget.add(shard.id)
              return false
            }
            if (settings.budget !== undefined && committed + cost > settings.budget) {
              overBudget.add(shard.id)
              return false
            }
            if (hybridOnline) onlineCommitted += cost
            if (settings.budget !== undefined) committed += cost
            return true
          })
        )

      // Cancelling: nothing new reaches the provider; what is there is cancelled, waited for
      // and collected, and rows it did not finish end `cancelled` (or their own class).
      const cancelShard = (id: string) =>
        Effect.gen(function* () {
          const shard = state.shards.get(id)!
          if (shard.phase === "online") yield* OnlineExecutor.cancel(ctx, shard)
          yield* Submitter.withdraw(ctx, shard)
          yield* Poller.cancel(ctx, shard, (info) => observer.polled?.(id, info))
          if (shard.phase === "terminal" || shard.phase === "rejected") {
            yield* Collector.collect(ctx, outputs, shard, false)
            yield* tokens.release(id)
            yield* ProviderFiles.release(ctx, shard)
          }
        })

      const runScope = yield* Effect.scope
      // Each shard is driven by one fiber, however it was found (open on resume, or new).
      // Work in flight is counted: the run is done when planning is and nothing is outstanding.
      const track = (work: Effect.Effect<void, unknown, FileSystem.FileSystem>): Effect.Effect<void> =>
        Ref.update(outstanding, (n) => n + 1).pipe(
          Effect.zipRight(
            work.pipe(
              Effect.provideService(FileSystem.FileSystem, fs),
              Effect.matchCauseEffect({
                onFailure: (cause) => Deferred.failCause(done, cause),
                onSuccess: () => Effect.zipRight(Ref.update(outstanding, (n) => n - 1), checkDone)
              }),
              Effect.forkIn(runScope)
            )
          ),
          Effect.asVoid
        )
      const launched = new Set<string>()
      const scope = options.scope
      const launch = (id: string): Effect.Effect<void> =>
        Effect.suspend(() => {
          if (launched.has(id) || (scope !== undefined && !scope.shards.includes(id))) return Effect.void
          launched.add(id)
          return track(drive(id).pipe(Telemetry.shardSpan("sluice.shard", state.shards.get(id)!, { parent: runSpan })))
        })

      // With onInvalid "fail", nothing is submitted before the whole source has been read:
      // a malformed row must stop the run before any money is spent. Nor before the keys are
      // checked: a shard may lose rows (and a shard of cached rows must not reach the sink).
      const holdUntilPlanned = ((pipeline.onInvalid === "fail" && !state.planComplete) || checkKeys) && mode !== "cancel"
      const held: Array<string> = []
      const offer = (id: string) => (holdUntilPlanned ? Effect.sync(() => void held.push(id)) : launch(id))
      const first = stages[0]!.stage.name

      const stillPlanned = (ids: Iterable<string>) => [...ids].filter((id) => state.shards.get(id)!.phase === "planned")
      observer.waits?.(() => ({
        concurrency: settings.concurrency,
        onlineQueued: [...state.shards.values()].filter((s) => s.phase === "planned" && isOnline(s) && !overBudget.has(s.id) && !overOnlineBudget.has(s.id)).length,
        heldForPlanning: held.filter((id) => !launched.has(id)).length,
        overBudget: stillPlanned(overBudget).length,
        overOnlineBudget: stillPlanned(overOnlineBudget).length,
        enqueuedTokens: tokens.waiting(),
        limiters: [...limiters].map(([provider, l]) => ({ provider, cap: onlineConcurrency, ...l.state() }))
      }))

      // Files of shards collected before a crash (or whose deletion failed) are deleted now.
      const holding = RunState.holdingFiles(state)
      if (holding.length > 0) yield* track(ProviderFiles.releaseAll(ctx, holding))
      for (const shard of RunState.openShards(state)) {
        const hold = shard.phase === "planned" || (checkKeys && shard.stage === first && shard.parent === null)
        if (holdUntilPlanned && hold) held.push(shard.id)
        else yield* launch(shard.id)
      }
      /** Once planning is done: the key check, then the shards held back. */
      const release = Effect.gen(function* () {
        if (checkKeys) yield* KeyCheck.check(ctx, outputs)
        for (const id of held) yield* launch(id)
        yield* Ref.set(planDone, true)
        yield* checkDone
      })
      const releaseOrFail = <E, R>(planning: Effect.Effect<void, E, R>) =>
        planning.pipe(
          Effect.zipRight(release),
          Effect.catchAllCause((cause) => Deferred.failCause(done, cause)),
          Effect.forkIn(runScope)
        )
      // Rows an upstream collection passed on before a crash, not yet planned.
      const planning = mode !== "cancel" && (scope === undefined || scope.plan)
      if (planning) {
        for (const name of RunState.unplannedInboxes(state)) yield* track(planInbox(name))
      }
      if (!state.planComplete && planning) yield* releaseOrFail(Planner.plan(ctx, outputs, offer))
      else if (checkKeys && planning) yield* releaseOrFail(Effect.void)
      if (!planning) yield* Ref.set(planDone, true)
      yield* checkDone
      yield* Deferred.await(done)
      if (RunState.isFinished(state)) yield* tokens.finished()
      const summary = summarize({ runId, paths, state, models: pipeline.stages.map((s) => s.model), prices })
      const sourceChanged = state.planComplete && mode !== "cancel" ? yield* SourceFiles.changes(state.sourceFiles) : []
      const budget =
        settings.budget === undefined
          ? undefined
          : { limit: settings.budget, projected: committed, heldShards: overBudget.size, heldRows: [...overBudget].reduce((a, id) => a + state.shards.get(id)!.requests, 0) }
      const onlineBudget =
        settings.onlineBudget === undefined
          ? undefined
          : {
            limit: settings.onlineBudget,
            projected: onlineCommitted,
            heldShards: stillPlanned(overOnlineBudget).length,
            heldRows: stillPlanned(overOnlineBudget).reduce((a, id) => a + state.shards.get(id)!.requests, 0)
          }
      return {
        ...summary,
        ...(retryPlan === undefined ? {} : { retry: retryPlan }),
        ...(budget === undefined ? {} : { budget }),
        ...(onlineBudget === undefined ? {} : { onlineBudget }),
        ...(alreadyFinished ? { alreadyFinished } : {}),
        ...(sourceChanged.length > 0 ? { sourceChanged } : {})
      }
    })
  ).pipe(
    Effect.tap((s) => Effect.annotateCurrentSpan({ "sluice.rows": s.rows, "sluice.rows.succeeded": s.succeeded, "sluice.rows.pending": s.pending, "sluice.finished": s.finished })),
    Effect.withSpan("sluice.run", { attributes: { "sluice.pipeline": pipeline.name, "sluice.action": options.action ?? "run" } })
  )

/**
 * Runs a pipeline and streams its events, ending with `RunFinished`. The run stops (cleanly:
 * batches in flight keep running at the provider) when the stream is no longer consumed.
 */
export const events = (pipeline: Pipeline.Pipeline<any, any>, options: RunOptions = {}) =>
  Stream.unwrapScoped(
    Effect.gen(function* () {
      const queue = yield* Queue.unbounded<Take.Take<RunEvent.RunEvent, unknown>>()
      const outer = options.observer
      const observer: RunObserver = {
        event: (event, state) => {
          outer?.event?.(event, state)
          for (const e of RunEvent.fromJournal(event, state)) Queue.unsafeOffer(queue, Take.of(e))
        },
        ...(outer?.polled === undefined ? {} : { polled: outer.polled }),
        ...(outer?.started === undefined ? {} : { started: outer.started })
      }
      yield* run(pipeline, { ...options, observer }).pipe(
        Effect.matchCause({
          onFailure: (cause) => void Queue.unsafeOffer(queue, Take.failCause(cause)),
          onSuccess: (summary) => {
            Queue.unsafeOffer(queue, Take.of<RunEvent.RunEvent>({ _tag: "RunFinished", summary }))
            Queue.unsafeOffer(queue, Take.end)
          }
        }),
        Effect.forkScoped
      )
      return Stream.fromQueue(queue).pipe(Stream.flattenTake)
    })
  )

/** Continues a run from its directory (the same as `run` on that directory). */
export const resume = (pipeline: Pipeline.Pipeline<any, any>, options: RunOptions & { readonly runDir: string }) =>
  run(pipeline, { ...options, action: "run" })

/** Resubmits the rows that ended failed in `classes` (default: all but permanent and sink_rejected), then continues the run. */
export const retry = (
  pipeline: Pipeline.Pipeline<any, any>,
  options: RunOptions & { readonly runDir: string; readonly classes?: ReadonlyArray<FailureClass> }
) => run(pipeline, { ...options, action: "retry", ...(options.classes === undefined ? {} : { retryClasses: options.classes }) })

/** Cancels every batch in flight, waits for the provider to stop them, and collects partial results. */
export const cancel = (pipeline: Pipeline.Pipeline<any, any>, options: RunOptions & { readonly runDir: string }) =>
  run(pipeline, { ...options, action: "cancel", allowChanged: true })

/**
 * What the phases of a run share: the run directory, the pipeline's stages with their
 * providers, the response cache, the journal and the state it rebuilds, and the settings.
 */
import type { Pipeline } from "@sluice/core"
import type { BatchProvider } from "@sluice/providers"
import type { Duration, Effect } from "effect"
import type * as EnqueuedTokens from "./EnqueuedTokens.js"
import type { JournalIOError } from "./Journal.js"
import type { Prices } from "./Pricing.js"
import type { ResponseCache } from "./ResponseCache.js"
import type { JournalEvent } from "./JournalEvent.js"
import type { RunPaths } from "./RunDir.js"
import type { RunState, ShardMode } from "./RunState.js"

export interface RunSettings {
  /** Batches in flight at once (submitted and not yet finished). */
  readonly concurrency: number
  /**
   * Online: requests in flight at once across the run (sent, and their answer not yet
   * durable): the cap the adaptive limiter stays under, and the crash bound. Default 8.
   */
  readonly onlineConcurrency?: number | undefined
  /** Online: requests per minute at most, per provider (never exceeded). */
  readonly rpm?: number | undefined
  /** Online: tokens per minute at most, per provider, by the requests' estimates. */
  readonly tpm?: number | undefined
  /** Requests per shard at most (capped by the provider's own limit). */
  readonly shardSize: number
  /** Bytes per shard at most (capped by the provider's own limit). */
  readonly shardBytes: number
  /**
   * A fixed wait between status polls of a batch (`--poll-interval`), first poll at once. Unset:
   * the adaptive schedule (PollSchedule.ts) — soon after submission, then backing off to
   * `maxPollInterval`, sooner when the batch's counts predict its end.
   */
  readonly pollInterval?: Duration.Duration | undefined
  /** The adaptive schedule's longest wait between polls (`--max-poll-interval`; default 30 s). */
  readonly maxPollInterval?: Duration.Duration | undefined
  /**
   * How long a batch that completed with no result file is waited for (some providers show
   * the file late); then it is collected without it: its rows come back `missing`.
   */
  readonly outputFileWait: Duration.Duration
  /** Plan and submit, then return without waiting for results. */
  readonly detach: boolean
  /** Leave a collected shard's output and error files at the provider (its input is deleted all the same). Kept by the run (KeptSettings.ts). */
  readonly keepProviderFiles?: boolean | undefined
  /** USD at batch prices the run's submissions may not exceed (projected from token counts). Kept by the run (KeptSettings.ts). */
  readonly budget?: number | undefined
  /** Input tokens one provider and model may have enqueued at once (EnqueuedTokens.ts); else learned. */
  readonly maxEnqueuedTokens?: EnqueuedTokens.Limits | undefined
  /** Batches one provider and model may have in flight at once, across the runs sharing the ledger (TokenLedger.ts). */
  readonly maxBatches?: EnqueuedTokens.Limits | undefined
  /** Output tokens per request assumed by the budget (default: max_tokens, else 100). */
  readonly budgetOutputTokens?: number | undefined
  /**
   * Hybrid stages (mode `auto`): how long, from when it is first given, the batches may take. When it
   * passes, batches in flight are cancelled and every row still unanswered goes online. It is
   * journaled as an absolute time when first given: a resume keeps it (see Hybrid.ts).
   */
  readonly deadline?: Duration.Duration | undefined
  /** Hybrid stages: USD at real-time prices their online sends may not exceed (projected, like `budget`). */
  readonly onlineBudget?: number | undefined
  /** Hybrid stages: retry shards of fewer rows than this go online rather than into a new batch (default 100; 0: never). */
  readonly onlineBelow?: number | undefined
}

/** A batch stage as the runner drives it. */
export interface StageRuntime {
  readonly index: number
  readonly stage: Pipeline.BatchStage<any, any>
  readonly provider: BatchProvider
  /** How its shards not yet started are sent (its mode, or the run's, resolved: see Modes.ts); absent: batch. */
  readonly mode?: ShardMode | undefined
  /** Mode `auto` on a provider with a batch API and a real-time endpoint: by batch, and online what batches do not answer in time (Hybrid.ts). */
  readonly hybrid?: boolean | undefined
  /** Transforms applied to its rows before rendering (only the first stage has any). */
  readonly before: ReadonlyArray<Pipeline.Transform>
  /** Transforms applied to its outputs before they go to `next` (or the sink). */
  readonly after: ReadonlyArray<Pipeline.Transform>
  /** The stage its outputs feed; null for the last stage. */
  readonly next: string | null
  /**
   * The response cache's namespace (provider and origin): answers from another provider or
   * endpoint are not reused. Undefined when the provider does not say where it sends requests:
   * its answers are not cached.
   */
  readonly cacheNamespace: string | undefined
}

/**
 * What finding, polling and cancelling a shard's batch need: the journal and the providers,
 * never the pipeline (`sluice cancel` works from the run directory alone, importing nothing).
 */
export interface BatchContext {
  readonly runId: string
  readonly paths: RunPaths
  /** A stage's provider, by stage name (every shard names its stage). */
  readonly stageOf: (name: string) => { readonly provider: BatchProvider }
  readonly state: RunState
  readonly settings: RunSettings
  /** Appends an event to the journal (fsynced), then applies it to `state`. */
  readonly record: (event: JournalEvent) => Effect.Effect<void, JournalIOError>
}

export interface RunContext extends BatchContext {
  readonly pipeline: Pipeline.Pipeline<any, any>
  /** The pipeline's batch stages in order. */
  readonly stages: ReadonlyArray<StageRuntime>
  /** A stage by name (every shard names its stage). */
  readonly stageOf: (name: string) => StageRuntime
  readonly cache: ResponseCache
  /**
   * After an accepted pipeline change: the cache namespace of the previous generation's
   * answers, found by custom_id (see Rebase.ts).
   */
  readonly carry?: string | undefined
  /** Prices and context windows by model (a request over its model's window fails before it is sent). */
  readonly prices: Prices
  /** Serialises batch creation for providers without batch metadata. */
  readonly createLock: Effect.Semaphore
  /** The enqueued-token limit a stage's shards are cut to at planning (configured or learned), if any. */
  readonly enqueuedLimit?: ((stage: StageRuntime) => number | undefined) | undefined
}

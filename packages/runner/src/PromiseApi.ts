/**
 * sluice for code that does not use Effect: the runner's operations as `async` functions.
 *
 * ```ts
 * import { run } from "@sluice/runner/promise"
 * const summary = await run(pipeline, { runDir: "runs/labels", signal, onEvent: (e) => console.log(e._tag) })
 * ```
 *
 * Failures reject with `SluiceError` (`err.tag`, `err.reason`, `err.retryable`). An aborted
 * `signal` stops the run cleanly: batches in flight keep running at the provider, and the
 * next `run` or `resume` on the same run directory picks them up.
 */
import type { FileSystem, Path } from "@effect/platform"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type { FailureClass, Pipeline } from "@sluice/core"
import { OpenAiBatch, Registry } from "@sluice/providers"
import type { Providers } from "@sluice/providers"
import type { BatchProvider } from "@sluice/providers"
import { Duration, Effect, Exit, Layer, Redacted, Stream } from "effect"
import type * as EnqueuedTokens from "./EnqueuedTokens.js"
import * as Failure from "./internal/failure.js"
import * as Notify from "./Notify.js"
import * as OneCall from "./OneCall.js"
import * as Pricing from "./Pricing.js"
import * as Records from "./Records.js"
import type { OutputRecord } from "./Records.js"
import { fromJournal as runEvents } from "./RunEvent.js"
import type { RunEvent } from "./RunEvent.js"
import * as Runner from "./Runner.js"
import type { RunOptions as EffectRunOptions, RunSummary } from "./Runner.js"
import * as Settings from "./Settings.js"
import { SluiceError } from "./SluiceError.js"
import * as Status from "./Status.js"
import * as Telemetry from "./Telemetry.js"

export { SluiceError }
export type { OutputRecord, RunEvent, RunSummary }
export type { BatchResults, ItemResult, OpenAiRequestLine } from "./OneCall.js"

export interface ConnectionOptions {
  /** OpenAI settings; unset fields come from OPENAI_API_KEY / OPENAI_BASE_URL. */
  readonly openai?: { readonly apiKey?: string; readonly baseUrl?: string }
  /** Providers to use by name, replacing the ones configured from the environment. */
  readonly providers?: Readonly<Record<string, BatchProvider>>
}

export interface RunOptions extends ConnectionOptions {
  readonly runDir?: string
  /** Batches in flight (default 4); online, requests in flight (default 8). */
  readonly concurrency?: number
  /** How every stage's requests are sent, over the stages' own mode (see `Pipeline.Mode`). */
  readonly mode?: Pipeline.Mode
  /** Online: requests per minute per provider at most. */
  readonly rpm?: number
  /** Online: tokens per minute per provider at most (by the requests' estimates). */
  readonly tpm?: number
  /**
   * Hybrid runs (mode "auto"): when this has passed since the run was first given it — "90s",
   * "2h", "1h30m", or a number of seconds — batches in flight are cancelled (their finished
   * rows kept) and every row still unanswered goes online. A resume keeps the first deadline.
   */
  readonly deadline?: string | number
  /** Hybrid runs: USD at real-time prices that rows sent online instead of by batch may cost at most. */
  readonly onlineBudget?: number
  /** Hybrid runs: rows to retry go online rather than into a new batch when fewer than this (default 100; 0: never). */
  readonly onlineBelow?: number
  readonly shardSize?: number
  /**
   * USD at batch prices the run may submit at most, projected from token counts (input counted,
   * `outputTokens` assumed per request); shards that would pass it wait, and the summary's
   * `budget` says what is held. Every model needs a price (built in, or from `prices`). The run
   * records it: later calls on its directory keep it unless given again (a higher one continues).
   */
  readonly budget?: number
  /** Output tokens per request assumed by `budget` (default: the stage's max_tokens, else 100). */
  readonly outputTokens?: number
  /** A price file (JSON, as `--prices` takes) for `budget` and costs: default `$SLUICE_PRICES`, else the built-in table. */
  readonly prices?: string
  /**
   * Input tokens the batches of one provider and model may have enqueued at once, across the
   * runs sharing the cache directory: a number for every model, or by model
   * (`{ "gpt-4o": 90_000, "gpt-4o-mini": 2_000_000, "*": 500_000 }`, `*` for the models not
   * named). Shards are cut to fit (re-cut when the limit falls after they were planned) and wait
   * for headroom. The run records it: later calls keep it unless given again (default: none;
   * a `token_limit_exceeded` failure teaches the limit).
   */
  readonly maxEnqueuedTokens?: EnqueuedTokens.Limits
  /**
   * Batches of one provider and model in flight at once, across the runs sharing the cache
   * directory, in the same form as `maxEnqueuedTokens` (default: none; not recorded by the run).
   */
  readonly maxBatches?: EnqueuedTokens.Limits
  /**
   * The response cache's directory (the enqueued-token ledger lives next to it), or false for
   * none. Default: `$SLUICE_CACHE_DIR`, else `.sluice/cache` in the working directory.
   */
  readonly cache?: string | false
  /**
   * A shell command run when the call ends the run (`run.finished`), stops it on its budget
   * (`budget.reached`) or fails (`run.failed`): the summary as JSON on stdin, key figures in
   * `SLUICE_*` variables. Default: `$SLUICE_ON_FINISH`. Never changes the call's outcome.
   */
  readonly onFinish?: string
  /** An http(s) URL the same events are POSTed to as `{event, summary}`, retried with backoff. Default: `$SLUICE_NOTIFY_URL`. */
  readonly notify?: string
  /** Seconds between status polls of a batch, fixed (default: adaptive, see `maxPollInterval`). */
  readonly pollInterval?: number
  /** The adaptive schedule's longest wait between polls, in seconds (default 30). */
  readonly maxPollInterval?: number
  readonly detach?: boolean
  /** Leave each collected batch's output and error files at the provider (its input file is deleted either way). The run records it: later calls on its directory keep it. */
  readonly keepProviderFiles?: boolean
  readonly allowChanged?: boolean
  /**
   * Move a run bound to other provider identities (another base URL …) to the providers as
   * configured now; refused while a batch is in flight. Without it, such a run is refused
   * (`SluiceError` with tag "ProviderChanged").
   */
  readonly rebindProvider?: boolean
  /**
   * Take over the run directory's lock although it names a process of another host (which may
   * still run) or none at all; never a live process of this host. Without it, such a lock is
   * refused (`SluiceError` with tag "RunLocked").
   */
  readonly breakLock?: boolean
  /** Stops the run cleanly when aborted. */
  readonly signal?: AbortSignal
  /** Called for every run event, with the same counts the CLI shows. */
  readonly onEvent?: (event: RunEvent) => void
}

type Env = Providers | FileSystem.FileSystem | Path.Path

const layerFor = (options: ConnectionOptions): Layer.Layer<Env> => {
  const openai = options.openai
  const overrides =
    openai === undefined
      ? Effect.succeed<Record<string, BatchProvider>>({})
      : OpenAiBatch.makeFromEnv({
          ...(openai.apiKey === undefined ? {} : { apiKey: Redacted.make(openai.apiKey) }),
          ...(openai.baseUrl === undefined ? {} : { baseUrl: openai.baseUrl })
        }).pipe(Effect.map((p): Record<string, BatchProvider> => ({ openai: p })))
  const providers = Layer.unwrapEffect(
    overrides.pipe(
      Effect.map((built) => Registry.layerFromEnv({ ...built, ...options.providers })),
      Effect.orDie
    )
  ).pipe(Layer.provide(NodeHttpClient.layerUndici))
  return Layer.mergeAll(NodeContext.layer, providers)
}

const execute = async <A>(effect: Effect.Effect<A, unknown, Env>, options: ConnectionOptions & { readonly signal?: AbortSignal }) => {
  const exit = await Effect.runPromiseExit(
    effect.pipe(Effect.provide(layerFor(options))),
    options.signal === undefined ? undefined : { signal: options.signal }
  )
  if (Exit.isSuccess(exit)) return exit.value
  throw SluiceError.fromCause(exit.cause)
}

const effectOptions = (options: RunOptions): EffectRunOptions => ({
  ...(options.runDir === undefined ? {} : { runDir: options.runDir }),
  ...(options.concurrency === undefined ? {} : { concurrency: options.concurrency }),
  ...(options.mode === undefined ? {} : { mode: options.mode }),
  ...(options.rpm === undefined ? {} : { rpm: options.rpm }),
  ...(options.tpm === undefined ? {} : { tpm: options.tpm }),
  ...(options.deadline === undefined ? {} : { deadline: typeof options.deadline === "number" ? Duration.millis(options.deadline * 1000) : options.deadline }),
  ...(options.onlineBudget === undefined ? {} : { onlineBudget: options.onlineBudget }),
  ...(options.onlineBelow === undefined ? {} : { onlineBelow: options.onlineBelow }),
  ...(options.shardSize === undefined ? {} : { shardSize: options.shardSize }),
  ...(options.maxEnqueuedTokens === undefined ? {} : { maxEnqueuedTokens: options.maxEnqueuedTokens }),
  ...(options.maxBatches === undefined ? {} : { maxBatches: options.maxBatches }),
  ...(options.budget === undefined ? {} : { budget: options.budget }),
  ...(options.outputTokens === undefined ? {} : { budgetOutputTokens: options.outputTokens }),
  ...(options.cache === undefined ? {} : { cache: options.cache }),
  ...(options.pollInterval === undefined ? {} : { pollInterval: Duration.millis(options.pollInterval * 1000) }),
  ...(options.maxPollInterval === undefined ? {} : { maxPollInterval: Duration.millis(options.maxPollInterval * 1000) }),
  ...(options.detach === undefined ? {} : { detach: options.detach }),
  ...(options.keepProviderFiles === undefined ? {} : { keepProviderFiles: options.keepProviderFiles }),
  ...(options.allowChanged === undefined ? {} : { allowChanged: options.allowChanged }),
  ...(options.rebindProvider === undefined ? {} : { rebindProvider: options.rebindProvider }),
  ...(options.breakLock === undefined ? {} : { breakLock: options.breakLock }),
  ...(options.onEvent === undefined
    ? {}
    : {
        observer: {
          event: (event, state) => {
            for (const e of runEvents(event, state)) options.onEvent!(e)
          }
        }
      })
})

/**
 * A run call as the CLI makes it: prices loaded (a bad price file is refused before anything
 * runs), telemetry exported, and its end announced to `onFinish` and `notify` (Notify.ts).
 */
const runCall = (options: RunOptions, call: (prices: Pricing.Prices) => Effect.Effect<RunSummary, unknown, Env>): Effect.Effect<RunSummary, unknown, Env> => {
  const targets = Notify.fromEnv({ onFinish: options.onFinish, notify: options.notify })
  const badUrl = targets.notify === undefined ? undefined : Notify.invalidUrl(targets.notify)
  if (badUrl !== undefined) return Effect.fail(new Settings.InvalidSettings({ problems: [badUrl.replace("--notify", "notify")] }))
  return Pricing.load(options.prices).pipe(
    Effect.flatMap((prices) => Telemetry.exported(call(prices))),
    Effect.tap((summary) => {
      const event = Notify.eventOf(summary)
      return event === undefined ? Effect.void : Notify.announce(targets, event, summary)
    }),
    Effect.tapErrorCause((cause) => {
      if (targets.onFinish === undefined && targets.notify === undefined) return Effect.void
      const report = Failure.describe(cause, options.runDir)
      // Another process holding the run is not the run failing; an abort is not either.
      if (report.tag === "RunLocked" || report.tag === "Interrupted") return Effect.void
      const { printed: _, resume: __, ...error } = report
      return Notify.announce(targets, "run.failed", { error })
    })
  )
}

/** Runs (or continues) a pipeline; resolves with the summary once every row is accounted for. */
export const run = (pipeline: Pipeline.Pipeline<any, any>, options: RunOptions = {}): Promise<RunSummary> =>
  execute(
    runCall(options, (prices) => Runner.run(pipeline, { ...effectOptions(options), prices })).pipe(
      Effect.tap((summary) => Effect.sync(() => options.onEvent?.({ _tag: "RunFinished", summary })))
    ),
    options
  )

/** Continues a run from its directory. */
export const resume = (pipeline: Pipeline.Pipeline<any, any>, options: RunOptions & { readonly runDir: string }) =>
  run(pipeline, options)

/** Resubmits the rows that ended failed in `classes` (default: all but permanent and sink_rejected). */
export const retry = (
  pipeline: Pipeline.Pipeline<any, any>,
  options: RunOptions & { readonly runDir: string; readonly classes?: ReadonlyArray<FailureClass> }
): Promise<RunSummary> =>
  execute(
    runCall(options, (prices) =>
      Runner.retry(pipeline, { ...effectOptions(options), prices, runDir: options.runDir, ...(options.classes === undefined ? {} : { classes: options.classes }) })
    ),
    options
  )

/** Cancels the run's batches in flight and collects their partial results. */
export const cancel = (pipeline: Pipeline.Pipeline<any, any>, options: RunOptions & { readonly runDir: string }): Promise<RunSummary> =>
  execute(Runner.cancel(pipeline, { ...effectOptions(options), runDir: options.runDir }), options)

/** A run's state from its directory; asks the provider for fresh batch statuses unless `refresh` is false. */
export const status = (runDir: string, options: ConnectionOptions & { readonly refresh?: boolean } = {}): Promise<Status.RunStatus> =>
  execute(Status.status(runDir, { refresh: options.refresh ?? true }), options)

const iterate = <A>(stream: Stream.Stream<A, unknown, Env>, options: ConnectionOptions): AsyncIterable<A> =>
  Stream.toAsyncIterable(
    stream.pipe(
      Stream.provideLayer(layerFor(options)),
      Stream.catchAllCause((cause) => Stream.fail(SluiceError.fromCause(cause)))
    )
  )

/** The outputs of a run whose pipeline has no sink of its own, as an async iterable. */
export const outputs = <In, Out>(pipeline: Pipeline.Pipeline<In, Out>, runDir: string): AsyncIterable<OutputRecord<In, Out>> =>
  iterate(Records.outputs(pipeline, runDir), {})

/** Rows that ended failed (without those a later retry resubmitted), as an async iterable. */
export const failures = (runDir: string) => iterate(Records.failures(runDir), {})

/** Runs a pipeline and yields its events as they happen, ending with `RunFinished`. */
export const events = (pipeline: Pipeline.Pipeline<any, any>, options: RunOptions = {}): AsyncIterable<RunEvent> =>
  iterate(Runner.events(pipeline, effectOptions(options)), options)

/** Sends prompts as one checkpointed batch run; results keyed by custom_id, with each prompt's index. */
export const batchPrompts = (
  options: OneCall.PromptsOptions & RunOptions & { readonly runDir: string }
): Promise<OneCall.BatchResults> => execute(
    OneCall.batchPrompts({
      ...effectOptions(options),
      model: options.model,
      prompts: options.prompts,
      runDir: options.runDir,
      ...(options.provider === undefined ? {} : { provider: options.provider }),
      ...(options.system === undefined ? {} : { system: options.system }),
      ...(options.params === undefined ? {} : { params: options.params })
    }),
    options
  )

/** Sends ready-made OpenAI batch request lines, keeping their custom_ids; results keyed by them. */
export const batchRequests = (
  options: { readonly lines: ReadonlyArray<OneCall.OpenAiRequestLine>; readonly provider?: string } & RunOptions & {
    readonly runDir: string
  }
): Promise<OneCall.BatchResults> =>
  execute(OneCall.batchRequests({ ...effectOptions(options), lines: options.lines, runDir: options.runDir, ...(options.provider === undefined ? {} : { provider: options.provider }) }), options)

/**
 * The `sluice` command line.
 */
import { Args, Command, HelpDoc, Options, ValidationError } from "@effect/cli"
import { Cause, Console, Duration, Effect, Either, Fiber, Layer, Option, Redacted } from "effect"
import type * as Cancel from "./Cancel.js"
import { databaseUrlVariable } from "./internal/clusterEnv.js"
import * as JournalMarker from "./internal/journalMarker.js"
import { JournalElsewhere } from "./JournalStore.js"
import { runner } from "./internal/Installed.js"
import { quietPgQueryQueueWarning } from "./internal/pgWarnings.js"
import * as Notify from "./Notify.js"
import type * as EnqueuedTokens from "./EnqueuedTokens.js"
import * as Flags from "./Flags.js"
import * as ClusterJournal from "./ClusterJournal.js"
import { ranges } from "./Settings.js"
import * as PipelineLoader from "./PipelineLoader.js"
import * as Pricing from "./Pricing.js"
import * as Progress from "./Progress.js"
import { defaultSampleRows } from "./ReportPage.js"
import type { RunView as View } from "./RunView.js"
import * as RunDir from "./RunDir.js"
import * as Path from "@effect/platform/Path"
import type { FailureClass, Pipeline } from "@sluice/core"
import { cacheDir as defaultCacheDir, checkDefinition, loadState, run as runPipeline, runDirFor, summarize } from "./Runner.js"
import type { RunSummary } from "./Runner.js"
import { statusCommand } from "./StatusCommand.js"
import * as Telemetry from "./Telemetry.js"
import * as TypeCheck from "./TypeCheck.js"
import { secretVariable as webhookSecretVariable } from "./WebhookSignature.js"
import { ProviderConfigError, Providers, Registry } from "@sluice/providers"
import * as Failure from "./internal/failure.js"
import { reported } from "./internal/reported.js"
import type { Reporting } from "./internal/reported.js"
import { count, money, number } from "./internal/format.js"
import * as Help from "./internal/help.js"
import * as HelpText from "./internal/helpText.js"

/** Exit codes, documented in the README. */
export const ExitCode = Failure.ExitCode

const setExit = (code: number) => Effect.sync(() => void (process.exitCode = code))

/**
 * A command's own modules (the emulator, the report and its server, the webhook receiver…),
 * loaded when that command runs: `sluice --help` and `sluice status` do not pay for them.
 */
const lazy = <A>(load: () => Promise<A>): Effect.Effect<A> => Effect.promise(load)

const { json, runDirArg } = Flags
const runDirOption = Options.directory("run-dir").pipe(
  Options.withDescription("the run directory (default: .sluice/runs/<pipeline name>)"),
  Options.optional
)
const { budget, concurrency, deadline, maxBatches, maxEnqueuedTokens, mode, onlineBelow, onlineBudget, outputFileWait, outputTokens, pollSeconds, maxPollSeconds, previewRows, prices, rpm, shardSize, tpm } = Flags
const detach = Options.boolean("detach").pipe(Options.withDescription("plan and submit, then exit; continue with `sluice resume`"))
const keepProviderFiles = Options.boolean("keep-provider-files").pipe(
  Options.withDescription(
    "leave each collected batch's output and error files at the provider (its input file is deleted all the same). The run records it: later resumes and retries keep the files too"
  )
)
const onFinish = Options.text("on-finish").pipe(
  Options.withDescription(
    `a shell command run when the run ends (finished, stopped by a budget, or failed), with the summary JSON on stdin and SLUICE_EVENT, SLUICE_RUN_DIR, SLUICE_ROWS, SLUICE_SUCCEEDED, SLUICE_FAILED, SLUICE_PENDING, SLUICE_SPENT_USD set; default $${Notify.envVariables.onFinish}`
  ),
  Options.optional
)
const notify = Options.text("notify").pipe(
  Options.withDescription(
    `a URL to POST {event, summary} to when the run ends (run.finished, budget.reached, run.failed), retried on 5xx and network errors; default $${Notify.envVariables.notify}`
  ),
  Options.optional
)
const cacheDirOption = Options.directory("cache-dir").pipe(
  Options.withDescription("the response cache (default: $SLUICE_CACHE_DIR, else .sluice/cache)"),
  Options.optional
)
const noCache = Options.boolean("no-cache").pipe(
  Options.withDescription("neither reuse answers from the response cache nor store new ones")
)
const noTypecheck = Options.boolean("no-typecheck").pipe(
  Options.withDescription("load the pipeline file without type-checking it first (SLUICE_TYPECHECK=off does the same)")
)
const allowChanged = Options.boolean("allow-changed").pipe(
  Options.withDescription("continue a run although its pipeline changed since it started")
)
const rebindProvider = Options.boolean("rebind-provider").pipe(
  Options.withDescription(
    "move a run to its providers as configured now (another base URL, Azure resource or API version); refused while a batch is in flight"
  )
)
const breakLock = Options.boolean("break-lock").pipe(
  Options.withDescription(
    "take over the run directory's lock although it names a process on another host (which may still run: check first) or none at all; never a live process on this host"
  )
)
const emulator = Options.boolean("emulator").pipe(
  Options.withDescription(
    "run against the built-in emulator, started for this run: no key, nothing sent out, nothing paid; its runs live under .sluice/emulator/"
  )
)

/** Where a run's outputs are: its sink, or the run directory's outputs.jsonl. */
const outputOf = (pipeline: Pipeline.Pipeline<any, any>, runDir: string): string =>
  pipeline.sink === undefined ? `${runDir}/outputs.jsonl` : pipeline.sink.name

const failedRows = (s: RunSummary): number => Object.values(s.failed).reduce((a, b) => a + b, 0)

const whereLines = (s: RunSummary, output: string): Array<string> => [
  `output: ${output}`,
  ...(failedRows(s) > 0 ? [`failed rows are listed in ${s.runDir}/failures.jsonl`] : []),
  `run directory: ${s.runDir}`
]

/** The summary a run ends with; `emulated` when its answers came from the built-in emulator (nothing was paid). */
/** Source files changed after the run read them: what that means, and what to do. */
const sourceChangedLines = (s: RunSummary): Array<string> =>
  (s.sourceChanged ?? []).map((c) =>
    `warning: ${c.path} changed after this run read it (${count(c.plannedBytes, "byte")} then, ${number(c.bytes)} now): ` +
    `rows added or changed since are not in this run. To process them, start a new run in another run directory ` +
    `(\`sluice run <pipeline> --run-dir <new dir>\`): rows answered before come from the response cache at no cost`
  )

const summaryLines = (s: RunSummary, output: string, emulated = false): string => {
  const failed = failedRows(s)
  const cost = s.cost
  if (s.alreadyFinished === true) {
    return [
      `nothing to do: run ${s.runId} has finished: ${count(s.rows, "row")}, ${number(s.succeeded)} succeeded, ` +
        `${number(failed)} failed, ${count(s.batches, "batch", "batches")}`,
      ...whereLines(s, output),
      ...sourceChangedLines(s)
    ].join("\n")
  }
  const lines = [
    `${s.finished ? "done" : "submitted"}: ${count(s.rows, "row")}, ${number(s.succeeded)} succeeded, ` +
      `${number(failed)} failed, ${number(s.pending)} pending, ${count(s.batches, "batch", "batches")}` +
      (s.onlineShards > 0 ? `, ${count(s.onlineShards, "shard")} online` : ""),
    `tokens: ${number(s.usage.input)} in (${number(s.usage.cached)} cached), ${number(s.usage.output)} out` +
      (s.fromCache > 0 ? `; ${count(s.fromCache, "row")} answered from the response cache (no cost)` : ""),
    costLine(s, emulated),
    ...whereLines(s, output)
  ]
  if (s.duplicates > 0) {
    lines.push(
      `${count(s.duplicates, "row")} repeat an earlier row's key and request: not sent, the earlier row's answer stands for them (listed in ${s.runDir}/failures.jsonl as duplicate)`
    )
  }
  if (s.budget !== undefined && s.budget.heldShards > 0) {
    lines.push(
      `budget of ${money(s.budget.limit)} reached: submitted work projected at ${money(s.budget.projected)}; ` +
        `${count(s.budget.heldShards, "shard")} (${count(s.budget.heldRows, "row")}) not submitted. Resume with a higher --budget to continue.`
    )
  }
  lines.push(...hybridLines(s), ...sourceChangedLines(s))
  return lines.join("\n")
}

/** A hybrid run's deadline, the rows each mode answered, and what the online budget held back. */
const hybridLines = (s: RunSummary): Array<string> => {
  const lines: Array<string> = []
  if (s.deadline !== null) {
    lines.push(
      `deadline ${s.deadline.at} (--deadline ${s.deadline.given})${s.deadline.passed ? ": passed" : ""}; ` +
        `rows answered by batch ${number(s.rowsByMode.batch)}, online ${number(s.rowsByMode.online)}`
    )
  }
  if (s.onlineBudget !== undefined && s.onlineBudget.heldShards > 0) {
    lines.push(
      `online budget of ${money(s.onlineBudget.limit)} reached: online sends projected at ${money(s.onlineBudget.projected)}; ` +
        `${count(s.onlineBudget.heldShards, "shard")} (${count(s.onlineBudget.heldRows, "row")}) not sent. Resume with a higher --online-budget to continue.`
    )
  }
  return lines
}

/**
 * What the run cost. A batch run: at batch prices, next to what the same work costs in real
 * time. With online answers: what was spent (online at real-time prices, batch at batch
 * prices), next to what the same work costs in batch.
 */
const costLine = (s: RunSummary, emulated: boolean): string => {
  const cost = s.cost
  if (cost === null) return `cost: no price for ${s.models.join(" or ")} in the price table`
  const label = emulated ? "cost had this run been real (the emulator charged nothing)" : "cost"
  const online = s.costByMode.online
  if (online.usage.input + online.usage.output === 0 || s.spent === null) {
    return `${label}: ${money(cost.batch)} at batch prices; the same work at real-time prices: ${money(cost.realtime)} (prices of ${s.prices})`
  }
  const batch = s.costByMode.batch
  const parts = [`online ${money(online.cost ?? 0)} at real-time prices`, ...(batch.usage.input + batch.usage.output > 0 ? [`batch ${money(batch.cost ?? 0)} at batch prices`] : [])]
  return `${label}: ${money(s.spent)} (${parts.join(", ")}); the same work in batch: ${money(cost.batch)} (prices of ${s.prices})`
}

const exitFor = (s: RunSummary): number => {
  if (!s.finished || s.pending > 0) return ExitCode.unfinished
  return Object.values(s.failed).some((n) => n > 0) ? ExitCode.rowsFailed : ExitCode.ok
}

/**
 * Type-checks the pipeline file (unless turned off), then loads it. With `expect` (resume,
 * retry), a file whose SHA-256 is not the one the run recorded is refused before either.
 */
const loadPipeline = (file: string, noTypecheck: boolean, expect?: { readonly sha256: string; readonly runDir: string }) =>
  Effect.gen(function* () {
    if (expect !== undefined) yield* PipelineLoader.verify(file, expect)
    const checked = TypeCheck.enabled(noTypecheck) ? yield* TypeCheck.check(file) : undefined
    return { ...(yield* PipelineLoader.load(file, expect)), checked }
  })

/** `--poll-interval` (a fixed wait) and `--max-poll-interval` (the adaptive schedule's cap), as run options. */
const pollOptions = (opts: { readonly pollSeconds: Option.Option<number>; readonly maxPollSeconds?: Option.Option<number> | undefined }) => ({
  ...(Option.isSome(opts.pollSeconds) ? { pollInterval: Duration.millis(opts.pollSeconds.value * 1000) } : {}),
  ...(opts.maxPollSeconds !== undefined && Option.isSome(opts.maxPollSeconds) ? { maxPollInterval: Duration.millis(opts.maxPollSeconds.value * 1000) } : {})
})

/** `--on-finish` and `--notify` as given, else as the environment names them (Notify.ts). */
const notifyTargets = (opts: { readonly onFinish?: Option.Option<string>; readonly notify?: Option.Option<string> }): Notify.Targets =>
  Notify.fromEnv({ onFinish: Option.getOrUndefined(opts.onFinish ?? Option.none()), notify: Option.getOrUndefined(opts.notify ?? Option.none()) })

const execute = (
  pipelineFile: string,
  opts: {
    runDir: Option.Option<string>
    concurrency: Option.Option<number>
    mode?: Option.Option<"batch" | "online" | "auto">
    rpm?: Option.Option<number>
    tpm?: Option.Option<number>
    shardSize: Option.Option<number>
    pollSeconds: Option.Option<number>
    maxPollSeconds?: Option.Option<number>
    outputFileWait: number
    prices: Option.Option<string>
    detach: boolean
    keepProviderFiles?: boolean
    allowChanged: boolean
    rebindProvider?: boolean
    json: boolean
    action?: "run" | "retry" | "cancel"
    retryClasses?: ReadonlyArray<FailureClass>
    budget?: Option.Option<number>
    maxEnqueuedTokens?: Option.Option<EnqueuedTokens.Limits>
    maxBatches?: Option.Option<EnqueuedTokens.Limits>
    outputTokens?: Option.Option<number>
    deadline?: Option.Option<Duration.Duration>
    onlineBudget?: Option.Option<number>
    onlineBelow?: Option.Option<number>
    cacheDir: Option.Option<string>
    noCache: boolean
    noTypecheck: boolean
    emulator?: boolean
    breakLock?: boolean
    onFinish?: Option.Option<string>
    notify?: Option.Option<string>
    /** The SHA-256 the run recorded for the file (resume, retry): another file is not loaded. */
    expect?: { readonly sha256: string; readonly runDir: string }
  },
  reporting: Reporting
) =>
  Effect.gen(function* () {
    const targets = notifyTargets(opts)
    const badUrl = targets.notify === undefined ? undefined : Notify.invalidUrl(targets.notify)
    if (badUrl !== undefined) return yield* new PipelineLoader.PipelineLoadError({ file: pipelineFile, description: badUrl })
    // A bad prices file is refused before the pipeline file is loaded.
    const priceTable = yield* Pricing.load(Option.getOrUndefined(opts.prices))
    const { pipeline, file, sha256 } = yield* loadPipeline(pipelineFile, opts.noTypecheck, opts.expect)
    if (opts.emulator === true) {
      const LocalEmulator = yield* lazy(() => import("./LocalEmulator.js"))
      if (opts.detach) return yield* new LocalEmulator.LocalEmulatorError({ description: "cannot --detach: the emulator lives only as long as the run" })
      const local = yield* LocalEmulator.start(pipeline.name)
      opts = { ...opts, runDir: Option.orElse(opts.runDir, () => Option.some(local.runDir)), cacheDir: Option.orElse(opts.cacheDir, () => Option.some(local.cacheDir)) }
    }
    const runDir = runDirFor(pipeline, Option.getOrUndefined(opts.runDir), yield* Path.Path)
    reporting.runDir = runDir
    const progress = Progress.make({ prices: priceTable })
    const renderer = yield* Effect.fork(progress.render)
    const summary = yield* runPipeline(pipeline, {
      ...(Option.isSome(opts.runDir) ? { runDir: opts.runDir.value } : {}),
      pipelineFile: file,
      pipelineSha256: sha256,
      breakLock: opts.breakLock === true,
      ...(Option.isSome(opts.concurrency) ? { concurrency: opts.concurrency.value } : {}),
      ...(opts.mode !== undefined && Option.isSome(opts.mode) ? { mode: opts.mode.value } : {}),
      ...(opts.rpm !== undefined && Option.isSome(opts.rpm) ? { rpm: opts.rpm.value } : {}),
      ...(opts.tpm !== undefined && Option.isSome(opts.tpm) ? { tpm: opts.tpm.value } : {}),
      ...(Option.isSome(opts.shardSize) ? { shardSize: opts.shardSize.value } : {}),
      ...pollOptions(opts),
      outputFileWait: Duration.millis(opts.outputFileWait * 1000),
      prices: priceTable,
      detach: opts.detach,
      ...(opts.keepProviderFiles === true ? { keepProviderFiles: true } : {}),
      allowChanged: opts.allowChanged,
      rebindProvider: opts.rebindProvider === true,
      providerEndpoints: Registry.endpoints(pipeline.stages.map((s) => s.provider)),
      observer: progress.observer,
      ...(opts.budget !== undefined && Option.isSome(opts.budget) ? { budget: opts.budget.value } : {}),
      ...(opts.outputTokens !== undefined && Option.isSome(opts.outputTokens) ? { budgetOutputTokens: opts.outputTokens.value } : {}),
      ...(opts.maxEnqueuedTokens !== undefined && Option.isSome(opts.maxEnqueuedTokens) ? { maxEnqueuedTokens: opts.maxEnqueuedTokens.value } : {}),
      ...(opts.maxBatches !== undefined && Option.isSome(opts.maxBatches) ? { maxBatches: opts.maxBatches.value } : {}),
      ...(opts.deadline !== undefined && Option.isSome(opts.deadline) ? { deadline: opts.deadline.value } : {}),
      ...(opts.onlineBudget !== undefined && Option.isSome(opts.onlineBudget) ? { onlineBudget: opts.onlineBudget.value } : {}),
      ...(opts.onlineBelow !== undefined && Option.isSome(opts.onlineBelow) ? { onlineBelow: opts.onlineBelow.value } : {}),
      action: opts.action ?? "run",
      ...(opts.noCache ? { cache: false as const } : Option.isSome(opts.cacheDir) ? { cache: opts.cacheDir.value } : {}),
      ...(opts.retryClasses === undefined ? {} : { retryClasses: opts.retryClasses })
    }).pipe(
      // Spans and metrics to the OTLP endpoint the environment names, if it names one.
      Telemetry.exported,
      Effect.ensuring(Fiber.interrupt(renderer)),
      Effect.ensuring(progress.finish),
      // A missing key is where a first try stops: say how to try without one.
      Effect.mapError((e) =>
        e instanceof ProviderConfigError && opts.emulator !== true && e.description.includes("is not set")
          ? new ProviderConfigError({ provider: e.provider, description: `${e.description} (or try the pipeline without a key, against the built-in emulator: sluice run ${pipelineFile} --emulator)` })
          : e
      )
    )
    yield* opts.json ? Console.log(JSON.stringify(summary, null, 2)) : Console.error(summaryLines(summary, outputOf(pipeline, summary.runDir), opts.emulator === true))
    yield* setExit(exitFor(summary))
    const event = Notify.eventOf(summary)
    if (event !== undefined) yield* Notify.announce(targets, event, summary)
  }).pipe(
    Effect.scoped,
    // The end announced to --on-finish and --notify (Notify.ts); they never change the outcome.
    // Another process holding the run is not the run failing; Ctrl-C is not either.
    Effect.tapErrorCause((cause) => {
      const targets = notifyTargets(opts)
      // A --notify refused as no URL is reported, not announced.
      if (targets.notify !== undefined && Notify.invalidUrl(targets.notify) !== undefined) return Effect.void
      const report = Failure.describe(cause, reporting.runDir)
      if (report.tag === "RunLocked" || report.tag === "Interrupted" || (targets.onFinish === undefined && targets.notify === undefined)) return Effect.void
      const { printed: _, resume: __, ...error } = report
      return Notify.announce(targets, "run.failed", { error })
    })
  )

/** The flags `run --cluster` does not carry to the workers yet: refused rather than ignored. */
/** The flags `run`, `resume` and `retry` give `--cluster`. */
type ClusterRunFlags = Parameters<typeof execute>[1] & { readonly preview?: boolean }

const notOnCluster = (opts: ClusterRunFlags): Array<string> => [
  ...(opts.preview === true ? ["--preview"] : []),
  ...(opts.emulator === true ? ["--emulator"] : []),
  ...(opts.mode !== undefined && Option.isSome(opts.mode) ? ["--mode"] : []),
  ...(opts.rpm !== undefined && Option.isSome(opts.rpm) ? ["--rpm"] : []),
  ...(opts.tpm !== undefined && Option.isSome(opts.tpm) ? ["--tpm"] : []),
  ...(opts.maxPollSeconds !== undefined && Option.isSome(opts.maxPollSeconds) ? ["--max-poll-interval"] : []),
  ...(opts.keepProviderFiles === true ? ["--keep-provider-files"] : []),
  ...(opts.allowChanged ? ["--allow-changed"] : []),
  ...(opts.rebindProvider === true ? ["--rebind-provider"] : []),
  ...(opts.breakLock === true ? ["--break-lock"] : []),
  ...(opts.budget !== undefined && Option.isSome(opts.budget) ? ["--budget"] : []),
  ...(opts.deadline !== undefined && Option.isSome(opts.deadline) ? ["--deadline"] : []),
  ...(opts.onlineBudget !== undefined && Option.isSome(opts.onlineBudget) ? ["--online-budget"] : []),
  ...(opts.onlineBelow !== undefined && Option.isSome(opts.onlineBelow) ? ["--online-below"] : []),
  ...(opts.onFinish !== undefined && Option.isSome(opts.onFinish) ? ["--on-finish"] : []),
  ...(opts.notify !== undefined && Option.isSome(opts.notify) ? ["--notify"] : [])
]

/**
 * `sluice run --cluster`: starts the run as a workflow on the cluster (Cluster.ts) and, unless
 * `--detach`, waits for it and prints its summary from the run directory the workers shared.
 */
const executeOnCluster = (
  pipelineFile: string,
  databaseUrl: Redacted.Redacted,
  opts: ClusterRunFlags,
  reporting: Reporting,
  /** `resume` and `retry --cluster`: the file the run recorded, and (retry) the classes to resubmit. */
  continued: { readonly expect?: { readonly sha256: string; readonly runDir: string }; readonly retry?: { readonly classes?: ReadonlyArray<string> } } = {}
) =>
  Effect.gen(function* () {
    const Cluster = yield* lazy(() => import("./Cluster.js"))
    quietPgQueryQueueWarning()
    const refused = notOnCluster(opts)
    if (refused.length > 0) {
      return yield* new Cluster.ClusterUsage({ description: `${refused.join(", ")}: not supported with --cluster yet (see Distributed runs in the README)` })
    }
    const path = yield* Path.Path
    const priceTable = yield* Pricing.load(Option.getOrUndefined(opts.prices))
    const { pipeline, file, sha256 } = yield* loadPipeline(pipelineFile, opts.noTypecheck, continued.expect)
    const runDir = runDirFor(pipeline, Option.getOrUndefined(opts.runDir), path)
    reporting.runDir = runDir
    const cache = opts.noCache ? false : Option.isSome(opts.cacheDir) ? opts.cacheDir.value : defaultCacheDir({})
    const paths = RunDir.paths(runDir, path)
    // The run's journal is in the cluster's database (a run from before journals moved there: in the run directory).
    const JournalPg = yield* lazy(() => import("./JournalPg.js"))
    const journals = yield* Layer.build(JournalPg.layer(databaseUrl))
    // While it waits: the run's journal as the workers write it, shown as a one-machine run shows its own.
    let stopFollowing: Effect.Effect<void> = Effect.void
    if (!opts.detach) {
      const ClusterFollow = yield* lazy(() => import("./ClusterFollow.js"))
      const progress = Progress.make({ prices: priceTable })
      const follower = yield* ClusterFollow.make(paths, progress.observer).pipe(Effect.provide(journals))
      const following = yield* Effect.forkScoped(Effect.all([follower.run, progress.render], { concurrency: 2, discard: true }))
      // The last events first (the run may have ended between two reads), then the view's last word.
      stopFollowing = Effect.zipRight(Effect.zipRight(Fiber.interrupt(following), follower.catchUp), progress.finish)
    }
    const started = yield* Cluster.start({
      databaseUrl,
      pipeline,
      pipelineFile: file,
      pipelineSha256: sha256,
      runDir,
      detach: opts.detach,
      ...(continued.retry === undefined ? {} : { retry: continued.retry }),
      settings: {
        ...(Option.isSome(opts.concurrency) ? { concurrency: opts.concurrency.value } : {}),
        ...(Option.isSome(opts.shardSize) ? { shardSize: opts.shardSize.value } : {}),
        ...(opts.maxEnqueuedTokens !== undefined && Option.isSome(opts.maxEnqueuedTokens) ? { maxEnqueuedTokens: opts.maxEnqueuedTokens.value } : {}),
        ...(opts.maxBatches !== undefined && Option.isSome(opts.maxBatches) ? { maxBatches: opts.maxBatches.value } : {}),
        pollSeconds: Option.getOrElse(opts.pollSeconds, () => 60),
        outputFileWaitSeconds: opts.outputFileWait,
        cache: cache === false ? false : path.resolve(cache)
      }
    }).pipe(Effect.ensuring(stopFollowing))
    if (started.totals === undefined) {
      yield* opts.json
        ? Console.log(JSON.stringify({ runId: started.runId, runDir, started: true, attempt: started.attempt }, null, 2))
        : Console.error(`started run ${started.runId} on the cluster; follow it with: sluice status ${runDir}`)
      return
    }
    const manifest = yield* RunDir.readManifest(paths)
    const summary = summarize({ runId: manifest.runId, paths, state: yield* loadState(paths).pipe(Effect.provide(journals)), models: pipeline.stages.map((s) => s.model), prices: priceTable })
    yield* opts.json ? Console.log(JSON.stringify(summary, null, 2)) : Console.error(summaryLines(summary, outputOf(pipeline, summary.runDir)))
    yield* setExit(exitFor(summary))
  }).pipe(Effect.scoped)

const workerCommand = Command.make(
  "worker",
  {
    databaseUrl: Options.redacted("database-url").pipe(
      Options.withPseudoName("postgres://…"),
      Options.withDescription(`the cluster's PostgreSQL database, postgres://… (default: $${databaseUrlVariable})`),
      Options.optional
    ),
    host: Options.text("host").pipe(
      Options.withPseudoName("host"),
      Options.withDescription("the host name or address the other workers reach this one at"),
      Options.withDefault("localhost")
    ),
    port: Options.integer("port").pipe(Options.withPseudoName("port"), Options.withDescription("the port this worker listens on for the other workers"), Options.withDefault(34431)),
    lockExpiration: Options.integer("lock-expiration").pipe(
      Options.withPseudoName("seconds"),
      Options.withDescription(
        "seconds a worker that stopped answering keeps its share of the cluster: the others take its runs over after about this long (default 35; give every worker the same)"
      ),
      Options.mapEffect((n) =>
        n >= 3 && n <= 3600 ? Effect.succeed(n) : Effect.fail(ValidationError.invalidValue(HelpDoc.p(`--lock-expiration must be an integer from 3 to 3600, got ${n}`)))
      ),
      Options.optional
    ),
    stateDir: Options.directory("state-dir").pipe(
      Options.withPseudoName("dir"),
      Options.withDescription(
        "where this worker keeps its copies of the runs' files, which the cluster's database holds (default: $SLUICE_WORKER_STATE_DIR, else sluice-worker-<uid> in the temporary directory)"
      ),
      Options.optional
    )
  },
  (opts) =>
    reported(false, () =>
      Effect.gen(function* () {
        const Cluster = yield* lazy(() => import("./Cluster.js"))
        quietPgQueryQueueWarning()
        const databaseUrl = yield* Cluster.databaseUrl(opts.databaseUrl, "--database-url")
        const path = yield* Path.Path
        yield* Cluster.work(
          {
            databaseUrl,
            host: opts.host,
            port: opts.port,
            ...(Option.isSome(opts.lockExpiration) ? { lockExpiration: Duration.seconds(opts.lockExpiration.value) } : {}),
            ...(Option.isSome(opts.stateDir) ? { stateDir: path.resolve(opts.stateDir.value) } : {})
          },
          Effect.logInfo(`worker ${process.pid} joined the cluster, reachable at ${opts.host}:${opts.port}`)
        )
      })
    )
).pipe(
  Command.withDescription(
    "Join the cluster of workers sharing a PostgreSQL database and drive the runs started with `sluice run --cluster`, until stopped. Provider keys come from this process's environment."
  )
)

/** Options of `sluice preview` (and of `run --preview`). */
interface PreviewFlags {
  readonly rows: Option.Option<number>
  readonly concurrency: Option.Option<number>
  readonly rpm: Option.Option<number>
  readonly tpm: Option.Option<number>
  readonly outputTokens: Option.Option<number>
  readonly prices: Option.Option<string>
  readonly cacheDir: Option.Option<string>
  readonly noCache: boolean
  readonly noTypecheck: boolean
  readonly emulator: boolean
  readonly keep: boolean
  readonly json: boolean
}

/**
 * Runs the first rows of a pipeline online (see Preview.ts) and shows them, with the full run's
 * cost. A failure names no run directory: the preview's own is temporary, nothing to resume.
 */
const previewPipeline = (pipelineFile: string, opts: PreviewFlags) =>
  Effect.gen(function* () {
    const priceTable = yield* Pricing.load(Option.getOrUndefined(opts.prices))
    const { pipeline } = yield* loadPipeline(pipelineFile, opts.noTypecheck)
    let cacheDir = opts.cacheDir
    if (opts.emulator) {
      const LocalEmulator = yield* lazy(() => import("./LocalEmulator.js"))
      const local = yield* LocalEmulator.start(pipeline.name)
      cacheDir = Option.orElse(cacheDir, () => Option.some(local.cacheDir))
    }
    const Preview = yield* lazy(() => import("./Preview.js"))
    const progress = Progress.make({ prices: priceTable })
    const renderer = yield* Effect.fork(progress.render)
    const result = yield* Preview.preview(pipeline, {
      prices: priceTable,
      keep: opts.keep,
      observer: progress.observer,
      ...(Option.isSome(opts.rows) ? { rows: opts.rows.value } : {}),
      ...(Option.isSome(opts.concurrency) ? { concurrency: opts.concurrency.value } : {}),
      ...(Option.isSome(opts.rpm) ? { rpm: opts.rpm.value } : {}),
      ...(Option.isSome(opts.tpm) ? { tpm: opts.tpm.value } : {}),
      ...(Option.isSome(opts.outputTokens) ? { outputTokens: opts.outputTokens.value } : {}),
      ...(opts.noCache ? { cache: false as const } : Option.isSome(cacheDir) ? { cache: cacheDir.value } : {})
    }).pipe(
      Effect.ensuring(Fiber.interrupt(renderer)),
      Effect.ensuring(progress.finish),
      // As `run`: a missing key is where a first try stops; say how to try without one.
      Effect.mapError((e) =>
        e instanceof ProviderConfigError && !opts.emulator && e.description.includes("is not set")
          ? new ProviderConfigError({ provider: e.provider, description: `${e.description} (or preview against the built-in emulator: sluice preview ${pipelineFile} --emulator)` })
          : e
      )
    )
    yield* opts.json
      ? Console.log(JSON.stringify(result, null, 2))
      : Console.log(Preview.render(result, { width: Math.min(process.stdout.columns ?? 120, 160), emulated: opts.emulator }))
    yield* setExit(Preview.failedRows(result) > 0 ? ExitCode.rowsFailed : ExitCode.ok)
  }).pipe(Effect.scoped)

const keep = Options.boolean("keep").pipe(
  Options.withDescription("keep the preview's run directory (a private temp directory, named at the end) instead of removing it")
)

const previewCommand = Command.make(
  "preview",
  {
    pipeline: Args.file({ name: "pipeline.ts" }).pipe(Args.withDescription("the pipeline file")),
    rows: previewRows,
    concurrency,
    rpm,
    tpm,
    outputTokens,
    prices,
    cacheDir: cacheDirOption,
    noCache,
    noTypecheck,
    emulator,
    keep,
    json
  },
  ({ pipeline, ...opts }) => reported(opts.json, () => previewPipeline(pipeline, opts))
).pipe(
  Command.withDescription(
    "Run the first rows of a pipeline (-n, default 20) online through every stage and print each input next to what every stage made of it " +
      "(its parsed output, or the failure with its class and message), then what the full run would cost in batch and in online mode. " +
      "Writes nothing to the pipeline's sinks and leaves no run directory; answers go to the response cache as a run's do (--no-cache: none). " +
      "Exits 1 when a row failed."
  )
)

/** `run --preview` is `preview`; what only a run takes is refused with it, and `-n` without it. */
const runOrPreview = (
  pipeline: string,
  opts: Parameters<typeof execute>[1] & Omit<PreviewFlags, "keep"> & { readonly preview: boolean; readonly cluster: Option.Option<Redacted.Redacted> },
  reporting: Reporting
) =>
  Effect.gen(function* () {
    if (Option.isSome(opts.cluster)) return yield* executeOnCluster(pipeline, opts.cluster.value, opts, reporting)
    if (!opts.preview) {
      if (Option.isSome(opts.rows)) {
        return yield* new PipelineLoader.PipelineLoadError({ file: pipeline, description: "-n/--rows is for a preview: add --preview (or use sluice preview)" })
      }
      return yield* execute(pipeline, opts, reporting)
    }
    const runOnly = [
      ...(Option.isSome(opts.runDir) ? ["--run-dir"] : []),
      ...(opts.detach ? ["--detach"] : []),
      ...(opts.keepProviderFiles === true ? ["--keep-provider-files"] : []),
      ...(opts.budget !== undefined && Option.isSome(opts.budget) ? ["--budget"] : []),
      ...(Option.isSome(opts.shardSize) ? ["--shard-size"] : []),
      ...(opts.mode !== undefined && Option.isSome(opts.mode) && opts.mode.value !== "online" ? [`--mode ${opts.mode.value}`] : []),
      ...(opts.allowChanged ? ["--allow-changed"] : []),
      ...(opts.rebindProvider === true ? ["--rebind-provider"] : []),
      ...(opts.breakLock === true ? ["--break-lock"] : []),
      ...(opts.onFinish !== undefined && Option.isSome(opts.onFinish) ? ["--on-finish"] : []),
      ...(opts.notify !== undefined && Option.isSome(opts.notify) ? ["--notify"] : [])
    ]
    if (runOnly.length > 0) {
      return yield* new PipelineLoader.PipelineLoadError({
        file: pipeline,
        description: `--preview runs the first rows online in a directory of its own: ${runOnly.join(", ")} ${runOnly.length === 1 ? "does" : "do"} not apply to it`
      })
    }
    yield* previewPipeline(pipeline, { ...opts, keep: false })
  })

/** The options of every command that runs shards (run, resume, retry). */
const execution = {
  mode,
  concurrency,
  rpm,
  tpm,
  pollSeconds,
  maxPollSeconds,
  outputFileWait,
  detach,
  keepProviderFiles,
  allowChanged,
  rebindProvider,
  maxEnqueuedTokens,
  maxBatches,
  deadline,
  onlineBudget,
  onlineBelow,
  prices,
  cacheDir: cacheDirOption,
  noCache,
  noTypecheck,
  onFinish,
  notify,
  breakLock,
  json
}

const runCommand = Command.make(
  "run",
  {
    pipeline: Args.file({ name: "pipeline.ts" }).pipe(Args.withDescription("the pipeline file")),
    runDir: runDirOption,
    shardSize,
    ...execution,
    budget,
    outputTokens,
    emulator,
    preview: Options.boolean("preview").pipe(
      Options.withDescription("run only the first rows (-n, default 20) online and show them, as `sluice preview` does: nothing written, no run directory")
    ),
    rows: previewRows,
    cluster: Options.redacted("cluster").pipe(
      Options.withPseudoName("postgres://…"),
      Options.withDescription(
        "run on the cluster of `sluice worker`s sharing this PostgreSQL database (postgres://…): the run is a durable workflow, driven by the workers; its journal and files are held by the database (the run directory here is a copy), the pipeline file, its sources and file sinks must be on a path they all see (see Distributed runs in the README)"
      ),
      Options.optional
    )
  },
  ({ pipeline, ...opts }) => reported(opts.json, (reporting) => runOrPreview(pipeline, opts, reporting))
).pipe(
  Command.withDescription(
    "Run a pipeline. Running it again on the same run directory continues where it stopped: nothing finished is submitted twice."
  )
)

/**
 * The cluster `resume` and `retry` continue a run through: `--cluster`, else, for a run that
 * keeps its journal in a cluster's database (which this machine cannot continue on its own),
 * `$SLUICE_DATABASE_URL`, said in a line; neither for such a run: JournalElsewhere, before any
 * pipeline is loaded. A run whose journal is in its directory runs here without `--cluster`.
 */
const clusterOfRun = (root: string, runId: string, given: Option.Option<Redacted.Redacted>) =>
  Effect.gen(function* () {
    if (Option.isSome(given) || !JournalMarker.keptInDatabase(root)) return given
    const env = process.env[databaseUrlVariable]
    if (env === undefined || env === "") return yield* new JournalElsewhere({ runDir: root, runId })
    yield* Effect.logInfo(`run ${runId} keeps its journal in its cluster's database: continued through the cluster of $${databaseUrlVariable}, as with --cluster`)
    return Option.some(Redacted.make(env))
  })

/**
 * Runs the pipeline file a run directory's manifest names, on that directory, from the
 * directory the run was started in (paths given here resolve against where we stand). The
 * file is loaded only if it is the one the run recorded (its SHA-256): a run directory must
 * not get to run code of its choosing. A relative name resolves against the run directory.
 */
const continueRun = (
  runDir: string,
  opts: Omit<Parameters<typeof execute>[1], "runDir" | "shardSize" | "expect"> & { readonly cluster: Option.Option<Redacted.Redacted> },
  reporting: Reporting
) =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    const paths = RunDir.paths(path.resolve(runDir), path)
    reporting.runDir = paths.root
    const manifest = yield* RunDir.readManifest(paths)
    if (manifest.pipelineFile === null) {
      return yield* new PipelineLoader.PipelineLoadError({ file: runDir, description: "the manifest names no pipeline file" })
    }
    const pipelineFile = path.resolve(paths.root, manifest.pipelineFile)
    const expect = manifest.pipelineSha256 === undefined ? undefined : { sha256: manifest.pipelineSha256, runDir: paths.root }
    const cacheDir = Option.map(opts.cacheDir, (dir) => path.resolve(dir))
    yield* RunDir.enterBaseDir(paths, manifest)
    const cluster = yield* clusterOfRun(paths.root, manifest.runId, opts.cluster)
    if (Option.isSome(cluster)) {
      // A new attempt of the run's workflow (or the one in progress), as `run --cluster` again would.
      const classes = opts.action === "retry" ? { retry: opts.retryClasses === undefined ? {} : { classes: opts.retryClasses } } : {}
      return yield* executeOnCluster(
        pipelineFile,
        cluster.value,
        { ...opts, cacheDir, runDir: Option.some(paths.root), shardSize: Option.none() },
        reporting,
        { ...(expect === undefined ? {} : { expect }), ...classes }
      )
    }
    yield* execute(pipelineFile, { ...opts, cacheDir, runDir: Option.some(paths.root), shardSize: Option.none(), ...(expect === undefined ? {} : { expect }) }, reporting)
  })


/** `resume` and `retry` of a run on a cluster: a new attempt of its workflow, driven by the workers. */
const continueOnCluster = Options.redacted("cluster").pipe(
  Options.withPseudoName("postgres://…"),
  Options.withDescription(
    `a run on the cluster of \`sluice worker\`s sharing this PostgreSQL database: its workflow goes on (a new attempt when it failed or was cancelled), driven by the workers, as \`run --cluster\` does (default for a run that keeps its journal in the database: $${databaseUrlVariable})`
  ),
  Options.optional
)

const resumeCommand = Command.make(
  "resume",
  { runDir: runDirArg, ...execution, budget, outputTokens, cluster: continueOnCluster },
  ({ runDir, ...opts }) => reported(opts.json, (reporting) => continueRun(runDir, opts, reporting))
).pipe(Command.withDescription("Continue a run from its directory: collect what finished, submit what remains."))

const classChoices = ["retryable", "expired", "cancelled", "missing", "parse", "permanent", "sink_rejected"] as const

const retryCommand = Command.make(
  "retry",
  {
    runDir: runDirArg,
    only: Options.text("only").pipe(
      Options.withDescription(
        "comma-separated failure classes to resubmit: retryable, expired, cancelled, missing, parse, permanent, sink_rejected (default: all but permanent and sink_rejected)"
      ),
      Options.optional
    ),
    ...execution,
    cluster: continueOnCluster
  },
  ({ runDir, only, ...opts }) =>
    reported(opts.json, (reporting) => Effect.gen(function* () {
      const classes = Option.isSome(only) ? only.value.split(",").map((c) => c.trim()).filter((c) => c !== "") : undefined
      const unknown = (classes ?? []).filter((c) => !(classChoices as ReadonlyArray<string>).includes(c))
      if (unknown.length > 0 || (classes !== undefined && classes.length === 0)) {
        return yield* new PipelineLoader.PipelineLoadError({
          file: runDir,
          description: `--only takes classes from ${classChoices.join(", ")}; got "${Option.getOrElse(only, () => "")}"`
        })
      }
      yield* continueRun(runDir, {
        ...opts,
        action: "retry",
        ...(classes === undefined ? {} : { retryClasses: classes as ReadonlyArray<FailureClass> })
      }, reporting)
    }))
).pipe(Command.withDescription("Resubmit only the rows that ended failed, replaying their identical requests, then continue the run."))

/** What `cancel` prints after the summary: what it did, and how the run goes on. */
const cancelLines = (s: Cancel.CancelSummary, cluster = false): string => {
  const { cancelled, ended, unsubmitted, online } = s.cancel
  if (cancelled + ended + unsubmitted + online === 0) return `cancel: no batch of run ${s.runId} was in flight`
  const did = [
    ...(cancelled > 0 ? [`${count(cancelled, "batch", "batches")} cancelled`] : []),
    ...(ended > 0 ? [`${count(ended, "batch", "batches")} had ended before`] : []),
    ...(unsubmitted > 0 ? [`${count(unsubmitted, "shard")} not submitted`] : []),
    ...(online > 0 ? [`${count(online, "online shard")} stopped`] : [])
  ].join(", ")
  return (
    `cancel: ${did}. Their results are collected by \`${cluster ? "sluice run <pipeline> --cluster …" : `sluice resume ${s.runDir}`}\`: rows the batches did not run` +
    `${online > 0 ? " or that were never sent online" : ""} end ` +
    `\`cancelled\` (\`sluice retry ${s.runDir} --only cancelled\` submits them again)`
  )
}

/**
 * The cluster database a cancel goes through: `--cluster`, else (for a run its manifest says ran
 * on a cluster) `$SLUICE_DATABASE_URL`; none for a run of one machine.
 */
const cancelDatabase = (runDir: string, given: Option.Option<Redacted.Redacted>) =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    // A directory that is not a run is said so before the database is asked anything.
    const manifest = yield* RunDir.readManifest(RunDir.paths(path.resolve(runDir), path))
    if (Option.isSome(given)) return given
    if (manifest.cluster === undefined) return Option.none<Redacted.Redacted>()
    const env = process.env[databaseUrlVariable]
    if (env !== undefined && env !== "") return Option.some(Redacted.make(env))
    const Cluster = yield* lazy(() => import("./Cluster.js"))
    return yield* new Cluster.ClusterUsage({
      description:
        `run ${manifest.runId} runs on a cluster (database ${manifest.cluster.database}): cancel it through the cluster, ` +
        `with --cluster postgres://… or $${databaseUrlVariable}, so that its workers stop before its batches are cancelled`
    })
  })

const cancelCommand = Command.make(
  "cancel",
  {
    runDir: runDirArg,
    pollSeconds,
    maxPollSeconds,
    outputFileWait,
    prices,
    breakLock,
    json,
    cluster: Options.redacted("cluster").pipe(
      Options.withPseudoName("postgres://…"),
      Options.withDescription(
        `a run on the cluster of \`sluice worker\`s sharing this PostgreSQL database: its workflows are stopped first, then its batches cancelled (default for a cluster run: $${databaseUrlVariable})`
      ),
      Options.optional
    )
  },
  ({ runDir, ...opts }) =>
    // From the run directory alone: nothing it names is loaded (see Cancel.ts).
    reported(opts.json, (reporting) =>
      Effect.gen(function* () {
        const path = yield* Path.Path
        reporting.runDir = path.resolve(runDir)
        const priceTable = yield* Pricing.load(Option.getOrUndefined(opts.prices))
        const database = yield* cancelDatabase(runDir, opts.cluster)
        const Cancel = yield* lazy(() => import("./Cancel.js"))
        const progress = Progress.make({ prices: priceTable })
        const renderer = yield* Effect.fork(progress.render)
        const options = {
          concurrency: ranges.concurrency.max,
          ...pollOptions(opts),
          outputFileWait: Duration.millis(opts.outputFileWait * 1000),
          prices: priceTable,
          breakLock: opts.breakLock,
          observer: progress.observer
        }
        const cancelled = Option.isNone(database)
          ? Cancel.fromJournal(runDir, options)
          : Effect.flatMap(lazy(() => import("./Cluster.js")), (Cluster) => {
            quietPgQueryQueueWarning()
            return Cluster.cancel(database.value, runDir, options)
          })
        const summary = yield* cancelled.pipe(Telemetry.exported, Effect.ensuring(Fiber.interrupt(renderer)), Effect.ensuring(progress.finish))
        yield* opts.json ? Console.log(JSON.stringify(summary, null, 2)) : Console.error(`${cancelLines(summary, Option.isSome(database))}\n${summaryLines(summary, summary.output)}`)
        yield* setExit(exitFor(summary))
      })
    )
).pipe(
  Command.withDescription(
    "Cancel every batch of a run still in flight and wait until the provider has stopped them, from the run directory alone (its pipeline file is not loaded); `resume` collects what they finished. " +
      "A run on a cluster (--cluster, or $SLUICE_DATABASE_URL for a run that records its cluster) has its workflows stopped first; `run --cluster` then collects."
  )
)

const webhookCommand = Command.make(
  "webhook",
  {
    runDirs: Args.directory({ name: "run-dir", exists: "yes" }).pipe(Args.withDescription("run directories whose batches' events it acts on"), Args.repeated),
    runsDir: Options.directory("runs-dir").pipe(
      Options.withDescription("a directory whose subdirectories are run directories, looked at again for a batch not known yet (default .sluice/runs when no run directory is named)"),
      Options.optional
    ),
    port: Options.integer("port").pipe(Options.withDescription("the port to listen on (0: any free one, printed)")),
    host: Options.text("host").pipe(
      Options.withDescription("the address to listen on; put a reverse proxy in front for TLS rather than listening on a public address"),
      Options.withDefault("127.0.0.1")
    )
  },
  ({ runDirs, runsDir, port, host }) =>
    reported(false, () =>
      Effect.gen(function* () {
        const WebhookServer = yield* lazy(() => import("./WebhookServer.js"))
        if (!(port >= 0 && port <= 65535)) return yield* new WebhookServer.WebhookServerError({ description: `--port must be an integer from 0 to 65535, got ${port}` })
        const key = yield* WebhookServer.keyFromEnv()
        const script = process.argv[1]
        if (script === undefined) return yield* new WebhookServer.WebhookServerError({ description: "cannot tell how this sluice was started" })
        yield* WebhookServer.serve(
          {
            port,
            host,
            key,
            runDirs,
            runsDir: Option.getOrUndefined(runsDir) ?? (runDirs.length === 0 ? ".sluice/runs" : undefined),
            sluice: [process.execPath, ...process.execArgv, script]
          },
          (url) => Console.log(`sluice webhook listening on ${url}`)
        )
      })
    )
).pipe(
  Command.withDescription(
    `Receive the provider's batch webhooks (OpenAI's signed events, secret in $${webhookSecretVariable}) and resume the run whose batch ended, detached, at once: ` +
      "signatures checked in constant time, timestamps within 5 minutes, each webhook-id accepted once. Polling (cron, a run in the foreground) stays the fallback."
  )
)

const reportCommand = Command.make(
  "report",
  {
    runDir: runDirArg,
    output: Options.file("output").pipe(
      Options.withAlias("o"),
      Options.withDescription("where to write the report (default: <run-dir>/report.html)"),
      Options.optional
    ),
    sampleRows: Flags.bounded(
      "rows",
      { min: 0, max: 1_000_000, integer: true },
      "rows embedded for the row browser, plus examples of every failure class; `sluice ui` browses all",
      number(defaultSampleRows)
    ).pipe(Options.optional),
    prices,
    cluster: Flags.clusterJournal,
    json
  },
  ({ cluster, runDir, output, sampleRows, prices, json }) =>
    reported(json, () =>
      Effect.gen(function* () {
        const priceTable = yield* Pricing.load(Option.getOrUndefined(prices))
        const Report = yield* lazy(() => import("./Report.js"))
        const r = yield* Report.write(runDir, {
          prices: priceTable,
          ...(Option.isSome(output) ? { file: output.value } : {}),
          ...(Option.isSome(sampleRows) ? { sampleRows: sampleRows.value } : {})
        }).pipe(ClusterJournal.provideFor([runDir], cluster))
        const sampled = r.shown < r.of ? ` (a sample of ${number(r.shown)} of ${count(r.of, "row")}; \`sluice ui ${runDir}\` browses all)` : ` (${count(r.shown, "row")})`
        yield* json
          ? Console.log(JSON.stringify({ file: r.file, rows: { shown: r.shown, of: r.of } }, null, 2))
          : Console.log(`report: ${r.file}${sampled}`)
      })
    )
).pipe(
  Command.withDescription(
    "Write a run's report: one self-contained HTML file (no network needed to view it) with totals, rows over time, each shard's timeline, spend at batch and real-time prices, token distributions, failures by class with examples, and a row browser over a sample of the rows."
  )
)

const uiCommand = Command.make(
  "ui",
  {
    runDir: runDirArg,
    port: Flags.uiPort,
    prices,
    cluster: Flags.clusterJournal,
    json
  },
  ({ cluster, runDir, port, prices, json }) =>
    reported(json, () =>
      Effect.gen(function* () {
        const priceTable = yield* Pricing.load(Option.getOrUndefined(prices))
        const [UiServer, RunView, ReportPage] = yield* lazy(() => Promise.all([import("./UiServer.js"), import("./RunView.js"), import("./ReportPage.js")]))
        const server = yield* UiServer.serve(runDir, {
          port,
          view: (root) => RunView.load(root, { prices: priceTable }),
          page: ({ token, view }) => ReportPage.render({ view: view as View, data: { mode: "live", token } })
        })
        yield* json
          ? Console.log(JSON.stringify({ url: server.url, port: server.port, token: server.token }))
          : Console.log(`sluice ui: ${server.url}\n(read-only, on 127.0.0.1; the token in the URL is the key: share it only with who may see the run's data. Ctrl-C stops.)`)
        return yield* Effect.never
      }).pipe(ClusterJournal.provideFor([runDir], cluster), Effect.scoped)
    )
).pipe(
  Command.withDescription(
    "Serve the run's report live on 127.0.0.1 while the run goes: the same views as `sluice report`, updated as the journal and results grow, and a row browser that pages through every row (a million as fast as a hundred). Read-only; the URL printed at start carries a random token, required on every request."
  )
)

const gcCommand = Command.make(
  "gc",
  {
    runDirs: Args.directory({ name: "run-dir", exists: "yes" }).pipe(
      Args.withDescription("run directories whose files and batches are still needed (runs not given are taken as done)"),
      Args.repeated
    ),
    provider: Options.text("provider").pipe(
      Options.withDescription("the provider to clean up (default: the providers of the run directories given)"),
      Options.optional
    ),
    runsDir: Options.directory("runs-dir").pipe(
      Options.withDescription("every run directory under it is read too, so that its runs' files are kept while they are needed"),
      Options.withDefault(".sluice/runs")
    ),
    yes: Options.boolean("yes").pipe(Options.withDescription("delete them (without it: a dry run that only lists them)")),
    olderThan: Flags.olderThan,
    cluster: Flags.clusterJournal,
    json
  },
  ({ cluster, runDirs, provider, runsDir, yes, olderThan, json }) =>
    reported(json, () =>
      Effect.gen(function* () {
        const Gc = yield* lazy(() => import("./Gc.js"))
        const read = [...runDirs, ...(yield* RunDir.under(runsDir))]
        const scanned = yield* Gc.gc({ runDirs, runsDir, provider: Option.getOrUndefined(provider), yes, olderThanSeconds: olderThan }).pipe(
          ClusterJournal.provideFor(read, cluster)
        )
        // Runs that keep their journal in a cluster's database: the rows of their old generations there.
        const url = yield* ClusterJournal.databaseFor(read, cluster)
        const report = url === undefined
          ? scanned
          : { ...scanned, database: yield* Effect.flatMap(lazy(() => import("./ClusterGc.js")), (ClusterGc) => ClusterGc.onDatabase(url, read, yes)) }
        yield* json ? Console.log(JSON.stringify(report, null, 2)) : Console.log(Gc.render(report))
        if (report.failed.length > 0) yield* setExit(ExitCode.runtime)
      })
    )
).pipe(
  Command.withDescription(
    "List the files and ended batches sluice created at a provider that no run directory given still needs (inputs, outputs, error files; " +
      "by sluice's metadata and upload names), and with --yes delete them. A dry run by default; never touches a batch in progress or what sluice did not create. " +
      "For runs that keep their journal in a cluster's database (--cluster, else $SLUICE_DATABASE_URL), also the rows their old generations left there."
  )
)

const estimateCommand = Command.make(
  "estimate",
  {
    pipeline: Args.file({ name: "pipeline.ts" }).pipe(Args.withDescription("the pipeline file")),
    outputTokens,
    shardSize,
    noTypecheck,
    prices,
    json
  },
  ({ pipeline: file, outputTokens, shardSize, noTypecheck, prices, json }) =>
    reported(json, () =>
      Effect.gen(function* () {
        const priceTable = yield* Pricing.load(Option.getOrUndefined(prices))
        const { pipeline } = yield* loadPipeline(file, noTypecheck)
        const Estimate = yield* lazy(() => import("./Estimate.js"))
        const e = yield* Estimate.estimate(pipeline, {
          prices: priceTable,
          ...(Option.isSome(outputTokens) ? { outputTokens: outputTokens.value } : {}),
          ...(Option.isSome(shardSize) ? { shardSize: shardSize.value } : {})
        })
        yield* json ? Console.log(JSON.stringify(e, null, 2)) : Console.log(Estimate.render(e))
        // Where `run` would refuse, so does the estimate: a script can check before it spends.
        if (e.refusal !== null) {
          yield* Console.error(`sluice: error: ${e.refusal}${e.problems.length === 0 ? "" : `; the first: ${e.problems[0]}`}`)
          yield* setExit(ExitCode.usage)
        }
      })
    )
).pipe(
  Command.withDescription(
    "Render every request without submitting and project the cost: rows, shards, input tokens (real tokenizer for OpenAI models), output tokens, batch and real-time prices. " +
      "Names invalid rows and duplicate keys; exits 2 where `sluice run` would refuse them (onInvalid \"fail\")."
  )
)

/** The one line `sluice check` prints when the pipeline passes. */
const checkedLine = (file: string, pipeline: { readonly name: string; readonly stages: ReadonlyArray<{ name: string; provider: string; model: string }> }, checked: TypeCheck.CheckResult | undefined): string => {
  const n = pipeline.stages.length
  const stages = pipeline.stages.map((s) => `${s.name} (${s.provider}, ${s.model})`).join(" → ")
  const typed = checked === undefined ? "type check skipped" : checked.cached ? "type-checked (unchanged since the last check)" : "type-checked"
  return `ok: ${file}: pipeline "${pipeline.name}", ${n} stage${n === 1 ? "" : "s"}: ${stages}; ${typed}`
}

const checkCommand = Command.make(
  "check",
  {
    pipeline: Args.file({ name: "pipeline.ts", exists: "yes" }).pipe(Args.withDescription("the pipeline file")),
    noTypecheck
  },
  ({ pipeline: file, noTypecheck }) =>
    reported(false, () => Effect.gen(function* () {
      const { pipeline, checked } = yield* loadPipeline(file, noTypecheck)
      yield* checkDefinition(pipeline)
      // Each provider is built from the environment as `run` would build it (no request is
      // made): an unknown name fails; missing credentials are only noted, `check` needs none.
      const providers = yield* Providers
      for (const name of new Set(pipeline.stages.map((s) => s.provider))) {
        const provider = yield* Effect.either(providers.get(name))
        if (Either.isLeft(provider)) {
          if (provider.left._tag === "UnknownProvider") return yield* provider.left
          yield* Console.error(`sluice: note: ${provider.left.message} (run needs it)`)
        }
      }
      yield* Console.log(checkedLine(file, pipeline, checked))
    }))
).pipe(
  Command.withDescription(
    "Check a pipeline file without running it: type-check it, load it, and report what run would refuse about its definition (no source, no stage, an unknown provider). Sends nothing."
  )
)

const emulatorCommand = Command.make(
  "emulator",
  {
    ...Flags.emulator,
    apiKey: Options.text("api-key").pipe(Options.optional, Options.withDescription("require this API key on every call, the test API (/_emulator/...) included (default: accept any)")),
    stateDir: Options.directory("state-dir").pipe(Options.optional, Options.withDescription("persist state here, across restarts")),
    webhookUrl: Options.text("webhook-url").pipe(
      Options.optional,
      Options.withDescription(`send OpenAI's signed batch events to this URL when a batch ends, signed with $${webhookSecretVariable} (as \`sluice webhook\` verifies them)`)
    ),
    models: Options.text("models").pipe(
      Options.withDefault("default"),
      Options.mapEffect((text) =>
        lazy(() => import("@sluice/emulator")).pipe(
          Effect.flatMap(({ parseModelList }) =>
            Effect.try({ try: () => parseModelList(text), catch: (e) => ValidationError.invalidValue(HelpDoc.p(`--models: ${e instanceof Error ? e.message : String(e)}`)) })
          )
        )
      ),
      Options.withDescription("the model names it knows, comma-separated (others are refused as the real API refuses them): patterns with * (any characters), # (a number), {a,b}; 'default' is the built-in list, '*' accepts any model (default: default)")
    )
  },
  (o) =>
    Effect.gen(function* () {
      const webhooks = Option.isNone(o.webhookUrl) ? undefined : { url: o.webhookUrl.value, secret: process.env[webhookSecretVariable] ?? "" }
      if (webhooks !== undefined) yield* (yield* lazy(() => import("./WebhookServer.js"))).keyFromEnv()
      const { scoped: emulatorScoped } = yield* lazy(() => import("@sluice/emulator"))
      // Scoped: closed with the command; a start failure (port taken, a state dir not its own) is a clear error.
      const handle = yield* emulatorScoped({
        port: o.port,
        requestsPerSecond: o.requestsPerSecond,
        validatingMs: o.validatingMs,
        finalizingMs: o.finalizingMs,
        errorRate: o.errorRate,
        rateLimitRate: o.rateLimitRate,
        serverErrorRate: o.serverErrorRate,
        resetRate: o.resetRate,
        dropLines: o.dropLines,
        lateOutputFileMs: o.lateOutputFileMs,
        invalidJsonRate: o.invalidJsonRate,
        rateLimitHeaders: !o.noRateLimitHeaders,
        latencyMs: o.latencyMs,
        latencyPerTokenMs: o.latencyPerTokenMs,
        models: o.models,
        ...(Option.isSome(o.rpmLimit) ? { rpmLimit: o.rpmLimit.value } : {}),
        ...(Option.isSome(o.tpmLimit) ? { tpmLimit: o.tpmLimit.value } : {}),
        ...(Option.isSome(o.enqueuedTokenLimit) ? { enqueuedTokenLimit: o.enqueuedTokenLimit.value } : {}),
        ...(o.enqueuedLimitOnCreate ? { enqueuedLimitOnCreate: true } : {}),
        ...(o.approximateTokens ? { approximateTokens: true } : {}),
        ...(Option.isSome(o.apiKey) ? { apiKey: o.apiKey.value } : {}),
        ...(Option.isSome(o.stateDir) ? { stateDir: o.stateDir.value } : {}),
        ...(Option.isSome(o.expireAfterMs) ? { expireAfterMs: o.expireAfterMs.value } : {}),
        ...(webhooks === undefined ? {} : { webhooks })
      })
      yield* Console.log(`sluice emulator listening on ${handle.url} (OpenAI base URL ${handle.url}/v1)`)
      yield* Console.log(
        `test API: ${handle.url}/_emulator/ledger, POST ${handle.url}/_emulator/faults${Option.isSome(o.apiKey) ? " (with the API key)" : ""}`
      )
      return yield* Effect.never
    }).pipe(Effect.scoped)
).pipe(
  Command.withDescription(
    "Start the API emulator on 127.0.0.1: the OpenAI Files + Batches API, Anthropic Message Batches and Gemini batch mode at one origin, and their real-time endpoints (chat completions, embeddings, responses; messages; generateContent) with rate limits and latency."
  )
)

const initCommand = Command.make(
  "init",
  {
    dir: Args.directory({ name: "dir" }).pipe(Args.withDescription("the project directory (default: the current one)"), Args.withDefault(".")),
    noTry: Options.boolean("no-try").pipe(Options.withDescription("only write the files: no first run against the emulator"))
  },
  ({ dir, noTry }) =>
    reported(false, (reporting) =>
      Effect.gen(function* () {
        const Init = yield* lazy(() => import("./Init.js"))
        const report = yield* Init.init(dir)
        yield* Console.log(Init.render(report))
        // With sluice installed in the project, its pipeline runs at once against the emulator:
        // the project is shown to work before any key is involved.
        if (noTry || !report.installed) return
        yield* Console.error(`\nsluice init: a first run, against the built-in emulator (sluice run ${report.pipelineFile} --emulator):`)
        process.chdir(report.dir)
        yield* execute(
          report.pipelineFile,
          {
            runDir: Option.none(),
            concurrency: Option.none(),
            shardSize: Option.none(),
            pollSeconds: Option.some(1),
            outputFileWait: 600,
            prices: Option.none(),
            detach: false,
            allowChanged: false,
            json: false,
            cacheDir: Option.none(),
            noCache: false,
            noTypecheck: false,
            emulator: true
          },
          reporting
        )
      })
    )
).pipe(
  Command.withDescription(
    "Start a project: package.json, tsconfig.json, a pipeline with 20 rows of data, and scripts to run it against the emulator and for real; then, with sluice installed in the project, a first run against the built-in emulator (--no-try skips it). Never overwrites a file."
  )
)

const description = "Run dataset transformations through LLM batch APIs, crash-safe."

/** The subcommands, in the order the help lists them. */
const commands = [initCommand, runCommand, previewCommand, resumeCommand, statusCommand, reportCommand, uiCommand, retryCommand, cancelCommand, webhookCommand, gcCommand, estimateCommand, checkCommand, emulatorCommand, workerCommand] as const

export const root = Command.make("sluice").pipe(Command.withDescription(description), Command.withSubcommands(commands))

const version = runner.version

/** The program as its help shows it; the build stores its help from this (scripts/write-help.mjs). */
export const program: Help.Program = { name: "sluice", version, description, commands }

const app = Command.run(root, { name: "sluice", version })

/**
 * The CLI on `argv` (node, script, arguments). Help (asked for, or `sluice` alone) is rendered
 * here (see internal/help.ts); everything else goes to @effect/cli.
 */
export const cli = (argv: ReadonlyArray<string>) =>
  argv.length <= 2 || Help.requested(argv.slice(2))
    ? Console.log(Help.render(program, argv.slice(2), HelpText.optionsFor(process.stdout)))
    : app(argv)

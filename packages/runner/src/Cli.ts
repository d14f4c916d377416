/**
 * The `sluice` command line.
 */
import { Args, Command, Options } from "@effect/cli"
import { startEmulator } from "@sluice/emulator"
import { Console, Duration, Effect, Fiber, Option } from "effect"
import * as Estimate from "./Estimate.js"
import * as PipelineLoader from "./PipelineLoader.js"
import * as Pricing from "./Pricing.js"
import * as Progress from "./Progress.js"
import * as RunDir from "./RunDir.js"
import { Path } from "@effect/platform"
import type { FailureClass } from "@sluice/core"
import { run as runPipeline } from "./Runner.js"
import type { RunSummary } from "./Runner.js"
import * as Status from "./Status.js"
import { Registry } from "@sluice/providers"

/** Exit codes, documented in the README. */
export const ExitCode = {
  ok: 0,
  rowsFailed: 1,
  usage: 2,
  unfinished: 3,
  runtime: 4
} as const

const setExit = (code: number) => Effect.sync(() => void (process.exitCode = code))

const json = Options.boolean("json").pipe(Options.withDescription("print machine-readable JSON on stdout"))
const runDirOption = Options.directory("run-dir").pipe(
  Options.withDescription("the run directory (default .sluice/runs/<pipeline name>)"),
  Options.optional
)
const concurrency = Options.integer("concurrency").pipe(
  Options.withDescription("batches in flight at once"),
  Options.withDefault(4)
)
const shardSize = Options.integer("shard-size").pipe(
  Options.withDescription("requests per batch at most (capped by the provider's limit)"),
  Options.optional
)
const pollSeconds = Options.float("poll-interval").pipe(
  Options.withDescription("seconds between status polls of a batch"),
  Options.withDefault(30)
)
const budget = Options.float("budget").pipe(
  Options.withDescription("USD at batch prices the run may submit at most (projected from token counts); the rest waits"),
  Options.optional
)
const outputTokens = Options.integer("output-tokens").pipe(
  Options.withDescription("output tokens per request assumed by estimates and --budget (default 100)"),
  Options.optional
)
const detach = Options.boolean("detach").pipe(Options.withDescription("plan and submit, then exit; continue with `sluice resume`"))
const cacheDirOption = Options.directory("cache-dir").pipe(
  Options.withDescription("the response cache (default $SLUICE_CACHE_DIR, else .sluice/cache)"),
  Options.optional
)
const noCache = Options.boolean("no-cache").pipe(
  Options.withDescription("neither reuse answers from the response cache nor store new ones")
)
const allowChanged = Options.boolean("allow-changed").pipe(
  Options.withDescription("continue a run although its pipeline changed since it started")
)

const summaryLines = (s: RunSummary): string => {
  const failed = Object.values(s.failed).reduce((a, b) => a + b, 0)
  const cost = s.cost
  const lines = [
    `${s.finished ? "done" : "submitted"}: ${s.rows} rows, ${s.succeeded} succeeded, ${failed} failed, ${s.pending} pending, ${s.batches} batches`,
    `tokens: ${s.usage.input} in (${s.usage.cached} cached), ${s.usage.output} out` +
      (s.fromCache > 0 ? `; ${s.fromCache} rows answered from the response cache (no cost)` : ""),
    cost === null
      ? `cost: no price for ${s.models.join(" or ")} in the price table`
      : `cost: $${cost.batch.toFixed(4)} at batch prices; the same work at real-time prices: $${cost.realtime.toFixed(4)} (prices of ${Pricing.table.date})`,
    `run directory: ${s.runDir}`
  ]
  if (s.duplicates > 0) {
    lines.push(
      `${s.duplicates} rows repeat an earlier row's key and request: not sent, the earlier row's answer stands for them (listed in ${s.runDir}/failures.jsonl as duplicate)`
    )
  }
  if (failed > 0) lines.push(`failed rows are listed in ${s.runDir}/failures.jsonl`)
  if (s.budget !== undefined && s.budget.heldShards > 0) {
    lines.push(
      `budget of $${s.budget.limit} reached: submitted work projected at $${s.budget.projected.toFixed(4)}; ` +
        `${s.budget.heldShards} shards (${s.budget.heldRows} rows) not submitted. Resume with a higher --budget to continue.`
    )
  }
  return lines.join("\n")
}

const exitFor = (s: RunSummary): number => {
  if (!s.finished || s.pending > 0) return ExitCode.unfinished
  return Object.values(s.failed).some((n) => n > 0) ? ExitCode.rowsFailed : ExitCode.ok
}

const execute = (
  pipelineFile: string,
  opts: {
    runDir: Option.Option<string>
    concurrency: number
    shardSize: Option.Option<number>
    pollSeconds: number
    detach: boolean
    allowChanged: boolean
    json: boolean
    mode?: "run" | "retry" | "cancel"
    retryClasses?: ReadonlyArray<FailureClass>
    budget?: Option.Option<number>
    outputTokens?: Option.Option<number>
    cacheDir: Option.Option<string>
    noCache: boolean
  }
) =>
  Effect.gen(function* () {
    const { pipeline, file } = yield* PipelineLoader.load(pipelineFile)
    const progress = Progress.make()
    const renderer = yield* Effect.fork(progress.render)
    const summary = yield* runPipeline(pipeline, {
      ...(Option.isSome(opts.runDir) ? { runDir: opts.runDir.value } : {}),
      pipelineFile: file,
      concurrency: opts.concurrency,
      ...(Option.isSome(opts.shardSize) ? { shardSize: opts.shardSize.value } : {}),
      pollInterval: Duration.millis(Math.max(10, opts.pollSeconds * 1000)),
      detach: opts.detach,
      allowChanged: opts.allowChanged,
      providerEndpoints: Registry.endpoints(pipeline.stages.map((s) => s.provider)),
      observer: progress.observer,
      ...(opts.budget !== undefined && Option.isSome(opts.budget) ? { budget: opts.budget.value } : {}),
      ...(opts.outputTokens !== undefined && Option.isSome(opts.outputTokens) ? { budgetOutputTokens: opts.outputTokens.value } : {}),
      mode: opts.mode ?? "run",
      ...(opts.noCache ? { cache: false as const } : Option.isSome(opts.cacheDir) ? { cache: opts.cacheDir.value } : {}),
      ...(opts.retryClasses === undefined ? {} : { retryClasses: opts.retryClasses })
    }).pipe(Effect.ensuring(Fiber.interrupt(renderer)), Effect.ensuring(progress.finish))
    yield* opts.json ? Console.log(JSON.stringify(summary, null, 2)) : Console.error(summaryLines(summary))
    yield* setExit(exitFor(summary))
  })

const runCommand = Command.make(
  "run",
  {
    pipeline: Args.file({ name: "pipeline.ts", exists: "yes" }).pipe(Args.withDescription("the pipeline file")),
    runDir: runDirOption,
    concurrency,
    shardSize,
    pollSeconds,
    detach,
    allowChanged,
    budget,
    outputTokens,
    cacheDir: cacheDirOption,
    noCache,
    json
  },
  ({ pipeline, ...opts }) => execute(pipeline, opts)
).pipe(
  Command.withDescription(
    "Run a pipeline. Running it again on the same run directory continues where it stopped: nothing finished is submitted twice."
  )
)

/** Runs the pipeline file a run directory's manifest names, on that directory. */
const continueRun = (runDir: string, opts: Omit<Parameters<typeof execute>[1], "runDir" | "shardSize">) =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    const manifest = yield* RunDir.readManifest(RunDir.paths(path.resolve(runDir), path))
    if (manifest.pipelineFile === null) {
      return yield* new PipelineLoader.PipelineLoadError({ file: runDir, description: "the manifest names no pipeline file" })
    }
    yield* execute(manifest.pipelineFile, { ...opts, runDir: Option.some(runDir), shardSize: Option.none() })
  })

const runDirArg = Args.directory({ name: "run-dir", exists: "yes" })

const resumeCommand = Command.make(
  "resume",
  { runDir: runDirArg, concurrency, pollSeconds, detach, allowChanged, budget, outputTokens, cacheDir: cacheDirOption, noCache, json },
  ({ runDir, ...opts }) => continueRun(runDir, opts)
).pipe(Command.withDescription("Continue a run from its directory: collect what finished, submit what remains."))

const classChoices = ["retryable", "expired", "cancelled", "missing", "parse", "permanent"] as const

const retryCommand = Command.make(
  "retry",
  {
    runDir: runDirArg,
    only: Options.text("only").pipe(
      Options.withDescription(
        "comma-separated failure classes to resubmit: retryable, expired, cancelled, missing, parse, permanent (default: all but permanent)"
      ),
      Options.optional
    ),
    concurrency,
    pollSeconds,
    detach,
    allowChanged,
    cacheDir: cacheDirOption,
    noCache,
    json
  },
  ({ runDir, only, ...opts }) =>
    Effect.gen(function* () {
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
        mode: "retry",
        ...(classes === undefined ? {} : { retryClasses: classes as ReadonlyArray<FailureClass> })
      })
    })
).pipe(Command.withDescription("Resubmit only the rows that ended failed, replaying their identical requests, then continue the run."))

const cancelCommand = Command.make(
  "cancel",
  { runDir: runDirArg, pollSeconds, json },
  ({ runDir, ...opts }) =>
    continueRun(runDir, { ...opts, concurrency: 1_000_000, detach: false, allowChanged: true, mode: "cancel", cacheDir: Option.none(), noCache: false })
).pipe(
  Command.withDescription(
    "Cancel every batch of a run still in flight, wait until the provider has stopped them, and collect their partial results."
  )
)

const statusCommand = Command.make(
  "status",
  {
    runDir: Args.directory({ name: "run-dir", exists: "yes" }),
    json,
    noRefresh: Options.boolean("no-refresh").pipe(Options.withDescription("report from the run directory only"))
  },
  ({ runDir, json, noRefresh }) =>
    Effect.gen(function* () {
      const s = yield* Status.status(runDir, { refresh: !noRefresh })
      yield* json ? Console.log(JSON.stringify(s, null, 2)) : Console.log(Status.render(s))
    })
).pipe(Command.withDescription("Report a run's state from its directory, refreshing batch statuses from the provider when it can."))

const estimateCommand = Command.make(
  "estimate",
  {
    pipeline: Args.file({ name: "pipeline.ts", exists: "yes" }).pipe(Args.withDescription("the pipeline file")),
    outputTokens,
    shardSize,
    json
  },
  ({ pipeline: file, outputTokens, shardSize, json }) =>
    Effect.gen(function* () {
      const { pipeline } = yield* PipelineLoader.load(file)
      const e = yield* Estimate.estimate(pipeline, {
        ...(Option.isSome(outputTokens) ? { outputTokens: outputTokens.value } : {}),
        ...(Option.isSome(shardSize) ? { shardSize: shardSize.value } : {})
      })
      yield* json ? Console.log(JSON.stringify(e, null, 2)) : Console.log(Estimate.render(e))
      // Where `run` would refuse, so does the estimate: a script can check before it spends.
      if (e.refusal !== null) {
        if (json) yield* Console.error(`sluice: error: ${e.refusal}`)
        yield* setExit(ExitCode.usage)
      }
    })
).pipe(
  Command.withDescription(
    "Render every request without submitting and project the cost: rows, shards, input tokens (real tokenizer for OpenAI models), output tokens, batch and real-time prices. " +
      "Names invalid rows and duplicate keys; exits 2 where `sluice run` would refuse them (onInvalid \"fail\")."
  )
)

const emulatorCommand = Command.make(
  "emulator",
  {
    port: Options.integer("port").pipe(Options.withDefault(0), Options.withDescription("port on 127.0.0.1 (0 = a free port)")),
    apiKey: Options.text("api-key").pipe(Options.optional, Options.withDescription("require this API key (default: accept any)")),
    stateDir: Options.directory("state-dir").pipe(Options.optional, Options.withDescription("persist state here, across restarts")),
    rps: Options.float("requests-per-second").pipe(Options.withDefault(1000), Options.withDescription("processing speed per batch")),
    validatingMs: Options.integer("validating-ms").pipe(Options.withDefault(200)),
    finalizingMs: Options.integer("finalizing-ms").pipe(Options.withDefault(200)),
    expireAfterMs: Options.integer("expire-after-ms").pipe(Options.optional, Options.withDescription("completion window (default 24h)")),
    errorRate: Options.float("error-rate").pipe(Options.withDefault(0), Options.withDescription("fraction of requests that fail (succeed when resubmitted)")),
    rateLimitRate: Options.float("rate-limit-rate").pipe(Options.withDefault(0), Options.withDescription("fraction of API calls answered 429 with Retry-After")),
    serverErrorRate: Options.float("server-error-rate").pipe(Options.withDefault(0), Options.withDescription("fraction of API calls answered 500/502/503")),
    resetRate: Options.float("reset-rate").pipe(Options.withDefault(0), Options.withDescription("fraction of API calls whose connection is reset")),
    dropLines: Options.float("drop-lines").pipe(Options.withDefault(0), Options.withDescription("fraction of result lines silently left out")),
    lateOutputFileMs: Options.integer("late-output-file-ms").pipe(Options.withDefault(0), Options.withDescription("completed batches show no output file for this long")),
    invalidJsonRate: Options.float("invalid-json-rate").pipe(Options.withDefault(0), Options.withDescription("fraction of first-time structured answers that break their schema"))
  },
  (o) =>
    Effect.gen(function* () {
      const handle = yield* Effect.acquireRelease(
        Effect.promise(() =>
          startEmulator({
            port: o.port,
            requestsPerSecond: o.rps,
            validatingMs: o.validatingMs,
            finalizingMs: o.finalizingMs,
            errorRate: o.errorRate,
            rateLimitRate: o.rateLimitRate,
            serverErrorRate: o.serverErrorRate,
            resetRate: o.resetRate,
            dropLines: o.dropLines,
            lateOutputFileMs: o.lateOutputFileMs,
            invalidJsonRate: o.invalidJsonRate,
            ...(Option.isSome(o.apiKey) ? { apiKey: o.apiKey.value } : {}),
            ...(Option.isSome(o.stateDir) ? { stateDir: o.stateDir.value } : {}),
            ...(Option.isSome(o.expireAfterMs) ? { expireAfterMs: o.expireAfterMs.value } : {})
          })
        ),
        (h) => Effect.promise(() => h.close())
      )
      yield* Console.log(`sluice emulator listening on ${handle.url} (OpenAI base URL ${handle.url}/v1)`)
      yield* Console.log(`test API: ${handle.url}/_emulator/ledger, POST ${handle.url}/_emulator/faults`)
      return yield* Effect.never
    }).pipe(Effect.scoped)
).pipe(Command.withDescription("Start the batch API emulator on 127.0.0.1: the OpenAI Files + Batches API, Anthropic Message Batches and Gemini batch mode at one origin."))

export const root = Command.make("sluice").pipe(
  Command.withDescription("Run dataset transformations through LLM batch APIs, crash-safe."),
  Command.withSubcommands([runCommand, resumeCommand, statusCommand, retryCommand, cancelCommand, estimateCommand, emulatorCommand])
)

export const cli = Command.run(root, { name: "sluice", version: "0.1.0" })

/**
 * Distributed runs on @effect/cluster and @effect/workflow over PostgreSQL (issue 17, first slice).
 *
 * A run is a durable workflow (`sluice/Run`, idempotency key: the run id) and each of its shards
 * a child workflow (`sluice/Shard`, key `<run id>/<shard>`), executed by whichever `sluice worker`
 * owns the execution's cluster shard. Their activities are steps of `Runner.run` itself on the
 * run directory, narrowed by its `scope` option — planning for the parent, one shard for a child,
 * each asked once as a detached run asks — so planning, the intent → create-with-metadata →
 * adopt-orphan submission, polling and collection are the one-machine code path. Between polls a
 * child sleeps durably. A step holds the run's lock in the database for its duration
 * (ClusterRunLock.ts), so the steps of a run take turns: a sink is committed by the one collector
 * of a shard that holds it. The run's files are held by the database too (RunFiles.ts): a step
 * works on this worker's copy of them under its `--state-dir`, pulled after the lock is taken and
 * flushed before each journal event (`onCopy`). A run created before that (no `files` in its
 * payload) keeps its run directory on a path every worker sees, whose lock file a dead step of
 * another host leaves behind and the next step takes over through the database's lock.
 */
import * as ClusterWorkflowEngine from "@effect/cluster/ClusterWorkflowEngine"
import * as RunnerAddress from "@effect/cluster/RunnerAddress"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { SocketServerError } from "@effect/platform/SocketServer"
import * as NodeClusterSocket from "@effect/platform-node/NodeClusterSocket"
import { PgClient } from "@effect/sql-pg"
import { SqlError } from "@effect/sql/SqlError"
import * as Activity from "@effect/workflow/Activity"
import * as DurableClock from "@effect/workflow/DurableClock"
import * as Workflow from "@effect/workflow/Workflow"
import type { FailureClass, Pipeline } from "@sluice/core"
import { Cause, Context, Duration, Effect, Layer, Option, Redacted, Schedule, Schema } from "effect"
import { randomUUID } from "node:crypto"
import { realpathSync } from "node:fs"
import { hostname, tmpdir } from "node:os"
import { join } from "node:path"
import * as Cancel from "./Cancel.js"
import { ClusterUnavailable, databaseOf, unavailable } from "./ClusterDatabase.js"
import * as ClusterAttempts from "./ClusterAttempts.js"
import * as ClusterLedger from "./ClusterLedger.js"
import * as Failure from "./internal/failure.js"
import * as JournalPg from "./JournalPg.js"
import * as ClusterRunLock from "./ClusterRunLock.js"
import { RunLocked, sinkLockPath } from "./internal/RunLock.js"
import * as PipelineLoader from "./PipelineLoader.js"
import * as RunDir from "./RunDir.js"
import { loadState, newRunId, run, type RunOptions } from "./Runner.js"
import * as RunState from "./RunState.js"
import * as RunFiles from "./RunFiles.js"
import * as RunFilesPg from "./RunFilesPg.js"
import * as Watched from "./internal/WatchedFileSystem.js"
import { directoryMode, isOwnDirectory } from "./internal/privateMode.js"

import { databaseUrlVariable } from "./internal/clusterEnv.js"
export { ClusterUnavailable, databaseUrlVariable }

/** What a distributed run or worker cannot be started with. */
export class ClusterUsage extends Schema.TaggedError<ClusterUsage>()("ClusterUsage", {
  description: Schema.String
}) {
  override get message(): string {
    return this.description
  }
}

/** The database URL given, else the environment's; a usage error without either. */
export const databaseUrl = (given: Option.Option<Redacted.Redacted>, flag: string) =>
  Option.match(given, {
    onSome: Effect.succeed,
    onNone: () => {
      const env = process.env[databaseUrlVariable]
      return env === undefined || env === ""
        ? Effect.fail(new ClusterUsage({ description: `no PostgreSQL database for the cluster: give ${flag} postgres://… or set ${databaseUrlVariable}` }))
        : Effect.succeed(Redacted.make(env))
    }
  })

/** A step of a distributed run failed (its message is the one the CLI would print). */
export class StepFailed extends Schema.TaggedError<StepFailed>()("StepFailed", {
  step: Schema.String,
  message: Schema.String
}) {}

/** The settings of a call that travel with the run to the workers (never keys: workers have their own). */
const RunSettings = Schema.Struct({
  concurrency: Schema.optional(Schema.Number),
  shardSize: Schema.optional(Schema.Number),
  /** The wait between two polls of a batch, in seconds (each a durable sleep). */
  pollSeconds: Schema.Number,
  outputFileWaitSeconds: Schema.Number,
  /** The response cache's directory (absolute), or false for none. */
  cache: Schema.Union(Schema.String, Schema.Literal(false)),
  /** `--max-enqueued-tokens`: held against the cluster's ledger (ClusterLedger.ts). */
  maxEnqueuedTokens: Schema.optional(Schema.Union(Schema.Number, Schema.Record({ key: Schema.String, value: Schema.Number }))),
  /** `--max-batches`: counted in the same ledger. */
  maxBatches: Schema.optional(Schema.Union(Schema.Number, Schema.Record({ key: Schema.String, value: Schema.Number })))
})

const RunFields = {
  runId: Schema.String,
  /** Absolute paths, the same on every worker (a shared path). */
  runDir: Schema.String,
  /** Where `sluice run` was started: the pipeline's relative paths resolve against it, as on one machine. */
  baseDir: Schema.String,
  pipelineFile: Schema.String,
  /** Workers load the pipeline file only when it still has this hash. */
  pipelineSha256: Schema.String,
  settings: RunSettings,
  /**
   * The run's attempt (ClusterAttempts.ts): absent or 0 for the first, whose keys are the ones
   * workflows had before attempts existed; a failed or cancelled run goes on under the next.
   */
  attempt: Schema.optional(Schema.Number),
  /**
   * `sluice retry --cluster`: the attempt's first planning resubmits the rows that ended failed
   * in these classes (none given: retry's default), as `sluice retry` does.
   */
  retry: Schema.optional(Schema.Struct({ classes: Schema.optional(Schema.Array(Schema.String)) })),
  /**
   * "postgres": the run's files are held by the cluster's database (RunFiles.ts) and each
   * worker works on a copy of its own under its `--state-dir`; `runDir` is then the submitter's
   * copy, named in messages only. Absent (a run created before): the run directory on the shared path.
   */
  files: Schema.optional(Schema.Literal("postgres"))
}
type RunRequest = Schema.Struct.Type<typeof RunFields>

/** What a run's workflow returns: the totals of its summary (the run directory has the rest). */
export const RunTotals = Schema.Struct({
  runId: Schema.String,
  finished: Schema.Boolean,
  rows: Schema.Number,
  succeeded: Schema.Number,
  failed: Schema.Number,
  pending: Schema.Number,
  shards: Schema.Number
})
export type RunTotals = typeof RunTotals.Type

/** The workflows' keys: the run id for the first attempt (as before attempts existed), `<run id>#<n>` for the n-th after it. */
export const attemptKey = (runId: string, attempt: number | undefined): string =>
  attempt === undefined || attempt === 0 ? runId : `${runId}#${attempt}`

export const RunWorkflow = Workflow.make({
  name: "sluice/Run",
  payload: RunFields,
  success: RunTotals,
  error: StepFailed,
  idempotencyKey: ({ attempt, runId }) => attemptKey(runId, attempt)
})

const ShardOutcome = Schema.Struct({ shard: Schema.String, phase: Schema.String })

export const ShardWorkflow = Workflow.make({
  name: "sluice/Shard",
  payload: { ...RunFields, shard: Schema.String },
  success: ShardOutcome,
  error: StepFailed,
  idempotencyKey: ({ attempt, runId, shard }) => `${attemptKey(runId, attempt)}/${shard}`
})

// ---------------------------------------------------------------------------------------------
// Steps: Runner.run on the run directory, narrowed to a part of the run
// ---------------------------------------------------------------------------------------------

/** Pipelines loaded by this worker, by file and hash (a changed file has another hash). */
const pipelines = new Map<string, Pipeline.Pipeline<any, any>>()

const loadPipeline = (request: RunRequest) =>
  Effect.gen(function* () {
    const key = `${request.pipelineSha256} ${request.pipelineFile}`
    const known = pipelines.get(key)
    if (known !== undefined) return known
    const { pipeline } = yield* PipelineLoader.load(request.pipelineFile, { sha256: request.pipelineSha256, runDir: request.runDir }, { byVersion: true })
    pipelines.set(key, pipeline)
    return pipeline
  })

/** Where a worker keeps its copies of runs' files by default: private to its user, re-filled from the database when lost. */
export const defaultStateDir = (): string => {
  const dir = process.env["SLUICE_WORKER_STATE_DIR"]?.trim()
  if (dir !== undefined && dir !== "") return dir
  const uid = process.getuid?.()
  return join(tmpdir(), uid === undefined ? "sluice-worker" : `sluice-worker-${uid}`)
}

/** The directory a worker keeps its copies of runs in (`sluice worker --state-dir`): `<dir>/<run id>/`. */
export class StateDir extends Context.Reference<StateDir>()("@sluice/runner/Cluster/StateDir", {
  defaultValue: defaultStateDir
}) {}

/** Where this worker works on the run: its copy when the database holds the run's files, else the shared run directory. */
const workDirOf = (request: RunRequest, path: Path.Path) =>
  request.files === "postgres" ? Effect.map(StateDir, (dir) => path.resolve(dir, request.runId)) : Effect.succeed(request.runDir)

/**
 * Runs `effect` (which writes the run's files) on the local copy at `root` of the files the
 * database holds, holding the run's lock in the database: the copy is pulled first, and flushed
 * after (also when `effect` fails); meanwhile the journal flushes it before each event. A writer
 * before this one that never said it ended (a dead worker's step, or one whose database session
 * ended while it still ran) is waited out for `grace` first, as a lock file it left would be.
 */
export const onCopy = <A, E, R>(runId: string, root: string, effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const { grace } = yield* ClusterRunLock.Settings
    const recorder = Watched.recorder()
    const fs = yield* FileSystem.FileSystem
    yield* fs.makeDirectory(root, { recursive: true, mode: directoryMode }).pipe(
      Effect.mapError((e) => new RunFiles.RunFilesError({ runId, description: `cannot create the copy ${root}: ${e.message}` }))
    )
    const mirror = yield* RunFiles.make(yield* RunFilesPg.make, runId, root, recorder)
    const writer = `${hostname()}/${process.pid}/${randomUUID()}`
    const before = yield* RunFilesPg.claim(runId, writer)
    if (before !== undefined) {
      yield* Effect.logInfo(`run ${runId}: its files were last written by ${before}, which did not end its step; going on in ${Duration.format(grace)}, once it has surely stopped`)
      yield* Effect.sleep(grace)
    }
    yield* mirror.pull
    const end = Effect.zipRight(mirror.flush, RunFilesPg.release(runId, writer))
    return yield* effect.pipe(
      Effect.provideService(FileSystem.FileSystem, Watched.watch(fs, root, recorder)),
      Effect.provideService(RunFiles.Active, mirror),
      Effect.tapError(() => Effect.ignore(end)),
      Effect.tap(() => end)
    )
  })

/** The run's files pulled into this worker's copy, holding the run's lock in the database (a reading activity). */
const pulled = (request: RunRequest, root: string) =>
  Effect.scoped(
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      yield* ClusterRunLock.hold(request.runId, () => Effect.void)
      yield* fs.makeDirectory(root, { recursive: true, mode: directoryMode })
      yield* Effect.flatMap(RunFiles.make(yield* RunFilesPg.make, request.runId, root, Watched.recorder()), (m) => m.pull)
    })
  )

/**
 * A worker does one step at a time: the step changes the process's working directory to the
 * run's base directory (relative paths of the pipeline resolve against it), and the run lock
 * admits one process — which this worker is, for all its steps. It then waits for the lock file
 * as long as another live process holds it.
 */
const oneStep = Effect.unsafeMakeSemaphore(1)

/** Into the directory `sluice run` was started in (which must exist here: a shared path). */
const enterBaseDir = (request: RunRequest) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const info = yield* fs.stat(request.baseDir).pipe(Effect.option)
    if (Option.isNone(info) || info.value.type !== "Directory") {
      return yield* new ClusterUsage({
        description: `run ${request.runId} was started in ${request.baseDir}, which this worker does not have: workers need the run's directories on a shared path`
      })
    }
    yield* Effect.sync(() => process.chdir(request.baseDir))
  })

/** The lock files a step of this run takes: the run directory's, and its sinks' (LockFile.ts). */
const lockPathsOf = (request: RunRequest, workDir: string, pipeline: Pipeline.Pipeline<any, any>, path: Path.Path) => [
  RunDir.paths(workDir, path).lock,
  ...(pipeline.sink?.paths ?? []).map((p) => sinkLockPath(path.resolve(request.baseDir, p)))
]

const lockWait = Schedule.exponential("20 millis", 1.5).pipe(Schedule.either(Schedule.spaced("250 millis")), Schedule.jittered)

/**
 * One step of the run, under its lock; the run's state as the journal has it afterwards, or
 * undefined when the step's attempt is stopped (cancelled, or replaced by a later attempt).
 */
const step = (name: string, request: RunRequest, scope: NonNullable<RunOptions["scope"]>, action: Pick<RunOptions, "action" | "retryClasses"> = {}) =>
  Effect.gen(function* () {
    const pipeline = yield* loadPipeline(request)
    const s = request.settings
    // Enqueued tokens are counted in the cluster's ledger, shared by every run of every worker.
    const tokenLedger = { store: yield* ClusterLedger.make, leases: ClusterLedger.leases(s.pollSeconds) }
    const path = yield* Path.Path
    const workDir = yield* workDirOf(request, path)
    const options: RunOptions = {
      runDir: workDir,
      ...(request.files === undefined ? {} : { files: request.files }),
      runId: request.runId,
      pipelineFile: request.pipelineFile,
      pipelineSha256: request.pipelineSha256,
      scope,
      ...action,
      detach: true,
      cache: s.cache,
      pollInterval: Duration.seconds(s.pollSeconds),
      outputFileWait: Duration.seconds(s.outputFileWaitSeconds),
      tokenLedger,
      ...(s.maxEnqueuedTokens === undefined ? {} : { maxEnqueuedTokens: s.maxEnqueuedTokens }),
      ...(s.maxBatches === undefined ? {} : { maxBatches: s.maxBatches }),
      ...(s.concurrency === undefined ? {} : { concurrency: s.concurrency }),
      ...(s.shardSize === undefined ? {} : { shardSize: s.shardSize })
    }
    const done = yield* Effect.scoped(
      Effect.gen(function* () {
        // The run's lock in the database first (ClusterRunLock.ts): a lock file left by a dead step of another host is then taken over.
        const lock = yield* ClusterRunLock.hold(request.runId, (holder) => Effect.logInfo(`step ${name} waits for the run's lock in the database, held by ${holder}`))
        // Asked under the lock, which `sluice cancel` holds while it marks the attempt: after it, no step acts.
        if (yield* ClusterAttempts.stopped(request.runId, request.attempt ?? 0)) {
          yield* Effect.logInfo(`run ${request.runId}: step ${name} not done: attempt ${request.attempt ?? 0} of the run was cancelled or replaced`)
          return false
        }
        const attempt = Effect.zipRight(
          lock.settle(lockPathsOf(request, workDir, pipeline, path)),
          oneStep.withPermits(1)(Effect.zipRight(enterBaseDir(request), run(pipeline, lock.mark === undefined ? options : { ...options, clusterLock: lock.mark })))
        )
        let told = ""
        const waited = attempt.pipe(
          Effect.tapError((e) => (e instanceof RunLocked && e.message !== told ? Effect.logInfo(`step ${name} waits: ${(told = e.message)}`) : Effect.void)),
          // A process outside the cluster, or of this host, holds the lock file: wait for it
          // (this worker doing other runs' steps meanwhile). One of this host that is gone is
          // taken over by `run` itself, one marked by a dead step of this run on another host too.
          Effect.retry({ schedule: lockWait, while: (e) => e instanceof RunLocked && e.reason !== "unreadable" })
        )
        // A run whose files the database holds: on this worker's copy of them, pulled first.
        yield* lock.guard(request.files === "postgres" ? onCopy(request.runId, workDir, waited) : waited)
        return true
      })
    )
    return done ? yield* loadState(RunDir.paths(workDir, path)) : undefined
  }).pipe(
    // The run's journal in the cluster's database (JournalPg.ts); a run created before journals
    // moved there keeps its journal.jsonl (its manifest says so: JournalStore.ts).
    JournalPg.provide("postgres"),
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause) ? Effect.failCause(cause as Cause.Cause<never>) : Effect.fail(new StepFailed({ step: name, message: Failure.describe(cause, request.runDir).message }))
    )
  )

const payloadOf = (p: RunRequest): RunRequest => ({
  runId: p.runId,
  runDir: p.runDir,
  baseDir: p.baseDir,
  pipelineFile: p.pipelineFile,
  pipelineSha256: p.pipelineSha256,
  settings: p.settings,
  ...(p.attempt === undefined ? {} : { attempt: p.attempt }),
  ...(p.retry === undefined ? {} : { retry: p.retry }),
  ...(p.files === undefined ? {} : { files: p.files })
})

/** What a shard's workflow ends with when its attempt was stopped (not a phase of the journal). */
const stoppedPhase = "stopped"

/**
 * A shard's phases after which a step has nothing more to do for it: collected, held back (a
 * budget), or its attempt stopped.
 */
const settled = (phase: string | undefined) => phase === undefined || phase === "collected" || phase === "planned" || phase === stoppedPhase

/** How often a failed step is tried again. */
const stepAttempts = 4

/**
 * The first durable wait before a failed step is tried again (doubled each time): 5 s, or 2.5
 * polls of a run that polls faster (against an emulator on this machine).
 */
const firstBackoff = (pollSeconds: number) => Duration.min(Duration.seconds(5), Duration.millis(2500 * pollSeconds))

/**
 * A step, tried again after a durable wait when it fails (a provider down longer than its
 * client's retries, the run lock unreadable …): a workflow's failure is final for its
 * idempotency key, so the run then goes on only as a new attempt (`run --cluster` again).
 */
const retried = <A, I, R>(name: string, pollSeconds: number, success: Schema.Schema<A, I>, execute: Effect.Effect<A, StepFailed, R>) =>
  Effect.gen(function* () {
    const first = firstBackoff(pollSeconds)
    for (let k = 0; ; k++) {
      const result = yield* Activity.make({ name: k === 0 ? name : `${name}/again/${k}`, success, error: StepFailed, execute }).pipe(Effect.either)
      if (result._tag === "Right") return result.right
      if (k + 1 >= stepAttempts) return yield* result.left
      yield* Effect.logWarning(`${result.left.message}; tried again in ${Duration.format(Duration.times(first, 2 ** k))}`)
      yield* DurableClock.sleep({ name: `${name}/backoff/${k}`, duration: Duration.times(first, 2 ** k) })
    }
  })

const ShardLive = ShardWorkflow.toLayer(
  Effect.fn(function* (payload) {
    const request = payloadOf(payload)
    for (let n = 0; ; n++) {
      const phase = yield* retried(
        `step/${n}`,
        payload.settings.pollSeconds,
        Schema.String,
        step(`${payload.runId}/${payload.shard}/step/${n}`, request, { plan: false, shards: [payload.shard] }).pipe(
          Effect.map((state) => (state === undefined ? stoppedPhase : state.shards.get(payload.shard)?.phase ?? "collected")),
          // Planned and in the ledger's line: it waits for headroom, and asks again after a wait.
          Effect.flatMap((phase) =>
            phase !== "planned" ? Effect.succeed(phase) : ClusterLedger.inLine(payload.runId, payload.shard).pipe(
              Effect.map((waits) => (waits ? "waiting" : phase)),
              Effect.mapError((e) => new StepFailed({ step: `${payload.runId}/${payload.shard}/step/${n}`, message: e.message }))
            )
          ),
          Effect.tap((phase) => Effect.logInfo(`run ${payload.runId}: shard ${payload.shard} step ${n} done by worker ${process.pid}: ${phase}`))
        )
      )
      if (settled(phase)) return { shard: payload.shard, phase }
      // Terminal but not collected: the next step collects it at once.
      if (phase !== "terminal" && phase !== "rejected") {
        yield* DurableClock.sleep({ name: `wait/${n}`, duration: Duration.seconds(payload.settings.pollSeconds) })
      }
    }
  })
)

const totalsOf = (runId: string, state: RunState.RunState): RunTotals => ({
  runId,
  finished: RunState.isFinished(state),
  rows: state.rowsPlanned + state.invalidRows + state.duplicateRows,
  succeeded: state.succeeded,
  failed: Object.values(state.failed).reduce((a, b) => a + b, 0) + state.invalidRows,
  pending: RunState.pendingRows(state),
  shards: state.shards.size
})

/** A retry attempt's first planning is `sluice retry`'s (later rounds plan as a run: retry shards that fail again stay failed). */
const retryOf = (request: RunRequest): Pick<RunOptions, "action" | "retryClasses"> =>
  request.retry === undefined
    ? {}
    : { action: "retry", ...(request.retry.classes === undefined ? {} : { retryClasses: request.retry.classes as ReadonlyArray<FailureClass> }) }

const RunLive = RunWorkflow.toLayer(
  Effect.fn(function* (payload) {
    const request = payloadOf(payload)
    const started = new Set<string>()
    // Planning, then a child per open shard; collections plan retry shards and later stages'
    // shards, which the next round finds. A round that finds nothing new ends the run's drive.
    for (let round = 0; ; round++) {
      const open = yield* retried(
        `plan/${round}`,
        payload.settings.pollSeconds,
        Schema.Array(Schema.String),
        step(`${payload.runId}/plan/${round}`, request, { plan: true, shards: [] }, round === 0 ? retryOf(request) : {}).pipe(
          // A stopped attempt starts no shard: the run's drive ends.
          Effect.map((state) => (state === undefined ? [] : RunState.openShards(state).map((s) => s.id))),
          Effect.tap((open) => Effect.logInfo(`run ${payload.runId}: planning round ${round} done by worker ${process.pid}: ${open.length} open shards`))
        )
      )
      const fresh = open.filter((id) => !started.has(id))
      if (fresh.length === 0) break
      for (const id of fresh) started.add(id)
      // At most `concurrency` shards driven at once, cluster-wide (each holds one batch).
      yield* Effect.forEach(fresh, (shard) => ShardWorkflow.execute({ ...request, shard }), {
        concurrency: payload.settings.concurrency ?? 8,
        discard: true
      })
    }
    return yield* Activity.make({
      name: "totals",
      success: RunTotals,
      error: StepFailed,
      execute: Effect.gen(function* () {
        const path = yield* Path.Path
        const workDir = yield* workDirOf(request, path)
        if (request.files === "postgres") yield* oneStep.withPermits(1)(pulled(request, workDir))
        return totalsOf(payload.runId, yield* loadState(RunDir.paths(workDir, path)))
      }).pipe(JournalPg.provide("postgres"), Effect.catchAll((e) => Effect.fail(new StepFailed({ step: "totals", message: e.message }))))
    })
  })
)

// ---------------------------------------------------------------------------------------------
// Layers: a worker (runs workflows), a client (starts and follows them)
// ---------------------------------------------------------------------------------------------

const pg = (url: Redacted.Redacted) => PgClient.layer({ url })

export interface WorkerOptions {
  readonly databaseUrl: Redacted.Redacted
  /** The address other workers reach this one at (host must be routable from them). */
  readonly host: string
  readonly port: number
  /**
   * How long a worker that stopped answering keeps its cluster shards (default 35 s): the other
   * workers take its workflows over after about this long. Its shard locks are refreshed
   * 3.5 times as often.
   */
  readonly lockExpiration?: Duration.Duration
  /** Where the worker keeps its copies of runs' files (default `defaultStateDir()`). */
  readonly stateDir?: string
}

/** @effect/cluster's default `shardLockExpiration`, which `--lock-expiration` replaces. */
const defaultLockExpiration = Duration.seconds(35)

/** A worker: joins the cluster, runs the run and shard workflows of any run it is given. */
export const workerLayer = (options: WorkerOptions) =>
  Layer.mergeAll(RunLive, ShardLive).pipe(
    Layer.provide(ClusterRunLock.Settings.layer(options.databaseUrl, options.lockExpiration ?? defaultLockExpiration)),
    Layer.provide(Layer.succeed(StateDir, options.stateDir ?? defaultStateDir())),
    Layer.provideMerge(ClusterWorkflowEngine.layer),
    Layer.provideMerge(
      NodeClusterSocket.layer({
        storage: "sql",
        shardingConfig: {
          runnerAddress: Option.some(RunnerAddress.make(options.host, options.port)),
          ...(options.lockExpiration === undefined ? {} : {
            shardLockExpiration: options.lockExpiration,
            shardLockRefreshInterval: Duration.millis(Math.max(500, Duration.toMillis(options.lockExpiration) / 3.5))
          })
        }
      })
    ),
    Layer.provide(pg(options.databaseUrl))
  )

/** A client of the cluster: starts runs, hosts none of their work. */
export const clientLayer = (databaseUrl: Redacted.Redacted) =>
  ClusterWorkflowEngine.layer.pipe(
    Layer.provideMerge(NodeClusterSocket.layer({ clientOnly: true, storage: "sql" })),
    Layer.provideMerge(pg(databaseUrl))
  )

/** Runs a worker until interrupted; `ready` is called once it has joined. */
export const work = (options: WorkerOptions, ready: Effect.Effect<void>) =>
  Effect.scoped(
    Effect.gen(function* () {
      // Where the copies of runs go, made (0700) before joining: a directory it cannot use fails the worker, not its steps.
      const stateDir = options.stateDir ?? defaultStateDir()
      const fs = yield* FileSystem.FileSystem
      yield* fs.makeDirectory(stateDir, { recursive: true, mode: directoryMode }).pipe(
        Effect.zipRight(fs.access(stateDir, { readable: true, writable: true })),
        Effect.mapError((e) => new ClusterUsage({ description: `cannot keep the copies of runs' files in ${stateDir} (--state-dir): ${e.message}` }))
      )
      // The copies hold rows and answers; the default is in the shared temp directory, where another user could have made it first.
      // A link is followed: what counts is the directory the copies land in.
      if (!isOwnDirectory(realpathSync(stateDir))) {
        return yield* new ClusterUsage({
          description: `cannot keep the copies of runs' files in ${stateDir} (--state-dir): it is not a directory of this user that others cannot write (another user's, or world-writable)`
        })
      }
      yield* Layer.build(workerLayer(options)).pipe(
        Effect.catchIf((e): e is SqlError => e instanceof SqlError, (e) => Effect.fail(unavailable(options.databaseUrl)(e))),
        Effect.catchIf(
          (e): e is SocketServerError => e instanceof SocketServerError,
          (e) =>
            Effect.fail(
              new ClusterUsage({
                description: `cannot listen on ${options.host}:${options.port} for the other workers: ${e.cause instanceof Error ? e.cause.message : String(e.cause)} (another --port?)`
              })
            )
        )
      )
      yield* ready
      return yield* Effect.never
    })
  )

export interface StartOptions {
  readonly databaseUrl: Redacted.Redacted
  readonly pipeline: Pipeline.Pipeline<any, any>
  /** Absolute paths. */
  readonly pipelineFile: string
  readonly pipelineSha256: string
  readonly runDir: string
  readonly settings: typeof RunSettings.Type
  /** Return once the run is started instead of waiting for it. */
  readonly detach: boolean
  /** `sluice retry --cluster`: a new attempt whose first planning resubmits the failed rows (of these classes). */
  readonly retry?: { readonly classes?: ReadonlyArray<string> }
}

/** A failed workflow's error, in a line. */
const failureOf = (result: Workflow.Result<unknown, StepFailed> | undefined): string => {
  if (result?._tag !== "Complete" || result.exit._tag !== "Failure") return "no result"
  const error = Cause.failureOption(result.exit.cause)
  return (Option.isSome(error) ? `${error.value.step}: ${error.value.message}` : Cause.pretty(result.exit.cause)).split("\n")[0]!
}

/**
 * Starts a run on the cluster, or finds it started (the run id and its attempt are the
 * workflow's idempotency key) and follows it. The run id is the run directory's, or a new one
 * the first step gives the directory. A run whose current attempt failed or was cancelled goes
 * on as a new attempt (ClusterAttempts.ts): `attempt` says which one this call follows, and
 * `continued` whether it started it.
 */
export const start = (options: StartOptions) =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    const paths = RunDir.paths(options.runDir, path)
    const known = yield* RunDir.exists(paths)
    const manifest = known ? yield* RunDir.readManifest(paths) : undefined
    const runId = manifest?.runId ?? newRunId(options.pipeline.name)
    // A new run's files are held by the database; one created before keeps its run directory on the shared path.
    const files = manifest === undefined || manifest.files === "postgres"
    const request = (attempt: number): RunRequest => ({
      ...(files ? { files: "postgres" as const } : {}),
      runId,
      runDir: options.runDir,
      baseDir: process.cwd(),
      pipelineFile: options.pipelineFile,
      pipelineSha256: options.pipelineSha256,
      settings: options.settings,
      ...(attempt === 0 ? {} : { attempt }),
      ...(options.retry === undefined ? {} : { retry: options.retry })
    })
    let { attempt, cancelled } = yield* ClusterAttempts.current(runId)
    let continued = false
    if (known && options.retry !== undefined) {
      // A retry is always an attempt of its own: the one in progress (if any) stops at its next step.
      const from = attempt
      attempt = yield* ClusterAttempts.next(runId, from)
      continued = attempt !== from
      yield* Effect.logInfo(`run ${runId}: retried as attempt ${attempt}, from its journal`)
    } else if (known) {
      const result = yield* RunWorkflow.poll(yield* RunWorkflow.executionId(request(attempt)))
      const failed = result?._tag === "Complete" && result.exit._tag === "Failure"
      if (cancelled || failed) {
        const from = attempt
        attempt = yield* ClusterAttempts.next(runId, from)
        continued = attempt !== from
        yield* Effect.logInfo(
          `run ${runId}: its attempt ${from} ${cancelled ? "was cancelled" : `failed (${failureOf(result)})`}; the run goes on as attempt ${attempt}, from its journal`
        )
      }
    }
    if (!files) {
      if (options.detach) {
        yield* RunWorkflow.execute(request(attempt), { discard: true })
        return { runId, attempt, continued, totals: undefined }
      }
      return { runId, attempt, continued, totals: yield* RunWorkflow.execute(request(attempt)) }
    }
    // The run directory here is a copy of the files the database holds: filled once the first
    // step has written the manifest (a new run), and again once the run's workflow ends.
    yield* RunWorkflow.execute(request(attempt), { discard: true })
    const store = yield* RunFilesPg.make
    const copy = yield* RunFiles.make(store, runId, paths.root, Watched.recorder())
    const planned = store.has(runId, "manifest.json")
    let has = yield* planned
    if (!has) {
      // Until a step has pushed the manifest, or the workflow ended without one (its first step failed).
      yield* Effect.logInfo(`run ${runId}: waiting for a worker to start it`)
      const id = yield* RunWorkflow.executionId(request(attempt))
      yield* Effect.gen(function* () {
        has = yield* planned
        return has || (yield* RunWorkflow.poll(id))?._tag === "Complete"
      }).pipe(Effect.repeat({ schedule: Schedule.spaced("200 millis"), until: (done) => done }))
    }
    if (has) yield* copy.pull
    if (options.detach) return { runId, attempt, continued, totals: undefined }
    const totals = yield* RunWorkflow.execute(request(attempt))
    yield* copy.pull
    return { runId, attempt, continued, totals }
  }).pipe(
    Effect.provide(clientLayer(options.databaseUrl)),
    Effect.catchIf((e): e is SqlError => e instanceof SqlError, (e) => Effect.fail(unavailable(options.databaseUrl)(e)))
  )

/**
 * `sluice cancel --cluster`: stops the run's workflows, then cancels its batches once. Holding
 * the run's lock in the database (so no step of the run is in progress), it marks the run's
 * current attempt cancelled (ClusterAttempts.ts): every later step of that attempt does nothing,
 * and its workflows end. Still holding it, it cancels the batches from the journal as on one
 * machine (Cancel.ts), its lock file marked as a step's. `run --cluster` afterwards continues
 * the run as a new attempt, which collects what the batches finished.
 */
export const cancel = (databaseUrl: Redacted.Redacted, runDir: string, options: Cancel.CancelOptions) =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    const paths = RunDir.paths(path.resolve(runDir), path)
    const manifest = yield* RunDir.readManifest(paths)
    return yield* Effect.scoped(
      Effect.gen(function* () {
        const lock = yield* ClusterRunLock.hold(manifest.runId, (holder) => Effect.logInfo(`cancel waits for the run's lock in the database, held by ${holder} (a step of the run)`))
        if (manifest.cluster !== undefined && lock.mark !== undefined && lock.mark.database !== manifest.cluster.database) {
          return yield* new ClusterUsage({
            description: `run ${manifest.runId} ran on the cluster of database ${manifest.cluster.database}, and ${databaseOf(databaseUrl)} is ${lock.mark.database}: give that cluster's database`
          })
        }
        const attempt = yield* ClusterAttempts.cancel(manifest.runId)
        yield* Effect.logInfo(`run ${manifest.runId}: attempt ${attempt} cancelled on the cluster; its workflows do no further step`)
        yield* lock.settle([paths.lock])
        const cancelling = Cancel.fromJournal(paths.root, { ...options, ...(lock.mark === undefined ? {} : { clusterLock: lock.mark }) })
        // A run whose files the database holds: cancelled on this copy of them, pulled first and flushed after.
        return yield* lock.guard(manifest.files === "postgres" ? onCopy(manifest.runId, paths.root, cancelling) : cancelling)
      })
    )
  }).pipe(
    JournalPg.provide("file"),
    Effect.provide(ClusterRunLock.Settings.layer(databaseUrl, defaultLockExpiration)),
    Effect.provide(pg(databaseUrl)),
    Effect.catchIf((e): e is SqlError => e instanceof SqlError, (e) => Effect.fail(unavailable(databaseUrl)(e)))
  )

/**
 * Polling a shard's batch until it reaches a terminal status. Status changes are journaled;
 * counts are kept in memory for progress (journaling every count change would grow the
 * journal with the length of the run, not its size).
 */
import { isTerminal } from "@sluice/providers"
import type { BatchInfo } from "@sluice/providers"
import { Clock, Duration, Effect } from "effect"
import * as PollSchedule from "./PollSchedule.js"
import type { BatchContext } from "./RunContext.js"
import type { ShardState } from "./RunState.js"
import * as Telemetry from "./Telemetry.js"

/**
 * The terminal state the poll of a shard saw last, kept for its collection (which then need not
 * ask the provider again); keyed by the shard's state, so it goes with the run.
 */
const seenTerminal = new WeakMap<ShardState, BatchInfo>()

/** The batch's terminal state as this process's poll saw it, if it did (after a resume: undefined). */
export const terminalInfo = (shard: ShardState): BatchInfo | undefined => {
  const info = seenTerminal.get(shard)
  return info !== undefined && info.id === shard.batchId ? info : undefined
}

/**
 * A batch that says `completed` but shows no file to collect its results from: some providers
 * report completion before the output file exists. (Failed requests alone may come in an
 * error file; providers without one put everything in the output.)
 */
export const awaitsResultFile = (info: BatchInfo): boolean =>
  info.status === "completed" && info.outputFileId === null && (info.counts.succeeded > 0 || info.errorFileId === null)

/**
 * Polls until the batch is terminal, or — with `once` (detached runs) — asks once and
 * returns whether it is. Given `stop`, polling also ends (returning false) once `stop`
 * completes: a hybrid run's deadline. The waits between polls are PollSchedule's (adaptive),
 * or the run's fixed `pollInterval` when one was given (then the first poll is at once).
 */
export const poll = (ctx: BatchContext, shard: ShardState, onStatus: (info: BatchInfo) => void, once = false, stop?: Effect.Effect<void>) =>
  Effect.gen(function* () {
    if (shard.phase !== "created" || shard.batchId === null) return true
    const batchId = shard.batchId
    const wait = ctx.settings.outputFileWait
    const provider = ctx.stageOf(shard.stage).provider
    let warned = false
    let memory = PollSchedule.empty
    const step = Effect.gen(function* () {
      const info = yield* provider.retrieve(batchId)
      memory = PollSchedule.observe(memory, PollSchedule.sampleOf(yield* Clock.currentTimeMillis, info.counts))
      onStatus(info)
      if (info.rawStatus !== shard.rawStatus) {
        if (info.status === "unknown") {
          yield* Effect.logWarning(`shard ${shard.id}: batch ${batchId} has an unknown status "${info.rawStatus}"; still polling`)
        }
        yield* ctx.record({
          _tag: "StatusChanged",
          shard: shard.id,
          batchId,
          status: info.status,
          rawStatus: info.rawStatus,
          counts: info.counts,
          at: Date.now(),
          ...(awaitsResultFile(info) ? { awaitingOutput: true } : {})
        })
      }
      if (!isTerminal(info.status)) return false
      if (awaitsResultFile(info)) {
        // The wait runs from the journaled completion, so detached resumes do not restart it.
        const waited = Date.now() - (shard.statusAt ?? Date.now())
        if (waited < Duration.toMillis(wait)) {
          if (!warned) {
            warned = true
            const left = Duration.seconds(Math.ceil((Duration.toMillis(wait) - waited) / 1000))
            yield* Effect.logWarning(
              `shard ${shard.id}: batch ${batchId} completed but has no output file yet; ` +
                `waiting up to ${Duration.format(left)} more for it (--output-file-wait)`
            )
          }
          return false
        }
        yield* Effect.logWarning(
          `shard ${shard.id}: batch ${batchId} completed without an output file` +
            (Duration.toMillis(wait) === 0 ? "" : `, and none came in ${Duration.format(wait)}`) +
            `; collecting without it: its rows count as missing, resubmitted while they have attempts left`
        )
      }
      yield* ctx.record({
        _tag: "Terminal",
        shard: shard.id,
        batchId,
        status: info.status,
        rawStatus: info.rawStatus,
        counts: info.counts,
        errors: info.errors.map((e) => `${e.code}: ${e.message}${e.line === null ? "" : ` (line ${e.line})`}`)
      })
      seenTerminal.set(shard, info)
      return true
    })
    if (once) return yield* step
    // Only the wait between polls races `stop`: a poll (and what it journals) is never cut short.
    const pause = (ms: number): Effect.Effect<boolean> => {
      const sleep = Effect.as(Effect.sleep(Duration.millis(ms)), false)
      return stop === undefined ? sleep : Effect.raceFirst(sleep, Effect.as(stop, true))
    }
    const fixed = ctx.settings.pollInterval
    const policy = PollSchedule.policyFor(provider, Duration.toMillis(ctx.settings.maxPollInterval ?? defaultMaxPollInterval))
    // A batch this process has just created is not asked about at once: create said it is validating.
    const first = fixed !== undefined ? 0 : PollSchedule.firstWaitMs(
      policy,
      shard.intentAt === null ? null : shard.intentAt * 1000,
      yield* Clock.currentTimeMillis,
      shard.status !== null || shard.adopted
    )
    if (first > 0 && (yield* pause(first))) return false
    for (;;) {
      if (yield* step) return true
      const next = fixed !== undefined ? Duration.toMillis(fixed) : PollSchedule.nextWaitMs(policy, memory)
      memory = PollSchedule.waited(memory, next)
      if (yield* pause(next)) return false
    }
  }).pipe(Telemetry.shardSpan("sluice.poll", shard, { when: (s) => s.phase === "created" }))

/**
 * Cancels the shard's batch where the provider can, and polls until the provider has stopped
 * it: its terminal status is journaled (a batch that ended first keeps the status it ended with).
 */
export const cancel = (ctx: BatchContext, shard: ShardState, onStatus: (info: BatchInfo) => void) =>
  Effect.gen(function* () {
    if (shard.phase !== "created" || shard.batchId === null) return
    const { provider } = ctx.stageOf(shard.stage)
    if (provider.capabilities.cancel) {
      yield* provider.cancel(shard.batchId).pipe(
        Effect.catchAll((e) => Effect.logWarning(`shard ${shard.id}: cancel of ${shard.batchId} failed: ${e.message}`))
      )
    }
    yield* poll(ctx, shard, onStatus)
  })

/** The longest wait between two polls of the adaptive schedule, unless `--max-poll-interval` says otherwise. */
export const defaultMaxPollInterval = Duration.seconds(PollSchedule.defaults.maxMs / 1000)

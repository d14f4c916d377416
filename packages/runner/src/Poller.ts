/**
 * Polling a shard's batch until it reaches a terminal status. Status changes are journaled;
 * counts are kept in memory for progress (journaling every count change would grow the
 * journal with the length of the run, not its size).
 */
import { isTerminal } from "@sluice/providers"
import type { BatchInfo } from "@sluice/providers"
import { Duration, Effect, Schedule } from "effect"
import type { BatchContext } from "./RunContext.js"
import type { ShardState } from "./RunState.js"
import * as Telemetry from "./Telemetry.js"

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
 * completes: a hybrid run's deadline.
 */
export const poll = (ctx: BatchContext, shard: ShardState, onStatus: (info: BatchInfo) => void, once = false, stop?: Effect.Effect<void>) =>
  Effect.gen(function* () {
    if (shard.phase !== "created" || shard.batchId === null) return true
    const batchId = shard.batchId
    const wait = ctx.settings.outputFileWait
    let warned = false
    const step = Effect.gen(function* () {
      const info = yield* ctx.stageOf(shard.stage).provider.retrieve(batchId)
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
      return true
    })
    if (once) return yield* step
    if (stop === undefined) {
      yield* Effect.repeat(step, {
        schedule: Schedule.spaced(ctx.settings.pollInterval),
        until: (done) => done
      })
      return true
    }
    // Only the wait between polls races `stop`: a poll (and what it journals) is never cut short.
    for (;;) {
      if (yield* step) return true
      const stopped = yield* Effect.raceFirst(Effect.as(Effect.sleep(ctx.settings.pollInterval), false), Effect.as(stop, true))
      if (stopped) return false
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

export const defaultPollInterval = Duration.seconds(30)

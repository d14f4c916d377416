/**
 * Adaptive polling end to end, in process, against the emulator over HTTP: both clocks are the
 * test's. The emulator's is held and moved by the test (the batch ends when it says so); the
 * run's is Effect's TestClock, moved in small steps, so what the test reads off it — when the
 * poll that saw the batch end came — follows from the schedule, not from how busy the machine is.
 */
import { advanceClock, getRequestCounts, holdClock } from "@sluice/emulator/control"
import type { EmulatorHandle } from "@sluice/emulator"
import { Runner } from "@sluice/runner"
import { Clock, Duration, Effect, Fiber, TestClock, TestContext } from "effect"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { labelPipeline, liveLayer, makeReviews, readJournal, startApiEmulator, tempDirs } from "./support/api.js"

const dirs = tempDirs()
let emulator: EmulatorHandle

beforeAll(async () => {
  emulator = await startApiEmulator({ validatingMs: 100, finalizingMs: 100, requestsPerSecond: 1000, errorRate: 0 })
})

afterAll(async () => {
  await emulator?.close()
  await dirs.cleanup()
})

const STEP_MS = 100

/** A real pause, outside the TestClock: lets the run's fibers and the HTTP calls move. */
const settle = Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 20)))

const polls = Effect.promise(() => getRequestCounts(emulator.url)).pipe(Effect.map((c) => c["GET /v1/batches/{id}"] ?? 0))
const creates = Effect.promise(() => getRequestCounts(emulator.url)).pipe(Effect.map((c) => c["POST /v1/batches"] ?? 0))

/** Moves the run's clock STEP_MS at a time until `done` holds; at most `limitMs` of it. */
const stepUntil = (done: Effect.Effect<boolean>, limitMs: number) =>
  Effect.gen(function* () {
    for (let moved = 0; moved <= limitMs; moved += STEP_MS) {
      yield* settle
      if (yield* done) return
      yield* TestClock.adjust(Duration.millis(STEP_MS))
    }
    return yield* Effect.dieMessage(`not done within ${limitMs} ms of the run's clock`)
  })

describe("adaptive polling", { timeout: 120_000 }, () => {
  it("sees a batch that ends soon after submission within the first short intervals, not 30 s later", async () => {
    const runDir = join(await dirs.make(), "run")
    const pipeline = labelPipeline({ name: "adaptive", source: { rows: makeReviews(20) } })
    await holdClock(emulator.url)

    const result = await Effect.runPromise(
      Effect.gen(function* () {
        // No pollInterval: the adaptive schedule.
        const run = yield* Effect.fork(Runner.run(pipeline, { runDir, shardSize: 20 }))
        // Planning and submitting wait on nothing but I/O: real time.
        for (let i = 0; i < 3000 && (yield* creates) === 0; i++) yield* settle
        expect(yield* creates).toBe(1)
        const created = yield* Clock.currentTimeMillis
        // The first poll: the batch is still validating (the emulator's clock stands still).
        yield* stepUntil(Effect.map(polls, (n) => n >= 1), 60_000)
        const firstPoll = (yield* Clock.currentTimeMillis) - created
        // Now it ends: far enough on for validating, 20 requests and finalizing.
        yield* Effect.promise(() => advanceClock(emulator.url, 5_000))
        yield* stepUntil(Effect.map(run.poll, (exit) => exit._tag === "Some"), 60_000)
        const seen = (yield* Clock.currentTimeMillis) - created
        const summary = yield* Fiber.join(run)
        return { summary, firstPoll, seen, polls: yield* polls }
      }).pipe(Effect.provide(liveLayer(emulator)), Effect.provide(TestContext.TestContext))
    )

    expect(result.summary).toMatchObject({ finished: true, rows: 20, succeeded: 20 })
    // Not at once (create had just said "validating"), and not 30 s later: 2 s after the intent.
    expect(result.firstPoll).toBeGreaterThan(0)
    expect(result.firstPoll).toBeLessThanOrEqual(2_000 + STEP_MS)
    // The next poll, 2 s on, saw it completed: two polls in all, the end seen about 4 s in.
    expect(result.polls).toBe(2)
    expect(result.seen).toBeLessThan(5_000)
    const journal = await readJournal(runDir)
    expect(journal.filter((e) => e._tag === "StatusChanged").map((e) => e["status"])).toEqual(["validating", "completed"])
  })
})

/**
 * Adaptive polling end to end, in process, against the emulator over HTTP: both clocks are the
 * test's. The emulator's is held and moved by the test (the batch ends when it says so); the
 * run's is Effect's TestClock, moved only to the next wait of the run due soon (a poller's, never
 * a request's timeout, a minute away) once the run is waiting on it: what the test reads off it —
 * when each poll came — follows from the schedule, not from how busy the machine is.
 */
import { advanceClock, getRequestCounts, holdClock } from "@sluice/emulator/control"
import type { EmulatorHandle } from "@sluice/emulator"
import { Runner } from "@sluice/runner"
import * as PollSchedule from "../packages/runner/src/PollSchedule.js"
import { Chunk, Clock, Effect, Fiber, TestClock, TestContext } from "effect"
import { readFile } from "node:fs/promises"
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

/**
 * The run's waits this short are the poller's (30 s at most); an HTTP request's timeout is a
 * minute (and stays among the TestClock's sleeps after its request has answered).
 */
const SHORT_MS = 45_000

/** A real pause, outside the TestClock: lets the run's fibers and the HTTP calls move. */
const settle = Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 20)))

const polls = Effect.promise(() => getRequestCounts(emulator.url)).pipe(Effect.map((c) => c["GET /v1/batches/{id}"] ?? 0))
/** Whether the run's journal holds an event of this tag yet (read as text: the last line may be half written). */
const journaled = (runDir: string, tag: string) =>
  Effect.promise(() => readFile(join(runDir, "journal.jsonl"), "utf8").catch(() => "")).pipe(Effect.map((text) => text.includes(`"_tag":"${tag}"`)))

const creates = (em: EmulatorHandle = emulator) =>
  Effect.promise(() => getRequestCounts(em.url)).pipe(Effect.map((c) => c["POST /v1/batches"] ?? 0))

/**
 * Until `done` holds, moves the run's clock to the end of its next short wait (the poller's),
 * once it waits on one; `alongside` moves another clock (the emulator's) by as much first.
 */
const stepUntil = (done: Effect.Effect<boolean>, alongside?: (ms: number) => Promise<unknown>) =>
  Effect.gen(function* () {
    // When each wait was first seen (on the run's clock): how long it was when it began.
    const seenAt = new Map<number, number>()
    for (let i = 0; i < 6000; i++) {
      yield* settle
      if (yield* done) return
      const now = yield* Clock.currentTimeMillis
      const waits = Chunk.toReadonlyArray(yield* TestClock.sleeps())
      for (const t of waits) if (!seenAt.has(t)) seenAt.set(t, now)
      const short = waits.filter((t) => t - seenAt.get(t)! <= SHORT_MS)
      if (short.length === 0) continue
      const next = Math.min(...short)
      if (alongside !== undefined && next > now) yield* Effect.promise(() => alongside(next - now))
      yield* TestClock.setTime(next)
    }
    return yield* Effect.dieMessage("the run never got there")
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
        for (let i = 0; i < 3000 && (yield* creates()) === 0; i++) yield* settle
        expect(yield* creates()).toBe(1)
        const created = yield* Clock.currentTimeMillis
        // The first poll: the batch is still validating (the emulator's clock stands still). Its
        // answer journaled, the emulator's clock may move: no poll is on its way.
        yield* stepUntil(journaled(runDir, "StatusChanged"))
        expect(yield* polls).toBe(1)
        const firstPoll = (yield* Clock.currentTimeMillis) - created
        // Now it ends: far enough on for validating, 20 requests and finalizing.
        yield* Effect.promise(() => advanceClock(emulator.url, 5_000))
        // The poll that sees it completed, then the collection.
        yield* stepUntil(Effect.map(polls, (n) => n >= 2))
        const seen = (yield* Clock.currentTimeMillis) - created
        yield* stepUntil(Effect.map(run.poll, (exit) => exit._tag === "Some"))
        const summary = yield* Fiber.join(run)
        return { summary, firstPoll, seen, polls: yield* polls }
      }).pipe(Effect.provide(liveLayer(emulator)), Effect.provide(TestContext.TestContext))
    )

    expect(result.summary).toMatchObject({ finished: true, rows: 20, succeeded: 20 })
    // Not at once (create had just said "validating"), and not 30 s later: the first interval
    // after the intent (against the local emulator, a quarter of a second; 2 s against a provider).
    // (The intent is journaled in whole seconds, at 0 on the run's clock, as the create is.)
    const first = PollSchedule.localFirstMs
    expect(result.firstPoll).toBe(first)
    // The next poll, one more first interval on, saw it completed: two polls in all.
    expect(result.polls).toBe(2)
    expect(result.seen).toBe(2 * first)
    const journal = await readJournal(runDir)
    expect(journal.filter((e) => e._tag === "StatusChanged").map((e) => e["status"])).toEqual(["validating", "completed"])
  })

  it("polls a longer batch near the end its counts predict, well before the backed-off poll would come", async () => {
    // 300 requests at 10 a second: in progress from 0.1 s to 30.1 s after the create, completed at 30.2 s.
    const slow = await startApiEmulator({ validatingMs: 100, finalizingMs: 100, requestsPerSecond: 10, errorRate: 0 })
    try {
      const runDir = join(await dirs.make(), "run")
      const pipeline = labelPipeline({ name: "predicted", source: { rows: makeReviews(300) } })
      await holdClock(slow.url)
      const result = await Effect.runPromise(
        Effect.gen(function* () {
          const run = yield* Effect.fork(Runner.run(pipeline, { runDir, shardSize: 300 }))
          for (let i = 0; i < 3000 && (yield* creates(slow)) === 0; i++) yield* settle
          const created = yield* Clock.currentTimeMillis
          // The emulator's clock moves with the run's, from the create on.
          yield* stepUntil(journaled(runDir, "Terminal"), (ms) => advanceClock(slow.url, ms))
          const seen = (yield* Clock.currentTimeMillis) - created
          yield* stepUntil(Effect.map(run.poll, (exit) => exit._tag === "Some"))
          return { summary: yield* Fiber.join(run), seen }
        }).pipe(Effect.provide(liveLayer(slow)), Effect.provide(TestContext.TestContext))
      )
      expect(result.summary).toMatchObject({ finished: true, rows: 300, succeeded: 300 })
      // The poll times the schedule gives without counts (backing off alone): the first at or after the end.
      const policy = PollSchedule.policyFor({ origin: slow.url })
      let t = PollSchedule.firstWaitMs(policy, 0, 0, false)
      let memory = PollSchedule.empty
      while (t < 30_200) {
        const wait = PollSchedule.nextWaitMs(policy, memory)
        memory = PollSchedule.waited(memory, wait)
        t += wait
      }
      expect(t).toBeGreaterThan(40_000)
      // With the counts: seen within a few seconds of the end, long before that.
      expect(result.seen).toBeGreaterThanOrEqual(30_200)
      expect(result.seen).toBeLessThan(35_000)
    } finally {
      await slow.close()
    }
  })
})

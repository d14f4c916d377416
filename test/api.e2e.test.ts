/**
 * The programmatic API end to end, in process, against the emulator: the Effect operations
 * (run, events, status, retry, cancel, Records.outputs / failures), the Promise API (the same
 * operations as async functions, SluiceError, AbortSignal), abort and resume, and the
 * one-call helpers (batchPrompts, batchRequests with custom_ids kept as given).
 */
import type { EmulatorHandle } from "@sluice/emulator"
import { advanceClock, getLedger, holdClock, releaseClock, setFaults } from "@sluice/emulator/control"
import { Records, Runner, Status } from "@sluice/runner"
import type { RunEvent } from "@sluice/runner"
import * as Api from "@sluice/runner/promise"
import { SluiceError } from "@sluice/runner/promise"
import { Chunk, Duration, Effect, Stream } from "effect"
import { existsSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from "vitest"
import {
  collect,
  type Label,
  labelPipeline,
  ledgerBatchesOf,
  liveLayer,
  lockExists,
  makeReviews,
  promiseConnection,
  readJournal,
  readManifest,
  registryLayer,
  type Review,
  sentiments,
  startApiEmulator,
  tempDirs,
  total,
  writeReviews
} from "./support/api.js"

const dirs = tempDirs()
afterAll(() => dirs.cleanup())

/** Waits until every batch of the run is cancelling at the emulator (its clock held: they stay so). */
const cancelsArrived = async (emulator: EmulatorHandle, runDir: string, batches: number): Promise<void> => {
  for (let i = 0; i < 6000; i++) {
    if (existsSync(join(runDir, "manifest.json"))) {
      const statuses = (await ledgerBatchesOf(emulator, (await readManifest(runDir)).runId)).map((b) => b.status)
      if (statuses.length === batches && statuses.every((s) => s === "cancelling")) return
    }
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  throw new Error("the cancel requests never arrived")
}

const poll = Duration.millis(50)
/** The Promise API's poll interval, in seconds. */
const pollSeconds = 0.05

type RunEventOf<T extends RunEvent.RunEvent["_tag"]> = Extract<RunEvent.RunEvent, { _tag: T }>

const sumCounts = (events: ReadonlyArray<RunEvent.RunEvent>, tag: "RowsSucceeded" | "RowsFailed"): number =>
  events.filter((e): e is RunEventOf<typeof tag> => e._tag === tag).reduce((a, e) => a + e.count, 0)

/** The totals of the last row event (what a progress display would show last). */
const lastTotals = (events: ReadonlyArray<RunEvent.RunEvent>): RunEvent.Totals | undefined => {
  for (let i = events.length - 1; i >= 0; i--) {
    const e = events[i]!
    if (e._tag !== "RunFinished") return e.totals
  }
  return undefined
}

/** Checks the events of one run against its run directory's status. */
const expectEventsAgreeWithStatus = (events: ReadonlyArray<RunEvent.RunEvent>, status: Status.RunStatus) => {
  const last = events[events.length - 1]
  expect(last?._tag).toBe("RunFinished")
  expect(events.filter((e) => e._tag === "RunFinished")).toHaveLength(1)
  const finished = last as RunEventOf<"RunFinished">
  expect(finished.summary.succeeded).toBe(status.succeeded)
  expect(finished.summary.rows).toBe(status.rows)
  expect(finished.summary.failed).toEqual(status.failed)
  expect(finished.summary.pending).toBe(status.pending)

  expect(sumCounts(events, "RowsSucceeded")).toBe(status.succeeded)
  expect(sumCounts(events, "RowsFailed")).toBe(total(status.failed) - status.invalid)
  const submitted = events.filter((e): e is RunEventOf<"ShardSubmitted"> => e._tag === "ShardSubmitted")
  expect(submitted).toHaveLength(status.batches)
  expect(new Map(submitted.map((e) => [e.shard, e.batchId]))).toEqual(
    new Map(status.shards.filter((s) => s.batchId !== null).map((s) => [s.shard, s.batchId]))
  )
  expect(lastTotals(events)).toEqual({ rows: status.rows, succeeded: status.succeeded, failed: total(status.failed), pending: status.pending })
  // Running totals only grow.
  const succeeded = events.flatMap((e) => (e._tag === "RunFinished" ? [] : [e.totals.succeeded]))
  expect(succeeded).toEqual([...succeeded].sort((a, b) => a - b))
}

const expectValidLabels = (records: ReadonlyArray<Records.OutputRecord<Review, Label>>, rows: ReadonlyArray<Review>) => {
  expect(records).toHaveLength(rows.length)
  expect(new Set(records.map((r) => r.key))).toEqual(new Set(rows.map((r) => r.id)))
  const byId = new Map(rows.map((r) => [r.id, r]))
  for (const r of records) {
    expect(r.input).toEqual(byId.get(r.key))
    expect(r.customId).toMatch(new RegExp(`^label-${r.key}-[0-9a-f]{16}$`))
    expect(sentiments).toContain(r.output.sentiment)
    expect(Array.isArray(r.output.topics)).toBe(true)
    for (const t of r.output.topics) expect(typeof t).toBe("string")
  }
  expect(new Set(records.map((r) => r.customId)).size).toBe(records.length)
}

// =============================================================================================
// 1. The Effect API
// =============================================================================================

describe("Effect API", () => {
  let emulator: EmulatorHandle
  let faulty: EmulatorHandle

  beforeAll(async () => {
    emulator = await startApiEmulator()
    faulty = await startApiEmulator({ errorRate: 0.25 })
  })
  afterAll(async () => {
    await emulator?.close()
    await faulty?.close()
  })

  it("Runner.run finishes every row; Records.outputs streams them typed; Status.status reads the directory", async () => {
    const dir = await dirs.make()
    const rows = makeReviews(25, "er")
    const file = await writeReviews(join(dir, "rows.jsonl"), rows)
    const pipeline = labelPipeline({ name: "effect-run", source: { file } })
    const runDir = join(dir, "run")

    const { summary, records, status } = await Effect.runPromise(
      Effect.gen(function* () {
        const summary = yield* Runner.run(pipeline, { runDir, shardSize: 10, pollInterval: poll })
        const records = Chunk.toReadonlyArray(yield* Stream.runCollect(Records.outputs(pipeline, runDir)))
        const status = yield* Status.status(runDir, { refresh: false })
        return { summary, records, status }
      }).pipe(Effect.provide(liveLayer(emulator)))
    )

    expect(summary).toMatchObject({ finished: true, rows: 25, succeeded: 25, pending: 0, invalid: 0, batches: 3, model: "gpt-4o-mini" })
    expect(total(summary.failed)).toBe(0)
    expect(summary.usage.input).toBeGreaterThan(0)

    // Typed by the pipeline: input is a Review, output a Label.
    expectTypeOf<(typeof records)[number]["input"]>().toEqualTypeOf<Review>()
    expectTypeOf<(typeof records)[number]["output"]>().toEqualTypeOf<Label>()
    expectTypeOf(records).toMatchTypeOf<ReadonlyArray<Records.OutputRecord<Review, Label>>>()
    expectValidLabels(records, rows)

    const manifest = await readManifest(runDir)
    expect(status).toMatchObject({ runId: manifest.runId, pipeline: "effect-run", finished: true, rows: 25, succeeded: 25, pending: 0, batches: 3 })
    expect(status.shards).toHaveLength(3)
    for (const s of status.shards) {
      expect(s.phase).toBe("collected")
      expect(s.live).toBe(false)
      expect(s.batchId).not.toBeNull()
    }
    expect(status.shards.reduce((a, s) => a + s.requests, 0)).toBe(25)
    expect(lockExists(runDir)).toBe(false)
  })

  it("Runner.events ends with RunFinished; its row counts and totals agree with the run directory", async () => {
    const dir = await dirs.make()
    const rows = makeReviews(40, "ee")
    const pipeline = labelPipeline({ name: "effect-events", source: { rows } })
    const runDir = join(dir, "run")

    const { events, status } = await Effect.runPromise(
      Effect.gen(function* () {
        const events = Chunk.toReadonlyArray(yield* Stream.runCollect(Runner.events(pipeline, { runDir, shardSize: 10, pollInterval: poll })))
        const status = yield* Status.status(runDir, { refresh: false })
        return { events, status }
      }).pipe(Effect.provide(liveLayer(faulty)))
    )

    expect(status).toMatchObject({ finished: true, rows: 40, succeeded: 40, pending: 0 })
    expectEventsAgreeWithStatus(events, status)
    // The faulty provider made the runner reschedule rows (retry shards), all reported as events.
    const failedEvents = events.filter((e): e is RunEventOf<"RowsFailed"> => e._tag === "RowsFailed")
    expect(failedEvents.reduce((a, e) => a + e.rescheduled, 0)).toBeGreaterThan(0)
    expect(status.shards.length).toBeGreaterThan(4)
    expect(events.filter((e) => e._tag === "ShardPlanned").length).toBe(status.shards.length)
    expect(events.some((e) => e._tag === "StatusChanged")).toBe(true)
  })

  it("Runner.retry resubmits the rows that ended failed; Records.failures lists exactly the final failures", async () => {
    const dir = await dirs.make()
    const rows = makeReviews(40, "et")
    const pipeline = labelPipeline({ name: "effect-retry", source: { rows }, maxAttempts: 1 })
    const runDir = join(dir, "run")
    const layer = liveLayer(faulty)

    const first = await Effect.runPromise(
      Effect.gen(function* () {
        const summary = yield* Runner.run(pipeline, { runDir, shardSize: 20, pollInterval: poll })
        const failures = Chunk.toReadonlyArray(yield* Stream.runCollect(Records.failures(runDir)))
        const outputs = Chunk.toReadonlyArray(yield* Stream.runCollect(Records.outputs(pipeline, runDir)))
        return { summary, failures, outputs }
      }).pipe(Effect.provide(layer))
    )
    const failedRows = first.summary.failed["retryable"] ?? 0
    expect(failedRows).toBeGreaterThan(0)
    expect(first.summary).toMatchObject({ finished: true, rows: 40, pending: 0 })
    expect(first.summary.succeeded + total(first.summary.failed)).toBe(40)
    expect(total(first.summary.failed)).toBe(failedRows) // nothing but retryable failures

    // Records.failures: one record per failed row, none of them a succeeded row.
    expect(first.failures).toHaveLength(failedRows)
    for (const f of first.failures) {
      expect(f.class).toBe("retryable")
      expect(f.custom_id).not.toBeNull()
      expect(f.attempt).toBe(1)
    }
    const failedKeys = new Set(first.failures.map((f) => f.key))
    expect(failedKeys.size).toBe(failedRows)
    expect(first.outputs).toHaveLength(first.summary.succeeded)
    for (const o of first.outputs) expect(failedKeys.has(o.key)).toBe(false)
    const manifest = await readManifest(runDir)
    const batchesBefore = await ledgerBatchesOf(faulty, manifest.runId)

    const second = await Effect.runPromise(
      Effect.gen(function* () {
        const summary = yield* Runner.retry(pipeline, { runDir, shardSize: 20, pollInterval: poll })
        const failures = Chunk.toReadonlyArray(yield* Stream.runCollect(Records.failures(runDir)))
        const outputs = Chunk.toReadonlyArray(yield* Stream.runCollect(Records.outputs(pipeline, runDir)))
        return { summary, failures, outputs }
      }).pipe(Effect.provide(layer))
    )
    expect(second.summary.retry).toEqual({ rows: failedRows, shards: 1, overCap: 0 })
    expect(second.summary).toMatchObject({ finished: true, rows: 40, succeeded: 40, pending: 0 })
    expect(total(second.summary.failed)).toBe(0)
    expect(second.failures).toEqual([])
    expectValidLabels(second.outputs, rows)

    // The retry sent exactly the failed rows' custom_ids, in one new batch.
    const batchesAfter = await ledgerBatchesOf(faulty, manifest.runId)
    const added = batchesAfter.filter((b) => !batchesBefore.some((x) => x.id === b.id))
    expect(added).toHaveLength(1)
    expect(new Set(added[0]!.custom_ids)).toEqual(new Set(first.failures.map((f) => f.custom_id)))
  })

  it("Runner.cancel on a detached run cancels the batches in flight; rows end succeeded or cancelled (Registry.layer)", async () => {
    const slow = await startApiEmulator({ validatingMs: 50, requestsPerSecond: 4, finalizingMs: 20, cancellingMs: 50 })
    try {
      const dir = await dirs.make()
      const rows = makeReviews(24, "ec")
      const pipeline = labelPipeline({ name: "effect-cancel", source: { rows } })
      const runDir = join(dir, "run")
      const layer = registryLayer(slow)

      // The emulator's clock stands still but when the test moves it: each batch of 8 has done
      // 4 requests when the cancels arrive.
      await holdClock(slow.url)
      const detached = await Effect.runPromise(
        Runner.run(pipeline, { runDir, shardSize: 8, pollInterval: poll, detach: true }).pipe(Effect.provide(layer))
      )
      expect(detached).toMatchObject({ finished: false, rows: 24, batches: 3 })
      expect(detached.pending).toBeGreaterThan(0)
      expect(lockExists(runDir)).toBe(false)
      await advanceClock(slow.url, 50 + 1000)

      const cancelling = Effect.runPromise(
        Effect.gen(function* () {
          const summary = yield* Runner.cancel(pipeline, { runDir, pollInterval: poll })
          const failures = Chunk.toReadonlyArray(yield* Stream.runCollect(Records.failures(runDir)))
          return { summary, failures }
        }).pipe(Effect.provide(layer))
      )
      await cancelsArrived(slow, runDir, 3)
      await releaseClock(slow.url)
      const { summary, failures } = await cancelling
      expect(summary).toMatchObject({ finished: true, rows: 24, pending: 0, batches: 3 })
      const cancelled = summary.failed["cancelled"] ?? 0
      expect(cancelled).toBe(12)
      expect(total(summary.failed)).toBe(cancelled) // only cancelled rows failed
      expect(summary.succeeded + cancelled).toBe(24)
      expect(failures).toHaveLength(cancelled)
      for (const f of failures) expect(f.class).toBe("cancelled")

      const manifest = await readManifest(runDir)
      const batches = await ledgerBatchesOf(slow, manifest.runId)
      expect(batches).toHaveLength(3)
      for (const b of batches) expect(b.status).toBe("cancelled")

      // The cancelled rows are retryable: a retry on a now fast provider finishes the run.
      await setFaults(slow.url, { requestsPerSecond: "Infinity" })
      const retried = await Effect.runPromise(Runner.retry(pipeline, { runDir, pollInterval: poll }).pipe(Effect.provide(layer)))
      expect(retried.retry?.rows).toBe(cancelled)
      expect(retried).toMatchObject({ finished: true, succeeded: 24, pending: 0 })
      expect(total(retried.failed)).toBe(0)
    } finally {
      await slow.close()
    }
  })
})

// =============================================================================================
// 2. The Promise API
// =============================================================================================

describe("Promise API", () => {
  let emulator: EmulatorHandle
  let faulty: EmulatorHandle

  beforeAll(async () => {
    emulator = await startApiEmulator()
    faulty = await startApiEmulator({ errorRate: 0.25 })
  })
  afterAll(async () => {
    await emulator?.close()
    await faulty?.close()
  })

  it("run, status, outputs (for await) and failures; onEvent counts agree with the run directory", async () => {
    const dir = await dirs.make()
    const rows = makeReviews(30, "pr")
    const pipeline = labelPipeline({ name: "promise-run", source: { file: await writeReviews(join(dir, "rows.jsonl"), rows) } })
    const runDir = join(dir, "run")
    const events: Array<RunEvent.RunEvent> = []

    const summary = await Api.run(pipeline, { runDir, ...promiseConnection(faulty), shardSize: 10, pollInterval: pollSeconds, onEvent: (e) => void events.push(e) })
    expect(summary).toMatchObject({ finished: true, rows: 30, succeeded: 30, pending: 0 })

    const status = await Api.status(runDir, { refresh: false })
    expect(status).toMatchObject({ runId: summary.runId, pipeline: "promise-run", finished: true, rows: 30, succeeded: 30, pending: 0 })
    // A refreshing status (the default) asks the provider only about batches still in flight: none.
    const refreshed = await Api.status(runDir, promiseConnection(faulty))
    expect(refreshed.refreshError).toBeNull()
    expect(refreshed.succeeded).toBe(30)

    expectEventsAgreeWithStatus(events, status)
    expect((events[events.length - 1] as RunEventOf<"RunFinished">).summary).toEqual(summary)
    // The faulty provider failed some requests; they were rescheduled and are reported as such.
    expect(events.some((e) => e._tag === "RowsFailed" && e.rescheduled > 0)).toBe(true)

    const records = await collect(Api.outputs(pipeline, runDir))
    expectTypeOf(records).toEqualTypeOf<Array<Records.OutputRecord<Review, Label>>>()
    expectValidLabels(records, rows)
    expect(await collect(Api.failures(runDir))).toEqual([])
  })

  it("retry after failures: failures() lists the failed rows, retry() finishes them", async () => {
    const dir = await dirs.make()
    const rows = makeReviews(40, "pt")
    const pipeline = labelPipeline({ name: "promise-retry", source: { rows }, maxAttempts: 1 })
    const runDir = join(dir, "run")
    const connection = promiseConnection(faulty)

    const first = await Api.run(pipeline, { runDir, ...connection, shardSize: 20, pollInterval: pollSeconds })
    const failedRows = first.failed["retryable"] ?? 0
    expect(failedRows).toBeGreaterThan(0)
    expect(first.succeeded + failedRows).toBe(40)
    const failures = await collect(Api.failures(runDir))
    expect(failures).toHaveLength(failedRows)
    for (const f of failures) expect(f.class).toBe("retryable")

    const events: Array<RunEvent.RunEvent> = []
    const second = await Api.retry(pipeline, { runDir, ...connection, shardSize: 20, pollInterval: pollSeconds, onEvent: (e) => void events.push(e) })
    expect(second.retry).toEqual({ rows: failedRows, shards: 1, overCap: 0 })
    expect(second).toMatchObject({ finished: true, succeeded: 40, pending: 0 })
    expect(total(second.failed)).toBe(0)
    expect(await collect(Api.failures(runDir))).toEqual([])
    expectValidLabels(await collect(Api.outputs(pipeline, runDir)), rows)
    // The retry's own events: the resubmitted rows, and nothing more.
    expect(sumCounts(events, "RowsSucceeded")).toBe(failedRows)
  })

  it("events (for await) yields the run's events, ending with RunFinished, with the directory's counts", async () => {
    const dir = await dirs.make()
    const pipeline = labelPipeline({ name: "promise-events", source: { rows: makeReviews(30, "pe") } })
    const runDir = join(dir, "run")

    const events = await collect(Api.events(pipeline, { runDir, ...promiseConnection(faulty), shardSize: 10, pollInterval: pollSeconds }))
    const status = await Api.status(runDir, { refresh: false })
    expect(status).toMatchObject({ finished: true, rows: 30, succeeded: 30 })
    expectEventsAgreeWithStatus(events, status)
  })

  it("cancel on a detached run: rows end succeeded or cancelled, listed by failures()", async () => {
    const slow = await startApiEmulator({ validatingMs: 50, requestsPerSecond: 4, finalizingMs: 20, cancellingMs: 50 })
    try {
      const dir = await dirs.make()
      const pipeline = labelPipeline({ name: "promise-cancel", source: { rows: makeReviews(20, "pc") } })
      const runDir = join(dir, "run")
      const connection = promiseConnection(slow)

      // The emulator's clock stands still but when the test moves it: each batch of 10 has done
      // 4 requests when the cancels arrive.
      await holdClock(slow.url)
      const detached = await Api.run(pipeline, { runDir, ...connection, shardSize: 10, pollInterval: pollSeconds, detach: true })
      expect(detached.finished).toBe(false)
      expect(detached.pending).toBeGreaterThan(0)
      await advanceClock(slow.url, 50 + 1000)
      const live = await Api.status(runDir, connection)
      expect(live.shards.filter((s) => s.live)).toHaveLength(2)

      const cancelling = Api.cancel(pipeline, { runDir, ...connection, pollInterval: pollSeconds })
      await cancelsArrived(slow, runDir, 2)
      await releaseClock(slow.url)
      const summary = await cancelling
      const cancelled = summary.failed["cancelled"] ?? 0
      expect(summary).toMatchObject({ finished: true, rows: 20, pending: 0 })
      expect(cancelled).toBe(12)
      expect(summary.succeeded + cancelled).toBe(20)
      expect(total(summary.failed)).toBe(cancelled)
      const failures = await collect(Api.failures(runDir))
      expect(failures).toHaveLength(cancelled)
      for (const f of failures) expect(f.class).toBe("cancelled")
      expect(await collect(Api.outputs(pipeline, runDir))).toHaveLength(summary.succeeded)
    } finally {
      await slow.close()
    }
  })

  it('a pipeline naming provider "nope" rejects with SluiceError tag UnknownProvider, not retryable', async () => {
    const dir = await dirs.make()
    const pipeline = labelPipeline({ name: "promise-nope", source: { rows: makeReviews(3) }, provider: "nope" })
    const before = (await getLedger(emulator.url)).batches.length

    const err = await Api.run(pipeline, { runDir: join(dir, "run"), ...promiseConnection(emulator), pollInterval: pollSeconds }).then(
      () => undefined,
      (e: unknown) => e
    )
    expect(err).toBeInstanceOf(SluiceError)
    expect(err).toBeInstanceOf(Error)
    const e = err as SluiceError
    expect(e.name).toBe("SluiceError")
    expect(e.tag).toBe("UnknownProvider")
    expect(e.retryable).toBe(false)
    expect(e.message).toContain("nope")
    expect((await getLedger(emulator.url)).batches.length).toBe(before)
  })

  it("a wrong API key rejects with SluiceError tag ProviderError, reason Unauthorized; the right key works", async () => {
    const keyed = await startApiEmulator({ apiKey: "right-key" })
    try {
      const dir = await dirs.make()
      const pipeline = labelPipeline({ name: "promise-key", source: { rows: makeReviews(3) } })

      const err = await Api.run(pipeline, { runDir: join(dir, "wrong"), ...promiseConnection(keyed, "wrong-key"), pollInterval: pollSeconds }).then(
        () => undefined,
        (e: unknown) => e
      )
      expect(err).toBeInstanceOf(SluiceError)
      expect(err).toBeInstanceOf(Error)
      const e = err as SluiceError
      expect(e.tag).toBe("ProviderError")
      expect(e.reason).toBe("Unauthorized")
      expect(e.retryable).toBe(false)
      expect(e.message).not.toContain("wrong-key")
      expect((await getLedger(keyed.url, { apiKey: "right-key" })).batches).toHaveLength(0)

      const ok = await Api.run(pipeline, { runDir: join(dir, "right"), ...promiseConnection(keyed, "right-key"), pollInterval: pollSeconds })
      expect(ok).toMatchObject({ finished: true, succeeded: 3 })
    } finally {
      await keyed.close()
    }
  })
})

// =============================================================================================
// 3. Abort and resume through the Promise API
// =============================================================================================

describe("abort and resume (Promise API)", () => {
  it("an AbortSignal stops the run cleanly; the next run picks up the batches in flight instead of resubmitting", async () => {
    const slow = await startApiEmulator({ validatingMs: 100, requestsPerSecond: 20, finalizingMs: 20 })
    try {
      // The emulator's clock stands still until the resume: the batches are in flight at the abort.
      await holdClock(slow.url)
      const dir = await dirs.make()
      const rows = makeReviews(40, "ab")
      const pipeline = labelPipeline({ name: "promise-abort", source: { rows } })
      const runDir = join(dir, "run")
      const connection = promiseConnection(slow)

      const controller = new AbortController()
      const firstEvents: Array<RunEvent.RunEvent> = []
      const err = await Api.run(pipeline, {
        runDir,
        ...connection,
        shardSize: 10,
        pollInterval: pollSeconds,
        signal: controller.signal,
        onEvent: (e) => {
          firstEvents.push(e)
          if (e._tag === "ShardSubmitted") controller.abort()
        }
      }).then(
        () => undefined,
        (e: unknown) => e
      )
      expect(err).toBeInstanceOf(SluiceError)
      expect(err).toBeInstanceOf(Error)
      expect((err as SluiceError).tag).toBe("Interrupted")
      expect((err as SluiceError).retryable).toBe(true)
      expect(firstEvents.some((e) => e._tag === "RunFinished")).toBe(false)

      // Stopped cleanly: the journal holds the submitted batches, the lock is released.
      expect(lockExists(runDir)).toBe(false)
      const journal = await readJournal(runDir)
      const created = new Map(journal.filter((e) => e._tag === "Created").map((e) => [e.shard!, e.batchId!]))
      expect(created.size).toBeGreaterThan(0)
      const collectedBefore = new Set(journal.filter((e) => e._tag === "Collected").map((e) => e.shard!))
      const inFlight = [...created.keys()].filter((s) => !collectedBefore.has(s))
      expect(inFlight.length).toBeGreaterThan(0)

      // The batches keep running at the provider.
      const manifest = await readManifest(runDir)
      const atAbort = await ledgerBatchesOf(slow, manifest.runId)
      for (const shard of inFlight) {
        const batch = atAbort.find((b) => b.id === created.get(shard))
        expect(batch, `batch of ${shard}`).toBeDefined()
        expect(batch!.status).not.toBe("cancelled")
      }

      // Resume: a plain run on the same directory.
      await releaseClock(slow.url)
      const secondEvents: Array<RunEvent.RunEvent> = []
      const summary = await Api.run(pipeline, { runDir, ...connection, shardSize: 10, pollInterval: pollSeconds, onEvent: (e) => void secondEvents.push(e) })
      expect(summary).toMatchObject({ runId: manifest.runId, finished: true, rows: 40, succeeded: 40, pending: 0 })
      expect(total(summary.failed)).toBe(0)
      expectValidLabels(await collect(Api.outputs(pipeline, runDir)), rows)

      // No shard submitted before the abort was submitted again.
      const resubmitted = secondEvents.filter((e): e is RunEventOf<"ShardSubmitted"> => e._tag === "ShardSubmitted" && created.has(e.shard))
      expect(resubmitted).toEqual([])
      const status = await Api.status(runDir, { refresh: false })
      for (const [shard, batchId] of created) expect(status.shards.find((s) => s.shard === shard)?.batchId).toBe(batchId)

      // The ledger agrees: one batch per shard of this run, each custom_id delivered once.
      const batches = await ledgerBatchesOf(slow, manifest.runId)
      const shards = batches.map((b) => b.metadata?.["sluice_shard"])
      expect(new Set(shards).size).toBe(shards.length)
      expect(batches).toHaveLength(status.batches)
      const ids = new Set(batches.map((b) => b.id))
      const delivered = (await getLedger(slow.url)).deliveries.filter((d) => ids.has(d.batch_id)).map((d) => d.custom_id)
      expect(delivered).toHaveLength(40)
      expect(new Set(delivered).size).toBe(40)
    } finally {
      await slow.close()
    }
  })
})

// =============================================================================================
// 4. One-call helpers
// =============================================================================================

describe("one-call helpers (Promise API)", () => {
  let emulator: EmulatorHandle

  beforeAll(async () => {
    emulator = await startApiEmulator()
  })
  afterAll(async () => {
    await emulator?.close()
  })

  it("batchPrompts returns one ok result per prompt, keyed by custom_id, with the prompt's index", async () => {
    const dir = await dirs.make()
    const prompts = [
      "a",
      "b",
      "Name a colour.",
      [
        { role: "system" as const, content: "Answer briefly." },
        { role: "user" as const, content: "Name a fruit." }
      ],
      "e"
    ]
    const { summary, results } = await Api.batchPrompts({
      model: "gpt-4o-mini",
      prompts,
      runDir: join(dir, "run"),
      ...promiseConnection(emulator),
      pollInterval: pollSeconds
    })
    expect(summary).toMatchObject({ finished: true, rows: prompts.length, succeeded: prompts.length })
    expect(results.size).toBe(prompts.length)
    const indexes: Array<number> = []
    for (const [customId, r] of results) {
      expect(r.customId).toBe(customId)
      expect(r.ok).toBe(true)
      if (!r.ok) continue
      expect(typeof r.text).toBe("string")
      expect(r.text.length).toBeGreaterThan(0)
      expect(typeof r.index).toBe("number")
      expect(customId).toMatch(new RegExp(`^prompt-p${r.index}-[0-9a-f]{16}$`))
      indexes.push(r.index!)
    }
    expect(indexes.sort((a, b) => a - b)).toEqual(prompts.map((_, i) => i))
  })

  it("batchRequests keeps the given custom_ids; calling it again on the same run directory submits nothing", async () => {
    const dir = await dirs.make()
    const runDir = join(dir, "run")
    const answerSchema = {
      type: "json_schema",
      json_schema: {
        name: "answer",
        strict: true,
        schema: { type: "object", properties: { answer: { type: "string" } }, required: ["answer"], additionalProperties: false }
      }
    }
    const lines = Array.from({ length: 6 }, (_, i) => ({
      custom_id: `my-id-${i + 1}`,
      method: "POST",
      url: "/v1/chat/completions",
      body: {
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: `Question ${i + 1}` }],
        ...(i % 2 === 0 ? { response_format: answerSchema } : {})
      }
    }))
    const given = lines.map((l) => l.custom_id)

    const first = await Api.batchRequests({ lines, runDir, ...promiseConnection(emulator), pollInterval: pollSeconds })
    expect(first.summary).toMatchObject({ finished: true, rows: 6, succeeded: 6 })
    expect([...first.results.keys()].sort()).toEqual([...given].sort())
    for (const [id, r] of first.results) {
      expect(r.customId).toBe(id)
      expect(r.ok).toBe(true)
      if (!r.ok) continue
      expect(r.text.length).toBeGreaterThan(0)
      const n = Number(id.replace("my-id-", "")) - 1
      // The lines that asked for JSON got JSON matching their schema.
      if (n % 2 === 0) expect(typeof (JSON.parse(r.text) as { answer: unknown }).answer).toBe("string")
    }

    // The emulator received exactly these custom_ids, as given.
    const manifest = await readManifest(runDir)
    const batches = await ledgerBatchesOf(emulator, manifest.runId)
    expect(batches.length).toBeGreaterThan(0)
    expect(batches.flatMap((b) => b.custom_ids).sort()).toEqual([...given].sort())

    const ledgerCount = (await getLedger(emulator.url)).batches.length
    const again = await Api.batchRequests({ lines, runDir, ...promiseConnection(emulator), pollInterval: pollSeconds })
    expect((await getLedger(emulator.url)).batches.length).toBe(ledgerCount)
    expect(again.summary).toMatchObject({ finished: true, succeeded: 6 })
    expect(new Map([...again.results].map(([k, r]) => [k, r]))).toEqual(new Map([...first.results].map(([k, r]) => [k, r])))
  })

  it("a line whose custom_id breaks ^[A-Za-z0-9_-]{1,64}$ ends as a failed result (invalid_request), not a crash", async () => {
    const dir = await dirs.make()
    const runDir = join(dir, "run")
    const line = (custom_id: string) => ({
      custom_id,
      url: "/v1/chat/completions",
      body: { model: "gpt-4o-mini", messages: [{ role: "user", content: `Hello from ${custom_id}` }] }
    })
    const bad = ["bad id!", "x".repeat(65)]
    const lines = [line("ok-1"), line(bad[0]!), line("ok-2"), line(bad[1]!)]

    const { summary, results } = await Api.batchRequests({ lines, runDir, ...promiseConnection(emulator), pollInterval: pollSeconds })
    expect(summary).toMatchObject({ finished: true, rows: 4, succeeded: 2, invalid: 2, pending: 0 })

    // failures.jsonl lists the rejected lines under their own custom_ids.
    const failures = await collect(Api.failures(runDir))
    expect(failures.map((f) => f.custom_id).sort()).toEqual([...bad].sort())
    for (const f of failures) {
      expect(f.code).toBe("invalid_request")
      expect(f.class).toBe("permanent")
      expect(f.shard).toBeNull()
    }

    // Every line has a result under the custom_id it was given: the good ones ok, the bad ones failed.
    expect([...results.keys()].sort()).toEqual(lines.map((l) => l.custom_id).sort())
    expect(results.get("ok-1")?.ok).toBe(true)
    expect(results.get("ok-2")?.ok).toBe(true)
    for (const id of bad) {
      const r = results.get(id)
      expect(r, `result for ${JSON.stringify(id)}`).toMatchObject({ customId: id, ok: false, failure: "permanent", code: "invalid_request" })
      if (r !== undefined && !r.ok) expect(r.message).toContain("does not match")
    }

    // Only the valid lines reached the provider.
    const manifest = await readManifest(runDir)
    const batches = await ledgerBatchesOf(emulator, manifest.runId)
    expect(batches.flatMap((b) => b.custom_ids).sort()).toEqual(["ok-1", "ok-2"])
    expect(existsSync(join(runDir, "failures.jsonl"))).toBe(true)
  })
})

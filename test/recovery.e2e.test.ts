/**
 * Recovery, end to end: the real `sluice` CLI as a child process against the emulator (in this
 * process, 127.0.0.1, port 0), through the failures a batch run meets — a crash between a
 * provider call and its journal entry, an expired or cancelled batch with partial results,
 * lost result lines, a late output file, failed rows retried by class, a detached run driven
 * by repeated `resume --detach`, a changed pipeline, and a corrupt journal. Whatever happens,
 * every source row ends in the sink exactly once and nothing is paid for twice.
 */
import { cp, readFile, writeFile } from "node:fs/promises"
import { afterEach, describe, expect, it } from "vitest"
import type { EmulatorOptions } from "@sluice/emulator"
import {
  type CliResult,
  describeResult,
  emulatorEnv,
  getLedger,
  type Ledger,
  listUploads,
  makeProject,
  readJsonl,
  runCli,
  type Row,
  type TempProject,
  type TestEmulator,
  startTestEmulator,
  writeRows
} from "./support/cli.js"
import {
  batchesOfRun,
  countBy,
  deliveredBy,
  duplicates,
  eventsTagged,
  type JournalLine,
  journalPath,
  readFailures,
  readJournal,
  readJournalSoFar,
  readSink,
  type RecoveryPipelineSpec,
  retrieveBatch,
  runFlags,
  runIdOf,
  advanceClock,
  holdClock,
  releaseClock,
  setFaults,
  waitFor,
  writeRecoveryPipeline
} from "./support/runs.js"

/** Every test spawns the CLI several times (tsx loads TypeScript on each start): be generous. */
const SLOW = { timeout: 180_000 }

// ---------------------------------------------------------------------------------------------
// Setup
// ---------------------------------------------------------------------------------------------

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!().catch(() => undefined)
})

interface Setup {
  readonly emulator: TestEmulator
  readonly project: TempProject
  readonly rows: ReadonlyArray<Row>
  /** Absolute path of the pipeline file. */
  readonly pipeline: string
  /** Absolute path of the run directory. */
  readonly runDir: string
  /** Absolute path of the sink. */
  readonly sink: string
  /** Runs the CLI in the project, pointed at the emulator; `env` adds or removes (undefined) variables. */
  readonly sluice: (args: ReadonlyArray<string>, env?: Readonly<Record<string, string | undefined>>) => Promise<CliResult>
}

const setup = async (options: {
  readonly rows: number
  readonly emulator?: EmulatorOptions
  readonly pipeline?: RecoveryPipelineSpec
}): Promise<Setup> => {
  const emulator = await startTestEmulator(options.emulator ?? {})
  cleanups.push(() => emulator.close())
  const project = await makeProject("sluice-recovery-")
  cleanups.push(() => project.cleanup())
  const rows = await writeRows(project, "data/rows.jsonl", options.rows)
  const pipeline = await writeRecoveryPipeline(project, "recovery.pipeline.ts", options.pipeline ?? {})
  return {
    emulator,
    project,
    rows,
    pipeline,
    runDir: project.path("run"),
    sink: project.path("out", "labeled.jsonl"),
    sluice: (args, env = {}) => runCli(args, { cwd: project.dir, env: { ...emulatorEnv(emulator.url), ...env }, timeoutMs: 150_000 })
  }
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

/** The sink holds every source row exactly once (by the row's id). */
const expectEveryRowOnce = async (t: Setup) => {
  const sink = await readSink(t.sink)
  const ids = sink.map((l) => l.input.id)
  expect(duplicates(ids), "rows written to the sink more than once").toEqual([])
  expect([...ids].sort()).toEqual(t.rows.map((r) => r.id).sort())
}

/**
 * No shard got two batches, and no custom_id was delivered as a success twice — except those
 * in `resubmitted`, whose first answer was delivered but unusable (parse failures retried).
 */
const expectNothingPaidTwice = (ledger: Ledger, runId: string, resubmitted: ReadonlySet<string> = new Set()) => {
  const batches = batchesOfRun(ledger, runId)
  const perShard = countBy(batches, (b) => b.metadata!["sluice_shard"]!)
  expect([...perShard].filter(([, n]) => n > 1), "shards with more than one batch").toEqual([])
  const ours = new Set(batches.map((b) => b.id))
  const delivered = ledger.deliveries.filter((d) => ours.has(d.batch_id)).map((d) => d.custom_id)
  expect(duplicates(delivered).filter((id) => !resubmitted.has(id)), "custom_ids delivered as a success by two batches").toEqual([])
  const counts = countBy(delivered, (id) => id)
  for (const id of resubmitted) expect(counts.get(id), `deliveries of ${id}`).toBe(2)
}

const plannedShards = (events: ReadonlyArray<JournalLine>): Array<JournalLine> => eventsTagged(events, "ShardPlanned")
const firstAttemptShards = (events: ReadonlyArray<JournalLine>): Array<string> =>
  plannedShards(events)
    .filter((e) => e["parent"] === null)
    .map((e) => e.shard!)

const sorted = (values: Iterable<string>): Array<string> => [...values].sort()

// ---------------------------------------------------------------------------------------------
// 1. Orphans
// ---------------------------------------------------------------------------------------------

describe("a crash between a provider call and its journal entry", SLOW, () => {
  it("after-create: resume adopts the batch the provider created (one batch per shard, `adopted: true` journaled)", async () => {
    const t = await setup({ rows: 40 })
    // One batch in flight at a time, so exactly one orphan exists when the process dies.
    const args = ["run", t.pipeline, ...runFlags(t.runDir, 10, ["--concurrency", "1"])]
    const crashed = await t.sluice(args, { SLUICE_FAILPOINT: "after-create:1" })
    expect(crashed.signal, describeResult(crashed)).toBe("SIGKILL")

    const runId = await runIdOf(t.runDir)
    const orphans = batchesOfRun(await getLedger(t.emulator.url), runId)
    expect(orphans, "the provider holds the batch created just before the crash").toHaveLength(1)
    const orphan = orphans[0]!
    const orphanShard = orphan.metadata!["sluice_shard"]!
    const beforeResume = await readJournal(t.runDir)
    expect(eventsTagged(beforeResume, "Created"), "the crash came before the journal recorded the batch").toEqual([])
    expect(eventsTagged(beforeResume, "Staged").map((e) => e.shard)).toEqual([orphanShard])

    const resumed = await t.sluice(["resume", t.runDir, "--poll-interval", "0.05"])
    expect(resumed.code, describeResult(resumed)).toBe(0)

    const events = await readJournal(t.runDir)
    const created = eventsTagged(events, "Created")
    expect(created.filter((e) => e["adopted"] === true)).toEqual([
      expect.objectContaining({ _tag: "Created", shard: orphanShard, batchId: orphan.id, adopted: true })
    ])
    expect(created.filter((e) => e["adopted"] !== true).map((e) => e.shard)).not.toContain(orphanShard)

    const ledger = await getLedger(t.emulator.url)
    const batches = batchesOfRun(ledger, runId)
    const shards = plannedShards(events).map((e) => e.shard!)
    expect(shards).toHaveLength(4)
    expect(sorted(batches.map((b) => b.metadata!["sluice_shard"]!)), "exactly one batch per shard").toEqual(sorted(shards))
    expect(batches.filter((b) => b.metadata!["sluice_shard"] === orphanShard).map((b) => b.id)).toEqual([orphan.id])
    expectNothingPaidTwice(ledger, runId)
    await expectEveryRowOnce(t)
  })

  it("after-upload: resume finds the upload by its name and reuses it (one input file per shard)", async () => {
    const t = await setup({ rows: 40 })
    const crashed = await t.sluice(["run", t.pipeline, ...runFlags(t.runDir, 10)], { SLUICE_FAILPOINT: "after-upload:1" })
    expect(crashed.signal, describeResult(crashed)).toBe("SIGKILL")

    const runId = await runIdOf(t.runDir)
    const ours = async () => (await listUploads(t.emulator.url)).filter((f) => f.filename.startsWith(`sluice-${runId}-`))
    const uploadedBeforeCrash = await ours()
    expect(uploadedBeforeCrash.length, "an upload reached the provider before the crash").toBeGreaterThanOrEqual(1)
    const beforeResume = await readJournal(t.runDir)
    expect(eventsTagged(beforeResume, "Staged"), "the crash came before the journal recorded the upload").toEqual([])
    expect(batchesOfRun(await getLedger(t.emulator.url), runId)).toEqual([])

    const resumed = await t.sluice(["resume", t.runDir, "--poll-interval", "0.05"])
    expect(resumed.code, describeResult(resumed)).toBe(0)

    const events = await readJournal(t.runDir)
    const shards = plannedShards(events).map((e) => e.shard!)
    expect(shards).toHaveLength(4)
    // One upload per shard in all: those made before the crash were reused, not made again. (An
    // upload the crash cut off mid-body reached the emulator but stored nothing: only 200s count.)
    const stored = t.emulator.log.filter((l) => /^POST \/v1\/files -> 200 /.test(l))
    expect(stored, "input files uploaded").toHaveLength(shards.length)
    const staged = new Map(eventsTagged(events, "Staged").map((e) => [e.shard!, e["inputRef"] as string]))
    expect(duplicates([...staged.values()]), "one input file staged by two shards").toEqual([])
    for (const f of uploadedBeforeCrash) {
      const shard = shards.find((s) => f.filename === `sluice-${runId}-${s}-s1.jsonl`)!
      expect(staged.get(shard), `input file of ${shard}, uploaded before the crash`).toBe(f.id)
    }
    // Once collected, every input file was deleted at the provider.
    expect(await ours()).toEqual([])

    const ledger = await getLedger(t.emulator.url)
    const batches = batchesOfRun(ledger, runId)
    expect(sorted(batches.map((b) => b.input_file_id))).toEqual(sorted([...staged.values()]))
    expectNothingPaidTwice(ledger, runId)
    await expectEveryRowOnce(t)
  })
})

// ---------------------------------------------------------------------------------------------
// 2, 3. Expiry and cancellation with partial results
// ---------------------------------------------------------------------------------------------

/**
 * `run --detach` of one 40-row shard (4 requests a second) with the emulator's clock held, then
 * moves the clock until the batch has done 4 of its 40 requests; the clock stays held. Returns
 * the shard and its batch id.
 */
const detachedSlowBatch = async (t: Setup) => {
  await holdClock(t.emulator.url)
  const detached = await t.sluice(["run", t.pipeline, ...runFlags(t.runDir, 40), "--detach"])
  expect(detached.code, describeResult(detached)).toBe(3)
  const created = eventsTagged(await readJournal(t.runDir), "Created")
  expect(created).toHaveLength(1)
  const shard = created[0]!.shard!
  const batchId = created[0]!["batchId"] as string
  await advanceClock(t.emulator.url, 20 + 1000) // validated, then a second at 4 requests a second
  const progress = await retrieveBatch(t.emulator.url, batchId)
  expect(progress.status, "the batch is still running").toBe("in_progress")
  expect(progress.request_counts.completed).toBe(4)
  return { shard, batchId }
}

describe("a batch that ends early keeps its finished results", SLOW, () => {
  it("expired: resume keeps the finished results and resubmits only the rest, in a retry shard", async () => {
    // 4 requests per second: the 40-request batch takes 10 s of the emulator's clock.
    const t = await setup({ rows: 40, emulator: { requestsPerSecond: 4 } })
    const { shard, batchId } = await detachedSlowBatch(t)
    // Expire it now; batches created from now on (the retry) run fast.
    const patched = await setFaults(t.emulator.url, { expireBatch: batchId, requestsPerSecond: 2000 })
    expect((patched as { expiredBatch?: { status?: string } }).expiredBatch?.status).toBe("expired")
    await releaseClock(t.emulator.url)

    const resumed = await t.sluice(["resume", t.runDir, "--poll-interval", "0.05"])
    expect(resumed.code, describeResult(resumed)).toBe(0)

    const runId = await runIdOf(t.runDir)
    const ledger = await getLedger(t.emulator.url)
    const batches = batchesOfRun(ledger, runId)
    expect(batches).toHaveLength(2)
    const expired = batches.find((b) => b.id === batchId)!
    expect(expired.status).toBe("expired")
    const finished = new Set(deliveredBy(ledger, batchId))
    expect(finished.size, "the requests the expired batch had finished").toBe(4)

    const events = await readJournal(t.runDir)
    expect(eventsTagged(events, "Terminal").find((e) => e.shard === shard)).toMatchObject({ status: "expired" })
    const retryPlanned = plannedShards(events).filter((e) => e["parent"] === shard)
    expect(retryPlanned, "one retry shard, whose parent is the expired shard").toHaveLength(1)
    const retryShard = retryPlanned[0]!.shard!
    expect(retryPlanned[0]).toMatchObject({ requests: 40 - finished.size, attempt: 2 })
    expect(eventsTagged(events, "Collected").find((e) => e.shard === shard)).toMatchObject({
      succeeded: finished.size,
      rescheduled: 40 - finished.size,
      retryShard
    })

    // The finished results were kept (results.jsonl), not bought again: the retry batch holds
    // exactly the requests the expired one did not finish.
    const results = await readJsonl<{ shard: string; _tag: string; customId: string; failure?: string }>(`${t.runDir}/results.jsonl`)
    const keptOk = results.filter((r) => r.shard === shard && r._tag === "Succeeded").map((r) => r.customId)
    expect(sorted(keptOk)).toEqual(sorted(finished))
    const retryBatch = batches.find((b) => b.metadata!["sluice_shard"] === retryShard)!
    expect(retryBatch.custom_ids.filter((id) => finished.has(id)), "finished rows submitted again").toEqual([])
    expect(sorted([...retryBatch.custom_ids, ...finished])).toEqual(sorted(expired.custom_ids))

    expect(await readFailures(t.runDir)).toEqual([])
    expectNothingPaidTwice(ledger, runId)
    await expectEveryRowOnce(t)
  })

  it("cancelled: `sluice cancel` stops the batch; `resume` keeps the finished rows, lists the rest as `cancelled`; `retry --only cancelled` completes the run", async () => {
    const t = await setup({ rows: 40, emulator: { requestsPerSecond: 4 } })
    const { shard, batchId } = await detachedSlowBatch(t)
    await setFaults(t.emulator.url, { requestsPerSecond: 2000 })

    // Cancelling reads the run directory alone: the batch is stopped and its end journaled;
    // collecting it needs the pipeline, which `resume` loads.
    const cancelling = t.sluice(["cancel", t.runDir, "--poll-interval", "0.05"])
    // The batch stands still until the cancel has reached the emulator; then it may end.
    await waitFor("the cancel request", () => (t.emulator.calls("POST", `/v1/batches/${batchId}/cancel`) > 0 ? true : undefined), {
      timeoutMs: 120_000
    })
    await releaseClock(t.emulator.url)
    const cancelled = await cancelling
    expect(cancelled.code, describeResult(cancelled)).toBe(3)
    expect(eventsTagged(await readJournal(t.runDir), "Terminal")).toMatchObject([{ shard, batchId, status: "cancelled" }])
    expect(await readSink(t.sink)).toEqual([])

    const collected = await t.sluice(["resume", t.runDir, "--poll-interval", "0.05"])
    // The run has finished (every row is in the sink or failures.jsonl), some rows failed.
    expect(collected.code, describeResult(collected)).toBe(1)

    const runId = await runIdOf(t.runDir)
    let ledger = await getLedger(t.emulator.url)
    expect(batchesOfRun(ledger, runId).map((b) => [b.id, b.status])).toEqual([[batchId, "cancelled"]])
    const batch = batchesOfRun(ledger, runId)[0]!
    const finished = new Set(deliveredBy(ledger, batchId))
    expect(finished.size, "requests finished before the cancel").toBe(4)

    const sinkBefore = await readSink(t.sink)
    expect(sorted(sinkBefore.map((l) => l.custom_id)), "the finished rows are in the sink").toEqual(sorted(finished))
    const failures = await readFailures(t.runDir)
    expect(new Set(failures.map((f) => f.class))).toEqual(new Set(["cancelled"]))
    const unfinished = batch.custom_ids.filter((id) => !finished.has(id))
    expect(sorted(failures.map((f) => f.custom_id!))).toEqual(sorted(unfinished))

    const retried = await t.sluice(["retry", t.runDir, "--only", "cancelled", "--poll-interval", "0.05"])
    expect(retried.code, describeResult(retried)).toBe(0)
    const events = await readJournal(t.runDir)
    expect(eventsTagged(events, "RetryPlanned")).toEqual([
      expect.objectContaining({ classes: ["cancelled"], taken: { cancelled: unfinished.length } })
    ])
    ledger = await getLedger(t.emulator.url)
    const retryBatches = batchesOfRun(ledger, runId).filter((b) => b.id !== batchId)
    expect(sorted(retryBatches.flatMap((b) => b.custom_ids)), "only the cancelled rows were resubmitted").toEqual(sorted(unfinished))
    expectNothingPaidTwice(ledger, runId)
    await expectEveryRowOnce(t)
  })
})

// ---------------------------------------------------------------------------------------------
// 4, 5. Lost lines and late output files
// ---------------------------------------------------------------------------------------------

describe("results the provider loses or delays", SLOW, () => {
  it("dropped lines: the missing rows are found, resubmitted in retry shards, and the run ends with every row once", async () => {
    const t = await setup({ rows: 60 })
    await setFaults(t.emulator.url, { dropLines: 0.2 })
    // The emulator drops the *same* lines whenever a request is resubmitted (its choice is a
    // hash of the request): the provider loses them from the first batches only. Its clock
    // stands still until those three are created; the test moves it to their end and gets
    // them, which writes their result files, before it stops losing lines.
    await holdClock(t.emulator.url)
    const running = t.sluice(["run", t.pipeline, ...runFlags(t.runDir, 20)])
    let exited = false
    void running.then(() => (exited = true))
    await waitFor("the first three batches", () => (exited || t.emulator.calls("POST", "/v1/batches") >= 3 ? true : undefined), {
      timeoutMs: 120_000
    })
    expect(exited, "the run ended before its batches could end").toBe(false)
    const firstBatches = (await getLedger(t.emulator.url)).batches
    expect(firstBatches).toHaveLength(3)
    await advanceClock(t.emulator.url, 1000)
    for (const batch of firstBatches) {
      expect((await retrieveBatch(t.emulator.url, batch.id)).status).toBe("completed")
    }
    await setFaults(t.emulator.url, { dropLines: 0 })
    await releaseClock(t.emulator.url)
    const result = await running
    expect(result.code, describeResult(result)).toBe(0)

    expect(await readFailures(t.runDir), "no row ended failed").toEqual([])
    await expectEveryRowOnce(t)

    const events = await readJournal(t.runDir)
    const runId = await runIdOf(t.runDir)
    const ledger = await getLedger(t.emulator.url)
    const batches = batchesOfRun(ledger, runId)
    const first = firstAttemptShards(events)
    expect(first).toHaveLength(3)
    const collected = new Map(eventsTagged(events, "Collected").map((e) => [e.shard!, e]))
    let rescheduled = 0
    for (const shard of first) {
      const batch = batches.find((b) => b.metadata!["sluice_shard"] === shard)!
      const delivered = new Set(deliveredBy(ledger, batch.id))
      const missing = batch.custom_ids.filter((id) => !delivered.has(id))
      const c = collected.get(shard)!
      expect(c["rescheduled"], `rows of ${shard} with no result line`).toBe(missing.length)
      expect(c["succeeded"]).toBe(delivered.size)
      rescheduled += missing.length
      if (missing.length === 0) continue
      const retry = plannedShards(events).find((e) => e["parent"] === shard)
      expect(retry, `retry shard of ${shard}`).toMatchObject({ shard: c["retryShard"], requests: missing.length })
      const retryBatch = batches.find((b) => b.metadata!["sluice_shard"] === c["retryShard"])!
      expect(sorted(retryBatch.custom_ids), `resubmitted rows of ${shard}`).toEqual(sorted(missing))
    }
    expect(rescheduled, "lines were dropped and rescheduled").toBeGreaterThan(0)
    expectNothingPaidTwice(ledger, runId)
  })

  it("late output_file_id: the runner waits for the output file; no row is rescheduled or lost", async () => {
    const t = await setup({ rows: 40, emulator: { lateOutputFileMs: 1500 } })
    // The emulator's clock stands still until the batches exist; the test moves it to their end,
    // lets the runner poll them completed without an output file, then to the output file.
    await holdClock(t.emulator.url)
    const running = t.sluice(["run", t.pipeline, ...runFlags(t.runDir, 20)])
    let exited = false
    void running.then(() => (exited = true))
    await waitFor("the two batches", () => (exited || t.emulator.calls("POST", "/v1/batches") >= 2 ? true : undefined), { timeoutMs: 120_000 })
    expect(exited, "the run ended before its batches could end").toBe(false)
    const batchIds = (await getLedger(t.emulator.url)).batches.map((b) => b.id)
    expect(batchIds).toHaveLength(2)
    await advanceClock(t.emulator.url, 1000) // completed; the output files show 1.5 s later
    // Polls after the completion (the lines that follow "batch … completed" in the log) saw no output file.
    const pollsAfterCompletion = (id: string) => {
      const completed = t.emulator.log.findIndex((l) => l.startsWith(`batch ${id} completed`))
      return completed === -1 ? 0 : t.emulator.log.slice(completed).filter((l) => l.startsWith(`GET /v1/batches/${id} `)).length
    }
    await waitFor("three polls of each completed batch", () => (batchIds.every((id) => pollsAfterCompletion(id) >= 3) ? true : undefined), {
      timeoutMs: 120_000
    })
    for (const id of batchIds) expect((await retrieveBatch(t.emulator.url, id)).output_file_id, `output file of ${id}`).toBeNull()
    expect(t.emulator.log.filter((l) => /^GET \/v1\/files\/[^/]+\/content/.test(l)), "downloads before the output files show").toEqual([])
    expect(eventsTagged(await readJournalSoFar(t.runDir), "Collected"), "shards collected without their output").toEqual([])
    await advanceClock(t.emulator.url, 1500)
    await releaseClock(t.emulator.url)
    const result = await running
    expect(result.code, describeResult(result)).toBe(0)
    await expectEveryRowOnce(t)
    expect(await readFailures(t.runDir)).toEqual([])

    const events = await readJournal(t.runDir)
    const first = firstAttemptShards(events)
    expect(first).toHaveLength(2)
    expect(plannedShards(events).filter((e) => e["parent"] !== null), "no retry shard").toEqual([])
    for (const shard of first) {
      expect(eventsTagged(events, "Collected").find((e) => e.shard === shard)).toMatchObject({ succeeded: 20, rescheduled: 0, failed: {} })
    }

    // The runner downloaded each output file once it showed.
    const runId = await runIdOf(t.runDir)
    expect(batchesOfRun(await getLedger(t.emulator.url), runId).map((b) => b.id).sort()).toEqual([...batchIds].sort())
    for (const id of batchIds) {
      const outputFile = (await retrieveBatch(t.emulator.url, id)).output_file_id
      expect(outputFile).not.toBeNull()
      expect(t.emulator.calls("GET", `/v1/files/${outputFile}/content`), `downloads of ${outputFile}`).toBeGreaterThan(0)
    }
  })
})

// ---------------------------------------------------------------------------------------------
// 6. retry --only
// ---------------------------------------------------------------------------------------------

describe("`sluice retry --only` takes exactly the named failure classes", SLOW, () => {
  it("parse first, then the default classes; an unknown class is a usage error", async () => {
    // One attempt per row: server errors end `retryable` instead of being rescheduled.
    const t = await setup({ rows: 40, emulator: { errorRate: 0.3, invalidJsonRate: 0.3 }, pipeline: { maxAttempts: 1 } })
    const first = await t.sluice(["run", t.pipeline, ...runFlags(t.runDir, 20)])
    expect(first.code, describeResult(first)).toBe(1)
    const runId = await runIdOf(t.runDir)

    const failures = await readFailures(t.runDir)
    expect(new Set(failures.map((f) => f.class))).toEqual(new Set(["retryable", "parse"]))
    const parseIds = failures.filter((f) => f.class === "parse").map((f) => f.custom_id!)
    const retryableIds = failures.filter((f) => f.class === "retryable").map((f) => f.custom_id!)
    expect((await readSink(t.sink)).length).toBe(40 - failures.length)
    // From now on the provider answers well (the faults hit a request only once anyway).
    await setFaults(t.emulator.url, { errorRate: 0, invalidJsonRate: 0 })

    const journalBefore = await readFile(journalPath(t.runDir), "utf8")
    const bogus = await t.sluice(["retry", t.runDir, "--only", "bogus"])
    expect(bogus.code, describeResult(bogus)).toBe(2)
    expect(bogus.stderr).toMatch(/--only/)
    expect(bogus.stderr).toMatch(/bogus/)
    expect(bogus.stderr).toMatch(/retryable/)
    expect(await readFile(journalPath(t.runDir), "utf8"), "an unknown class plans nothing").toBe(journalBefore)

    const batchesBefore = new Set(batchesOfRun(await getLedger(t.emulator.url), runId).map((b) => b.id))
    const onlyParse = await t.sluice(["retry", t.runDir, "--only", "parse", "--poll-interval", "0.05"])
    expect(onlyParse.code, `retryable rows are still failed: ${describeResult(onlyParse)}`).toBe(1)
    let events = await readJournal(t.runDir)
    const round1 = eventsTagged(events, "RetryPlanned")
    expect(round1).toHaveLength(1)
    expect(round1[0]).toMatchObject({ round: 1, classes: ["parse"], taken: { parse: parseIds.length } })
    let ledger = await getLedger(t.emulator.url)
    const parseBatches = batchesOfRun(ledger, runId).filter((b) => !batchesBefore.has(b.id))
    expect(parseBatches.length).toBeGreaterThan(0)
    expect(sorted(parseBatches.flatMap((b) => b.custom_ids)), "the new batch holds exactly the parse failures").toEqual(sorted(parseIds))

    for (const b of parseBatches) batchesBefore.add(b.id)
    const rest = await t.sluice(["retry", t.runDir, "--poll-interval", "0.05"])
    expect(rest.code, describeResult(rest)).toBe(0)
    events = await readJournal(t.runDir)
    const round2 = eventsTagged(events, "RetryPlanned")
    expect(round2).toHaveLength(2)
    expect(round2[1]).toMatchObject({ round: 2, taken: { retryable: retryableIds.length } })
    expect(Object.keys(round2[1]!["taken"] as object), "parse rows are not taken twice").toEqual(["retryable"])
    ledger = await getLedger(t.emulator.url)
    const retryableBatches = batchesOfRun(ledger, runId).filter((b) => !batchesBefore.has(b.id))
    expect(sorted(retryableBatches.flatMap((b) => b.custom_ids))).toEqual(sorted(retryableIds))

    // A parse failure was delivered (an answer that did not decode), then bought once more.
    expectNothingPaidTwice(ledger, runId, new Set(parseIds))
    await expectEveryRowOnce(t)
  })
})

// ---------------------------------------------------------------------------------------------
// 7. Detached runs
// ---------------------------------------------------------------------------------------------

describe("a detached run", SLOW, () => {
  it("is driven to the end by repeated `sluice resume --detach`, which collects what finished and submits what remains", async () => {
    // 10 requests per second: each 20-request batch takes 2 s of the emulator's clock, which
    // moves only between the resumes; 10% of requests fail once, so retry shards must be
    // planned and submitted by the detached resumes.
    const t = await setup({ rows: 60, emulator: { requestsPerSecond: 10, validatingMs: 200, errorRate: 0.1 } })
    await holdClock(t.emulator.url)
    const detached = await t.sluice(["run", t.pipeline, ...runFlags(t.runDir, 20), "--detach"])
    expect(detached.code, describeResult(detached)).toBe(3)
    let events = await readJournal(t.runDir)
    expect(eventsTagged(events, "Created")).toHaveLength(3)
    expect(eventsTagged(events, "Collected")).toEqual([])

    const status = await t.sluice(["status", t.runDir, "--json"])
    expect(status.code, describeResult(status)).toBe(0)
    const s = JSON.parse(status.stdout) as { finished: boolean; pending: number; shards: Array<{ shard: string; batchId: string | null }> }
    expect(s.finished).toBe(false)
    expect(s.pending).toBeGreaterThan(0)
    expect(s.shards).toHaveLength(3)
    for (const sh of s.shards) expect(sh.batchId, `batch of ${sh.shard}`).toMatch(/^batch_/)

    const codes: Array<number | null> = []
    let collectedByDetached = 0
    let submittedByDetached = 0
    for (let i = 0; i < 10; i++) {
      await advanceClock(t.emulator.url, 5000) // every batch created so far ends
      const before = await readJournal(t.runDir)
      const r = await t.sluice(["resume", t.runDir, "--detach", "--poll-interval", "0.05"])
      codes.push(r.code)
      expect([0, 3], describeResult(r)).toContain(r.code)
      const after = await readJournal(t.runDir)
      const added = after.slice(before.length)
      collectedByDetached += eventsTagged(added, "Collected").length
      submittedByDetached += eventsTagged(added, "Created").length
      if (r.code === 0) break
    }
    // The first resume collected the batches and submitted the retry shards without waiting for
    // them; the second collected those.
    expect(codes, "exit codes of the resumes").toEqual([3, 0])

    events = await readJournal(t.runDir)
    const shards = plannedShards(events).map((e) => e.shard!)
    const retryShards = plannedShards(events).filter((e) => e["parent"] !== null)
    expect(retryShards.length, "retry shards were planned").toBeGreaterThan(0)
    expect(sorted(eventsTagged(events, "Collected").map((e) => e.shard!)), "every shard collected").toEqual(sorted(shards))
    expect(collectedByDetached, "detached resumes collected every shard").toBe(shards.length)
    expect(submittedByDetached, "detached resumes submitted the retry shards").toBe(retryShards.length)

    const runId = await runIdOf(t.runDir)
    const ledger = await getLedger(t.emulator.url)
    expect(sorted(batchesOfRun(ledger, runId).map((b) => b.metadata!["sluice_shard"]!))).toEqual(sorted(shards))
    expectNothingPaidTwice(ledger, runId)
    expect(await readFailures(t.runDir)).toEqual([])
    await expectEveryRowOnce(t)
  })
})

// ---------------------------------------------------------------------------------------------
// 8, 9, 10. A finished run: changed pipeline, status offline, corrupt journal
// ---------------------------------------------------------------------------------------------

describe("a finished run directory", SLOW, () => {
  /** A 30-row run to completion. */
  const finishedRun = async () => {
    const t = await setup({ rows: 30, pipeline: { system: "You label product reviews." } })
    const r = await t.sluice(["run", t.pipeline, ...runFlags(t.runDir, 10)])
    expect(r.code, describeResult(r)).toBe(0)
    await expectEveryRowOnce(t)
    return t
  }

  it("refuses a changed pipeline: exit 2 naming --allow-changed, nothing submitted", async () => {
    const t = await finishedRun()
    const runId = await runIdOf(t.runDir)
    const batchesBefore = batchesOfRun(await getLedger(t.emulator.url), runId).length
    const journalBefore = await readFile(journalPath(t.runDir), "utf8")
    const sinkBefore = await readFile(t.sink, "utf8")

    await writeRecoveryPipeline(t.project, "recovery.pipeline.ts", { system: "You label product reviews, tersely." })
    const again = await t.sluice(["run", t.pipeline, ...runFlags(t.runDir, 10)])
    expect(again.code, describeResult(again)).toBe(2)
    expect(again.stderr).toMatch(/changed/)
    expect(again.stderr).toContain("--allow-changed")

    expect(batchesOfRun(await getLedger(t.emulator.url), runId)).toHaveLength(batchesBefore)
    expect(await readFile(journalPath(t.runDir), "utf8")).toBe(journalBefore)
    expect(await readFile(t.sink, "utf8")).toBe(sinkBefore)
  })

  it("`status --json --no-refresh` reports from the run directory alone, without an API key", async () => {
    const t = await finishedRun()
    const callsBefore = t.emulator.log.length
    const status = await t.sluice(["status", t.runDir, "--json", "--no-refresh"], { OPENAI_API_KEY: undefined, OPENAI_BASE_URL: undefined })
    expect(status.code, describeResult(status)).toBe(0)
    const s = JSON.parse(status.stdout) as { finished: boolean; rows: number; succeeded: number; pending: number; batches: number }
    expect(s).toMatchObject({ finished: true, rows: 30, succeeded: 30, pending: 0, batches: 3 })
    expect(t.emulator.log.length, "the provider was not called").toBe(callsBefore)
  })

  it("a corrupt journal line stops status and resume with a message naming the line; a torn last line is tolerated", async () => {
    const t = await finishedRun()
    const original = await readFile(journalPath(t.runDir), "utf8")
    const lines = original.split("\n").filter((l) => l !== "")
    expect(lines.length).toBeGreaterThan(10)

    // A corrupt line in the middle, in a copy of the run directory.
    const corruptDir = t.project.path("run-corrupt")
    await cp(t.runDir, corruptDir, { recursive: true })
    const bad = Math.floor(lines.length / 2) // 0-based; the journal's line number is bad + 1
    const corrupted = lines.map((l, i) => (i === bad ? l.slice(0, Math.floor(l.length / 2)) + "#garbage" : l)).join("\n") + "\n"
    await writeFile(journalPath(corruptDir), corrupted)

    const status = await t.sluice(["status", corruptDir])
    expect(status.code, describeResult(status)).not.toBe(0)
    expect(status.code).not.toBeNull()
    expect(status.stderr).toMatch(new RegExp(`line ${bad + 1}\\b`))
    expect(status.stderr).toMatch(/corrupt/)
    expect(status.stderr).not.toMatch(/^\s+at\s/m)

    const resumed = await t.sluice(["resume", corruptDir, "--poll-interval", "0.05"])
    expect(resumed.code, describeResult(resumed)).not.toBe(0)
    expect(resumed.stderr).toMatch(new RegExp(`line ${bad + 1}\\b`))
    expect(await readFile(journalPath(corruptDir), "utf8"), "resume left the journal as it was").toBe(corrupted)

    // A torn last line (a crash mid-write) is dropped, not an error.
    const tornDir = t.project.path("run-torn")
    await cp(t.runDir, tornDir, { recursive: true })
    await writeFile(journalPath(tornDir), original + '{"_tag":"Collected","sha')
    const torn = await t.sluice(["status", tornDir, "--json", "--no-refresh"])
    expect(torn.code, describeResult(torn)).toBe(0)
    expect(JSON.parse(torn.stdout)).toMatchObject({ finished: true, succeeded: 30 })
  })
})

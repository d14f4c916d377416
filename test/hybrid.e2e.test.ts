/**
 * Hybrid runs, end to end: the real `sluice` CLI in `auto` mode against the emulator (in this
 * process, 127.0.0.1, port 0), which serves both the batch and the real-time endpoints. The
 * emulator's clock is held, so a batch cannot finish on its own: a test moves it exactly as far
 * as it needs (so many requests done), then expires the batch, or lets a deadline pass — which
 * then surely passes with the batch in flight. Whatever goes which way, every row ends in the
 * sink once, and by the emulator's ledger no custom_id is answered twice (a batch delivery and
 * a real-time answer, or two of either).
 */
import { readFile } from "node:fs/promises"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import type { EmulatorOptions } from "@sluice/emulator"
import {
  type CliResult,
  describeResult,
  emulatorEnv,
  makeProject,
  runCli,
  type Row,
  type TempProject,
  type TestEmulator,
  startTestEmulator,
  writePipeline,
  writeRows,
  writeText
} from "./support/cli.js"
import {
  advanceClock,
  duplicates,
  eventsTagged,
  holdClock,
  type JournalLine,
  readJournal,
  readJournalSoFar,
  readSink,
  retrieveBatch,
  runIdOf,
  setFaults,
  waitFor,
  writeRecoveryPipeline
} from "./support/runs.js"

/** Every test spawns the CLI more than once (tsx loads TypeScript on each start): be generous. */
const SLOW = { timeout: 240_000 }

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!().catch(() => undefined)
})

interface Setup {
  readonly emulator: TestEmulator
  readonly project: TempProject
  readonly rows: ReadonlyArray<Row>
  readonly pipeline: string
  readonly runDir: string
  readonly sink: string
  readonly sluice: (args: ReadonlyArray<string>, env?: Readonly<Record<string, string>>) => Promise<CliResult>
}

/** A project with `rows` rows and a pipeline on OpenAI (or Anthropic), and its own emulator. */
const setup = async (rows: number, emulator: EmulatorOptions = {}, family: "openai" | "anthropic" = "openai"): Promise<Setup> => {
  const em = await startTestEmulator(emulator)
  cleanups.push(() => em.close())
  const project = await makeProject("sluice-hybrid-")
  cleanups.push(() => project.cleanup())
  const pipeline =
    family === "openai"
      ? await writeRecoveryPipeline(project, "hybrid.pipeline.ts", { name: "hybrid" })
      : await writePipeline(project, "hybrid.pipeline.ts", { name: "hybrid", provider: "anthropic", model: "claude-haiku-4-5" })
  const env = { ...emulatorEnv(em.url), ANTHROPIC_BASE_URL: em.url, ANTHROPIC_API_KEY: "sk-test-fake-key" }
  return {
    emulator: em,
    project,
    rows: await writeRows(project, "data/rows.jsonl", rows),
    pipeline,
    runDir: project.path("run"),
    sink: project.path("out", "labeled.jsonl"),
    sluice: (args, extra = {}) => runCli(args, { cwd: project.dir, env: { ...env, ...extra }, timeoutMs: 200_000 })
  }
}

/** Flags of a test run: its directory, fast polls, shards of `shardSize`, auto mode. */
const flags = (t: Setup, shardSize: number, extra: ReadonlyArray<string> = []) => [
  "--run-dir",
  t.runDir,
  "--poll-interval",
  "0.05",
  "--shard-size",
  String(shardSize),
  "--mode",
  "auto",
  ...extra
]

/** The ledger with its real-time calls (see packages/emulator/README.md). */
interface FullLedger {
  readonly batches: ReadonlyArray<{ readonly id: string; readonly metadata: Record<string, string> | null; readonly custom_ids: ReadonlyArray<string> }>
  readonly deliveries: ReadonlyArray<{ readonly custom_id: string; readonly batch_id: string }>
  readonly calls: ReadonlyArray<{ readonly custom_id: string | null; readonly status: number; readonly lost: boolean }>
}

const ledgerOf = async (url: string): Promise<FullLedger> => (await (await fetch(`${url}/_emulator/ledger`)).json()) as FullLedger

/**
 * Who answered what: the custom_ids the batches delivered and those answered online (each test
 * has an emulator of its own), each checked to be answered once (no custom_id in both, none
 * twice in either).
 */
const paidOnce = async (t: Setup) => {
  const ledger = await ledgerOf(t.emulator.url)
  const runId = await runIdOf(t.runDir)
  const batch = ledger.deliveries.map((d) => d.custom_id)
  const online = ledger.calls.filter((c) => c.status === 200).map((c) => c.custom_id ?? "(no custom_id)")
  expect(duplicates(batch), "custom_ids delivered twice by batches").toEqual([])
  expect(duplicates(online), "custom_ids answered twice online").toEqual([])
  expect(batch.filter((id) => online.includes(id)), "custom_ids paid by batch and online").toEqual([])
  return { batch, online, ledger, runId }
}

const expectEveryRowOnce = async (t: Setup) => {
  const ids = (await readSink(t.sink)).map((l) => l.input.id)
  expect(duplicates(ids), "rows written to the sink more than once").toEqual([])
  expect([...ids].sort()).toEqual(t.rows.map((r) => r.id).sort())
}

interface Summary {
  readonly finished: boolean
  readonly succeeded: number
  readonly pending: number
  readonly rowsByMode: { readonly batch: number; readonly online: number }
  readonly costByMode: {
    readonly batch: { readonly usage: { readonly input: number; readonly output: number }; readonly cost: number | null }
    readonly online: { readonly usage: { readonly input: number; readonly output: number }; readonly cost: number | null }
  }
  readonly spent: number | null
  readonly deadline: { readonly at: string; readonly given: string; readonly passed: boolean } | null
  readonly onlineBudget?: { readonly limit: number; readonly projected: number; readonly heldShards: number; readonly heldRows: number }
}

const summaryOf = (r: CliResult): Summary => JSON.parse(r.stdout) as Summary

/** Costs split by mode: each priced at its own mode's prices, and the total their sum. */
const expectCostsSplit = (s: Summary) => {
  expect(s.costByMode.batch.usage.output).toBeGreaterThan(0)
  expect(s.costByMode.online.usage.output).toBeGreaterThan(0)
  expect(s.costByMode.batch.cost).toBeGreaterThan(0)
  expect(s.costByMode.online.cost).toBeGreaterThan(0)
  expect(s.spent).toBeCloseTo(s.costByMode.batch.cost! + s.costByMode.online.cost!, 12)
}

const onlineStarted = (events: ReadonlyArray<JournalLine>) => eventsTagged(events, "OnlineStarted")

/** Waits until the run has created `n` batches; returns their ids. */
const batchesCreated = async (t: Setup, n: number): Promise<Array<string>> =>
  waitFor(
    `${n} batches created`,
    async () => {
      const created = eventsTagged(await readJournalSoFar(t.runDir), "Created")
      return created.length >= n ? created.map((e) => e["batchId"] as string) : undefined
    },
    { timeoutMs: 120_000 }
  )

describe("hybrid runs (mode auto)", SLOW, () => {
  it("a batch that expires half-done: the rest is answered online before the deadline, every row once, costs split by mode", async () => {
    // 4 requests a second: the 40-request batch would take 10 s of the emulator's clock.
    const t = await setup(40, { requestsPerSecond: 4 })
    await holdClock(t.emulator.url)
    // --online-below 0: the rows go online because their batch expired, not for being few.
    const running = t.sluice(["run", t.pipeline, ...flags(t, 40, ["--online-below", "0", "--deadline", "10h", "--json"])])
    const [batchId] = await batchesCreated(t, 1)
    await advanceClock(t.emulator.url, 20 + 5000) // validated, then 5 s: 20 of 40 done
    expect((await retrieveBatch(t.emulator.url, batchId!)).request_counts.completed).toBe(20)
    await setFaults(t.emulator.url, { expireBatch: batchId! })
    const result = await running
    expect(result.code, describeResult(result)).toBe(0)

    const events = await readJournal(t.runDir)
    const online = onlineStarted(events)
    expect(online, "one shard online: the expired batch's rows").toHaveLength(1)
    expect(online[0]).toMatchObject({ hybrid: "expired" })
    expect(eventsTagged(events, "ShardPlanned").find((e) => e.shard === online[0]!.shard)).toMatchObject({ requests: 20, attempt: 2 })
    expect(eventsTagged(events, "Created"), "no second batch").toHaveLength(1)

    const { batch, online: answered } = await paidOnce(t)
    expect(batch).toHaveLength(20)
    expect(answered).toHaveLength(20)
    await expectEveryRowOnce(t)

    const summary = summaryOf(result)
    expect(summary.rowsByMode).toEqual({ batch: 20, online: 20 })
    expect(summary.deadline, "answered before the deadline").toMatchObject({ given: "10h", passed: false })
    expectCostsSplit(summary)
  })

  it("a crash after the recall is journaled and before the cancel: the resume cancels the batch and finishes online, the deadline kept", async () => {
    const t = await setup(40, { requestsPerSecond: 4 })
    await holdClock(t.emulator.url)
    const detached = await t.sluice(["run", t.pipeline, ...flags(t, 40, ["--detach"])])
    expect(detached.code, describeResult(detached)).toBe(3)
    const [batchId] = await batchesCreated(t, 1)
    await advanceClock(t.emulator.url, 20 + 2500) // 10 of 40 done

    const resumeArgs = ["resume", t.runDir, "--mode", "auto", "--poll-interval", "0.05"]
    const crashed = await t.sluice([...resumeArgs, "--deadline", "1s"], { SLUICE_FAILPOINT: "after:BatchRecalled:1" })
    expect(crashed.signal, describeResult(crashed)).toBe("SIGKILL")
    expect(eventsTagged(await readJournal(t.runDir), "BatchRecalled")).toHaveLength(1)
    expect(t.emulator.calls("POST", `/v1/batches/${batchId}/cancel`), "no cancel sent before the crash").toBe(0)

    // No --deadline now: the journaled one has passed.
    const running = t.sluice([...resumeArgs, "--json"])
    await waitFor("the cancel on resume", () => (t.emulator.calls("POST", `/v1/batches/${batchId}/cancel`) > 0 ? true : undefined), {
      timeoutMs: 120_000
    })
    await advanceClock(t.emulator.url, 1000)
    const result = await running
    expect(result.code, describeResult(result)).toBe(0)
    const events = await readJournal(t.runDir)
    expect(eventsTagged(events, "BatchRecalled"), "recalled once").toHaveLength(1)
    expect(eventsTagged(events, "DeadlineSet")).toHaveLength(1)
    expect(onlineStarted(events).map((e) => e["hybrid"])).toEqual(["deadline"])
    const { batch, online } = await paidOnce(t)
    expect(batch).toHaveLength(10)
    expect(online).toHaveLength(30)
    await expectEveryRowOnce(t)
    expect(summaryOf(result).rowsByMode).toEqual({ batch: 10, online: 30 })
  })

  it("a deadline that passes with a batch in flight: the batch is cancelled, its finished rows kept, the rest online, nothing paid twice", async () => {
    const t = await setup(40, { requestsPerSecond: 4 })
    await holdClock(t.emulator.url)
    // The batch goes out before any deadline is set; with the clock held it cannot finish.
    const detached = await t.sluice(["run", t.pipeline, ...flags(t, 40, ["--detach"])])
    expect(detached.code, describeResult(detached)).toBe(3)
    const [batchId] = await batchesCreated(t, 1)
    await advanceClock(t.emulator.url, 20 + 2500) // validated, then 2.5 s: 10 of 40 done
    expect((await retrieveBatch(t.emulator.url, batchId!)).request_counts.completed).toBe(10)

    // A deadline a second from now surely passes while the batch stands still. No --mode: the
    // run recorded `auto` when it was given, and a resume keeps it.
    const running = t.sluice(["resume", t.runDir, "--deadline", "1s", "--poll-interval", "0.05", "--json"])
    await waitFor("the cancel at the deadline", () => (t.emulator.calls("POST", `/v1/batches/${batchId}/cancel`) > 0 ? true : undefined), {
      timeoutMs: 120_000
    })
    await advanceClock(t.emulator.url, 1000) // past the emulator's cancelling time: cancelled
    const result = await running
    expect(result.code, describeResult(result)).toBe(0)

    const events = await readJournal(t.runDir)
    const deadlines = eventsTagged(events, "DeadlineSet")
    expect(deadlines).toHaveLength(1)
    expect(deadlines[0]).toMatchObject({ given: "1s" })
    const recalled = eventsTagged(events, "BatchRecalled")
    expect(recalled).toHaveLength(1)
    expect(recalled[0]).toMatchObject({ batchId })
    const shard = recalled[0]!.shard!
    // The recall is journaled before the cancel; the batch then ends cancelled.
    const tags = events.filter((e) => e.shard === shard).map((e) => e._tag)
    expect(tags.indexOf("BatchRecalled")).toBeLessThan(tags.indexOf("Terminal"))
    expect(eventsTagged(events, "Terminal").find((e) => e.shard === shard)).toMatchObject({ status: "cancelled" })
    expect(eventsTagged(events, "Collected").find((e) => e.shard === shard)).toMatchObject({ succeeded: 10, rescheduled: 30, failed: {} })
    const online = onlineStarted(events)
    expect(online).toHaveLength(1)
    expect(online[0]).toMatchObject({ hybrid: "deadline" })

    const { batch, online: answered } = await paidOnce(t)
    expect(batch, "the rows the batch finished before its cancel").toHaveLength(10)
    expect(answered, "the rest, online").toHaveLength(30)
    await expectEveryRowOnce(t)

    // The progress log says what happened and why.
    expect(result.stderr).toContain("--mode auto: as the run recorded it")
    expect(result.stderr).toContain(`${shard}: the deadline has passed; cancelling batch ${batchId} (its finished rows are kept, the rest go online)`)
    expect(result.stderr).toContain(`${online[0]!.shard} → online (the deadline had passed)`)

    const summary = summaryOf(result)
    expect(summary.rowsByMode).toEqual({ batch: 10, online: 30 })
    expect(summary.deadline).toMatchObject({ given: "1s", passed: true })
    expectCostsSplit(summary)

    // `status` shows the deadline and who answered what.
    const status = await t.sluice(["status", t.runDir])
    expect(status.code, describeResult(status)).toBe(0)
    expect(status.stdout).toContain("recorded --mode auto (resume and retry use it unless given again)")
    expect(status.stdout + status.stderr).toMatch(/deadline .*\(--deadline 1s\), passed · rows answered by batch 10, online 30/)
    expect(status.stdout).toMatch(new RegExp(`${shard} collected ${batchId} .*\\(recalled at the deadline\\)`))
    expect(status.stdout).toContain(`${online[0]!.shard} collected (online) (sent online: the deadline had passed)`)
  })

  it("the same on Anthropic: the recalled batch's `canceled` results are sent online, not failed", async () => {
    const t = await setup(40, { requestsPerSecond: 4 }, "anthropic")
    await holdClock(t.emulator.url)
    const detached = await t.sluice(["run", t.pipeline, ...flags(t, 40, ["--detach"])])
    expect(detached.code, describeResult(detached)).toBe(3)
    const [batchId] = await batchesCreated(t, 1)
    await advanceClock(t.emulator.url, 20 + 2500) // 10 of 40 done

    const running = t.sluice(["resume", t.runDir, "--mode", "auto", "--deadline", "1s", "--poll-interval", "0.05", "--json"])
    await waitFor("the cancel at the deadline", () => (t.emulator.calls("POST", `/v1/messages/batches/${batchId}/cancel`) > 0 ? true : undefined), {
      timeoutMs: 120_000
    })
    await advanceClock(t.emulator.url, 1000)
    const result = await running
    expect(result.code, describeResult(result)).toBe(0)

    const events = await readJournal(t.runDir)
    const shard = eventsTagged(events, "BatchRecalled")[0]!.shard!
    expect(eventsTagged(events, "Collected").find((e) => e.shard === shard)).toMatchObject({ succeeded: 10, rescheduled: 30, failed: {} })
    expect(onlineStarted(events).map((e) => e["hybrid"])).toEqual(["deadline"])
    const { batch, online } = await paidOnce(t)
    expect(batch).toHaveLength(10)
    expect(online).toHaveLength(30)
    await expectEveryRowOnce(t)
    expectCostsSplit(summaryOf(result))
  })

  it("--online-budget stops online sends at its cap; a resume with a higher cap completes; the deadline is not reset", async () => {
    const t = await setup(40, { requestsPerSecond: 4 })
    // Prices set by the test: a row online costs about 30 input tokens at $1/M plus 100 output
    // tokens at $10/M, about $0.001; a shard of 10 rows about $0.01.
    await writeText(
      t.project,
      "prices.json",
      JSON.stringify({
        models: {
          "gpt-4o-mini": { realtime: { input: 1, cachedInput: 0.5, output: 10 }, batch: { input: 0.5, cachedInput: 0.25, output: 5 } }
        }
      })
    )
    const money = ["--prices", t.project.path("prices.json"), "--output-tokens", "100", "--online-below", "0"]
    await holdClock(t.emulator.url)
    // Two batches of 20; each does 10 rows, then expires: two retry shards of 10 rows.
    const running = t.sluice(["run", t.pipeline, ...flags(t, 20, [...money, "--online-budget", "0.015", "--deadline", "10h", "--json"])])
    const ids = await batchesCreated(t, 2)
    await advanceClock(t.emulator.url, 20 + 2500)
    for (const id of ids) {
      expect((await retrieveBatch(t.emulator.url, id)).request_counts.completed).toBe(10)
      await setFaults(t.emulator.url, { expireBatch: id })
    }
    const first = await running
    expect(first.code, describeResult(first)).toBe(3) // unfinished
    const held = summaryOf(first)
    expect(held.onlineBudget).toMatchObject({ limit: 0.015, heldShards: 1, heldRows: 10 })
    expect(held.onlineBudget!.projected).toBeLessThanOrEqual(0.015)
    expect(held.pending).toBe(10)
    expect(onlineStarted(await readJournal(t.runDir))).toHaveLength(1)
    expect((await paidOnce(t)).online).toHaveLength(10)

    // The same cap again: what was sent online counts against it (from the journal), so the
    // held shard stays held, and the summary says so.
    const again = await t.sluice(["resume", t.runDir, "--mode", "auto", ...money, "--online-budget", "0.015", "--poll-interval", "0.05"])
    expect(again.code, describeResult(again)).toBe(3)
    expect(again.stderr).toMatch(/online budget of \$0\.015 reached: online sends projected at \$0\.01\d*; 1 shard \(10 rows\) not sent\. Resume with a higher --online-budget to continue\./)
    expect(onlineStarted(await readJournal(t.runDir))).toHaveLength(1)

    const resumed = await t.sluice(["resume", t.runDir, "--mode", "auto", ...money, "--online-budget", "1", "--deadline", "5m", "--json", "--poll-interval", "0.05"])
    expect(resumed.code, describeResult(resumed)).toBe(0)
    expect(resumed.stderr).toMatch(/the run's deadline stays \S+ \(--deadline 10h, given when it was first set\)/)
    const events = await readJournal(t.runDir)
    expect(onlineStarted(events).map((e) => e["hybrid"])).toEqual(["expired", "expired"])
    // The deadline was set once, by the first run: the resume's --deadline does not move it.
    const deadlines = eventsTagged(events, "DeadlineSet")
    expect(deadlines).toHaveLength(1)
    expect(deadlines[0]).toMatchObject({ given: "10h" })
    expect(summaryOf(resumed).deadline).toMatchObject({ given: "10h", passed: false, at: new Date(deadlines[0]!["deadline"] as number).toISOString() })

    const { batch, online } = await paidOnce(t)
    expect(batch).toHaveLength(20)
    expect(online).toHaveLength(20)
    await expectEveryRowOnce(t)
    expect(summaryOf(resumed).rowsByMode).toEqual({ batch: 20, online: 20 })
  })

  it("a small remainder goes online rather than into a new batch; `--mode batch` never sends online", async () => {
    // A quarter of first-time requests fail in passing: a few rows to retry.
    const t = await setup(40, { errorRate: 0.25 })
    const result = await t.sluice(["run", t.pipeline, ...flags(t, 40, ["--json"])])
    expect(result.code, describeResult(result)).toBe(0)
    const events = await readJournal(t.runDir)
    const retried = eventsTagged(events, "Collected")[0]!["rescheduled"] as number
    expect(retried, "rows that failed in passing").toBeGreaterThan(0)
    expect(retried).toBeLessThan(100)
    expect(eventsTagged(events, "Created"), "one batch: the remainder did not get one").toHaveLength(1)
    expect(onlineStarted(events)).toHaveLength(1)
    expect(onlineStarted(events)[0]).toMatchObject({ hybrid: "remainder" })
    const { online } = await paidOnce(t)
    expect(online).toHaveLength(retried)
    await expectEveryRowOnce(t)
    expect(summaryOf(result).rowsByMode).toEqual({ batch: 40 - retried, online: retried })

    // The same in batch mode: the remainder gets a batch of its own.
    const batchOnly = await setup(40, { errorRate: 0.25 })
    const r = await batchOnly.sluice(["run", batchOnly.pipeline, "--run-dir", batchOnly.runDir, "--poll-interval", "0.05", "--shard-size", "40", "--mode", "batch"])
    expect(r.code, describeResult(r)).toBe(0)
    const batchEvents = await readJournal(batchOnly.runDir)
    expect(eventsTagged(batchEvents, "Created")).toHaveLength(2)
    expect(onlineStarted(batchEvents)).toEqual([])
    expect((await ledgerOf(batchOnly.emulator.url)).calls).toEqual([])
    await expectEveryRowOnce(batchOnly)
  })
})

/** The run's manifest as written (its `settings`: what resume and retry keep). */
const manifestOf = async (runDir: string): Promise<{ readonly settings?: Record<string, unknown> }> =>
  JSON.parse(await readFile(join(runDir, "manifest.json"), "utf8")) as { readonly settings?: Record<string, unknown> }

describe("a hybrid run's mode is kept by resume and retry", SLOW, () => {
  /**
   * A run in auto mode killed with its batch in flight; the batch then expires half-done.
   * Returns the expired batch's id.
   */
  const killedThenExpired = async (t: Setup): Promise<string> => {
    await holdClock(t.emulator.url)
    const killed = await t.sluice(["run", t.pipeline, ...flags(t, 40, ["--online-below", "0"])], { SLUICE_FAILPOINT: "after:Created:1" })
    expect(killed.signal, describeResult(killed)).toBe("SIGKILL")
    expect(await manifestOf(t.runDir)).toMatchObject({ settings: { mode: "auto", onlineBelow: 0 } })
    const [batchId] = await batchesCreated(t, 1)
    await advanceClock(t.emulator.url, 20 + 5000) // validated, then 5 s: 20 of 40 done
    expect((await retrieveBatch(t.emulator.url, batchId!)).request_counts.completed).toBe(20)
    await setFaults(t.emulator.url, { expireBatch: batchId! })
    return batchId!
  }

  it("a resume without --mode (a cron line) sends the expired batch's rows online, as the run was started", async () => {
    const t = await setup(40, { requestsPerSecond: 4 })
    await killedThenExpired(t)

    // What cron runs: the run directory, nothing else. Detached: a new batch would be left
    // running (exit 3); online rows are answered by this process, so the run ends.
    const resumed = await t.sluice(["resume", t.runDir, "--poll-interval", "0.05", "--detach", "--json"])
    expect(resumed.code, describeResult(resumed)).toBe(0)
    expect(resumed.stderr).toContain("--mode auto, --online-below 0: as the run recorded them")
    const events = await readJournal(t.runDir)
    expect(eventsTagged(events, "Created"), "no second batch").toHaveLength(1)
    expect(onlineStarted(events).map((e) => e["hybrid"])).toEqual(["expired"])
    const { batch, online } = await paidOnce(t)
    expect(batch).toHaveLength(20)
    expect(online).toHaveLength(20)
    await expectEveryRowOnce(t)
    expect(summaryOf(resumed).rowsByMode).toEqual({ batch: 20, online: 20 })

    const status = await t.sluice(["status", t.runDir, "--no-refresh"])
    expect(status.code, describeResult(status)).toBe(0)
    expect(status.stdout).toContain("recorded --mode auto --online-below 0 (resume and retry use them unless given again)")
    const json = await t.sluice(["status", t.runDir, "--no-refresh", "--json"])
    expect(JSON.parse(json.stdout)).toMatchObject({ settings: { mode: "auto", onlineBelow: 0 } })

    // `retry` reads the same record (nothing failed here: it has nothing to send).
    const retried = await t.sluice(["retry", t.runDir, "--poll-interval", "0.05"])
    expect(retried.code, describeResult(retried)).toBe(0)
    expect(retried.stderr).toContain("--mode auto, --online-below 0: as the run recorded them")
    expect((await paidOnce(t)).online).toHaveLength(20)
  })

  it("a resume with another --mode applies it, says so, and records it for the resumes after", async () => {
    const t = await setup(40, { requestsPerSecond: 4 })
    await killedThenExpired(t)

    const resumed = await t.sluice(["resume", t.runDir, "--mode", "batch", "--poll-interval", "0.05", "--detach", "--json"])
    expect(resumed.code, describeResult(resumed)).toBe(3) // the expired rows' new batch is running
    expect(resumed.stderr).toContain(
      "--mode batch replaces the run's recorded --mode auto: applied from now on, and kept by later resumes and retries"
    )
    expect(await manifestOf(t.runDir)).toMatchObject({ settings: { mode: "batch", onlineBelow: 0 } })
    let events = await readJournal(t.runDir)
    expect(eventsTagged(events, "Created"), "the expired rows went into a new batch").toHaveLength(2)
    expect(onlineStarted(events)).toEqual([])

    // The next resume gives no --mode: batch stands, and the new batch is waited for.
    await advanceClock(t.emulator.url, 60_000)
    const finished = await t.sluice(["resume", t.runDir, "--poll-interval", "0.05", "--json"])
    expect(finished.code, describeResult(finished)).toBe(0)
    expect(finished.stderr).toContain("--mode batch, --online-below 0: as the run recorded them")
    events = await readJournal(t.runDir)
    expect(onlineStarted(events), "nothing online in batch mode").toEqual([])
    expect((await ledgerOf(t.emulator.url)).calls).toEqual([])
    const { batch } = await paidOnce(t)
    expect(batch).toHaveLength(40)
    await expectEveryRowOnce(t)
    expect(summaryOf(finished).rowsByMode).toEqual({ batch: 40, online: 0 })
  })
})

describe("--budget is kept by resume, as a cron line or `sluice webhook` runs it", SLOW, () => {
  it("a detached run with --budget, resumed without it, keeps holding shards back by the recorded budget; a higher one replaces it", async () => {
    const t = await setup(40)
    const estimate = await t.sluice(["estimate", t.pipeline, "--json", "--shard-size", "10"])
    expect(estimate.code, describeResult(estimate)).toBe(0)
    const est = JSON.parse(estimate.stdout) as { readonly shards: number; readonly cost: { readonly batch: number } }
    expect(est.shards).toBe(4)
    // Room for about half the projected cost: some shards go, the rest wait for a higher budget.
    const budget = Number((est.cost.batch * 0.6).toPrecision(3))
    await holdClock(t.emulator.url) // the batches stay in flight: the run stays detached
    const runFlags = ["--run-dir", t.runDir, "--poll-interval", "0.05", "--shard-size", "10"]
    const first = await t.sluice(["run", t.pipeline, ...runFlags, "--budget", String(budget), "--detach", "--json"])
    expect(first.code, describeResult(first)).toBe(3)
    expect(await manifestOf(t.runDir)).toMatchObject({ settings: { budget } })
    const submitted = eventsTagged(await readJournal(t.runDir), "Created").length
    expect(submitted).toBeGreaterThan(0)
    expect(submitted).toBeLessThan(4)
    const held = (JSON.parse(first.stdout) as { readonly budget: { readonly heldShards: number } }).budget.heldShards
    expect(held).toBe(4 - submitted)

    // What `sluice webhook` runs: the run directory, --detach --json, nothing else.
    const resumed = await t.sluice(["resume", t.runDir, "--detach", "--json"])
    expect(resumed.code, describeResult(resumed)).toBe(3)
    expect(resumed.stderr).toContain(`--budget ${budget}: as the run recorded it`)
    expect(JSON.parse(resumed.stdout)).toMatchObject({ budget: { limit: budget, heldShards: held } })
    expect(eventsTagged(await readJournal(t.runDir), "Created"), "no shard submitted past the budget").toHaveLength(submitted)
    expect((await ledgerOf(t.emulator.url)).batches).toHaveLength(submitted)

    const status = await t.sluice(["status", t.runDir, "--no-refresh", "--json"])
    expect(status.code, describeResult(status)).toBe(0)
    expect(JSON.parse(status.stdout)).toMatchObject({ settings: { budget } })
    const statusText = await t.sluice(["status", t.runDir, "--no-refresh"])
    expect(statusText.stdout).toContain(`recorded --budget ${budget} (resume and retry use it unless given again)`)

    // A higher budget given once is applied, said, and recorded.
    const raised = Number((est.cost.batch * 2).toPrecision(3))
    const more = await t.sluice(["resume", t.runDir, "--budget", String(raised), "--detach", "--json"])
    expect(more.code, describeResult(more)).toBe(3)
    expect(more.stderr).toContain(`--budget ${raised} replaces the run's recorded --budget ${budget}`)
    expect(await manifestOf(t.runDir)).toMatchObject({ settings: { budget: raised } })
    expect(eventsTagged(await readJournal(t.runDir), "Created")).toHaveLength(4)
    expect(JSON.parse(more.stdout)).toMatchObject({ budget: { limit: raised, heldShards: 0 } })
  })
})

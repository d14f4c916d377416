/**
 * Shared limits in a cluster (ClusterLedger.ts): a real PostgreSQL server, two `sluice worker`
 * processes and the emulator enforcing an enqueued-token limit per model as OpenAI does. Two runs
 * at once on one model with `--max-enqueued-tokens` that admits only some of their shards:
 * while the emulator's clock stands still (no batch ends) the shards that went hold the cluster's
 * ledger and the others wait in its line; proven from the emulator's record (never more enqueued
 * than the limit, no token_limit_exceeded, one batch per shard, every custom_id delivered once)
 * and the sinks (every row once); and `--max-batches` across both runs the same way. Skipped, saying why, without PostgreSQL's server binaries.
 */
import { mkdir, readFile } from "node:fs/promises"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { holdClock, releaseClock } from "@sluice/emulator/control"
import * as TempPostgres from "../scripts/lib/tempPostgres.js"
import {
  describeResult,
  emulatorEnv,
  getLedger,
  makeProject,
  readJsonl,
  runCli,
  startTestEmulator,
  type TempProject,
  type TestEmulator,
  writePipeline,
  writeRows
} from "./support/cli.js"
import { runFlags } from "./support/runs.js"
import { KEY, MODEL, enqueued, tokenLimitFailures } from "./support/tokens.js"
import { query, workers as workerPool } from "./support/workers.js"

const { skipReason } = TempPostgres
if (skipReason !== undefined) console.warn(`cluster limit tests skipped: ${skipReason}`)

let pg: TempPostgres.TempPostgres | undefined
let probe: TestEmulator | undefined
let emulator: TestEmulator
let project: TempProject
const workers = workerPool()

const env = () => ({ ...emulatorEnv(emulator.url, KEY), SLUICE_DATABASE_URL: pg!.url })

interface LedgerEntry {
  readonly key: string
  readonly run: string
  readonly shard: string
  readonly tokens: number
}
/** The cluster's enqueued-token ledger as its row holds it, this model's part. */
const ledger = async () => {
  // Created by the first step of a run.
  const [table] = await query<{ present: boolean }>(pg!.url, "SELECT to_regclass('sluice_token_ledger') IS NOT NULL AS present")
  if (table?.present !== true) return { entries: [], waiting: [], configured: [] }
  const [row] = await query<{ data: { entries: ReadonlyArray<LedgerEntry>; waiting: ReadonlyArray<LedgerEntry>; configured?: ReadonlyArray<LedgerEntry> } }>(
    pg!.url,
    "SELECT data FROM sluice_token_ledger WHERE name = 'enqueued-tokens'"
  )
  const ofModel = (es: ReadonlyArray<LedgerEntry> | undefined) => (es ?? []).filter((e) => e.key.endsWith(` ${MODEL}`))
  return { entries: ofModel(row?.data.entries), waiting: ofModel(row?.data.waiting), configured: ofModel(row?.data.configured) }
}

const runBatches = async (runId: string) => (await getLedger(emulator.url)).batches.filter((b) => b.metadata?.["sluice_run"] === runId)

describe.skipIf(skipReason !== undefined)("shared limits: two runs on one model across two workers", () => {
  let perRow = 0

  beforeAll(async () => {
    pg = await TempPostgres.start()
    project = await makeProject("sluice-cluster-limits-")
    // Tokens of one row as the emulator counts them: ten rows run on one machine, under no limit.
    probe = await startTestEmulator({ enqueuedTokenLimit: 1_000_000_000 })
    await writeRows(project, "data/probe.jsonl", 10)
    await writePipeline(project, "probe.ts", { name: "probe", model: MODEL, source: "data/probe.jsonl", sink: "out/probe.jsonl" })
    const measured = await runCli(["run", "probe.ts", ...runFlags(project.path("run-probe"), 10), "--no-cache"], {
      cwd: project.dir,
      env: emulatorEnv(probe.url, KEY)
    })
    expect(measured.code, describeResult(measured)).toBe(0)
    perRow = Math.ceil((await enqueued(probe)).maxSeen[MODEL]! / 10)
    expect(perRow).toBeGreaterThan(0)
    await probe.close()
    // Room for two shards of ten rows and a half, as the one-machine tests have it.
    emulator = await startTestEmulator({ enqueuedTokenLimit: perRow * 25 })
    await mkdir(project.path("workers"))
    // One worker first: it creates the cluster's tables.
    await workers.start({ cwd: project.path("workers"), env: env() })
    await workers.start({ cwd: project.path("workers"), env: env() })
  }, 300_000)

  afterAll(async () => {
    workers.killAll()
    await emulator?.close()
    pg?.stop()
    await project?.cleanup()
  })

  it("the enqueued tokens of both runs together stay under the limit; the shards in line go as room frees; every row once, no batch twice", async () => {
    const limit = perRow * 25
    // Each run alone has two shards' room under the limit (three shards in all): together they must take turns.
    for (const name of ["left", "right"]) {
      await writeRows(project, `data/${name}.jsonl`, 30)
      await writePipeline(project, `${name}.ts`, { name, model: MODEL, source: `data/${name}.jsonl`, sink: `out/${name}.jsonl` })
    }
    // No batch ends while the clock stands still.
    await holdClock(emulator.url)
    const start = (name: string) =>
      runCli(
        ["run", `${name}.ts`, "--cluster", pg!.url, "--shard-size", "10", "--poll-interval", "0.2", "--no-cache", "--max-enqueued-tokens", String(limit)],
        { cwd: project.dir, env: env(), timeoutMs: 300_000 }
      )
    const running = [start("left"), start("right")]

    // Every shard of both runs has asked: those that went hold the ledger (their batches created), the others are in line.
    let held = await ledger()
    await workers.until("all six shards in the ledger, those holding it with their batches created", async () => {
      held = await ledger()
      const created = (await getLedger(emulator.url)).batches.filter((b) => b.status !== "failed").length
      return held.entries.length + held.waiting.length === 6 && held.entries.length > 0 && created === held.entries.length
    }, 240_000)
    // The limit admitted some shards, not all, and the two runs' together stay under it.
    expect(held.entries.length).toBeLessThan(6)
    expect(held.entries.reduce((a, e) => a + e.tokens, 0)).toBeLessThanOrEqual(limit)
    expect(new Set([...held.entries, ...held.waiting].map((e) => e.run)).size).toBe(2)
    expect((await enqueued(emulator)).maxSeen[MODEL]!).toBeLessThanOrEqual(limit)

    await releaseClock(emulator.url)
    const [left, right] = await Promise.all(running)
    for (const r of [left!, right!]) {
      expect(r.code, describeResult(r)).toBe(0)
      expect(r.stderr).toContain("done: 30 rows, 30 succeeded, 0 failed, 0 pending, 3 batches")
    }
    // The provider never had more enqueued than the limit, and never refused a batch for it.
    expect(tokenLimitFailures(emulator), emulator.log.join("\n")).toBe(0)
    expect((await enqueued(emulator)).maxSeen[MODEL]!).toBeLessThanOrEqual(limit)
    for (const name of ["left", "right"]) {
      const runId = JSON.parse(await readFile(project.path(`.sluice/runs/${name}/manifest.json`), "utf8")).runId as string
      // One batch per shard, none created twice; every custom_id delivered once.
      const batches = await runBatches(runId)
      expect(batches).toHaveLength(3)
      expect(new Set(batches.map((b) => b.metadata?.["sluice_shard"])).size).toBe(3)
      const ids = new Set(batches.map((b) => b.id))
      const delivered = (await getLedger(emulator.url)).deliveries.filter((d) => ids.has(d.batch_id)).map((d) => d.custom_id)
      expect(delivered).toHaveLength(30)
      expect(new Set(delivered).size).toBe(30)
      // Every row once in the sink.
      const sink = await readJsonl<{ key: string }>(project.path(`out/${name}.jsonl`))
      expect(sink).toHaveLength(30)
      expect(new Set(sink.map((r) => r.key)).size).toBe(30)
    }
    // Each shard gave its tokens back once its batch ended: nothing held, nobody in line; the
    // runs' limits, given while they ran, no longer apply to others.
    expect(await ledger()).toEqual({ entries: [], waiting: [], configured: [] })
    // Which worker drives which shard is the cluster's placement (six shards may all land on one):
    // that two machines' updates of the ledger serialise is ClusterLedger.test.ts's (two pools).
    expect(workers.all.some((w) => w.log.includes(": shard "))).toBe(true)
  }, 400_000)

  it("--max-batches 1: one batch of the model in flight across both runs while none ends; then every row once", async () => {
    for (const name of ["one", "two"]) {
      await writeRows(project, `data/${name}.jsonl`, 20)
      await writePipeline(project, `${name}.ts`, { name, model: MODEL, source: `data/${name}.jsonl`, sink: `out/${name}.jsonl` })
    }
    const before = (await getLedger(emulator.url)).batches.length
    await holdClock(emulator.url)
    const start = (name: string) =>
      runCli(["run", `${name}.ts`, "--cluster", pg!.url, "--shard-size", "10", "--poll-interval", "0.2", "--no-cache", "--max-batches", "1"], {
        cwd: project.dir,
        env: env(),
        timeoutMs: 300_000
      })
    const running = [start("one"), start("two")]
    let held = await ledger()
    await workers.until("the four shards in the ledger, the one holding it with its batch created", async () => {
      held = await ledger()
      const created = (await getLedger(emulator.url)).batches.length - before
      return held.entries.length + held.waiting.length === 4 && held.entries.length > 0 && created === held.entries.length
    }, 240_000)
    expect(held.entries).toHaveLength(1)
    await releaseClock(emulator.url)
    for (const r of await Promise.all(running)) {
      expect(r.code, describeResult(r)).toBe(0)
      expect(r.stderr).toContain("done: 20 rows, 20 succeeded, 0 failed, 0 pending, 2 batches")
    }
    for (const name of ["one", "two"]) {
      const runId = JSON.parse(await readFile(project.path(`.sluice/runs/${name}/manifest.json`), "utf8")).runId as string
      expect(await runBatches(runId)).toHaveLength(2)
      const sink = await readJsonl<{ key: string }>(project.path(`out/${name}.jsonl`))
      expect(new Set(sink.map((r) => r.key)).size).toBe(20)
      expect(sink).toHaveLength(20)
    }
    expect(await ledger()).toEqual({ entries: [], waiting: [], configured: [] })
  }, 400_000)
})

/**
 * The commands around a distributed run (Cluster.ts) that read or continue it from its
 * directory while its journal is in the cluster's database: `resume` and `retry` with
 * `$SLUICE_DATABASE_URL` alone, `status`'s line of the cluster's ledger, `ui` and `gc`. A real
 * PostgreSQL server (scripts/lib/tempPostgres.ts), two `sluice worker` child processes on
 * loopback, the emulator, and the CLI as child processes. Skipped, saying why, without
 * PostgreSQL's server binaries.
 */
import { mkdir, readFile } from "node:fs/promises"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { holdClock, releaseClock } from "@sluice/emulator/control"
import * as TempPostgres from "../scripts/lib/tempPostgres.js"
import {
  type CliResult,
  describeResult,
  emulatorEnv,
  getLedger,
  makeProject,
  readJsonl,
  runCli,
  spawnCli,
  startTestEmulator,
  type TempProject,
  type TestEmulator,
  writePipeline,
  writeRows
} from "./support/cli.js"
import * as Workers from "./support/workers.js"

const { skipReason } = TempPostgres
if (skipReason !== undefined) console.warn(`cluster command tests skipped: ${skipReason}`)

let pg: TempPostgres.TempPostgres | undefined
let emulator: TestEmulator
let project: TempProject
const pool = Workers.workers()
const until = pool.until

/** The emulator's settings and the cluster's database in the environment, as a user of the cluster has them. */
const env = () => ({ ...emulatorEnv(emulator.url), SLUICE_DATABASE_URL: pg!.url })
/** The same without the database. */
const noDatabase = () => ({ ...emulatorEnv(emulator.url), SLUICE_DATABASE_URL: undefined })

const query = <A extends object>(text: string) => Workers.query<A>(pg!.url, text)

const flags = ["--shard-size", "250", "--poll-interval", "0.2", "--no-cache"]

/** `run --cluster --detach`: its run id. */
const startDetached = async (file: string, extra: ReadonlyArray<string> = []): Promise<string> => {
  const started = await runCli(["run", file, "--cluster", pg!.url, ...flags, ...extra, "--detach", "--json"], { cwd: project.dir, env: env() })
  expect(started.code, describeResult(started)).toBe(0)
  return (JSON.parse(started.stdout) as { runId: string }).runId
}

/** A CLI child followed as it goes: what it wrote so far, and its end. */
const follow = (args: ReadonlyArray<string>, given: Record<string, string | undefined>) => {
  const child = spawnCli(args, { cwd: project.dir, env: given })
  const r = { code: null as number | null, signal: null as NodeJS.Signals | null, stdout: "", stderr: "" }
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (r.stdout += d))
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (r.stderr += d))
  const exited = new Promise<CliResult>((resolve) => child.on("close", (code, signal) => resolve(Object.assign(r, { code, signal }))))
  return { r, exited, child }
}

const runBatches = async (runId: string) => (await getLedger(emulator.url)).batches.filter((b) => b.metadata?.["sluice_run"] === runId)

/** Every row once in the sink; one batch per shard, every custom_id delivered once by the emulator's ledger. */
const checkRun = async (runId: string, rows: ReadonlyArray<{ id: string }>, shards: number, sink: string) => {
  const written = await readJsonl<{ key: string }>(project.path(sink))
  expect(written).toHaveLength(rows.length)
  expect(new Set(written.map((r) => r.key))).toEqual(new Set(rows.map((r) => r.id)))
  const batches = await runBatches(runId)
  expect(batches).toHaveLength(shards)
  expect(new Set(batches.map((b) => b.metadata?.["sluice_shard"])).size).toBe(shards)
  const ids = new Set(batches.map((b) => b.id))
  const delivered = (await getLedger(emulator.url)).deliveries.filter((d) => ids.has(d.batch_id)).map((d) => d.custom_id)
  expect(delivered).toHaveLength(rows.length)
  expect(new Set(delivered).size).toBe(rows.length)
}

describe.skipIf(skipReason !== undefined)("commands on a distributed run whose journal is in the database", () => {
  beforeAll(async () => {
    pg = await TempPostgres.start()
    emulator = await startTestEmulator()
    project = await makeProject("sluice-cluster-commands-")
    await mkdir(project.path("workers"))
    // One worker first: it creates the cluster's tables.
    await pool.start({ cwd: project.path("workers"), env: env() })
    await pool.start({ cwd: project.path("workers"), env: env() })
  }, 300_000)

  afterAll(async () => {
    pool.killAll()
    await releaseClock(emulator.url).catch(() => undefined)
    await emulator?.close()
    pg?.stop()
    await project?.cleanup()
  })

  it("resume and retry without --cluster continue such a run through the cluster of $SLUICE_DATABASE_URL; without it they exit 2 saying what to give", async () => {
    const rows = await writeRows(project, "data/resumed.jsonl", 500)
    await writePipeline(project, "resumed.ts", { name: "resumed", source: "data/resumed.jsonl", sink: "out/resumed.jsonl" })
    const runDir = ".sluice/runs/resumed"
    await holdClock(emulator.url)
    const runId = await startDetached("resumed.ts")
    await until("the 2 batches of the run", async () => (await runBatches(runId)).length === 2)

    // Neither --cluster nor the variable: refused before anything is loaded or locked, saying what to give.
    for (const command of ["resume", "retry"]) {
      const blind = await runCli([command, runDir, "--poll-interval", "0.2"], { cwd: project.dir, env: noDatabase() })
      expect(blind.code, describeResult(blind)).toBe(2)
      expect(blind.stderr).toContain(`run ${runId} (${project.path(runDir)}) keeps its journal in its cluster's PostgreSQL database`)
      expect(blind.stderr).toContain("give --cluster postgres://… or set SLUICE_DATABASE_URL (resume and retry then continue the run through the cluster)")
    }

    // With the variable: `resume` follows the run's workflow (the attempt in progress) until it ends.
    const resumed = follow(["resume", runDir, "--poll-interval", "0.2", "--no-cache"], env())
    await until("resume to say it goes through the cluster", () => {
      if (resumed.r.code !== null) throw new Error(`resume ended first: ${describeResult(resumed.r)}`)
      return resumed.r.stderr.includes(`run ${runId} keeps its journal in its cluster's database: continued through the cluster of $SLUICE_DATABASE_URL, as with --cluster`)
    })
    await releaseClock(emulator.url)
    const r = await resumed.exited
    expect(r.code, describeResult(r)).toBe(0)
    expect(r.stderr).toContain("done: 500 rows, 500 succeeded, 0 failed, 0 pending, 2 batches")
    // Nothing ran on this machine: the workers did the steps (no attempt started, the one in progress followed).
    expect(r.stderr).not.toContain("goes on as attempt")
    expect(pool.all.some((w) => w.log.includes(`run ${runId}: shard `))).toBe(true)
    await checkRun(runId, rows, 2, "out/resumed.jsonl")

    // `retry` the same: an attempt of its own on the cluster (no row failed: it plans nothing new, and finishes).
    const retried = await runCli(["retry", runDir, "--poll-interval", "0.2", "--no-cache", "--json"], { cwd: project.dir, env: env(), timeoutMs: 240_000 })
    expect(retried.code, describeResult(retried)).toBe(0)
    expect(retried.stderr).toContain(`continued through the cluster of $SLUICE_DATABASE_URL, as with --cluster`)
    expect(retried.stderr).toContain(`run ${runId}: retried as attempt 1`)
    expect(JSON.parse(retried.stdout)).toMatchObject({ runId, finished: true, succeeded: 500 })
    const [attempts] = await query<{ attempt: number }>(`SELECT attempt FROM sluice_run_attempts WHERE run_id = '${runId}'`)
    expect(Number(attempts?.attempt)).toBe(1)
    // Still one batch per shard: the retry created none.
    await checkRun(runId, rows, 2, "out/resumed.jsonl")
    // The URL never printed.
    for (const out of [r.stderr, retried.stderr, retried.stdout]) expect(out).not.toContain(pg!.url)
  }, 400_000)
})

/**
 * The commands around a distributed run (Cluster.ts) that read or continue it from its
 * directory while its journal is in the cluster's database: `resume` and `retry` with
 * `$SLUICE_DATABASE_URL` alone, `status`'s line of the cluster's ledger, `ui` and `gc`. A real
 * PostgreSQL server (scripts/lib/tempPostgres.ts), two `sluice worker` child processes on
 * loopback, the emulator, and the CLI as child processes. Skipped, saying why, without
 * PostgreSQL's server binaries.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises"
import { get as httpGet } from "node:http"
import { Effect, Redacted } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { holdClock, releaseClock } from "@sluice/emulator/control"
import * as WatchedFileSystem from "../packages/runner/src/internal/WatchedFileSystem.js"
import * as RunFiles from "../packages/runner/src/RunFiles.js"
import * as RunFilesPg from "../packages/runner/src/RunFilesPg.js"
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
import { startUiServer } from "./support/ui.js"
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

interface LedgerEntry {
  readonly key: string
  readonly run: string
  readonly shard: string
  readonly tokens: number
}
/** The cluster's enqueued-token ledger as its row holds it. */
const ledgerRow = async () => {
  const [table] = await query<{ present: boolean }>("SELECT to_regclass('sluice_token_ledger') IS NOT NULL AS present")
  if (table?.present !== true) return { entries: [], waiting: [] }
  const [row] = await query<{ data: { entries: ReadonlyArray<LedgerEntry>; waiting?: ReadonlyArray<LedgerEntry> } }>(
    "SELECT data FROM sluice_token_ledger WHERE name = 'enqueued-tokens'"
  )
  return { entries: row?.data.entries ?? [], waiting: row?.data.waiting ?? [] }
}

/** A GET on 127.0.0.1: its status and body. */
const get = (port: number, path: string): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    httpGet({ host: "127.0.0.1", port, path }, (res) => {
      let body = ""
      res.setEncoding("utf8").on("data", (d: string) => (body += d))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }))
    }).on("error", reject)
  })

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

  it("status of a cluster run shows the cluster's ledger for its model: what every run holds, what it holds, who waits, the limits (text and --json)", async () => {
    await writeRows(project, "data/first.jsonl", 250)
    await writeRows(project, "data/second.jsonl", 500)
    await writePipeline(project, "first.ts", { name: "first", source: "data/first.jsonl", sink: "out/first.jsonl" })
    await writePipeline(project, "second.ts", { name: "second", source: "data/second.jsonl", sink: "out/second.jsonl" })
    await holdClock(emulator.url)
    // Two batches of the model at most in the cluster: the first run's one shard, then one of the second's two; the other waits in line.
    const first = await startDetached("first.ts", ["--max-batches", "2"])
    await until("the first run's batch", async () => (await runBatches(first)).length === 1)
    const second = await startDetached("second.ts", ["--max-batches", "2"])
    let row = await ledgerRow()
    await until("the second run's shards: one holding the ledger with its batch, one in line", async () => {
      row = await ledgerRow()
      return row.entries.length === 2 && row.waiting.length === 1 && (await runBatches(second)).length === 1
    })
    const ofSecond = row.entries.filter((e) => e.run === second)
    expect(ofSecond).toHaveLength(1)
    const total = row.entries.reduce((a, e) => a + e.tokens, 0)
    expect(total).toBeGreaterThan(ofSecond[0]!.tokens)

    const status = await runCli(["status", ".sluice/runs/second", "--no-refresh", "--json"], { cwd: project.dir, env: env() })
    expect(status.code, describeResult(status)).toBe(0)
    const s = JSON.parse(status.stdout) as { runId: string; clusterLedger: ReadonlyArray<Record<string, unknown>> | null }
    expect(s.runId).toBe(second)
    expect(s.clusterLedger).toEqual([
      {
        key: row.entries[0]!.key,
        model: row.entries[0]!.key.split(" ").slice(2).join(" "),
        cluster: { tokens: total, batches: 2, waiting: 1 },
        run: { tokens: ofSecond[0]!.tokens, batches: 1, waiting: 1 },
        limits: { tokens: null, batches: 2, runTokens: null, runBatches: 2, learned: null }
      }
    ])
    // The text: the same line, for people; with --cluster instead of the variable too.
    const text = await runCli(["status", ".sluice/runs/second", "--no-refresh", "--cluster", pg!.url], { cwd: project.dir, env: noDatabase() })
    expect(text.code, describeResult(text)).toBe(0)
    const n = (x: number) => x.toLocaleString("en-US")
    expect(text.stdout).toContain(
      `cluster ledger ${s.clusterLedger![0]!["model"]} (openai ${emulator.url}/v1): enqueued cluster-wide ${n(total)} tokens in 2 batches, ` +
        `this run ${n(ofSecond[0]!.tokens)} tokens in 1 batch; 1 shard waiting in line (this run's 1); limit 2 batches (this run's)`
    )
    expect(text.stdout).not.toContain(pg!.url)

    // Once both runs end, nothing is held: the line says so (the run's limit gone with it).
    await releaseClock(emulator.url)
    for (const [runDir, n] of [[".sluice/runs/first", 250], [".sluice/runs/second", 500]] as const) {
      await until(`${runDir} to finish`, async () => {
        const st = await runCli(["status", runDir, "--no-refresh", "--json"], { cwd: project.dir, env: env() })
        return st.code === 0 && (JSON.parse(st.stdout) as { finished: boolean; succeeded: number }).finished && JSON.parse(st.stdout).succeeded === n
      }, 240_000)
    }
    const after = await runCli(["status", ".sluice/runs/second", "--no-refresh", "--json"], { cwd: project.dir, env: env() })
    expect((JSON.parse(after.stdout) as typeof s).clusterLedger).toEqual([
      expect.objectContaining({ cluster: { tokens: 0, batches: 0, waiting: 0 }, run: { tokens: 0, batches: 0, waiting: 0 }, limits: { tokens: null, batches: null, runTokens: null, runBatches: null, learned: null } })
    ])
  }, 400_000)

  it("gc --cluster of cluster runs: reads their journals in the database (a run in flight keeps its files); the rows of an old generation listed, then deleted with --yes, nothing else", async () => {
    const rows = await writeRows(project, "data/kept.jsonl", 500)
    await writePipeline(project, "kept.ts", { name: "kept", source: "data/kept.jsonl", sink: "out/kept.jsonl" })
    const runDir = ".sluice/runs/kept"
    const gc = async (args: ReadonlyArray<string>) => {
      const r = await runCli(["gc", runDir, ...args, "--cluster", pg!.url, "--json"], { cwd: project.dir, env: noDatabase() })
      expect(r.code, describeResult(r)).toBe(0)
      return JSON.parse(r.stdout) as {
        runs: ReadonlyArray<{ runId: string; finished: boolean }>
        inProgress: number
        needed: { files: number; batches: number }
        unneeded: { input: { count: number } }
        database?: { oldGenerations: ReadonlyArray<{ runId: string; current: string; journalRows: number; attempts: boolean }>; deleted: { journalRows: number; attempts: number } }
      }
    }

    // In flight (the emulator's clock held): gc knows its shards from the database's journal, and keeps what they need.
    await holdClock(emulator.url)
    const runId = await startDetached("kept.ts")
    await until("the 2 batches of the run", async () => (await runBatches(runId)).length === 2)
    const inFlight = await gc([])
    expect(inFlight.runs).toContainEqual({ runDir: project.path(runDir), runId, finished: false })
    expect(inFlight.inProgress).toBeGreaterThanOrEqual(2)
    expect(inFlight.needed.files).toBeGreaterThanOrEqual(2)
    expect(inFlight.database).toEqual({ oldGenerations: [], deleted: { journalRows: 0, attempts: 0, files: 0 } })
    // Without the database gc does not guess: exit 2, saying what to give.
    const blind = await runCli(["gc", runDir], { cwd: project.dir, env: noDatabase() })
    expect(blind.code, describeResult(blind)).toBe(2)
    expect(blind.stderr).toContain("keeps its journal in its cluster's PostgreSQL database")
    await releaseClock(emulator.url)
    const resumed = await runCli(["resume", runDir, "--poll-interval", "0.2", "--no-cache"], { cwd: project.dir, env: env(), timeoutMs: 240_000 })
    expect(resumed.code, describeResult(resumed)).toBe(0)
    await checkRun(runId, rows, 2, "out/kept.jsonl")
    // A retry attempt: the run's row of attempts.
    const retried = await runCli(["retry", runDir, "--poll-interval", "0.2", "--no-cache"], { cwd: project.dir, env: env(), timeoutMs: 240_000 })
    expect(retried.code, describeResult(retried)).toBe(0)

    // The run's next generation, as Rebase.ts leaves it in the run directory: a manifest with a run
    // id of its own (`<id>-g2`, carried from `<id>`), whose journal and files are under that id (here
    // a copy of the first generation's journal, and the directory pushed as a step's copy would be:
    // `--allow-changed` is refused with --cluster, so the test writes them).
    const manifestFile = project.path(runDir, "manifest.json")
    const manifest = JSON.parse(await readFile(manifestFile, "utf8")) as Record<string, unknown>
    const next = `${runId}-g2`
    await writeFile(manifestFile, JSON.stringify({ ...manifest, runId: next, generation: 2, carriedFrom: runId }, null, 2) + "\n")
    await query(`INSERT INTO sluice_journal (run_id, seq, t, event) SELECT '${next}', seq, t, event FROM sluice_journal WHERE run_id = '${runId}'`)
    await Effect.runPromise(
      Effect.gen(function* () {
        const copy = yield* RunFiles.make(yield* RunFilesPg.Store, next, project.path(runDir), WatchedFileSystem.recorder())
        yield* copy.flush
      }).pipe(Effect.provide(RunFilesPg.layer(Redacted.make(pg!.url))))
    )
    const countOf = async (id: string) => Number((await query<{ n: string }>(`SELECT count(*) AS n FROM sluice_journal WHERE run_id = '${id}'`))[0]!.n)
    const filesOf = async (id: string) => Number((await query<{ n: string }>(`SELECT count(*) AS n FROM sluice_run_files WHERE run_id = '${id}'`))[0]!.n)
    const oldRows = await countOf(runId)
    expect(oldRows).toBeGreaterThan(10)
    const oldFiles = await filesOf(runId)
    expect(oldFiles).toBeGreaterThan(3)
    const nextFiles = await filesOf(next)
    expect(nextFiles).toBeGreaterThan(3)
    // Other runs' rows (of runs gc does not read — another machine's directory — and of the other
    // tests' runs under the same runs directory): never touched.
    await query(`INSERT INTO sluice_journal (run_id, seq, t, event) SELECT 'elsewhere-0001', seq, t, event FROM sluice_journal WHERE run_id = '${runId}'`)
    await query(`INSERT INTO sluice_run_attempts (run_id, attempt) VALUES ('elsewhere-0001', 3)`)
    const others = await query<{ run_id: string; n: string }>(`SELECT run_id, count(*) AS n FROM sluice_journal WHERE run_id NOT IN ('${runId}', '${next}') GROUP BY run_id ORDER BY run_id`)
    expect(others.map((o) => o.run_id)).toContain("elsewhere-0001")
    const attemptsOthers = await query<{ run_id: string }>(`SELECT run_id FROM sluice_run_attempts WHERE run_id <> '${runId}' ORDER BY run_id`)

    // A dry run lists the old generation's rows and deletes nothing.
    const listed = await gc([])
    expect(listed.database).toEqual({
      oldGenerations: [{ runDir: project.path(runDir), current: next, runId, journalRows: oldRows, attempts: true, files: oldFiles }],
      deleted: { journalRows: 0, attempts: 0, files: 0 }
    })
    expect(await countOf(runId)).toBe(oldRows)
    expect(await filesOf(runId)).toBe(oldFiles)
    const text = await runCli(["gc", runDir, "--cluster", pg!.url], { cwd: project.dir, env: noDatabase() })
    expect(text.code, describeResult(text)).toBe(0)
    expect(text.stdout).toContain(
      `cluster database: ${oldRows.toLocaleString("en-US")} journal rows, 1 attempts row and ${oldFiles.toLocaleString("en-US")} files of 1 old generation no run uses any more`
    )
    expect(text.stdout).toContain(`run ${runId} (before ${next}, ${project.path(runDir)})`)
    expect(text.stdout).not.toContain(pg!.url)

    // --yes deletes them: the old id's rows and attempts row; the current generation and other runs keep theirs.
    const deleted = await gc(["--yes"])
    expect(deleted.database?.deleted).toEqual({ journalRows: oldRows, attempts: 1, files: oldFiles })
    expect(await countOf(runId)).toBe(0)
    expect(await filesOf(runId)).toBe(0)
    expect(Number((await query<{ n: string }>(`SELECT count(*) AS n FROM sluice_run_file_chunks WHERE run_id = '${runId}'`))[0]!.n)).toBe(0)
    expect(await filesOf(next)).toBe(nextFiles)
    expect(await query(`SELECT run_id FROM sluice_run_attempts WHERE run_id = '${runId}'`)).toEqual([])
    expect(await countOf(next)).toBe(oldRows)
    expect(await query(`SELECT run_id, count(*) AS n FROM sluice_journal WHERE run_id NOT IN ('${runId}', '${next}') GROUP BY run_id ORDER BY run_id`)).toEqual(others)
    expect(await query(`SELECT run_id FROM sluice_run_attempts WHERE run_id <> '${runId}' ORDER BY run_id`)).toEqual(attemptsOthers)
    // The run reads as before from its current generation's rows.
    const status = await runCli(["status", runDir, "--no-refresh", "--json"], { cwd: project.dir, env: env() })
    expect(status.code, describeResult(status)).toBe(0)
    expect(JSON.parse(status.stdout)).toMatchObject({ runId: next, finished: true, succeeded: 500 })
    // Nothing left to delete.
    expect((await gc(["--yes"])).database).toEqual({ oldGenerations: [], deleted: { journalRows: 0, attempts: 0, files: 0 } })
  }, 400_000)

  it("ui --cluster serves a run in flight from the database's journal, its view following the workers' events to the end; without the database it exits 2", async () => {
    const rows = await writeRows(project, "data/shown.jsonl", 500)
    await writePipeline(project, "shown.ts", { name: "shown", source: "data/shown.jsonl", sink: "out/shown.jsonl" })
    const runDir = ".sluice/runs/shown"
    await holdClock(emulator.url)
    const runId = await startDetached("shown.ts")
    await until("the 2 batches of the run", async () => (await runBatches(runId)).length === 2)

    await expect(startUiServer(runDir, project.dir, [], noDatabase())).rejects.toThrow(/exited \(2\).*keeps its journal in its cluster's PostgreSQL database/s)

    const ui = await startUiServer(runDir, project.dir, ["--cluster", pg!.url], noDatabase())
    try {
      interface View { runId: string; totals: { rows: number; succeeded: number; pending: number; batches: number }; shards: ReadonlyArray<unknown> }
      const view = async () => {
        const reply = await get(ui.port, `/api/view?token=${ui.token}`)
        expect(reply.status).toBe(200)
        return JSON.parse(reply.body) as View
      }
      // The batches in flight, as the workers journaled them in the database.
      const before = await view()
      expect(before).toMatchObject({ runId, totals: { rows: 500, succeeded: 0, pending: 500, batches: 2 } })
      expect(before.shards).toHaveLength(2)
      const page = await get(ui.port, `/?token=${ui.token}`)
      expect(page.status).toBe(200)
      expect(page.body).toContain("<html")
      // The workers finish the run: the view follows their events (read from the database at each of its polls).
      await releaseClock(emulator.url)
      await until("the view to show the run finished", async () => (await view()).totals.succeeded === 500, 240_000)
      expect((await view()).totals).toMatchObject({ rows: 500, succeeded: 500, pending: 0, batches: 2 })
      // Every row, paged from the run's files and journal.
      const all = JSON.parse((await get(ui.port, `/api/rows?token=${ui.token}&status=succeeded&limit=1000`)).body) as { total: number; rows: ReadonlyArray<{ key: string }> }
      expect(all.total).toBe(500)
      expect(new Set(all.rows.map((r) => r.key))).toEqual(new Set(rows.map((r) => r.id)))
    } finally {
      ui.child.kill("SIGKILL")
    }
    await checkRun(runId, rows, 2, "out/shown.jsonl")
  }, 400_000)
})

/**
 * Workers that share nothing but the database (RunFiles.ts): each `sluice worker` keeps its
 * copies of runs' files under a `--state-dir` of its own, and the directory `sluice run
 * --cluster` was given is not at its path while they work — only the pipeline's source and sink
 * are on a path they all see. A worker SIGKILLed in the middle of a collection (a failpoint: a
 * real SIGKILL at an exact point) leaves the run to workers whose copies start empty: they
 * finish it from the database's copy. Proven by the sink (every row once) and the emulator's
 * ledger (one batch per shard, every custom_id delivered once). A run started by the previous
 * version (no `files` in its workflow's payload) keeps its shared run directory. Skipped, saying
 * why, without PostgreSQL's server binaries.
 */
import { createHash } from "node:crypto"
import { existsSync } from "node:fs"
import { mkdir, mkdtemp, readdir, readFile, rename } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Effect, Redacted } from "effect"
import * as TempPostgres from "../scripts/lib/tempPostgres.js"
import * as Cluster from "../packages/runner/src/Cluster.js"
import * as Workers from "./support/workers.js"
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

const { skipReason } = TempPostgres
if (skipReason !== undefined) console.warn(`distributed run tests (files in the database) skipped: ${skipReason}`)

let pg: TempPostgres.TempPostgres | undefined
let emulator: TestEmulator
let project: TempProject
const pool = Workers.workers()
const until = pool.until

const env = () => ({ ...emulatorEnv(emulator.url), SLUICE_DATABASE_URL: pg!.url })

/** The workers' state directories. */
const stateDirsUsed: Array<string> = []

/** A worker with a directory of copies of its own, in a directory of its own. */
const startWorker = async (extraEnv: Record<string, string> = {}) => {
  const home = await mkdtemp(join(tmpdir(), "sluice-apart-worker-"))
  const stateDir = join(home, "state")
  const worker = await pool.start({ cwd: home, env: { ...env(), ...extraEnv }, lockExpiration: 6, stateDir })
  stateDirsUsed.push(stateDir)
  return { worker, stateDir }
}

/** How many processes hold the cluster's shard locks (one bigint each). */
const shardHolders = async () => {
  const [row] = await Workers.query<{ holders: string; locks: string }>(
    pg!.url,
    "SELECT count(DISTINCT pid) AS holders, count(*) AS locks FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 AND granted"
  )
  return { holders: Number(row!.holders), locks: Number(row!.locks) }
}

const events = async (runId: string, tag: string) =>
  (await Workers.query<{ event: string }>(pg!.url, `SELECT event FROM sluice_journal WHERE run_id = '${runId}' ORDER BY seq`))
    .map((r) => JSON.parse(r.event) as { _tag: string; shard?: string })
    .filter((e) => e._tag === tag)

describe.skipIf(skipReason !== undefined)("distributed runs: workers sharing nothing but the database", () => {
  beforeAll(async () => {
    pg = await TempPostgres.start()
    emulator = await startTestEmulator()
    project = await makeProject("sluice-apart-")
    await writePipeline(project, "pipeline.ts", { name: "apart", source: "data/a.jsonl", sink: "out/a.jsonl" })
  }, 300_000)

  afterAll(async () => {
    pool.killAll()
    await emulator?.close()
    pg?.stop()
    await project?.cleanup()
  })

  it("3,000 rows in 12 shards: a worker killed mid-collection, two others with empty copies finish from the database; every row once, one batch per shard", async () => {
    const rows = await writeRows(project, "data/a.jsonl", 3000)
    // 1. Alone in the cluster, it plans, submits and polls, and dies (SIGKILL) in its first collection, before the commit.
    const first = await startWorker({ SLUICE_FAILPOINT: "collect-before-commit:1" })
    await until("the first worker to hold the cluster's shards", async () => {
      const now = await shardHolders()
      return now.holders === 1 && now.locks >= 300
    })
    const started = await runCli(
      ["run", "pipeline.ts", "--cluster", pg!.url, "--shard-size", "250", "--poll-interval", "0.2", "--no-cache", "--detach", "--json"],
      { cwd: project.dir, env: env() }
    )
    expect(started.code, describeResult(started)).toBe(0)
    const { runId } = JSON.parse(started.stdout) as { runId: string }
    // The submitter's copy (filled once the first step wrote the manifest) moves away while the workers work.
    const runDir = project.path(".sluice/runs/apart")
    const manifest = JSON.parse(await readFile(join(runDir, "manifest.json"), "utf8")) as { runId: string; files?: string; journal?: string }
    expect(manifest).toMatchObject({ runId, files: "postgres", journal: "postgres" })
    const away = project.path("elsewhere")
    await rename(runDir, away)

    await until("the first worker to die at its failpoint", () => first.worker.exited, 240_000)
    expect(await events(runId, "Collected")).toHaveLength(0)
    const created = await events(runId, "Created")
    expect(created.length).toBeGreaterThan(0)
    // Its copy: the request files it uploaded, which the others never wrote.
    const firstCopy = join(first.stateDir, runId)
    const uploaded = created.map((e) => `shards/${e.shard}.jsonl`)
    for (const file of uploaded) expect(existsSync(join(firstCopy, file)), file).toBe(true)

    // 2. Two workers whose copies start empty finish the run.
    const second = await startWorker()
    const third = await startWorker()
    const sink = project.path("out/a.jsonl")
    await until(
      `${rows.length} rows in the sink`,
      async () => (await readJsonl(sink).catch(() => [])).length >= rows.length,
      300_000
    )
    await until("every shard collected", async () => (await events(runId, "Collected")).length === 12, 120_000)

    // Every row once in the sink; one batch per shard (the first worker's not created again); every custom_id delivered once.
    const written = await readJsonl<{ key: string }>(sink)
    expect(written).toHaveLength(rows.length)
    expect(new Set(written.map((r) => r.key))).toEqual(new Set(rows.map((r) => r.id)))
    const ledger = await getLedger(emulator.url)
    const batches = ledger.batches.filter((b) => b.metadata?.["sluice_run"] === runId)
    expect(batches).toHaveLength(12)
    expect(new Set(batches.map((b) => b.metadata?.["sluice_shard"])).size).toBe(12)
    const ids = new Set(batches.map((b) => b.id))
    const delivered = ledger.deliveries.filter((d) => ids.has(d.batch_id)).map((d) => d.custom_id)
    expect(delivered).toHaveLength(rows.length)
    expect(new Set(delivered).size).toBe(rows.length)

    // The survivors worked on their own copies, filled from the database: the request files the
    // killed worker uploaded are there byte for byte, though neither of them wrote them.
    const copies = [second, third].map((w) => join(w.stateDir, runId)).filter((dir) => existsSync(join(dir, "manifest.json")))
    expect(copies.length).toBeGreaterThan(0)
    for (const copy of copies) {
      for (const file of uploaded) {
        if (existsSync(join(copy, file))) expect(await readFile(join(copy, file))).toEqual(await readFile(join(firstCopy, file)))
      }
    }
    expect(copies.some((copy) => uploaded.every((file) => existsSync(join(copy, file))))).toBe(true)
    expect([second, third].map((w) => w.worker.log).join("")).toMatch(new RegExp(`run ${runId}: shard \\S+ step \\d+ done by worker`))
    // The killed worker's step never said it ended: the next step waited out --lock-expiration before taking the files over.
    expect([second, third].map((w) => w.worker.log).join("")).toMatch(new RegExp(`run ${runId}: its files were last written by \\S+, which did not end its step; going on in 6s`))
    // The submitter's directory was not at its path meanwhile: nothing the workers did needed it.
    expect(existsSync(runDir)).toBe(false)

    // 3. Back at its path, `status --cluster` fills it from the database: the run, finished, as the workers left it.
    await mkdir(project.path(".sluice/runs"), { recursive: true })
    await rename(away, runDir)
    const status = await runCli(["status", ".sluice/runs/apart", "--cluster", pg!.url, "--json", "--no-refresh"], { cwd: project.dir, env: emulatorEnv(emulator.url) })
    expect(status.code, describeResult(status)).toBe(0)
    expect(JSON.parse(status.stdout)).toMatchObject({ runId, finished: true, rows: 3000, succeeded: 3000, failed: {}, pending: 0 })
    const results = (await readFile(join(runDir, "results.jsonl"), "utf8")).trim().split("\n")
    expect(results).toHaveLength(rows.length)
    expect((await readdir(join(runDir, "shards"))).filter((f) => f.endsWith(".rows.jsonl"))).toHaveLength(12)
    // The database's URL never reached a file of the copies.
    for (const dir of [runDir, ...copies]) {
      for (const name of ["manifest.json", "results.jsonl"]) expect(await readFile(join(dir, name), "utf8")).not.toContain(pg!.url)
    }
  }, 600_000)

  it("a run started by the previous version (its workflow's payload without `files`): driven on its run directory on the shared path, as before", async () => {
    const rows = await writeRows(project, "data/old.jsonl", 500)
    await writePipeline(project, "old.ts", { name: "old", source: "data/old.jsonl", sink: "out/old.jsonl" })
    if (pool.all.filter((w) => !w.exited).length === 0) await startWorker()
    // What `run --cluster` of the previous version asked: the same workflow, a payload with no `files`.
    const runId = "old-0001"
    const runDir = project.path(".sluice/runs/old")
    const pipelineFile = project.path("old.ts")
    await Effect.runPromise(
      Cluster.RunWorkflow.execute(
        {
          runId,
          runDir,
          baseDir: project.dir,
          pipelineFile,
          pipelineSha256: createHash("sha256").update(await readFile(pipelineFile)).digest("hex"),
          settings: { shardSize: 250, pollSeconds: 0.2, outputFileWaitSeconds: 30, cache: false }
        },
        { discard: true }
      ).pipe(Effect.provide(Cluster.clientLayer(Redacted.make(pg!.url))))
    )
    await until("every row in the sink", async () => (await readJsonl(project.path("out/old.jsonl")).catch(() => [])).length >= rows.length, 300_000)
    await until("both shards collected", async () => (await events(runId, "Collected")).length === 2, 120_000)
    const written = await readJsonl<{ key: string }>(project.path("out/old.jsonl"))
    expect(new Set(written.map((r) => r.key))).toEqual(new Set(rows.map((r) => r.id)))
    expect(written).toHaveLength(rows.length)
    // Its files are in its run directory, written there by the workers; none in the database; no worker's copy of it.
    const manifest = JSON.parse(await readFile(join(runDir, "manifest.json"), "utf8")) as { runId: string; files?: string; journal?: string }
    expect(manifest).toMatchObject({ runId, journal: "postgres" })
    expect(manifest.files).toBeUndefined()
    expect((await readFile(join(runDir, "results.jsonl"), "utf8")).trim().split("\n")).toHaveLength(rows.length)
    expect(await Workers.query(pg!.url, `SELECT 1 FROM sluice_run_files WHERE run_id = '${runId}'`)).toHaveLength(0)
    for (const dir of stateDirsUsed) expect(existsSync(join(dir, runId))).toBe(false)
  }, 400_000)
})

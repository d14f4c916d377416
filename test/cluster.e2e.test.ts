/**
 * Distributed runs (Cluster.ts): a real PostgreSQL server (scripts/lib/tempPostgres.ts), three
 * `sluice worker` child processes on loopback and the emulator; `sluice run --cluster` starts the
 * run as a workflow. Proven by the sink (every row once) and the emulator's ledger (one batch per
 * shard, every custom_id delivered once). Skipped, saying why, without PostgreSQL's server binaries.
 */
import { cp, mkdir, mkdtemp, readdir, readFile, realpath, rm, symlink, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { PgClient } from "@effect/sql-pg"
import { Context, Duration, Effect, Exit, Layer, Redacted, Scope } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { holdClock, releaseClock } from "@sluice/emulator/control"
import * as TempPostgres from "../scripts/lib/tempPostgres.js"
import * as Workers from "./support/workers.js"
import * as ClusterRunLock from "../packages/runner/src/ClusterRunLock.js"
import {
  describeResult,
  emulatorEnv,
  getLedger,
  makeProject,
  readJsonl,
  repoRoot,
  runCli,
  spawnCli,
  startTestEmulator,
  type TempProject,
  type TestEmulator,
  writePipeline,
  writeRows
} from "./support/cli.js"

const { skipReason } = TempPostgres
if (skipReason !== undefined) console.warn(`distributed run tests skipped: ${skipReason}`)

let pg: TempPostgres.TempPostgres | undefined
let emulator: TestEmulator
let project: TempProject
let workerDir: string
const pool = Workers.workers()
const workers = pool.all
const until = pool.until

const env = () => ({ ...emulatorEnv(emulator.url), SLUICE_DATABASE_URL: pg!.url })

/** Seconds a dead worker keeps its share of the cluster (`--lock-expiration`): short, so failover tests stay short. */
const lockExpiration = 6

/**
 * A worker of this build, or (`bin`) of another copy of sluice; elsewhere than the project: a
 * step works in the directory `sluice run` was started in.
 */
const startWorker = (extraEnv: Record<string, string> = {}, bin?: string): Promise<Workers.Worker> =>
  pool.start({ cwd: workerDir, env: { ...env(), ...extraEnv }, lockExpiration, stateDir, ...(bin === undefined ? {} : { bin }) })

/**
 * One directory of copies of runs' files for all the workers of these tests (RunFiles.ts), as on
 * a path they share: a lock file planted in a run's copy is seen by each. (Workers that share
 * nothing but the database: cluster-files.e2e.test.ts.)
 */
let stateDir: string
/** A run's lock file in the workers' copy of it. */
const lockFileOf = (runId: string) => join(stateDir, runId, "run.lock")

const query = <A extends object>(text: string) => Workers.query<A>(pg!.url, text)

/** `run --cluster --detach` of a pipeline file (shards of 250, polled every 0.2 s, no cache): its run id. */
const startDetached = async (file: string, extra: ReadonlyArray<string> = []): Promise<string> => {
  const args = ["run", file, "--cluster", pg!.url, "--shard-size", "250", "--poll-interval", "0.2", "--no-cache", ...extra, "--detach", "--json"]
  const started = await runCli(args, { cwd: project.dir, env: env() })
  expect(started.code, describeResult(started)).toBe(0)
  return (JSON.parse(started.stdout) as { runId: string }).runId
}

/** The log line of a step that only the next version's copy writes (its code changed there). */
const nextVersionStep = "done by the next version's worker"

/**
 * A copy of this build as the next version of sluice would be installed: @sluice/* copied (their
 * builds and package.json, the runner's version bumped and one log line of its code changed), in a
 * node_modules of their own beside the same third-party packages (symlinks to this repository's).
 */
const nextVersion = async () => {
  const root = await mkdtemp(join(tmpdir(), "sluice-next-"))
  const names = ["core", "emulator", "providers", "runner"]
  for (const name of names) {
    const from = join(repoRoot, "packages", name)
    await cp(from, join(root, "packages", name), { recursive: true, filter: (src) => !/^\/(test|node_modules)(\/|$)/.test(src.slice(from.length)) })
  }
  const runner = join(root, "packages", "runner")
  const manifest = JSON.parse(await readFile(join(runner, "package.json"), "utf8")) as { version: string }
  await writeFile(join(runner, "package.json"), JSON.stringify({ ...manifest, version: `${manifest.version}-next` }, null, 2) + "\n")
  const cluster = await readFile(join(runner, "dist", "Cluster.js"), "utf8")
  expect(cluster).toContain("done by worker")
  await writeFile(join(runner, "dist", "Cluster.js"), cluster.replaceAll("done by worker", nextVersionStep))
  const modules = join(root, "node_modules")
  await mkdir(join(modules, "@sluice"), { recursive: true })
  for (const name of names) await symlink(join(root, "packages", name), join(modules, "@sluice", name), "junction")
  for (const entry of await readdir(join(repoRoot, "node_modules"))) {
    if (entry !== "@sluice") await symlink(await realpath(join(repoRoot, "node_modules", entry)), join(modules, entry), "junction")
  }
  return { root, bin: join(runner, "bin", "sluice.js"), modules, cleanup: () => rm(root, { recursive: true, force: true }) }
}

/** How many processes hold the cluster's shard locks (PostgreSQL advisory locks of one bigint; runs' locks have two keys), and how many locks in all. */
const shardHolders = async () => {
  const [row] = await query<{ holders: string; locks: string }>(
    "SELECT count(DISTINCT pid) AS holders, count(*) AS locks FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 AND granted"
  )
  return { holders: Number(row!.holders), locks: Number(row!.locks) }
}

/** A database session of the test's own, kept open until `close` (as a step's is for its step). */
const session = async () => {
  const scope = Effect.runSync(Scope.make())
  const conn = await Effect.runPromise(
    Effect.gen(function* () {
      const ctx = yield* Layer.buildWithScope(PgClient.layer({ url: Redacted.make(pg!.url), maxConnections: 1 }), scope)
      return yield* Scope.extend(Context.get(ctx, PgClient.PgClient).reserve, scope)
    })
  )
  return {
    value: async (text: string) => (await Effect.runPromise(conn.executeValues(text, [])))[0]?.[0],
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

/** Resolves once `holders` processes hold every one of the cluster's 300 shards. */
const shardsHeldBy = (holders: number) =>
  until(`${holders} worker(s) to hold the cluster's shards`, async () => {
    const now = await shardHolders()
    return now.holders === holders && now.locks >= 300
  })

/** The run's journal events: in the cluster's database (JournalPg.ts), under the run's id, in order. */
const journalOf = async (runDir: string) => {
  const { runId } = JSON.parse(await readFile(project.path(runDir, "manifest.json"), "utf8")) as { runId: string }
  const rows = await query<{ event: string }>(`SELECT event FROM sluice_journal WHERE run_id = '${runId}' ORDER BY seq`)
  return rows.map((r) => JSON.parse(r.event) as { _tag: string; adopted?: boolean })
}

/** The run's journal events of one tag. */
const eventsOf = async (runDir: string, tag: string) => (await journalOf(runDir)).filter((e) => e._tag === tag)

/** Resolves once the sink holds `n` complete lines. */
const sinkHolds = (sink: string, n: number) =>
  until(
    `${n} rows in ${sink}`,
    async () => {
      try {
        return (await readJsonl(project.path(sink))).length >= n
      } catch {
        return false // not there yet, or a line half-written
      }
    },
    240_000
  )

/** The workers whose log says they did steps of `runId`'s shards. */
const workersWithSteps = (runId: string) => workers.filter((w) => w.log.includes(`run ${runId}: shard `))

const checkRun = async (runDir: string, rows: ReadonlyArray<{ id: string }>, shards: number, sink: string) => {
  const manifest = JSON.parse(await readFile(project.path(runDir, "manifest.json"), "utf8")) as { runId: string }
  // Every row once in the sink.
  const written = await readJsonl<{ key: string; custom_id: string }>(project.path(sink))
  expect(written).toHaveLength(rows.length)
  expect(new Set(written.map((r) => r.key))).toEqual(new Set(rows.map((r) => r.id)))
  // One batch per shard, none created twice; every custom_id delivered once.
  const ledger = await getLedger(emulator.url)
  const batches = ledger.batches.filter((b) => b.metadata?.["sluice_run"] === manifest.runId)
  expect(batches).toHaveLength(shards)
  expect(new Set(batches.map((b) => b.metadata?.["sluice_shard"])).size).toBe(shards)
  const ids = new Set(batches.map((b) => b.id))
  const delivered = ledger.deliveries.filter((d) => ids.has(d.batch_id)).map((d) => d.custom_id)
  expect(delivered).toHaveLength(rows.length)
  expect(new Set(delivered).size).toBe(rows.length)
  return manifest.runId
}

describe.skipIf(skipReason !== undefined)("distributed runs: sluice worker × 3 on PostgreSQL", () => {
  beforeAll(async () => {
    pg = await TempPostgres.start()
    emulator = await startTestEmulator()
    project = await makeProject("sluice-cluster-")
    workerDir = project.path("workers")
    await mkdir(workerDir)
    stateDir = project.path("worker-state")
    await mkdir(stateDir)
    await writePipeline(project, "pipeline.ts", { name: "spread", source: "data/a.jsonl", sink: "out/a.jsonl" })
    await writePipeline(project, "killed.ts", { name: "killed", source: "data/b.jsonl", sink: "out/b.jsonl" })
    // One worker first: it creates the cluster's tables (two at once race on CREATE TABLE).
    await startWorker()
    await Promise.all([startWorker(), startWorker()])
    await shardsHeldBy(3)
  }, 300_000)

  afterAll(async () => {
    pool.killAll()
    await emulator?.close()
    pg?.stop()
    await project?.cleanup()
  })

  it("a run of 3,000 rows in 12 shards completes across three workers: every row once, one batch per shard", async () => {
    const rows = await writeRows(project, "data/a.jsonl", 3000)
    // The batches stand still until `run --cluster`, as it waits, shows them in flight.
    await holdClock(emulator.url)
    const child = spawnCli(["run", "pipeline.ts", "--cluster", pg!.url, "--shard-size", "250", "--poll-interval", "0.2", "--no-cache"], { cwd: project.dir, env: env() })
    const r = { code: null as number | null, signal: null as NodeJS.Signals | null, stdout: "", stderr: "" }
    child.stdout!.setEncoding("utf8").on("data", (d: string) => (r.stdout += d))
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (r.stderr += d))
    const exited = new Promise<void>((resolve) => child.on("close", (code, signal) => resolve(void Object.assign(r, { code, signal }))))
    // (8 at once: the default --concurrency of a cluster run.)
    await until("run --cluster to show 8 batches in flight", () => {
      if (r.code !== null) throw new Error(`run --cluster ended first: ${describeResult(r)}`)
      return r.stderr.includes("sluice: 3,000 rows planned · 12 shards, 8 batches in flight, 0 collected")
    }, 120_000).catch((e: Error) => {
      throw new Error(`${e.message.slice(0, 3000)}\n--- run --cluster so far ---\n${r.stderr}`)
    })
    await releaseClock(emulator.url)
    await exited
    expect(r.code, describeResult(r)).toBe(0)
    // Progress as a one-machine run shows it in a log: each batch, each collection, the status line.
    expect(r.stderr).toMatch(/sluice: \S+ → batch batch_\w+/)
    expect(r.stderr).toMatch(/sluice: \S+ collected: 250 ok, 0 failed, 0 rescheduled/)
    expect(r.stderr).toContain("12 collected · rows 3,000 ok, 0 failed, 0 pending")
    expect(r.stderr).toContain("done: 3,000 rows, 3,000 succeeded, 0 failed, 0 pending, 12 batches")
    // The URL's credentials never reach the output (here: none; the URL itself is not printed).
    expect(r.stderr).not.toContain(pg!.url)
    const runId = await checkRun(".sluice/runs/spread", rows, 12, "out/a.jsonl")
    // The work spread: more than one worker drove shards.
    expect(workersWithSteps(runId).length).toBeGreaterThanOrEqual(2)
    // The run's journal is in the cluster's database, not in the run directory (its manifest says
    // so; journal.jsonl holds only the line that says so to older versions).
    expect(await readFile(project.path(".sluice/runs/spread", "journal.jsonl"), "utf8")).toMatch(/^\{"_tag":"JournalInDatabase",[^\n]*\}\n$/)
    const manifest = JSON.parse(await readFile(project.path(".sluice/runs/spread", "manifest.json"), "utf8")) as { journal?: string }
    expect(manifest.journal).toBe("postgres")
    expect(await readFile(project.path(".sluice/runs/spread", "manifest.json"), "utf8")).not.toContain(pg!.url)
    expect(await eventsOf(".sluice/runs/spread", "ShardPlanned")).toHaveLength(12)
    expect(await eventsOf(".sluice/runs/spread", "Collected")).toHaveLength(12)
    // `status` reads it there: with $SLUICE_DATABASE_URL (the bundled status program), with --cluster (the full CLI).
    const { SLUICE_DATABASE_URL: _, ...noDatabase } = env()
    for (const [args, given] of [[[], env()], [["--cluster", pg!.url], { ...noDatabase, SLUICE_DATABASE_URL: undefined }]] as const) {
      const status = await runCli(["status", ".sluice/runs/spread", "--no-refresh", ...args, "--json"], { cwd: project.dir, env: given })
      expect(status.code, describeResult(status)).toBe(0)
      expect(JSON.parse(status.stdout)).toMatchObject({ runId, finished: true, succeeded: 3000 })
    }
    // `report` reads it there too (its row index follows the journal through the same port).
    const report = await runCli(["report", ".sluice/runs/spread", "--json", "-o", project.path("spread-report.html")], { cwd: project.dir, env: env() })
    expect(report.code, describeResult(report)).toBe(0)
    expect(JSON.parse(report.stdout)).toMatchObject({ rows: { of: 3000 } })
    // Without the database: refused, saying what to give (never shown as a run with no events).
    const blind = await runCli(["status", ".sluice/runs/spread", "--no-refresh"], { cwd: project.dir, env: { ...noDatabase, SLUICE_DATABASE_URL: undefined } })
    expect(blind.code, describeResult(blind)).toBe(2)
    expect(blind.stderr).toContain("keeps its journal in its cluster's PostgreSQL database")
    expect(blind.stderr).toContain("give --cluster postgres://… or set SLUICE_DATABASE_URL (resume and retry then continue the run through the cluster)")
    // No warning of a dependency that a user cannot act on (pg's query-queue deprecation).
    for (const w of workers) expect(w.log).not.toContain("DeprecationWarning")
    expect(r.stderr).not.toContain("DeprecationWarning")
  }, 300_000)

  it("SIGKILL of a worker while its batches run: the others finish its shards, nothing created twice", async () => {
    const rows = await writeRows(project, "data/b.jsonl", 2000)
    // The emulator's clock stands still: every batch stays in progress until it is released.
    await holdClock(emulator.url)
    const runId = await startDetached("killed.ts")
    // All 8 batches created, so every worker that owns shards of the run has polled them.
    await until("the 8 batches of the run", async () => (await getLedger(emulator.url)).batches.filter((b) => b.metadata?.["sluice_run"] === runId).length === 8)
    await until("a worker polling shards of the run", () => workersWithSteps(runId).some((w) => /step [1-9]\d* done/.test(w.log)))
    const victim = workersWithSteps(runId).sort((a, b) => b.log.split(runId).length - a.log.split(runId).length)[0]!
    const itsShards = [...new Set([...victim.log.matchAll(new RegExp(`run ${runId}: shard (\\S+) step`, "g"))].map((m) => m[1]!))]
    victim.child.kill("SIGKILL")
    await until("the killed worker to exit", () => victim.exited)
    const killedAt = Date.now()
    const before = victim.log
    await releaseClock(emulator.url)
    // Its shards are driven by the others, once its share of the cluster has expired.
    const survivors = workers.filter((w) => w !== victim && !w.exited)
    await until("a surviving worker to drive a shard of the killed one", () =>
      survivors.some((w) => itsShards.some((shard) => w.log.includes(`run ${runId}: shard ${shard} step`))))
    console.log(`failover: shards of the killed worker driven again ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the kill (--lock-expiration ${lockExpiration})`)
    // The run finishes on the other two: its sink holds every row once.
    await sinkHolds("out/b.jsonl", rows.length)
    expect(victim.log).toBe(before)
    await checkRun(".sluice/runs/killed", rows, 8, "out/b.jsonl")
    // Following the run now returns its summary at once: the workflow is found by its run id.
    const follow = await runCli(["run", "killed.ts", "--cluster", pg!.url, "--shard-size", "250", "--poll-interval", "0.2", "--no-cache"], {
      cwd: project.dir,
      env: env(),
      timeoutMs: 240_000
    })
    expect(follow.code, describeResult(follow)).toBe(0)
    expect(follow.stderr).toContain("done: 2,000 rows, 2,000 succeeded, 0 failed, 0 pending, 8 batches")
  }, 400_000)

  it("a redeploy with a new version of sluice: every worker stopped (SIGTERM) while batches run, workers of the new version finish the run", async () => {
    const rows = await writeRows(project, "data/f.jsonl", 1000)
    await writePipeline(project, "upgrade.ts", { name: "upgrade", source: "data/f.jsonl", sink: "out/f.jsonl" })
    await holdClock(emulator.url)
    const runId = await startDetached("upgrade.ts")
    await until("the 4 batches of the run", async () => (await getLedger(emulator.url)).batches.filter((b) => b.metadata?.["sluice_run"] === runId).length === 4)
    await until("the old workers polling the run", () => workersWithSteps(runId).some((w) => /step [1-9]\d* done by worker/.test(w.log)))
    const old = workers.filter((w) => !w.exited)
    for (const w of old) w.child.kill("SIGTERM")
    await until("the old workers to stop", () => old.every((w) => w.exited))
    expect(await eventsOf(".sluice/runs/upgrade", "Collected")).toHaveLength(0)

    // The upgrade: the project's packages replaced by the next version (its node_modules, which the pipeline imports from too).
    const next = await nextVersion()
    const fresh: Array<Workers.Worker> = []
    const projectModules = project.path("node_modules")
    await rm(projectModules)
    await symlink(next.modules, projectModules, "junction")
    try {
      // Two at once (the cluster's tables exist): the run needs no more.
      fresh.push(...(await Promise.all([startWorker({}, next.bin), startWorker({}, next.bin)])))
      await releaseClock(emulator.url)
      await sinkHolds("out/f.jsonl", rows.length)
      // Every row once, each shard's batch created once (by the old workers), none again by the new ones.
      await checkRun(".sluice/runs/upgrade", rows, 4, "out/f.jsonl")
      // The new code drove the rest of the run, resuming the workflows from their journal: the
      // activities the old workers completed (the planning, each shard's submission) were not run again.
      const newLog = fresh.map((w) => w.log).join("")
      const oldLog = old.map((w) => w.log).join("")
      expect(newLog).toMatch(new RegExp(`run ${runId}: shard \\S+ step [1-9]\\d* ${nextVersionStep}`))
      expect(oldLog).not.toContain(nextVersionStep)
      expect(oldLog).toContain(`run ${runId}: planning round 0 done`)
      expect(newLog).not.toContain(`run ${runId}: planning round 0 done`)
      const submitted = [...oldLog.matchAll(new RegExp(`run ${runId}: shard (\\S+) step 0 done`, "g"))].map((m) => m[1]!)
      expect(submitted.length).toBeGreaterThan(0)
      for (const shard of submitted) expect(newLog).not.toContain(`run ${runId}: shard ${shard} step 0 `)
    } finally {
      // Their packages go with the copy: the tests after start workers of this build.
      for (const w of fresh) w.child.kill("SIGTERM")
      await until("the new version's workers to exit", () => fresh.every((w) => w.exited))
      await rm(projectModules)
      await symlink(join(repoRoot, "node_modules"), projectModules, "junction")
      await next.cleanup()
    }
  }, 400_000)

  it("a worker killed between creating a batch and journaling it, the next one killed mid-collection: the batch is adopted, not created again; every row once", async () => {
    // Alone in the cluster, each worker below does every step: where it dies is certain.
    for (const w of workers) if (!w.exited) w.child.kill("SIGKILL")
    await until("the workers to exit", () => workers.every((w) => w.exited))
    const rows = await writeRows(project, "data/c.jsonl", 1500)
    await writePipeline(project, "crashes.ts", { name: "crashes", source: "data/c.jsonl", sink: "out/c.jsonl" })
    const runDir = ".sluice/runs/crashes"

    // 1. Dies right after its second batch is created, before the batch is journaled.
    const first = await startWorker({ SLUICE_FAILPOINT: "after-create:2" })
    await shardsHeldBy(1)
    const runId = await startDetached("crashes.ts")
    await until("the first worker to die at its failpoint", () => first.exited)
    const runBatches = async () => (await getLedger(emulator.url)).batches.filter((b) => b.metadata?.["sluice_run"] === runId)
    expect(await runBatches()).toHaveLength(2)
    expect(await eventsOf(runDir, "Created")).toHaveLength(1)

    // 2. Takes over (adopting the orphan batch), and dies in its first collection, before the commit.
    const second = await startWorker({ SLUICE_FAILPOINT: "collect-before-commit:1" })
    await until("the second worker to die at its failpoint", () => second.exited)
    expect(await eventsOf(runDir, "Collected")).toHaveLength(0)

    // 3. A healthy worker finishes the run.
    await startWorker()
    await sinkHolds("out/c.jsonl", rows.length)
    await checkRun(runDir, rows, 6, "out/c.jsonl")
    // The batch the first worker created and did not journal was adopted (by the second or the third).
    expect((await eventsOf(runDir, "Created")).filter((e) => e.adopted === true)).toHaveLength(1)
    expect(workers.slice(-2).map((w) => w.log).join("")).toMatch(/shard \S+: adopting batch batch_\w+, created before a crash/)
  }, 400_000)

  it("a run lock left by a step of another host: respected while a session holds the run's lock in the database, or when no cluster step wrote it; taken over once neither", async () => {
    const alive = workers.filter((w) => !w.exited)
    expect(alive.length).toBeGreaterThan(0)
    /** What the live workers logged since `mark()`. */
    let marks = alive.map((w) => w.log.length)
    const mark = () => void (marks = alive.map((w) => w.log.length))
    const logged = () => alive.map((w, i) => w.log.slice(marks[i])).join("")
    const rows = await writeRows(project, "data/e.jsonl", 500)
    await writePipeline(project, "hostlock.ts", { name: "hostlock", source: "data/e.jsonl", sink: "out/e.jsonl" })
    await holdClock(emulator.url)
    const runId = await startDetached("hostlock.ts")
    const lockFile = lockFileOf(runId)
    const runBatches = async () => (await getLedger(emulator.url)).batches.filter((b) => b.metadata?.["sluice_run"] === runId)
    await until("the 2 batches of the run", async () => (await runBatches()).length === 2)

    // 1. The test's session takes the run's lock in the database (once the step in progress ends):
    // a live step elsewhere. A record of a step of this run on another host is then left alone.
    const { classid, objid } = ClusterRunLock.keyOf(runId)
    const other = await session()
    await other.value(`SELECT pg_advisory_lock(${classid}, ${objid})`)
    const database = String(await other.value(ClusterRunLock.identityQuery))
    const owner = { pid: 4242, host: "build-7.example.org", token: "c1a5", boot: null, start: null, at: "2030-01-02T03:04:05.000Z" }
    const marked = JSON.stringify({ ...owner, cluster: { run: runId, database } }) + "\n"
    await writeFile(lockFile, marked)
    mark()
    // (The test's session names itself as @effect/sql-pg does by default.)
    await until("a step waiting for the run's lock in the database", () => logged().includes("waits for the run's lock in the database, held by @effect/sql-pg"))
    expect(await readFile(lockFile, "utf8")).toBe(marked)

    // 2. A record of a sluice outside the cluster (a user's `retry` on another host), or of an
    // older worker: no mark. Respected although no session holds the run's lock.
    const unmarked = JSON.stringify(owner) + "\n"
    await writeFile(lockFile, unmarked)
    mark()
    await other.close()
    await until("a step waiting for the lock file", () => logged().includes("waits: the run directory is locked by process 4242 on host build-7.example.org"))
    expect(await readFile(lockFile, "utf8")).toBe(unmarked)

    // 3. The step of this run on another host died (its session, and with it the run's lock, is gone): taken over.
    await writeFile(lockFile, marked)
    await until("the lock taken over", () =>
      logged().includes(`took over the lock ${lockFile} of process 4242 on host build-7.example.org (a step of this distributed run whose database session has ended)`))
    await releaseClock(emulator.url)
    await sinkHolds("out/e.jsonl", rows.length)
    await checkRun(".sluice/runs/hostlock", rows, 2, "out/e.jsonl")
  }, 400_000)

  it("a step whose database session ends while its worker runs (a partition, a restarted database) is stopped by its watchdog", async () => {
    const runId = "watchdog-0001"
    const { classid, objid } = ClusterRunLock.keyOf(runId)
    const settings = Layer.succeed(ClusterRunLock.Settings, {
      databaseUrl: Redacted.make(pg!.url),
      grace: Duration.seconds(6),
      pingEvery: Duration.millis(100),
      pingTimeout: Duration.seconds(5)
    })
    const admin = await session()
    const holder = `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = ${classid} AND objid = ${objid} AND objsubid = 2`
    const stopped = Effect.runPromise(
      Effect.scoped(Effect.flatMap(ClusterRunLock.hold(runId, () => Effect.void), (held) => held.guard(Effect.never))).pipe(Effect.provide(settings), Effect.flip)
    )
    // The step holds the run's lock on a session of its own; the server ends that session.
    await until("the step's session to hold the run's lock", async () => (await admin.value(holder)) !== undefined)
    expect(await admin.value(`SELECT pg_terminate_backend((${holder}))`)).toBe(true)
    const error = await stopped
    expect(error._tag).toBe("RunLockLost")
    expect(error.message).toContain(`run ${runId}: the database session holding the run's lock ended`)
    // Gone with the session: the next step may take it.
    expect(await admin.value(`SELECT pg_try_advisory_lock(${classid}, ${objid})`)).toBe(true)
    await admin.close()
  }, 60_000)

  it("cancel of a run in flight on the cluster: its workflows stop, each batch cancelled once, nothing submitted after; run --cluster again collects, every row accounted for", async () => {
    if (workers.filter((w) => !w.exited).length < 2) await startWorker()
    const rows = await writeRows(project, "data/g.jsonl", 1000)
    await writePipeline(project, "cancelled.ts", { name: "cancelled", source: "data/g.jsonl", sink: "out/g.jsonl" })
    const runDir = ".sluice/runs/cancelled"
    const flags = ["--cluster", pg!.url, "--shard-size", "250", "--concurrency", "2", "--poll-interval", "0.2", "--no-cache"]
    await holdClock(emulator.url)
    const runId = await startDetached("cancelled.ts", ["--concurrency", "2"])
    const runBatches = async () => (await getLedger(emulator.url)).batches.filter((b) => b.metadata?.["sluice_run"] === runId)
    // Two shards driven at once (--concurrency 2), their batches standing still: the other two wait for them.
    await until("the 2 batches of the run's first shards", async () => (await runBatches()).length === 2)
    const manifest = JSON.parse(await readFile(project.path(runDir, "manifest.json"), "utf8")) as { cluster?: { database: string } }
    expect(manifest.cluster?.database).toMatch(/^\d+\/\w+$/)

    // Without the cluster's database, a cluster run is not cancelled behind its workers' backs.
    const refused = await runCli(["cancel", runDir], { cwd: project.dir, env: emulatorEnv(emulator.url) })
    expect(refused.code, describeResult(refused)).toBe(2)
    expect(refused.stderr).toContain(`run ${runId} runs on a cluster`)
    expect(refused.stderr).toContain("--cluster postgres://")

    // With it ($SLUICE_DATABASE_URL here): the run's workflows are stopped, then its batches cancelled.
    const cancel = spawnCli(["cancel", runDir, "--poll-interval", "0.1"], { cwd: project.dir, env: env() })
    const c = { code: null as number | null, signal: null as NodeJS.Signals | null, stdout: "", stderr: "" }
    cancel.stdout!.setEncoding("utf8").on("data", (d: string) => (c.stdout += d))
    cancel.stderr!.setEncoding("utf8").on("data", (d: string) => (c.stderr += d))
    const cancelled = new Promise<void>((resolve) => cancel.on("close", (code, signal) => resolve(void Object.assign(c, { code, signal }))))
    // Both batches asked to stop while the emulator's clock stands still (so none ran a row), then let go.
    await until("both batches cancelling", async () => {
      if (c.code !== null) throw new Error(`cancel ended first: ${describeResult(c)}`)
      const batches = await runBatches()
      return batches.length === 2 && batches.every((b) => b.status === "cancelling")
    })
    await releaseClock(emulator.url)
    await cancelled
    expect(c.code, describeResult(c)).toBe(3)
    expect(c.stderr).toContain("cancel: 2 batches cancelled, 2 shards not submitted")
    expect(c.stderr).toContain("sluice run <pipeline> --cluster")
    expect((await eventsOf(runDir, "Terminal")).map((e) => (e as { status?: string }).status)).toEqual(["cancelled", "cancelled"])
    // The workers' steps of the cancelled attempt did nothing more: the shards still waiting were never submitted.
    const stopped = new RegExp(`run ${runId}: step ${runId}/\\S+ not done: attempt 0 of the run was cancelled or replaced`)
    await until("a step of the cancelled attempt to stop", () => workers.some((w) => stopped.test(w.log)))

    // Going on: a new attempt of the run collects what the batches finished.
    const again = await runCli(["run", "cancelled.ts", ...flags], { cwd: project.dir, env: env(), timeoutMs: 240_000 })
    expect(again.code, describeResult(again)).toBe(1)
    expect(again.stderr).toContain(`run ${runId}: its attempt 0 was cancelled; the run goes on as attempt 1`)
    // No batch created after the cancel, none twice.
    const batches = await runBatches()
    expect(batches).toHaveLength(2)
    expect(new Set(batches.map((b) => b.metadata?.["sluice_shard"])).size).toBe(2)
    // Every row once: in the sink, or failed `cancelled`.
    const written = await readJsonl<{ key: string }>(project.path("out/g.jsonl")).catch(() => [])
    const failed = await readJsonl<{ key: string; class: string }>(project.path(runDir, "failures.jsonl"))
    expect(failed.length).toBeGreaterThan(0)
    for (const f of failed) expect(f.class).toBe("cancelled")
    const keys = [...written.map((r) => r.key), ...failed.map((f) => f.key)]
    expect(keys).toHaveLength(rows.length)
    expect(new Set(keys)).toEqual(new Set(rows.map((r) => r.id)))

    // The cancelled rows submitted again through the cluster: a retry attempt of the run.
    const retried = await runCli(["retry", runDir, "--cluster", pg!.url, "--only", "cancelled", "--poll-interval", "0.2", "--no-cache"], {
      cwd: project.dir,
      env: env(),
      timeoutMs: 240_000
    })
    expect(retried.code, describeResult(retried)).toBe(0)
    expect(retried.stderr).toContain(`run ${runId}: retried as attempt 2`)
    const sink = await readJsonl<{ key: string }>(project.path("out/g.jsonl"))
    expect(sink).toHaveLength(rows.length)
    expect(new Set(sink.map((r) => r.key))).toEqual(new Set(rows.map((r) => r.id)))
    // Each shard's batch created once (the retry shards' too), and no custom_id paid twice.
    const all = await runBatches()
    expect(all.length).toBeGreaterThan(2)
    expect(new Set(all.map((b) => b.metadata?.["sluice_shard"])).size).toBe(all.length)
    const ids = new Set(all.map((b) => b.id))
    const delivered = (await getLedger(emulator.url)).deliveries.filter((d) => ids.has(d.batch_id)).map((d) => d.custom_id)
    expect(delivered).toHaveLength(rows.length)
    expect(new Set(delivered).size).toBe(rows.length)
  }, 400_000)

  it("a run whose workflow failed (a step failing through all its tries) goes on as a new attempt with resume --cluster: finished, nothing created twice", async () => {
    if (workers.filter((w) => !w.exited).length < 2) await startWorker()
    const rows = await writeRows(project, "data/h.jsonl", 500)
    await writePipeline(project, "failing.ts", { name: "failing", source: "data/h.jsonl", sink: "out/h.jsonl" })
    const runDir = ".sluice/runs/failing"
    const flags = ["--cluster", pg!.url, "--shard-size", "250", "--poll-interval", "0.2", "--no-cache"]
    await holdClock(emulator.url)
    const child = spawnCli(["run", "failing.ts", ...flags], { cwd: project.dir, env: env() })
    const r = { code: null as number | null, signal: null as NodeJS.Signals | null, stdout: "", stderr: "" }
    child.stdout!.setEncoding("utf8").on("data", (d: string) => (r.stdout += d))
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (r.stderr += d))
    const exited = new Promise<void>((resolve) => child.on("close", (code, signal) => resolve(void Object.assign(r, { code, signal }))))
    await until("the run's manifest", async () => (await readFile(project.path(runDir, "manifest.json"), "utf8").catch(() => "")) !== "")
    const { runId } = JSON.parse(await readFile(project.path(runDir, "manifest.json"), "utf8")) as { runId: string }
    const lockFile = lockFileOf(runId)
    const runBatches = async () => (await getLedger(emulator.url)).batches.filter((b) => b.metadata?.["sluice_run"] === runId)
    await until("the 2 batches of the run", async () => (await runBatches()).length === 2)

    // Between two steps (the test's session holds the run's lock meanwhile), a lock file that names
    // no owner: every step fails on it, tried again after its backoffs, until the workflows fail.
    const { classid, objid } = ClusterRunLock.keyOf(runId)
    const other = await session()
    await other.value(`SELECT pg_advisory_lock(${classid}, ${objid})`)
    await writeFile(lockFile, "not a lock record\n")
    await other.close()
    await exited
    expect(r.code, describeResult(r)).toBe(4)
    expect(r.stderr).toContain("names no owner")
    // The command that goes on with the run, the database's URL not printed.
    expect(r.stderr).toContain(`sluice resume ${project.path(runDir)} --cluster "$SLUICE_DATABASE_URL"`)
    expect(r.stderr).not.toContain(pg!.url)

    // The cause removed, that command goes on with the run instead of reporting the failure again.
    await rm(lockFile)
    await releaseClock(emulator.url)
    const again = await runCli(["resume", runDir, "--cluster", pg!.url, "--poll-interval", "0.2", "--no-cache"], { cwd: project.dir, env: env(), timeoutMs: 240_000 })
    expect(again.code, describeResult(again)).toBe(0)
    expect(again.stderr).toMatch(new RegExp(`run ${runId}: its attempt 0 failed \\(.*names no owner.*\\); the run goes on as attempt 1`))
    expect(again.stderr).toContain("done: 500 rows, 500 succeeded, 0 failed, 0 pending, 2 batches")
    // The batches of the failed attempt were collected, not created again.
    await checkRun(runDir, rows, 2, "out/h.jsonl")
  }, 400_000)

})

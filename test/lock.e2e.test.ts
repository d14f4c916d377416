/**
 * One process per run directory, through the real CLI against the emulator: two `sluice run`
 * started at once on one run directory — one works, the other refuses (exit 2, naming the
 * first's pid and host) before it reads or sends anything, and the ledger shows no batch
 * created twice. A lock left by a process of another host is refused by every command that
 * writes the run, and taken over only with `--break-lock`. (The protocol itself, under eight
 * racing processes: packages/runner/test/LockFile.test.ts.)
 */
import { readFile, writeFile } from "node:fs/promises"
import { existsSync } from "node:fs"
import { hostname } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  type CliResult,
  describeResult,
  emulatorEnv,
  getLedger,
  makeProject,
  runCli,
  spawnCli,
  startTestEmulator,
  type TempProject,
  type TestEmulator,
  writePipeline,
  writeRows
} from "./support/cli.js"
import { eventsTagged, expectPaidOnce, readJournalSoFar, readSink, runFlags, runIdOf, setFaults, waitFor } from "./support/runs.js"

/** Each CLI start loads TypeScript through tsx (seconds on a busy machine). */
const SLOW = { timeout: 180_000 }

/** Runs a spawned CLI to its end. */
const finished = (child: ReturnType<typeof spawnCli>): Promise<CliResult> =>
  new Promise((resolve, reject) => {
    let stdout = ""
    let stderr = ""
    child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d))
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d))
    child.on("error", reject)
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }))
  })

describe("two sluice processes on one run directory", SLOW, () => {
  let emulator: TestEmulator
  let project: TempProject
  const runDir = () => project.path("runs", "shared")
  const sink = () => project.path("out", "labeled.jsonl")
  const sluice = (args: ReadonlyArray<string>) => runCli(args, { cwd: project.dir, env: emulatorEnv(emulator.url) })

  beforeAll(async () => {
    // Batches created now make no progress: the first run holds its lock while it polls, for
    // as long as the test needs, whatever the machine's speed.
    emulator = await startTestEmulator({ requestsPerSecond: 0.001 })
    project = await makeProject("sluice-lock-")
    await writeRows(project, "data/rows.jsonl", 20)
    await writePipeline(project, "p.pipeline.ts")
  })
  afterAll(async () => {
    await emulator?.close()
    await project?.cleanup()
  })

  it("started at once: one runs, the other refuses (exit 2) naming its pid and host; no batch is created twice", async () => {
    const args = ["run", "p.pipeline.ts", ...runFlags("runs/shared", 20)]
    const options = { cwd: project.dir, env: emulatorEnv(emulator.url) }
    const children = [spawnCli(args, options), spawnCli(args, options)]
    const results = children.map(finished)
    // The run that holds the lock cannot end while its batch is held: the first to end refused.
    const first = await Promise.race(results.map((r, i) => r.then((result) => ({ i, result }))))
    const refused = first.result
    const holder = children[1 - first.i]!
    expect(refused.code, describeResult(refused)).toBe(2)
    expect(refused.stderr).toContain(`the run directory is in use by process ${holder.pid} on ${hostname()}`)
    expect(refused.stderr).toContain(join(runDir(), "run.lock"))

    // The holder goes on: its batch is released (expired with nothing done, so its rows are
    // submitted again as a retry shard, at full speed) and the run completes.
    const created = await waitFor("the holder's batch", async () => eventsTagged(await readJournalSoFar(runDir()), "Created")[0])
    await setFaults(emulator.url, { requestsPerSecond: "Infinity" })
    await setFaults(emulator.url, { expireBatch: created["batchId"] as string })
    const done = await results[1 - first.i]!
    expect(done.code, describeResult(done)).toBe(0)
    expect(existsSync(join(runDir(), "run.lock")), "released at the end").toBe(false)

    const delivered = expectPaidOnce(await getLedger(emulator.url), await runIdOf(runDir()))
    expect(delivered).toHaveLength(20)
    const ids = (await readSink(sink())).map((l) => l.key)
    expect(new Set(ids).size).toBe(20)
    expect(ids).toHaveLength(20)
    // The refused process asked nothing of the provider: one batch for the shard, one for its retry.
    expect(emulator.calls("POST", "/v1/batches")).toBe(2)
  })

  it("two run directories, one output file: the second refuses (exit 2) naming the sink and the first's pid, having sent nothing", async () => {
    await setFaults(emulator.url, { requestsPerSecond: 0.001 })
    const options = { cwd: project.dir, env: emulatorEnv(emulator.url) }
    const first = spawnCli(["run", "p.pipeline.ts", ...runFlags("runs/one", 20)], options)
    const firstDone = finished(first)
    const created = await waitFor("the first run's batch", async () => eventsTagged(await readJournalSoFar(project.path("runs", "one")), "Created")[0])
    const lockFile = project.path("out", ".labeled.jsonl.sluice-lock")
    expect(existsSync(lockFile), "the sink's lock beside it").toBe(true)
    const batchesBefore = emulator.calls("POST", "/v1/batches")
    const second = await sluice(["run", "p.pipeline.ts", ...runFlags("runs/two", 20)])
    expect(second.code, describeResult(second)).toBe(2)
    expect(second.stderr).toContain(`labeled.jsonl is being written by process ${first.pid} on ${hostname()}`)
    expect(second.stderr).toContain(lockFile)
    expect(emulator.calls("POST", "/v1/batches")).toBe(batchesBefore)

    // The first run ends (its batch expired with nothing done; the retry at full speed) and lets go.
    await setFaults(emulator.url, { requestsPerSecond: "Infinity" })
    await setFaults(emulator.url, { expireBatch: created["batchId"] as string })
    const done = await firstDone
    expect(done.code, describeResult(done)).toBe(0)
    expect(existsSync(lockFile), "released at the end").toBe(false)
    expect(new Set((await readSink(sink())).map((l) => l.key)).size).toBe(20)
    // Now the second may write it.
    const again = await sluice(["run", "p.pipeline.ts", ...runFlags("runs/two", 20)])
    expect(again.code, describeResult(again)).toBe(0)
    const ids = (await readSink(sink())).map((l) => l.key)
    expect(ids).toHaveLength(20)
    expect(new Set(ids).size).toBe(20)
  })

  it("a lock of another host is refused by run, resume, retry and cancel, and taken over with --break-lock", async () => {
    const lock = join(runDir(), "run.lock")
    const foreign = JSON.stringify({ pid: 4242, host: "build-7.example.org", token: "f00d", boot: null, start: null, at: "2030-01-02T03:04:05.000Z" }) + "\n"
    await writeFile(lock, foreign)
    for (const args of [
      ["run", "p.pipeline.ts", ...runFlags("runs/shared", 20)],
      ["resume", "runs/shared", "--poll-interval", "0.05"],
      ["retry", "runs/shared", "--poll-interval", "0.05"],
      ["cancel", "runs/shared", "--poll-interval", "0.05"]
    ]) {
      const r = await sluice(args)
      expect(r.code, `${args[0]}: ${describeResult(r)}`).toBe(2)
      expect(r.stderr).toContain("locked by process 4242 on host build-7.example.org since 2030-01-02T03:04:05.000Z")
      expect(r.stderr).toContain("--break-lock")
      expect(await readFile(lock, "utf8"), "the lock is left as it was").toBe(foreign)
    }
    // status reads the run without taking the lock.
    const status = await sluice(["status", "runs/shared", "--no-refresh"])
    expect(status.code, describeResult(status)).toBe(0)

    const broken = await sluice(["resume", "runs/shared", "--poll-interval", "0.05", "--break-lock"])
    expect(broken.code, describeResult(broken)).toBe(0)
    expect(broken.stderr).toContain(`took over the lock ${lock} of process 4242 on host build-7.example.org (--break-lock)`)
    expect(broken.stderr).toContain("nothing to do")
    expect(existsSync(lock)).toBe(false)
  })
})

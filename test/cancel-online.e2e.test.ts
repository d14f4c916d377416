/**
 * Cancelling a run whose shards are online, end to end: the real `sluice` CLI as a child process
 * against the emulator (in this process, 127.0.0.1, port 0). The run is killed while requests
 * are held in flight at the emulator; `sluice cancel` (the journal and the online files alone)
 * ends its online shards where their online files stand and sends nothing; `resume` collects:
 * answered rows reach the sink, unsent ones end `cancelled`; `retry --only cancelled` completes
 * the run, every row once in the sink, and requests answered twice stay within the in-flight
 * bound (by the emulator's ledger of real-time calls).
 */
import { readdir } from "node:fs/promises"
import { join } from "node:path"
import { getInFlight, getLedger } from "@sluice/emulator/control"
import { afterEach, describe, expect, it } from "vitest"
import { describeResult, emulatorEnv, makeProject, readJsonl, runCli, spawnCli, startTestEmulator, writeRows } from "./support/cli.js"
import { countBy, eventsTagged, readFailures, readJournal, readSink, runFlags, setFaults, waitFor, writeRecoveryPipeline } from "./support/runs.js"

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!().catch(() => undefined)
})

const CONCURRENCY = 4
const sorted = (ids: Iterable<string>) => [...ids].sort()

describe("sluice cancel with online shards in flight", () => {
  it("the killed run's online shards end where their files stand: answered rows kept, unsent ones `cancelled`, nothing sent by cancel or resume", { timeout: 240_000 }, async () => {
    const emulator = await startTestEmulator()
    cleanups.push(() => emulator.close())
    const project = await makeProject("sluice-cancel-online-")
    cleanups.push(() => project.cleanup())
    const rows = await writeRows(project, "data/rows.jsonl", 40)
    await writeRecoveryPipeline(project, "recovery.pipeline.ts")
    const runDir = project.path("run")
    const sinkFile = project.path("out", "labeled.jsonl")
    const env = emulatorEnv(emulator.url)
    const sluice = (args: ReadonlyArray<string>) => runCli(args, { cwd: project.dir, env, timeoutMs: 150_000 })
    const answeredCalls = async () => (await getLedger(emulator.url)).calls.filter((c) => c.status === 200)

    // Requests wait at the emulator until released: the run fills its slots and stands still.
    await setFaults(emulator.url, { holdRequests: true })
    const run = spawnCli(["run", "recovery.pipeline.ts", ...runFlags(runDir, 10, ["--mode", "online", "--concurrency", String(CONCURRENCY)])], { cwd: project.dir, env })
    let runOutput = ""
    run.stderr!.setEncoding("utf8").on("data", (d: string) => (runOutput += d))
    const exited = new Promise<void>((resolve) => run.on("close", () => resolve()))
    cleanups.push(async () => void run.kill("SIGKILL"))
    const held = (n: number) => async () => ((await getInFlight(emulator.url)).held === n ? true : undefined)
    await waitFor(`${CONCURRENCY} requests held (run: ${runOutput})`, held(CONCURRENCY), { timeoutMs: 120_000 })
    // Let the first requests be answered, and hold the next ones: a slot is freed only once its
    // answer is durable, so requests held again mean answers in the online files.
    await setFaults(emulator.url, { holdRequests: false })
    await setFaults(emulator.url, { holdRequests: true })
    await waitFor("answers, then requests held again", async () => ((await answeredCalls()).length >= CONCURRENCY && (await held(CONCURRENCY)()) ? true : undefined), {
      timeoutMs: 120_000
    })
    run.kill("SIGKILL")
    await exited

    // The answers the run made durable, from its online files.
    const shardsDir = join(runDir, "shards")
    const onlineFiles = (await readdir(shardsDir)).filter((f) => f.endsWith(".online.jsonl"))
    expect(onlineFiles.length, "online shards started").toBeGreaterThan(0)
    const durable = new Set<string>()
    for (const f of onlineFiles) for (const a of await readJsonl<{ customId: string; _tag: string }>(join(shardsDir, f))) if (a._tag === "Succeeded") durable.add(a.customId)
    expect(durable.size, "answers durable before the kill").toBeGreaterThanOrEqual(CONCURRENCY)
    const started = eventsTagged(await readJournal(runDir), "OnlineStarted").map((e) => e.shard!)
    const callsBefore = (await getLedger(emulator.url)).calls.length

    // Cancel: from the journal and the online files; the dead run's lock is taken over.
    const cancelled = await sluice(["cancel", runDir, "--poll-interval", "0.05"])
    expect(cancelled.code, describeResult(cancelled)).toBe(3)
    expect(cancelled.stderr).toContain(`${started.length} online shard${started.length === 1 ? "" : "s"} stopped`)
    const events = await readJournal(runDir)
    const completed = eventsTagged(events, "OnlineCompleted")
    expect(sorted(completed.map((e) => e.shard!)), "every started online shard ended").toEqual(sorted(started))
    for (const e of completed) expect(e["cancelled"], `shard ${e.shard}`).toBe(true)
    const answeredOf = (e: (typeof completed)[number]) => (e["counts"] as { succeeded: number }).succeeded
    expect(completed.reduce((a, e) => a + answeredOf(e), 0), "answers counted from the online files").toBe(durable.size)
    // Shards never started are withdrawn, not sent.
    for (const e of eventsTagged(events, "CreateRejected")) expect(e["failure"]).toBe("cancelled")
    expect(await readSink(sinkFile)).toEqual([])

    // The held requests are released: the run that sent them is gone.
    await setFaults(emulator.url, { holdRequests: false })
    const collected = await sluice(["resume", runDir, "--poll-interval", "0.05"])
    expect(collected.code, describeResult(collected)).toBe(1)
    expect((await getLedger(emulator.url)).calls.length, "requests sent by cancel or resume").toBe(callsBefore)

    const sink = await readSink(sinkFile)
    expect(sorted(sink.map((l) => l.custom_id)), "the durable answers are in the sink").toEqual(sorted(durable))
    const failures = await readFailures(runDir)
    expect(new Set(failures.map((f) => f.class))).toEqual(new Set(["cancelled"]))
    const failedKeys = failures.map((f) => f.key!)
    expect(sorted([...sink.map((l) => l.input.id), ...failedKeys]), "every row once: in the sink or cancelled").toEqual(sorted(rows.map((r) => r.id)))

    // Retrying the cancelled rows online completes the run.
    const retried = await sluice(["retry", runDir, "--only", "cancelled", "--mode", "online", "--poll-interval", "0.05"])
    expect(retried.code, describeResult(retried)).toBe(0)
    const final = await readSink(sinkFile)
    expect(sorted(final.map((l) => l.input.id)), "every row once in the sink").toEqual(sorted(rows.map((r) => r.id)))
    // Answered twice: at most the requests in flight at the kill (their answers were lost).
    const twice = [...countBy(await answeredCalls(), (c) => c.custom_id ?? "")].filter(([, n]) => n > 1)
    expect(twice.length, `rows answered twice: ${JSON.stringify(twice)}`).toBeLessThanOrEqual(CONCURRENCY)
  })
})

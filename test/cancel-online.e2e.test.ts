/**
 * Cancelling a run whose shards are online, end to end: the real `sluice` CLI as a child process
 * against the emulator (in this process, 127.0.0.1, port 0). The run is killed while requests
 * are held in flight at the emulator; `sluice cancel` (the journal and the online files alone)
 * ends its online shards where their online files stand and sends nothing; `resume` collects:
 * answered rows reach the sink, unsent ones end `cancelled`; `retry --only cancelled` completes
 * the run, every row once in the sink, and requests answered twice stay within the in-flight
 * bound (by the emulator's ledger of real-time calls). The same from code: `Runner.cancel`, given
 * the pipeline, collects at once.
 */
import { readdir } from "node:fs/promises"
import { join } from "node:path"
import { getInFlight, getLedger } from "@sluice/emulator/control"
import { Records, Runner } from "@sluice/runner"
import { Chunk, Duration, Effect, Fiber, Stream } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { labelPipeline, makeReviews, registryLayer, startApiEmulator, tempDirs } from "./support/api.js"
import { describeResult, emulatorEnv, makeProject, readJsonl, runCli, spawnCli, startTestEmulator, writeRows } from "./support/cli.js"
import { countBy, eventsTagged, readFailures, readJournal, readSink, runFlags, setFaults, waitFor, writeRecoveryPipeline } from "./support/runs.js"

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!().catch(() => undefined)
})

const CONCURRENCY = 4
const sorted = (ids: Iterable<string>) => [...ids].sort()

/** The rows answered successfully in a run's online files. */
const durableAnswers = async (runDir: string): Promise<Set<string>> => {
  const shardsDir = join(runDir, "shards")
  const durable = new Set<string>()
  for (const f of (await readdir(shardsDir)).filter((f) => f.endsWith(".online.jsonl"))) {
    for (const a of await readJsonl<{ customId: string; _tag: string }>(join(shardsDir, f))) if (a._tag === "Succeeded") durable.add(a.customId)
  }
  return durable
}

/**
 * Holds the emulator's real-time requests until `CONCURRENCY` are in flight, lets them be
 * answered, and holds the next ones: a slot is freed only once its answer is durable, so
 * requests held again mean answers in the online files.
 */
const answersThenHeld = async (url: string, what: () => string) => {
  const held = async () => ((await getInFlight(url)).held === CONCURRENCY ? true : undefined)
  await waitFor(`${CONCURRENCY} requests held (${what()})`, held, { timeoutMs: 120_000 })
  await setFaults(url, { holdRequests: false })
  await setFaults(url, { holdRequests: true })
  await waitFor(
    "answers, then requests held again",
    async () => ((await getLedger(url)).calls.filter((c) => c.status === 200).length >= CONCURRENCY && (await held()) ? true : undefined),
    { timeoutMs: 120_000 }
  )
}

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
    await answersThenHeld(emulator.url, () => runOutput)
    run.kill("SIGKILL")
    await exited

    // The answers the run made durable, from its online files.
    const durable = await durableAnswers(runDir)
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

  it("Runner.cancel in process: an interrupted run's online shards end as their files stand, and are collected at once", { timeout: 180_000 }, async () => {
    const emulator = await startApiEmulator()
    cleanups.push(() => emulator.close())
    const dirs = tempDirs()
    cleanups.push(() => dirs.cleanup())
    const runDir = join(await dirs.make(), "run")
    const rows = makeReviews(24, "oc")
    const pipeline = labelPipeline({ name: "online-cancel", source: { rows } })
    const layer = registryLayer(emulator)
    const poll = Duration.millis(50)

    await setFaults(emulator.url, { holdRequests: true })
    const running = Effect.runFork(
      Runner.run(pipeline, { runDir, shardSize: 8, mode: "online", concurrency: CONCURRENCY, pollInterval: poll }).pipe(Effect.provide(layer))
    )
    await answersThenHeld(emulator.url, () => "in-process run")
    // Stopped as Ctrl-C stops it: the requests in flight are abandoned, the lock released.
    await Effect.runPromise(Fiber.interrupt(running))
    const durable = await durableAnswers(runDir)
    expect(durable.size).toBeGreaterThanOrEqual(CONCURRENCY)
    const callsBefore = (await getLedger(emulator.url)).calls.length

    const { summary, failures, outputs } = await Effect.runPromise(
      Effect.gen(function* () {
        const summary = yield* Runner.cancel(pipeline, { runDir, pollInterval: poll })
        const failures = Chunk.toReadonlyArray(yield* Stream.runCollect(Records.failures(runDir)))
        const outputs = Chunk.toReadonlyArray(yield* Stream.runCollect(Records.outputs(pipeline, runDir)))
        return { summary, failures, outputs }
      }).pipe(Effect.provide(layer))
    )
    expect((await getLedger(emulator.url)).calls.length, "requests sent by the cancel").toBe(callsBefore)
    expect(summary).toMatchObject({ finished: true, rows: 24, pending: 0, succeeded: durable.size })
    expect(summary.failed).toEqual({ cancelled: 24 - durable.size })
    expect(sorted(outputs.map((o) => o.customId)), "the durable answers are the outputs").toEqual(sorted(durable))
    for (const f of failures) expect(f.class).toBe("cancelled")
    expect(sorted([...outputs.map((o) => o.key), ...failures.map((f) => f.key!)]), "every row once").toEqual(sorted(rows.map((r) => r.id)))
    const completed = eventsTagged(await readJournal(runDir), "OnlineCompleted")
    expect(completed.length).toBeGreaterThan(0)
    for (const e of completed) expect(e["cancelled"], `shard ${e.shard}`).toBe(true)
  })
})

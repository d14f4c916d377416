/**
 * `sluice webhook` end to end: a detached run with polling effectively off (`--poll-interval
 * 3600`), the emulator sending signed webhooks to `sluice webhook` in a child process, the
 * emulator's clock held and then advanced so the batches end. The run finishes with no cron, no
 * resume by the test. Forged and stale deliveries are refused, replayed ones answered 200, and none wakes anything.
 */
import type { ChildProcess } from "node:child_process"
import { randomBytes } from "node:crypto"
import { readFile, rm, writeFile } from "node:fs/promises"
import { advanceClock, getRequestCounts, getWebhooks, holdClock, sendWebhook, setWebhooks } from "@sluice/emulator/control"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { emulatorEnv, makeProject, runCli, spawnCli, startTestEmulator, type TempProject, type TestEmulator, writePipeline, writeRows } from "./support/cli.js"

const secret = `whsec_${randomBytes(32).toString("base64")}`
let project: TempProject
let emulator: TestEmulator
let server: ChildProcess
let serverLog = ""
let serverUrl = ""

/** Waits for `what` (polling every 100 ms); the bound only guards against a hang. */
const until = async <A>(what: () => Promise<A | undefined>, description: string): Promise<A> => {
  for (let i = 0; i < 1200; i++) {
    const a = await what()
    if (a !== undefined) return a
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`never: ${description}\n--- webhook server log ---\n${serverLog}`)
}

const resumes = (runDir: string) => serverLog.split("\n").filter((l) => l === `sluice webhook: resuming ${runDir}`).length
const finishes = (runDir: string) => serverLog.split("\n").filter((l) => l === `sluice webhook: resumed ${runDir}: finished`).length

beforeAll(async () => {
  project = await makeProject("sluice-webhook-")
  emulator = await startTestEmulator()
  await writeRows(project, "data/rows.jsonl", 10)
  await writePipeline(project, "hook.pipeline.ts", { name: "hook" })
  server = spawnCli(["webhook", "--port", "0", "--runs-dir", "runs"], { cwd: project.dir, env: { ...emulatorEnv(emulator.url), SLUICE_WEBHOOK_SECRET: secret } })
  server.stderr!.setEncoding("utf8").on("data", (d: string) => (serverLog += d))
  serverUrl = await new Promise<string>((resolve, reject) => {
    let out = ""
    server.stdout!.setEncoding("utf8").on("data", (d: string) => {
      out += d
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)
      if (m !== null) resolve(m[1]!)
    })
    server.on("exit", (code) => reject(new Error(`sluice webhook exited (${code}): ${serverLog}`)))
  })
  await setWebhooks(emulator.url, { url: `${serverUrl}/openai`, secret })
}, 120_000)

afterAll(async () => {
  server?.kill("SIGTERM")
  await emulator?.close()
  await project?.cleanup()
})

describe("sluice webhook", { timeout: 240_000 }, () => {
  it("a detached run with polling off finishes when the provider's webhooks arrive; forged, stale and replayed ones wake nothing", async () => {
    await holdClock(emulator.url)
    const env = emulatorEnv(emulator.url)
    const runDir = project.path("runs/hook")
    const submitted = await runCli(["run", "hook.pipeline.ts", "--run-dir", "runs/hook", "--detach", "--poll-interval", "3600", "--shard-size", "5", "--json"], { cwd: project.dir, env })
    expect(submitted.code, submitted.stderr).toBe(3)
    expect(JSON.parse(submitted.stdout)).toMatchObject({ finished: false, pending: 10, batches: 2 })
    const polledBefore = (await getRequestCounts(emulator.url))["GET /v1/batches/{id}"] ?? 0

    // The batches end (the emulator's clock moves); the emulator tells `sluice webhook`, which resumes the run.
    await advanceClock(emulator.url, 10 * 60_000)
    const status = await until(async () => {
      const s = await runCli(["status", runDir, "--json", "--no-refresh"], { cwd: project.dir, env })
      const parsed = JSON.parse(s.stdout)
      return parsed.finished === true ? parsed : undefined
    }, "the run finished")
    expect(status).toMatchObject({ finished: true, succeeded: 10, pending: 0 })
    const outputs = (await readFile(project.path("out/labeled.jsonl"), "utf8")).trim().split("\n")
    expect(outputs).toHaveLength(10)
    // Both events were delivered and accepted; the run was resumed (and polled) because of them.
    const delivered = await until(async () => {
      const valid = (await getWebhooks(emulator.url)).deliveries.filter((d) => d.variant === "valid")
      return valid.length >= 2 ? valid : undefined
    }, "both deliveries recorded")
    expect(delivered.map((d) => [d.type, d.status])).toEqual([["batch.completed", 200], ["batch.completed", 200]])
    expect((await getRequestCounts(emulator.url))["GET /v1/batches/{id}"] ?? 0).toBeGreaterThan(polledBefore)
    // Every resume the events started has ended (the second event's may follow the first's):
    // both were routed to the run, and after that the server let the run go.
    const lines = () => serverLog.split("\n")
    const routed = (id: string) => lines().some((l) => l.startsWith(`sluice webhook: ${id}: batch.completed`))
    const lastAbout = () => lines().filter((l) => l.includes(runDir)).at(-1)
    await until(
      async () => (delivered.every((d) => routed(d.webhook_id)) && lastAbout() === `sluice webhook: ${runDir}: nothing more to resume` ? true : undefined),
      "the resumes logged"
    )
    expect(resumes(runDir)).toBe(finishes(runDir))

    // Refused deliveries naming the run's batch: no resume.
    const batchId = delivered[0]!.batch_id
    const before = resumes(runDir)
    const finishedBefore = finishes(runDir)
    expect(before).toBeGreaterThanOrEqual(1)
    const forged = await sendWebhook(emulator.url, { variant: "forged", batch_id: batchId })
    const stale = await sendWebhook(emulator.url, { variant: "stale", batch_id: batchId })
    const replayed = await sendWebhook(emulator.url, { variant: "replay", webhook_id: delivered[0]!.webhook_id })
    // An authentic delivery again (a sender that missed the 200 redelivers): 200, and nothing done.
    expect([forged.status, stale.status, replayed.status]).toEqual([401, 401, 200])
    expect(serverLog).toContain(`rejected 401 (${forged.webhook_id}): no v1 signature matches`)
    expect(serverLog).toMatch(new RegExp(`rejected 401 \\(${stale.webhook_id}\\): timestamp \\d+ is more than 300 s from now`))
    expect(serverLog).toContain(`sluice webhook: ${replayed.webhook_id}: received before (a redelivery or a replay): answered 200, nothing done`)
    // Only an accepted delivery is logged as naming a run (and only those wake one).
    for (const d of [forged, stale]) expect(serverLog).not.toContain(`sluice webhook: ${d.webhook_id}:`)

    // A valid one afterwards is acted on: the deliveries before it, in order, woke nothing.
    const valid = await sendWebhook(emulator.url, { batch_id: batchId })
    expect(valid.status).toBe(200)
    await until(async () => (finishes(runDir) === finishedBefore + 1 ? true : undefined), "the valid delivery's resume")
    expect(resumes(runDir)).toBe(before + 1)

    // An unsigned request, and a malformed one, are refused with their status.
    const unsigned = await fetch(`${serverUrl}/openai`, { method: "POST", body: "{}" })
    expect(unsigned.status).toBe(400)
    // The secret never appears in the server's log.
    expect(serverLog).not.toContain(secret.slice(6))
  })

  it("a run locked by another process when its event comes is tried again, its lock never broken", async () => {
    await holdClock(emulator.url)
    const env = emulatorEnv(emulator.url)
    const runDir = project.path("runs/locked")
    const submitted = await runCli(["run", "hook.pipeline.ts", "--run-dir", "runs/locked", "--detach", "--poll-interval", "3600", "--shard-size", "10"], { cwd: project.dir, env })
    expect(submitted.code, submitted.stderr).toBe(3)
    // Another process (here: of another host, so nothing can tell it is gone) holds the run.
    const lock = project.path("runs/locked/run.lock")
    const foreign = JSON.stringify({ pid: 4242, host: "build-7.example.org", token: "f00d", boot: null, start: null, at: "2030-01-02T03:04:05.000Z" }) + "\n"
    await writeFile(lock, foreign)
    await advanceClock(emulator.url, 10 * 60_000)
    await until(async () => (serverLog.includes(`${runDir} is held by another process; trying again in 5s`) ? true : undefined), "the refused resume")
    expect(await readFile(lock, "utf8"), "the lock is left as it was").toBe(foreign)
    // The other process lets go: the next try collects the run.
    await rm(lock)
    await until(async () => (serverLog.includes(`resumed ${runDir}: finished`) ? true : undefined), "the run resumed once the lock was gone")
    const status = JSON.parse((await runCli(["status", runDir, "--json", "--no-refresh"], { cwd: project.dir, env })).stdout)
    expect(status).toMatchObject({ finished: true, succeeded: 10 })
  })

  it("webhook --help names the secret's variable and the options", async () => {
    const r = await runCli(["webhook", "--help"], { cwd: project.dir })
    for (const m of ["SLUICE_WEBHOOK_SECRET", "--port", "--host", "--runs-dir", "reverse proxy"]) expect(r.stdout).toContain(m)
  })

  it("a delivery for a batch no run holds is answered 200 and logged", async () => {
    const d = await sendWebhook(emulator.url, { batch_id: "batch_nobody" })
    expect(d.status).toBe(200)
    await until(async () => (serverLog.includes("batch_nobody: no run given holds this batch") ? true : undefined), "the log line")
  })
})

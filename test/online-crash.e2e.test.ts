/**
 * Crash safety online, end to end: the real CLI sends its rows to the emulator's real-time
 * endpoint and is killed with SIGKILL at exact points (SLUICE_FAILPOINT) — an answer received
 * and not yet appended, answers appended and not yet written, answers synced and their slots
 * not yet freed, a shard answered and not yet collected, a collection written to the sink and
 * not yet committed — then resumed. Whatever the point: the sink holds every row exactly once,
 * and by the emulator's ledger of real-time calls (keyed by the x-sluice-custom-id header)
 * the requests sent twice are at most `--concurrency`, the bound the README states.
 */
import { appendFile, readdir, readFile } from "node:fs/promises"
import { getInFlight, getLedger, setFaults } from "@sluice/emulator/control"
import { afterEach, describe, expect, it } from "vitest"
import { describeResult, makeProject, pipelineSource, readJsonl, runCli, spawnCli, startTestEmulator, writeRows, writeText } from "./support/cli.js"
import type { TempProject, TestEmulator } from "./support/cli.js"
import { readJournal, readJournalSoFar, readSink, waitFor } from "./support/runs.js"

const ROWS = 40
const CONCURRENCY = 4

// Set by each test; closed after it.
let emulator: TestEmulator
let project: TempProject

afterEach(async () => {
  await emulator?.close()
  await project?.cleanup()
})

const run = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  runCli(args, {
    cwd: project.dir,
    env: { OPENAI_BASE_URL: `${emulator.url}/v1`, OPENAI_API_KEY: "sk-test-fake-key", ANTHROPIC_BASE_URL: emulator.url, ANTHROPIC_API_KEY: "sk-ant-test", GEMINI_BASE_URL: emulator.url, GEMINI_API_KEY: "gemini-test", ...env }
  })

const runArgs = ["run", "pipeline.ts", "--run-dir", "runs/crash", "--shard-size", "10", "--concurrency", String(CONCURRENCY), "--poll-interval", "0.05"]

/** Requests the ledger shows answered more than once (each extra answer counts). */
const sentTwice = (calls: ReadonlyArray<{ readonly custom_id: string | null }>): number => {
  const seen = new Map<string, number>()
  for (const c of calls) seen.set(c.custom_id!, (seen.get(c.custom_id!) ?? 0) + 1)
  return [...seen.values()].reduce((extra, n) => extra + n - 1, 0)
}

// Every step of an online shard: started (nothing sent), an answer received and not appended,
// a group of answers buffered and not written, answers synced with their slots still taken, a
// shard answered and not collected (the first, the last), its rows in the sink and not
// committed, and just after a collection's commit.
const failpoints = [
  "after:OnlineStarted:2",
  "online-answered:7",
  "online-answered:23",
  "online-appended:2",
  "online-synced:5",
  "after:OnlineCompleted:1",
  "collect-before-commit:2",
  "after:Collected:1"
]

const setUp = async (options: Parameters<typeof startTestEmulator>[0], provider = "openai", model = "gpt-4o-mini") => {
  emulator = await startTestEmulator(options)
  project = await makeProject("sluice-online-crash-")
  await writeRows(project, "data/rows.jsonl", ROWS)
  await writeText(project, "pipeline.ts", pipelineSource({ name: "online-crash", provider, model }).replace("output: Label", 'mode: "online",\n    output: Label'))
}

describe("crash and resume online", { timeout: 180_000 }, () => {
  it.each([
    ...failpoints.map((f) => ["openai", f, "gpt-4o-mini"]),
    ["anthropic", "online-answered:7", "claude-haiku-4-5"],
    ["gemini", "online-answered:7", "gemini-2.5-flash"]
  ])("%s: SIGKILL at %s, then resume: every row once in the sink, at most --concurrency requests sent twice", async (provider, failpoint, model) => {
    // A few ms of latency keeps several requests in flight at the kill.
    await setUp({ latencyMs: 3 }, provider, model)

    const crashed = await run(runArgs, { SLUICE_FAILPOINT: failpoint })
    expect(crashed.signal, `not killed at ${failpoint}: ${describeResult(crashed)}`).toBe("SIGKILL")
    const before = (await getLedger(emulator.url)).calls.length
    // The rows of the shards the crashed run had journaled answered: durable, never sent again.
    const answered = (await readJournalSoFar(project.path("runs", "crash"))).filter((e) => e._tag === "OnlineCompleted").map((e) => String(e["shard"]))
    const durable = new Set<string>()
    for (const shard of answered) {
      for (const row of await readJsonl<{ id: string }>(project.path("runs", "crash", "shards", `${shard}.rows.jsonl`))) durable.add(row.id)
    }

    const resumed = await run(runArgs)
    expect(resumed.code, describeResult(resumed)).toBe(0)

    const sink = await readSink(project.path("out", "labeled.jsonl"))
    const keys = sink.map((l) => l.key)
    expect(keys.length).toBe(ROWS)
    expect(new Set(keys).size).toBe(ROWS)

    const { calls } = await getLedger(emulator.url)
    // No faults here: every call was answered (a call whose client had gone is `lost`, still paid).
    for (const c of calls) expect(c.status, `call ${c.seq}`).toBe(200)
    // Every row was asked for, once — plus at most the requests in flight at the kill.
    expect(new Set(calls.map((c) => c.custom_id)).size).toBe(ROWS)
    const again = sentTwice(calls)
    expect(again, `${again} requests sent twice`).toBeLessThanOrEqual(CONCURRENCY)
    // An answer killed before it was written must be asked for again: the ledger sees it.
    if (failpoint.startsWith("online-answered") || failpoint.startsWith("online-appended")) expect(again).toBeGreaterThanOrEqual(1)
    expect(calls.slice(before).filter((c) => durable.has(c.custom_id!)), "rows of answered shards sent again").toEqual([])
    if (failpoint.startsWith("after:OnlineCompleted") || failpoint.startsWith("collect") || failpoint.startsWith("after:Collected")) {
      expect(durable.size).toBeGreaterThanOrEqual(10)
    }
    // The run really went online, and the resume took up the crashed run's shards.
    const journal = await readJournal(project.path("runs", "crash"))
    expect(journal.filter((e) => e._tag === "Created")).toEqual([])
    expect(journal.filter((e) => e._tag === "OnlineCompleted").length).toBe(ROWS / 10)
  })

  it("SIGKILL with --concurrency requests held in flight: the resume sends exactly those again", async () => {
    await setUp({})
    // The emulator holds every request it admits: the run fills its slots and can send no more.
    await setFaults(emulator.url, { holdRequests: true })
    const child = spawnCli(runArgs, {
      cwd: project.dir,
      env: { OPENAI_BASE_URL: `${emulator.url}/v1`, OPENAI_API_KEY: "sk-test-fake-key" }
    })
    const exited = new Promise((resolve) => child.on("exit", (_code, signal) => resolve(signal)))
    await waitFor("the run's slots all in flight", async () => ((await getInFlight(emulator.url)).held === CONCURRENCY ? true : undefined), { timeoutMs: 120_000 })
    child.kill("SIGKILL")
    expect(await exited).toBe("SIGKILL")
    await setFaults(emulator.url, { holdRequests: false })
    // The crashed run sent exactly its slots' worth, all answered after it had gone (lost, still paid).
    const crashedCalls = (await getLedger(emulator.url)).calls
    expect(crashedCalls.length).toBe(CONCURRENCY)
    for (const c of crashedCalls) expect(c.lost, `call ${c.seq}`).toBe(true)

    const resumed = await run(runArgs)
    expect(resumed.code, describeResult(resumed)).toBe(0)
    const keys = (await readSink(project.path("out", "labeled.jsonl"))).map((l) => l.key)
    expect([keys.length, new Set(keys).size]).toEqual([ROWS, ROWS])
    const { calls } = await getLedger(emulator.url)
    expect(new Set(calls.map((c) => c.custom_id)).size).toBe(ROWS)
    // The bound, reached: the requests in flight at the kill, and only they, were sent again.
    expect(sentTwice(calls)).toBe(CONCURRENCY)
    const resent = new Set(calls.slice(CONCURRENCY).map((c) => c.custom_id))
    for (const c of crashedCalls) expect(resent.has(c.custom_id), c.custom_id!).toBe(true)
  })

  it("a crash mid-append (a torn last line in a shard's online file): the resume drops it and finishes, every row once", async () => {
    await setUp({ latencyMs: 3 })
    const crashed = await run(runArgs, { SLUICE_FAILPOINT: "online-synced:6" })
    expect(crashed.signal, describeResult(crashed)).toBe("SIGKILL")
    // What a kill in the middle of a write leaves: the start of an answer, no newline.
    const completed = new Set((await readJournalSoFar(project.path("runs", "crash"))).filter((e) => e._tag === "OnlineCompleted").map((e) => `${e["shard"]}.online.jsonl`))
    const open = (await readdir(project.path("runs", "crash", "shards"))).filter((f) => f.endsWith(".online.jsonl") && !completed.has(f))
    expect(open.length).toBeGreaterThan(0)
    for (const file of open) await appendFile(project.path("runs", "crash", "shards", file), '{"_tag":"Succeeded","customId":"label-r')
    const before = (await getLedger(emulator.url)).calls.length

    const resumed = await run(runArgs)
    expect(resumed.code, describeResult(resumed)).toBe(0)
    const keys = (await readSink(project.path("out", "labeled.jsonl"))).map((l) => l.key)
    expect([keys.length, new Set(keys).size]).toEqual([ROWS, ROWS])
    const { calls } = await getLedger(emulator.url)
    expect(sentTwice(calls)).toBeLessThanOrEqual(CONCURRENCY)
    expect(calls.length).toBeGreaterThan(before)
    // Each online file now holds whole answers only, one per row it was asked for.
    for (const file of open) {
      const text = await readFile(project.path("runs", "crash", "shards", file), "utf8")
      expect(text.endsWith("\n")).toBe(true)
      const ids = text.trim().split("\n").map((l) => (JSON.parse(l) as { customId: string }).customId)
      expect(new Set(ids).size).toBe(ids.length)
    }
  })
})

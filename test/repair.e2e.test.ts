/**
 * Repair of parse failures: answers that do not match the output Schema go back to the model
 * with the decode error, in a later shard, and the repaired answers land in the sink.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { emulatorEnv, getLedger, makeProject, readJsonl, runCli, spawnCli, startTestEmulator, writeRows } from "./support/cli.js"
import type { TempProject, TestEmulator } from "./support/cli.js"
import {
  eventsTagged,
  holdClock,
  readFailures,
  readJournalSoFar,
  readSink,
  releaseClock,
  runFlags,
  runIdOf,
  setFaults,
  waitFor,
  writeRecoveryPipeline
} from "./support/runs.js"

let emulator: TestEmulator
let project: TempProject

beforeAll(async () => {
  emulator = await startTestEmulator()
  project = await makeProject("sluice-repair-")
  await writeRows(project, "data/rows.jsonl", 60)
  await writeRecoveryPipeline(project, "repair.pipeline.ts", { name: "repair", system: "Label the review (repair test)." })
})

afterAll(async () => {
  await emulator?.close()
  await project?.cleanup()
})

/** Each test spawns the CLI several times (tsx loads TypeScript on each start, seconds on a busy machine): be generous. */
const SLOW = { timeout: 180_000 }

describe("repair of parse failures", SLOW, () => {
  it("sends invalid answers back with the decode error; the repaired answers are decoded into the sink", async () => {
    // Fault rates are fixed per batch when it is created: the first batches answer a third of
    // their rows with JSON that breaks the schema, the repair batches answer properly. The
    // emulator's clock stands still until the fault is off: no repair batch exists before.
    await setFaults(emulator.url, { invalidJsonRate: 0.35 })
    await holdClock(emulator.url)
    const runDir = project.path("runs/repair")
    const child = spawnCli(["run", "repair.pipeline.ts", ...runFlags("runs/repair", 20, ["--concurrency", "3"])], {
      cwd: project.dir,
      env: emulatorEnv(emulator.url)
    })
    let stderr = ""
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d))
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
    let code: number | null | undefined
    void exited.then((c) => (code = c))
    try {
      await waitFor(
        "the first three batches",
        async () => (code !== undefined || eventsTagged(await readJournalSoFar(runDir), "Created").length >= 3 ? true : undefined),
        { timeoutMs: 120_000 }
      )
      expect(code, stderr).toBeUndefined()
    } finally {
      await setFaults(emulator.url, { invalidJsonRate: 0 })
      await releaseClock(emulator.url)
    }
    expect(await exited, stderr).toBe(0)

    const journal = await readJournalSoFar(runDir)
    const repairs = eventsTagged(journal, "ShardPlanned").filter((e) => e["parent"] !== null)
    expect(repairs.length).toBeGreaterThan(0)
    // The repair requests carry new custom_ids (…-r1) and the conversation so far.
    const repairLines = await readJsonl<{ custom_id: string; body: { messages: Array<{ role: string; content: string }> } }>(
      project.path(`runs/repair/shards/${repairs[0]!["shard"]}.jsonl`)
    )
    for (const line of repairLines) {
      expect(line.custom_id).toMatch(/-r1$/)
      const roles = line.body.messages.map((m) => m.role)
      expect(roles).toEqual(["system", "user", "assistant", "user"])
      expect(line.body.messages[3]!.content).toContain("does not match the required JSON schema")
    }
    const results = await readJsonl<{ _tag: string; customId: string }>(project.path("runs/repair/results.jsonl"))
    const repairedIds = new Set(repairLines.map((l) => l.custom_id))
    expect(results.filter((r) => repairedIds.has(r.customId) && r._tag === "Succeeded").length).toBe(repairedIds.size)

    const sink = await readSink(project.path("out/labeled.jsonl"))
    expect(sink.length).toBe(60)
    expect(new Set(sink.map((r) => r.input.id)).size).toBe(60)
    expect(await readFailures(runDir)).toEqual([])

    // Every custom_id was delivered as a success once: a repair is a new request, not a resend.
    const runId = await runIdOf(runDir)
    const ours = new Set((await getLedger(emulator.url)).batches.filter((b) => b.metadata?.["sluice_run"] === runId).map((b) => b.id))
    const delivered = (await getLedger(emulator.url)).deliveries.filter((d) => ours.has(d.batch_id)).map((d) => d.custom_id)
    expect(new Set(delivered).size).toBe(delivered.length)
  })

  it("rows that still fail after the attempt budget end as parse failures with the last error", async () => {
    await writeRecoveryPipeline(project, "strict.pipeline.ts", { name: "strict", system: "Label (attempt budget test).", maxAttempts: 2, sink: "out/strict.jsonl" })
    await setFaults(emulator.url, { invalidJsonRate: 1 })
    try {
      const result = await runCli(["run", "strict.pipeline.ts", ...runFlags("runs/strict", 30)], { cwd: project.dir, env: emulatorEnv(emulator.url) })
      expect(result.code, result.stderr).toBe(1)
      const failures = await readFailures(project.path("runs/strict"))
      expect(failures.length).toBe(60)
      for (const f of failures) {
        expect(f.class).toBe("parse")
        expect(f.attempt).toBe(2)
        expect(f.custom_id).toMatch(/-r1$/)
      }
    } finally {
      await setFaults(emulator.url, { invalidJsonRate: 0 })
    }
  })
})

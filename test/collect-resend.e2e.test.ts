/**
 * Collection reads a shard's request file only for the rows it resends, in a second pass
 * (Collector.ts). The hazard: a resent row paired with another row's request line. Here each
 * shard mixes rows answered from the response cache (no request line) with rows sent, and the
 * provider drops some result lines: every retry batch must hold exactly the rows its parent
 * lost, and every row must end once — in the sink or, its attempts spent, as `missing`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { describeResult, emulatorEnv, getLedger, makeProject, runCli, startTestEmulator, writeRows, writeText } from "./support/cli.js"
import type { Row, TempProject, TestEmulator } from "./support/cli.js"
import {
  batchesOfRun,
  deliveredBy,
  eventsTagged,
  readFailures,
  readJournal,
  readSink,
  recoveryPipelineSource,
  runFlags,
  runIdOf,
  setFaults
} from "./support/runs.js"

let emulator: TestEmulator
let project: TempProject
let rows: ReadonlyArray<Row>

// A batch whose every line was dropped completes without an output file: its rows come back
// missing at once (--output-file-wait 0) rather than after the default 10 minutes.
const run = (file: string, runDir: string) =>
  runCli(["run", file, ...runFlags(runDir, 10, ["--cache-dir", "cache", "--output-file-wait", "0"]), "--json"], { cwd: project.dir, env: emulatorEnv(emulator.url) })

beforeAll(async () => {
  emulator = await startTestEmulator()
  project = await makeProject("sluice-resend-")
  rows = await writeRows(project, "data/all.jsonl", 40)
  await writeRows(project, "data/even.jsonl", rows.filter((_, i) => i % 2 === 0))
  const spec = { name: "resend", maxAttempts: 2 }
  await writeText(project, "even.pipeline.ts", recoveryPipelineSource({ ...spec, source: "data/even.jsonl", sink: "out/even.jsonl" }))
  await writeText(project, "all.pipeline.ts", recoveryPipelineSource({ ...spec, source: "data/all.jsonl", sink: "out/all.jsonl" }))
})

afterAll(async () => {
  await emulator?.close()
  await project?.cleanup()
})

describe("collection resends the right request lines", { timeout: 180_000 }, () => {
  it("shards of cached and sent rows, with result lines dropped: each retry batch holds exactly the lost rows", async () => {
    const warm = await run("even.pipeline.ts", "runs/even")
    expect(warm.code, describeResult(warm)).toBe(0)

    // Every other row now comes from the cache (a shard of 10 requests holds 10 of them, between
    // its sent rows); about a third of the result lines of the sent rows are lost.
    await setFaults(emulator.url, { dropLines: 0.34 })
    const result = await run("all.pipeline.ts", "runs/all")
    await setFaults(emulator.url, { dropLines: 0 })
    // 1: rows whose attempts were spent ended failed; anything else is not this test's outcome.
    expect([0, 1], describeResult(result)).toContain(result.code)
    const runDir = project.path("runs/all")

    const events = await readJournal(runDir)
    const planned = eventsTagged(events, "ShardPlanned")
    const firstAttempts = planned.filter((e) => e["attempt"] === 1)
    expect(firstAttempts.length).toBe(2)
    for (const e of firstAttempts) expect(e["cachedRows"], `cached rows of ${e.shard}`).toBeGreaterThan(0)
    expect(firstAttempts.reduce((n, e) => n + (e["cachedRows"] as number), 0)).toBe(20)

    const ledger = await getLedger(emulator.url)
    const batches = batchesOfRun(ledger, await runIdOf(runDir))
    const collected = new Map(eventsTagged(events, "Collected").map((e) => [e.shard!, e]))
    let resent = 0
    for (const batch of batches) {
      const shard = batch.metadata!["sluice_shard"]!
      const delivered = new Set(deliveredBy(ledger, batch.id))
      const lost = batch.custom_ids.filter((id) => !delivered.has(id))
      const c = collected.get(shard)!
      if (lost.length === 0 || planned.find((e) => e.shard === shard)!["attempt"] === 2) continue
      resent += lost.length
      expect(c["rescheduled"], `rows of ${shard} with no result line`).toBe(lost.length)
      const retry = batches.find((b) => b.metadata!["sluice_shard"] === c["retryShard"])
      expect(retry, `the retry batch of ${shard}`).toBeDefined()
      expect([...retry!.custom_ids].sort(), `the requests resent for ${shard}`).toEqual([...lost].sort())
    }
    expect(resent, "lines were dropped, so rows were resent").toBeGreaterThan(0)

    // Every row once: in the sink, or failed as missing with its two attempts spent.
    const sink = await readSink(project.path("out/all.jsonl"))
    const failures = await readFailures(runDir)
    expect(failures.every((f) => f.class === "missing" && f.attempt === 2), JSON.stringify(failures)).toBe(true)
    expect([...sink.map((s) => s.key), ...failures.map((f) => f.key!)].sort()).toEqual(rows.map((r) => r.id).sort())
    expect(result.code, describeResult(result)).toBe(failures.length === 0 ? 0 : 1)
  })
})

/**
 * Cost planning: `sluice estimate` projects tokens and cost without submitting, and agrees
 * with what the run then reports; `--budget` stops submission at the limit and says how far
 * it got, and a resume with a larger budget finishes the run.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  emulatorEnv,
  fastRunFlags,
  getLedger,
  makeProject,
  runCli,
  startTestEmulator,
  writePipeline,
  writeRows
} from "./support/cli.js"
import type { TempProject, TestEmulator } from "./support/cli.js"

let emulator: TestEmulator
let project: TempProject

beforeAll(async () => {
  emulator = await startTestEmulator()
  project = await makeProject("sluice-estimate-")
  // Longer, varied texts so that token counts are not trivial.
  await writeRows(
    project,
    "data/rows.jsonl",
    Array.from({ length: 120 }, (_, i) => ({
      id: `e${i + 1}`,
      text: `Review ${i + 1}: ${"The blender is loud but crushes ice well; ".repeat(1 + (i % 5))}would I buy it again? ${i % 2 ? "Yes." : "No."}`
    }))
  )
  await writePipeline(project, "estimate.pipeline.ts", { name: "estimate" })
})

afterAll(async () => {
  await emulator?.close()
  await project?.cleanup()
})

/** Each test spawns the CLI several times (tsx loads TypeScript on each start, seconds on a busy machine): be generous. */
const SLOW = { timeout: 180_000 }

describe("sluice estimate", SLOW, () => {
  it("projects rows, shards, tokens and cost without submitting; the run's input tokens agree within 5%", async () => {
    const before = (await getLedger(emulator.url)).batches.length
    const est = await runCli(["estimate", "estimate.pipeline.ts", "--json", "--shard-size", "50"], { cwd: project.dir, env: {} })
    expect(est.code, est.stderr).toBe(0)
    const e = JSON.parse(est.stdout)
    expect(e).toMatchObject({ rows: 120, shards: 3, model: "gpt-4o-mini", exactTokens: true })
    expect(e.inputTokens).toBeGreaterThan(120 * 20)
    expect(e.cost.batch).toBeGreaterThan(0)
    expect(e.cost.realtime).toBeCloseTo(e.cost.batch * 2, 10)
    expect((await getLedger(emulator.url)).batches.length).toBe(before) // nothing submitted

    const text = await runCli(["estimate", "estimate.pipeline.ts"], { cwd: project.dir, env: {} })
    expect(text.stdout).toContain("120 rows")
    expect(text.stdout).toContain("batch prices")

    const run = await runCli(["run", "estimate.pipeline.ts", "--run-dir", "runs/est", "--json", ...fastRunFlags(50)], {
      cwd: project.dir,
      env: emulatorEnv(emulator.url)
    })
    expect(run.code, run.stderr).toBe(0)
    const summary = JSON.parse(run.stdout)
    expect(Math.abs(summary.usage.input - e.inputTokens) / summary.usage.input).toBeLessThan(0.05)
  })
})

describe("sluice run --budget", SLOW, () => {
  it("stops submitting at the budget, says how far it got, and a higher budget finishes the run", async () => {
    const est = JSON.parse(
      (await runCli(["estimate", "estimate.pipeline.ts", "--json", "--shard-size", "20"], { cwd: project.dir, env: {} })).stdout
    )
    expect(est.shards).toBe(6)
    // Room for about half of the projected cost: some shards go, the rest wait.
    const budget = est.cost.batch / 2
    const env = emulatorEnv(emulator.url)
    const first = await runCli(["run", "estimate.pipeline.ts", "--run-dir", "runs/budget", "--budget", String(budget), ...fastRunFlags(20)], {
      cwd: project.dir,
      env
    })
    expect(first.code, first.stderr).toBe(3)
    expect(first.stderr).toContain("budget of $")
    expect(first.stderr).toMatch(/shards \(\d+ rows\) not submitted/)
    const manifest = JSON.parse(await import("node:fs/promises").then((fs) => fs.readFile(project.path("runs/budget/manifest.json"), "utf8")))
    const submitted = (await getLedger(emulator.url)).batches.filter((b) => b.metadata?.["sluice_run"] === manifest.runId)
    expect(submitted.length).toBeGreaterThan(0)
    expect(submitted.length).toBeLessThan(6)

    const second = await runCli(["resume", "runs/budget", "--budget", String(est.cost.batch * 2), "--poll-interval", "0.05"], {
      cwd: project.dir,
      env
    })
    expect(second.code, second.stderr).toBe(0)
    const all = (await getLedger(emulator.url)).batches.filter((b) => b.metadata?.["sluice_run"] === manifest.runId)
    expect(new Set(all.map((b) => b.metadata?.["sluice_shard"])).size).toBe(all.length) // no shard twice
    expect(all.length).toBeGreaterThanOrEqual(6)
  })
})

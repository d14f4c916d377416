/**
 * The CLI refuses what would waste money or hang: numeric flags out of range, a budget it
 * cannot price, an estimate of a run that would be refused; it counts the output schema in
 * the input, fails rows over their model's context window before sending them, and says at
 * once when a batch completed without an output file — whose wait is configurable.
 */
import { existsSync } from "node:fs"
import { readFile } from "node:fs/promises"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  type CliResult,
  describeResult,
  emulatorEnv,
  fastRunFlags,
  getLedger,
  listFilesRecursive,
  makeProject,
  readJsonl,
  runCli,
  spawnCli,
  startTestEmulator,
  type TempProject,
  type TestEmulator,
  writeLines,
  writePipeline,
  writeRows,
  writeText
} from "./support/cli.js"
import * as Estimate from "../packages/runner/src/Estimate.js"
import { batchesOfRun, eventsTagged, readFailures, readJournal, runIdOf, setFaults, waitFor } from "./support/runs.js"

/** Each CLI start loads TypeScript through tsx: several seconds on a busy machine. */
const SLOW = { timeout: 180_000 }

/** Every file under the project (node_modules is a symlink: not followed). */
const snapshot = async (project: TempProject): Promise<Array<string>> => (await listFilesRecursive(project.dir)).sort()

const pipelineWithout = (name: string, output: boolean) => `import { Pipeline, Prompt, Sink, Source } from "@sluice/core"
import { Schema } from "effect"

const Review = Schema.Struct({ id: Schema.String, text: Schema.String })
const Label = Schema.Struct({ sentiment: Schema.Literal("positive", "negative", "neutral"), topics: Schema.Array(Schema.String) })

export default Pipeline.make(${JSON.stringify(name)}).pipe(
  Pipeline.from(Source.jsonl("data/rows.jsonl", Review), { key: (r) => r.id }),
  Pipeline.batch("label", {
    provider: "openai",
    model: "gpt-4o-mini",
    prompt: (r) => Prompt.chat({ system: "You label product reviews.", user: r.text })${output ? ",\n    output: Label" : ""}
  }),
  Pipeline.to(Sink.jsonl("out/${name}.jsonl"))
)
`

// ---------------------------------------------------------------------------------------------
// Numeric flags
// ---------------------------------------------------------------------------------------------

describe("numeric flags out of range: exit 2, the flag, its range and the value, nothing written", SLOW, () => {
  let project: TempProject
  let before: Array<string>

  beforeAll(async () => {
    project = await makeProject("sluice-flags-")
    await writeRows(project, "data/rows.jsonl", 3)
    await writePipeline(project, "p.pipeline.ts", { name: "flags" })
    // resume, retry and cancel take a run directory; the flags are refused before it is read.
    await writeText(project, "runs/r/keep.txt", "untouched\n")
    before = await snapshot(project)
  })
  afterAll(() => project?.cleanup())

  // Every flag's range is checked in process through the same parser (packages/runner/test/Flags.test.ts);
  // here each command once, through the real executable.
  const run = ["run", "p.pipeline.ts"]
  const cases: ReadonlyArray<readonly [ReadonlyArray<string>, string, string, string]> = [
    [run, "--concurrency", "0", "--concurrency must be an integer from 1 to 10000, got 0"],
    [run, "--shard-size", "0", "--shard-size must be an integer from 1 to 1000000, got 0"],
    [run, "--poll-interval", "0", "--poll-interval must be a number of seconds from 0.01 to 3600, got 0"],
    [run, "--budget", "-1", "--budget must be a number of USD above 0, got -1"],
    [["resume", "runs/r"], "--output-tokens", "0", "--output-tokens must be an integer from 1 to 1000000, got 0"],
    [["retry", "runs/r"], "--concurrency", "20000", "--concurrency must be an integer from 1 to 10000, got 20000"],
    [["cancel", "runs/r"], "--output-file-wait", "-5", "--output-file-wait must be a number of seconds from 0 to 86400, got -5"],
    [["estimate", "p.pipeline.ts"], "--shard-size", "-3", "--shard-size must be an integer from 1 to 1000000, got -3"],
    [["emulator"], "--port", "70000", "--port must be an integer from 0 to 65535, got 70000"],
    [["emulator"], "--error-rate", "1.5", "--error-rate must be a number from 0 to 1, got 1.5"],
    [["emulator"], "--rpm-limit", "0", "--rpm-limit must be a number above 0 and at most 1000000000, got 0"]
  ]

  describe.concurrent("each command and flag", () => {
    it.each(cases)("%j %s %s", async (command, flag, value, message) => {
      // An emulator that accepted its flag would listen forever: the harness kills it (exit null).
      const r = await runCli([...command, flag, value], { cwd: project.dir, timeoutMs: 60_000 })
      expect(r.code, describeResult(r)).toBe(2)
      expect(r.stderr).toContain(message)
      expect(await snapshot(project)).toEqual(before)
    })
  })
})

// ---------------------------------------------------------------------------------------------
// Budget and prices
// ---------------------------------------------------------------------------------------------

describe("--budget with a model the price table does not know", SLOW, () => {
  let emulator: TestEmulator
  let project: TempProject

  beforeAll(async () => {
    emulator = await startTestEmulator()
    project = await makeProject("sluice-prices-")
    await writeRows(project, "data/rows.jsonl", 12)
    // A typo: without a price, a budget would not hold anything back.
    await writePipeline(project, "typo.pipeline.ts", { name: "typo", model: "gpt-4o-minni" })
    // A real model the built-in table does not list.
    await writePipeline(project, "new.pipeline.ts", { name: "new", model: "gpt-5-mini" })
    await writeText(
      project,
      "prices.json",
      JSON.stringify({
        date: "2026-12-01",
        models: {
          "gpt-5-mini": {
            realtime: { input: 0.25, cachedInput: 0.025, output: 2 },
            batch: { input: 0.125, cachedInput: 0.0125, output: 1 }
          }
        }
      })
    )
    await writeText(project, "broken-prices.json", JSON.stringify({ models: { "gpt-5-mini": { batch: { input: -1, cachedInput: 0, output: 1 } } } }))
  })
  afterAll(async () => {
    await emulator?.close()
    await project?.cleanup()
  })

  it("is refused before anything is written or sent, naming the model and how to give prices", async () => {
    const before = await snapshot(project)
    const r = await runCli(["run", "typo.pipeline.ts", "--budget", "5", ...fastRunFlags(5)], { cwd: project.dir, env: emulatorEnv(emulator.url) })
    expect(r.code, describeResult(r)).toBe(2)
    expect(r.stderr).toContain(`"gpt-4o-minni"`)
    expect(r.stderr).toContain("--prices FILE")
    expect(r.stderr).toContain("SLUICE_PRICES")
    expect(await snapshot(project)).toEqual(before)
    expect((await getLedger(emulator.url)).batches).toEqual([])
  })

  it("runs with prices from --prices, which also price its summary; SLUICE_PRICES prices estimate; a broken file is named", async () => {
    const env = emulatorEnv(emulator.url)
    const refused = await runCli(["run", "new.pipeline.ts", "--run-dir", "runs/new", "--budget", "5", ...fastRunFlags(5)], { cwd: project.dir, env })
    expect(refused.code, describeResult(refused)).toBe(2)
    expect(refused.stderr).toContain(`"gpt-5-mini"`)

    const r = await runCli(
      ["run", "new.pipeline.ts", "--run-dir", "runs/new", "--budget", "5", "--prices", "prices.json", "--json", ...fastRunFlags(5)],
      { cwd: project.dir, env }
    )
    expect(r.code, describeResult(r)).toBe(0)
    const summary = JSON.parse(r.stdout)
    expect(summary.succeeded).toBe(12)
    expect(summary.usage.input).toBeGreaterThan(0)
    const { input, cached, output } = summary.usage
    expect(summary.cost.batch).toBeCloseTo(((input - cached) * 0.125 + cached * 0.0125 + output * 1) / 1e6, 12)
    expect(summary.cost.realtime).toBeCloseTo(((input - cached) * 0.25 + cached * 0.025 + output * 2) / 1e6, 12)
    expect(summary.prices).toContain("prices.json (2026-12-01)")
    // The same prices price the run's status later.
    const status = await runCli(["status", "runs/new", "--no-refresh", "--json", "--prices", "prices.json"], { cwd: project.dir })
    expect(status.code, describeResult(status)).toBe(0)
    expect(JSON.parse(status.stdout).cost).toEqual(summary.cost)

    const priced = await runCli(["estimate", "new.pipeline.ts", "--json"], { cwd: project.dir, env: { SLUICE_PRICES: "prices.json" } })
    expect(priced.code, describeResult(priced)).toBe(0)
    expect(JSON.parse(priced.stdout).cost.batch).toBeGreaterThan(0)

    const broken = await runCli(["estimate", "new.pipeline.ts", "--prices", "broken-prices.json"], { cwd: project.dir })
    expect(broken.code, describeResult(broken)).toBe(2)
    expect(broken.stderr).toContain("prices file broken-prices.json")
    expect(broken.stderr).toContain("models.gpt-5-mini.batch.input")
  })
})

// ---------------------------------------------------------------------------------------------
// estimate
// ---------------------------------------------------------------------------------------------

describe("sluice estimate refuses what run would refuse, counts schemas, warns about context windows", SLOW, () => {
  let project: TempProject

  beforeAll(async () => {
    project = await makeProject("sluice-estimate-guards-")
    await writeRows(project, "data/rows.jsonl", 8)
    await writeLines(project, "data/bad.jsonl", [
      JSON.stringify({ id: "b1", text: "fine" }),
      JSON.stringify({ id: "b2", text: 42 }),
      JSON.stringify({ id: "b3", text: "fine too" })
    ])
  })
  afterAll(() => project?.cleanup())

  it("exits 2 for an unknown provider (a known one needs no API key: see estimate.e2e)", async () => {
    await writePipeline(project, "unknown.pipeline.ts", { name: "unknown", provider: "openaii" })
    const unknown = await runCli(["estimate", "unknown.pipeline.ts"], { cwd: project.dir })
    expect(unknown.code, describeResult(unknown)).toBe(2)
    expect(unknown.stderr).toContain(`unknown provider "openaii"`)
  })

  it("exits 2 at an invalid row under onInvalid \"fail\", naming it; counts it under \"skip\"", async () => {
    await writePipeline(project, "fail.pipeline.ts", { name: "fail", source: "data/bad.jsonl" })
    const fail = await runCli(["estimate", "fail.pipeline.ts"], { cwd: project.dir })
    expect(fail.code, describeResult(fail)).toBe(2)
    expect(fail.stderr).toContain("data/bad.jsonl:2")
    await writePipeline(project, "skip.pipeline.ts", { name: "skip", source: "data/bad.jsonl", onInvalid: "skip" })
    const skip = await runCli(["estimate", "skip.pipeline.ts", "--json"], { cwd: project.dir })
    expect(skip.code, describeResult(skip)).toBe(0)
    expect(JSON.parse(skip.stdout)).toMatchObject({ rows: 2, invalid: 1 })
  })

  it("counts the output schema's tokens as input, and says they are approximate", async () => {
    await writeText(project, "with.pipeline.ts", pipelineWithout("with", true))
    await writeText(project, "without.pipeline.ts", pipelineWithout("without", false))
    const withSchema = await runCli(["estimate", "with.pipeline.ts", "--json"], { cwd: project.dir })
    const without = await runCli(["estimate", "without.pipeline.ts", "--json"], { cwd: project.dir })
    expect(withSchema.code, describeResult(withSchema)).toBe(0)
    const a = JSON.parse(withSchema.stdout)
    const b = JSON.parse(without.stdout)
    expect(b.schemaTokens).toBe(0)
    expect(a.schemaTokens).toBeGreaterThan(8 * 20) // the Label schema is dozens of tokens, per row
    expect(a.inputTokens - b.inputTokens).toBe(a.schemaTokens)
    // What the text output says of the same figures.
    expect(Estimate.render(a)).toContain(`${a.schemaTokens} of them for the output schema, approximate`)
  })

  it("says \"approximate\" for a model without a tokenizer, per stage", async () => {
    await writePipeline(project, "claude.pipeline.ts", { name: "claude", provider: "anthropic", model: "claude-haiku-4-5" })
    const r = await runCli(["estimate", "claude.pipeline.ts", "--json"], { cwd: project.dir })
    expect(r.code, describeResult(r)).toBe(0)
    const e = JSON.parse(r.stdout)
    expect(e.exactTokens).toBe(false)
    expect(e.stages).toEqual([
      { name: "label", provider: "anthropic", model: "claude-haiku-4-5", tokenizer: "approximate", contextWindow: 200000, estimated: true }
    ])
    expect(Estimate.render(e)).toContain("approximate: about 4 characters a token")
  })
})

// ---------------------------------------------------------------------------------------------
// Context windows
// ---------------------------------------------------------------------------------------------

describe("requests over the model's context window", SLOW, () => {
  let emulator: TestEmulator
  let project: TempProject
  const long = new Set(["w3", "w6", "w7"])

  beforeAll(async () => {
    emulator = await startTestEmulator()
    project = await makeProject("sluice-window-")
    await writeRows(
      project,
      "data/rows.jsonl",
      Array.from({ length: 8 }, (_, i) => {
        const id = `w${i + 1}`
        return { id, text: long.has(id) ? `A long review: ${"the blender is loud but it crushes ice well, ".repeat(20)}` : `Short review ${i + 1}.` }
      })
    )
    await writePipeline(project, "window.pipeline.ts", { name: "window" })
    // A tiny window keeps the data small: short rows are ~80 tokens with the schema, long ones ~280.
    await writeText(project, "window-prices.json", JSON.stringify({ models: { "gpt-4o-mini": { contextWindow: 150 } } }))
  })
  afterAll(async () => {
    await emulator?.close()
    await project?.cleanup()
  })

  it("estimate warns with their count and locations; run fails them unsent (context_length) and finishes the rest", async () => {
    const est = await runCli(["estimate", "window.pipeline.ts", "--prices", "window-prices.json", "--json"], { cwd: project.dir })
    expect(est.code, describeResult(est)).toBe(0)
    const e = JSON.parse(est.stdout)
    expect(e.overContextWindow).toMatchObject({ count: 3, model: "gpt-4o-mini", contextWindow: 150 })
    // Not submitted, so not among the rows and tokens the estimate prices.
    expect(e.rows).toBe(5)
    expect(e.overContextWindow.first.map((f: { location: string }) => f.location)).toEqual(["data/rows.jsonl:3", "data/rows.jsonl:6", "data/rows.jsonl:7"])
    expect(Estimate.render(e)).toContain(
      "warning: 3 requests over gpt-4o-mini's context window of 150 tokens; a run fails them unsent (context_length): data/rows.jsonl:3 ("
    )

    const r = await runCli(["run", "window.pipeline.ts", "--run-dir", "runs/w", "--prices", "window-prices.json", ...fastRunFlags(10)], {
      cwd: project.dir,
      env: emulatorEnv(emulator.url)
    })
    expect(r.code, describeResult(r)).toBe(1)
    const failures = await readFailures(project.path("runs/w"))
    expect(failures.map((f) => f.key).sort()).toEqual([...long].sort())
    for (const f of failures) {
      expect(f).toMatchObject({ class: "permanent", code: "context_length", shard: null })
      // "about": the output schema's share of the count is approximate.
      expect(f.message).toMatch(/^the request has about \d+ input tokens, more than gpt-4o-mini's context window of 150$/)
    }
    const sink = await readJsonl<{ key: string }>(project.path("out/labeled.jsonl"))
    expect(sink.map((l) => l.key).sort()).toEqual(["w1", "w2", "w4", "w5", "w8"])
    // Never sent.
    const sent = batchesOfRun(await getLedger(emulator.url), await runIdOf(project.path("runs/w"))).flatMap((b) => b.custom_ids)
    expect(sent).toHaveLength(5)
    for (const f of failures) expect(sent).not.toContain(f.custom_id)
  })
})

// ---------------------------------------------------------------------------------------------
// A batch that completes without an output file
// ---------------------------------------------------------------------------------------------

/** Collects a child's stderr, and resolves when it matches. */
const watch = (child: ReturnType<typeof spawnCli>) => {
  let stderr = ""
  let stdout = ""
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d))
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d))
  const exited = new Promise<CliResult>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }))
  )
  return { stderr: () => stderr, exited }
}

describe("a batch that completes without an output file", SLOW, () => {
  let project: TempProject

  beforeAll(async () => {
    project = await makeProject("sluice-late-output-")
    await writeRows(project, "data/rows.jsonl", 6)
    await writePipeline(project, "late.pipeline.ts", { name: "late", sink: "out/held.jsonl" })
    await writePipeline(project, "wait0.pipeline.ts", { name: "late", sink: "out/wait0.jsonl" })
  })
  afterAll(() => project?.cleanup())

  it("is reported at once, and status and progress show it waiting for its output file, not in flight", async () => {
    // The output file stays hidden for a week: the state holds for the whole test.
    const emulator = await startTestEmulator({ lateOutputFileMs: 7 * 24 * 3600_000 })
    try {
      const env = emulatorEnv(emulator.url)
      const child = spawnCli(["run", "late.pipeline.ts", "--run-dir", "runs/held", ...fastRunFlags(10)], { cwd: project.dir, env })
      const run = watch(child)
      await waitFor("the warning about the missing output file", () =>
        /completed but has no output file yet; waiting up to 10m more for it \(--output-file-wait\)/.test(run.stderr()) ? true : undefined,
        { timeoutMs: 120_000 }
      )
      expect(run.stderr()).toMatch(/shard label-00001: batch batch_\w+ completed but has no output file yet/)

      const live = await runCli(["status", "runs/held", "--json"], { cwd: project.dir, env })
      expect(live.code, describeResult(live)).toBe(0)
      expect(JSON.parse(live.stdout).shards).toEqual([
        expect.objectContaining({ shard: "label-00001", phase: "created", live: true, awaitingOutput: true })
      ])
      const text = await runCli(["status", "runs/held", "--no-refresh"], { cwd: project.dir })
      expect(text.stdout).toMatch(/label-00001 created batch_\w+ completed, waiting for its output file \(journal\)/)

      child.kill("SIGINT")
      const end = await run.exited
      expect(end.code, describeResult(end)).toBe(130)
      // The last progress line counts it as waiting, not in flight.
      expect(end.stderr).toContain("0 batches in flight, 1 completed, waiting for its output file, 0 collected")
      // Nothing was given up on: no row failed, none rescheduled.
      expect(existsSync(project.path("runs/held/failures.jsonl")) ? await readFile(project.path("runs/held/failures.jsonl"), "utf8") : "").toBe("")
      expect(eventsTagged(await readJournal(project.path("runs/held")), "Terminal")).toEqual([])
    } finally {
      await emulator.close()
    }
  })

  it("is waited for --output-file-wait seconds; then its rows come back missing and are resubmitted", async () => {
    // The emulator's clock stands still until the test moves it: each batch completes when told.
    let now = Date.now()
    const emulator = await startTestEmulator({ clock: () => now, lateOutputFileMs: 3600_000 })
    try {
      const env = emulatorEnv(emulator.url)
      const child = spawnCli(
        ["run", "wait0.pipeline.ts", "--run-dir", "runs/wait0", "--output-file-wait", "0", ...fastRunFlags(10)],
        { cwd: project.dir, env }
      )
      const run = watch(child)
      await waitFor("the first batch", async () => ((await getLedger(emulator.url)).batches.length === 1 ? true : undefined), { timeoutMs: 120_000 })
      now += 60_000 // it completes, its output file hidden for an hour
      await waitFor("the retry batch", async () => ((await getLedger(emulator.url)).batches.length === 2 ? true : undefined), { timeoutMs: 120_000 })
      await setFaults(emulator.url, { lateOutputFileMs: 0 })
      now += 60_000 // the retry completes with its output file
      const end = await run.exited
      expect(end.code, describeResult(end)).toBe(0)
      expect(end.stderr).toMatch(/shard label-00001: batch batch_\w+ completed without an output file; collecting without it/)

      const events = await readJournal(project.path("runs/wait0"))
      expect(eventsTagged(events, "Collected").find((e) => e.shard === "label-00001")).toMatchObject({ succeeded: 0, rescheduled: 6 })
      expect(eventsTagged(events, "Collected").find((e) => e.shard === "label-00001-a2")).toMatchObject({ succeeded: 6, rescheduled: 0 })
      expect(await readFailures(project.path("runs/wait0"))).toEqual([])
      expect((await readJsonl(project.path("out/wait0.jsonl"))).length).toBe(6)
    } finally {
      await emulator.close()
    }
  })
})

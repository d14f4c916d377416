/**
 * Multi-stage pipelines, end to end through the real CLI and the emulator: stage 2 consumes
 * stage 1's typed outputs as stage-1 shards finish, a transform fans rows out with derived
 * keys, the sink keeps lineage, a chat stage feeds an embeddings stage, and a run killed
 * with SIGKILL at points across both stages resumes without a duplicate or a double payment.
 */
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { emulatorEnv, getLedger, makeProject, runCli, startTestEmulator, writeText } from "./support/cli.js"
import type { CliResult, TempProject, TestEmulator } from "./support/cli.js"
import { advanceClock, expectPaidOnce, holdClock, readJournalSoFar, releaseClock, waitFor } from "./support/runs.js"

const DOCS = 40

let emulator: TestEmulator
let project: TempProject

const twoStage = `
import { Pipeline, Prompt, Sink, Source } from "@sluice/core"
import { Schema } from "effect"
const Doc = Schema.Struct({ id: Schema.String, text: Schema.String })
const Facts = Schema.Struct({
  facts: Schema.Array(Schema.Struct({ topic: Schema.Literal("price", "quality", "shipping"), fact: Schema.String }))
})
const Summary = Schema.Struct({ summary: Schema.String })
export default Pipeline.make("facts").pipe(
  Pipeline.from(Source.jsonl("docs.jsonl", Doc), { key: (d) => d.id }),
  Pipeline.batch("extract", {
    provider: "openai", model: "gpt-4o-mini", maxAttempts: 6,
    prompt: (d) => Prompt.chat({ system: "Extract the facts of the review.", user: d.text }),
    output: Facts
  }),
  Pipeline.flatMap(
    (r, doc) =>
      [...new Set(r.facts.map((f) => f.topic))].map((topic) => ({
        doc: doc.id,
        topic,
        facts: r.facts.filter((f) => f.topic === topic).map((f) => f.fact)
      })),
    { key: (g) => g.topic }
  ),
  Pipeline.batch("summarise", {
    provider: "openai", model: "gpt-4o-mini", maxAttempts: 6,
    prompt: (g) => Prompt.chat({ system: "Summarise what the review says about " + g.topic + ".", user: g.facts.join("\\n") }),
    output: Summary
  }),
  Pipeline.map((s, g) => ({ doc: g.doc, topic: g.topic, summary: s.summary })),
  Pipeline.to(Sink.jsonl(process.env.SINK_PATH ?? "out.jsonl"))
)
`

const chatThenEmbed = `
import { Pipeline, Prompt, Sink, Source } from "@sluice/core"
import { Schema } from "effect"
const Doc = Schema.Struct({ id: Schema.String, text: Schema.String })
export default Pipeline.make("gist").pipe(
  Pipeline.from(Source.jsonl("docs.jsonl", Doc), { key: (d) => d.id }),
  Pipeline.batch("gist", { provider: "openai", model: "gpt-4o-mini", prompt: (d) => Prompt.chat({ user: "One line gist: " + d.text }) }),
  Pipeline.embed("vector", { provider: "openai", model: "text-embedding-3-small", input: (gist) => gist }),
  Pipeline.to(Sink.jsonl("vectors.jsonl"))
)
`

const effectful = `
import { Pipeline, Prompt, Sink, Source } from "@sluice/core"
import { Effect, Schema } from "effect"
const Doc = Schema.Struct({ id: Schema.String, text: Schema.String })
export default Pipeline.make("fx").pipe(
  Pipeline.from(Source.jsonl("docs.jsonl", Doc), { key: (d) => d.id }),
  Pipeline.batch("gist", { provider: "openai", model: "gpt-4o-mini", prompt: (d) => Prompt.chat({ user: "One line gist: " + d.text }) }),
  // An Effect between stages: a lookup that fails for some rows.
  Pipeline.mapEffect((gist, doc) =>
    doc.id.endsWith("3") ? Effect.fail(new Error("no catalogue entry for " + doc.id)) : Effect.succeed({ doc: doc.id, gist }).pipe(Effect.delay("1 millis"))
  ),
  Pipeline.batch("title", { provider: "openai", model: "gpt-4o-mini", prompt: (g) => Prompt.chat({ user: "A title for: " + g.gist }) }),
  Pipeline.to(Sink.jsonl("titles.jsonl"))
)
`

beforeAll(async () => {
  emulator = await startTestEmulator({ validatingMs: 40, requestsPerSecond: 400, finalizingMs: 40, errorRate: 0.05 })
  project = await makeProject("sluice-multistage-")
  await writeText(project, "facts.pipeline.ts", twoStage)
  await writeText(project, "gist.pipeline.ts", chatThenEmbed)
  await writeText(project, "fx.pipeline.ts", effectful)
  const docs = Array.from({ length: DOCS }, (_, i) => JSON.stringify({ id: `doc-${i + 1}`, text: `Review ${i + 1}: ${"fine value, arrived late ".repeat(1 + (i % 4))}` }))
  await writeText(project, "docs.jsonl", docs.join("\n") + "\n")
})

afterAll(async () => {
  await emulator?.close()
  await project?.cleanup()
})

const sluice = (args: ReadonlyArray<string>, env: Record<string, string> = {}): Promise<CliResult> =>
  runCli(args, { cwd: project.dir, env: { ...emulatorEnv(emulator.url), ...env } })

const runArgs = (runDir: string, file = "facts.pipeline.ts") => ["run", file, "--run-dir", runDir, "--shard-size", "10", "--poll-interval", "0.05", "--concurrency", "2"]

const jsonl = <A>(file: string): Array<A> =>
  existsSync(file) ? readFileSync(file, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as A) : []

interface Journal {
  readonly _tag: string
  readonly [k: string]: any
}

interface SinkRow {
  readonly key: string
  readonly custom_id: string
  readonly lineage: ReadonlyArray<string>
  readonly input: { id: string; text: string }
  readonly output: { doc: string; topic: string; summary: string }
}

/**
 * What must hold for a finished two-stage run: every group of every document in the sink
 * exactly once with its lineage, and the provider paid once per request.
 */
const checkTwoStage = async (runDir: string, sink: string) => {
  const dir = join(project.dir, runDir)
  const rows = jsonl<SinkRow>(join(project.dir, sink))
  const keys = rows.map((r) => r.key)
  expect(new Set(keys).size, "sink rows with the same key").toBe(keys.length)

  // The groups stage 1 passed on are exactly the sink's rows: each once, none lost.
  const groups = jsonl<{ key: string; src: { id: string }; lin: ReadonlyArray<string> }>(join(dir, "stages", "summarise.jsonl"))
  expect(groups.length).toBeGreaterThan(0)
  expect(new Set(groups.map((g) => g.key)).size, "groups passed on twice").toBe(groups.length)
  expect([...keys].sort()).toEqual(groups.map((g) => g.key).sort())

  // Keys derive from the document's key; lineage names the extract request of that document.
  const results = jsonl<{ _tag: string; customId: string }>(join(dir, "results.jsonl"))
  const succeededIds = new Set(results.filter((r) => r._tag === "Succeeded").map((r) => r.customId))
  for (const r of rows) {
    expect(r.key).toBe(`${r.input.id}.${r.output.topic}`)
    expect(r.output.doc).toBe(r.input.id)
    expect(r.lineage).toHaveLength(1)
    expect(r.lineage[0]).toMatch(new RegExp(`^extract-${r.input.id}-`))
    expect(succeededIds.has(r.lineage[0]!)).toBe(true)
    expect(r.custom_id).toMatch(/^summarise-/)
  }
  const docsWithFacts = new Set(groups.map((g) => g.src.id))
  expect(new Set(rows.map((r) => r.input.id))).toEqual(docsWithFacts)

  // Paid once: one batch per shard attempt, no custom_id delivered as a success twice.
  const runId = (JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as { runId: string }).runId
  const delivered = expectPaidOnce(await getLedger(emulator.url), runId)
  const extracts = delivered.filter((id) => id.startsWith("extract-"))
  expect(extracts.length).toBe(DOCS)
  expect(delivered.length - extracts.length).toBe(groups.length)
  return { rows, groups }
}

/** Each test spawns the CLI at least once, most several times (tsx loads TypeScript on each start, seconds on a busy machine). */
const SLOW = { timeout: 240_000 }

describe("multi-stage pipelines", SLOW, () => {
  it("feeds stage 2 as stage-1 shards finish, fans out with derived keys, and keeps lineage in the sink", async () => {
    const runDir = "runs/two-stage"
    // The emulator's clock stands still but when the test moves it: the first two extract batches
    // (two at a time) end, the other two are still in flight when stage 2 gets its first shard.
    await holdClock(emulator.url)
    const running = sluice(runArgs(runDir), { SINK_PATH: "two-stage.jsonl" })
    let exited = false
    void running.then(() => (exited = true))
    const journalSoFar = () => readJournalSoFar(join(project.dir, runDir))
    try {
      const created = async () => (await journalSoFar()).filter((e) => e._tag === "Created").length
      await waitFor("the first two extract batches", async () => (exited || (await created()) >= 2 ? true : undefined), { timeoutMs: 120_000 })
      await advanceClock(emulator.url, 1000)
      await waitFor(
        "a summarise shard",
        async () => (exited || (await journalSoFar()).some((e) => e._tag === "ShardPlanned" && e["stage"] === "summarise") ? true : undefined),
        { timeoutMs: 120_000 }
      )
      expect(exited, "the run ended with its last extract batches held").toBe(false)
      // Only the first two extract batches could end: the other two are still in flight.
      const collected = (await journalSoFar()).filter((e) => e._tag === "Collected" && String(e["shard"]).startsWith("extract-"))
      expect(collected.length).toBeGreaterThan(0)
      expect(collected.length).toBeLessThanOrEqual(2)
    } finally {
      await releaseClock(emulator.url)
    }
    const r = await running
    expect(r.code, r.stderr).toBe(0)
    const { groups } = await checkTwoStage(runDir, "two-stage.jsonl")
    // Fan-out: some document yields more than one group.
    const perDoc = new Map<string, number>()
    for (const g of groups) perDoc.set(g.src.id, (perDoc.get(g.src.id) ?? 0) + 1)
    expect(Math.max(...perDoc.values())).toBeGreaterThan(1)

    // Streaming: a summarise shard was planned before the last extract shard was collected.
    const journal = jsonl<Journal>(join(project.dir, runDir, "journal.jsonl"))
    const firstSummarise = journal.findIndex((e) => e._tag === "ShardPlanned" && e["stage"] === "summarise")
    const extractCollected = journal.flatMap((e, i) => (e._tag === "Collected" && String(e["shard"]).startsWith("extract-") ? [i] : []))
    expect(extractCollected.length).toBeGreaterThan(1)
    expect(firstSummarise).toBeGreaterThan(extractCollected[0]!)
    expect(firstSummarise).toBeLessThan(extractCollected[extractCollected.length - 1]!)

    // The summary counts rows across stages: nothing pending, the sink's rows succeeded.
    const status = await sluice(["status", runDir, "--json"])
    expect(status.code, status.stderr).toBe(0)
  })

  it("mixes a chat stage and an embeddings stage, one endpoint per shard", async () => {
    const runDir = "runs/gist"
    const r = await sluice(runArgs(runDir, "gist.pipeline.ts"))
    expect(r.code, r.stderr).toBe(0)
    const journal = jsonl<Journal>(join(project.dir, runDir, "journal.jsonl"))
    const planned = journal.filter((e) => e._tag === "ShardPlanned")
    expect(new Set(planned.filter((e) => e["stage"] === "gist").map((e) => e["endpoint"]))).toEqual(new Set(["chat"]))
    expect(new Set(planned.filter((e) => e["stage"] === "vector").map((e) => e["endpoint"]))).toEqual(new Set(["embeddings"]))
    const rows = jsonl<{ key: string; lineage: Array<string>; input: { id: string }; output: ReadonlyArray<number> }>(join(project.dir, "vectors.jsonl"))
    expect(rows.length).toBe(DOCS)
    expect(new Set(rows.map((r) => r.key)).size).toBe(DOCS)
    for (const row of rows) {
      expect(Array.isArray(row.output)).toBe(true)
      expect(row.output.length).toBeGreaterThan(0)
      expect(typeof row.output[0]).toBe("number")
      expect(row.lineage[0]).toMatch(/^gist-/)
    }
    // The embeddings requests went to /v1/embeddings with the gist as input.
    const vectorShard = planned.find((e) => e["stage"] === "vector")!["shard"] as string
    const line = jsonl<{ url: string; body: { input: string } }>(join(project.dir, runDir, "shards", `${vectorShard}.jsonl`))[0]!
    expect(line.url).toBe("/v1/embeddings")
    expect(line.body.input.length).toBeGreaterThan(0)

    // The pipeline file loses the stage the run's batches belong to: `cancel` reads the run
    // directory alone, so it works all the same (nothing is in flight, and it says so), while
    // `resume` refuses the changed file.
    await writeText(project, "gist.pipeline.ts", chatThenEmbed.replace(`Pipeline.embed("vector"`, `Pipeline.embed("vectors"`))
    const cancelled = await sluice(["cancel", runDir])
    expect(cancelled.code, cancelled.stderr).toBe(0)
    expect(cancelled.stderr).toContain("cancel: no batch of run")
    expect(cancelled.stderr).not.toContain("internal error")
    const resumed = await sluice(["resume", runDir])
    expect(resumed.code, resumed.stderr).toBe(2)
    expect(resumed.stderr).toContain("gist.pipeline.ts changed since run")
  })

  it("runs an Effect between stages; a row whose Effect fails ends as a transform_error, the rest go on", async () => {
    const runDir = "runs/fx"
    const r = await sluice(runArgs(runDir, "fx.pipeline.ts"))
    expect(r.code, r.stderr).toBe(1)
    const failing = Array.from({ length: DOCS }, (_, i) => `doc-${i + 1}`).filter((id) => id.endsWith("3"))
    const failures = jsonl<{ key: string; code: string; message: string; custom_id: string }>(join(project.dir, runDir, "failures.jsonl"))
    expect(failures.map((f) => f.key).sort()).toEqual([...failing].sort())
    for (const f of failures) {
      expect(f.code).toBe("transform_error")
      expect(f.message).toContain(`no catalogue entry for ${f.key}`)
      expect(f.custom_id).toMatch(/^gist-/)
    }
    const rows = jsonl<{ key: string; lineage: Array<string> }>(join(project.dir, "titles.jsonl"))
    expect(rows.map((row) => row.key).sort()).toEqual(Array.from({ length: DOCS }, (_, i) => `doc-${i + 1}`).filter((id) => !id.endsWith("3")).sort())
  })

  // Points in both stages: stage 1's collection (before and after its commit), the planning
  // of stage 2 from the inbox, stage 2's submission and collection. As in crash.e2e, a second
  // point kills the resume of the state the first left, one the resume certainly passes again:
  // stage 2 has at least 7 shards (67 groups, at most 10 a shard), and after each first point
  // at most one shard has been collected (Collected:1, collect-before-commit:2) or no stage-2
  // shard submitted (ShardPlanned:5 is its first; plan-row:45 is within its first 10 rows).
  const chains = [
    ["after:Collected:1", "after:Collected:5"],
    ["collect-before-commit:2", "collect-before-commit:7"],
    ["after:ShardPlanned:5", "after:SubmitIntent:6"],
    ["after:ShardPlanned:7"],
    ["plan-row:45", "after:Created:6"],
    ["after:StatusChanged:12"]
  ]

  it.each(chains.map((points, i) => [points.join(" → "), points, i] as const))("a two-stage run killed at %s resumes without duplicates", async (_name, points, i) => {
    const runDir = `runs/crash-${i}`
    const sink = `crash-${i}.jsonl`
    for (const [j, point] of points.entries()) {
      const killed = await sluice(runArgs(runDir), { SINK_PATH: sink, SLUICE_FAILPOINT: point })
      expect(killed.signal, `${j === 0 ? "the run" : `the resume after ${points[j - 1]}`} at ${point}: exit ${killed.code}\n${killed.stderr}`).toBe("SIGKILL")
    }
    const resumed = await sluice(runArgs(runDir), { SINK_PATH: sink })
    expect(resumed.code, `${points.join(" → ")}: ${resumed.stderr}`).toBe(0)
    await checkTwoStage(runDir, sink)
  })
})

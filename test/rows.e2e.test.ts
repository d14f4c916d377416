/**
 * RunRows over real run directories made by the real CLI against the emulator: a run with
 * invalid rows, automatic retries, repairs and rows failed for good, taken up again by two
 * `sluice retry` rounds; and a two-stage run. The index must agree with `sluice status --json`,
 * with the files (sink, failures, results) row by row, and keep each row's place across retries.
 */
import { NodeContext } from "@effect/platform-node"
import { Effect, Exit, Scope } from "effect"
import { readFileSync } from "node:fs"
import { appendFile } from "node:fs/promises"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { generateRun } from "../bench/rows-run.js"
import * as RunRows from "../packages/runner/src/RunRows.js"
import type { RowPage, RowQuery, RowView } from "../packages/runner/src/RunRows.js"
import { describeResult, emulatorEnv, makeProject, pipelineSource, runCli, startTestEmulator, writeText } from "./support/cli.js"
import type { CliResult, TempProject, TestEmulator } from "./support/cli.js"
import { setFaults } from "./support/runs.js"

let emulator: TestEmulator
let project: TempProject
const ROWS = 60

const pipeline = `import { Pipeline, Prompt, Sink, Source } from "@sluice/core"
import { Schema } from "effect"
const Review = Schema.Struct({ id: Schema.String, text: Schema.String })
const Label = Schema.Struct({ sentiment: Schema.Literal("positive", "negative", "neutral"), topics: Schema.Array(Schema.String) })
export default Pipeline.make("rows").pipe(
  Pipeline.from(Source.jsonl("data/rows.jsonl", Review), { key: (r) => r.id, onInvalid: "skip" }),
  Pipeline.batch("label", {
    provider: "openai", model: "gpt-4o-mini", maxAttempts: 2,
    prompt: (r) => Prompt.chat({ system: "You label product reviews.", user: r.text }),
    output: Label
  }),
  Pipeline.to(Sink.jsonl("out/labeled.jsonl"))
)
`

const twoStage = `import { Pipeline, Prompt, Sink, Source } from "@sluice/core"
import { Schema } from "effect"
const Doc = Schema.Struct({ id: Schema.String, text: Schema.String })
const Facts = Schema.Struct({ facts: Schema.Array(Schema.Struct({ topic: Schema.Literal("price", "quality", "shipping"), fact: Schema.String })) })
export default Pipeline.make("facts").pipe(
  Pipeline.from(Source.jsonl("data/docs.jsonl", Doc), { key: (d) => d.id }),
  Pipeline.batch("extract", {
    provider: "openai", model: "gpt-4o-mini", maxAttempts: 8,
    prompt: (d) => Prompt.chat({ system: "Extract the facts of the review.", user: d.text }),
    output: Facts
  }),
  Pipeline.flatMap((r, doc) => [...new Set(r.facts.map((f) => f.topic))].map((topic) => ({ doc: doc.id, topic })), { key: (g) => g.topic }),
  Pipeline.batch("summarise", {
    provider: "openai", model: "gpt-4o-mini", maxAttempts: 8,
    prompt: (g) => Prompt.chat({ system: "Summarise.", user: g.doc + " " + g.topic }),
    output: Schema.Struct({ summary: Schema.String })
  }),
  Pipeline.to(Sink.jsonl("out/facts.jsonl"))
)
`

beforeAll(async () => {
  emulator = await startTestEmulator({ validatingMs: 20, finalizingMs: 20, requestsPerSecond: 2000 })
  project = await makeProject("sluice-rows-")
  await writeText(project, "rows.pipeline.ts", pipeline)
  await writeText(project, "facts.pipeline.ts", twoStage)
  const lines = Array.from({ length: ROWS }, (_, i) => JSON.stringify({ id: `r${String(i + 1).padStart(3, "0")}`, text: `Review ${i + 1}: ${i % 2 ? "great value" : "broke quickly"}` }))
  // Two rows the source Schema rejects (skipped: listed as invalid), among the good ones.
  lines.splice(10, 0, JSON.stringify({ id: "bad-1" }))
  lines.splice(40, 0, "{not json")
  await writeText(project, "data/rows.jsonl", lines.join("\n") + "\n")
  const docs = Array.from({ length: 12 }, (_, i) => JSON.stringify({ id: `doc-${i + 1}`, text: `Review ${i + 1}: fine value, arrived late` }))
  await writeText(project, "data/docs.jsonl", docs.join("\n") + "\n")
})

afterAll(async () => {
  await emulator?.close()
  await project?.cleanup()
})

const sluice = async (args: ReadonlyArray<string>): Promise<CliResult> => {
  const r = await runCli(args, { cwd: project.dir, env: emulatorEnv(emulator.url) })
  return r
}

const jsonl = <A = any>(file: string): Array<A> => {
  try {
    return readFileSync(file, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as A)
  } catch {
    return []
  }
}

/** A RunRows handle kept open across steps (closed with the scope). */
const openRows = async (dir: string) => {
  const scope = Effect.runSync(Scope.make())
  const rows = await Effect.runPromise(RunRows.open(dir).pipe(Scope.extend(scope), Effect.provide(NodeContext.layer)))
  return {
    rows,
    page: (q: RowQuery): Promise<RowPage> => Effect.runPromise(rows.page(q)),
    all: async (q: Omit<RowQuery, "offset" | "limit"> = {}): Promise<Array<RowView>> => (await Effect.runPromise(rows.page({ ...q, offset: 0, limit: 100_000 }))).rows.slice(),
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

const status = async (runDir: string) => {
  const r = await sluice(["status", runDir, "--json"])
  expect(r.code, describeResult(r)).toBe(0)
  return JSON.parse(r.stdout) as { rows: number; succeeded: number; failed: Record<string, number>; invalid: number; pending: number }
}

const countOf = (rows: ReadonlyArray<RowView>, s: string) => rows.filter((r) => r.status === s).length

/** Failures of the run not taken back by a retry: the last failure of each row that is still failed. */
const latestFailures = (dir: string) => {
  const byId = new Map<string, { class: string; shard: string | null }>()
  for (const f of jsonl<{ custom_id: string | null; class: string; shard: string | null }>(join(dir, "failures.jsonl"))) {
    // A repair's id names its row's (`<id>-r<n>`): rows keep the id they were planned under.
    if (f.custom_id !== null && f.shard !== null) byId.set(f.custom_id.replace(/-r\d+$/, ""), f)
  }
  return byId
}

/** What every finished run must show: the index agrees with status and with the files row by row. */
const checkAgainstFiles = async (dir: string, runDir: string, rows: Awaited<ReturnType<typeof openRows>>) => {
  const s = await status(runDir)
  const all = await rows.all()
  expect(all).toHaveLength(s.rows)
  expect(all.map((r) => r.index)).toEqual(all.map((_, i) => i))
  expect(countOf(all, "succeeded")).toBe(s.succeeded)
  expect(countOf(all, "invalid")).toBe(s.invalid)
  expect(countOf(all, "pending")).toBe(s.pending)
  const failedByClass: Record<string, number> = {}
  for (const r of all.filter((r) => r.status === "failed")) failedByClass[r.failure!.class] = (failedByClass[r.failure!.class] ?? 0) + 1
  const { invalid: _invalid, ...statusFailed } = s.failed
  expect(failedByClass).toEqual(Object.fromEntries(Object.entries(statusFailed).filter(([, n]) => n > 0)))

  // Succeeded rows: the sink's record, output for output; inputs are the source rows.
  const sink = new Map(jsonl<{ key: string; customId: string; output: unknown; input: unknown }>(join(project.dir, "out/labeled.jsonl")).map((r) => [r.key, r]))
  for (const r of all.filter((r) => r.status === "succeeded")) {
    expect(sink.get(r.key!)?.output, r.key!).toEqual(r.output)
    expect(sink.get(r.key!)?.input).toEqual(r.input)
  }
  // Failed rows: their latest failure line.
  const failures = latestFailures(dir)
  for (const r of all.filter((r) => r.status === "failed")) expect(failures.get(r.customId)?.class).toBe(r.failure!.class)
  // Filtered pages are exactly the rows of that status or class, in order.
  for (const st of ["succeeded", "failed", "invalid", "pending"] as const) {
    const page = await rows.page({ offset: 0, limit: 1000, status: st })
    expect(page.rows.map((r) => r.index)).toEqual(all.filter((r) => r.status === st).map((r) => r.index))
    expect(page.total).toBe(page.rows.length)
  }
  for (const cls of Object.keys(failedByClass)) {
    const page = await rows.page({ offset: 0, limit: 1000, failureClass: cls })
    expect(page.rows.map((r) => r.customId)).toEqual(all.filter((r) => r.failure?.class === cls).map((r) => r.customId))
  }
  // Pages are slices of the whole.
  const middle = await rows.page({ offset: 7, limit: 5 })
  expect(middle.rows).toEqual(all.slice(7, 12))
  expect(middle.total).toBe(all.length)
  const last = await rows.page({ offset: all.length - 1, limit: 50 })
  expect(last.rows).toEqual(all.slice(-1))
  return all
}

describe("RunRows over a run with invalid rows, retries, repairs and failures", () => {
  const runDir = ".sluice/runs/rows"
  const dir = () => join(project.dir, runDir)
  let firstView: Array<RowView> = []

  it("a run with faults: rows failed for good, retried and repaired rows show their latest attempt", async () => {
    await setFaults(emulator.url, { errorRate: 0.3, invalidJsonRate: 0.2 })
    const r = await sluice(["run", "rows.pipeline.ts", "--run-dir", runDir, "--shard-size", "8", "--poll-interval", "0.05"])
    await setFaults(emulator.url, { errorRate: 0, invalidJsonRate: 0 })
    expect([0, 1], describeResult(r)).toContain(r.code)

    // Automatic retries and repairs happened (the run is of the kind this test is about).
    const shards = jsonl<{ _tag: string; shard?: string }>(join(dir(), "journal.jsonl")).filter((e) => e._tag === "ShardPlanned").map((e) => e.shard!)
    expect(shards.some((s) => /-a2$/.test(s))).toBe(true)
    const repairIds = jsonl<{ customId: string }>(join(dir(), "results.jsonl")).map((l) => l.customId).filter((id) => /-r\d+$/.test(id))
    expect(repairIds.length).toBeGreaterThan(0)

    const rows = await openRows(dir())
    try {
      const all = await checkAgainstFiles(dir(), runDir, rows)
      expect(countOf(all, "failed")).toBeGreaterThan(0)
      expect(countOf(all, "invalid")).toBe(2)
      // First stage rows are in source order; the invalid ones come with the shard planned after them.
      const keys = all.filter((r) => r.status !== "invalid").map((r) => r.key)
      expect(keys).toEqual([...keys].sort())
      // raw: the row's last result line as collected.
      const results = jsonl<{ customId: string }>(join(dir(), "results.jsonl"))
      const sample = all.find((r) => r.status === "succeeded")!
      const lastLine = results.filter((l) => l.customId === sample.customId).at(-1)
      expect(await Effect.runPromise(rows.rows.raw(sample.customId))).toEqual(lastLine)
      expect(await Effect.runPromise(rows.rows.raw("no-such-id"))).toBeNull()
      // Search: by key, by input text, case-insensitive; a page of 1 stops before counting.
      const byKey = await rows.page({ offset: 0, limit: 10, q: "r017" })
      expect(byKey.rows.map((r) => r.key)).toEqual(["r017"])
      expect(byKey.total).toBe(1)
      const byText = await rows.page({ offset: 0, limit: 1000, q: "GREAT VALUE" })
      expect(byText.rows.map((r) => r.key)).toEqual(all.filter((r) => JSON.stringify(r.input ?? "").includes("great value")).map((r) => r.key))
      const first = await rows.page({ offset: 0, limit: 1, q: "great value" })
      expect(first.total).toBeNull()
      expect(first.rows).toEqual(byText.rows.slice(0, 1))
      firstView = all

      // `sluice retry` twice (the first round under faults again): the same handle refreshed
      // shows each row's latest attempt, at the same place.
      await setFaults(emulator.url, { errorRate: 0.5 })
      const retry1 = await sluice(["retry", runDir, "--poll-interval", "0.05"])
      await setFaults(emulator.url, { errorRate: 0 })
      expect([0, 1], describeResult(retry1)).toContain(retry1.code)
      await Effect.runPromise(rows.rows.refresh)
      await checkAgainstFiles(dir(), runDir, rows)
      const retry2 = await sluice(["retry", runDir, "--poll-interval", "0.05"])
      // Exit 1: the two invalid rows stay failed (nothing to retry for them).
      expect(retry2.stderr, describeResult(retry2)).toContain("60 succeeded")
      await Effect.runPromise(rows.rows.refresh)
      const after = await checkAgainstFiles(dir(), runDir, rows)
      expect(countOf(after, "failed")).toBe(0)
      expect(after.map((r) => [r.index, r.key, r.customId])).toEqual(firstView.map((r) => [r.index, r.key, r.customId]))
      // A repaired row's raw answer is its repair's result line (the latest attempt).
      const repaired = new Set(repairIds.map((id) => id.replace(/-r\d+$/, "")))
      const repairedRows = after.filter((r) => repaired.has(r.customId))
      expect(repairedRows.length).toBeGreaterThan(0)
      for (const row of repairedRows) {
        const raw = (await Effect.runPromise(rows.rows.raw(row.customId))) as { customId: string }
        expect(raw.customId).toMatch(/-r\d+$/)
      }
      // The refreshed handle and a new one agree.
      const fresh = await openRows(dir())
      expect(await fresh.all()).toEqual(after)
      await fresh.close()

      // Only what the journal committed is read: lines written after the last commit (a run
      // mid-write in another process) and a torn journal line change nothing.
      await appendFile(join(dir(), "results.jsonl"), JSON.stringify({ shard: "label-00001", attempt: 1, _tag: "Failed", customId: after[0]!.customId, failure: "permanent", code: "x", message: "uncommitted", status: null, raw: null }) + "\n")
      await appendFile(join(dir(), "failures.jsonl"), JSON.stringify({ custom_id: null, key: "ghost", shard: null, attempt: 0, class: "permanent", code: "x", message: "uncommitted" }) + "\n")
      await appendFile(join(dir(), "journal.jsonl"), `{"_tag":"Collected","shard":"lab`)
      await Effect.runPromise(rows.rows.refresh)
      expect(await rows.all()).toEqual(after)
      const uncommitted = await openRows(dir())
      expect(await uncommitted.all()).toEqual(after)
      await uncommitted.close()
    } finally {
      await rows.close()
    }
  }, 240_000)
})

describe("RunRows over a two-stage run", () => {
  it("rows of each stage in stage order, filtered by stage, with their inputs as planned", async () => {
    const runDir = ".sluice/runs/facts"
    await setFaults(emulator.url, { errorRate: 0.2 })
    const r = await sluice(["run", "facts.pipeline.ts", "--run-dir", runDir, "--shard-size", "5", "--poll-interval", "0.05"])
    await setFaults(emulator.url, { errorRate: 0 })
    expect(r.code, describeResult(r)).toBe(0)
    const dir = join(project.dir, runDir)
    const rows = await openRows(dir)
    try {
      const all = await rows.all()
      const inbox = jsonl<{ key: string; input: unknown }>(join(dir, "stages", "summarise.jsonl"))
      expect(all.filter((r) => r.stage === "extract")).toHaveLength(12)
      expect(all.filter((r) => r.stage === "summarise")).toHaveLength(inbox.length)
      // Stage order: every extract row before every summarise row.
      expect(all.map((r) => r.stage)).toEqual([...Array(12).fill("extract"), ...Array(inbox.length).fill("summarise")])
      expect(countOf(all, "succeeded")).toBe(all.length)
      const s = await status(runDir)
      expect(all.filter((r) => r.stage === "summarise").length).toBe(s.succeeded)
      const stage2 = await rows.page({ offset: 0, limit: 1000, stage: "summarise" })
      expect(stage2.total).toBe(inbox.length)
      expect(stage2.rows).toEqual(all.filter((r) => r.stage === "summarise"))
      // A later stage's input is what its upstream passed on; its output the sink's.
      expect(new Set(stage2.rows.map((r) => JSON.stringify(r.input)))).toEqual(new Set(inbox.map((l) => JSON.stringify(l.input))))
      const sink = new Map(jsonl<{ key: string; output: unknown }>(join(project.dir, "out/facts.jsonl")).map((x) => [x.key, x.output]))
      for (const row of stage2.rows) expect(sink.get(row.key!), row.key!).toEqual(row.output)
      // Some rows were retried (-a2 shards) and still show in their planning shard.
      const retried = jsonl<{ _tag: string; shard?: string }>(join(dir, "journal.jsonl")).some((e) => e._tag === "ShardPlanned" && /-a\d+$/.test(e.shard!))
      expect(retried).toBe(true)
      expect(all.every((r) => !/-a\d+$/.test(r.shard))).toBe(true)
    } finally {
      await rows.close()
    }
  }, 240_000)
})

describe("a generated run directory (bench/rows-run.ts)", () => {
  it("reads as a run in `sluice status`, and the index finds its rows, retries and failures", async () => {
    const dir = project.path("generated", "run")
    const g = await generateRun(dir, 25_000, 1000)
    const s = await status(dir)
    const rows = await openRows(dir)
    try {
      expect(rows.rows.size()).toBe(s.rows)
      expect(s.rows).toBe(25_000)
      expect(s.pending).toBe(0)
      const failed = await rows.page({ offset: 0, limit: 1000, status: "failed" })
      expect(failed.total).toBe(g.permanent)
      expect(failed.rows.every((r) => r.failure?.class === "permanent")).toBe(true)
      expect((await rows.page({ offset: 0, limit: 10, status: "invalid" })).total).toBe(g.invalid)
      expect((await rows.page({ offset: 0, limit: 10, status: "succeeded" })).total).toBe(s.succeeded)
      // A retried row (3% of the first attempts) shows its second attempt's answer, at its place.
      const retried = (await rows.page({ offset: 0, limit: 1 })).rows[0]!
      expect(retried.key).toBe("row-1")
      expect(retried.status).toBe("succeeded")
      expect((await Effect.runPromise(rows.rows.raw(retried.customId))) as { shard: string }).toMatchObject({ shard: "label-00001-a2", _tag: "Succeeded" })
      const last = await rows.page({ offset: s.rows - 1, limit: 5 })
      expect(last.rows.map((r) => r.key)).toEqual(["row-25000"])
      expect(last.rows[0]!.status).toBe("succeeded")
      // A rejected row is listed with the shard planned after it (its failure is committed with
      // that shard's event): row 10,000 comes before the shard of rows 9,001…10,001, row 20,000 before that of 19,002…20,001.
      const invalid = (await rows.page({ offset: 0, limit: 10, status: "invalid" })).rows
      expect(invalid.map((r) => [r.key, r.index, r.failure?.code])).toEqual([["row-10000", 9000, "invalid_input"], ["row-20000", 19001, "invalid_input"]])
    } finally {
      await rows.close()
    }
  }, 120_000)
})

describe("RunRows over an online run stopped mid-shard", () => {
  it("answers in an online file before their collection: shown with the row (still pending); a torn line ignored; then collected", async () => {
    await writeText(project, "online.pipeline.ts", pipelineSource({ name: "online-rows", source: "data/docs.jsonl" }).replace("output: Label", 'mode: "online",\n    output: Label'))
    const runDir = ".sluice/runs/online"
    const dir = join(project.dir, runDir)
    const args = ["run", "online.pipeline.ts", "--run-dir", runDir, "--shard-size", "12", "--concurrency", "2"]
    const killed = await runCli(args, { cwd: project.dir, env: { ...emulatorEnv(emulator.url), SLUICE_FAILPOINT: "online-synced:3" } })
    expect(killed.signal, describeResult(killed)).toBe("SIGKILL")
    const onlineFile = join(dir, "shards", "label-00001.online.jsonl")
    const answered = jsonl<{ _tag: string; customId: string; text: string }>(onlineFile)
    expect(answered.length).toBeGreaterThan(0)
    expect(answered.length).toBeLessThan(12)
    // A write the kill cut short.
    await appendFile(onlineFile, `{"_tag":"Succeeded","customId":"label-`)

    const rows = await openRows(dir)
    try {
      const all = await rows.all()
      expect(all).toHaveLength(12)
      expect(countOf(all, "pending")).toBe(12)
      const byId = new Map(answered.map((a) => [a.customId, a]))
      for (const r of all) {
        const a = byId.get(r.customId)
        expect(r.output, r.customId).toEqual(a === undefined ? null : JSON.parse(a.text))
        expect(await Effect.runPromise(rows.rows.raw(r.customId))).toEqual(a ?? null)
      }
      // Resumed to the end: the same handle, refreshed, shows the collected outcome.
      const resumed = await runCli(["resume", runDir], { cwd: project.dir, env: emulatorEnv(emulator.url) })
      expect(resumed.code, describeResult(resumed)).toBe(0)
      await Effect.runPromise(rows.rows.refresh)
      const after = await rows.all()
      expect(countOf(after, "succeeded")).toBe(12)
      const results = jsonl<{ customId: string; shard: string }>(join(dir, "results.jsonl"))
      for (const r of after) expect(await Effect.runPromise(rows.rows.raw(r.customId))).toEqual(results.filter((l) => l.customId === r.customId).at(-1))
    } finally {
      await rows.close()
    }
  }, 120_000)
})

describe("RunRows over a run whose first plan was refused", () => {
  it("rows planned before a PlanRefused do not count; the plan that followed does", async () => {
    // Two rows with one key and different texts: the plan (of four shards) is refused (onInvalid "fail").
    const rows = Array.from({ length: 12 }, (_, i) => ({ id: `k${String(i + 1).padStart(2, "0")}`, text: `Review ${i + 1}` }))
    const extra = [{ id: "k13", text: "Review 13" }, { id: "k14", text: "Review 14" }, { id: "k15", text: "Review 15" }, { id: "k03", text: "another text" }]
    await writeText(project, "refused/rows.jsonl", [...rows, ...extra].map((r) => JSON.stringify(r)).join("\n") + "\n")
    await writeText(project, "refused.pipeline.ts", pipelineSource({ name: "refused", source: "refused/rows.jsonl", sink: "out/refused.jsonl", onInvalid: "fail" }))
    const runDir = ".sluice/runs/refused"
    const args = ["run", "refused.pipeline.ts", "--run-dir", runDir, "--shard-size", "5", "--poll-interval", "0.05"]
    const refused = await sluice(args)
    expect(refused.code, describeResult(refused)).not.toBe(0)
    const dir = join(project.dir, runDir)
    expect(jsonl<{ _tag: string }>(join(dir, "journal.jsonl")).some((e) => e._tag === "PlanRefused")).toBe(true)
    // The data fixed, the next run plans again (three shards) and finishes.
    await writeText(project, "refused/rows.jsonl", rows.map((r) => JSON.stringify(r)).join("\n") + "\n")
    const r = await sluice(args)
    expect(r.code, describeResult(r)).toBe(0)
    const s = await status(runDir)
    const index = await openRows(dir)
    try {
      const all = await index.all()
      expect(all.map((x) => x.key)).toEqual(rows.map((x) => x.id))
      expect(all.length).toBe(s.rows)
      expect(countOf(all, "succeeded")).toBe(s.succeeded)
    } finally {
      await index.close()
    }
  }, 120_000)
})

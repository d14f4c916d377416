/**
 * Duplicate keys, end to end through the real CLI against the emulator: one rule whatever
 * the shard size. Rows with the same key and request are one request (the repeats listed as
 * `duplicate`); rows with the same key and different requests are refused before anything is
 * sent (onInvalid "fail", every row named with file:line) or left out (`duplicate_key`,
 * "skip"). The emulator's ledger shows that nothing is paid twice; a SIGKILL in the middle of
 * the rewrite of the shards changes nothing; `sluice estimate` says the same and exits 2
 * where `run` would refuse.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  describeResult,
  emulatorEnv,
  fastRunFlags,
  getLedger,
  makeProject,
  readJsonl,
  runCli,
  startTestEmulator,
  writeLines,
  writeText
} from "./support/cli.js"
import type { CliResult, TempProject, TestEmulator } from "./support/cli.js"
import { batchesOfRun, expectPaidOnce, readFailures, readSink, runIdOf } from "./support/runs.js"
import type { FailureLine } from "./support/runs.js"

let emulator: TestEmulator
let project: TempProject

/** The pipeline: rows keyed by id; the source, the sink and onInvalid come from the environment. */
const pipeline = `import { Pipeline, Prompt, Sink, Source } from "@sluice/core"
import { Schema } from "effect"

const Row = Schema.Struct({ id: Schema.String, text: Schema.String })
const Label = Schema.Struct({ sentiment: Schema.Literal("positive", "negative", "neutral") })

export default Pipeline.make("dups").pipe(
  Pipeline.from(Source.jsonl(process.env.SOURCE ?? "data/rows.jsonl", Row), {
    key: (r) => r.id,
    onInvalid: process.env.ON_INVALID === "skip" ? "skip" : "fail"
  }),
  Pipeline.batch("label", {
    provider: "openai",
    model: "gpt-4o-mini",
    prompt: (r) => Prompt.chat({ system: "Label the review.", user: r.text }),
    output: Label
  }),
  Pipeline.to(Sink.jsonl(process.env.SINK ?? "out/rows.jsonl"))
)
`

const row = (i: number, text = `review ${i}: ${i % 3 === 0 ? "great" : "poor"} value`) => JSON.stringify({ id: `r${String(i).padStart(4, "0")}`, text })

/** 200 rows, then 95 of them again, each with its own request: line 200 + k repeats line k. */
const repeated = [...Array.from({ length: 200 }, (_, i) => row(i + 1)), ...Array.from({ length: 95 }, (_, i) => row(i + 1))]

/**
 * 200 rows; then six keys used again with another request (lines 201–206 repeat the keys of
 * lines 10, 20, …, 60), and one plain repeat (line 207 repeats line 100).
 */
const conflicting = [
  ...Array.from({ length: 200 }, (_, i) => row(i + 1)),
  ...Array.from({ length: 6 }, (_, i) => row((i + 1) * 10, `a different review ${i}`)),
  row(100)
]
const conflictLines = [10, 20, 30, 40, 50, 60, 201, 202, 203, 204, 205, 206]

beforeAll(async () => {
  emulator = await startTestEmulator()
  project = await makeProject("sluice-dups-")
  await writeText(project, "dups.pipeline.ts", pipeline)
  await writeLines(project, "data/repeated.jsonl", repeated)
  await writeLines(project, "data/conflicting.jsonl", conflicting)
})

afterAll(async () => {
  await emulator?.close()
  await project?.cleanup()
})

interface RunSpec {
  readonly source: string
  readonly runDir: string
  readonly shardSize: number
  readonly onInvalid?: "fail" | "skip"
  readonly env?: Record<string, string>
}

const sinkOf = (runDir: string) => `out/${runDir.replace(/[^a-z0-9]+/gi, "-")}.jsonl`

const run = (spec: RunSpec): Promise<CliResult> =>
  runCli(["run", "dups.pipeline.ts", "--run-dir", spec.runDir, ...fastRunFlags(spec.shardSize)], {
    cwd: project.dir,
    env: {
      ...emulatorEnv(emulator.url),
      SOURCE: spec.source,
      SINK: sinkOf(spec.runDir),
      ON_INVALID: spec.onInvalid ?? "fail",
      ...spec.env
    }
  })

/** What a finished run left: sink rows (key, custom_id), failures (key, class, location), and its payments. */
const outcome = async (runDir: string) => {
  const sink = await readSink(project.path(sinkOf(runDir)))
  const failures = await readFailures(project.path(runDir))
  const runId = await runIdOf(project.path(runDir))
  const ledger = await getLedger(emulator.url)
  const delivered = expectPaidOnce(ledger, runId)
  return {
    sink: sink.map((l) => `${l.key} ${l.custom_id}`).sort(),
    failures: failures.map((f: FailureLine & { location?: string }) => `${f.key} ${f.class} ${f.location} ${f.custom_id}`).sort(),
    delivered: [...delivered].sort(),
    messages: failures.map((f) => f.message)
  }
}

describe("duplicate keys", () => {
  it("the same key and request: sent once, the repeats listed as duplicates — the same at shard sizes 100 and 50,000", async () => {
    const outcomes = []
    for (const shardSize of [100, 50_000]) {
      const runDir = `runs/repeated-${shardSize}`
      const result = await run({ source: "data/repeated.jsonl", runDir, shardSize })
      expect(result.code, describeResult(result)).toBe(0)
      expect(result.stderr).toContain("95 rows repeat an earlier row's key and request")
      const o = await outcome(runDir)
      expect(o.sink).toHaveLength(200)
      expect(new Set(o.sink.map((l) => l.split(" ")[0])).size).toBe(200)
      // Paid for once each: the 200 requests of the sink, and no other.
      expect(o.delivered).toEqual(o.sink.map((l) => l.split(" ")[1]).sort())
      expect(o.failures).toHaveLength(95)
      const lines = readJsonl<FailureLine & { location: string }>(project.path(runDir, "failures.jsonl"))
      for (const f of await lines) {
        expect(f.class).toBe("duplicate")
        const at = Number(f.location.split(":")[1])
        expect(at).toBeGreaterThan(200)
        expect(f.message).toContain(`data/repeated.jsonl:${at - 200} `)
      }
      outcomes.push({ sink: o.sink, failures: o.failures })
    }
    expect(outcomes[0]).toEqual(outcomes[1])
  })

  it('the same key with different requests, onInvalid "fail": nothing is submitted, every row is named with file:line; fixed, the run goes on', async () => {
    const stderrs: Array<string> = []
    for (const shardSize of [100, 50_000]) {
      const runDir = `runs/conflicting-fail-${shardSize}`
      const uploads = emulator.calls("POST", "/v1/files")
      const result = await run({ source: "data/conflicting.jsonl", runDir, shardSize })
      expect(result.code, describeResult(result)).toBe(2)
      expect(result.stderr).toContain("12 rows share 6 keys with different requests; nothing was submitted")
      // The first ten in the message, all twelve in duplicate-keys.jsonl.
      expect(result.stderr).toContain("… and 2 more; every one is listed in")
      const named = conflictLines.filter((n) => result.stderr.includes(`data/conflicting.jsonl:${n}:`))
      expect(named).toEqual(conflictLines.slice(0, 10))
      const listed = await readJsonl<{ key: string; location: string }>(project.path(runDir, "duplicate-keys.jsonl"))
      expect(listed.map((l) => l.location)).toEqual(conflictLines.map((n) => `data/conflicting.jsonl:${n}`))
      expect(new Set(listed.map((l) => l.key))).toEqual(new Set(["r0010", "r0020", "r0030", "r0040", "r0050", "r0060"]))
      expect(batchesOfRun(await getLedger(emulator.url), await runIdOf(project.path(runDir)))).toEqual([])
      expect(emulator.calls("POST", "/v1/files")).toBe(uploads)
      stderrs.push(result.stderr.slice(result.stderr.indexOf("12 rows share")).replaceAll(runDir, "<run>"))
    }
    expect(stderrs[0]).toEqual(stderrs[1])

    // The data fixed in place (the repeated keys made unique), the same command runs it all.
    const runDir = "runs/conflicting-fail-100"
    await writeLines(project, "data/conflicting.jsonl", conflicting.map((l, i) => (i >= 200 && i < 206 ? row(300 + i) : l)))
    try {
      const fixed = await run({ source: "data/conflicting.jsonl", runDir, shardSize: 100 })
      expect(fixed.code, describeResult(fixed)).toBe(0)
      const o = await outcome(runDir)
      expect(o.sink).toHaveLength(206)
      expect(o.failures).toEqual([`r0100 duplicate data/conflicting.jsonl:207 ${o.sink.find((l) => l.startsWith("r0100 "))!.split(" ")[1]}`])
    } finally {
      await writeLines(project, "data/conflicting.jsonl", conflicting)
    }
  })

  it('the same key with different requests, onInvalid "skip": every such row listed as duplicate_key, the rest in the sink, nothing paid twice', async () => {
    const outcomes = []
    for (const shardSize of [100, 50_000]) {
      const runDir = `runs/conflicting-skip-${shardSize}`
      const result = await run({ source: "data/conflicting.jsonl", runDir, shardSize, onInvalid: "skip" })
      // Rows were left out: exit 1, like any failed row.
      expect(result.code, describeResult(result)).toBe(1)
      const o = await outcome(runDir)
      expect(o.sink).toHaveLength(194)
      expect(o.sink.some((l) => /^r00[1-6]0 /.test(l))).toBe(false)
      expect(o.delivered).toEqual(o.sink.map((l) => l.split(" ")[1]).sort())
      const classes = o.failures.map((f) => f.split(" ").slice(0, 3).join(" "))
      expect(classes).toEqual(
        [
          ...conflictLines.map((n) => `r${String(n <= 60 ? n : (n - 200) * 10).padStart(4, "0")} duplicate_key data/conflicting.jsonl:${n}`),
          "r0100 duplicate data/conflicting.jsonl:207"
        ].sort()
      )
      outcomes.push({ sink: o.sink, failures: o.failures })
    }
    expect(outcomes[0]).toEqual(outcomes[1])
  })

  it("rows answered from the response cache and their repeats: the rewrite keeps the cached answers; nothing is paid again", async () => {
    const env = { SLUICE_CACHE: "on", SLUICE_CACHE_DIR: project.path("cache") }
    const first = await run({ source: "data/repeated.jsonl", runDir: "runs/cache-1", shardSize: 60, env })
    expect(first.code, describeResult(first)).toBe(0)
    // The same rows again, now all from the cache: shards of cached rows lose their repeats.
    const second = await run({ source: "data/repeated.jsonl", runDir: "runs/cache-2", shardSize: 60, env })
    expect(second.code, describeResult(second)).toBe(0)
    const runId = await runIdOf(project.path("runs/cache-2"))
    expect(batchesOfRun(await getLedger(emulator.url), runId)).toEqual([])
    const a = await outcome("runs/cache-1")
    const b = await outcome("runs/cache-2")
    expect(b.sink).toEqual(a.sink)
    expect(b.failures).toEqual(a.failures)
  })
})

describe("a SIGKILL in the middle of the duplicate check, then the same command again", () => {
  // Shards of 50 rows: the conflicting rows and the repeat sit in three shards (1, 2 and 5),
  // each rewritten; each rewrite renames two files (the third is killed between the two of shard 2).
  const points = ["rewrite-before-journal:2", "after:ShardRewritten:2", "rewrite-rename:3", "after:KeysChecked:1"]
  let reference: Awaited<ReturnType<typeof outcome>>

  beforeAll(async () => {
    const result = await run({ source: "data/conflicting.jsonl", runDir: "runs/kill-reference", shardSize: 50, onInvalid: "skip" })
    expect(result.code, describeResult(result)).toBe(1)
    reference = await outcome("runs/kill-reference")
  })

  it.each(points)("killed at %s: the same sink and failures as a run never killed; nothing paid twice", async (point) => {
    const runDir = `runs/kill-${point.replace(/[^a-z0-9]+/gi, "-")}`
    const killed = await run({ source: "data/conflicting.jsonl", runDir, shardSize: 50, onInvalid: "skip", env: { SLUICE_FAILPOINT: point } })
    expect(killed.signal, `not killed at ${point}: ${describeResult(killed)}`).toBe("SIGKILL")
    const resumed = await run({ source: "data/conflicting.jsonl", runDir, shardSize: 50, onInvalid: "skip" })
    expect(resumed.code, describeResult(resumed)).toBe(1)
    const o = await outcome(runDir)
    expect(o.sink).toEqual(reference.sink)
    // Each left-out row listed once, as in the run never killed.
    expect(o.failures).toEqual(reference.failures)
    expect(o.delivered).toEqual(reference.delivered)
  })
})

describe("sluice estimate", () => {
  const estimate = (source: string, onInvalid: "fail" | "skip" = "fail") =>
    runCli(["estimate", "dups.pipeline.ts", "--json"], { cwd: project.dir, env: { SOURCE: source, ON_INVALID: onInvalid } })

  it("counts repeats as sent once, and exits 0 when run would go on", async () => {
    const result = await estimate("data/repeated.jsonl")
    expect(result.code, describeResult(result)).toBe(0)
    expect(JSON.parse(result.stdout)).toMatchObject({ rows: 200, duplicates: 95, conflicts: { rows: 0, keys: 0 }, refusal: null })
  })

  it('exits 2 where run would refuse (conflicting keys, invalid rows; onInvalid "fail"), naming the rows; 0 with "skip"', async () => {
    const refused = await estimate("data/conflicting.jsonl")
    expect(refused.code, describeResult(refused)).toBe(2)
    const e = JSON.parse(refused.stdout)
    expect(e).toMatchObject({ rows: 194, duplicates: 1, conflicts: { rows: 12, keys: 6 } })
    expect(e.refusal).toContain("12 rows whose keys other rows have with different requests")
    expect(e.problems).toHaveLength(10)
    expect(e.problems[0]).toContain("data/conflicting.jsonl:10:")
    expect(refused.stderr).toContain("sluice: error: sluice run would stop before submitting anything")

    const skipped = await estimate("data/conflicting.jsonl", "skip")
    expect(skipped.code, describeResult(skipped)).toBe(0)
    expect(JSON.parse(skipped.stdout)).toMatchObject({ rows: 194, conflicts: { rows: 12, keys: 6 }, refusal: null })

    await writeLines(project, "data/invalid.jsonl", [row(1), "{not json", row(2), JSON.stringify({ id: 3 })])
    const invalid = await runCli(["estimate", "dups.pipeline.ts"], { cwd: project.dir, env: { SOURCE: "data/invalid.jsonl" } })
    expect(invalid.code, describeResult(invalid)).toBe(2)
    expect(invalid.stdout).toContain("data/invalid.jsonl:2:")
    expect(invalid.stdout).toContain("data/invalid.jsonl:4:")
    expect(invalid.stderr).toContain('sluice run would stop before submitting anything (onInvalid "fail"): 2 invalid rows')
  })
})

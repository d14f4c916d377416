/**
 * The per-row response cache across runs, end to end through the real CLI and the emulator:
 * a second run over the same data with two new rows submits exactly those two requests; a
 * change to the parse step only submits nothing and re-derives outputs from stored answers;
 * a later stage reuses answers another pipeline's stage got; `--no-cache` turns it off.
 */
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { describeResult, emulatorEnv, getLedger, makeProject, readJsonl, runCli, startTestEmulator, writeRows, writeText } from "./support/cli.js"
import type { Row, TempProject, TestEmulator } from "./support/cli.js"
import { holdClock, releaseClock, runFlags, runIdOf, setFaults } from "./support/runs.js"

let emulator: TestEmulator
let project: TempProject
let rows: ReadonlyArray<Row>

const API_KEY = "sk-cache-test-secret-key"

/** Each test spawns the CLI several times (tsx loads TypeScript on each start, seconds on a busy machine): be generous. */
const SLOW = { timeout: 180_000 }

/** A labelling pipeline; `then` is appended after the stage (a parse-only change). */
const pipeline = (opts: { readonly source: string; readonly sink: string; readonly then?: string }) => `
import { Pipeline, Prompt, Sink, Source } from "@sluice/core"
import { Schema } from "effect"
const Review = Schema.Struct({ id: Schema.String, text: Schema.String })
const Label = Schema.Struct({ sentiment: Schema.Literal("positive", "negative", "neutral"), topics: Schema.Array(Schema.String) })
export default Pipeline.make("cached").pipe(
  Pipeline.from(Source.jsonl(${JSON.stringify(opts.source)}, Review), { key: (r) => r.id }),
  Pipeline.batch("label", {
    provider: "openai", model: "gpt-4o-mini",
    prompt: (r) => Prompt.chat({ system: "You label product reviews (cache test).", user: r.text }),
    output: Label
  }),${opts.then === undefined ? "" : `\n  ${opts.then},`}
  Pipeline.to(Sink.jsonl(${JSON.stringify(opts.sink)}))
)
`

const run = async (file: string, runDir: string, extra: ReadonlyArray<string> = ["--cache-dir", "cache"]) => {
  const result = await runCli(["run", file, ...runFlags(runDir, 20, extra), "--json"], { cwd: project.dir, env: emulatorEnv(emulator.url, API_KEY) })
  expect(result.code, describeResult(result)).toBe(0)
  return JSON.parse(result.stdout) as { succeeded: number; fromCache: number; batches: number }
}

/** The custom_ids a run submitted, from the emulator's ledger. */
const submitted = async (runDir: string): Promise<Array<string>> => {
  const runId = await runIdOf(project.path(runDir))
  return (await getLedger(emulator.url)).batches.filter((b) => b.metadata?.["sluice_run"] === runId).flatMap((b) => [...b.custom_ids])
}

beforeAll(async () => {
  emulator = await startTestEmulator()
  project = await makeProject("sluice-cache-")
  rows = await writeRows(project, "data/rows.jsonl", 30)
  await writeText(project, "label.pipeline.ts", pipeline({ source: "data/rows.jsonl", sink: "out/first.jsonl" }))
})

afterAll(async () => {
  await emulator?.close()
  await project?.cleanup()
})

describe("response cache", SLOW, () => {
  it("a second run over the same data with two new rows submits exactly two requests", async () => {
    const first = await run("label.pipeline.ts", "runs/first")
    expect(first.succeeded).toBe(30)
    expect(first.fromCache).toBe(0)
    expect((await submitted("runs/first")).length).toBe(30)

    const grown = [...rows, { id: "new-1", text: "A new review, never seen." }, { id: "new-2", text: "Another new one." }]
    await writeText(project, "data/grown.jsonl", grown.map((r) => JSON.stringify(r)).join("\n") + "\n")
    await writeText(project, "grown.pipeline.ts", pipeline({ source: "data/grown.jsonl", sink: "out/grown.jsonl" }))
    const second = await run("grown.pipeline.ts", "runs/grown")
    expect(second.succeeded).toBe(32)
    expect(second.fromCache).toBe(30)
    const ids = await submitted("runs/grown")
    expect(ids.length).toBe(2)
    expect(ids.every((id) => /^label-new-[12]-/.test(id))).toBe(true)

    // The sink has every row, the cached ones with the same outputs as the first run.
    const firstOut = new Map((await readJsonl<{ key: string; output: unknown }>(project.path("out/first.jsonl"))).map((r) => [r.key, r.output]))
    const grownOut = await readJsonl<{ key: string; output: unknown }>(project.path("out/grown.jsonl"))
    expect(grownOut.map((r) => r.key).sort()).toEqual(grown.map((r) => r.id).sort())
    for (const r of grownOut) if (firstOut.has(r.key)) expect(r.output).toEqual(firstOut.get(r.key))
  })

  it("a parse-only change submits nothing and re-derives the outputs from stored answers", async () => {
    await writeText(
      project,
      "reparse.pipeline.ts",
      pipeline({
        source: "data/rows.jsonl",
        sink: "out/reparse.jsonl",
        then: `Pipeline.map((label, review) => ({ id: review.id, loud: label.sentiment.toUpperCase(), topicCount: label.topics.length }))`
      })
    )
    const result = await run("reparse.pipeline.ts", "runs/reparse")
    expect(result.succeeded).toBe(30)
    expect(result.fromCache).toBe(30)
    expect(result.batches).toBe(0)
    expect(await submitted("runs/reparse")).toEqual([])
    const firstOut = new Map(
      (await readJsonl<{ key: string; output: { sentiment: string; topics: Array<string> } }>(project.path("out/first.jsonl"))).map((r) => [r.key, r.output])
    )
    const out = await readJsonl<{ key: string; output: { id: string; loud: string; topicCount: number } }>(project.path("out/reparse.jsonl"))
    expect(out.length).toBe(30)
    for (const r of out) {
      const before = firstOut.get(r.key)!
      expect(r.output).toEqual({ id: r.key, loud: before.sentiment.toUpperCase(), topicCount: before.topics.length })
    }
  })

  it("a later stage of another pipeline reuses answers to the same request", async () => {
    // Stage 2 asks exactly what the labelling stage asked (its name too: it names the JSON
    // schema sent), about the row the first stage passes on.
    await writeText(
      project,
      "two.pipeline.ts",
      `
import { Pipeline, Prompt, Sink, Source } from "@sluice/core"
import { Schema } from "effect"
const Review = Schema.Struct({ id: Schema.String, text: Schema.String })
const Label = Schema.Struct({ sentiment: Schema.Literal("positive", "negative", "neutral"), topics: Schema.Array(Schema.String) })
export default Pipeline.make("two").pipe(
  Pipeline.from(Source.jsonl("data/rows.jsonl", Review), { key: (r) => r.id }),
  Pipeline.batch("echo", { provider: "openai", model: "gpt-4o-mini", prompt: (r) => Prompt.chat({ user: "Echo: " + r.id }) }),
  Pipeline.map((_answer, review) => review),
  Pipeline.batch("label", {
    provider: "openai", model: "gpt-4o-mini",
    prompt: (r) => Prompt.chat({ system: "You label product reviews (cache test).", user: r.text }),
    output: Label
  }),
  Pipeline.to(Sink.jsonl("out/two.jsonl"))
)
`
    )
    const result = await run("two.pipeline.ts", "runs/two")
    expect(result.succeeded).toBe(30)
    expect(result.fromCache).toBe(30)
    const ids = await submitted("runs/two")
    expect(ids.length).toBe(30)
    expect(ids.every((id) => id.startsWith("echo-"))).toBe(true)
  })

  it("repairs are cached too: a rerun whose answers needed repair submits nothing", async () => {
    await writeText(project, "repair.pipeline.ts", pipeline({ source: "data/rows.jsonl", sink: "out/repair-1.jsonl" }).replace("(cache test)", "(repair cache test)"))
    await setFaults(emulator.url, { invalidJsonRate: 0.3 })
    try {
      // Some rows may still fail after their repairs (exit 1): the rerun must end the same way.
      const first = await runCli(["run", "repair.pipeline.ts", ...runFlags("runs/repair-1", 20, ["--cache-dir", "cache-repair"])], {
        cwd: project.dir,
        env: emulatorEnv(emulator.url, API_KEY)
      })
      expect([0, 1], describeResult(first)).toContain(first.code)
    } finally {
      await setFaults(emulator.url, { invalidJsonRate: 0 })
    }
    const firstIds = await submitted("runs/repair-1")
    expect(firstIds.some((id) => /-r1$/.test(id)), "the first run repaired some answers").toBe(true)

    await writeText(project, "repair.pipeline.ts", pipeline({ source: "data/rows.jsonl", sink: "out/repair-2.jsonl" }).replace("(cache test)", "(repair cache test)"))
    const result = await runCli(["run", "repair.pipeline.ts", ...runFlags("runs/repair-2", 20, ["--cache-dir", "cache-repair", "--json"])], {
      cwd: project.dir,
      env: emulatorEnv(emulator.url, API_KEY)
    })
    expect([0, 1], describeResult(result)).toContain(result.code)
    expect(await submitted("runs/repair-2")).toEqual([])
    const second = JSON.parse(result.stdout) as { succeeded: number }
    const firstOut = await readJsonl<{ key: string; output: unknown }>(project.path("out/repair-1.jsonl"))
    const secondOut = await readJsonl<{ key: string; output: unknown }>(project.path("out/repair-2.jsonl"))
    expect(second.succeeded).toBe(firstOut.length)
    expect(new Map(secondOut.map((r) => [r.key, r.output]))).toEqual(new Map(firstOut.map((r) => [r.key, r.output])))
  })

  it("--no-cache submits every request, and the cache holds no secret", async () => {
    const result = await run("label.pipeline.ts", "runs/uncached", ["--no-cache"])
    expect(result.fromCache).toBe(0)
    expect((await submitted("runs/uncached")).length).toBe(30)

    const dir = project.path("cache/v1")
    const files = readdirSync(dir)
    expect(files.some((f) => f.endsWith(".jsonl"))).toBe(true)
    for (const f of files) expect(readFileSync(join(dir, f), "utf8")).not.toContain(API_KEY)
  })
})

describe("accepting a changed pipeline (--allow-changed)", SLOW, () => {
  /** Rows whose id ends in 7 get a new prompt; the rest ask exactly what they asked before. */
  const changing = (changed: boolean) =>
    pipeline({ source: "data/rows.jsonl", sink: "out/changing.jsonl" }).replace(
      `prompt: (r) => Prompt.chat({ system: "You label product reviews (cache test).", user: r.text })`,
      `prompt: (r) => Prompt.chat({ system: ${changed ? `r.id.endsWith("7") ? "You label reviews, tersely." : ` : ""}"You label product reviews (cache test).", user: r.text })`
    )

  it("keeps the answers of unchanged rows, gives changed rows new ids, and waits for batches in flight first", async () => {
    // The emulator's clock stands still until the change is accepted: the batches the first run
    // submits are still in flight while it detaches, and while the change is refused and waits.
    const slow = await startTestEmulator()
    await holdClock(slow.url)
    try {
      const env = { ...emulatorEnv(slow.url, API_KEY) }
      const cli = (args: ReadonlyArray<string>) => runCli(args, { cwd: project.dir, env })
      await writeText(project, "changing.pipeline.ts", changing(false))
      // Planned without the cache (as runs from before it were): answers carry over by custom_id anyway.
      const first = await cli(["run", "changing.pipeline.ts", ...runFlags("runs/changing", 10, ["--no-cache", "--detach"])])
      // 3: submitted, not finished (detached)
      expect(first.code, describeResult(first)).toBe(3)
      const runDir = project.path("runs/changing")
      const oldRunId = await runIdOf(runDir)
      const oldIds = new Map(
        (await getLedger(slow.url)).batches.filter((b) => b.metadata?.["sluice_run"] === oldRunId).flatMap((b) => b.custom_ids.map((id) => [id.split("-")[1]!, id] as const))
      )
      expect(oldIds.size).toBe(30)

      await writeText(project, "changing.pipeline.ts", changing(true))
      const refused = await cli(["run", "changing.pipeline.ts", ...runFlags("runs/changing", 10, ["--cache-dir", "cache-changing"])])
      expect(refused.code, describeResult(refused)).toBe(2)
      // Detached while those batches still run: nothing is archived yet (exit 3), the change waits.
      const waiting = await cli(["run", "changing.pipeline.ts", ...runFlags("runs/changing", 10, ["--cache-dir", "cache-changing", "--allow-changed", "--detach"])])
      expect(waiting.code, describeResult(waiting)).toBe(3)
      expect(await runIdOf(project.path("runs/changing"))).toBe(oldRunId)
      await releaseClock(slow.url)
      const accepted = await cli(["run", "changing.pipeline.ts", ...runFlags("runs/changing", 10, ["--cache-dir", "cache-changing", "--allow-changed", "--json"])])
      expect(accepted.code, describeResult(accepted)).toBe(0)
      const summary = JSON.parse(accepted.stdout) as { succeeded: number; fromCache: number }
      expect(summary).toMatchObject({ succeeded: 30, fromCache: 27 })

      // The new generation runs under a new run id and submitted the three changed rows only, under new ids.
      const newRunId = await runIdOf(runDir)
      expect(newRunId).toBe(`${oldRunId}-g2`)
      const ledger = await getLedger(slow.url)
      const submittedNow = ledger.batches.filter((b) => b.metadata?.["sluice_run"] === newRunId).flatMap((b) => [...b.custom_ids])
      expect(submittedNow.map((id) => id.split("-")[1]).sort()).toEqual(["r0007", "r0017", "r0027"])
      for (const id of submittedNow) expect(id).not.toBe(oldIds.get(id.split("-")[1]!))
      // Nothing paid twice: the old generation's batches were each created once and waited for.
      const oldBatches = ledger.batches.filter((b) => b.metadata?.["sluice_run"] === oldRunId)
      expect(new Set(oldBatches.map((b) => b.metadata!["sluice_shard"])).size).toBe(oldBatches.length)

      // The sink holds every row once; the unchanged ones under their old ids, the changed ones under new ids.
      const out = await readJsonl<{ key: string; custom_id: string }>(project.path("out/changing.jsonl"))
      expect(out.map((r) => r.key).sort()).toEqual(rows.map((r) => r.id).sort())
      for (const r of out) {
        if (r.key.endsWith("7")) expect(r.custom_id).not.toBe(oldIds.get(r.key))
        else expect(r.custom_id).toBe(oldIds.get(r.key))
      }
      // The earlier generation is kept for inspection.
      expect(readdirSync(join(runDir, "previous", "1")).sort()).toEqual(expect.arrayContaining(["journal.jsonl", "results.jsonl", "shards"]))
    } finally {
      await slow.close()
    }
  })

  it("a crash in the middle of accepting the change is taken up by the next run", async () => {
    await writeText(project, "moving.pipeline.ts", changing(false).replace("out/changing.jsonl", "out/moving.jsonl"))
    const flags = (extra: ReadonlyArray<string>) => runFlags("runs/moving", 10, ["--cache-dir", "cache-moving", ...extra])
    const first = await runCli(["run", "moving.pipeline.ts", ...flags([])], { cwd: project.dir, env: emulatorEnv(emulator.url, API_KEY) })
    expect(first.code, describeResult(first)).toBe(0)
    const oldRunId = await runIdOf(project.path("runs/moving"))

    await writeText(project, "moving.pipeline.ts", changing(true).replace("out/changing.jsonl", "out/moving.jsonl"))
    // Killed after moving four of the run's files to previous/1 (journal, results, failures, shards):
    // the next run recreates an empty journal and shards directory before it takes up the move.
    const killed = await runCli(["run", "moving.pipeline.ts", ...flags(["--allow-changed"])], {
      cwd: project.dir,
      env: { ...emulatorEnv(emulator.url, API_KEY), SLUICE_FAILPOINT: "rebase-moved:4" }
    })
    expect(killed.signal, describeResult(killed)).toBe("SIGKILL")
    expect(await runIdOf(project.path("runs/moving"))).toBe(oldRunId)

    const again = await runCli(["run", "moving.pipeline.ts", ...flags(["--allow-changed", "--json"])], { cwd: project.dir, env: emulatorEnv(emulator.url, API_KEY) })
    expect(again.code, describeResult(again)).toBe(0)
    expect(JSON.parse(again.stdout)).toMatchObject({ succeeded: 30, fromCache: 27 })
    const ids = await submitted("runs/moving")
    expect(ids.map((id) => id.split("-")[1]).sort()).toEqual(["r0007", "r0017", "r0027"])
    const out = await readJsonl<{ key: string }>(project.path("out/moving.jsonl"))
    expect(out.map((r) => r.key).sort()).toEqual(rows.map((r) => r.id).sort())
  })
})

describe("a cache that cannot be used", SLOW, () => {
  it("costs a warning, not the run", async () => {
    await writeText(project, "blocked-cache", "a file where the cache directory should be")
    // (`--cache-dir` refuses such a path itself; the environment variable reaches the runner.)
    const result = await runCli(["run", "label.pipeline.ts", ...runFlags("runs/blocked", 20, ["--json"])], {
      cwd: project.dir,
      env: { ...emulatorEnv(emulator.url, API_KEY), SLUICE_CACHE: undefined, SLUICE_CACHE_DIR: "blocked-cache" }
    })
    expect(result.code, describeResult(result)).toBe(0)
    expect(result.stderr).toContain("running without the response cache")
    expect((JSON.parse(result.stdout) as { succeeded: number }).succeeded).toBe(30)
  })
})

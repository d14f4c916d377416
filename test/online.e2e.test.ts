/**
 * Online execution, end to end: the real CLI against the emulator's real-time endpoints on
 * 127.0.0.1. One pipeline gives the same sink whichever mode runs it; the summary splits its
 * costs by mode. (Rate limits, servers without headers and crashes: online-limits.e2e.test.ts
 * and online-crash.e2e.test.ts.)
 */
import { existsSync } from "node:fs"
import { getLedger } from "@sluice/emulator/control"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { describeResult, fastRunFlags, makeProject, pipelineSource, runCli, sentiments, startTestEmulator, writeRows, writeText } from "./support/cli.js"
import type { TempProject, TestEmulator } from "./support/cli.js"
import { readSink } from "./support/runs.js"
import type { SinkLine } from "./support/runs.js"

const ROWS = 12

let emulator: TestEmulator
let project: TempProject

/** The CLI's environment: every family's client pointed at the emulator. */
const env = () => ({
  OPENAI_BASE_URL: `${emulator.url}/v1`,
  OPENAI_API_KEY: "sk-test-fake-key",
  ANTHROPIC_BASE_URL: emulator.url,
  ANTHROPIC_API_KEY: "sk-ant-test-fake-key",
  GEMINI_BASE_URL: emulator.url,
  GEMINI_API_KEY: "gemini-test-fake-key",
  VLLM_BASE_URL: `${emulator.url}/v1`
})

interface Summary {
  readonly finished: boolean
  readonly rows: number
  readonly succeeded: number
  readonly batches: number
  readonly onlineShards: number
  readonly costByMode: {
    readonly batch: { readonly usage: { readonly input: number; readonly output: number }; readonly cost: number | null }
    readonly online: { readonly usage: { readonly input: number; readonly output: number }; readonly cost: number | null }
  }
  readonly spent: number | null
  readonly cost: { readonly batch: number; readonly realtime: number } | null
}

const runArgs = (pipeline: string, mode: string, slug: string) => ["run", pipeline, "--mode", mode, "--run-dir", `runs/${slug}`, "--json", ...fastRunFlags(5)]

/** Runs `pipeline` to the end in `mode`; returns its JSON summary and its sink's lines. */
const runIn = async (pipeline: string, mode: string, slug: string) => {
  const sink = project.path("out", `${slug}.jsonl`)
  const result = await runCli(runArgs(pipeline, mode, slug), { cwd: project.dir, env: { ...env(), SINK_PATH: sink } })
  expect(result.code, describeResult(result)).toBe(0)
  return { summary: JSON.parse(result.stdout) as Summary, sink: await readSink(sink) }
}

/** The sink's rows by key, checked to hold each input row exactly once. */
const byKey = (lines: ReadonlyArray<SinkLine>): Map<string, SinkLine> => {
  const keys = lines.map((l) => l.key)
  expect(new Set(keys).size, `a key twice in ${keys.join(",")}`).toBe(keys.length)
  expect([...keys].sort()).toEqual(Array.from({ length: ROWS }, (_, i) => `r${String(i + 1).padStart(4, "0")}`))
  return new Map(lines.map((l) => [l.key, l]))
}

/** The typed shape of a row: the Label schema of `pipelineSource`, field by field. */
const expectLabel = (line: SinkLine) => {
  expect(Object.keys(line).sort()).toEqual(["custom_id", "input", "key", "output"])
  const output = line.output as { sentiment: unknown; topics: unknown }
  expect(Object.keys(output).sort()).toEqual(["sentiment", "topics"])
  expect(sentiments).toContain(output.sentiment)
  expect(Array.isArray(output.topics) && output.topics.every((t) => typeof t === "string")).toBe(true)
}

beforeAll(async () => {
  emulator = await startTestEmulator()
  project = await makeProject("sluice-online-")
  await writeRows(project, "data/rows.jsonl", ROWS)
  for (const [provider, model] of [["openai", "gpt-4o-mini"], ["anthropic", "claude-haiku-4-5"], ["gemini", "gemini-2.5-flash"], ["vllm", "gpt-4o-mini"]] as const) {
    // The sink comes from the environment, so each run writes its own.
    await writeText(project, `${provider}.pipeline.ts`, pipelineSource({ provider, model, sink: "__SINK__" }).replace('"__SINK__"', "process.env.SINK_PATH!"))
  }
})

afterAll(async () => {
  await emulator?.close()
  await project?.cleanup()
})

describe("one pipeline, batch or online", { timeout: 180_000 }, () => {
  it("openai: batch, online and auto give sinks with the same rows and shape; costs split by mode", async () => {
    const batch = await runIn("openai.pipeline.ts", "batch", "openai-batch")
    const online = await runIn("openai.pipeline.ts", "online", "openai-online")
    const auto = await runIn("openai.pipeline.ts", "auto", "openai-auto")

    const sinks = [batch, online, auto].map((r) => byKey(r.sink))
    for (const sink of sinks) for (const line of sink.values()) expectLabel(line)
    // The emulator answers a real-time request exactly as the same line in a batch: the rows
    // are equal, not only alike — one collection path whichever mode answered.
    for (const sink of sinks.slice(1)) {
      for (const [key, line] of sinks[0]!) expect(sink.get(key), key).toEqual(line)
    }

    // Online: shards sent request by request, no batch; costs at real-time prices only.
    expect(online.summary.batches).toBe(0)
    expect(online.summary.onlineShards).toBeGreaterThan(0)
    expect(online.summary.costByMode.batch.usage).toMatchObject({ input: 0, output: 0 })
    expect(online.summary.costByMode.online.usage.input).toBeGreaterThan(0)
    expect(online.summary.costByMode.online.cost).toBeGreaterThan(0)
    expect(online.summary.spent).toBeCloseTo(online.summary.costByMode.online.cost!, 10)
    // Batch (and auto, on a provider with a batch API): batches only, at batch prices.
    for (const run of [batch, auto]) {
      expect(run.summary.onlineShards).toBe(0)
      expect(run.summary.batches).toBeGreaterThan(0)
      expect(run.summary.costByMode.online.usage).toMatchObject({ input: 0, output: 0 })
      expect(run.summary.costByMode.batch.cost).toBeGreaterThan(0)
      expect(run.summary.spent).toBeCloseTo(run.summary.costByMode.batch.cost!, 10)
    }
    // The same tokens either way; online costs more for them (real-time prices).
    expect(online.summary.costByMode.online.usage).toEqual(batch.summary.costByMode.batch.usage)
    expect(online.summary.spent!).toBeGreaterThan(batch.summary.spent!)
    expect(online.summary.cost).toEqual(batch.summary.cost)
  })

  it.each([["anthropic"], ["gemini"]])("%s: online gives the batch run's rows and shape", async (provider) => {
    const batch = await runIn(`${provider}.pipeline.ts`, "batch", `${provider}-batch`)
    const online = await runIn(`${provider}.pipeline.ts`, "online", `${provider}-online`)
    const [b, o] = [byKey(batch.sink), byKey(online.sink)]
    for (const line of o.values()) expectLabel(line)
    for (const [key, line] of b) expect(o.get(key), key).toEqual(line)
    expect(online.summary.batches).toBe(0)
    expect(online.summary.costByMode.online.cost).toBeGreaterThan(0)
    expect(online.summary.costByMode.batch.usage).toMatchObject({ input: 0, output: 0 })
  })

  it("a server without a batch API (the vllm preset): auto goes online with the batch run's rows; batch is refused before anything is sent", async () => {
    const reference = byKey((await runIn("openai.pipeline.ts", "batch", "vllm-reference")).sink)
    const calls = () => getLedger(emulator.url).then((l) => l.calls.length)
    const before = await calls()
    const refused = await runCli(runArgs("vllm.pipeline.ts", "batch", "vllm-batch"), { cwd: project.dir, env: { ...env(), SINK_PATH: project.path("out", "vllm-batch.jsonl") } })
    // A stage's configuration to change, not a run to resume: exit code 2, and no journal written.
    expect(refused.code, describeResult(refused)).toBe(2)
    expect(refused.stderr).toMatch(/vllm has no batch API/)
    expect(JSON.parse(refused.stdout)).toMatchObject({ error: { tag: "ModeUnsupported", exitCode: 2 } })
    expect(JSON.parse(refused.stdout).error.resume).toBeUndefined()
    expect(existsSync(project.path("runs", "vllm-batch", "journal.jsonl"))).toBe(false)
    expect(await calls()).toBe(before)

    const auto = await runIn("vllm.pipeline.ts", "auto", "vllm-auto")
    expect(auto.summary.batches).toBe(0)
    expect(auto.summary.onlineShards).toBeGreaterThan(0)
    expect(await calls()).toBe(before + ROWS)
    const sink = byKey(auto.sink)
    for (const [key, line] of reference) expect(sink.get(key), key).toEqual(line)
  })
})

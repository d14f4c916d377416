/**
 * `sluice preview` over the CLI against the emulator: the first N rows go online through every
 * stage (the ledger's real-time calls: exactly N per stage, no batch), each input is shown next
 * to every stage's parsed output or its failure, nothing reaches the sink, no run directory is
 * left (the child's TMPDIR is checked), and the full run's cost is shown for both modes.
 */
import { NodeContext, NodeHttpClient } from "@effect/platform-node"
import { getLedger } from "@sluice/emulator/control"
import type { LedgerCall } from "@sluice/emulator/control"
import { Pipeline, Prompt, Source } from "@sluice/core"
import { OpenAiBatch, Registry } from "@sluice/providers"
import type { BatchProvider } from "@sluice/providers"
import { Effect, Either, Layer, Redacted } from "effect"
import { existsSync } from "node:fs"
import { mkdir, readdir, rm } from "node:fs/promises"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Preview from "../packages/runner/src/Preview.js"
import { Label } from "./support/api.js"
import type { Review } from "./support/api.js"
import {
  emulatorEnv,
  makeProject,
  makeRows,
  pipelineSource,
  runCli,
  sentiments,
  startTestEmulator,
  writePipeline,
  writeRows,
  writeText
} from "./support/cli.js"
import type { TempProject, TestEmulator } from "./support/cli.js"

let emulator: TestEmulator
let project: TempProject
const rows = makeRows(30)

/** A pipeline of two stages: a label, then a one-line summary of the label. */
const twoStages = `import { Pipeline, Prompt, Sink, Source } from "@sluice/core"
import { Schema } from "effect"

const Review = Schema.Struct({ id: Schema.String, text: Schema.String })
const Label = Schema.Struct({ sentiment: Schema.Literal("positive", "negative", "neutral"), topics: Schema.Array(Schema.String) })
const Summary = Schema.Struct({ summary: Schema.String })

export default Pipeline.make("two").pipe(
  Pipeline.from(Source.jsonl("data/rows.jsonl", Review), { key: (r) => r.id }),
  Pipeline.batch("label", {
    provider: "openai", model: "gpt-4o-mini",
    prompt: (r) => Prompt.chat({ system: "You label product reviews.", user: r.text }),
    output: Label
  }),
  Pipeline.batch("summarize", {
    provider: "openai", model: "gpt-4o-mini",
    prompt: (l) => Prompt.chat({ user: "Summarise: " + JSON.stringify(l) }),
    output: Summary
  }),
  Pipeline.to(Sink.jsonl("out/two.jsonl"))
)
`

beforeAll(async () => {
  emulator = await startTestEmulator()
  project = await makeProject("sluice-preview-")
  await writeRows(project, "data/rows.jsonl", rows)
  await writePipeline(project, "one.pipeline.ts", { name: "one", sink: "out/one.jsonl" })
  await writeText(project, "two.pipeline.ts", twoStages)
})

afterAll(async () => {
  await emulator?.close()
  await project?.cleanup()
})

/** Each test spawns the CLI (tsx loads TypeScript on each start, seconds on a busy machine). */
const SLOW = { timeout: 180_000 }

/** The real-time calls the emulator received after the first `from`. */
const callsSince = async (url: string, from: number): Promise<Array<LedgerCall>> => (await getLedger(url)).calls.slice(from)
const callCount = async (url: string): Promise<number> => (await getLedger(url)).calls.length

/** A TMPDIR of its own for a child: the preview's private run directory is made there. */
const freshTmp = async (name: string): Promise<string> => {
  const dir = project.path("tmp", name)
  await rm(dir, { recursive: true, force: true })
  await mkdir(dir, { recursive: true })
  return dir
}

/** The preview run directories in a TMPDIR (tsx keeps a cache of its own there). */
const previewDirs = async (tmp: string): Promise<Array<string>> => (await readdir(tmp)).filter((name) => name.startsWith("sluice-preview-"))

const env = (tmp: string, url = emulator.url) => ({ ...emulatorEnv(url), TMPDIR: tmp })

describe("sluice preview", SLOW, () => {
  it("is listed by `sluice --help`, and `sluice preview --help` lists its options", async () => {
    const top = await runCli(["--help"], { cwd: project.dir })
    expect(top.code).toBe(0)
    expect(top.stdout).toContain("sluice preview <pipeline.ts>")
    const help = await runCli(["preview", "--help"], { cwd: project.dir })
    expect(help.code).toBe(0)
    for (const option of ["(-n, --rows integer)", "--keep", "--no-cache", "--cache-dir", "--concurrency", "--rpm", "--tpm", "--prices", "--emulator", "--json"]) {
      expect(help.stdout).toContain(option)
    }
    expect(help.stdout).toContain("default 20")
  })

  it("single stage: exactly N rows online, inputs next to parsed outputs, nothing written, no run directory, both modes' cost", async () => {
    const tmp = await freshTmp("one")
    const before = await getLedger(emulator.url)
    const r = await runCli(["preview", "one.pipeline.ts", "-n", "5", "--json"], { cwd: project.dir, env: env(tmp) })
    expect(r.code, r.stderr).toBe(0)
    const p = JSON.parse(r.stdout) as Preview.Preview

    // The ledger: five real-time calls, one per row, all answered; no batch created.
    const after = await getLedger(emulator.url)
    const calls = after.calls.slice(before.calls.length)
    expect(calls.map((c) => c.endpoint)).toEqual(Array(5).fill("/v1/chat/completions"))
    expect(calls.every((c) => c.status === 200)).toBe(true)
    expect(new Set(calls.map((c) => c.custom_id)).size).toBe(5)
    expect(after.batches.length).toBe(before.batches.length)

    // The first five rows, in order, each with its input and a parsed label.
    expect(p.rows.map((row) => row.input)).toEqual(rows.slice(0, 5))
    expect(p.rows.map((row) => row.location)).toEqual([1, 2, 3, 4, 5].map((i) => `data/rows.jsonl:${i}`))
    for (const row of p.rows) {
      expect(row.steps).toHaveLength(1)
      expect(row.steps[0]!.stage).toBe("label")
      expect(sentiments).toContain((row.steps[0]!.output as { sentiment: string }).sentiment)
      expect(row.outputs).toEqual([{ key: (row.input as { id: string }).id, output: row.steps[0]!.output }])
    }
    expect(calls.map((c) => c.custom_id).sort()).toEqual(p.rows.map((row) => row.steps[0]!.customId).sort())
    expect(p).toMatchObject({ succeeded: 5, requests: 5, fromCache: 0, sink: "jsonl:out/one.jsonl", runDir: null })

    // The full run: 30 rows, priced in both modes (real-time twice batch for gpt-4o-mini).
    expect(p.projection.rows).toBe(30)
    expect(p.projection.batch).toBeGreaterThan(0)
    expect(p.projection.online).toBeCloseTo(p.projection.batch! * 2, 10)
    // Output tokens come from the five answers, not the default assumption of 100.
    const measuredOut = calls.reduce((a, c) => a + c.output_tokens, 0)
    expect(p.projection.stages[0]).toMatchObject({ basis: "estimate", measuredAnswers: 5, outputTokens: 30 * Math.round(measuredOut / 5) })

    // Nothing in the sink, no run directory among the user's runs, nothing left in TMPDIR.
    expect(existsSync(project.path("out/one.jsonl"))).toBe(false)
    expect(existsSync(project.path(".sluice/runs"))).toBe(false)
    expect(await previewDirs(tmp)).toEqual([])
  })

  it("answers fill the response cache: the same preview again sends nothing; --no-cache asks again", async () => {
    const tmp = await freshTmp("cache")
    // The tests run with SLUICE_CACHE=off: this one names its cache.
    const cache = ["--cache-dir", project.path("cache")]
    const first = await runCli(["preview", "one.pipeline.ts", "-n", "5", ...cache], { cwd: project.dir, env: env(tmp) })
    expect(first.code, first.stderr).toBe(0)
    expect(first.stdout).toContain("5 requests sent online")
    const from = await callCount(emulator.url)
    const again = await runCli(["preview", "one.pipeline.ts", "-n", "5", ...cache], { cwd: project.dir, env: env(tmp) })
    expect(again.code, again.stderr).toBe(0)
    expect(await callsSince(emulator.url, from)).toEqual([])
    // The text: each input, its output, and the cost lines of both modes.
    expect(again.stdout).toContain(`row 1 · data/rows.jsonl:1 · key r0001 · ok`)
    expect(again.stdout).toContain(`input   ${JSON.stringify(rows[0])}`)
    expect(again.stdout).toMatch(/label {3}\(from the response cache\) \{"sentiment":"(positive|negative|neutral)","topics":\[/)
    expect(again.stdout).toContain("5 rows answered from the response cache")
    expect(again.stdout).toMatch(/the full run \(30 rows\), projected: ~\$[\d.]+ in batch mode, ~\$[\d.]+ in online mode/)
    expect(again.stdout).toContain("nothing written to jsonl:out/one.jsonl")

    const fresh = await runCli(["preview", "one.pipeline.ts", "-n", "3", "--no-cache", ...cache], { cwd: project.dir, env: env(tmp) })
    expect(fresh.code, fresh.stderr).toBe(0)
    expect((await callsSince(emulator.url, from)).length).toBe(3)
    expect(await previewDirs(tmp)).toEqual([])
  })

  it("two stages: stage 1's outputs feed stage 2 as in a run; N calls per stage; --keep keeps the run directory", async () => {
    const tmp = await freshTmp("two")
    const from = await callCount(emulator.url)
    const r = await runCli(["preview", "two.pipeline.ts", "-n", "4", "--json", "--keep", "--no-cache"], { cwd: project.dir, env: env(tmp) })
    expect(r.code, r.stderr).toBe(0)
    const p = JSON.parse(r.stdout) as Preview.Preview
    const calls = await callsSince(emulator.url, from)
    expect(calls.filter((c) => c.custom_id?.startsWith("label-")).length).toBe(4)
    expect(calls.filter((c) => c.custom_id?.startsWith("summarize-")).length).toBe(4)
    expect(calls.length).toBe(8)

    expect(p.rows).toHaveLength(4)
    for (const [i, row] of p.rows.entries()) {
      expect(row.input).toEqual(rows[i])
      expect(row.steps.map((s) => s.stage)).toEqual(["label", "summarize"])
      expect(typeof (row.steps[1]!.output as { summary: string }).summary).toBe("string")
      expect(row.outputs).toEqual([{ key: rows[i]!.id, output: row.steps[1]!.output }])
    }
    // The second stage's requests are made of the first stage's outputs, as in a run.
    expect(p.projection.stages.map((s) => s.basis)).toEqual(["estimate", "scaled"])
    expect(p.projection.stages[1]!.requests).toBe(30)
    expect(p.projection.batch).toBeGreaterThan(p.projection.stages[0]!.batch!)
    expect(existsSync(project.path("out/two.jsonl"))).toBe(false)

    // Kept: the run directory is in TMPDIR, with the rows of both stages; the sink stayed unwritten.
    expect(p.runDir).not.toBeNull()
    expect(p.runDir!.startsWith(tmp)).toBe(true)
    expect(existsSync(`${p.runDir}/manifest.json`)).toBe(true)
    expect(existsSync(`${p.runDir}/outputs.jsonl`)).toBe(true)
  })

  it("an answer that does not parse is shown with its class, message and the answer; exit 1", async () => {
    // The emulator breaks an answer the first time it sees the request: one emulator per call.
    const faulty = await startTestEmulator({ invalidJsonRate: 1 })
    const faulty2 = await startTestEmulator({ invalidJsonRate: 1 })
    try {
      await writeText(
        project,
        "strict.pipeline.ts",
        pipelineSource({ name: "strict", sink: "out/strict.jsonl" }).replace("output: Label", "output: Label, repair: false")
      )
      const tmp = await freshTmp("strict")
      const text = await runCli(["preview", "strict.pipeline.ts", "-n", "2", "--no-cache"], { cwd: project.dir, env: env(tmp, faulty.url) })
      expect(text.code, text.stderr).toBe(1)
      expect(text.stdout).toContain("row 1 · data/rows.jsonl:1 · key r0001 · failed (parse)")
      expect(text.stdout).toMatch(/label {3}✗ parse \(parse_error\): response (is not valid JSON|does not match the schema)/)
      expect(text.stdout).toContain("answer: ")
      expect(text.stdout).toContain("2 failed (parse 2)")

      const json = await runCli(["run", "strict.pipeline.ts", "--preview", "-n", "2", "--no-cache", "--json"], { cwd: project.dir, env: env(tmp, faulty2.url) })
      expect(json.code, json.stderr).toBe(1)
      const p = JSON.parse(json.stdout) as Preview.Preview
      expect(p.failed).toEqual({ parse: 2 })
      for (const row of p.rows) {
        expect(row.steps[0]!.failure).toMatchObject({ class: "parse", code: "parse_error" })
        expect(typeof row.steps[0]!.answer).toBe("string")
        expect(row.failures).toMatchObject([{ stage: "label", class: "parse" }])
      }
      expect(existsSync(project.path("out/strict.jsonl"))).toBe(false)
      expect(await previewDirs(tmp)).toEqual([])
    } finally {
      await faulty.close()
      await faulty2.close()
    }
  })

  it("a model the price table does not know: the full run's cost is unknown, and the model is named", async () => {
    const anyModel = await startTestEmulator({ models: ["*"] })
    try {
      await writePipeline(project, "unpriced.pipeline.ts", { name: "unpriced", model: "my-finetune-1", sink: "out/unpriced.jsonl" })
      const tmp = await freshTmp("unpriced")
      const r = await runCli(["preview", "unpriced.pipeline.ts", "-n", "2", "--no-cache"], { cwd: project.dir, env: env(tmp, anyModel.url) })
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).toContain("row 2 · data/rows.jsonl:2 · key r0002 · ok")
      expect(r.stdout).toContain("preview cost: unknown (a model has no price)")
      expect(r.stdout).toContain("the full run (30 rows), projected: cost unknown: no price for my-finetune-1 in the price table (give one with --prices)")
      expect((await getLedger(anyModel.url)).calls.map((c) => c.model)).toEqual(["my-finetune-1", "my-finetune-1"])
    } finally {
      await anyModel.close()
    }
  })

  it("refuses before sending: a stage its provider cannot run online, N out of range, a missing file (exit 2)", async () => {
    await writeText(
      project,
      "responses.pipeline.ts",
      pipelineSource({ name: "responses", provider: "anthropic", model: "claude-3-5-haiku-latest" }).replace("output: Label", "output: Label, api: \"responses\"")
    )
    const from = await callCount(emulator.url)
    const tmp = await freshTmp("refused")
    const anthropic = { ANTHROPIC_BASE_URL: emulator.url, ANTHROPIC_API_KEY: "sk-ant-test", TMPDIR: tmp }
    const refused = await runCli(["preview", "responses.pipeline.ts"], { cwd: project.dir, env: anthropic })
    expect(refused.code, refused.stderr).toBe(2)
    expect(refused.stderr).toContain(`cannot preview: a preview sends every stage online, and stage "label" on anthropic cannot run online`)
    expect(await callsSince(emulator.url, from)).toEqual([])
    // `run` refuses the same stage as a usage error too (ModeUnsupported: exit 2, not a runtime failure).
    const run = await runCli(["run", "responses.pipeline.ts", "--run-dir", "runs/responses"], { cwd: project.dir, env: anthropic })
    expect(run.code, run.stderr).toBe(2)
    expect(run.stderr).toContain(`stage "label" on anthropic: the Responses API (api: "responses") is OpenAI's`)

    // (1001 and fractions: packages/runner/test/Flags.test.ts, through the same parser.)
    for (const n of ["0", "-3"]) {
      const bad = await runCli(["preview", "one.pipeline.ts", "-n", n], { cwd: project.dir, env: env(tmp) })
      expect(bad.code, `-n ${n}: ${bad.stderr}${bad.stdout}`).toBe(2)
      expect(bad.stderr + bad.stdout).toContain(`--rows must be an integer from 1 to 1000, got ${n}`)
    }
    const missing = await runCli(["preview", "nowhere.pipeline.ts"], { cwd: project.dir, env: env(tmp) })
    expect(missing.code).toBe(2)
    expect(missing.stderr).toContain("nowhere.pipeline.ts: no such file")

    const runOnly = await runCli(["run", "one.pipeline.ts", "--preview", "--detach"], { cwd: project.dir, env: env(tmp) })
    expect(runOnly.code).toBe(2)
    expect(runOnly.stderr).toContain("--detach does not apply to it")
    expect(await callsSince(emulator.url, from)).toEqual([])
    expect(await previewDirs(tmp)).toEqual([])
  })
})

/** A provider as `provider`, without its real-time endpoint (as a batch-only gateway). */
const withoutOnline = (provider: BatchProvider): BatchProvider => {
  const { online: _, ...rest } = provider
  return { ...rest, name: "batchonly" }
}

describe("Preview.preview (library)", () => {
  it("refuses a stage whose provider has no real-time endpoint, naming stage and provider, before anything is sent", async () => {
    const from = await callCount(emulator.url)
    const pipeline = Pipeline.make("offline").pipe(
      Pipeline.from(Source.array(makeRows(3)), { key: (r) => r.id }),
      Pipeline.batch("label", {
        provider: "batchonly",
        model: "gpt-4o-mini",
        prompt: (r: Review) => Prompt.chat({ user: r.text }),
        output: Label
      })
    )
    const layer = Layer.mergeAll(
      NodeContext.layer,
      Layer.unwrapEffect(
        Effect.map(OpenAiBatch.make({ apiKey: Redacted.make("test"), baseUrl: `${emulator.url}/v1` }), (openai) =>
          Registry.layer({ batchonly: withoutOnline(openai) })
        )
      ).pipe(Layer.provide(NodeHttpClient.layerUndici))
    )
    const result = await Effect.runPromise(Preview.preview(pipeline, { rows: 3 }).pipe(Effect.either, Effect.provide(layer)))
    expect(Either.isLeft(result)).toBe(true)
    const error = (result as Either.Left<unknown, unknown>).left
    expect(error).toBeInstanceOf(Preview.PreviewUnsupported)
    expect((error as Preview.PreviewUnsupported).message).toBe(
      `cannot preview: a preview sends every stage online, and stage "label" on batchonly cannot run online: ` +
        "batchonly has no real-time endpoint in sluice; `sluice estimate` projects the cost without sending anything"
    )
    expect(await callsSince(emulator.url, from)).toEqual([])
  })
})

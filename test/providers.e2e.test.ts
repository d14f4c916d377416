/**
 * One pipeline, three provider families: switching only the provider setting of the demo's
 * labelling pipeline gives the same typed output shape, through the real CLI against the
 * emulator (which speaks the OpenAI, Anthropic and Gemini wire formats at one origin).
 */
import { readFileSync } from "node:fs"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeProject, runCli, startTestEmulator, writeRows, writeText } from "./support/cli.js"
import type { TempProject, TestEmulator } from "./support/cli.js"

let emulator: TestEmulator
let project: TempProject

const pipeline = (provider: string, model: string) => `
import { Pipeline, Prompt, Sink, Source } from "@sluice/core"
import { Schema } from "effect"
const Row = Schema.Struct({ id: Schema.String, text: Schema.String })
const Label = Schema.Struct({
  sentiment: Schema.Literal("positive", "negative", "neutral", "mixed"),
  topics: Schema.Array(Schema.Literal("quality", "price", "shipping", "other")),
  summary: Schema.String,
  wouldRecommend: Schema.Boolean,
  score: Schema.NullOr(Schema.Number)
})
export default Pipeline.make("family").pipe(
  Pipeline.from(Source.jsonl("data/rows.jsonl", Row), { key: (r) => r.id }),
  Pipeline.batch("label", {
    provider: ${JSON.stringify(provider)}, model: ${JSON.stringify(model)},
    prompt: (r) => Prompt.chat({ system: "Label the review.", user: r.text }),
    output: Label
  }),
  Pipeline.to(Sink.jsonl("out/${provider}.jsonl"))
)
`

beforeAll(async () => {
  emulator = await startTestEmulator({ errorRate: 0.05 })
  project = await makeProject("sluice-family-")
  await writeRows(project, "data/rows.jsonl", 40)
})

afterAll(async () => {
  await emulator?.close()
  await project?.cleanup()
})

const env = () => ({
  OPENAI_BASE_URL: `${emulator.url}/v1`,
  OPENAI_API_KEY: "k",
  ANTHROPIC_BASE_URL: emulator.url,
  ANTHROPIC_API_KEY: "k",
  GEMINI_BASE_URL: emulator.url,
  GEMINI_API_KEY: "k"
})

const shapeOf = (value: unknown): unknown =>
  Array.isArray(value)
    ? "array"
    : value === null
    ? "null|number"
    : typeof value === "object"
    ? Object.fromEntries(Object.entries(value as object).map(([k, v]) => [k, shapeOf(v)]))
    : typeof value === "number"
    ? "null|number"
    : typeof value

/** Each test spawns the CLI several times (tsx loads TypeScript on each start, seconds on a busy machine): be generous. */
const SLOW = { timeout: 180_000 }

describe("provider families", SLOW, () => {
  it("the same pipeline on openai, anthropic and gemini gives every row, with the same typed output shape", async () => {
    const shapes = new Map<string, string>()
    for (const [provider, model] of [
      ["openai", "gpt-4o-mini"],
      ["anthropic", "claude-haiku-4-5"],
      ["gemini", "gemini-2.5-flash"]
    ] as const) {
      await writeText(project, `${provider}.pipeline.ts`, pipeline(provider, model))
      const result = await runCli(["run", `${provider}.pipeline.ts`, "--run-dir", `runs/${provider}`, "--poll-interval", "0.05", "--shard-size", "15"], {
        cwd: project.dir,
        env: env()
      })
      expect(result.code, `${provider}: ${result.stderr}`).toBe(0)
      const lines = readFileSync(project.path(`out/${provider}.jsonl`), "utf8").trim().split("\n").map((l) => JSON.parse(l))
      expect(lines.length).toBe(40)
      expect(new Set(lines.map((l) => l.input.id)).size).toBe(40)
      for (const l of lines) {
        expect(["positive", "negative", "neutral", "mixed"]).toContain(l.output.sentiment)
        expect(typeof l.output.wouldRecommend).toBe("boolean")
      }
      shapes.set(provider, JSON.stringify(shapeOf(lines[0].output)))
    }
    expect(new Set(shapes.values()).size).toBe(1)
  })
  it("an embeddings stage writes each row's vector", async () => {
    await writeText(
      project,
      "embed.pipeline.ts",
      `import { Pipeline, Sink, Source } from "@sluice/core"
import { Schema } from "effect"
const Row = Schema.Struct({ id: Schema.String, text: Schema.String })
export default Pipeline.make("embed").pipe(
  Pipeline.from(Source.jsonl("data/rows.jsonl", Row), { key: (r) => r.id }),
  Pipeline.embed("vec", { provider: "openai", model: "text-embedding-3-small", input: (r) => r.text }),
  Pipeline.to(Sink.jsonl("out/vectors.jsonl"))
)
`
    )
    const result = await runCli(["run", "embed.pipeline.ts", "--run-dir", "runs/embed", "--poll-interval", "0.05", "--shard-size", "15"], {
      cwd: project.dir,
      env: env()
    })
    expect(result.code, result.stderr).toBe(0)
    const lines = readFileSync(project.path("out/vectors.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))
    expect(lines.length).toBe(40)
    for (const l of lines) {
      expect(Array.isArray(l.output)).toBe(true)
      expect(l.output.length).toBeGreaterThan(0)
      expect(l.output.every((x: unknown) => typeof x === "number")).toBe(true)
    }
    const shard = readFileSync(project.path("runs/embed/shards/vec-00001.jsonl"), "utf8").split("\n")[0]!
    expect(JSON.parse(shard)).toMatchObject({ url: "/v1/embeddings", body: { model: "text-embedding-3-small" } })
  })
})

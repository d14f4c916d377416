/**
 * Images in prompts, end to end: a pipeline whose template sends one image by URL and one
 * read from a real PNG file, run in process by the runner against the emulator over HTTP on
 * 127.0.0.1, once per wire format (OpenAI, Anthropic, Gemini). The rows succeed, the shard
 * file's request lines carry the provider's image shape (the file's bytes as base64), the
 * emulator bills each image as `Prompt.imageTokens` — what `sluice estimate` counts — and a
 * row whose image file is missing fails alone, naming the file.
 */
import { NodeHttpClient } from "@effect/platform-node"
import { Pipeline, Prompt, Sink, Source } from "@sluice/core"
import { AnthropicBatch, GeminiBatch, OpenAiBatch } from "@sluice/providers"
import type { EmulatorHandle } from "@sluice/emulator"
import { Live, Runner } from "@sluice/runner"
import { Duration, Effect, Layer, Redacted, Schema } from "effect"
import { readdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { requestTokens } from "../packages/runner/src/Estimate.js"
import { startApiEmulator, tempDirs } from "./support/api.js"
import { pngBytes } from "./support/png.js"

const dirs = tempDirs()
let emulator: EmulatorHandle
let dir: string
let png: Buffer
let pngPath: string

beforeAll(async () => {
  emulator = await startApiEmulator()
  dir = await dirs.make("sluice-images-")
  png = pngBytes(16, 12, [20, 160, 40])
  pngPath = join(dir, "leaf.png")
  writeFileSync(pngPath, png)
})

afterAll(async () => {
  await emulator?.close()
  await dirs.cleanup()
})

const Photo = Schema.Struct({ id: Schema.String, caption: Schema.String, url: Schema.NullOr(Schema.String), file: Schema.NullOr(Schema.String) })
type Photo = typeof Photo.Type
const Description = Schema.Struct({ subject: Schema.String, colour: Schema.Literal("red", "green", "blue", "other") })

const IMAGE_URL = "https://images.example.com/photos/tabby.png"

const rows = (): Array<Photo> => [
  { id: "byurl", caption: "A cat on a sofa", url: IMAGE_URL, file: null },
  { id: "byfile", caption: "A leaf", url: null, file: pngPath },
  { id: "textonly", caption: "No picture, just words", url: null, file: null },
  { id: "nofile", caption: "A file that is not there", url: null, file: join(dir, "missing.png") }
]

const pipelineFor = (provider: string, model: string, sink: string) =>
  Pipeline.make(`images-${provider}`).pipe(
    Pipeline.from(Source.array(rows(), `photos-${provider}`), { key: (r) => r.id }),
    Pipeline.batch("describe", {
      provider,
      model,
      params: { max_tokens: 200 },
      prompt: (r) =>
        Prompt.chat({
          system: "Describe the photo.",
          user: r.caption,
          images: [...(r.url === null ? [] : [Prompt.imageUrl(r.url)]), ...(r.file === null ? [] : [Prompt.imageFile(r.file)])]
        }),
      output: Description
    }),
    Pipeline.to(Sink.jsonl(sink))
  )

const providersLayer = () =>
  Layer.unwrapEffect(
    Effect.gen(function* () {
      const apiKey = Redacted.make("test")
      const openai = yield* OpenAiBatch.make({ apiKey, baseUrl: `${emulator.url}/v1` })
      const anthropic = yield* AnthropicBatch.make({ apiKey, baseUrl: emulator.url })
      const gemini = yield* GeminiBatch.make({ apiKey, baseUrl: emulator.url })
      return Live.layer({ openai, anthropic, gemini })
    })
  ).pipe(Layer.provide(NodeHttpClient.layerUndici))

const readJsonl = (file: string): Array<any> =>
  readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l))

/** The request lines of every shard of a run (not the row sidecars). */
const shardLines = (runDir: string): Array<any> =>
  readdirSync(join(runDir, "shards"))
    .filter((f) => f.endsWith(".jsonl") && !f.endsWith(".rows.jsonl"))
    .flatMap((f) => readJsonl(join(runDir, "shards", f)))

/** Per provider: a request line's custom_id and the content of its last user turn. */
const wire = {
  openai: (line: any) => ({ id: line.custom_id as string, turn: line.body.messages.at(-1).content }),
  anthropic: (line: any) => ({ id: line.custom_id as string, turn: line.params.messages.at(-1).content }),
  gemini: (line: any) => ({ id: line.key as string, turn: line.request.contents.at(-1).parts })
}

/** What the last user turn of each row must look like on the wire. */
const expectedTurns = (provider: keyof typeof wire, caption: (id: string) => string) => {
  const b64 = png.toString("base64")
  switch (provider) {
    case "openai":
      return {
        byurl: [{ type: "text", text: caption("byurl") }, { type: "image_url", image_url: { url: IMAGE_URL } }],
        byfile: [{ type: "text", text: caption("byfile") }, { type: "image_url", image_url: { url: `data:image/png;base64,${b64}` } }],
        textonly: caption("textonly")
      }
    case "anthropic":
      return {
        byurl: [{ type: "text", text: caption("byurl") }, { type: "image", source: { type: "url", url: IMAGE_URL } }],
        byfile: [{ type: "text", text: caption("byfile") }, { type: "image", source: { type: "base64", media_type: "image/png", data: b64 } }],
        textonly: caption("textonly")
      }
    case "gemini":
      return {
        byurl: [{ text: caption("byurl") }, { fileData: { fileUri: IMAGE_URL, mimeType: "image/png" } }],
        byfile: [{ text: caption("byfile") }, { inlineData: { mimeType: "image/png", data: b64 } }],
        textonly: [{ text: caption("textonly") }]
      }
  }
}

describe("images in prompts, against the emulator", () => {
  for (const [provider, model] of [
    ["openai", "gpt-4o-mini"],
    ["anthropic", "claude-haiku-4-5"],
    ["gemini", "gemini-2.5-flash"]
  ] as const) {
    it(`${provider}: rows with an image by URL and from a PNG file succeed; the shard carries the provider's image shape`, async () => {
      const runDir = join(dir, `run-${provider}`)
      const sink = join(dir, `out-${provider}.jsonl`)
      const pipeline = pipelineFor(provider, model, sink)
      const summary = await Effect.runPromise(
        Runner.run(pipeline, { runDir, pollInterval: Duration.millis(50), cache: false }).pipe(Effect.provide(providersLayer()))
      )

      // Three rows answered; the row whose file is missing failed alone, before anything was sent.
      expect(summary.succeeded).toBe(3)
      expect(summary.pending).toBe(0)
      const outputs = readJsonl(sink)
      expect(outputs.map((o) => o.key).sort()).toEqual(["byfile", "byurl", "textonly"])
      for (const o of outputs) {
        expect(typeof o.output.subject).toBe("string")
        expect(["red", "green", "blue", "other"]).toContain(o.output.colour)
      }
      const failures = readJsonl(join(runDir, "failures.jsonl"))
      expect(failures).toHaveLength(1)
      expect(JSON.stringify(failures[0])).toContain("nofile")
      expect(JSON.stringify(failures[0])).toMatch(/Prompt\.imageFile: cannot read .*missing\.png.*ENOENT/)

      // The request lines as uploaded: the provider's own image shapes, the file's bytes in base64.
      const lines = shardLines(runDir).map(wire[provider])
      expect(lines).toHaveLength(3)
      const byKey = new Map(lines.map((l) => [l.id.split("-")[1]!, l]))
      const expected = expectedTurns(provider, (id) => rows().find((r) => r.id === id)!.caption)
      expect(byKey.get("byurl")?.turn).toEqual(expected.byurl)
      expect(byKey.get("byfile")?.turn).toEqual(expected.byfile)
      expect(byKey.get("textonly")?.turn).toEqual(expected.textonly)

      // The emulator billed each image as Prompt.imageTokens, as `sluice estimate` counts it.
      const usage = new Map(
        readJsonl(join(runDir, "results.jsonl"))
          .filter((r) => r._tag === "Succeeded")
          .map((r) => [String(r.customId).split("-")[1]!, r.usage.inputTokens as number])
      )
      const stage = pipeline.stages[0]!
      const estimated = (id: string) => requestTokens(stage.render(rows().find((r) => r.id === id)!)).tokens
      for (const id of ["byurl", "byfile"]) {
        expect(usage.get(id)!).toBeGreaterThanOrEqual(Prompt.imageTokens)
        if (provider === "anthropic") {
          // Anthropic's prompt also holds the forced tool's definition: the same extra for every row.
          expect(usage.get(id)! - usage.get("textonly")!).toBe(estimated(id) - estimated("textonly"))
        } else {
          expect(usage.get(id)).toBe(estimated(id))
        }
      }
    })
  }
})

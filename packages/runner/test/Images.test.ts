/**
 * Images in prompts, runner side: the token estimate of part-list messages (and `sluice
 * estimate` over rows whose image file is missing), and a repair request built from a row
 * whose original request carries images.
 */
import { HttpClient } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { Pipeline, Prompt, Source, Tokens } from "@sluice/core"
import type { ChatRequest } from "@sluice/core"
import { AnthropicBatch, GeminiBatch, OpenAiBatch } from "@sluice/providers"
import { Effect, Redacted, Schema } from "effect"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { estimate, render, requestTokens } from "../src/Estimate.js"
import * as Repair from "../src/Repair.js"

const image = Prompt.imageUrl("https://images.example.com/a.png")
const inline: Prompt.ImagePart = { type: "image", source: { type: "base64", mediaType: "image/png", data: "iVBORw0KGgo=" } }

const chat = (model: string, prompt: Prompt.ChatPrompt): ChatRequest => ({ _tag: "chat", model, messages: prompt.messages, params: {} })

describe("requestTokens", () => {
  it("counts text prompts exactly as before", () => {
    const prompt = Prompt.chat({ system: "Label it.", user: "The quick brown fox." })
    const strings = prompt.messages.map((m) => ({ role: m.role, content: Prompt.textOf(m.content) }))
    expect(requestTokens(chat("gpt-4o-mini", prompt))).toEqual({ ...Tokens.chat("gpt-4o-mini", strings), schema: 0 })
    expect(requestTokens(chat("gpt-4o-mini", prompt)).exact).toBe(true)
  })

  it("counts each text part with the tokenizer and each image as Prompt.imageTokens; never exact", () => {
    for (const model of ["gpt-4o-mini", "claude-haiku-4-5"]) {
      const withImages = Prompt.chat({ system: "Label it.", user: "The quick brown fox.", images: [image, inline] })
      const textOnly = Prompt.chat({ system: "Label it.", user: "The quick brown fox." })
      const count = requestTokens(chat(model, withImages))
      // the same framing and text, plus the images
      expect(count.tokens).toBe(requestTokens(chat(model, textOnly)).tokens + 2 * Prompt.imageTokens)
      expect(count.exact).toBe(false)
    }
    // two text parts are counted one by one
    const twoParts = Prompt.chat({ messages: [{ role: "user", content: [Prompt.text("alpha beta"), Prompt.text("gamma"), image] }] })
    const framing = Tokens.chat("gpt-4o-mini", [{ role: "user", content: "" }]).tokens
    expect(requestTokens(chat("gpt-4o-mini", twoParts)).tokens).toBe(
      framing + Tokens.text("gpt-4o-mini", "alpha beta").tokens + Tokens.text("gpt-4o-mini", "gamma").tokens + Prompt.imageTokens
    )
  })
})

describe("estimate", () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-estimate-images-"))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it("counts images, and leaves out (as invalid) a row whose image file is missing instead of failing", async () => {
    writeFileSync(join(dir, "a.png"), Buffer.from("not decoded, only sent"))
    const rows = [{ id: "a", file: join(dir, "a.png") }, { id: "b", file: join(dir, "b.png") }, { id: "c", file: null }]
    const pipeline = Pipeline.make("estimate-images").pipe(
      Pipeline.from(Source.array(rows), { key: (r) => r.id }),
      Pipeline.batch("look", {
        provider: "openai",
        model: "gpt-4o-mini",
        prompt: (r) => Prompt.chat({ user: "What is it?", images: r.file === null ? [] : [Prompt.imageFile(r.file), image] })
      })
    )
    const e = await Effect.runPromise(estimate(pipeline).pipe(Effect.provide(NodeContext.layer)))
    const stage = pipeline.stages[0]!
    expect(e).toMatchObject({ rows: 2, invalid: 1, images: 2, exactTokens: false })
    expect(e.inputTokens).toBe(requestTokens(stage.render(rows[0]!)).tokens + requestTokens(stage.render(rows[2]!)).tokens)
    expect(render(e)).toContain(`(text counted with the model's tokenizer; 2 images at ${Prompt.imageTokens} tokens each, approximated)`)
    expect(render(e)).toContain("(+1 invalid, not submitted)")
  })
})

describe("Repair.request with images in the original request", () => {
  const Row = Schema.Struct({ id: Schema.String, url: Schema.String })
  const Caption = Schema.Struct({ caption: Schema.String })
  const offline = HttpClient.make(() => Effect.dieMessage("nothing is sent"))
  const providers = {
    openai: OpenAiBatch.makeWithClient(offline, { apiKey: Redacted.make("k"), baseUrl: OpenAiBatch.defaultBaseUrl }),
    anthropic: AnthropicBatch.makeWithClient(offline, { apiKey: Redacted.make("k"), baseUrl: AnthropicBatch.defaultBaseUrl }),
    gemini: GeminiBatch.makeWithClient(offline, { apiKey: Redacted.make("k"), baseUrl: GeminiBatch.defaultBaseUrl })
  }

  for (const [name, provider] of Object.entries(providers)) {
    it(`${name}: the row's image turn, the answer and the error go back; the images stay in the user turn`, () => {
      const pipeline = Pipeline.make("captions").pipe(
        Pipeline.from(Source.array<typeof Row.Type>([]), { key: (r) => r.id }),
        Pipeline.batch("caption", {
          provider: name,
          model: "m",
          prompt: (r) => Prompt.chat({ system: "Caption the image.", user: "Caption:", images: [Prompt.imageUrl(r.url)] }),
          output: Caption
        })
      )
      const stage = pipeline.stages[0]!
      const repaired = Repair.request(
        stage,
        { id: "caption-r1-abc", input: { id: "r1", url: "https://images.example.com/r1.webp" } },
        { text: '{"title":"x"}', finishReason: "stop" },
        "caption is missing",
        provider
      )
      expect(repaired?.customId).toBe("caption-r1-abc-r1")
      const line = JSON.parse(repaired!.line)
      const text = JSON.stringify(line)
      expect(text).toContain("https://images.example.com/r1.webp")
      expect(text).toContain('{\\"title\\":\\"x\\"}')
      expect(text).toContain("caption is missing")
      const turns: Array<any> =
        name === "openai" ? line.body.messages.slice(1) : name === "anthropic" ? line.params.messages : line.request.contents
      expect(turns).toHaveLength(3)
      // the image turn as the provider shapes it, then the answer and the instruction as text
      const imageTurn = JSON.stringify(turns[0])
      expect(imageTurn).toMatch(name === "openai" ? /"image_url"/ : name === "anthropic" ? /"type":"image"/ : /"fileData"/)
      expect(JSON.stringify(turns[1])).toContain("title")
      expect(JSON.stringify(turns[2])).toContain("caption is missing")
    })
  }
})

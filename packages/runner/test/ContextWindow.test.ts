/**
 * The context-window check's shortcut: a request whose wire line (plus its images' fixed
 * counts) fits under the window is never tokenized. That is safe only if the line's byte
 * length bounds the token count from above, for every provider's encoding and every counter:
 * checked here over prompts that are hard on the bound (multi-byte text, special-token
 * spellings, runs of one character, images, schemas, many short messages).
 */
import { HttpClient } from "@effect/platform"
import { Pipeline, Prompt, Source, Tokens } from "@sluice/core"
import { AnthropicBatch, GeminiBatch, OpenAiBatch } from "@sluice/providers"
import { Effect, Redacted, Schema } from "effect"
import { describe, expect, it } from "vitest"
import * as ContextWindow from "../src/ContextWindow.js"
import { requestTokens } from "../src/RequestTokens.js"

const offline = HttpClient.make(() => Effect.dieMessage("nothing is sent"))
const providers = {
  openai: OpenAiBatch.makeWithClient(offline, { apiKey: Redacted.make("k"), baseUrl: OpenAiBatch.defaultBaseUrl }),
  anthropic: AnthropicBatch.makeWithClient(offline, { apiKey: Redacted.make("k"), baseUrl: AnthropicBatch.defaultBaseUrl }),
  gemini: GeminiBatch.makeWithClient(offline, { apiKey: Redacted.make("k"), baseUrl: GeminiBatch.defaultBaseUrl })
}
const models = { openai: ["gpt-4o-mini", "gpt-4", "text-unknown"], anthropic: ["claude-haiku-4-5"], gemini: ["gemini-2.5-flash"] }

const Label = Schema.Struct({ sentiment: Schema.Literal("positive", "negative"), topics: Schema.Array(Schema.String) })
const inline: Prompt.ImagePart = { type: "image", source: { type: "base64", mediaType: "image/png", data: "iVBORw0KGgo=" } }

const prompts: ReadonlyArray<readonly [string, Prompt.ChatPrompt]> = [
  ["plain English", Prompt.chat({ system: "Label it.", user: "The blender is loud but crushes ice well. ".repeat(40) })],
  ["CJK and emoji", Prompt.chat({ user: "搅拌机很吵，但碎冰效果很好。🙂🚀 ".repeat(60) })],
  ["special-token spellings", Prompt.chat({ user: "<|endoftext|><|im_start|>user<|im_end|> ".repeat(30) })],
  ["one character, repeated", Prompt.chat({ user: "a".repeat(5000) })],
  ["digits and punctuation", Prompt.chat({ user: "1,2;3.4!5?6:7 ".repeat(200) })],
  ["many empty turns", Prompt.chat({ messages: Array.from({ length: 50 }, (_, i) => ({ role: i % 2 ? "assistant" : "user", content: "" })) })],
  ["tiny inline images", Prompt.chat({ user: "What is it?", images: [inline, inline, inline] })]
]

describe("ContextWindow.tokenBound", () => {
  for (const [name, provider] of Object.entries(providers)) {
    for (const model of models[name as keyof typeof models]) {
      for (const output of [undefined, Label]) {
        it(`${name} ${model}${output === undefined ? "" : " with a schema"}: the line's bytes bound the tokens from above`, () => {
          for (const [what, prompt] of prompts) {
            const stage = Pipeline.make("p").pipe(
              Pipeline.from(Source.array<{ id: string }>([]), { key: (r) => r.id }),
              Pipeline.batch("s", { provider: name, model, prompt: () => prompt, ...(output === undefined ? {} : { output }) })
            ).stages[0]!
            const request = stage.render({ id: "x" })
            const bytes = Buffer.byteLength(provider.encode(request, "s-x-0123456789abcdef")) + 1
            const tokens = requestTokens(request).tokens
            expect(ContextWindow.tokenBound(request, bytes), what).toBeGreaterThanOrEqual(tokens)
            // So a window at the bound never needs counting, and one below the count always fails the row.
            expect(ContextWindow.check(request, bytes, ContextWindow.tokenBound(request, bytes)), what).toBeUndefined()
            expect(ContextWindow.check(request, bytes, tokens - 1), what).toMatchObject({ tokens, window: tokens - 1 })
            expect(ContextWindow.check(request, bytes, tokens), what).toBeUndefined()
          }
        })
      }
    }
  }

  it("counts text spelling a special token as text, never throws on it", () => {
    expect(Tokens.text("gpt-4o-mini", "<|endoftext|>").tokens).toBeGreaterThan(1)
    expect(Tokens.text("gpt-4", "<|endoftext|>").tokens).toBeGreaterThan(1)
  })
})

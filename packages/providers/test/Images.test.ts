/**
 * Images in prompts, provider side: what each encoder writes for content parts (and that text
 * prompts encode exactly as before), the emulator's checks and token counts of the three wire
 * shapes, and the emulator against the official `openai` and `@anthropic-ai/sdk` clients with
 * image requests typed by the SDKs.
 */
import Anthropic from "@anthropic-ai/sdk"
import type { BatchRequest, ChatRequest, Message } from "@sluice/core"
import { Prompt, Tokens } from "@sluice/core"
import OpenAI from "openai"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { encode as anthropicEncode } from "../src/anthropic/AnthropicBatch.js"
import { type EmulatorHandle, startEmulator } from "@sluice/emulator"
import { answerParams, checkParams } from "../../emulator/src/internal/anthropicAnswers.js"
import { answerRequest, checkRequest } from "../../emulator/src/internal/answers.js"
import { toChatBody } from "../../emulator/src/internal/geminiWire.js"
import { encode as geminiEncode } from "../src/gemini/GeminiBatch.js"
import { encode as openAiEncode } from "../src/openai/OpenAiBatch.js"
import { openAiValidators } from "./openApiSchemas.js"

const PNG_B64 = Buffer.from("\x89PNG\r\n\x1a\nnot really a png, but bytes", "latin1").toString("base64")
const urlImage = Prompt.imageUrl("https://images.example.com/cats/tabby.jpeg?w=512")
const fileImage: Prompt.ImagePart = { type: "image", source: { type: "base64", mediaType: "image/png", data: PNG_B64 } }

const request = (messages: ReadonlyArray<Message>, model = "gpt-4o-mini"): ChatRequest => ({
  _tag: "chat",
  model,
  messages,
  params: { max_tokens: 50 }
})

const imagePrompt = Prompt.chat({
  system: "Describe images.",
  examples: [{ user: "A photo of a dog?", assistant: "A dog." }],
  user: "What is in these pictures?",
  images: [urlImage, fileImage]
})

const textMessages: ReadonlyArray<Message> = [
  { role: "system", content: "Label the review." },
  { role: "user", content: "great \u00e9 \"quoted\"" },
  { role: "assistant", content: "positive" },
  { role: "user", content: "and this?" }
]

describe("encoders: text prompts are unchanged", () => {
  it("openai: the line is JSON.stringify of {custom_id, method, url, body: {model, messages, ...params}}", () => {
    const line = openAiEncode(request(textMessages), "s-k-1")
    expect(line).toBe(
      JSON.stringify({ custom_id: "s-k-1", method: "POST", url: "/v1/chat/completions", body: { model: "gpt-4o-mini", messages: textMessages, max_tokens: 50 } })
    )
  })

  it("anthropic: system hoisted as a string, turns with string content", () => {
    expect(anthropicEncode(request(textMessages, "claude-haiku-4-5"), "s-k-1")).toBe(
      JSON.stringify({
        custom_id: "s-k-1",
        params: {
          model: "claude-haiku-4-5",
          max_tokens: 50,
          system: "Label the review.",
          messages: textMessages.slice(1)
        }
      })
    )
  })

  it("gemini: one text part per turn", () => {
    expect(geminiEncode(request(textMessages, "gemini-2.5-flash"), "s-k-1")).toBe(
      JSON.stringify({
        key: "s-k-1",
        request: {
          model: "models/gemini-2.5-flash",
          contents: [
            { role: "user", parts: [{ text: "great \u00e9 \"quoted\"" }] },
            { role: "model", parts: [{ text: "positive" }] },
            { role: "user", parts: [{ text: "and this?" }] }
          ],
          systemInstruction: { parts: [{ text: "Label the review." }] },
          generationConfig: { maxOutputTokens: 50 }
        }
      })
    )
  })
})

describe("encoders: images", () => {
  it("openai: text and image_url parts, base64 as a data: URL; valid by the OpenAI spec", () => {
    const line = JSON.parse(openAiEncode(request(imagePrompt.messages), "img-1"))
    expect(line.body.messages).toEqual([
      { role: "system", content: "Describe images." },
      { role: "user", content: "A photo of a dog?" },
      { role: "assistant", content: "A dog." },
      {
        role: "user",
        content: [
          { type: "text", text: "What is in these pictures?" },
          { type: "image_url", image_url: { url: "https://images.example.com/cats/tabby.jpeg?w=512" } },
          { type: "image_url", image_url: { url: `data:image/png;base64,${PNG_B64}` } }
        ]
      }
    ])
    const spec = openAiValidators({ relaxed: false })
    expect(spec.problems("BatchRequestInput", line)).toEqual([])
    expect(spec.problems("CreateChatCompletionRequest", line.body)).toEqual([])
    // a system message given as text parts stays text parts (the API takes them)
    const system = JSON.parse(openAiEncode(request([{ role: "system", content: [Prompt.text("a"), Prompt.text("b")] }, { role: "user", content: "x" }]), "s"))
    expect(system.body.messages[0]).toEqual({ role: "system", content: [{ type: "text", text: "a" }, { type: "text", text: "b" }] })
    expect(spec.problems("CreateChatCompletionRequest", system.body)).toEqual([])
  })

  it("anthropic: image blocks with a url or base64 source; system parts joined", () => {
    const messages: ReadonlyArray<Message> = [{ role: "system", content: [Prompt.text("Describe images."), Prompt.text("Be brief.")] }, ...imagePrompt.messages.slice(1)]
    const line = JSON.parse(anthropicEncode(request(messages, "claude-haiku-4-5"), "img-1"))
    expect(line.params.system).toBe("Describe images.\n\nBe brief.")
    expect(line.params.messages).toEqual([
      { role: "user", content: "A photo of a dog?" },
      { role: "assistant", content: "A dog." },
      {
        role: "user",
        content: [
          { type: "text", text: "What is in these pictures?" },
          { type: "image", source: { type: "url", url: "https://images.example.com/cats/tabby.jpeg?w=512" } },
          { type: "image", source: { type: "base64", media_type: "image/png", data: PNG_B64 } }
        ]
      }
    ])
    expect(checkParams(line.params)).toBeUndefined()
  })

  it("gemini: fileData for a URL (media type from its extension), inlineData for base64", () => {
    const line = JSON.parse(geminiEncode(request(imagePrompt.messages, "gemini-2.5-flash"), "img-1"))
    expect(line.request.systemInstruction).toEqual({ parts: [{ text: "Describe images." }] })
    expect(line.request.contents[2]).toEqual({
      role: "user",
      parts: [
        { text: "What is in these pictures?" },
        { fileData: { fileUri: "https://images.example.com/cats/tabby.jpeg?w=512", mimeType: "image/jpeg" } },
        { inlineData: { mimeType: "image/png", data: PNG_B64 } }
      ]
    })
    const noExtension = JSON.parse(geminiEncode(request([{ role: "user", content: [Prompt.imageUrl("https://example.com/image?id=7")] }], "gemini-2.5-flash"), "x"))
    expect(noExtension.request.contents[0].parts).toEqual([{ fileData: { fileUri: "https://example.com/image?id=7" } }])
    const system = JSON.parse(geminiEncode(request([{ role: "system", content: [Prompt.text("a"), Prompt.text("b")] }, { role: "user", content: "x" }], "gemini-2.5-flash"), "s"))
    expect(system.request.systemInstruction).toEqual({ parts: [{ text: "a" }, { text: "b" }] })
  })

  it("every encoder refuses an image in an assistant or system turn, naming the custom_id", () => {
    const assistant = request([{ role: "user", content: "x" }, { role: "assistant", content: [urlImage] }, { role: "user", content: "y" }])
    const system = request([{ role: "system", content: [fileImage] }, { role: "user", content: "y" }])
    for (const [name, encode] of [["openai", openAiEncode], ["anthropic", anthropicEncode], ["gemini", geminiEncode]] as const) {
      expect(() => encode(assistant, "row-7")).toThrow(`${name}: message 1 is a assistant turn with an image: images are only allowed in user turns (custom_id row-7)`)
      expect(() => encode(system, "row-8")).toThrow(/system turn with an image.*\(custom_id row-8\)/)
    }
  })
})

// ---------------------------------------------------------------------------------------------
// the emulator's checks and counts
// ---------------------------------------------------------------------------------------------

const ctx = { seed: "s", created: 0, id: "x", invalidJson: false }

describe("emulator: OpenAI content parts", () => {
  const body = JSON.parse(openAiEncode(request(imagePrompt.messages), "img-1")).body

  it("accepts text and image_url parts and counts each image as Prompt.imageTokens", () => {
    expect(checkRequest("/v1/chat/completions", body)).toBeUndefined()
    const answer = answerRequest("/v1/chat/completions", body, JSON.stringify(body), ctx)
    const framing = Tokens.chat("gpt-4o-mini", imagePrompt.messages.map((m) => ({ role: m.role, content: typeof m.content === "string" ? m.content : "" }))).tokens
    expect(answer.inputTokens).toBe(framing + Tokens.text("gpt-4o-mini", "What is in these pictures?").tokens + 2 * Prompt.imageTokens)
    // the answer still speaks of the user's text
    expect((answer.body["choices"] as any)[0].message.content).toContain("What is in these pictures?")
  })

  it("refuses what the endpoint refuses", () => {
    const withUser = (content: unknown, role = "user") => ({ model: "m", messages: [{ role, content }] })
    const image = (url: unknown, extra: object = {}) => [{ type: "image_url", image_url: { url, ...extra } }]
    expect(checkRequest("/v1/chat/completions", withUser(image("https://x.test/a.png"), "assistant"))?.message).toMatch(/only allowed for messages with role 'user'/)
    expect(checkRequest("/v1/chat/completions", withUser(image("ftp://x.test/a.png")))?.code).toBe("invalid_image_url")
    expect(checkRequest("/v1/chat/completions", withUser(image("data:image/bmp;base64,Qk0=")))?.code).toBe("invalid_image_url")
    expect(checkRequest("/v1/chat/completions", withUser(image("data:image/png;base64,not base64!")))?.code).toBe("invalid_image_url")
    expect(checkRequest("/v1/chat/completions", withUser(image(undefined)))?.param).toBe("messages[0].content[0].image_url.url")
    expect(checkRequest("/v1/chat/completions", withUser(image("https://x.test/a.png", { detail: "max" })))?.param).toBe("messages[0].content[0].image_url.detail")
    expect(checkRequest("/v1/chat/completions", withUser(image("https://x.test/a.png", { detail: "low" })))).toBeUndefined()
    expect(checkRequest("/v1/chat/completions", withUser([{ type: "image", source: {} }]))?.param).toBe("messages[0].content[0].type")
    expect(checkRequest("/v1/chat/completions", withUser([{ type: "text" }]))?.param).toBe("messages[0].content[0].text")
  })
})

describe("emulator: Anthropic image blocks", () => {
  const params = JSON.parse(anthropicEncode(request(imagePrompt.messages, "claude-haiku-4-5"), "img-1")).params

  it("accepts url and base64 sources and counts images like the OpenAI side", () => {
    expect(checkParams(params)).toBeUndefined()
    const answer = answerParams(params, { seed: "s", id: "x", invalidJson: false })
    const textOnly = answerParams(
      { ...params, messages: params.messages.map((m: any) => (Array.isArray(m.content) ? { ...m, content: [m.content[0]] } : m)) },
      { seed: "s", id: "x", invalidJson: false }
    )
    expect(answer.inputTokens - textOnly.inputTokens).toBe(2 * Prompt.imageTokens)
  })

  it("refuses malformed image blocks", () => {
    const withBlock = (block: unknown) => ({ model: "claude-haiku-4-5", max_tokens: 10, messages: [{ role: "user", content: [block] }] })
    expect(checkParams(withBlock({ type: "image", source: { type: "base64", media_type: "image/bmp", data: "AAAA" } }))).toMatch(/media_type/)
    expect(checkParams(withBlock({ type: "image", source: { type: "base64", media_type: "image/png", data: "not base64" } }))).toMatch(/valid base64/)
    expect(checkParams(withBlock({ type: "image", source: { type: "url", url: "file:///etc/passwd" } }))).toMatch(/http\(s\) URL/)
    expect(checkParams(withBlock({ type: "image", source: { type: "image_url", url: "https://x.test/a.png" } }))).toMatch(/does not match any of the expected tags/)
    expect(checkParams(withBlock({ type: "image" }))).toMatch(/source: Field required/)
    expect(checkParams(withBlock({ type: "text", text: "" }))).toMatch(/must be non-empty/)
    expect(checkParams(withBlock({ type: "image", source: { type: "file", file_id: "file_1" } }))).toBeUndefined()
  })
})

describe("emulator: Gemini parts", () => {
  const geminiRequest = JSON.parse(geminiEncode(request(imagePrompt.messages, "gemini-2.5-flash"), "img-1")).request

  it("maps inlineData and fileData to image parts the shared checks accept, counted as images", () => {
    const body = toChatBody("gemini-2.5-flash", geminiRequest)
    expect(checkRequest("/v1/chat/completions", body)).toBeUndefined()
    const user = (body["messages"] as any)[3]
    expect(user.content).toEqual([
      { type: "text", text: "What is in these pictures?" },
      { type: "image_url", image_url: { url: "https://images.example.com/cats/tabby.jpeg?w=512" } },
      { type: "image_url", image_url: { url: `data:image/png;base64,${PNG_B64}` } }
    ])
    const answer = answerRequest("/v1/chat/completions", body, JSON.stringify(body), ctx)
    const openAiBody = JSON.parse(openAiEncode(request(imagePrompt.messages, "gemini-2.5-flash"), "img-1")).body
    expect(answer.inputTokens).toBe(answerRequest("/v1/chat/completions", openAiBody, JSON.stringify(openAiBody), ctx).inputTokens)
  })

  it("accepts snake_case, gs:// URIs and other media; refuses malformed parts", () => {
    const withParts = (...parts: Array<unknown>) => toChatBody("gemini-2.5-flash", { contents: [{ role: "user", parts }] })
    const gs = withParts({ text: "x" }, { file_data: { file_uri: "gs://bucket/a.png", mime_type: "image/png" } })
    expect(checkRequest("/v1/chat/completions", gs)).toBeUndefined()
    expect((gs["messages"] as any)[0].content[1]).toEqual({ type: "image_url", image_url: { url: "https://storage.googleapis.com/bucket/a.png" } })
    expect(checkRequest("/v1/chat/completions", withParts({ inline_data: { mime_type: "application/pdf", data: "JVBERi0=" } }))).toBeUndefined()
    expect(checkRequest("/v1/chat/completions", withParts({ inlineData: { mimeType: "image/png", data: "iVBO-_w" } }))).toBeUndefined() // URL-safe base64
    expect(checkRequest("/v1/chat/completions", withParts({ inlineData: { mimeType: "image/png" } }))).toBeDefined()
    expect(checkRequest("/v1/chat/completions", withParts({ fileData: { mimeType: "image/png" } }))).toBeDefined()
    expect(checkRequest("/v1/chat/completions", withParts({ image: "https://x.test/a.png" }))).toBeDefined()
  })
})

// ---------------------------------------------------------------------------------------------
// the official clients
// ---------------------------------------------------------------------------------------------

describe("the emulator takes image requests as the official SDKs type them", () => {
  let emulator: EmulatorHandle
  beforeAll(async () => {
    emulator = await startEmulator({ port: 0, validatingMs: 20, finalizingMs: 20, requestsPerSecond: 2000 })
  })
  afterAll(async () => {
    await emulator.close()
  })

  it("openai: chat completions with image_url parts (URL and data URL, with detail)", async () => {
    const client = new OpenAI({ apiKey: "test", baseURL: `${emulator.url}/v1`, maxRetries: 0 })
    const messages: Array<OpenAI.Chat.ChatCompletionMessageParam> = [
      { role: "system", content: "Describe images." },
      {
        role: "user",
        content: [
          { type: "text", text: "Compare these." },
          { type: "image_url", image_url: { url: "https://images.example.com/a.png", detail: "low" } },
          { type: "image_url", image_url: { url: `data:image/png;base64,${PNG_B64}` } }
        ]
      }
    ]
    const completion = await client.chat.completions.create({ model: "gpt-4o-mini", messages })
    expect(completion.choices[0]!.message.content).toContain("Compare these.")
    const framing = Tokens.chat("gpt-4o-mini", [{ role: "system", content: "Describe images." }, { role: "user", content: "" }]).tokens
    expect(completion.usage?.prompt_tokens).toBe(framing + Tokens.text("gpt-4o-mini", "Compare these.").tokens + 2 * Prompt.imageTokens)

    // The SDK's types allow no image in an assistant turn, and neither does the endpoint.
    const refused = await client.chat.completions
      .create({ model: "gpt-4o-mini", messages: [{ role: "assistant", content: [{ type: "image_url", image_url: { url: "https://x.test/a.png" } }] }] as any })
      .then(() => undefined, (e: unknown) => e)
    expect(refused).toBeInstanceOf(OpenAI.BadRequestError)
  })

  it("anthropic: a message batch with image blocks (url and base64) succeeds; a bad one errors", async () => {
    const client = new Anthropic({ apiKey: "test", baseURL: emulator.url, maxRetries: 0 })
    const content: Array<Anthropic.Messages.ContentBlockParam> = [
      { type: "text", text: "Compare these." },
      { type: "image", source: { type: "url", url: "https://images.example.com/a.png" } },
      { type: "image", source: { type: "base64", media_type: "image/png", data: PNG_B64 } }
    ]
    const batch = await client.messages.batches.create({
      requests: [
        { custom_id: "good", params: { model: "claude-haiku-4-5", max_tokens: 100, messages: [{ role: "user", content }] } },
        {
          custom_id: "bad",
          params: {
            model: "claude-haiku-4-5",
            max_tokens: 100,
            messages: [{ role: "user", content: [{ type: "image", source: { type: "base64", media_type: "image/bmp", data: "AAAA" } } as any] }]
          }
        }
      ]
    })
    let status = batch.processing_status
    for (let i = 0; i < 200 && status !== "ended"; i++) {
      await new Promise((resolve) => setTimeout(resolve, 25))
      status = (await client.messages.batches.retrieve(batch.id)).processing_status
    }
    expect(status).toBe("ended")
    const results = new Map<string, Anthropic.Messages.MessageBatchResult>()
    for await (const line of await client.messages.batches.results(batch.id)) results.set(line.custom_id, line.result)
    const good = results.get("good")
    expect(good?.type).toBe("succeeded")
    if (good?.type === "succeeded") expect(good.message.usage.input_tokens).toBeGreaterThanOrEqual(2 * Prompt.imageTokens)
    const bad = results.get("bad")
    expect(bad?.type).toBe("errored")
    if (bad?.type === "errored") expect(JSON.stringify(bad.error)).toMatch(/media_type/)
  })
})

// Keep the module's request type honest: BatchRequest accepts part-list messages.
const _typed: BatchRequest = request(imagePrompt.messages)
void _typed

/**
 * The real-time endpoints over real HTTP, with the official SDKs where they exist: OpenAI chat
 * completions, embeddings and responses (validated against the OpenAPI spec), Anthropic
 * messages (against the SDK's Message type), Gemini generateContent (both SDK majors). Then the
 * rate limits, driven by an injected clock (never by waiting), their headers, the no-headers
 * switch, latency, the hold switch, faults, and the ledger of real-time calls.
 */
import Anthropic from "@anthropic-ai/sdk"
import { GoogleGenAI as GoogleGenAI3 } from "@google/genai"
import { Ajv } from "ajv"
import { GoogleGenAI as GoogleGenAI2 } from "google-genai-2"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import OpenAI from "openai"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { openAiValidators } from "../../providers/test/openApiSchemas.js"
import { type EmulatorHandle, type EmulatorOptions, startEmulator } from "../src/Emulator.js"
import { goDuration } from "../src/internal/rateLimitHeaders.js"
import { getInFlight, getLedger, type LedgerCall, resetEmulator, setFaults } from "../src/EmulatorControl.js"

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

const LabelSchema = {
  type: "object",
  properties: {
    sentiment: { type: "string", enum: ["positive", "negative", "neutral"] },
    topics: { type: "array", items: { type: "string" }, maxItems: 3 },
    stars: { type: "integer", minimum: 1, maximum: 5 }
  },
  required: ["sentiment", "topics", "stars"],
  additionalProperties: false
} as const
const validateLabel = new Ajv({ strict: false }).compile(LabelSchema)

const answers = openAiValidators({ relaxed: true })
const requests = openAiValidators({ relaxed: false })

const specsDir = process.env["SLUICE_SPECS_DIR"] ?? fileURLToPath(new URL("../../../specs/", import.meta.url))
const anthropicAjv = new Ajv({ strict: false, allErrors: true })
anthropicAjv.addSchema({
  ...(JSON.parse(readFileSync(`${specsDir}/anthropic-sdk-types-MessageBatchIndividualResponse.schema.json`, "utf8")) as object),
  $id: "sdk-results"
})
const anthropicProblems = (definition: "Message" | "ErrorResponse", value: unknown): string => {
  const validate = anthropicAjv.getSchema(`sdk-results#/definitions/${definition}`)!
  return validate(value) ? "" : anthropicAjv.errorsText(validate.errors)
}

const T0 = Date.parse("2026-03-01T12:00:00Z")

/** An emulator whose clock only moves when the test moves it. */
const withClock = async (options: EmulatorOptions = {}) => {
  const clock = { now: T0 }
  const emulator = await startEmulator({ clock: () => clock.now, ...options })
  return { emulator, clock }
}

const openai = (emulator: EmulatorHandle, root = "/v1") => new OpenAI({ apiKey: "test", baseURL: `${emulator.url}${root}`, maxRetries: 0 })
const anthropic = (emulator: EmulatorHandle) => new Anthropic({ apiKey: "test", baseURL: emulator.url, maxRetries: 0 })

const chatBody = (text: string, model = "gpt-4o-mini") => ({ model, messages: [{ role: "user" as const, content: text }] })

/** A raw POST (for what the SDKs hide: headers of errors, no key at all). */
const post = async (emulator: EmulatorHandle, path: string, body: unknown, headers: Record<string, string> = {}) => {
  const response = await fetch(`${emulator.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body)
  })
  return { status: response.status, headers: response.headers, body: (await response.json()) as any }
}

const rateLimitHeaders = (headers: Headers): Record<string, string> =>
  Object.fromEntries([...headers].filter(([name]) => /ratelimit|retry-after/.test(name)))

const ANTHROPIC_HEADERS = { "x-api-key": "test", "anthropic-version": "2023-06-01" }

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Waits until `check` holds (polling the emulator's state; the test's timeout bounds it). */
const until = async (check: () => Promise<boolean>): Promise<void> => {
  while (!(await check())) await sleep(5)
}

const callsOf = async (emulator: EmulatorHandle): Promise<ReadonlyArray<LedgerCall>> => (await getLedger(emulator.url)).calls

// ---------------------------------------------------------------------------------------------
// the endpoints, with the official SDKs
// ---------------------------------------------------------------------------------------------

describe("real-time endpoints with the official SDKs", () => {
  let emulator: EmulatorHandle
  beforeAll(async () => {
    emulator = await startEmulator()
  })
  afterAll(() => emulator.close())

  it("OpenAI chat completions: schema-conforming JSON, usage, a spec-valid answer, the same content for the same body", async () => {
    const body = {
      model: "gpt-4o-mini",
      messages: [{ role: "system" as const, content: "Label the review." }, { role: "user" as const, content: "Great kettle, boils fast." }],
      response_format: { type: "json_schema" as const, json_schema: { name: "Label", strict: true, schema: LabelSchema } }
    }
    expect(requests.problems("CreateChatCompletionRequest", body)).toEqual([])
    const { data, response } = await openai(emulator).chat.completions.create(body).withResponse()
    expect(response.status).toBe(200)
    expect(answers.problems("CreateChatCompletionResponse", data)).toEqual([])
    const label = JSON.parse(data.choices[0]!.message.content!)
    expect(validateLabel(label)).toBe(true)
    expect(data.usage!.prompt_tokens).toBeGreaterThan(0)
    expect(data.usage!.completion_tokens).toBeGreaterThan(0)
    // Deterministic (EmulatorOpenAiSdk.test.ts shows a batch line of the same body gets it too).
    const again = await openai(emulator).chat.completions.create(body)
    expect(again.choices[0]!.message.content).toBe(data.choices[0]!.message.content)
    // No limits configured: no rate-limit headers (as a self-hosted server).
    expect(rateLimitHeaders(response.headers)).toEqual({})
  })

  it("OpenAI embeddings: a spec-valid answer with usage", async () => {
    const body = { model: "text-embedding-3-small", input: ["otters", "beavers"], dimensions: 16 }
    expect(requests.problems("CreateEmbeddingRequest", body)).toEqual([])
    const data = await openai(emulator).embeddings.create({ ...body, encoding_format: "float" })
    expect(answers.problems("CreateEmbeddingResponse", data)).toEqual([])
    expect(data.data.map((d) => d.embedding.length)).toEqual([16, 16])
    expect(data.usage.prompt_tokens).toBeGreaterThan(0)
  })

  it("OpenAI responses: instructions + input + text.format json_schema -> an output message of output_text conforming to the schema", async () => {
    const body = {
      model: "gpt-4o-mini",
      instructions: "Label the review.",
      // String content: with a part list, the spec's oneOf (EasyInputMessage | InputMessage) matches twice for ajv, which ignores `discriminator`.
      input: [{ role: "user" as const, content: "Great kettle, boils fast." }],
      text: { format: { type: "json_schema" as const, name: "Label", strict: true, schema: LabelSchema } }
    }
    expect(requests.problems("CreateResponse", body)).toEqual([])
    const { data, response } = await openai(emulator).responses.create(body).withResponse()
    expect(response.status).toBe(200)
    expect(answers.problems("Response", data)).toEqual([])
    expect(data.status).toBe("completed")
    const message = data.output[0]!
    expect(message.type).toBe("message")
    if (message.type !== "message") throw new Error("not a message")
    expect(message.role).toBe("assistant")
    expect(message.content[0]!.type).toBe("output_text")
    // The SDK's own convenience joins the output_text parts.
    expect(validateLabel(JSON.parse(data.output_text))).toBe(true)
    expect(data.usage!.input_tokens).toBeGreaterThan(0)
    expect(data.usage!.output_tokens).toBeGreaterThan(0)
    expect(data.usage!.total_tokens).toBe(data.usage!.input_tokens + data.usage!.output_tokens)
    // The same engine as chat completions: the equivalent chat request gets the same content.
    const chat = await openai(emulator).chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "system", content: "Label the review." }, { role: "user", content: "Great kettle, boils fast." }],
      response_format: { type: "json_schema", json_schema: { name: "Label", schema: LabelSchema } }
    })
    expect(data.output_text).toBe(chat.choices[0]!.message.content)
  })

  it("OpenAI responses: a plain string input gets text; a missing input is a 400; an unknown model a 404 model_not_found", async () => {
    const text = await openai(emulator).responses.create({ model: "gpt-4.1-mini", input: "Tell me about otters" })
    expect(answers.problems("Response", text)).toEqual([])
    expect(text.output_text).toContain("otters")
    const parts = await openai(emulator).responses.create({
      model: "gpt-4o-mini",
      input: [
        { role: "developer", content: "Be brief." },
        {
          type: "message",
          role: "user",
          content: [
            { type: "input_text", text: "What is in this picture?" },
            { type: "input_image", image_url: "https://example.com/otter.png", detail: "auto" }
          ]
        }
      ]
    })
    expect(parts.output_text).toContain("What is in this picture?")
    expect(parts.usage!.input_tokens).toBeGreaterThan(765) // the image counts as Prompt.imageTokens
    const badPart = await post(emulator, "/v1/responses", { model: "gpt-4o-mini", input: [{ role: "user", content: [{ type: "text", text: "chat-style part" }] }] })
    expect(badPart.status).toBe(400)
    expect(badPart.body.error.param).toBe("input[0].content[0].type")
    const missing = await post(emulator, "/v1/responses", { model: "gpt-4o-mini" })
    expect(missing.status).toBe(400)
    expect(missing.body.error).toMatchObject({ param: "input", code: "missing_required_parameter" })
    expect(answers.problems("ErrorResponse", missing.body)).toEqual([])
    const unknown = await openai(emulator).responses.create({ model: "gpt-4o-minni", input: "hi" }).catch((e: unknown) => e)
    expect(unknown).toBeInstanceOf(OpenAI.NotFoundError)
    expect((unknown as InstanceType<typeof OpenAI.NotFoundError>).code).toBe("model_not_found")
  })

  it("answers under Azure's roots and a gateway prefix as under /v1", async () => {
    const body = chatBody("Routes everywhere")
    const expected = (await openai(emulator).chat.completions.create(body)).choices[0]!.message.content
    for (const root of ["/openai/v1", "/gateway/v1", "/proxy/openai/v1"]) {
      const client = openai(emulator, root)
      expect((await client.chat.completions.create(body)).choices[0]!.message.content).toBe(expected)
      expect((await client.responses.create({ model: "gpt-4o-mini", input: "hi" })).status).toBe("completed")
      expect((await client.embeddings.create({ model: "text-embedding-3-small", input: "x" })).data).toHaveLength(1)
    }
    const versioned = await post(emulator, "/openai/responses?api-version=2025-04-01-preview", { model: "gpt-4o-mini", input: "hi" })
    expect(versioned.status).toBe(200)
    expect((await post(emulator, "/openai/responses", { model: "gpt-4o-mini", input: "hi" })).status).toBe(400) // api-version required
  })

  it("Anthropic messages: a forced tool's input conforms to its schema; a spec-valid Message with standard-tier usage", async () => {
    const params = {
      model: "claude-haiku-4-5",
      max_tokens: 256,
      system: "Label the review.",
      messages: [{ role: "user" as const, content: "Great kettle, boils fast." }],
      tools: [{ name: "label", input_schema: LabelSchema as unknown as Anthropic.Tool.InputSchema }],
      tool_choice: { type: "tool" as const, name: "label" }
    }
    const { data, response } = await anthropic(emulator).messages.create(params).withResponse()
    expect(response.status).toBe(200)
    expect(response.headers.get("request-id")).toMatch(/^req_/)
    expect(anthropicProblems("Message", data)).toBe("")
    expect(data.stop_reason).toBe("tool_use")
    const block = data.content[0]!
    if (block.type !== "tool_use") throw new Error(`expected tool_use, got ${block.type}`)
    expect(validateLabel(block.input)).toBe(true)
    expect(data.usage.input_tokens).toBeGreaterThan(0)
    expect(data.usage.output_tokens).toBeGreaterThan(0)
    expect(data.usage.service_tier).toBe("standard")
    const text = await anthropic(emulator).messages.create({ model: "claude-sonnet-4-5", max_tokens: 100, messages: [{ role: "user", content: "Tell me about otters" }] })
    expect(text.content[0]).toMatchObject({ type: "text" })
  })

  it("Anthropic messages: anthropic-version required, OpenAI params refused, an unknown model 404 not_found_error, the gateway shape", async () => {
    const params = { model: "claude-haiku-4-5", max_tokens: 50, messages: [{ role: "user" as const, content: "hi" }] }
    const noVersion = await post(emulator, "/v1/messages", params, { "x-api-key": "test" })
    expect(noVersion.status).toBe(400)
    expect(noVersion.body.error.message).toContain("anthropic-version")
    const noKey = await post(emulator, "/v1/messages", params, { "anthropic-version": "2023-06-01" })
    expect(noKey.status).toBe(401)
    const openAiParam = await post(emulator, "/v1/messages", { ...params, response_format: { type: "json_object" } }, ANTHROPIC_HEADERS)
    expect(openAiParam.status).toBe(400)
    expect(openAiParam.body.error).toEqual({ type: "invalid_request_error", message: "response_format: Extra inputs are not permitted" })
    expect(anthropicProblems("ErrorResponse", openAiParam.body)).toBe("")
    const unknown = await anthropic(emulator).messages.create({ ...params, model: "claude-haiku-4.5" }).catch((e: unknown) => e)
    expect(unknown).toBeInstanceOf(Anthropic.NotFoundError)
    expect((unknown as InstanceType<typeof Anthropic.NotFoundError>).error).toMatchObject({ error: { type: "not_found_error", message: "model: claude-haiku-4.5" } })
    const gateway = await post(emulator, "/anthropic-gateway/v1/messages", params, { authorization: "Bearer test" })
    expect(gateway.status).toBe(200)
    expect(anthropicProblems("Message", gateway.body)).toBe("")
  })

  for (const sdk of [
    { label: "@google/genai 3.x (v1)", make: (url: string) => new GoogleGenAI3({ apiKey: "test", httpOptions: { baseUrl: url } }) },
    { label: "@google/genai 2.x (v1beta)", make: (url: string) => new GoogleGenAI2({ apiKey: "test", httpOptions: { baseUrl: url } }) as unknown as GoogleGenAI3 }
  ]) {
    it(`Gemini generateContent with ${sdk.label}: JSON conforming to responseJsonSchema, usage metadata; an unknown model 404`, async () => {
      const ai = sdk.make(emulator.url)
      const result = await ai.models.generateContent({
        model: "gemini-2.5-flash",
        contents: "Great kettle, boils fast.",
        config: { systemInstruction: "Label the review.", responseMimeType: "application/json", responseJsonSchema: LabelSchema }
      })
      expect(validateLabel(JSON.parse(result.text!))).toBe(true)
      expect(result.usageMetadata!.promptTokenCount).toBeGreaterThan(0)
      expect(result.usageMetadata!.candidatesTokenCount).toBeGreaterThan(0)
      expect(result.candidates![0]!.finishReason).toBe("STOP")
      const unknown = await ai.models.generateContent({ model: "gemini-2.5-flsh", contents: "hi" }).catch((e: unknown) => e)
      expect(String(unknown)).toContain("NOT_FOUND")
    })
  }

  it("Gemini generateContent: the batch answer of the same request", async () => {
    const request = { contents: [{ role: "user", parts: [{ text: "Same as in a batch" }] }] }
    const realTime = await post(emulator, "/v1beta/models/gemini-2.5-flash:generateContent", request)
    expect(realTime.status).toBe(200)
    // The same request in a batch (an emulator that runs it at once).
    const fast = await startEmulator({ validatingMs: 0, finalizingMs: 0, requestsPerSecond: 1e9 })
    try {
      const batch = await post(fast, "/v1beta/models/gemini-2.5-flash:batchGenerateContent", {
        batch: { inputConfig: { requests: { requests: [{ request, metadata: { key: "k1" } }] } } }
      })
      let operation: any
      await until(async () => {
        operation = await (await fetch(`${fast.url}/v1beta/${batch.body.name}`)).json()
        return operation.done === true
      })
      const inlined = operation.response.inlinedResponses.inlinedResponses[0].response
      expect(inlined.candidates[0].content).toEqual(realTime.body.candidates[0].content)
      expect(inlined.usageMetadata).toEqual(realTime.body.usageMetadata)
    } finally {
      await fast.close()
    }
  })

  it("a self-hosted style client with no API key at all is answered when the emulator has no key (vLLM, llama.cpp, Ollama need none)", async () => {
    for (const path of ["/v1/chat/completions", "/v1/responses"]) {
      const body = path === "/v1/responses" ? { model: "gpt-4o-mini", input: "hi" } : chatBody("no key")
      const answer = await post(emulator, path, body)
      expect(answer.status).toBe(200)
    }
    const keyed = await startEmulator({ apiKey: "secret" })
    try {
      expect((await post(keyed, "/v1/chat/completions", chatBody("no key"))).status).toBe(401)
      expect((await post(keyed, "/v1/chat/completions", chatBody("key"), { authorization: "Bearer secret" })).status).toBe(200)
    } finally {
      await keyed.close()
    }
  })
})

// ---------------------------------------------------------------------------------------------
// rate limits, on an injected clock
// ---------------------------------------------------------------------------------------------

describe("rate limits (injected clock)", () => {
  it("OpenAI RPM: N requests pass with decreasing remaining, the N+1th is a 429 with Retry-After and the x-ratelimit headers; after the wait it passes", async () => {
    const { emulator, clock } = await withClock({ rpmLimit: 3 })
    try {
      const client = openai(emulator)
      const remaining: Array<string | null> = []
      for (let i = 0; i < 3; i++) {
        const { response } = await client.chat.completions.create(chatBody(`r${i}`)).withResponse()
        expect(response.headers.get("x-ratelimit-limit-requests")).toBe("3")
        remaining.push(response.headers.get("x-ratelimit-remaining-requests"))
      }
      expect(remaining).toEqual(["2", "1", "0"])
      const refused = await client.chat.completions.create(chatBody("r3")).catch((e: unknown) => e)
      expect(refused).toBeInstanceOf(OpenAI.RateLimitError)
      const error = refused as InstanceType<typeof OpenAI.RateLimitError>
      expect(error.code).toBe("rate_limit_exceeded")
      expect(error.type).toBe("requests")
      expect(error.message).toContain("Limit 3, Used 3, Requested 1")
      // One request refills in 60 s / 3 = 20 s.
      expect(rateLimitHeaders(error.headers!)).toEqual({
        "retry-after": "20",
        "retry-after-ms": "20000",
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1m0s"
      })
      // Another model has its own bucket (limits are per model).
      expect((await client.chat.completions.create(chatBody("other", "gpt-4.1-mini")).withResponse()).response.headers.get("x-ratelimit-remaining-requests")).toBe("2")
      clock.now += 19_999
      expect(await client.chat.completions.create(chatBody("r4")).catch((e: unknown) => e)).toBeInstanceOf(OpenAI.RateLimitError)
      clock.now += 1
      const { response } = await client.chat.completions.create(chatBody("r5")).withResponse()
      expect(response.status).toBe(200)
      expect(response.headers.get("x-ratelimit-remaining-requests")).toBe("0")
      // A full minute refills the bucket: a burst of 3 again.
      clock.now += 60_000
      for (let i = 0; i < 3; i++) expect((await post(emulator, "/v1/chat/completions", chatBody(`b${i}`))).status).toBe(200)
      expect((await post(emulator, "/v1/chat/completions", chatBody("b3"))).status).toBe(429)
    } finally {
      await emulator.close()
    }
  })

  it("OpenAI TPM: the remaining tokens fall by each answer's usage; over the limit a 429 of type tokens; a request bigger than the limit is refused with no wait that helps", async () => {
    const { emulator, clock } = await withClock({ tpmLimit: 1000 })
    try {
      const client = openai(emulator)
      let expected = 1000
      for (let i = 0; i < 3; i++) {
        const { data, response } = await client.chat.completions.create(chatBody(`tokens ${i}`)).withResponse()
        expected -= data.usage!.total_tokens
        expect(response.headers.get("x-ratelimit-limit-tokens")).toBe("1000")
        expect(response.headers.get("x-ratelimit-remaining-tokens")).toBe(String(expected))
        expect(response.headers.get("x-ratelimit-limit-requests")).toBeNull() // no RPM limit configured
        // Full again after used * 60 s / 1000.
        expect(response.headers.get("x-ratelimit-reset-tokens")).toBe(goDurationOf(((1000 - expected) * 60_000) / 1000))
      }
      const long = chatBody("x ".repeat(1500)) // ~1,500 tokens alone: never fits a 1,000 TPM limit
      const tooLarge = await post(emulator, "/v1/chat/completions", long)
      expect(tooLarge.status).toBe(429)
      expect(tooLarge.body.error).toMatchObject({ type: "tokens", code: "rate_limit_exceeded" })
      expect(tooLarge.body.error.message).toContain("Request too large")
      expect(tooLarge.headers.get("retry-after")).toBeNull()
      expect(answers.problems("ErrorResponse", tooLarge.body)).toEqual([])
      // Fill the bucket, then one more is refused until enough tokens are back.
      const medium = chatBody("y ".repeat(300))
      let refused: Awaited<ReturnType<typeof post>> | undefined
      let refusedBody: unknown
      for (let i = 0; i < 10 && refused === undefined; i++) {
        refusedBody = { ...medium, user: `u${i}` }
        const answer = await post(emulator, "/v1/chat/completions", refusedBody)
        if (answer.status === 429) refused = answer
      }
      expect(refused?.body.error).toMatchObject({ type: "tokens", code: "rate_limit_exceeded" })
      const waitMs = Number(refused!.headers.get("retry-after-ms"))
      expect(waitMs).toBeGreaterThan(0)
      expect(refused!.headers.get("retry-after")).toBe(String(Math.ceil(waitMs / 1000)))
      clock.now += waitMs - 1
      expect((await post(emulator, "/v1/chat/completions", refusedBody)).status).toBe(429)
      clock.now += 1
      expect((await post(emulator, "/v1/chat/completions", refusedBody)).status).toBe(200)
    } finally {
      await emulator.close()
    }
  })

  it("Anthropic: anthropic-ratelimit-* headers with RFC 3339 resets; a 429 rate_limit_error with retry-after (seconds only)", async () => {
    const { emulator, clock } = await withClock({ rpmLimit: 2, tpmLimit: 10_000 })
    try {
      const client = anthropic(emulator)
      const params = { model: "claude-haiku-4-5", max_tokens: 100, messages: [{ role: "user" as const, content: "hello" }] }
      const first = await client.messages.create(params).withResponse()
      const usage = first.data.usage.input_tokens + first.data.usage.output_tokens
      expect(rateLimitHeaders(first.response.headers)).toEqual({
        "anthropic-ratelimit-requests-limit": "2",
        "anthropic-ratelimit-requests-remaining": "1",
        "anthropic-ratelimit-requests-reset": "2026-03-01T12:00:30Z",
        "anthropic-ratelimit-tokens-limit": "10000",
        "anthropic-ratelimit-tokens-remaining": String(10_000 - usage),
        "anthropic-ratelimit-tokens-reset": new Date(Math.ceil((T0 + (usage * 60_000) / 10_000) / 1000) * 1000).toISOString().replace(".000Z", "Z"),
        "anthropic-ratelimit-input-tokens-limit": "10000",
        "anthropic-ratelimit-input-tokens-remaining": String(10_000 - usage),
        "anthropic-ratelimit-input-tokens-reset": expect.stringMatching(/^2026-03-01T12:00:0\dZ$/),
        "anthropic-ratelimit-output-tokens-limit": "10000",
        "anthropic-ratelimit-output-tokens-remaining": String(10_000 - usage),
        "anthropic-ratelimit-output-tokens-reset": expect.stringMatching(/^2026-03-01T12:00:0\dZ$/)
      })
      // The resets' clock is the emulator's: its date says so (not the wall clock's).
      expect(first.response.headers.get("date")).toBe(new Date(T0).toUTCString())
      expect((await client.messages.create(params).withResponse()).response.headers.get("anthropic-ratelimit-requests-remaining")).toBe("0")
      const refused = await post(emulator, "/v1/messages", params, ANTHROPIC_HEADERS)
      expect(refused.status).toBe(429)
      expect(refused.body.error.type).toBe("rate_limit_error")
      expect(anthropicProblems("ErrorResponse", refused.body)).toBe("")
      expect(refused.headers.get("retry-after")).toBe("30")
      expect(refused.headers.get("retry-after-ms")).toBeNull() // Anthropic sends seconds only
      expect(refused.headers.get("anthropic-ratelimit-requests-remaining")).toBe("0")
      clock.now += 30_000
      expect((await post(emulator, "/v1/messages", params, ANTHROPIC_HEADERS)).status).toBe(200)
    } finally {
      await emulator.close()
    }
  })

  it("Gemini: no rate-limit headers; a 429 RESOURCE_EXHAUSTED with QuotaFailure and RetryInfo", async () => {
    const { emulator, clock } = await withClock({ rpmLimit: 1 })
    try {
      const request = { contents: [{ role: "user", parts: [{ text: "hi" }] }] }
      const ok = await post(emulator, "/v1beta/models/gemini-2.5-flash:generateContent", request)
      expect(ok.status).toBe(200)
      expect(rateLimitHeaders(ok.headers)).toEqual({})
      const refused = await post(emulator, "/v1beta/models/gemini-2.5-flash:generateContent", request)
      expect(refused.status).toBe(429)
      expect(rateLimitHeaders(refused.headers)).toEqual({})
      expect(refused.body.error).toMatchObject({ code: 429, status: "RESOURCE_EXHAUSTED" })
      const details = refused.body.error.details as Array<Record<string, any>>
      expect(details.find((d) => d["@type"] === "type.googleapis.com/google.rpc.RetryInfo")).toEqual({
        "@type": "type.googleapis.com/google.rpc.RetryInfo",
        retryDelay: "60s"
      })
      const quota = details.find((d) => d["@type"] === "type.googleapis.com/google.rpc.QuotaFailure")
      expect(quota?.["violations"][0]).toMatchObject({ quotaDimensions: { model: "gemini-2.5-flash" }, quotaValue: "1" })
      // The SDK sees the status.
      const sdkError = await new GoogleGenAI3({ apiKey: "k", httpOptions: { baseUrl: emulator.url } }).models
        .generateContent({ model: "gemini-2.5-flash", contents: "hi" })
        .catch((e: unknown) => e)
      expect(String(sdkError)).toContain("RESOURCE_EXHAUSTED")
      clock.now += 60_000
      expect((await post(emulator, "/v1/models/gemini-2.5-flash:generateContent", request)).status).toBe(200)
    } finally {
      await emulator.close()
    }
  })

  it("rateLimitHeaders: false — limits still apply, but no x-ratelimit-* headers and no Retry-After (a server like vLLM)", async () => {
    const { emulator } = await withClock({ rpmLimit: 1, rateLimitHeaders: false })
    try {
      const ok = await post(emulator, "/v1/chat/completions", chatBody("one"))
      expect(ok.status).toBe(200)
      expect(rateLimitHeaders(ok.headers)).toEqual({})
      const refused = await post(emulator, "/v1/chat/completions", chatBody("two"))
      expect(refused.status).toBe(429)
      expect(rateLimitHeaders(refused.headers)).toEqual({})
      const anthropicRefused = await post(emulator, "/v1/messages", { model: "claude-haiku-4-5", max_tokens: 9, messages: [{ role: "user", content: "x" }] }, ANTHROPIC_HEADERS)
      expect(anthropicRefused.status).toBe(200) // another model's bucket
      expect(rateLimitHeaders(anthropicRefused.headers)).toEqual({})
      // Switched at run time, like every setting.
      await setFaults(emulator.url, { rateLimitHeaders: true, rpmLimit: 5 })
      expect((await post(emulator, "/v1/chat/completions", chatBody("three"))).headers.get("x-ratelimit-limit-requests")).toBe("5")
    } finally {
      await emulator.close()
    }
  })

  it("refuses bad limit settings at start and at run time", async () => {
    await expect(startEmulator({ rpmLimit: 0 })).rejects.toThrow(/rpmLimit/)
    await expect(startEmulator({ latencyMs: -1 })).rejects.toThrow(/latencyMs/)
    const emulator = await startEmulator()
    try {
      await expect(setFaults(emulator.url, { tpmLimit: -5 })).rejects.toThrow(/tpmLimit/)
      await expect(setFaults(emulator.url, { holdRequests: "yes" as unknown as boolean })).rejects.toThrow(/holdRequests/)
      expect(await setFaults(emulator.url, { tpmLimit: 10, rpmLimit: "Infinity" })).toMatchObject({ tpmLimit: 10, rpmLimit: "Infinity" })
    } finally {
      await emulator.close()
    }
  })
})

describe("reset durations", () => {
  it("are printed as Go prints durations, as OpenAI's x-ratelimit-reset-* headers carry them", () => {
    expect([0, 6, 999, 1000, 8640, 20_000, 60_000, 90_500, 360_000, 3_723_000].map(goDuration)).toEqual([
      "0s", "6ms", "999ms", "1s", "8.64s", "20s", "1m0s", "1m30.5s", "6m0s", "1h2m3s"
    ])
  })
})

/** The Go duration the reset headers carry (for an expected value). */
const goDurationOf = (ms: number): string => {
  const rounded = Math.ceil(ms - 1e-9)
  return rounded < 1000 ? `${rounded}ms` : `${rounded / 1000}s`
}

// ---------------------------------------------------------------------------------------------
// the ledger, latency, hold, faults
// ---------------------------------------------------------------------------------------------

describe("the ledger of real-time calls", () => {
  it("records each call with its x-sluice-custom-id, model, status, tokens and emulator-clock time; counts what was sent twice", async () => {
    const { emulator, clock } = await withClock({ rpmLimit: 2 })
    try {
      const client = openai(emulator)
      const send = (id: string) => client.chat.completions.create(chatBody(`row ${id}`), { headers: { "x-sluice-custom-id": id } })
      const a = await send("row-a")
      clock.now += 1000
      await send("row-b")
      const refused = await send("row-c").catch((e: unknown) => e)
      expect(refused).toBeInstanceOf(OpenAI.RateLimitError)
      clock.now += 60_000
      await send("row-c")
      await send("row-a") // sent twice
      await anthropic(emulator).messages.create(
        { model: "claude-haiku-4-5", max_tokens: 20, messages: [{ role: "user", content: "hi" }] },
        { headers: { "x-sluice-custom-id": "row-m" } }
      )
      await post(emulator, "/v1beta/models/gemini-2.5-flash:generateContent", { contents: [{ parts: [{ text: "hi" }] }] }, { "x-sluice-custom-id": "row-g" })
      await post(emulator, "/v1/chat/completions", chatBody("unknown", "gpt-4o-minni"), { "x-sluice-custom-id": "row-u" })

      const calls = await callsOf(emulator)
      expect(calls.map((c) => [c.seq, c.custom_id, c.status, c.api])).toEqual([
        [1, "row-a", 200, "openai"],
        [2, "row-b", 200, "openai"],
        [3, "row-c", 429, "openai"],
        [4, "row-c", 200, "openai"],
        [5, "row-a", 200, "openai"],
        [6, "row-m", 200, "anthropic"],
        [7, "row-g", 200, "gemini"],
        [8, "row-u", 404, "openai"]
      ])
      expect(calls[0]).toEqual({
        seq: 1,
        api: "openai",
        endpoint: "/v1/chat/completions",
        custom_id: "row-a",
        model: "gpt-4o-mini",
        status: 200,
        input_tokens: a.usage!.prompt_tokens,
        output_tokens: a.usage!.completion_tokens,
        received_at: T0,
        answered_at: T0,
        latency_ms: 0,
        fault: null,
        lost: false
      })
      expect(calls.map((c) => c.received_at)).toEqual([T0, T0 + 1000, T0 + 1000, T0 + 61_000, T0 + 61_000, T0 + 61_000, T0 + 61_000, T0 + 61_000])
      expect(calls[2]).toMatchObject({ input_tokens: 0, output_tokens: 0 })
      expect(calls[5]).toMatchObject({ endpoint: "/v1/messages", model: "claude-haiku-4-5" })
      expect(calls[6]).toMatchObject({ endpoint: "generateContent", model: "gemini-2.5-flash" })
      // What a crash test measures: answered requests per custom_id.
      const answered = new Map<string, number>()
      for (const call of calls) if (call.status === 200 && call.custom_id !== null) answered.set(call.custom_id, (answered.get(call.custom_id) ?? 0) + 1)
      expect([...answered].filter(([, n]) => n > 1)).toEqual([["row-a", 2]])

      await resetEmulator(emulator.url)
      expect(await getLedger(emulator.url)).toMatchObject({ calls: [], calls_dropped: 0 })
      await send("after-reset")
      expect((await callsOf(emulator)).map((c) => [c.seq, c.custom_id])).toEqual([[1, "after-reset"]])
    } finally {
      await emulator.close()
    }
  })

  it("holdRequests keeps admitted requests in flight until released; a client gone meanwhile is recorded as lost", async () => {
    const { emulator } = await withClock()
    try {
      await setFaults(emulator.url, { holdRequests: true })
      const settled: Array<string> = []
      const pending = ["h1", "h2", "h3"].map((id) =>
        post(emulator, "/v1/chat/completions", chatBody(id), { "x-sluice-custom-id": id }).then((answer) => {
          settled.push(id)
          return answer
        })
      )
      const abort = new AbortController()
      const gone = fetch(`${emulator.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-sluice-custom-id": "gone" },
        body: JSON.stringify(chatBody("gone")),
        signal: abort.signal
      }).catch(() => "aborted")
      await until(async () => (await getInFlight(emulator.url)).held === 4)
      expect(await getInFlight(emulator.url)).toEqual({ in_flight: 4, held: 4 })
      expect(settled).toEqual([])
      expect(await callsOf(emulator)).toEqual([]) // recorded when answered
      abort.abort()
      expect(await gone).toBe("aborted")
      // The emulator notices the client gone: that request leaves the hold, recorded as lost.
      await until(async () => (await getInFlight(emulator.url)).in_flight === 3)
      expect(await getInFlight(emulator.url)).toEqual({ in_flight: 3, held: 3 })
      expect((await callsOf(emulator)).map((c) => [c.custom_id, c.status, c.lost])).toEqual([["gone", 200, true]])
      expect(settled).toEqual([])
      await setFaults(emulator.url, { holdRequests: false })
      const results = await Promise.all(pending)
      expect(results.map((r) => r.status)).toEqual([200, 200, 200])
      await until(async () => (await getInFlight(emulator.url)).in_flight === 0)
      const calls = await callsOf(emulator)
      expect(calls.map((c) => [c.custom_id, c.status, c.lost]).sort()).toEqual([
        ["gone", 200, true],
        ["h1", 200, false],
        ["h2", 200, false],
        ["h3", 200, false]
      ])
    } finally {
      await emulator.close()
    }
  })

  it("latency: latencyMs + latencyPerTokenMs × output tokens, recorded, and the answer waits at least that long", async () => {
    const emulator = await startEmulator({ latencyMs: 40, latencyPerTokenMs: 2 })
    try {
      const started = performance.now()
      const answer = await openai(emulator).chat.completions.create(chatBody("slow"))
      const elapsed = performance.now() - started
      const expected = 40 + 2 * answer.usage!.completion_tokens
      const [call] = await callsOf(emulator)
      expect(call!.latency_ms).toBe(expected)
      expect(elapsed).toBeGreaterThanOrEqual(expected - 1) // a lower bound only: timers never fire early
    } finally {
      await emulator.close()
    }
  })

  it("call faults on real-time routes: 5xx (Anthropic's 503 is a 529 overloaded_error), lost responses, first-time invalid JSON", async () => {
    const { emulator } = await withClock()
    try {
      await setFaults(emulator.url, { serverErrorRate: 1 })
      const failed = await post(emulator, "/v1/chat/completions", chatBody("fault"), { "x-sluice-custom-id": "f1" })
      expect(failed.status).toBe(500)
      expect(failed.body.error.type).toBe("server_error")
      // Never twice in a row on one path: the retry gets through.
      expect((await post(emulator, "/v1/chat/completions", chatBody("fault"), { "x-sluice-custom-id": "f1" })).status).toBe(200)
      const params = { model: "claude-haiku-4-5", max_tokens: 20, messages: [{ role: "user", content: "hi" }] }
      const statuses: Array<number> = []
      for (let i = 0; i < 6; i++) {
        const answer = await post(emulator, "/v1/messages", params, ANTHROPIC_HEADERS)
        statuses.push(answer.status)
        if (answer.status === 529) expect(answer.body.error.type).toBe("overloaded_error")
      }
      expect(statuses).toContain(529)
      expect((await callsOf(emulator))[0]).toMatchObject({ custom_id: "f1", status: 500, fault: "ServerError", lost: false })
      // Each phase starts from a reset: a rate's accumulated debt would carry over to the next call.
      await resetEmulator(emulator.url)
      await setFaults(emulator.url, { resetRate: 1 })
      const lost = await post(emulator, "/v1/responses", { model: "gpt-4o-mini", input: "lost" }, { "x-sluice-custom-id": "l1" }).catch(() => "reset")
      expect(lost).toBe("reset")
      expect((await callsOf(emulator))[0]).toMatchObject({ custom_id: "l1", status: 200, fault: "Reset", lost: true, endpoint: "/v1/responses" })
      await resetEmulator(emulator.url)
      await setFaults(emulator.url, { invalidJsonRate: 1 })
      const body = {
        model: "gpt-4o-mini",
        input: "Label: great kettle",
        text: { format: { type: "json_schema" as const, name: "Label", strict: true, schema: LabelSchema } }
      }
      const client = openai(emulator)
      const broken = await client.responses.create(body)
      const parsed = (() => {
        try {
          return JSON.parse(broken.output_text) as unknown
        } catch {
          return undefined
        }
      })()
      expect(parsed !== undefined && validateLabel(parsed)).toBe(false)
      const fixed = await client.responses.create(body)
      expect(validateLabel(JSON.parse(fixed.output_text))).toBe(true)
    } finally {
      await emulator.close()
    }
  })
})

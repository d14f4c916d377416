/**
 * Real-time execution (`BatchProvider.online`): each family sends a shard line's request to
 * its real-time endpoint on a server on 127.0.0.1, with the row's custom_id in a header, and
 * turns the answer into what the runner acts on: a result classified by the family's batch
 * codec, or an error that says whether retrying can help and how long the server asked to
 * wait. Rate-limit headers are read into the neutral snapshot.
 */
import { NodeHttpClient } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import type { BatchRequest } from "@sluice/core"
import { Effect, Exit, Redacted } from "effect"
import * as AnthropicBatch from "../src/anthropic/AnthropicBatch.js"
import type { BatchProvider, OnlineAnswer } from "../src/BatchProvider.js"
import { hasBatchApi } from "../src/BatchProvider.js"
import * as GeminiBatch from "../src/gemini/GeminiBatch.js"
import * as Compatible from "../src/openai/Compatible.js"
import * as OpenAiBatch from "../src/openai/OpenAiBatch.js"
import type { ProviderError } from "../src/ProviderError.js"
import * as RateLimit from "../src/RateLimit.js"
import { clientOf, header, json, providerFromEnv, testServer } from "./HttpTestServer.js"
import type { Handler } from "./HttpTestServer.js"

const key = Redacted.make("sk-online-test-key")
const chat: BatchRequest = { _tag: "chat", model: "gpt-4o-mini", messages: [{ role: "user", content: "Hi" }], params: { max_tokens: 5 } }

const openAi = (baseUrl: string, extra: Partial<OpenAiBatch.OpenAiConfig> = {}) =>
  Effect.map(clientOf(NodeHttpClient.layerUndici), (client) => OpenAiBatch.makeWithClient(client, { apiKey: key, baseUrl, retry: { maxRetries: 0 }, ...extra }))

/** Sends one line; the answer, or the error. */
const send = (provider: BatchProvider, line: string, customId: string) =>
  Effect.map(Effect.exit(provider.online!.send(line, customId)), (exit) =>
    Exit.isSuccess(exit) ? { answer: exit.value as OnlineAnswer, error: undefined } : { answer: undefined, error: (exit.cause as { error?: ProviderError }).error }
  )

const completion = (content: string) => ({
  id: "chatcmpl-1",
  object: "chat.completion",
  choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
  usage: { prompt_tokens: 9, completion_tokens: 2 }
})

describe("rate-limit headers", () => {
  it("reads OpenAI's durations", () => {
    assert.strictEqual(RateLimit.parseDuration("6m0s"), 360_000)
    assert.strictEqual(RateLimit.parseDuration("1s"), 1000)
    assert.strictEqual(RateLimit.parseDuration("20ms"), 20)
    assert.strictEqual(RateLimit.parseDuration("1h2m3.5s"), 3_723_500)
    assert.strictEqual(RateLimit.parseDuration("0s"), 0)
    assert.strictEqual(RateLimit.parseDuration("1.5"), 1500)
    assert.strictEqual(RateLimit.parseDuration("soon"), undefined)
    assert.strictEqual(RateLimit.parseDuration("5 minutes"), undefined)
    assert.strictEqual(RateLimit.parseDuration(""), undefined)
  })

  it("reads OpenAI's headers into a snapshot; retry-after-ms wins over retry-after", () => {
    const limits = RateLimit.fromOpenAiHeaders(
      {
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-reset-requests": "120ms",
        "x-ratelimit-limit-tokens": "200000",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "6m0s",
        "retry-after": "7",
        "retry-after-ms": "1500"
      },
      0
    )
    assert.deepStrictEqual(limits, {
      requests: { limit: 500, remaining: 499, resetMs: 120 },
      tokens: { limit: 200_000, remaining: 0, resetMs: 360_000 },
      retryAfterMs: 1500
    })
    assert.deepStrictEqual(RateLimit.fromOpenAiHeaders({ "retry-after": "2" }, 0), { retryAfterMs: 2000 })
    assert.deepStrictEqual(RateLimit.fromOpenAiHeaders({ "x-ratelimit-remaining-requests": "many" }, 0), {})
    assert.deepStrictEqual(RateLimit.fromOpenAiHeaders({}, 0), {})
  })

  it("reads Anthropic's headers, resets as RFC 3339 times from now; tokens from the tighter of input and output", () => {
    const now = Date.parse("2026-01-01T00:00:00Z")
    const limits = RateLimit.fromAnthropicHeaders(
      {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "10",
        "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:30Z",
        "anthropic-ratelimit-input-tokens-limit": "40000",
        "anthropic-ratelimit-input-tokens-remaining": "30000",
        "anthropic-ratelimit-input-tokens-reset": "2026-01-01T00:00:10Z",
        "anthropic-ratelimit-output-tokens-limit": "8000",
        "anthropic-ratelimit-output-tokens-remaining": "800",
        "anthropic-ratelimit-output-tokens-reset": "2026-01-01T00:00:45Z"
      },
      now
    )
    assert.deepStrictEqual(limits, {
      requests: { limit: 50, remaining: 10, resetMs: 30_000 },
      tokens: { limit: 8000, remaining: 800, resetMs: 45_000 }
    })
    // The combined window, when sent, is the tokens window; a reset in the past is now.
    const combined = RateLimit.fromAnthropicHeaders(
      {
        "anthropic-ratelimit-tokens-remaining": "5",
        "anthropic-ratelimit-tokens-reset": "2025-12-31T23:59:00Z",
        "anthropic-ratelimit-output-tokens-remaining": "1",
        "retry-after": "3"
      },
      now
    )
    assert.deepStrictEqual(combined, { tokens: { remaining: 5, resetMs: 0 }, retryAfterMs: 3000 })
  })

  it("measures Anthropic's resets from the answer's date (the server's clock), whatever the client's clock says", () => {
    const headers = {
      date: "Thu, 01 Jan 2026 00:00:00 GMT",
      "anthropic-ratelimit-requests-limit": "50",
      "anthropic-ratelimit-requests-remaining": "0",
      "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:30Z",
      "anthropic-ratelimit-tokens-remaining": "10",
      "anthropic-ratelimit-tokens-reset": "2026-01-01T00:00:12Z",
      "retry-after": "Thu, 01 Jan 2026 00:00:05 GMT"
    }
    const expected = { requests: { limit: 50, remaining: 0, resetMs: 30_000 }, tokens: { remaining: 10, resetMs: 12_000 }, retryAfterMs: 5000 }
    // A client clock 20 s behind or 45 s ahead of the server's reads the same waits.
    for (const skew of [-20_000, 0, 45_000]) {
      assert.deepStrictEqual(RateLimit.fromAnthropicHeaders(headers, Date.parse("2026-01-01T00:00:00Z") + skew), expected, `skew ${skew}`)
    }
    // Without a usable date, the client's clock it is.
    const { date: _, ...noDate } = headers
    const clientNow = Date.parse("2026-01-01T00:00:20Z")
    assert.strictEqual(RateLimit.fromAnthropicHeaders(noDate, clientNow).requests?.resetMs, 10_000)
    assert.strictEqual(RateLimit.fromAnthropicHeaders({ ...noDate, date: "yesterday" }, clientNow).requests?.resetMs, 10_000)
  })

  it("reads Gemini's RetryInfo from a 429's body", () => {
    const body = {
      error: {
        code: 429,
        status: "RESOURCE_EXHAUSTED",
        details: [{ "@type": "type.googleapis.com/google.rpc.QuotaFailure" }, { "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay: "37s" }]
      }
    }
    assert.deepStrictEqual(RateLimit.fromGeminiAnswer({}, body, 0), { retryAfterMs: 37_000 })
    assert.deepStrictEqual(RateLimit.fromGeminiAnswer({ "retry-after": "1" }, body, 0), { retryAfterMs: 1000 })
    assert.deepStrictEqual(RateLimit.fromGeminiAnswer({}, { error: { details: "none" } }, 0), {})
    assert.deepStrictEqual(RateLimit.fromGeminiAnswer({}, null, 0), {})
  })

  it("says how long a 429 waits: the hint, else until the window that ran out holds something again", () => {
    assert.strictEqual(RateLimit.waitOf({ retryAfterMs: 5, requests: { remaining: 0, resetMs: 900 } }), 5)
    assert.strictEqual(RateLimit.waitOf({ requests: { remaining: 0, resetMs: 900 }, tokens: { remaining: 3, resetMs: 5000 } }), 900)
    assert.strictEqual(RateLimit.waitOf({ requests: { remaining: 0, resetMs: 900 }, tokens: { remaining: 0, resetMs: 5000 } }), 5000)
    assert.strictEqual(RateLimit.waitOf({ requests: { remaining: 2, resetMs: 900 } }), undefined)
    // A stated limit: the window refills as a bucket, so the first unit is back after the
    // reset's share of one (59 s until 30 are back: 1967 ms), not the whole reset.
    assert.strictEqual(RateLimit.waitOf({ requests: { limit: 30, remaining: 0, resetMs: 59_000 } }), 1967)
    assert.strictEqual(RateLimit.waitOf({ requests: { limit: 30, remaining: 0, resetMs: 59_000 }, tokens: { limit: 1000, remaining: 0, resetMs: 30_000 } }), 1967)
  })
})

describe("OpenAI online", () => {
  const limitHeaders = {
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-remaining-requests": "59",
    "x-ratelimit-reset-requests": "1s",
    "x-ratelimit-remaining-tokens": "9000",
    "x-ratelimit-reset-tokens": "6m0s"
  }

  it.scoped("sends the line's body to its endpoint with the custom_id header, and classifies a success", () =>
    Effect.gen(function*() {
      const server = yield* testServer((_, res) => {
        res.writeHead(200, { "content-type": "application/json", ...limitHeaders })
        res.end(JSON.stringify(completion("hello")))
      })
      const provider = yield* openAi(`${server.url}/v1`)
      const line = provider.encode(chat, "label-r1-abc")
      const { answer } = yield* send(provider, line, "label-r1-abc")
      const received = server.received[0]!
      assert.strictEqual(received.method, "POST")
      assert.strictEqual(received.url, "/v1/chat/completions")
      assert.strictEqual(received.body, JSON.stringify(JSON.parse(line).body))
      assert.strictEqual(header(received, "x-sluice-custom-id"), "label-r1-abc")
      assert.strictEqual(header(received, "authorization"), "Bearer sk-online-test-key")
      assert.strictEqual(header(received, "content-type"), "application/json")
      assert.deepInclude(answer!.result, { _tag: "Succeeded", customId: "label-r1-abc", text: "hello", finishReason: "stop" })
      assert.deepStrictEqual((answer!.result as { usage: unknown }).usage, { inputTokens: 9, outputTokens: 2, cachedInputTokens: 0 })
      assert.deepStrictEqual(answer!.limits, {
        requests: { limit: 60, remaining: 59, resetMs: 1000 },
        tokens: { remaining: 9000, resetMs: 360_000 }
      })
    }))

  it.scoped("a request the server refuses fails its row (permanent, no retry); an unknown model too", () =>
    Effect.gen(function*() {
      const server = yield* testServer((request, res) =>
        request.body.includes("gpt-nope")
          ? json(res, 404, { error: { message: "The model `gpt-nope` does not exist", type: "invalid_request_error", code: "model_not_found" } })
          : json(res, 400, { error: { message: "messages must not be empty", type: "invalid_request_error", code: "invalid_value" } })
      )
      const provider = yield* openAi(`${server.url}/v1`)
      const bad = yield* send(provider, provider.encode(chat, "id-1"), "id-1")
      assert.deepInclude(bad.answer!.result, { _tag: "Failed", customId: "id-1", failure: "permanent", code: "invalid_value", status: 400 })
      const unknown = yield* send(provider, provider.encode({ ...chat, model: "gpt-nope" }, "id-2"), "id-2")
      assert.deepInclude(unknown.answer!.result, { _tag: "Failed", failure: "permanent", code: "model_not_found", status: 404 })
    }))

  it.scoped("429 and 5xx are retryable errors carrying the wait: retry-after, else the reset of the exhausted window", () =>
    Effect.gen(function*() {
      let call = 0
      const server = yield* testServer((_, res) => {
        call++
        if (call === 1) {
          res.writeHead(429, { "content-type": "application/json", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s" })
          res.end(JSON.stringify({ error: { message: "Rate limit reached", type: "requests", code: "rate_limit_exceeded" } }))
        } else if (call === 2) {
          res.writeHead(503, { "retry-after": "3" })
          res.end("overloaded")
        } else {
          res.writeHead(500)
          res.end()
        }
      })
      const provider = yield* openAi(`${server.url}/v1`)
      const line = provider.encode(chat, "id-1")
      const throttled = (yield* send(provider, line, "id-1")).error!
      assert.strictEqual(throttled.reason, "RateLimited")
      assert.isTrue(throttled.retryable)
      assert.strictEqual(throttled.retryAfterMs, 2000)
      const overloaded = (yield* send(provider, line, "id-1")).error!
      assert.strictEqual(overloaded.reason, "Server")
      assert.strictEqual(overloaded.retryAfterMs, 3000)
      const broken = (yield* send(provider, line, "id-1")).error!
      assert.strictEqual(broken.reason, "Server")
      assert.isTrue(broken.retryable)
      assert.strictEqual(broken.retryAfterMs, undefined)
      // Never retried by the provider: the runner paces and retries.
      assert.strictEqual(server.received.length, 3)
    }))

  it.scoped("a rejected key, exhausted credit and a path the server lacks stop the run (not retryable)", () =>
    Effect.gen(function*() {
      const server = yield* testServer((request, res) =>
        request.url.startsWith("/wrong")
          ? json(res, 404, { error: { message: "Invalid URL (POST /wrong/chat/completions)", type: "invalid_request_error", code: null } })
          : request.body.includes("quota")
          ? json(res, 429, { error: { message: "You exceeded your current quota", type: "insufficient_quota", code: "insufficient_quota" } })
          : json(res, 401, { error: { message: "Incorrect API key provided", type: "invalid_request_error", code: "invalid_api_key" } })
      )
      const provider = yield* openAi(`${server.url}/v1`)
      const unauthorized = (yield* send(provider, provider.encode(chat, "a"), "a")).error!
      assert.strictEqual(unauthorized.reason, "Unauthorized")
      assert.isFalse(unauthorized.retryable)
      assert.notInclude(unauthorized.message, "sk-online-test-key")
      const quota = (yield* send(provider, provider.encode({ ...chat, messages: [{ role: "user", content: "quota" }] }, "b"), "b")).error!
      assert.strictEqual(quota.reason, "Quota")
      assert.isFalse(quota.retryable)
      const wrong = yield* openAi(`${server.url}/wrong`)
      const missing = (yield* send(wrong, wrong.encode(chat, "c"), "c")).error!
      assert.strictEqual(missing.reason, "NotFound")
      assert.isFalse(missing.retryable)
    }))

  it.scoped("embeddings, the Responses API and Azure's deployment paths", () =>
    Effect.gen(function*() {
      const server = yield* testServer((request, res) => {
        if (request.url.includes("/embeddings")) {
          return json(res, 200, { object: "list", data: [{ embedding: [0.5, -1] }], usage: { prompt_tokens: 3 } })
        }
        if (request.url.includes("/responses")) {
          return json(res, 200, {
            object: "response",
            status: "incomplete",
            incomplete_details: { reason: "max_output_tokens" },
            output: [{ type: "reasoning" }, { type: "message", content: [{ type: "output_text", text: "{\"a\":" }] }],
            usage: { input_tokens: 12, output_tokens: 5, input_tokens_details: { cached_tokens: 4 } }
          })
        }
        return json(res, 200, completion("ok"))
      })
      const provider = yield* openAi(`${server.url}/v1`)
      const embedded = yield* send(provider, provider.encode({ _tag: "embeddings", model: "text-embedding-3-small", input: "x", params: {} }, "e"), "e")
      assert.strictEqual(server.received[0]!.url, "/v1/embeddings")
      assert.deepInclude(embedded.answer!.result, { _tag: "Succeeded", text: "[0.5,-1]" })

      const responsesLine = provider.encode(
        { ...chat, api: "responses", output: { name: "Label", schema: { type: "object" } }, params: { max_tokens: 5, temperature: 0 } },
        "r"
      )
      const wire = JSON.parse(responsesLine)
      assert.strictEqual(wire.url, "/v1/responses")
      assert.deepStrictEqual(wire.body, {
        model: "gpt-4o-mini",
        input: [{ role: "user", content: "Hi" }],
        max_output_tokens: 5,
        temperature: 0,
        text: { format: { type: "json_schema", name: "Label", strict: true, schema: { type: "object" } } }
      })
      const responded = yield* send(provider, responsesLine, "r")
      assert.strictEqual(server.received[1]!.url, "/v1/responses")
      assert.deepInclude(responded.answer!.result, { _tag: "Succeeded", text: "{\"a\":", finishReason: "length" })
      assert.deepStrictEqual((responded.answer!.result as { usage: unknown }).usage, { inputTokens: 12, outputTokens: 5, cachedInputTokens: 4 })

      const azure = yield* Effect.map(clientOf(NodeHttpClient.layerUndici), (client) =>
        OpenAiBatch.makeWithClient(client, Compatible.azureConfig({ apiKey: key, endpoint: server.url, apiVersion: "2024-10-21", retry: { maxRetries: 0 } })))
      yield* send(azure, azure.encode({ ...chat, model: "my-gpt4o" }, "z"), "z")
      const versioned = server.received[2]!
      assert.strictEqual(versioned.url, "/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21")
      assert.strictEqual(header(versioned, "api-key"), "sk-online-test-key")
      const v1 = yield* Effect.map(clientOf(NodeHttpClient.layerUndici), (client) =>
        OpenAiBatch.makeWithClient(client, Compatible.azureConfig({ apiKey: key, endpoint: server.url, retry: { maxRetries: 0 } })))
      yield* send(v1, v1.encode(chat, "y"), "y")
      assert.strictEqual(server.received[3]!.url, "/openai/v1/chat/completions")
    }))
})

describe("Anthropic online", () => {
  it.scoped("sends the params to /v1/messages; a forced tool's input is the answer; errors classified like batch results", () =>
    Effect.gen(function*() {
      // The server's clock (its date) stands at 0: the reset is 20 s from it.
      const now = new Date(20_000).toISOString()
      const server = yield* testServer((request, res) => {
        if (request.body.includes("overloaded")) return json(res, 529, { type: "error", error: { type: "overloaded_error", message: "Overloaded" } })
        if (request.body.includes("bad")) return json(res, 400, { type: "error", error: { type: "invalid_request_error", message: "max_tokens: too large" } })
        res.writeHead(200, {
          "content-type": "application/json",
          date: new Date(0).toUTCString(),
          "anthropic-ratelimit-requests-limit": "50",
          "anthropic-ratelimit-requests-remaining": "49",
          "anthropic-ratelimit-requests-reset": now
        })
        res.end(JSON.stringify({
          id: "msg_1",
          type: "message",
          role: "assistant",
          content: [{ type: "tool_use", id: "t", name: "Label", input: { sentiment: "positive" } }],
          stop_reason: "tool_use",
          usage: { input_tokens: 20, output_tokens: 4, cache_read_input_tokens: 2 }
        }))
      })
      const client = yield* clientOf(NodeHttpClient.layerUndici)
      const provider = AnthropicBatch.makeWithClient(client, { apiKey: key, baseUrl: server.url, retry: { maxRetries: 0 } })
      const request: BatchRequest = { ...chat, model: "claude-haiku-4-5", output: { name: "Label", schema: { type: "object" } } }
      const line = provider.encode(request, "s-1")
      const { answer } = yield* send(provider, line, "s-1")
      const received = server.received[0]!
      assert.strictEqual(received.url, "/v1/messages")
      assert.strictEqual(received.body, JSON.stringify(JSON.parse(line).params))
      assert.strictEqual(header(received, "x-api-key"), "sk-online-test-key")
      assert.strictEqual(header(received, "anthropic-version"), "2023-06-01")
      assert.strictEqual(header(received, "x-sluice-custom-id"), "s-1")
      assert.deepInclude(answer!.result, { _tag: "Succeeded", customId: "s-1", text: "{\"sentiment\":\"positive\"}" })
      assert.deepStrictEqual((answer!.result as { usage: unknown }).usage, { inputTokens: 22, outputTokens: 4, cachedInputTokens: 2 })
      assert.strictEqual(answer!.limits.requests?.remaining, 49)
      assert.strictEqual(answer!.limits.requests!.resetMs, 20_000)

      const bad = yield* send(provider, provider.encode({ ...request, messages: [{ role: "user", content: "bad" }] }, "s-2"), "s-2")
      assert.deepInclude(bad.answer!.result, { _tag: "Failed", failure: "permanent", code: "invalid_request_error", status: 400 })
      const overloaded = yield* send(provider, provider.encode({ ...request, messages: [{ role: "user", content: "overloaded" }] }, "s-3"), "s-3")
      assert.strictEqual(overloaded.error!.reason, "Server")
      assert.isTrue(overloaded.error!.retryable)
    }))
})

describe("Gemini online", () => {
  it.scoped("sends the request to models/{model}:generateContent; RetryInfo sets the wait of a 429; a wrong key stops the run", () =>
    Effect.gen(function*() {
      const handler: Handler = (request, res) => {
        if (request.body.includes("throttle")) {
          return json(res, 429, {
            error: { code: 429, status: "RESOURCE_EXHAUSTED", message: "quota", details: [{ "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay: "4s" }] }
          })
        }
        if (request.body.includes("wrongkey")) return json(res, 400, { error: { code: 400, status: "INVALID_ARGUMENT", message: "API key not valid. Please pass a valid API key." } })
        if (request.body.includes("invalid")) return json(res, 400, { error: { code: 400, status: "INVALID_ARGUMENT", message: "bad schema" } })
        json(res, 200, {
          candidates: [{ content: { parts: [{ text: "hi" }], role: "model" }, finishReason: "STOP" }],
          usageMetadata: { promptTokenCount: 3, candidatesTokenCount: 1 }
        })
      }
      const server = yield* testServer(handler)
      const client = yield* clientOf(NodeHttpClient.layerUndici)
      const provider = GeminiBatch.makeWithClient(client, { apiKey: key, baseUrl: server.url, retry: { maxRetries: 0 } })
      const request: BatchRequest = { ...chat, model: "gemini-2.5-flash" }
      const line = provider.encode(request, "g-1")
      const { answer } = yield* send(provider, line, "g-1")
      const received = server.received[0]!
      assert.strictEqual(received.url, "/v1beta/models/gemini-2.5-flash:generateContent")
      assert.strictEqual(received.body, JSON.stringify(JSON.parse(line).request))
      assert.strictEqual(header(received, "x-goog-api-key"), "sk-online-test-key")
      assert.deepInclude(answer!.result, { _tag: "Succeeded", customId: "g-1", text: "hi", finishReason: "STOP" })

      const throttled = yield* send(provider, provider.encode({ ...request, messages: [{ role: "user", content: "throttle" }] }, "g-2"), "g-2")
      assert.strictEqual(throttled.error!.reason, "RateLimited")
      assert.strictEqual(throttled.error!.retryAfterMs, 4000)
      const invalid = yield* send(provider, provider.encode({ ...request, messages: [{ role: "user", content: "invalid" }] }, "g-3"), "g-3")
      assert.deepInclude(invalid.answer!.result, { _tag: "Failed", failure: "permanent", code: "INVALID_ARGUMENT" })
      const wrongKey = yield* send(provider, provider.encode({ ...request, messages: [{ role: "user", content: "wrongkey" }] }, "g-4"), "g-4")
      assert.strictEqual(wrongKey.error!.reason, "Unauthorized")
    }))
})

describe("online-only providers", () => {
  it.scoped("vllm, llamacpp and ollama: no batch API, their default ports, a key only when given", () =>
    Effect.gen(function*() {
      const server = yield* testServer((_, res) => json(res, 200, completion("local")))
      for (const preset of Compatible.selfHosted) {
        const byDefault = (yield* providerFromEnv(preset.name, {})).provider!
        assert.isFalse(hasBatchApi(byDefault), preset.name)
        assert.strictEqual(byDefault.origin, preset.defaultBaseUrl)
        assert.isDefined(byDefault.online)
      }
      assert.strictEqual((yield* providerFromEnv("vllm", {})).provider!.origin, "http://localhost:8000/v1")
      assert.strictEqual((yield* providerFromEnv("llamacpp", {})).provider!.origin, "http://localhost:8080/v1")
      assert.strictEqual((yield* providerFromEnv("ollama", {})).provider!.origin, "http://localhost:11434/v1")

      const keyless = (yield* providerFromEnv("vllm", { VLLM_BASE_URL: `${server.url}/v1` })).provider!
      const { answer } = yield* send(keyless, keyless.encode({ ...chat, model: "meta-llama/Llama-3.1-8B-Instruct" }, "v-1"), "v-1")
      assert.deepInclude(answer!.result, { _tag: "Succeeded", text: "local" })
      assert.strictEqual(server.received[0]!.url, "/v1/chat/completions")
      assert.isUndefined(header(server.received[0]!, "authorization"))

      const keyed = (yield* providerFromEnv("ollama", { OLLAMA_BASE_URL: `${server.url}/v1`, OLLAMA_API_KEY: "local-secret\n" })).provider!
      yield* send(keyed, keyed.encode({ ...chat, model: "llama3.2" }, "o-1"), "o-1")
      assert.strictEqual(header(server.received[1]!, "authorization"), "Bearer local-secret")

      const broken = yield* providerFromEnv("llamacpp", { LLAMACPP_API_KEY: "two words" })
      assert.include(broken.message, "LLAMACPP_API_KEY has whitespace inside")
    }))

  it.scoped("an openai-compatible gateway declared without a batch API (SLUICE_GATEWAY_BATCH=off) is online only", () =>
    Effect.gen(function*() {
      const env = { SLUICE_GATEWAY_BASE_URL: "https://gw.example.com/v1", SLUICE_GATEWAY_API_KEY: "gw-key-123456" }
      assert.isTrue(hasBatchApi((yield* providerFromEnv("openai-compatible", env)).provider!))
      assert.isTrue(hasBatchApi((yield* providerFromEnv("openai-compatible", { ...env, SLUICE_GATEWAY_BATCH: "on" })).provider!))
      const off = (yield* providerFromEnv("openai-compatible", { ...env, SLUICE_GATEWAY_BATCH: "off" })).provider!
      assert.isFalse(hasBatchApi(off))
      assert.isDefined(off.online)
      const typo = yield* providerFromEnv("openai-compatible", { ...env, SLUICE_GATEWAY_BATCH: "nope" })
      assert.include(typo.message, `SLUICE_GATEWAY_BATCH must be "on" or "off"`)
    }))
})

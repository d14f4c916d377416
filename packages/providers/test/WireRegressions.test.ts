/**
 * Answers the property tests (Codecs.property.test.ts) found mishandled, kept as plain cases:
 * wire text that names an `Object.prototype` member, counts that JSON parses as Infinity or
 * that overflow when summed, and a Gemini inline entry whose key was not its own.
 */
import type { BatchRequest } from "@sluice/core"
import { Either, Schema } from "effect"
import { describe, expect, it } from "vitest"
import * as Anthropic from "../src/anthropic/internal/codec.js"
import { BatchInfo } from "../src/BatchProvider.js"
import * as Gemini from "../src/gemini/internal/codec.js"
import * as OpenAi from "../src/openai/internal/codec.js"

/** What the journal does with a BatchInfo's numbers (StatusChanged, Terminal): JSON and back. */
const journaled = (info: BatchInfo): BatchInfo => Schema.decodeUnknownSync(BatchInfo)(JSON.parse(JSON.stringify(info)))

const chat = (params: Record<string, unknown>): BatchRequest => ({
  _tag: "chat",
  model: "m",
  messages: [{ role: "user", content: "hi" }],
  params
})

describe("wire text that names an Object.prototype member", () => {
  it("OpenAI: the status 'constructor' is unknown, its raw value kept", () => {
    expect(OpenAi.normaliseStatus("constructor")).toBe("unknown")
    expect(OpenAi.normaliseStatus("__proto__")).toBe("unknown")
    const info = Either.getOrThrow(OpenAi.decodeBatchInfo({ id: "batch_1", status: "constructor" }))
    expect(info.status).toBe("unknown")
    expect(info.rawStatus).toBe("constructor")
    expect(journaled(info)).toEqual(info)
  })

  it("Anthropic: an errored result of type 'constructor' has no HTTP status", () => {
    const result = Either.getOrThrow(
      Anthropic.parseResultLine('{"custom_id":"0","result":{"type":"errored","error":{"type":"constructor"}}}')
    )
    expect(result).toMatchObject({ _tag: "Failed", customId: "0", failure: "retryable", code: "constructor", status: null })
  })

  it("Anthropic: a param named 'constructor' is passed on under its own name", () => {
    const line = JSON.parse(Anthropic.encode(chat({ constructor: 1 }), "id-1")) as { params: Record<string, unknown> }
    expect(line.params["constructor"]).toBe(1)
    expect(Object.keys(line.params).some((k) => k.includes("native code"))).toBe(false)
  })

  it("Gemini: a param named 'constructor' is not a generationConfig field", () => {
    const line = JSON.parse(Gemini.encode(chat({ constructor: 1, temperature: 0 }), "id-1")) as {
      request: { generationConfig: Record<string, unknown> }
    }
    expect(line.request.generationConfig).toEqual({ temperature: 0 })
  })
})

describe("counts a journal can keep", () => {
  it("OpenAI: a request count of 1e999 (Infinity) is no count", () => {
    const info = Either.getOrThrow(OpenAi.decodeBatchInfo(JSON.parse('{"id":"","request_counts":{"completed":1e999}}')))
    expect(info.counts).toEqual({ total: 0, succeeded: 0, failed: 0 })
    expect(journaled(info)).toEqual(info)
  })

  it("Anthropic: a processing count of 1e999 (Infinity) is no count", () => {
    const info = Either.getOrThrow(Anthropic.decodeBatchInfo(JSON.parse('{"id":"","request_counts":{"processing":1e999}}')))
    expect(info.counts.total).toBe(0)
    expect(journaled(info)).toEqual(info)
  })

  it("Gemini: an int64 count with more digits than a double holds is no count", () => {
    const requestCount = "6" + "0".repeat(309)
    const info = Either.getOrThrow(Gemini.decodeBatchInfo({ name: "", metadata: { batchStats: { requestCount } } }))
    expect(info.counts.total).toBe(0)
    expect(journaled(info)).toEqual(info)
  })

  it("Anthropic: token counts that overflow when added stay finite", () => {
    const result = Either.getOrThrow(Anthropic.parseResultLine(
      '{"custom_id":"A","result":{"type":"succeeded","message":{"content":[{"type":"tool_use"}],"usage":{"input_tokens":1e+308,"cache_read_input_tokens":1e+308}}}}'
    ))
    expect(result._tag).toBe("Succeeded")
    if (result._tag === "Succeeded") expect(result.usage?.inputTokens).toBe(Number.MAX_SAFE_INTEGER)
  })

  it("Gemini: token counts that overflow when added stay finite", () => {
    const result = Either.getOrThrow(Gemini.parseResultLine(
      '{"key":"-","response":{"candidates":[{"content":{"parts":[{"text":""}]}}],"usageMetadata":{"candidatesTokenCount":1e+308,"thoughtsTokenCount":1e+308}}}'
    ))
    expect(result._tag).toBe("Succeeded")
    if (result._tag === "Succeeded") expect(result.usage?.outputTokens).toBe(Number.MAX_SAFE_INTEGER)
  })

  it("OpenAI: a token count of 1e308 is capped, so a shard's sum stays finite", () => {
    const result = Either.getOrThrow(OpenAi.parseResultLine(
      '{"custom_id":"a","response":{"status_code":200,"body":{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":1e308,"completion_tokens":-5}}}}'
    ))
    expect(result._tag === "Succeeded" && result.usage).toEqual({ inputTokens: Number.MAX_SAFE_INTEGER, outputTokens: 0, cachedInputTokens: 0 })
  })
})

describe("Gemini inline responses", () => {
  it("the key is the one in metadata: a top-level key neither stands in for it nor overrides it", () => {
    expect(Either.isLeft(Gemini.parseResultRecord(Gemini.inlineToLine({ key: "\u0000" })))).toBe(true)
    const result = Gemini.parseResultRecord(Gemini.inlineToLine({ key: "b", metadata: { key: "a" }, response: {} }))
    expect(Either.getOrThrow(result).customId).toBe("a")
  })
})

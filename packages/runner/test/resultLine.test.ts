import { describe, expect, it } from "vitest"
import type { Failed, Succeeded } from "@sluice/core"
import { encodeFailed, resultHead } from "../src/internal/resultLine.js"
import { encodeAnswer } from "../src/ResponseCache.js"

/** A results.jsonl line as the Collector writes it (prefix, then the result's own fields). */
const line = (fields: { shard?: string; cached?: boolean; result: Record<string, unknown> }): string =>
  `{"shard":${JSON.stringify(fields.shard ?? "label-00001")},"attempt":1,${fields.cached === true ? `"cached":true,` : ""}` +
  JSON.stringify(fields.result).slice(1)

/** The head of `text` read from the middle of a buffer, as a scan hands lines over. */
const head = (text: string) => {
  const bytes = Buffer.from(`garbage before\n${text}\nand after {"shard":"x","attempt":1}`)
  const start = bytes.indexOf("\n") + 1
  return resultHead(bytes, start, start + Buffer.byteLength(text))
}

const succeeded = (customId: string, text: string, usage: unknown) => ({
  _tag: "Succeeded",
  customId,
  text,
  finishReason: "stop",
  usage,
  raw: { body: { usage: { prompt_tokens: 1, completion_tokens: 2 } } }
})

describe("resultHead", () => {
  it("reads shard, custom_id and usage without parsing the line", () => {
    expect(head(line({ result: succeeded("label-a-1", '{"x":1}', { inputTokens: 12, outputTokens: 3, cachedInputTokens: 0 }) }))).toEqual({
      shard: "label-00001",
      cached: false,
      succeeded: true,
      customId: "label-a-1",
      usage: { input: 12, output: 3 }
    })
  })

  it("is not fooled by an answer whose text holds the usage field", () => {
    const text = `,"usage":{"inputTokens":999,"outputTokens":999,"cachedInputTokens":0} ü`
    expect(head(line({ result: succeeded("label-b-2", text, { inputTokens: 5, outputTokens: 6, cachedInputTokens: 1 }) }))?.usage).toEqual({ input: 5, output: 6 })
    expect(head(line({ result: succeeded("label-b-2", text, null) }))?.usage).toBeNull()
  })

  it("reads failed and cached lines, and ids with escapes", () => {
    const failed = line({ cached: true, result: { _tag: "Failed", customId: 'we"ird\\id', failure: "retryable", code: "server_error", message: "x", raw: null } })
    expect(head(failed)).toEqual({ shard: "label-00001", cached: true, succeeded: false, customId: 'we"ird\\id', usage: null })
    expect(head(line({ shard: "s-" + "é".repeat(400), result: succeeded("label-c", "t", { inputTokens: 1, outputTokens: 2, cachedInputTokens: 0 }) }))?.shard).toBe("s-" + "é".repeat(400))
  })

  it("refuses a line not written by the Collector", () => {
    expect(head(`{"attempt":1,"shard":"a"}`)).toBeUndefined()
    expect(head("not json")).toBeUndefined()
  })
})

describe("writing a result's raw answer as received", () => {
  // A provider line as it may come: spaced, with escapes JSON.stringify would not write.
  const received = `{ "custom_id": "a", "response": {"status_code": 200, "body": {"text": "\\u00e9\\/ü", "n": 1.50}}}`
  const raw = JSON.parse(received) as unknown
  const answer: Succeeded = { _tag: "Succeeded", customId: "a", text: "é", finishReason: "stop", usage: null, raw, rawText: received }
  const failure: Failed = { _tag: "Failed", customId: "a", failure: "retryable", code: "server_error", message: "m", status: 500, raw, rawText: received }
  const stored = (r: Succeeded | Failed) => {
    const { rawText: _, customId: __, _tag: ___, ...rest } = r
    return r._tag === "Succeeded" ? rest : { _tag: r._tag, customId: r.customId, ...rest }
  }

  it("splices the received text in: the same fields and meaning as serialising raw, no rawText field", () => {
    const cached = encodeAnswer(answer)
    expect(cached).toContain(`"raw":${received}}`)
    expect(cached.startsWith(`{"text":`)).toBe(true)
    expect(JSON.parse(cached)).toEqual(stored(answer))
    expect(Object.keys(JSON.parse(cached) as object)).toEqual(["text", "finishReason", "usage", "raw"])
    const failed = encodeFailed(failure)
    expect(failed).toContain(`"raw":${received}}`)
    expect(JSON.parse(failed)).toEqual(stored(failure))
    expect(Object.keys(JSON.parse(failed) as object)).toEqual(["_tag", "customId", "failure", "code", "message", "status", "raw"])
    // The head readers still find their fields before the answer.
    expect(head(line({ result: JSON.parse(`{"_tag":"Succeeded","customId":"a",${cached.slice(1)}`) as Record<string, unknown> }))?.customId).toBe("a")
  })

  it("serialises raw when there is no received text, or when the text holds a carriage return", () => {
    const { rawText: _, ...built } = answer
    expect(encodeAnswer(built)).toBe(JSON.stringify(stored(answer)))
    const withCr = `{"custom_id":"a",\r"response":null}`
    const crLine = encodeFailed({ ...failure, raw: JSON.parse(withCr), rawText: withCr })
    expect(crLine).not.toContain("\r")
    expect(JSON.parse(crLine)).toEqual({ ...stored(failure), raw: { custom_id: "a", response: null } })
    // No raw at all (undefined): no member, as JSON.stringify leaves it out.
    expect(JSON.parse(encodeFailed({ ...failure, raw: undefined, rawText: undefined }))).not.toHaveProperty("raw")
  })
})

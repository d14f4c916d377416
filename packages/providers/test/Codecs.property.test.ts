/**
 * Property tests of every provider's wire codec: what a provider (or a gateway, or a proxy in
 * between) answers is untrusted. For any result line — any bytes, any JSON, or a line shaped
 * like the real thing with any values in it — the decoder gives a classified outcome
 * (succeeded, or failed with a failure class) carrying the custom_id written in the line, or
 * calls the line garbage; it never throws. For any batch object, the status is normalised
 * (or `unknown`) with the raw value kept, and what comes out can be journaled: it survives a
 * JSON round trip.
 */
import { BatchResult } from "@sluice/core"
import { Either, Schema } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { anyString, check, prototypeKeys } from "../../../test/support/properties.js"
import * as Anthropic from "../src/anthropic/internal/codec.js"
import { BatchInfo, BatchStatus } from "../src/BatchProvider.js"
import * as Gemini from "../src/gemini/internal/codec.js"
import * as OpenAi from "../src/openai/internal/codec.js"

// -----------------------------------------------------------------------------------------
// What every decoder must give
// -----------------------------------------------------------------------------------------

const isBatchResult = Schema.is(BatchResult)
const isBatchInfo = Schema.is(BatchInfo)
const isBatchStatus = Schema.is(BatchStatus)
const decodeResultJson = Schema.decodeUnknownEither(BatchResult)
const decodeInfoJson = Schema.decodeUnknownEither(BatchInfo)

/** What the runner does with a result: writes it as JSON (results.jsonl, failures.jsonl) and reads it back. */
const survivesJson = (value: unknown, decode: (u: unknown) => Either.Either<unknown, unknown>): boolean => {
  const back = decode(JSON.parse(JSON.stringify(value)))
  return Either.isRight(back)
}

type Rec = Record<string, unknown>
const isRecord = (u: unknown): u is Rec => typeof u === "object" && u !== null && !Array.isArray(u)

/**
 * A decoded line: either garbage (`Left`: only when the line names no usable id) or a
 * classified result whose custom_id is the one the line names.
 */
const expectClassified = (
  parsed: Either.Either<BatchResult, string>,
  idOf: (line: unknown) => unknown,
  line: unknown
) => {
  const id = idOf(line)
  const usableId = typeof id === "string" && id !== ""
  if (Either.isLeft(parsed)) {
    expect(usableId, `a line naming ${JSON.stringify(id)} was called garbage: ${parsed.left}`).toBe(false)
    expect(typeof parsed.left).toBe("string")
    return
  }
  const result = parsed.right
  expect(usableId).toBe(true)
  expect(result.customId).toBe(id)
  expect(isBatchResult(result), `not a BatchResult: ${JSON.stringify({ ...result, raw: undefined })}`).toBe(true)
  expect(survivesJson(result, decodeResultJson)).toBe(true)
  // Token counts are summed per shard and per run, then journaled: each must be a count.
  if (result._tag === "Succeeded" && result.usage !== null) {
    for (const n of Object.values(result.usage)) expect(n >= 0 && n <= Number.MAX_SAFE_INTEGER, `usage ${n}`).toBe(true)
  }
}

/** Parses text as the downloader sees it; undefined when it is not JSON. */
const parsedJson = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

// -----------------------------------------------------------------------------------------
// Arbitraries: values from the wire
// -----------------------------------------------------------------------------------------

/** Any number `JSON.parse` can give: integers, fractions, -0, and ±Infinity (`1e999`). */
const wireNumber = fc.oneof(
  fc.integer({ min: -1000, max: 100_000 }),
  fc.double({ noNaN: true }),
  fc.constantFrom(Infinity, -Infinity, -0, 1e308)
)

const json = fc.jsonValue({ maxDepth: 3 })

/** A value of a field: usually the expected type, sometimes anything. */
const field = <A>(expected: fc.Arbitrary<A>) => fc.oneof({ weight: 4, arbitrary: expected }, { weight: 1, arbitrary: json })

const text = fc.oneof(fc.string({ maxLength: 30 }), fc.constantFrom(...prototypeKeys))

/** custom_ids as sluice writes them, and anything else a line may carry there. */
const customId = fc.oneof(
  { weight: 4, arbitrary: fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/) },
  { weight: 1, arbitrary: anyString },
  { weight: 1, arbitrary: json }
)

const optional = <T extends Rec>(shape: { [K in keyof T]: fc.Arbitrary<T[K]> }) =>
  fc.record(shape, { requiredKeys: [] }) as fc.Arbitrary<Partial<T>>

// --- OpenAI result lines ---

const openAiErrorCode = fc.oneof(
  text,
  fc.constantFrom("batch_expired", "batch_cancelled", "invalid_request", "model_not_found", "duplicate_custom_id", "rate_limit_exceeded")
)

const openAiBody = fc.oneof(
  // chat completion
  optional({
    choices: field(fc.array(optional({
      message: field(optional({ content: field(fc.string()), refusal: field(text) })),
      finish_reason: field(fc.constantFrom("stop", "length", "content_filter", "tool_calls", "constructor"))
    }), { maxLength: 2 })),
    usage: field(optional({
      prompt_tokens: field(wireNumber),
      completion_tokens: field(wireNumber),
      prompt_tokens_details: field(optional({ cached_tokens: field(wireNumber) }))
    }))
  }),
  // embeddings
  optional({
    data: field(fc.array(optional({ embedding: field(fc.array(wireNumber, { maxLength: 3 })) }), { maxLength: 2 })),
    usage: field(optional({ prompt_tokens: field(wireNumber) }))
  }),
  // an error body
  optional({ error: field(optional({ code: field(openAiErrorCode), type: field(text), message: field(text) })) })
)

const openAiLine = optional({
  id: field(fc.string({ maxLength: 10 })),
  custom_id: customId,
  response: field(optional({
    status_code: field(fc.oneof(fc.integer({ min: 100, max: 599 }), wireNumber)),
    request_id: field(fc.string({ maxLength: 10 })),
    body: field(openAiBody)
  })),
  error: field(optional({ code: field(openAiErrorCode), message: field(text) }))
})

// --- Anthropic result lines ---

const anthropicErrorType = fc.oneof(
  text,
  fc.constantFrom("invalid_request_error", "overloaded_error", "api_error", "billing_error", "rate_limit_error")
)

const anthropicMessage = optional({
  content: field(fc.array(
    fc.oneof(
      optional({ type: fc.constant("text"), text: field(fc.string()) }),
      optional({ type: fc.constant("tool_use"), name: text, input: json }),
      optional({ type: field(text) })
    ),
    { maxLength: 3 }
  )),
  stop_reason: field(fc.constantFrom("end_turn", "max_tokens", "tool_use", "refusal", "constructor")),
  stop_details: field(optional({ explanation: field(text) })),
  usage: field(optional({
    input_tokens: field(wireNumber),
    output_tokens: field(wireNumber),
    cache_read_input_tokens: field(wireNumber),
    cache_creation_input_tokens: field(wireNumber)
  }))
})

const anthropicError = optional({ type: field(anthropicErrorType), message: field(text) })

const anthropicLine = optional({
  custom_id: customId,
  result: field(optional({
    type: field(fc.oneof(fc.constantFrom("succeeded", "errored", "canceled", "expired"), text)),
    message: field(anthropicMessage),
    error: field(fc.oneof(
      optional({ type: fc.constant("error"), error: field(anthropicError), request_id: field(fc.string()) }),
      anthropicError
    ))
  }))
})

// --- Gemini result lines (a responses file, and inline responses) ---

const geminiResponse = optional({
  candidates: field(fc.array(
    optional({
      content: field(optional({
        parts: field(fc.array(optional({ text: field(fc.string()), thought: field(fc.boolean()) }), { maxLength: 3 }))
      })),
      finishReason: field(fc.oneof(fc.constantFrom("STOP", "MAX_TOKENS", "SAFETY", "RECITATION", "constructor"), text))
    }),
    { maxLength: 2 }
  )),
  promptFeedback: field(optional({ blockReason: field(fc.constantFrom("SAFETY", "OTHER", "toString")) })),
  usageMetadata: field(optional({
    promptTokenCount: field(wireNumber),
    candidatesTokenCount: field(wireNumber),
    thoughtsTokenCount: field(wireNumber),
    cachedContentTokenCount: field(wireNumber)
  }))
})

const geminiStatus = optional({
  code: field(fc.oneof(fc.integer({ min: -2, max: 20 }), fc.constantFrom(400, 429, 500, 503), wireNumber)),
  message: field(text),
  status: field(fc.oneof(fc.constantFrom("RESOURCE_EXHAUSTED", "INVALID_ARGUMENT", "CANCELLED", "constructor"), text))
})

const geminiLine = optional({
  key: customId,
  response: field(geminiResponse),
  error: field(geminiStatus),
  status: field(geminiStatus)
})

const geminiInline = optional({
  metadata: field(optional({ key: customId })),
  // Not in Gemini's shape: the key is the one in `metadata`, whatever else an entry carries.
  key: customId,
  response: field(geminiResponse),
  error: field(geminiStatus)
})

// -----------------------------------------------------------------------------------------
// Result lines
// -----------------------------------------------------------------------------------------

const families = [
  { name: "OpenAI", parse: OpenAi.parseResultLine, idOf: (u: unknown) => isRecord(u) ? u["custom_id"] : undefined, line: openAiLine },
  { name: "Anthropic", parse: Anthropic.parseResultLine, idOf: (u: unknown) => isRecord(u) ? u["custom_id"] : undefined, line: anthropicLine },
  { name: "Gemini", parse: Gemini.parseResultLine, idOf: (u: unknown) => isRecord(u) ? u["key"] : undefined, line: geminiLine }
] as const

describe.each(families)("$name result lines", ({ idOf, line, parse }) => {
  it("any text: classified with the line's custom_id, or garbage; never a crash", () => {
    check(
      fc.property(fc.oneof(anyString, json.map((j) => JSON.stringify(j))), (text) => {
        expectClassified(parse(text), idOf, parsedJson(text))
      }),
      300
    )
  })

  it("any bytes, as the downloader decodes them", () => {
    check(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const text = new TextDecoder().decode(bytes)
        expectClassified(parse(text), idOf, parsedJson(text))
      }),
      200
    )
  })

  it("lines shaped like the provider's, with any values in them", () => {
    check(
      fc.property(line, (value) => {
        const text = JSON.stringify(value)
        expectClassified(parse(text), idOf, JSON.parse(text))
      }),
      1000
    )
  })

  it("a line spaced and escaped any way: its result carries the text as received, which means its raw; trailing garbage is garbage", () => {
    check(
      fc.property(line, fc.constantFrom(" ", "\t", "  "), fc.boolean(), (value, space, ascii) => {
        // Whitespace between tokens (JSON.stringify escapes every newline inside a string) and
        // \u escapes for every non-ASCII character: the same JSON, other bytes.
        let text = JSON.stringify(value, null, 1).replace(/\n/g, space)
        if (ascii) text = text.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)
        const parsed = parse(text)
        expectClassified(parsed, idOf, JSON.parse(text))
        if (Either.isRight(parsed)) {
          expect(parsed.right.rawText).toBe(text)
          expect(JSON.parse(parsed.right.rawText!)).toEqual(parsed.right.raw)
        }
        for (const garbage of [`${text} x`, `${text}}`, `${text},{}`]) {
          const bad = parse(garbage)
          expect(Either.isLeft(bad) && bad.left.startsWith("not JSON")).toBe(true)
        }
      }),
      300
    )
  })

  it("a torn line (any prefix of a real one) is garbage or still names its own custom_id", () => {
    check(
      fc.property(line, fc.nat(), (value, cut) => {
        const full = JSON.stringify(value)
        const text = full.slice(0, cut % (full.length + 1))
        expectClassified(parse(text), idOf, parsedJson(text))
      }),
      300
    )
  })
})

// -----------------------------------------------------------------------------------------
// Real-time answers: the same codecs, the answer wrapped as the batch line would wrap it
// -----------------------------------------------------------------------------------------

const openAiResponsesBody = optional({
  object: field(fc.constant("response")),
  status: field(fc.constantFrom("completed", "incomplete", "failed", "constructor")),
  incomplete_details: field(optional({ reason: field(fc.constantFrom("max_output_tokens", "content_filter", "toString")) })),
  output: field(fc.array(
    optional({
      type: field(fc.constantFrom("message", "reasoning", "function_call")),
      content: field(fc.array(
        fc.oneof(
          optional({ type: fc.constant("output_text"), text: field(fc.string()) }),
          optional({ type: fc.constant("refusal"), refusal: field(text) })
        ),
        { maxLength: 2 }
      ))
    }),
    { maxLength: 3 }
  )),
  usage: field(optional({ input_tokens: field(wireNumber), output_tokens: field(wireNumber), input_tokens_details: field(optional({ cached_tokens: field(wireNumber) })) }))
})

const geminiEmbedding = optional({ embedding: field(optional({ values: field(fc.array(wireNumber, { maxLength: 3 })) })) })

const onlineFamilies = [
  { name: "OpenAI", result: OpenAi.onlineResult, body: fc.oneof(openAiBody, openAiResponsesBody, json) },
  { name: "Anthropic", result: Anthropic.onlineResult, body: fc.oneof(anthropicMessage, optional({ type: field(fc.constant("error")), error: field(anthropicError) }), json) },
  { name: "Gemini", result: Gemini.onlineResult, body: fc.oneof(geminiResponse, geminiEmbedding, optional({ error: field(geminiStatus) }), json) }
] as const

describe.each(onlineFamilies)("$name real-time answers", ({ body, result }) => {
  it("any status and body: a classified result carrying the request's custom_id, that can be journaled", () => {
    check(
      fc.property(
        fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/),
        fc.oneof(fc.constantFrom(200, 201, 400, 404, 413, 422), fc.integer({ min: 200, max: 499 })),
        body,
        (customId, status, value) => {
          const classified = result(customId, status, JSON.parse(JSON.stringify(value ?? null)))
          expect(classified.customId).toBe(customId)
          expect(isBatchResult(classified), `not a BatchResult: ${JSON.stringify({ ...classified, raw: undefined })}`).toBe(true)
          expect(survivesJson(classified, decodeResultJson)).toBe(true)
          // An answer the server refused is never a success.
          if (status >= 300) expect(classified._tag).toBe("Failed")
        }
      ),
      500
    )
  })
})

describe("Gemini inline responses", () => {
  it("any inline entry: classified with its metadata.key, or garbage", () => {
    check(
      fc.property(fc.oneof(geminiInline, json), (entry) => {
        const key = isRecord(entry) && isRecord(entry["metadata"]) ? entry["metadata"]["key"] : undefined
        expectClassified(Gemini.parseResultRecord(Gemini.inlineToLine(entry)), () => key, entry)
      }),
      500
    )
  })

  it("any Operation: its inline responses are read without a crash", () => {
    check(
      fc.property(
        optional({
          name: fc.string(),
          response: field(optional({ inlinedResponses: field(fc.oneof(
            fc.array(fc.oneof(geminiInline, json), { maxLength: 3 }),
            optional({ inlinedResponses: field(fc.array(fc.oneof(geminiInline, json), { maxLength: 3 })) })
          )) }))
        }),
        (operation) => {
          const wire = Gemini.decodeOperation(operation)
          if (Either.isLeft(wire)) return
          for (const entry of Gemini.inlineResponseLines(wire.right)) {
            const parsed = Gemini.parseResultRecord(entry)
            if (Either.isRight(parsed)) expect(isBatchResult(parsed.right)).toBe(true)
          }
        }
      ),
      300
    )
  })
})

// -----------------------------------------------------------------------------------------
// Statuses and batch objects
// -----------------------------------------------------------------------------------------

/** Spells a status as some API might: any case, words split by `_`, `-`, a space or nothing. */
const spelled = (words: ReadonlyArray<string>) =>
  fc.tuple(fc.constantFrom("_", "-", " ", ""), fc.array(fc.boolean(), { minLength: 40, maxLength: 40 })).map(([sep, upper]) =>
    words.join(sep).split("").map((c, i) => (upper[i % upper.length] ? c.toUpperCase() : c.toLowerCase())).join("")
  )

const openAiStatuses: ReadonlyArray<readonly [ReadonlyArray<string>, BatchStatus]> = [
  [["validating"], "validating"],
  [["in", "progress"], "in_progress"],
  [["finalizing"], "finalizing"],
  [["completed"], "completed"],
  [["failed"], "failed"],
  [["expired"], "expired"],
  [["cancelling"], "cancelling"],
  [["canceling"], "cancelling"],
  [["cancelled"], "cancelled"],
  [["canceled"], "cancelled"]
]

const geminiStates: ReadonlyArray<readonly [string, BatchStatus]> = [
  ["PENDING", "validating"],
  ["RUNNING", "in_progress"],
  ["SUCCEEDED", "completed"],
  ["FAILED", "failed"],
  ["CANCELLING", "cancelling"],
  ["CANCELLED", "cancelled"],
  ["EXPIRED", "expired"]
]

describe("status decoders", () => {
  it("OpenAI: any string is a normalised status or unknown", () => {
    check(
      fc.property(anyString, (raw) => {
        expect(isBatchStatus(OpenAi.normaliseStatus(raw))).toBe(true)
      }),
      500
    )
  })

  it("OpenAI: a known status in any case and with any word separator is recognised", () => {
    check(
      fc.property(
        fc.constantFrom(...openAiStatuses).chain(([words, status]) => spelled(words).map((raw) => [raw, status] as const)),
        ([raw, status]) => {
          expect(OpenAi.normaliseStatus(raw)).toBe(status)
        }
      ),
      300
    )
  })

  it("Gemini: any string is a normalised state or unknown; BATCH_STATE_* and JOB_STATE_* in any case", () => {
    check(
      fc.property(anyString, (raw) => {
        expect(isBatchStatus(Gemini.normaliseState(raw))).toBe(true)
      }),
      500
    )
    check(
      fc.property(fc.constantFrom(...geminiStates), fc.constantFrom("BATCH_STATE_", "JOB_STATE_", ""), fc.boolean(), ([state, status], prefix, lower) => {
        const raw = prefix + state
        expect(Gemini.normaliseState(lower ? raw.toLowerCase() : raw)).toBe(status)
      }),
      100
    )
  })
})

const timestamp = fc.oneof(
  wireNumber,
  fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
  fc.string({ maxLength: 12 })
)

const openAiBatch = optional({
  id: field(fc.string({ maxLength: 12 })),
  status: field(fc.oneof(anyString, fc.constantFrom("in_progress", "InProgress", "completed", "canceled"))),
  input_file_id: field(fc.string({ maxLength: 8 })),
  output_file_id: field(fc.string({ maxLength: 8 })),
  error_file_id: field(fc.string({ maxLength: 8 })),
  created_at: field(timestamp),
  request_counts: field(optional({ total: field(wireNumber), completed: field(wireNumber), failed: field(wireNumber) })),
  metadata: field(fc.dictionary(fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom(...prototypeKeys)), field(fc.string({ maxLength: 12 })), { maxKeys: 3 })),
  errors: field(optional({ data: field(fc.array(optional({ code: field(text), message: field(text), line: field(wireNumber) }), { maxLength: 2 })) })),
  error: json
})

const anthropicBatch = optional({
  id: field(fc.string({ maxLength: 12 })),
  processing_status: field(fc.oneof(anyString, fc.constantFrom("in_progress", "canceling", "ended"))),
  request_counts: field(optional({
    processing: field(wireNumber),
    succeeded: field(wireNumber),
    errored: field(wireNumber),
    canceled: field(wireNumber),
    expired: field(wireNumber)
  })),
  created_at: field(timestamp),
  ended_at: field(timestamp),
  cancel_initiated_at: field(timestamp),
  results_url: field(fc.webUrl())
})

const digits = (minLength: number, maxLength: number) => fc.string({ unit: fc.constantFrom(..."0123456789"), minLength, maxLength })

const geminiOperation = optional({
  name: field(fc.string({ maxLength: 12 })),
  done: field(fc.boolean()),
  metadata: field(optional({
    displayName: field(fc.oneof(fc.string({ maxLength: 30 }), fc.constant("sluice.run-1.shard-2.s1"))),
    model: field(fc.string({ maxLength: 10 })),
    state: field(fc.oneof(anyString, fc.constantFrom("BATCH_STATE_RUNNING", "JOB_STATE_SUCCEEDED"))),
    createTime: field(timestamp),
    batchStats: field(optional({
      // int64 counts arrive as strings: any digits, some longer than a double holds.
      requestCount: field(fc.oneof(wireNumber, fc.string({ maxLength: 25 }), digits(1, 20), digits(300, 400))),
      successfulRequestCount: field(fc.oneof(wireNumber, fc.string({ maxLength: 8 }))),
      failedRequestCount: field(fc.oneof(wireNumber, fc.string({ maxLength: 8 }))),
      pendingRequestCount: field(fc.oneof(wireNumber, fc.string({ maxLength: 8 })))
    })),
    inputConfig: field(optional({ fileName: field(fc.string({ maxLength: 10 })) })),
    output: json
  })),
  response: field(optional({ responsesFile: field(fc.string({ maxLength: 10 })), inlinedResponses: json })),
  error: field(optional({ code: field(wireNumber), message: field(text), status: field(text) }))
})

const batchFamilies = [
  {
    name: "OpenAI",
    decode: OpenAi.decodeBatchInfo,
    wire: openAiBatch,
    rawOf: (u: Rec) => u["status"] ?? ""
  },
  {
    name: "Anthropic",
    decode: Anthropic.decodeBatchInfo,
    wire: anthropicBatch,
    rawOf: (u: Rec) => u["processing_status"] ?? ""
  },
  {
    name: "Gemini",
    decode: Gemini.decodeBatchInfo,
    wire: geminiOperation,
    rawOf: (u: Rec) => (isRecord(u["metadata"]) ? u["metadata"]["state"] ?? "" : "")
  }
] as const

describe.each(batchFamilies)("$name batch objects", ({ decode, rawOf, wire }) => {
  it("any batch object: a BatchInfo with a normalised status and its raw status kept, that can be journaled; or a decode error", () => {
    check(
      fc.property(fc.oneof({ weight: 4, arbitrary: wire }, { weight: 1, arbitrary: json }), (value) => {
        const decoded = decode(value)
        if (Either.isLeft(decoded)) {
          expect(typeof decoded.left).toBe("string")
          return
        }
        const info = decoded.right
        expect(isBatchInfo(info)).toBe(true)
        expect(isBatchStatus(info.status)).toBe(true)
        if (isRecord(value) && !isRecord((value as Rec)["job"])) expect(info.rawStatus).toBe(rawOf(value))
        // Every number of it is journaled (StatusChanged, Terminal) and must read back.
        expect(survivesJson(info, decodeInfoJson), `does not survive JSON: ${JSON.stringify(info.counts)} ${info.createdAt}`).toBe(true)
      }),
      1000
    )
  })
})

/**
 * Unit tests of the emulator's deterministic answers (schema-conforming
 * values) and of its time-based lifecycle. No network.
 */
import { Ajv2020 } from "ajv/dist/2020.js"
import { JSONSchema, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { answerRequest, checkRequest } from "../src/internal/answers.js"
import { answerParams } from "../src/internal/anthropicAnswers.js"
import { seededRandom } from "../src/internal/hash.js"
import { timeline } from "../src/internal/lifecycle.js"
import { valueForSchema } from "../src/internal/schemaValue.js"
import type { BatchRecord } from "../src/internal/store.js"
import { Tokens } from "@sluice/core"

const ajv = new Ajv2020({ strict: false, validateFormats: false })

const SCHEMAS: Record<string, object> = {
  scalars: {
    type: "object",
    properties: {
      s: { type: "string", minLength: 12, maxLength: 14 },
      tiny: { type: "string", maxLength: 2 },
      i: { type: "integer", minimum: -3, maximum: 3 },
      ex: { type: "integer", exclusiveMinimum: 0, exclusiveMaximum: 2 },
      f: { type: "number", exclusiveMinimum: 0.5, exclusiveMaximum: 0.51 },
      m: { type: "integer", minimum: 10, maximum: 40, multipleOf: 7 },
      b: { type: "boolean" },
      n: { type: "null" },
      c: { const: "fixed" },
      e: { enum: [1, "two", null] },
      nullable: { type: ["string", "null"] }
    },
    required: ["s", "tiny", "i", "ex", "f", "m", "b", "n", "c", "e", "nullable"],
    additionalProperties: false
  },
  arrays: {
    type: "object",
    properties: {
      tags: { type: "array", items: { enum: ["a", "b", "c"] }, minItems: 2, maxItems: 3, uniqueItems: true },
      none: { type: "array", items: { type: "number" }, maxItems: 0 },
      tuple: { type: "array", prefixItems: [{ type: "string" }, { type: "integer" }], items: false },
      many: { type: "array", items: { type: "integer" }, minItems: 5 }
    },
    required: ["tags", "none", "tuple", "many"]
  },
  refsAndUnions: {
    $defs: {
      Cat: { type: "object", properties: { kind: { const: "cat" }, lives: { type: "integer", minimum: 1, maximum: 9 } }, required: ["kind", "lives"], additionalProperties: false },
      Dog: { type: "object", properties: { kind: { const: "dog" }, good: { type: "boolean" } }, required: ["kind", "good"], additionalProperties: false }
    },
    type: "object",
    properties: {
      pet: { oneOf: [{ $ref: "#/$defs/Cat" }, { $ref: "#/$defs/Dog" }] },
      pets: { type: "array", items: { anyOf: [{ $ref: "#/$defs/Cat" }, { $ref: "#/$defs/Dog" }] } },
      mixed: { allOf: [{ type: "object", properties: { a: { type: "string" } }, required: ["a"] }, { properties: { b: { type: "integer" } }, required: ["b"] }] }
    },
    required: ["pet", "pets", "mixed"],
    additionalProperties: false
  },
  draft07Definitions: {
    definitions: { Point: { type: "object", properties: { x: { type: "number" }, y: { type: "number" } }, required: ["x", "y"] } },
    type: "array",
    items: { $ref: "#/definitions/Point" },
    minItems: 1
  },
  recursiveTree: {
    $defs: {
      Node: {
        type: "object",
        properties: { label: { type: "string" }, children: { type: "array", items: { $ref: "#/$defs/Node" } } },
        required: ["label", "children"],
        additionalProperties: false
      }
    },
    $ref: "#/$defs/Node"
  },
  record: { type: "object", additionalProperties: { type: "integer", minimum: 0 }, minProperties: 1 },
  formats: {
    type: "object",
    properties: {
      when: { type: "string", format: "date-time" },
      day: { type: "string", format: "date" },
      mail: { type: "string", format: "email" },
      id: { type: "string", format: "uuid" },
      link: { type: "string", format: "uri" }
    },
    required: ["when", "day", "mail", "id", "link"]
  }
}

describe("valueForSchema", () => {
  for (const [name, schema] of Object.entries(SCHEMAS)) {
    it(`conforms to the '${name}' schema for many seeds`, () => {
      const validate = ajv.compile(schema)
      for (let seed = 0; seed < 200; seed++) {
        const value = valueForSchema(schema, seededRandom(seed))
        expect(validate(value), `seed ${seed}: ${JSON.stringify(value)} ${JSON.stringify(validate.errors)}`).toBe(true)
      }
    })
  }

  it("produces simple, recognisable formats", () => {
    const value = valueForSchema(SCHEMAS["formats"], seededRandom(7)) as Record<string, string>
    expect(value["when"]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)
    expect(value["day"]).toMatch(/^\d{4}-\d\d-\d\d$/)
    expect(value["mail"]).toMatch(/^[a-z]+@example\.com$/)
    expect(value["id"]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-a[0-9a-f]{3}-[0-9a-f]{12}$/)
    expect(value["link"]).toMatch(/^https:\/\/example\.com\//)
  })

  it("honours draft-4 boolean exclusive bounds", () => {
    for (let seed = 0; seed < 50; seed++) {
      const v = valueForSchema({ type: "integer", minimum: 0, maximum: 2, exclusiveMinimum: true, exclusiveMaximum: true }, seededRandom(seed))
      expect(v).toBe(1)
    }
  })

  it("conforms to JSON Schemas generated from Effect Schemas, and decodes with them", () => {
    const Label = Schema.Struct({
      sentiment: Schema.Literal("positive", "negative", "neutral"),
      topics: Schema.Array(Schema.String),
      score: Schema.Number.pipe(Schema.between(0, 1)),
      stars: Schema.Int.pipe(Schema.between(1, 5)),
      summary: Schema.optional(Schema.String.pipe(Schema.maxLength(30))),
      owner: Schema.NullOr(Schema.Struct({ name: Schema.NonEmptyString }))
    })
    const jsonSchema = JSONSchema.make(Label)
    const decode = Schema.decodeUnknownSync(Label)
    const sentiments = new Set<string>()
    for (let seed = 0; seed < 100; seed++) {
      const value = valueForSchema(jsonSchema, seededRandom(seed))
      const decoded = decode(value)
      sentiments.add(decoded.sentiment)
    }
    expect(sentiments).toEqual(new Set(["positive", "negative", "neutral"]))
  })

  it("is deterministic for a seed", () => {
    for (const schema of Object.values(SCHEMAS)) {
      expect(valueForSchema(schema, seededRandom(42))).toEqual(valueForSchema(schema, seededRandom(42)))
    }
  })
})

describe("answerRequest", () => {
  const ctx = { seed: "s", created: 1, id: "abc", invalidJson: false }
  const schema = { type: "object", properties: { sentiment: { enum: ["positive", "negative", "neutral"] } }, required: ["sentiment"], additionalProperties: false }
  const body = (text: string) => ({
    model: "m",
    messages: [{ role: "user", content: text }],
    response_format: { type: "json_schema", json_schema: { name: "L", schema } }
  })

  it("varies a sentiment enum across requests and repeats it for the same request", () => {
    const answers = Array.from({ length: 30 }, (_, i) => {
      const b = body(`review ${i}`)
      const first = answerRequest("/v1/chat/completions", b, JSON.stringify(b), ctx)
      const again = answerRequest("/v1/chat/completions", b, JSON.stringify(b), ctx)
      const content = (first.body["choices"] as any)[0].message.content as string
      expect((again.body["choices"] as any)[0].message.content).toBe(content)
      return JSON.parse(content).sentiment as string
    })
    expect(new Set(answers)).toEqual(new Set(["positive", "negative", "neutral"]))
  })

  it("counts prompt tokens like the chat format: framing per message, text parts included", () => {
    // An unknown model: about four characters a token ("system"/"user" roles count too).
    const b = { model: "m", messages: [{ role: "system", content: "12345678" }, { role: "user", content: [{ type: "text", text: "abcde" }] }] }
    const answer = answerRequest("/v1/chat/completions", b, JSON.stringify(b), ctx)
    expect(answer.inputTokens).toBe(3 + (3 + 2 + 2) + (3 + 1 + 2))
    const content = (answer.body["choices"] as any)[0].message.content as string
    expect(answer.outputTokens).toBe(Math.ceil(content.length / 4))
    expect(content).toContain("abcde")
  })

  it("counts an OpenAI model's prompt with its real tokenizer, as `sluice estimate` does", () => {
    const messages = [{ role: "user", content: "The quick brown fox jumps over the lazy dog." }]
    const b = { model: "gpt-4o-mini", messages }
    const answer = answerRequest("/v1/chat/completions", b, JSON.stringify(b), ctx)
    expect(answer.inputTokens).toBe(Tokens.chat("gpt-4o-mini", messages).tokens)
    // 10 tokens of text in o200k_base, plus the framing: fewer than the character estimate.
    expect(answer.inputTokens).toBe(3 + 3 + 1 + 10)
  })

  it("counts a json_schema response format as input, as `sluice estimate` does; an Anthropic forced tool once", () => {
    const messages = [{ role: "user", content: "The quick brown fox jumps over the lazy dog." }]
    const json_schema = { name: "label", strict: true, schema: SCHEMAS["scalars"]! }
    const plain = { model: "gpt-4o-mini", messages }
    const structured = { ...plain, response_format: { type: "json_schema", json_schema } }
    const a = answerRequest("/v1/chat/completions", plain, JSON.stringify(plain), ctx)
    const b = answerRequest("/v1/chat/completions", structured, JSON.stringify(structured), ctx)
    expect(b.inputTokens - a.inputTokens).toBe(Tokens.schema("gpt-4o-mini", json_schema).tokens)
    expect(Tokens.schema("gpt-4o-mini", json_schema).tokens).toBeGreaterThan(50)
    // Anthropic's tools are counted as tools, not again as the stand-in response format.
    const tools = [{ name: "label", input_schema: SCHEMAS["scalars"]! }]
    const params = { model: "claude-haiku-4-5", max_tokens: 100, messages, tools, tool_choice: { type: "tool", name: "label" } }
    const noTools = { model: "claude-haiku-4-5", max_tokens: 100, messages }
    const actx = { seed: "s", id: "msg", invalidJson: false }
    expect(answerParams(params, actx).inputTokens - answerParams(noTools, actx).inputTokens).toBe(
      Tokens.text("claude-haiku-4-5", JSON.stringify(tools)).tokens
    )
  })

  it("checks request bodies like the real endpoints", () => {
    expect(checkRequest("/v1/chat/completions", { messages: [] })?.param).toBe("model")
    expect(checkRequest("/v1/chat/completions", { model: "m", messages: [] })?.param).toBe("messages")
    expect(checkRequest("/v1/chat/completions", { model: "m", messages: [{ content: "x" }] })?.param).toBe("messages[0]")
    expect(checkRequest("/v1/chat/completions", { model: "m", messages: [{ role: "user", content: "x" }], response_format: { type: "json_schema" } })?.param).toBe(
      "response_format.json_schema.name"
    )
    expect(checkRequest("/v1/embeddings", { model: "m", input: [] })?.param).toBe("input")
    expect(checkRequest("/v1/embeddings", { model: "m", input: ["a", [1, 2]] })?.param).toBe("input")
    expect(checkRequest("/v1/embeddings", { model: "m", input: [[1, 2], [3]] })).toBeUndefined()
  })
})

describe("lifecycle timeline", () => {
  const record = (overrides: Partial<BatchRecord> = {}): BatchRecord => ({
    id: "batch_x",
    seq: 1,
    endpoint: "/v1/chat/completions",
    input_file_id: "file-x",
    completion_window: "24h",
    metadata: null,
    createdMs: 0,
    validatingMs: 100,
    finalizingMs: 100,
    cancellingMs: 50,
    expiresAtMs: 86_400_000,
    rps: 10,
    errorRate: 0,
    invalidJsonRate: 0,
    cancelRequestedMs: null,
    forcedExpireMs: null,
    final: null,
    ...overrides
  })
  const input = { valid: true, total: 10 }

  it("walks validating -> in_progress -> finalizing -> completed", () => {
    const r = record()
    expect(timeline(r, undefined, 99).status).toBe("validating")
    expect(timeline(r, input, 100)).toMatchObject({ status: "in_progress", processed: 0, inProgressAtMs: 100 })
    expect(timeline(r, input, 600)).toMatchObject({ status: "in_progress", processed: 5 })
    expect(timeline(r, input, 1100)).toMatchObject({ status: "finalizing", processed: 10, finalizingAtMs: 1100 })
    expect(timeline(r, input, 1200)).toMatchObject({ status: "completed", completedAtMs: 1200 })
  })

  it("fails an invalid input at the end of validation", () => {
    expect(timeline(record(), { valid: false, total: 3 }, 100)).toMatchObject({ status: "failed", failedAtMs: 100 })
  })

  it("stops processing at a cancel: cancelling, then cancelled after cancellingMs", () => {
    const r = record({ cancelRequestedMs: 400 })
    expect(timeline(r, input, 420)).toMatchObject({ status: "cancelling", processed: 3, cancellingAtMs: 400, cancelledAtMs: null })
    expect(timeline(r, input, 450)).toMatchObject({ status: "cancelled", processed: 3, cancelledAtMs: 450 })
    expect(timeline(record({ cancelRequestedMs: 50 }), input, 200)).toMatchObject({ status: "cancelled", processed: 0 })
  })

  it("expires unfinished work at the window, but not a batch already finalizing", () => {
    expect(timeline(record({ expiresAtMs: 700 }), input, 699)).toMatchObject({ status: "in_progress" })
    expect(timeline(record({ expiresAtMs: 700 }), input, 5000)).toMatchObject({ status: "expired", processed: 6, expiredAtMs: 700 })
    expect(timeline(record({ forcedExpireMs: 300 }), input, 300)).toMatchObject({ status: "expired", processed: 2 })
    expect(timeline(record({ expiresAtMs: 1150 }), input, 5000)).toMatchObject({ status: "completed" })
    expect(timeline(record({ rps: null }), input, 100)).toMatchObject({ status: "finalizing", processed: 10 })
  })
})

import { Ajv } from "ajv"
import { Either, Schema } from "effect"
import { describe, expect, it } from "vitest"
import * as StructuredOutput from "../src/StructuredOutput.js"

/** Keywords OpenAI strict mode accepts (2025). */
const ALLOWED = new Set([
  "type", "properties", "required", "additionalProperties", "items", "anyOf", "enum", "const",
  "description", "$ref", "$defs", "pattern", "format", "minimum", "maximum", "exclusiveMinimum",
  "exclusiveMaximum", "multipleOf", "minItems", "maxItems"
])

/** An explicit checker of OpenAI strict-mode rules; returns the problems found. */
const strictModeProblems = (schema: Record<string, unknown>): Array<string> => {
  const problems: Array<string> = []
  if (schema.type !== "object") problems.push("root is not type object")
  if ("$ref" in schema) problems.push("root $ref")
  if ("anyOf" in schema) problems.push("root anyOf")
  if ("$schema" in schema) problems.push("$schema present")
  const visit = (node: unknown, path: string): void => {
    if (typeof node !== "object" || node === null || Array.isArray(node)) {
      problems.push(`${path}: not a schema object`)
      return
    }
    const n = node as Record<string, unknown>
    for (const k of Object.keys(n)) if (!ALLOWED.has(k)) problems.push(`${path}: keyword ${k}`)
    if (!("type" in n) && !("anyOf" in n) && !("$ref" in n) && !("enum" in n)) problems.push(`${path}: no type`)
    if (n.type === "object") {
      if (n.additionalProperties !== false) problems.push(`${path}: additionalProperties is not false`)
      const keys = Object.keys((n.properties ?? {}) as object).sort()
      const required = [...((n.required ?? []) as Array<string>)].sort()
      if (JSON.stringify(keys) !== JSON.stringify(required)) problems.push(`${path}: required != properties`)
      for (const [k, v] of Object.entries((n.properties ?? {}) as object)) visit(v, `${path}.${k}`)
    }
    if (n.type === "array") visit(n.items, `${path}[]`)
    if (Array.isArray(n.anyOf)) n.anyOf.forEach((s, i) => visit(s, `${path}|${i}`))
    if (typeof n.$ref === "string" && !n.$ref.startsWith("#/$defs/")) problems.push(`${path}: ref ${n.$ref}`)
  }
  visit(schema, "$")
  for (const [k, v] of Object.entries((schema.$defs ?? {}) as object)) visit(v, `$defs.${k}`)
  return problems
}

class Author extends Schema.Class<Author>("Author")({
  name: Schema.String,
  age: Schema.Int
}, { description: "who wrote it" }) {}

const Label = Schema.Struct({
  sentiment: Schema.Literal("positive", "negative", "neutral"),
  topics: Schema.Array(Schema.String),
  rationale: Schema.NullOr(Schema.String),
  scores: Schema.Struct({
    confidence: Schema.Number.pipe(Schema.between(0, 1)),
    stars: Schema.Int
  }),
  author: Author,
  title: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(80))
})

const valid = {
  sentiment: "positive",
  topics: ["price", "delivery"],
  rationale: null,
  scores: { confidence: 0.9, stars: 4 },
  author: { name: "Ann", age: 31 },
  title: "Great"
}

const ajv = new Ajv({ strict: false })

describe("jsonSchema", () => {
  const schema = StructuredOutput.jsonSchema(Label)

  it("satisfies the strict-mode rules", () => {
    expect(strictModeProblems(schema)).toEqual([])
  })

  it("keeps the constraints strict mode supports and drops the others", () => {
    const props = schema.properties as Record<string, Record<string, unknown>>
    const scores = props.scores!.properties as Record<string, Record<string, unknown>>
    expect(scores.confidence).toMatchObject({ type: "number", minimum: 0, maximum: 1 })
    expect(scores.stars).toMatchObject({ type: "integer" })
    expect(props.title).toEqual(expect.not.objectContaining({ minLength: expect.anything() }))
    expect(props.author).toMatchObject({ type: "object", description: "who wrote it" })
    expect(props.sentiment).toMatchObject({ enum: ["positive", "negative", "neutral"] })
  })

  it("accepts a conforming value and rejects a wrong one (ajv)", () => {
    const validate = ajv.compile(schema)
    expect(validate(valid)).toBe(true)
    expect(validate({ ...valid, sentiment: "angry" })).toBe(false)
    expect(validate({ ...valid, extra: 1 })).toBe(false)
    const { rationale: _, ...missing } = valid
    expect(validate(missing)).toBe(false)
    expect(validate({ ...valid, scores: { confidence: 2, stars: 4 } })).toBe(false)
    expect(validate({ ...valid, author: { name: "Ann", age: 1.5 } })).toBe(false)
  })

  it("inlines a Schema.Class root instead of a root $ref", () => {
    const s = StructuredOutput.jsonSchema(Author)
    expect(strictModeProblems(s)).toEqual([])
    expect(s).toMatchObject({ type: "object", required: ["name", "age"] })
  })

  it("keeps recursive schemas in root $defs", () => {
    interface Node {
      readonly name: string
      readonly children: ReadonlyArray<Node>
    }
    const Node = Schema.Struct({
      name: Schema.String,
      children: Schema.Array(Schema.suspend((): Schema.Schema<Node> => Node))
    }).annotations({ identifier: "Node" })
    const s = StructuredOutput.jsonSchema(Node)
    expect(strictModeProblems(s)).toEqual([])
    expect(Object.keys(s.$defs as object)).toEqual(["Node"])
    const validate = ajv.compile(s)
    expect(validate({ name: "a", children: [{ name: "b", children: [] }] })).toBe(true)
    expect(validate({ name: "a", children: [{ name: "b" }] })).toBe(false)
  })

  it("wraps a non-object root in { value }", () => {
    const { jsonSchema, wrapped } = StructuredOutput.compile(Schema.Array(Schema.String))
    expect(wrapped).toBe(true)
    expect(strictModeProblems(jsonSchema)).toEqual([])
    expect(ajv.compile(jsonSchema)({ value: ["a"] })).toBe(true)
    // A union of objects has no object root either.
    const union = StructuredOutput.compile(
      Schema.Union(Schema.Struct({ a: Schema.String }), Schema.Struct({ b: Schema.Number }))
    )
    expect(union.wrapped).toBe(true)
    expect(strictModeProblems(union.jsonSchema)).toEqual([])
    expect(StructuredOutput.compile(Label).wrapped).toBe(false)
  })

  it("rejects Schema.optional with a message that says what to use", () => {
    const S = Schema.Struct({ a: Schema.String, nested: Schema.Struct({ maybe: Schema.optional(Schema.String) }) })
    expect(() => StructuredOutput.jsonSchema(S)).toThrow(/"nested\.maybe" is optional.*Schema\.NullOr/)
  })

  it("rejects records, tuples and untyped values", () => {
    expect(() => StructuredOutput.jsonSchema(Schema.Struct({ m: Schema.Record({ key: Schema.String, value: Schema.Number }) })))
      .toThrow(/"m" is a map/)
    expect(() => StructuredOutput.jsonSchema(Schema.Struct({ t: Schema.Tuple(Schema.String, Schema.Number) })))
      .toThrow(/"t" is a tuple/)
    expect(() => StructuredOutput.jsonSchema(Schema.Struct({ u: Schema.Unknown }))).toThrow(/"u" has no JSON type/)
  })

  it("turns NonEmptyArray into items + minItems", () => {
    const s = StructuredOutput.jsonSchema(Schema.Struct({ xs: Schema.NonEmptyArray(Schema.String) }))
    expect((s.properties as Record<string, unknown>).xs).toEqual({ type: "array", minItems: 1, items: { type: "string" } })
  })
})

describe("toOutputFormat", () => {
  it("sanitizes the name", () => {
    const { format, wrapped } = StructuredOutput.toOutputFormat("my label/v2 ü", Label)
    expect(format.name).toMatch(/^[a-zA-Z0-9_-]{1,64}$/)
    expect(format.name).toBe("my_label_v2_")
    expect(wrapped).toBe(false)
    expect(StructuredOutput.formatName("x".repeat(100))).toHaveLength(64)
    expect(StructuredOutput.formatName("!!!")).toBe("_")
    expect(StructuredOutput.formatName("")).toBe("output")
  })
})

describe("decoder", () => {
  const decode = StructuredOutput.decoder(Label, { wrapped: false })

  it("decodes a valid answer into the typed value", () => {
    const result = decode(JSON.stringify(valid))
    expect(Either.isRight(result)).toBe(true)
    const value = Either.getOrThrow(result)
    expect(value.author).toBeInstanceOf(Author)
    expect(value.author.age).toBe(31)
  })

  it("reports a schema violation naming the field", () => {
    const result = decode(JSON.stringify({ ...valid, sentiment: "angry" }))
    expect(Either.isLeft(result)).toBe(true)
    expect(Either.getLeft(result).pipe((o) => o._tag === "Some" && o.value)).toMatch(/sentiment/)
    const nested = decode(JSON.stringify({ ...valid, scores: { confidence: 3, stars: 1 } }))
    expect(Either.isLeft(nested) && nested.left).toMatch(/confidence/)
  })

  it("reports garbage without throwing", () => {
    const result = decode("Sure! Here is the JSON: {")
    expect(Either.isLeft(result) && result.left).toMatch(/^response is not valid JSON: /)
    expect(Either.isLeft(decode(""))).toBe(true)
    expect(Either.isLeft(decode("null"))).toBe(true)
  })

  it("unwraps a wrapped answer", () => {
    const so = StructuredOutput.make("tags", Schema.Array(Schema.String))
    expect(so.wrapped).toBe(true)
    expect(so.decode(JSON.stringify({ value: ["a", "b"] }))).toEqual(Either.right(["a", "b"]))
    expect(Either.isLeft(so.decode(JSON.stringify(["a"])))).toBe(true)
  })

  it("never throws, even when a transformation does", () => {
    const Boom = Schema.transform(Schema.String, Schema.String, {
      strict: true,
      decode: () => {
        throw new Error("boom")
      },
      encode: (s) => s
    })
    const d = StructuredOutput.decoder(Schema.Struct({ s: Boom }), { wrapped: false })
    expect(Either.isLeft(d(JSON.stringify({ s: "x" })))).toBe(true)
  })
})

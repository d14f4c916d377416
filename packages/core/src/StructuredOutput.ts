/**
 * Structured output: turns an Effect Schema into a JSON Schema that OpenAI strict mode accepts
 * (the strictest of the providers, so one schema serves them all), and decodes the model's
 * answer back into the Schema's type.
 *
 * Conversion happens when a pipeline is defined, so a schema strict mode would reject fails
 * there with a message that says how to fix it — not hours later when a batch comes back.
 */
import { Either, JSONSchema, ParseResult, Schema } from "effect"
import type { OutputFormat } from "./BatchRequest.js"

/** The JSON Schema sent to the provider, and whether the value sits under a `value` key. */
export interface Compiled {
  readonly jsonSchema: Record<string, unknown>
  /**
   * True when the Schema's root is not an object: strict mode wants an object root, so the
   * value is sent as `{ "value": ... }` and the decoder must unwrap it.
   */
  readonly wrapped: boolean
}

/** Everything a batch stage needs for one output Schema. */
export interface StructuredOutput<A> {
  readonly format: OutputFormat
  readonly wrapped: boolean
  readonly decode: (text: string) => Either.Either<A, string>
}

/** Thrown at definition time when a Schema cannot be expressed in strict mode. */
export class UnsupportedSchemaError extends Error {
  override readonly name = "UnsupportedSchemaError"
}

/**
 * Keywords kept as they are. Everything else is dropped: OpenAI strict mode (2025) rejects
 * `minLength`/`maxLength`, `uniqueItems`, `contains`, `minProperties`/`maxProperties`,
 * `patternProperties`, `propertyNames`, `allOf`, `not`, `if`/`then`/`else`, `default`,
 * `examples`, and Effect's own `title`/`$comment`/`$id` are noise. Dropping a validation
 * keyword is safe: the Schema decoder still checks the answer, and a violation becomes a
 * `parse` failure of that row.
 */
const KEEP = new Set([
  "type",
  "enum",
  "const",
  "description",
  "$ref",
  "pattern",
  "minimum",
  "maximum",
  "exclusiveMinimum",
  "exclusiveMaximum",
  "multipleOf",
  "minItems",
  "maxItems"
])

/** The string formats strict mode accepts; others are dropped (the decoder still checks). */
const FORMATS = new Set(["date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"])

const isRecord = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" && u !== null && !Array.isArray(u)

const at = (path: string) => (path === "" ? "the root" : `"${path}"`)
const child = (path: string, key: string) => (path === "" ? key : `${path}.${key}`)

const strictNode = (node: unknown, path: string): Record<string, unknown> => {
  if (!isRecord(node)) {
    throw new UnsupportedSchemaError(`structured output: unexpected JSON Schema at ${at(path)}`)
  }
  const out: Record<string, unknown> = {}
  for (const key in node) {
    const value = node[key]
    if (KEEP.has(key)) {
      out[key] = value
    } else if (key === "format") {
      if (typeof value === "string" && FORMATS.has(value)) out[key] = value
    } else if (key === "anyOf") {
      out.anyOf = (value as ReadonlyArray<unknown>).map((s) => strictNode(s, path))
    } else if (key === "properties") {
      const props: Record<string, unknown> = {}
      for (const [name, s] of Object.entries(value as Record<string, unknown>)) {
        props[name] = strictNode(s, child(path, name))
      }
      out.properties = props
    } else if (key === "items") {
      out.items = arrayItems(node, path)
    }
  }
  if (node.type === "object") objectRules(node, out, path)
  if (node.type === "array" && out.items === undefined) {
    throw new UnsupportedSchemaError(
      `structured output: the array at ${at(path)} has no item schema; strict mode needs one`
    )
  }
  if (out.type === undefined && out.anyOf === undefined && out.$ref === undefined && out.enum === undefined) {
    throw new UnsupportedSchemaError(
      `structured output: ${at(path)} has no JSON type (Schema.Unknown, Schema.Any or Schema.Object?); ` +
        "strict mode needs a concrete type for every value"
    )
  }
  return out
}

/** Tuples (`items` as an array) are not in strict mode; a homogeneous one (NonEmptyArray) is. */
const arrayItems = (node: Record<string, unknown>, path: string): Record<string, unknown> => {
  const items = node.items
  if (!Array.isArray(items)) return strictNode(items, `${path}[]`)
  const rest = node.additionalItems
  const same = JSON.stringify(rest)
  if (isRecord(rest) && items.every((i) => JSON.stringify(i) === same)) return strictNode(rest, `${path}[]`)
  throw new UnsupportedSchemaError(
    `structured output: ${at(path)} is a tuple, which strict mode does not support; ` +
      "use a Schema.Struct with named fields instead"
  )
}

const objectRules = (node: Record<string, unknown>, out: Record<string, unknown>, path: string): void => {
  const extra = node.additionalProperties
  const props = node.properties
  if ((extra !== undefined && extra !== false) || node.patternProperties !== undefined || !isRecord(props)) {
    throw new UnsupportedSchemaError(
      `structured output: ${at(path)} is a map with arbitrary keys (Schema.Record?), which strict mode ` +
        "does not support; use Schema.Array(Schema.Struct({ key: Schema.String, value: ... })) instead"
    )
  }
  const required = new Set(Array.isArray(node.required) ? (node.required as ReadonlyArray<string>) : [])
  const optional = Object.keys(props).filter((k) => !required.has(k))
  if (optional.length > 0) {
    const fields = optional.map((k) => `"${child(path, k)}"`).join(", ")
    throw new UnsupportedSchemaError(
      `structured output: field${optional.length > 1 ? "s" : ""} ${fields} ${optional.length > 1 ? "are" : "is"} ` +
        "optional, but OpenAI strict mode requires every field to be present. " +
        "Use Schema.NullOr(...) instead of Schema.optional(...): the model then answers null when it has no value."
    )
  }
  out.required = Object.keys(props)
  out.additionalProperties = false
}

/**
 * Converts a Schema into a strict-mode JSON Schema. Describes the Schema's encoded side, which
 * is what the model writes. Throws `UnsupportedSchemaError` when strict mode cannot express it.
 */
export const compile = <A, I>(schema: Schema.Schema<A, I, never>): Compiled => {
  const defs: Record<string, JSONSchema.JsonSchema7> = {}
  // "skip" inlines the root instead of a root `$ref`; only recursive schemas land in $defs.
  const root = JSONSchema.fromAST(schema.ast, { definitions: defs, topLevelReferenceStrategy: "skip" })
  let body = strictNode(root, "")
  const wrapped = body.type !== "object"
  if (wrapped) {
    body = { type: "object", properties: { value: body }, required: ["value"], additionalProperties: false }
  }
  const names = Object.keys(defs)
  if (names.length > 0) {
    const $defs: Record<string, unknown> = {}
    for (const name of names) $defs[name] = strictNode(defs[name], `$defs.${name}`)
    body.$defs = $defs
  }
  return { jsonSchema: body, wrapped }
}

/** The strict-mode JSON Schema of a Schema (see `compile`). */
export const jsonSchema = <A, I>(schema: Schema.Schema<A, I, never>): Record<string, unknown> =>
  compile(schema).jsonSchema

/** Makes a name valid for providers (`^[a-zA-Z0-9_-]{1,64}$`). */
export const formatName = (name: string): string => {
  const clean = name.replace(/[^a-zA-Z0-9_-]+/g, "_").slice(0, 64)
  return clean.length > 0 ? clean : "output"
}

/** The neutral `OutputFormat` for a Schema, plus whether answers are wrapped in `value`. */
export const toOutputFormat = <A, I>(
  name: string,
  schema: Schema.Schema<A, I, never>
): { readonly format: OutputFormat; readonly wrapped: boolean } => {
  const { jsonSchema, wrapped } = compile(schema)
  return { format: { name: formatName(name), schema: jsonSchema }, wrapped }
}

/**
 * Decodes a model answer (JSON text) with the Schema. Never throws: a bad answer is a Left
 * with a readable reason, which the runner records as a `parse` failure of that row.
 */
export const decoder = <A, I>(
  schema: Schema.Schema<A, I, never>,
  options: { readonly wrapped: boolean }
): ((text: string) => Either.Either<A, string>) => {
  const target: Schema.Schema<unknown, unknown, never> = options.wrapped
    ? (Schema.Struct({ value: schema }) as unknown as Schema.Schema<unknown, unknown, never>)
    : (schema as unknown as Schema.Schema<unknown, unknown, never>)
  const decode = Schema.decodeUnknownEither(target, { errors: "all" })
  return (text) => {
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch (e) {
      return Either.left(`response is not valid JSON: ${e instanceof Error ? e.message : String(e)}`)
    }
    try {
      const result = decode(json)
      if (Either.isLeft(result)) {
        return Either.left(`response does not match the schema: ${ParseResult.TreeFormatter.formatErrorSync(result.left)}`)
      }
      const value = options.wrapped ? (result.right as { readonly value: A }).value : (result.right as A)
      return Either.right(value)
    } catch (e) {
      // A user transformation may throw; that is still a bad answer, not a crash.
      return Either.left(`response could not be decoded: ${e instanceof Error ? e.message : String(e)}`)
    }
  }
}

/** JSON Schema, output format and decoder for one Schema, in one call. */
export const make = <A, I>(name: string, schema: Schema.Schema<A, I, never>): StructuredOutput<A> => {
  const { format, wrapped } = toOutputFormat(name, schema)
  return { format, wrapped, decode: decoder(schema, { wrapped }) }
}

/**
 * ajv validators for the components of the OpenAI OpenAPI spec
 * (`specs/openai-openapi.json`, OpenAPI 3.1) plus the per-line `BatchRequestInput` /
 * `BatchRequestOutput` objects (`specs/openai-BatchRequestInput-Output.2025-04.json`,
 * extracted from the 2025-04 spec: the 2026 spec no longer has them).
 *
 * How the spec becomes something ajv can use:
 *
 * - OpenAPI 3.1 schemas are JSON Schema 2020-12, so the validators come from `ajv/dist/2020`.
 * - The whole `components.schemas` map is added as ONE schema, under an `$id`, at its usual
 *   place (`{$id, components: {schemas}}`): the spec's own `#/components/schemas/X` refs then
 *   resolve unchanged, and `validator("X")` compiles only what `X` reaches, lazily.
 * - OpenAPI keywords ajv does not know (`discriminator`, `example`, `x-oaiMeta`,
 *   `x-stainless-const` …) are annotations for code generators: `strict: false` lets ajv ignore
 *   them. (`discriminator` only names the tag of a `oneOf`; the `oneOf` itself is validated.)
 * - The spec's formats are registered: `unixtime` (an integer >= 0), `int64`, `uri`, `date`
 *   are checked; `binary`, `float` and `double` only annotate.
 * - `nullable: true` is OpenAPI 3.0 syntax (the per-line file is 3.0, and some of it lingers in
 *   the 3.1 spec); JSON Schema ignores it, so it is rewritten to what it means there:
 *   `anyOf: [schema, {type: "null"}]`. This is the spec's own meaning, applied in both modes.
 *
 * Two modes:
 *
 * - `relaxed: false`, the spec as published: for what WE send (request bodies, input lines).
 * - `relaxed: true`, for what the emulator (and OpenAI itself) answers: every property that its
 *   object schema does not list in `required` also accepts `null`. Why: the spec types many
 *   optional members as non-nullable (`Batch.output_file_id`, `Batch.in_progress_at`,
 *   `Batch.errors`, `Batch.model`, `OpenAIFile.expires_at`, `OpenAIFile.status_details` …),
 *   yet the real API sends them, as `null`, until they have a value (see the spec's own
 *   `x-oaiMeta` example of the Batch object: `"errors": null`, `"failed_at": null` …), and the
 *   official SDK types them `T | null`. The emulator mirrors the real API. The relaxation is
 *   only that: required members must still be present and non-null unless the spec itself
 *   says nullable, and every non-null value must still match the published schema. (One
 *   leniency of doing it generically: a property declared optional in one `allOf` branch and
 *   required in another is relaxed too.)
 */
import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"

export const specsDir: string =
  process.env["SLUICE_SPECS_DIR"] ?? fileURLToPath(new URL("../../../specs/", import.meta.url))

const SPEC_ID = "https://sluice.invalid/openai-openapi.json"

type Json = unknown
type SchemaObj = { [key: string]: Json }

const isObject = (value: Json): value is SchemaObj => typeof value === "object" && value !== null && !Array.isArray(value)

/** Keywords whose value is a schema. */
const SCHEMA_KEYWORDS = [
  "items", "additionalProperties", "unevaluatedProperties", "unevaluatedItems", "contains", "propertyNames", "not",
  "if", "then", "else", "additionalItems", "contentSchema"
] as const
/** Keywords whose value is an array of schemas. */
const SCHEMA_ARRAY_KEYWORDS = ["anyOf", "oneOf", "allOf", "prefixItems"] as const
/** Keywords whose value maps names to schemas. */
const SCHEMA_MAP_KEYWORDS = ["properties", "patternProperties", "$defs", "definitions", "dependentSchemas"] as const

const orNull = (schema: Json): SchemaObj => ({ anyOf: [schema, { type: "null" }] })

/**
 * A copy of a schema with `nullable: true` rewritten (always) and, when `relax`, every
 * non-required property accepting null. Data-valued keywords (`enum`, `const`, `default`,
 * `example(s)`, `x-*`) are copied as they are.
 */
const rewrite = (schema: Json, relax: boolean): Json => {
  if (Array.isArray(schema)) return schema.map((s) => rewrite(s, relax)) // OpenAPI 3.0 tuple `items`
  if (!isObject(schema)) return schema // `true` / `false` schemas
  const out: SchemaObj = {}
  for (const [key, value] of Object.entries(schema)) {
    if (key === "nullable") continue
    if ((SCHEMA_KEYWORDS as ReadonlyArray<string>).includes(key)) out[key] = rewrite(value, relax)
    else if ((SCHEMA_ARRAY_KEYWORDS as ReadonlyArray<string>).includes(key) && Array.isArray(value)) out[key] = value.map((s) => rewrite(s, relax))
    else if ((SCHEMA_MAP_KEYWORDS as ReadonlyArray<string>).includes(key) && isObject(value)) {
      out[key] = Object.fromEntries(Object.entries(value).map(([name, s]) => [name, rewrite(s, relax)]))
    } else out[key] = value
  }
  if (relax && isObject(out["properties"])) {
    const required = new Set(Array.isArray(out["required"]) ? (out["required"] as Array<string>) : [])
    out["properties"] = Object.fromEntries(
      Object.entries(out["properties"]).map(([name, s]) => [name, required.has(name) ? s : orNull(s)])
    )
  }
  return schema["nullable"] === true ? orNull(out) : out
}

const readJson = (file: string): SchemaObj => JSON.parse(readFileSync(`${specsDir}/${file}`, "utf8")) as SchemaObj

let cachedSpec: SchemaObj | undefined
const spec = (): SchemaObj => (cachedSpec ??= readJson("openai-openapi.json"))

let cachedComponents: SchemaObj | undefined
/** `components.schemas` of the spec, with BatchRequestInput / BatchRequestOutput added. */
const components = (): SchemaObj => {
  if (cachedComponents !== undefined) return cachedComponents
  const schemas = { ...((spec()["components"] as SchemaObj)["schemas"] as SchemaObj) }
  const lines = readJson("openai-BatchRequestInput-Output.2025-04.json")
  for (const name of ["BatchRequestInput", "BatchRequestOutput"]) {
    if (name in schemas) throw new Error(`${name} is in the main spec now: drop it from the per-line file`)
    schemas[name] = lines[name]
  }
  return (cachedComponents = schemas)
}

export interface OpenApiValidators {
  /** The (cached) validator of `#/components/schemas/<name>`. */
  readonly validator: (name: string) => ValidateFunction
  /** How `value` fails component `name`: one line per ajv error; empty when it conforms. */
  readonly problems: (name: string, value: unknown) => ReadonlyArray<string>
}

/** Validators of the OpenAI spec's components: see the module comment for the two modes. */
export const openAiValidators = (options: { readonly relaxed: boolean }): OpenApiValidators => {
  const ajv = new Ajv2020({ strict: false, allErrors: true })
  ajv.addFormat("unixtime", { type: "number", validate: (n: number) => Number.isInteger(n) && n >= 0 })
  ajv.addFormat("int64", { type: "number", validate: (n: number) => Number.isSafeInteger(n) })
  ajv.addFormat("double", { type: "number", validate: () => true })
  ajv.addFormat("float", { type: "number", validate: () => true })
  ajv.addFormat("binary", { type: "string", validate: () => true })
  ajv.addFormat("date", /^\d{4}-\d{2}-\d{2}$/)
  ajv.addFormat("uri", {
    type: "string",
    validate: (s: string) => {
      try {
        return new URL(s).protocol.length > 1
      } catch {
        return false
      }
    }
  })
  const schemas = Object.fromEntries(Object.entries(components()).map(([name, s]) => [name, rewrite(s, options.relaxed)]))
  ajv.addSchema({ $id: SPEC_ID, components: { schemas } })

  const cache = new Map<string, ValidateFunction>()
  const validator = (name: string): ValidateFunction => {
    let validate = cache.get(name)
    if (validate === undefined) {
      if (!(name in components())) throw new Error(`no component schema named ${name}`)
      validate = ajv.getSchema(`${SPEC_ID}#/components/schemas/${name}`)
      if (validate === undefined) throw new Error(`ajv could not compile ${name}`)
      cache.set(name, validate)
    }
    return validate
  }
  const problems = (name: string, value: unknown): ReadonlyArray<string> => {
    const validate = validator(name)
    return validate(value) ? [] : (validate.errors ?? []).map((e: ErrorObject) => `${name}${e.instancePath} ${e.message ?? e.keyword} ${JSON.stringify(e.params)}`)
  }
  return { validator, problems }
}

// ---------------------------------------------------------------------------------------------
// Operations: which component a route takes and answers, by the spec's `paths`
// ---------------------------------------------------------------------------------------------

export interface SpecOperation {
  /** The spec's path template, e.g. `/batches/{batch_id}/cancel` (relative to the server `.../v1`). */
  readonly template: string
  /** The request body: its media type and component name (`CreateBatchRequest` …). */
  readonly request: { readonly contentType: string; readonly schema: string } | undefined
  /** The component of the 200 `application/json` answer, when it is a `$ref` (not for file content). */
  readonly response: string | undefined
  /** How `query` fails the operation's declared query parameters (undeclared ones, wrong values). */
  readonly queryProblems: (query: URLSearchParams) => ReadonlyArray<string>
}

const refName = (schema: Json): string | undefined =>
  isObject(schema) && typeof schema["$ref"] === "string" ? schema["$ref"].replace("#/components/schemas/", "") : undefined

/** Query parameter values are strings on the wire: coerce them to the declared types. */
const paramsAjv = new Ajv2020({ strict: false, allErrors: true, coerceTypes: true })

/**
 * The spec's operation for `method` and `path` (`path` relative to `/v1`: `/batches/batch_1`);
 * undefined when the spec has none. A literal segment wins over a `{placeholder}`.
 */
export const specOperation = (method: string, path: string): SpecOperation | undefined => {
  const key = `${method.toUpperCase()} ${path}`
  if (!operations.has(key)) operations.set(key, findOperation(method, path))
  return operations.get(key)
}

const operations = new Map<string, SpecOperation | undefined>()

const findOperation = (method: string, path: string): SpecOperation | undefined => {
  const paths = spec()["paths"] as SchemaObj
  const segments = path.split("/")
  const matches = Object.keys(paths).filter((template) => {
    const parts = template.split("/")
    return parts.length === segments.length && parts.every((part, i) => /^\{.+\}$/.test(part) || part === segments[i])
  })
  const template = matches.sort((a, b) => (a.match(/\{/g)?.length ?? 0) - (b.match(/\{/g)?.length ?? 0))[0]
  if (template === undefined) return undefined
  const operation = (paths[template] as SchemaObj)[method.toLowerCase()]
  if (!isObject(operation)) return undefined
  const content = isObject(operation["requestBody"]) ? (operation["requestBody"]["content"] as SchemaObj) : undefined
  const [contentType, media] = content === undefined ? [] : Object.entries(content)[0] ?? []
  const requestSchema = isObject(media) ? refName(media["schema"]) : undefined
  const ok = (operation["responses"] as SchemaObj)["200"]
  const okContent = isObject(ok) && isObject(ok["content"]) ? ok["content"]["application/json"] : undefined
  const parameters = (Array.isArray(operation["parameters"]) ? operation["parameters"] : []).filter(
    (p): p is SchemaObj => isObject(p) && p["in"] === "query"
  )
  const validateQuery = paramsAjv.compile({
    type: "object",
    properties: Object.fromEntries(parameters.map((p) => [p["name"] as string, p["schema"] ?? {}])),
    required: parameters.filter((p) => p["required"] === true).map((p) => p["name"] as string),
    additionalProperties: false
  })
  return {
    template,
    request: contentType !== undefined && requestSchema !== undefined ? { contentType, schema: requestSchema } : undefined,
    response: isObject(okContent) ? refName(okContent["schema"]) : undefined,
    queryProblems: (query) => {
      const value = Object.fromEntries(query.entries())
      return validateQuery(value) ? [] : (validateQuery.errors ?? []).map((e) => `query${e.instancePath} ${e.message ?? e.keyword} ${JSON.stringify(e.params)}`)
    }
  }
}

/**
 * Builds a value that conforms to a JSON Schema, deterministically from a
 * seeded PRNG. This is what makes structured-output pipelines testable
 * offline: the emulator's answer parses with the pipeline's own Schema.
 *
 * Supported: type (single or array), object (properties, required,
 * additionalProperties as a map schema, min/maxProperties), string (enum,
 * const, min/maxLength, a few formats), number/integer (minimum, maximum,
 * exclusive bounds in both draft-4 and 2020 style, multipleOf), boolean,
 * null, array (items, prefixItems, tuple items, min/maxItems, uniqueItems),
 * enum, const, anyOf/oneOf (one branch picked), allOf (merged), $ref to any
 * local JSON pointer (#/$defs/..., #/definitions/..., #).
 * Not supported: `pattern` (ignored), `not`, if/then/else, remote $refs.
 */

type SchemaObject = { readonly [key: string]: unknown }

interface Context {
  readonly root: unknown
  readonly random: () => number
}

/** Beyond this depth, arrays take their minimum size and objects only required keys. */
const SHRINK_DEPTH = 8
/** Beyond this depth, give up (only reached by schemas that cannot terminate). */
const MAX_DEPTH = 48

const WORDS = [
  "amber", "brisk", "cedar", "delta", "ember", "fable", "gleam", "harbor",
  "island", "juniper", "kestrel", "lumen", "meadow", "nectar", "orbit", "prism",
  "quartz", "river", "sierra", "timber", "umbra", "velvet", "willow", "xenon",
  "yonder", "zephyr", "atlas", "beacon", "comet", "dune", "echo", "falcon"
] as const

export const valueForSchema = (schema: unknown, random: () => number): unknown =>
  generate(schema, { root: schema, random }, 0, undefined)

const isObject = (value: unknown): value is SchemaObject =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const pick = <A>(items: ReadonlyArray<A>, random: () => number): A => items[Math.floor(random() * items.length)] as A

const generate = (schema: unknown, ctx: Context, depth: number, name: string | undefined): unknown => {
  if (depth > MAX_DEPTH) return null
  if (schema === true || schema === undefined) return word(ctx.random)
  if (!isObject(schema)) return null
  const resolved = resolveSchema(schema, ctx, depth)
  if (!isObject(resolved)) return generate(resolved, ctx, depth + 1, name)

  if ("const" in resolved) return resolved["const"]
  const enumValues = resolved["enum"]
  if (Array.isArray(enumValues) && enumValues.length > 0) return pick(enumValues, ctx.random)

  const type = chooseType(resolved, ctx, depth)
  switch (type) {
    case "null":
      return null
    case "boolean":
      return ctx.random() < 0.5
    case "integer":
      return integerValue(resolved, ctx.random)
    case "number":
      return numberValue(resolved, ctx.random)
    case "string":
      return stringValue(resolved, ctx.random, name)
    case "array":
      return arrayValue(resolved, ctx, depth)
    case "object":
      return objectValue(resolved, ctx, depth)
    default:
      return word(ctx.random)
  }
}

/** Follows $ref, folds allOf, and picks one anyOf/oneOf branch; the result has none of them at top level. */
const resolveSchema = (schema: SchemaObject, ctx: Context, depth: number): unknown => {
  let current: unknown = schema
  for (let hops = 0; hops < 32 && isObject(current); hops++) {
    const node: SchemaObject = current
    const ref = node["$ref"]
    if (typeof ref === "string") {
      const { $ref: _ignored, ...siblings } = node
      current = merge(siblings, resolvePointer(ctx.root, ref))
      continue
    }
    const allOf = node["allOf"]
    if (Array.isArray(allOf)) {
      const { allOf: _ignored, ...siblings } = node
      current = allOf.reduce<unknown>((acc, part) => merge(acc, part), siblings)
      continue
    }
    const branches = node["anyOf"] ?? node["oneOf"]
    if (Array.isArray(branches) && branches.length > 0) {
      const { anyOf: _a, oneOf: _o, ...siblings } = node
      const branch = depth >= SHRINK_DEPTH ? simplest(branches) : pick(branches, ctx.random)
      current = merge(siblings, branch)
      continue
    }
    return node
  }
  return current
}

const resolvePointer = (root: unknown, ref: string): unknown => {
  if (!ref.startsWith("#")) return true // remote refs are not fetched: any value
  const path = ref.slice(1)
  if (path === "" || path === "/") return root
  let node: unknown = root
  for (const raw of path.replace(/^\//, "").split("/")) {
    const key = decodeURIComponent(raw).replace(/~1/g, "/").replace(/~0/g, "~")
    if (Array.isArray(node)) node = node[Number(key)]
    else if (isObject(node)) node = node[key]
    else return true
  }
  return node ?? true
}

/** Shallow merge of two schemas; properties and required are combined (enough for allOf and refs with siblings). */
const merge = (left: unknown, right: unknown): unknown => {
  if (!isObject(left) || Object.keys(left).length === 0) return right
  if (!isObject(right)) return right === false ? false : left
  const out: Record<string, unknown> = { ...left, ...right }
  const lp = left["properties"]
  const rp = right["properties"]
  if (isObject(lp) && isObject(rp)) out["properties"] = { ...lp, ...rp }
  const lr = left["required"]
  const rr = right["required"]
  if (Array.isArray(lr) && Array.isArray(rr)) out["required"] = [...new Set([...lr, ...rr])]
  return out
}

/** At shrink depth, prefer the branch least likely to recurse. */
const simplest = (branches: ReadonlyArray<unknown>): unknown => {
  const cost = (branch: unknown): number => {
    if (!isObject(branch)) return 5
    const type = branch["type"]
    if (type === "null" || (Array.isArray(type) && type.includes("null"))) return 0
    if ("const" in branch || "enum" in branch) return 1
    if (type === "string" || type === "number" || type === "integer" || type === "boolean") return 1
    if ("$ref" in branch) return 4
    return 3
  }
  let best = branches[0]
  for (const branch of branches) if (cost(branch) < cost(best)) best = branch
  return best
}

const chooseType = (schema: SchemaObject, ctx: Context, depth: number): string => {
  const type = schema["type"]
  if (typeof type === "string") return type
  if (Array.isArray(type) && type.length > 0) {
    const names = type.filter((t): t is string => typeof t === "string")
    if (depth >= SHRINK_DEPTH && names.includes("null")) return "null"
    return names.length > 0 ? pick(names, ctx.random) : "string"
  }
  if ("properties" in schema || "additionalProperties" in schema || "required" in schema) return "object"
  if ("items" in schema || "prefixItems" in schema || "minItems" in schema) return "array"
  if ("minimum" in schema || "maximum" in schema || "exclusiveMinimum" in schema || "exclusiveMaximum" in schema) return "number"
  return "string"
}

const num = (value: unknown): number | undefined => (typeof value === "number" && Number.isFinite(value) ? value : undefined)

interface Bounds {
  readonly low: number | undefined
  readonly high: number | undefined
  readonly lowExclusive: boolean
  readonly highExclusive: boolean
}

const bounds = (schema: SchemaObject): Bounds => {
  let low = num(schema["minimum"])
  let high = num(schema["maximum"])
  let lowExclusive = false
  let highExclusive = false
  // draft 2020: numeric exclusive bounds; draft 4: boolean flags on minimum/maximum
  const exMin = schema["exclusiveMinimum"]
  const exMax = schema["exclusiveMaximum"]
  if (typeof exMin === "number" && (low === undefined || exMin >= low)) [low, lowExclusive] = [exMin, true]
  else if (exMin === true) lowExclusive = true
  if (typeof exMax === "number" && (high === undefined || exMax <= high)) [high, highExclusive] = [exMax, true]
  else if (exMax === true) highExclusive = true
  return { low, high, lowExclusive, highExclusive }
}

const integerValue = (schema: SchemaObject, random: () => number): number => {
  const b = bounds(schema)
  let low = b.low === undefined ? undefined : b.lowExclusive ? Math.floor(b.low) + 1 : Math.ceil(b.low)
  let high = b.high === undefined ? undefined : b.highExclusive ? Math.ceil(b.high) - 1 : Math.floor(b.high)
  if (low === undefined && high === undefined) [low, high] = [0, 100]
  else if (low === undefined) low = (high as number) - 100
  else if (high === undefined) high = low + 100
  const lo = low as number
  const hi = Math.max(lo, high as number)
  const step = num(schema["multipleOf"])
  if (step !== undefined && step > 0 && Number.isInteger(step)) {
    const first = Math.ceil(lo / step) * step
    const count = Math.floor((hi - first) / step) + 1
    if (count > 0) return first + step * Math.floor(random() * count)
  }
  return lo + Math.floor(random() * (hi - lo + 1))
}

const numberValue = (schema: SchemaObject, random: () => number): number => {
  const b = bounds(schema)
  let low = b.low
  let high = b.high
  if (low === undefined && high === undefined) [low, high] = [0, 1]
  else if (low === undefined) low = (high as number) - 1
  else if (high === undefined) high = low + 1
  const lo = low as number
  const hi = high as number
  const step = num(schema["multipleOf"])
  if (step !== undefined && step > 0) {
    const first = Math.ceil(lo / step) * step
    for (let k = Math.floor(random() * 4); k >= 0; k--) {
      const candidate = first + k * step
      if (inside(candidate, b, lo, hi)) return candidate
    }
  }
  // Stay strictly inside so exclusive bounds hold; round for readability when that keeps it inside.
  const raw = lo + (hi - lo) * (0.1 + 0.8 * random())
  const rounded = Math.round(raw * 100) / 100
  if (inside(rounded, b, lo, hi)) return rounded
  return inside(raw, b, lo, hi) ? raw : (lo + hi) / 2
}

const inside = (value: number, b: Bounds, lo: number, hi: number): boolean =>
  (b.lowExclusive ? value > lo : value >= lo) && (b.highExclusive ? value < hi : value <= hi)

const word = (random: () => number): string => pick(WORDS, random)

const stringValue = (schema: SchemaObject, random: () => number, name: string | undefined): string => {
  const format = schema["format"]
  if (typeof format === "string") {
    const formatted = formatValue(format, random)
    if (formatted !== undefined) return formatted
  }
  const minLength = Math.max(0, num(schema["minLength"]) ?? 0)
  const maxLength = num(schema["maxLength"])
  const words = 1 + Math.floor(random() * 3)
  let text = Array.from({ length: words }, () => word(random)).join(" ")
  if (name !== undefined && words > 1) text = `${name.replace(/[_-]+/g, " ")} ${text}`
  while (text.length < minLength) text = `${text} ${word(random)}`
  if (maxLength !== undefined && text.length > maxLength) text = text.slice(0, Math.max(minLength, maxLength)).trimEnd()
  // trimEnd may undercut minLength: pad with a letter
  while (text.length < minLength) text += "a"
  return text
}

const pad = (n: number, width = 2): string => String(n).padStart(width, "0")

const formatValue = (format: string, random: () => number): string | undefined => {
  const instant = () => new Date(Date.UTC(2020, 0, 1) + Math.floor(random() * 6 * 365 * 86_400) * 1000)
  switch (format) {
    case "date-time":
      return instant().toISOString().replace(/\.\d{3}Z$/, "Z")
    case "date":
      return instant().toISOString().slice(0, 10)
    case "time": {
      const d = instant()
      return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}Z`
    }
    case "email":
      return `${word(random)}@example.com`
    case "uri":
    case "url":
    case "iri":
      return `https://example.com/${word(random)}`
    case "hostname":
      return `${word(random)}.example.com`
    case "ipv4":
      return [1, 2, 3, 4].map(() => Math.floor(random() * 256)).join(".")
    case "ipv6":
      return `2001:db8::${Math.floor(random() * 0xffff).toString(16)}`
    case "uuid": {
      const hex = Array.from({ length: 32 }, () => Math.floor(random() * 16).toString(16)).join("")
      return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20)}`
    }
    default:
      return undefined
  }
}

const arrayValue = (schema: SchemaObject, ctx: Context, depth: number): Array<unknown> => {
  const minItems = Math.max(0, num(schema["minItems"]) ?? 0)
  const maxItems = num(schema["maxItems"])
  const tuple = Array.isArray(schema["prefixItems"])
    ? (schema["prefixItems"] as ReadonlyArray<unknown>)
    : Array.isArray(schema["items"])
      ? (schema["items"] as ReadonlyArray<unknown>)
      : []
  // draft 2020 uses `items` for the rest after prefixItems; draft 4 tuples use additionalItems
  const rest = Array.isArray(schema["items"]) ? schema["additionalItems"] : schema["items"]
  const restAllowed = rest !== false
  let count = depth >= SHRINK_DEPTH ? minItems : Math.max(minItems, 1 + Math.floor(ctx.random() * 3))
  if (maxItems !== undefined) count = Math.min(count, maxItems)
  if (!restAllowed) count = Math.min(count, tuple.length)
  if (tuple.length > 0) count = Math.max(count, Math.min(tuple.length, minItems))

  const unique = schema["uniqueItems"] === true
  const out: Array<unknown> = []
  const seen = new Set<string>()
  for (let i = 0, attempts = 0; out.length < count && attempts < count * 8 + 8; attempts++) {
    const itemSchema = i < tuple.length ? tuple[i] : rest
    const value = generate(itemSchema, ctx, depth + 1, undefined)
    if (unique) {
      const key = JSON.stringify(value)
      if (seen.has(key)) continue
      seen.add(key)
    }
    out.push(value)
    i++
  }
  return out
}

const objectValue = (schema: SchemaObject, ctx: Context, depth: number): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  const properties = isObject(schema["properties"]) ? schema["properties"] : {}
  const required = new Set(Array.isArray(schema["required"]) ? (schema["required"] as ReadonlyArray<unknown>) : [])
  for (const [key, propertySchema] of Object.entries(properties)) {
    if (propertySchema === false) continue
    // Optional properties are included too (strict-mode schemas mark all required anyway), except when shrinking.
    if (depth >= SHRINK_DEPTH && !required.has(key)) continue
    out[key] = generate(propertySchema, ctx, depth + 1, key)
  }
  // Required keys that no `properties` entry describes.
  for (const key of required) {
    if (typeof key === "string" && !(key in out)) out[key] = generate(additionalSchema(schema), ctx, depth + 1, key)
  }
  // Map-like objects (`additionalProperties: {schema}` without properties, e.g. Record<string, X>).
  const additional = schema["additionalProperties"]
  const minProperties = num(schema["minProperties"]) ?? 0
  const wantsEntries = Object.keys(properties).length === 0 && isObject(additional) && depth < SHRINK_DEPTH
  const target = Math.max(minProperties, wantsEntries ? 1 + Math.floor(ctx.random() * 2) : 0)
  for (let i = 0; Object.keys(out).length < target && i < target + 8; i++) {
    const key = `${word(ctx.random)}_${i}`
    if (!(key in out)) out[key] = generate(additionalSchema(schema), ctx, depth + 1, key)
  }
  const maxProperties = num(schema["maxProperties"])
  if (maxProperties !== undefined) {
    for (const key of Object.keys(out)) {
      if (Object.keys(out).length <= maxProperties) break
      if (!required.has(key)) delete out[key]
    }
  }
  return out
}

const additionalSchema = (schema: SchemaObject): unknown => {
  const additional = schema["additionalProperties"]
  return isObject(additional) ? additional : true
}

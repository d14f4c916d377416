/**
 * What the PostgreSQL sink can put in a table, decided before the INSERT: a value PostgreSQL
 * refuses fails the whole transaction, so every later commit of the run would fail with it.
 *
 * - Names: what @effect/sql's identifier quoting can express. It doubles `"` but splits on
 *   `.` (`a.b` becomes `"a"."b"`, a qualified name), PostgreSQL cuts names past 63 bytes
 *   (so the catalog would not know them), and no name may hold U+0000.
 * - Values, by column type: text and jsonb cannot hold U+0000 (jsonb refuses even the
 *   `\u0000` escape) nor a lone surrogate (not UTF-8; node-postgres would silently send
 *   U+FFFD instead, jsonb refuses the escape). `json` stores the escapes as written, so it
 *   holds both. Numeric and boolean columns take only what PostgreSQL parses as such.
 *   Columns of other types are not checked beyond their text.
 */
import { Sink } from "@sluice/core"

/** PostgreSQL's NAMEDATALEN - 1: a longer identifier is cut. */
const MAX_NAME_BYTES = 63

/** A table has at most this many columns. */
export const MAX_COLUMNS = 1600

/** Parameters of one statement: the wire protocol counts them in 16 bits. */
export const MAX_PARAMETERS = 65535

/** Why `name` cannot be a quoted identifier of the sink, or undefined. */
export const identifierProblem = (name: string): string | undefined => {
  if (name === "") return "it is empty"
  if (name.includes(".")) return "it has a dot, which the quoting would turn into a qualified name (\"a\".\"b\")"
  const text = Sink.textProblem(name, true)
  if (text !== undefined) return `it has ${text}`
  const bytes = Buffer.byteLength(name)
  if (bytes > MAX_NAME_BYTES) return `it is ${bytes} bytes long; PostgreSQL cuts names past ${MAX_NAME_BYTES}`
  return undefined
}

/** Why `table` (`name` or `schema.name`) cannot be the sink's table, or undefined. */
export const tableProblem = (table: string): string | undefined => {
  const parts = table.split(".")
  if (parts.length > 2) return "it has more than one dot: give `table` or `schema.table`"
  for (const part of parts) {
    const problem = identifierProblem(part)
    if (problem !== undefined) return parts.length === 1 ? problem : `${JSON.stringify(part)}: ${problem}`
  }
  return undefined
}

/** The types the sink gives the columns it creates. */
export type SqlType = "text" | "double precision" | "boolean" | "jsonb"

export const sqlTypeOf = (value: unknown): SqlType => {
  switch (typeof value) {
    case "string":
      return "text"
    case "number":
      return "double precision"
    case "boolean":
      return "boolean"
  }
  return value instanceof Date ? "text" : "jsonb"
}

export const isJsonType = (type: string) => type === "json" || type === "jsonb"

/** A cell as a query parameter for a column of `type` (from the catalog). */
export const param = (value: unknown, type: string | undefined): unknown => {
  if (value === undefined || value === null) return null
  if (type !== undefined && isJsonType(type)) return JSON.stringify(value) ?? null
  switch (typeof value) {
    case "string":
    case "number":
    case "boolean":
      return value
    case "bigint":
      return value.toString()
  }
  if (value instanceof Date) return value
  return JSON.stringify(value) ?? null
}

const DECIMAL = /^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/
const SPECIAL_FLOAT = /^\s*([-+]?(infinity|inf)|nan)\s*$/i
const INTEGER = /^\s*[-+]?\d+\s*$/
const BOOLEAN_WORDS = new Set(["t", "true", "y", "yes", "on", "1", "f", "false", "n", "no", "off", "0"])

const INTEGER_RANGE: Record<string, readonly [bigint, bigint]> = {
  smallint: [-(2n ** 15n), 2n ** 15n - 1n],
  integer: [-(2n ** 31n), 2n ** 31n - 1n],
  bigint: [-(2n ** 63n), 2n ** 63n - 1n]
}

const shown = (value: unknown): string => {
  if (typeof value === "bigint") return `${value}n`
  const text = value instanceof Date ? value.toISOString() : JSON.stringify(value) ?? String(value)
  return text.length > 40 ? `${text.slice(0, 37)}...` : text
}

/** Why an integer (as a bigint) does not fit `type`, or undefined. */
const outOfRange = (n: bigint, type: string): string | undefined => {
  const [min, max] = INTEGER_RANGE[type]!
  return n < min || n > max ? `${n} is out of range for ${type}` : undefined
}

/** Why a column of `type` would refuse `value` (given as `param` sends it), or undefined. */
const typeProblem = (value: unknown, type: string): string | undefined => {
  const base = type.replace(/\(.*\)$/, "")
  if (base in INTEGER_RANGE) {
    if (typeof value === "number") {
      return Number.isInteger(value) ? outOfRange(BigInt(value), base) : `${shown(value)} is not an integer`
    }
    if (typeof value === "bigint") return outOfRange(value, base)
    if (typeof value === "string" && INTEGER.test(value)) return outOfRange(BigInt(value.trim()), base)
    return `${shown(value)} is not an integer`
  }
  if (base === "double precision" || base === "real" || base === "numeric") {
    if (typeof value === "number" || typeof value === "bigint") return undefined
    if (typeof value === "string" && (DECIMAL.test(value) || SPECIAL_FLOAT.test(value))) return undefined
    return `${shown(value)} is not a number`
  }
  if (base === "boolean") {
    if (typeof value === "boolean" || value === 0 || value === 1) return undefined
    if (typeof value === "string" && BOOLEAN_WORDS.has(value.trim().toLowerCase())) return undefined
    return `${shown(value)} is not a boolean`
  }
  const limit = /^character(?: varying)?\((\d+)\)$/.exec(type)
  if (limit !== null) {
    const text = param(value, type)
    const length = typeof text === "string" ? [...text].length : 0
    if (length > Number(limit[1])) return `${shown(value)} is longer than ${limit[1]} characters`
  }
  return undefined
}

/**
 * Why a column of `type` (from the catalog, or the type the sink will create it with) cannot
 * hold `value`, naming the column; undefined when it can.
 */
export const valueProblem = (column: string, value: unknown, type: string): string | undefined => {
  if (value === null || value === undefined) return undefined
  if (type === "jsonb") {
    const problem = Sink.jsonProblem(value, column, true)
    return problem === undefined ? undefined : `${problem}, which jsonb cannot hold`
  }
  // A json column keeps JSON.stringify's escapes as they are: it holds any string.
  if (type === "json") return undefined
  if (typeof value === "string") {
    const problem = Sink.textProblem(value, true)
    if (problem !== undefined) return `${column} has ${problem}, which PostgreSQL text cannot hold`
  }
  const problem = typeProblem(value, type)
  return problem === undefined ? undefined : `column ${column} is ${type}: ${problem}`
}

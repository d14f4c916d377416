/**
 * Reading values from the wire, which are untrusted: whatever a provider, a gateway or a proxy
 * in between sends must decode to values the runner can journal and read back.
 */

/**
 * `table[key]` only for a key the table itself holds: wire text such as "constructor" or
 * "__proto__" must not find `Object.prototype`'s members in an object literal.
 */
export const lookup = <V>(table: Readonly<Record<string, V>>, key: string): V | undefined =>
  Object.hasOwn(table, key) ? table[key] : undefined

/**
 * A request or token count: a number between 0 and 2^53 - 1 (larger ones are capped), else 0.
 * JSON allows `1e999`, which parses as Infinity, and sums of huge counts overflow to it: the
 * journal would keep `null` for it and no longer replay.
 */
export const count = (value: unknown): number =>
  typeof value === "number" && Number.isFinite(value) ? Math.min(Math.max(value, 0), Number.MAX_SAFE_INTEGER) : 0

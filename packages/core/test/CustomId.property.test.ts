/**
 * Property tests of custom_id derivation: for any stage name and row key (any unicode, empty,
 * very long, or crafted to look like another key's hashed form), the id is stable, portable
 * (`^[A-Za-z0-9_-]{1,64}$`) and ends in the request hash; distinct (key, request) pairs never
 * share an id.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { anyString, check } from "../../../test/support/properties.js"
import * as CustomId from "../src/CustomId.js"
import { sha256 } from "../src/Hash.js"

/** A request hash as the planner passes it: hex SHA-256. */
const digest = fc.uint8Array({ minLength: 8, maxLength: 8 }).map((bytes) => sha256(bytes))

/** Keys a dataset may hold: readable ones, any text, long ones, and copies of another key's hashed form. */
const key = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9_-]{1,24}$/),
  anyString,
  fc.string({ minLength: 20, maxLength: 300 }),
  fc.constant(""),
  anyString.map((other) => `k${sha256(other).slice(0, 16)}`)
)

/** Stage names: any text (the pipeline checks them; the id must not rely on it), and copies of a hashed form. */
const stage = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9_-]{1,32}$/),
  anyString,
  anyString.map((other) => `s${sha256(other).slice(0, 10)}`)
)

describe("custom_id properties", () => {
  it("is stable, portable and ends in the request hash, for any stage name and key", () => {
    check(
      fc.property(stage, key, digest, (s, k, d) => {
        const id = CustomId.make(s, k, d)
        expect(id).toMatch(CustomId.pattern)
        expect(id).toBe(CustomId.make(s, k, d))
        expect(id.endsWith(`-${d.slice(0, 16)}`)).toBe(true)
      }),
      2000
    )
  })

  it("distinct keys of one stage get distinct ids for the same request, even keys crafted as another's hashed form", () => {
    check(
      fc.property(stage, fc.uniqueArray(key, { minLength: 2, maxLength: 40 }), digest, (s, keys, d) => {
        const withCrafted = [...new Set([...keys, ...keys.map((k) => `k${sha256(k).slice(0, 16)}`)])]
        const ids = new Set(withCrafted.map((k) => CustomId.make(s, k, d)))
        expect(ids.size).toBe(withCrafted.length)
      }),
      300
    )
  })

  it("distinct stage names get distinct ids for the same key and request", () => {
    check(
      fc.property(fc.uniqueArray(stage, { minLength: 2, maxLength: 20 }), key, digest, (stages, k, d) => {
        const withCrafted = [...new Set([...stages, ...stages.map((s) => `s${sha256(s).slice(0, 10)}`)])]
        const ids = new Set(withCrafted.map((s) => CustomId.make(s, k, d)))
        expect(ids.size).toBe(withCrafted.length)
      }),
      300
    )
  })

  it("a large sample of distinct (key, request) pairs has no collision", () => {
    // About 60,000 pairs from a fixed seed: readable keys, hashed keys, several requests per key.
    const pairs = fc.sample(fc.tuple(key, fc.nat({ max: 3 })), { seed: 7, numRuns: 25_000 })
    const seen = new Map<string, string>()
    for (const [k, variant] of pairs) {
      for (let v = 0; v <= variant + 1; v++) {
        const d = sha256(`request ${v}`)
        const id = CustomId.make("label", k, d)
        const pair = JSON.stringify([k, v])
        const before = seen.get(id)
        if (before !== undefined) expect(before, `${pair} and ${before} share ${id}`).toBe(pair)
        seen.set(id, pair)
      }
    }
    expect(seen.size).toBeGreaterThan(25_000)
  })
})

import { describe, expect, it } from "vitest"
import * as CustomId from "../src/CustomId.js"

describe("CustomId", () => {
  it("is deterministic and matches the portable pattern", () => {
    const a = CustomId.make("label", "rev-0001", "0123456789abcdef0123")
    expect(a).toBe(CustomId.make("label", "rev-0001", "0123456789abcdef0123"))
    expect(a).toBe("label-rev-0001-0123456789abcdef")
    expect(a).toMatch(CustomId.pattern)
  })

  it("changes when the request changes", () => {
    expect(CustomId.make("label", "k", "aaaaaaaaaaaaaaaa")).not.toBe(CustomId.make("label", "k", "bbbbbbbbbbbbbbbb"))
  })

  it("hashes keys and stage names that are not portable, without collisions from sanitising", () => {
    const a = CustomId.make("label", "a b", "0123456789abcdef")
    const b = CustomId.make("label", "a_b", "0123456789abcdef")
    expect(a).not.toBe(b)
    for (const id of [a, b, CustomId.make("a stage with spaces and é", "x".repeat(500), "f".repeat(64))]) {
      expect(id).toMatch(CustomId.pattern)
    }
  })

  it("content keys tell duplicate rows apart by occurrence", () => {
    const keys = CustomId.contentKeys()
    const h = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4"
    expect([keys(h), keys(h), keys("ff" + h), keys(h)]).toEqual([h.slice(0, 20), `${h.slice(0, 20)}_1`, ("ff" + h).slice(0, 20), `${h.slice(0, 20)}_2`])
  })
})

// Found by CustomId.property.test.ts: two distinct keys of one stage shared an id.
describe("CustomId: distinct keys, distinct ids", () => {
  const digest = "e721e9f57f5a4857aaaaaaaaaaaaaaaa"

  it("a clean key that looks like another key's hash is hashed too", () => {
    // "" hashes to ke3b0c44298fc1c14, which is also a clean key a dataset may hold.
    expect(CustomId.make("label", "", digest)).not.toBe(CustomId.make("label", "ke3b0c44298fc1c14", digest))
    expect(CustomId.make("", "a", digest)).not.toBe(CustomId.make("se3b0c44298", "a", digest))
    expect(CustomId.make("label", "ke3b0c44298fc1c14", digest)).toMatch(CustomId.pattern)
  })

  it("keys that differ only in lone surrogates get distinct ids", () => {
    // UTF-8 turns any lone surrogate into U+FFFD: both keys used to hash alike.
    expect(CustomId.make("label", "\udf48", digest)).not.toBe(CustomId.make("label", "\udebe", digest))
  })

  it("ids of well-formed keys are the ones earlier versions derived (runs in flight keep their ids)", () => {
    expect(CustomId.make("label", "a b", digest)).toBe("label-kc8687a08aa5d6ed2-e721e9f57f5a4857")
    expect(CustomId.make("label", "ünïcödé key", digest)).toBe("label-kfed1ec1b30dacc07-e721e9f57f5a4857")
  })
})

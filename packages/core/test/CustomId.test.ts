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

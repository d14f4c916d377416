import { describe, expect, it } from "vitest"
import { hash53, IdTable } from "../src/internal/IdTable.js"

describe("IdTable", () => {
  it("finds every id among a hundred thousand, across growth; unknown ids are -1", () => {
    const ids = Array.from({ length: 100_000 }, (_, i) => `label-k${i.toString(16)}-${(i * 7919).toString(36)}`)
    const table = new IdTable((row) => ids[row]!)
    ids.forEach((id, row) => table.set(id, row))
    for (let row = 0; row < ids.length; row += 997) expect(table.get(ids[row]!)).toBe(row)
    expect(ids.every((id, row) => table.get(id) === row)).toBe(true)
    expect(table.get("label-unknown")).toBe(-1)
    // Entering an id again keeps its first row.
    table.set(ids[5]!, 99)
    expect(table.get(ids[5]!)).toBe(5)
  })

  it("tells apart ids of one hash exactly, reading the first one's id back", () => {
    const ids = ["a-1", "b-2", "c-3", "d-4"]
    const read: Array<number> = []
    // Every id hashes alike: all of them share one slot.
    const table = new IdTable((row) => (read.push(row), ids[row]!), 16, () => 42)
    ids.forEach((id, row) => table.set(id, row))
    expect(ids.map((id) => table.get(id))).toEqual([0, 1, 2, 3])
    expect(table.get("e-5")).toBe(-1)
    expect(read).toEqual([0])
    // An alias of a row (a repair's id) under the shared hash.
    table.set("a-1-r1", 0)
    expect(table.get("a-1-r1")).toBe(0)
  })

  it("hash53 is a 53-bit integer, never 0 (the empty slot)", () => {
    for (const s of ["", "a", "label-00001", "ü€𝄞"]) {
      const h = hash53(s)
      expect(Number.isSafeInteger(h) && h > 0).toBe(true)
    }
    expect(hash53("label-00001")).not.toBe(hash53("label-00002"))
  })
})

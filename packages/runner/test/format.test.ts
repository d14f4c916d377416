/**
 * How the CLI writes counts and money: nouns in the right number, amounts rounded to what
 * matters (a small run costs fractions of a cent), never a string of eight decimals.
 */
import { describe, expect, it } from "vitest"
import { count, money, number } from "../src/internal/format.js"

describe("count", () => {
  it("puts the noun in the singular for exactly one, in the plural otherwise", () => {
    expect(count(0, "row")).toBe("0 rows")
    expect(count(1, "row")).toBe("1 row")
    expect(count(2, "row")).toBe("2 rows")
    expect(count(1, "batch", "batches")).toBe("1 batch")
    expect(count(7, "batch", "batches")).toBe("7 batches")
  })

  it("groups thousands", () => {
    expect(count(10_000_000, "row")).toBe("10,000,000 rows")
  })
})

describe("number", () => {
  it("writes integers as toLocaleString(\"en-US\") does (it groups them by hand), and any other number through it", () => {
    const values = [0, -0, 1, -1, 999, 1000, -1000, 1234567, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 2 ** 60, 1e21, 1.5, -1234.5678, Number.NaN, Infinity]
    for (let digits = 1; digits <= 16; digits++) {
      for (let i = 0; i < 200; i++) values.push(Math.floor(Math.random() * 10 ** digits) * (i % 3 === 0 ? -1 : 1))
    }
    for (const n of values) expect(number(n), String(n)).toBe(n.toLocaleString("en-US"))
  })
})

describe("money", () => {
  it("shows two decimals from a dollar up", () => {
    expect(money(1)).toBe("$1.00")
    expect(money(12.345)).toBe("$12.35")
    expect(money(1204)).toBe("$1,204.00")
  })

  it("shows two significant digits below a dollar, with at least two decimals", () => {
    expect(money(0.5)).toBe("$0.50")
    expect(money(0.123)).toBe("$0.12")
    expect(money(0.0123)).toBe("$0.012")
    expect(money(0.0042)).toBe("$0.0042")
    expect(money(0.00001234)).toBe("$0.000012")
  })

  it("drops zeros past the cents that rounding leaves", () => {
    expect(money(0.00996)).toBe("$0.01")
    expect(money(0.0040001)).toBe("$0.004")
  })

  it("never prints more than six decimals", () => {
    for (const usd of [0.0000012345, 0.000000345, 1e-12, 0.123456789, 0.00012345678]) {
      const decimals = money(usd).split(".")[1] ?? ""
      expect(decimals.length, money(usd)).toBeLessThanOrEqual(6)
    }
    expect(money(1e-9)).toBe("<$0.000001")
  })

  it("says $0.00 for nothing", () => {
    expect(money(0)).toBe("$0.00")
  })
})

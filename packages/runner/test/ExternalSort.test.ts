import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { existsSync, mkdtempSync, readdirSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as ExternalSort from "../src/internal/ExternalSort.js"

/** Records: a 4-byte big-endian key, a 4-byte insertion number, and some padding of varying length. */
const record = (key: number, n: number, pad: number): Buffer => {
  const b = Buffer.alloc(8 + pad, 0x61)
  b.writeUInt32BE(key, 0)
  b.writeUInt32BE(n, 4)
  return b
}

/** Orders by the key's upper 16 bits only as the prefix, so that many records tie on it. */
const order: ExternalSort.Order = {
  prefix: (bytes, at) => bytes.readUInt32BE(at) >>> 16,
  compare: (a, b) => a.readUInt32BE(0) - b.readUInt32BE(0)
}

/** A deterministic PRNG (mulberry32). */
const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = seed
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const sortAll = (records: ReadonlyArray<Buffer>, options: Partial<ExternalSort.Options>) =>
  Effect.gen(function* () {
    const dir = join(mkdtempSync(join(tmpdir(), "sluice-sort-")), "runs")
    const out = yield* Effect.scoped(
      Effect.gen(function* () {
        const sorter = yield* ExternalSort.make({ dir, order, ...options })
        for (const r of records) {
          const io = sorter.add(r)
          if (io !== undefined) yield* io
        }
        const seen: Array<Buffer> = []
        yield* sorter.forEach<never, never>((r) => void seen.push(r))
        // A second pass gives the same order.
        const again: Array<Buffer> = []
        yield* sorter.forEach<never, never>((r) => void again.push(r))
        expect(hex(again)).toEqual(hex(seen))
        // Records handed out stay valid: they are read only after every run was.
        return { seen: hex(seen), spilled: sorter.spilled(), size: sorter.size(), files: readdirSync(dir).length }
      })
    )
    return { ...out, leftover: existsSync(dir) ? readdirSync(dir).length : 0 }
  }).pipe(Effect.provide(NodeContext.layer))

const hex = (records: ReadonlyArray<Buffer>) => records.map((r) => r.toString("hex"))

/** The expected order: by key, ties in insertion order (Array.prototype.sort is stable). */
const expected = (records: ReadonlyArray<Buffer>) => hex([...records].sort(order.compare))

describe("ExternalSort", () => {
  it.effect("sorts in memory when everything fits, writing no run", () =>
    Effect.gen(function* () {
      const next = prng(1)
      const records = Array.from({ length: 500 }, (_, i) => record(Math.floor(next() * 2 ** 32), i, i % 7))
      const { seen, spilled } = yield* sortAll(records, {})
      expect(spilled).toBe(0)
      expect(seen).toEqual(expected(records))
    })
  )

  it.effect("with a small bound: many sorted runs on disk, merged stably; the runs go with the scope", () =>
    Effect.gen(function* () {
      const next = prng(2)
      // Few distinct keys: long stretches of equal keys across runs test the stability.
      const records = Array.from({ length: 5_000 }, (_, i) => record(Math.floor(next() * 40) * 0x01000001, i, Math.floor(next() * 30)))
      const { seen, spilled, size, files, leftover } = yield* sortAll(records, { maxRunRecords: 300 })
      expect(size).toBe(5_000)
      expect(spilled).toBe(16)
      expect(files).toBe(16)
      expect(seen).toEqual(expected(records))
      expect(leftover).toBe(0)
    })
  )

  it.effect("a byte bound, and more runs than one merge takes (merged in passes), keep the order", () =>
    Effect.gen(function* () {
      const next = prng(3)
      const records = Array.from({ length: 3_000 }, (_, i) => record(Math.floor(next() * 2 ** 32), i, Math.floor(next() * 100)))
      const { seen, spilled } = yield* sortAll(records, { maxRunBytes: 4_000, fanIn: 4 })
      // The passes leave at most fanIn runs for the final merge.
      expect(spilled).toBeLessThanOrEqual(4)
      expect(seen).toEqual(expected(records))
    })
  )

  it.effect("a record larger than the bound is taken and sorted like the others", () =>
    Effect.gen(function* () {
      const records = [record(3, 0, 10), record(1, 1, 5_000), record(2, 2, 10), record(1, 3, 10)]
      const { seen, spilled } = yield* sortAll(records, { maxRunBytes: 1_000 })
      expect(spilled).toBeGreaterThanOrEqual(1)
      expect(seen).toEqual(expected(records))
      expect(seen.map((r) => Buffer.from(r, "hex").readUInt32BE(4))).toEqual([1, 3, 2, 0])
    })
  )
})

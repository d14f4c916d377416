import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as DuplicateKeys from "../src/DuplicateKeys.js"
import * as ExternalSort from "../src/internal/ExternalSort.js"

interface Row {
  readonly identity: string
  readonly digest: string
  readonly major: number
  readonly minor: number
  readonly location: string
}

/** A deterministic PRNG (mulberry32). */
const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = seed
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const digest = (n: number) => n.toString(16).padStart(16, "0")

/** Runs `find` over `rows` (added in order) with the given bounds; returns the verdicts by position. */
const findAll = (rows: ReadonlyArray<Row>, bounds: { maxRunRecords?: number; maxGroup?: number }) =>
  Effect.scoped(
    Effect.gen(function* () {
      const dir = mkdtempSync(join(tmpdir(), "sluice-dupkeys-"))
      const runs = bounds.maxRunRecords === undefined ? {} : { maxRunRecords: bounds.maxRunRecords }
      const keys = yield* ExternalSort.make({ dir: `${dir}/keys`, order: DuplicateKeys.keyOrder, ...runs })
      for (const r of rows) {
        const io = keys.add(DuplicateKeys.keyRecord(r.identity, r.digest, r.major, r.minor, r.location, r.minor % 5))
        if (io !== undefined) yield* io
      }
      const verdicts = yield* ExternalSort.make({ dir: `${dir}/verdicts`, order: DuplicateKeys.verdictOrder, ...runs })
      const found = yield* DuplicateKeys.find(keys, verdicts, { spoolDir: dir, ...(bounds.maxGroup === undefined ? {} : { maxGroup: bounds.maxGroup }) })
      const out: Array<DuplicateKeys.Verdict> = []
      yield* verdicts.forEach<never, never>((r) => void out.push(DuplicateKeys.decodeVerdict(r)))
      return { found, verdicts: out, spilled: keys.spilled() }
    })
  ).pipe(Effect.provide(NodeContext.layer))

/** The same verdicts, the obvious way: a map of every identity. */
const reference = (rows: ReadonlyArray<Row>) => {
  const groups = new Map<string, Array<Row>>()
  for (const r of rows) groups.set(r.identity, [...(groups.get(r.identity) ?? []), r])
  const out: Array<DuplicateKeys.Verdict> = []
  for (const group of groups.values()) {
    if (group.length < 2) continue
    const same = group.every((r) => r.digest === group[0]!.digest)
    group.forEach((r, i) => {
      if (same && i === 0) return
      out.push({
        major: r.major,
        minor: r.minor,
        kind: same ? "duplicate" : "conflict",
        rows: group.length,
        tokens: r.minor % 5,
        identity: r.identity,
        location: r.location,
        other: (i === 0 ? group[1]! : group[0]!).location
      })
    })
  }
  return out.sort((a, b) => a.major - b.major || a.minor - b.minor)
}

/** Rows in source order: shards of `perShard` rows, identities and requests drawn from small pools. */
const makeRows = (n: number, seed: number, perShard = 37): Array<Row> => {
  const next = prng(seed)
  return Array.from({ length: n }, (_, i) => {
    const id = Math.floor(next() * n * 0.8)
    // Most repeats of an identity repeat its request too; some do not.
    const request = next() < 0.85 ? id : id + 1_000_000 + Math.floor(next() * 3)
    return {
      identity: `row-${id}`,
      digest: digest(request),
      major: 1 + Math.floor(i / perShard),
      minor: i % perShard,
      location: `data/rows.jsonl:${i + 1}`
    }
  })
}

describe("DuplicateKeys.find", () => {
  it.effect("agrees with a map of every key, in memory and across many sorted runs and spooled groups", () =>
    Effect.gen(function* () {
      const rows = makeRows(4_000, 7)
      const want = reference(rows)
      expect(want.some((v) => v.kind === "duplicate") && want.some((v) => v.kind === "conflict")).toBe(true)
      const inMemory = yield* findAll(rows, {})
      expect(inMemory.spilled).toBe(0)
      expect(inMemory.verdicts).toEqual(want)
      // Runs of 150 records (26 of them on disk) and groups of more than 3 rows spooled to disk.
      const bounded = yield* findAll(rows, { maxRunRecords: 150, maxGroup: 2 })
      expect(bounded.spilled).toBeGreaterThan(20)
      expect(bounded.verdicts).toEqual(want)
      const conflicts = want.filter((v) => v.kind === "conflict")
      expect(bounded.found).toEqual({
        duplicates: want.length - conflicts.length,
        conflictRows: conflicts.length,
        conflictKeys: new Set(conflicts.map((v) => v.identity)).size
      })
    })
  )

  it.effect("one key on every row: the first is the request, the rest duplicates, in bounded memory", () =>
    Effect.gen(function* () {
      const rows = Array.from({ length: 1_000 }, (_, i): Row => ({ identity: "same", digest: digest(1), major: 1, minor: i, location: `a:${i + 1}` }))
      const { found, verdicts } = yield* findAll(rows, { maxRunRecords: 64, maxGroup: 10 })
      expect(found).toEqual({ duplicates: 999, conflictRows: 0, conflictKeys: 0 })
      expect(verdicts.map((v) => v.location)).toEqual(rows.slice(1).map((r) => r.location))
      expect(new Set(verdicts.map((v) => v.other))).toEqual(new Set(["a:1"]))
    })
  )

  it.effect("two keys with the same hash are told apart by their bytes", () =>
    Effect.gen(function* () {
      // Find two distinct identities whose 32-bit hashes (the sort's prefix) collide.
      const seen = new Map<number, string>()
      let pair: [string, string] | undefined
      for (let i = 0; pair === undefined; i++) {
        const id = `key-${i}`
        const h = DuplicateKeys.keyRecord(id, digest(0), 0, 0, "").readUInt32BE(0)
        const other = seen.get(h)
        if (other !== undefined) pair = [other, id]
        else seen.set(h, id)
      }
      const [a, b] = pair
      const rows: Array<Row> = [
        { identity: a, digest: digest(1), major: 1, minor: 0, location: "x:1" },
        { identity: b, digest: digest(2), major: 1, minor: 1, location: "x:2" },
        { identity: a, digest: digest(1), major: 1, minor: 2, location: "x:3" },
        { identity: b, digest: digest(3), major: 1, minor: 3, location: "x:4" }
      ]
      const { verdicts } = yield* findAll(rows, {})
      expect(verdicts).toEqual(reference(rows))
      expect(verdicts.map((v) => [v.location, v.kind])).toEqual([["x:2", "conflict"], ["x:3", "duplicate"], ["x:4", "conflict"]])
    })
  )
})

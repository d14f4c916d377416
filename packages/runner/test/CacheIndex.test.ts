import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { CacheIndex } from "../src/internal/CacheIndex.js"
import * as ResponseCache from "../src/ResponseCache.js"
import type { CachedAnswer } from "../src/ResponseCache.js"

const tmp = () => mkdtempSync(join(tmpdir(), "sluice-cacheindex-"))

const answer = (text: string): CachedAnswer => ({
  text,
  finishReason: "stop",
  usage: { inputTokens: 1, outputTokens: 1, cachedInputTokens: 0 },
  raw: { text }
})

/** 64 hex: `prefix` (8 hex, the fingerprint) then 56 hex made from `n`. */
const keyWith = (prefix: string, n: number) => prefix + createHash("sha256").update(`tail ${n}`).digest("hex").slice(0, 56)
const hashKey = (n: number) => createHash("sha256").update(`key ${n}`).digest("hex")

const withCache = <A, E>(dir: string, f: (cache: ResponseCache.ResponseCache) => Effect.Effect<A, E>) =>
  Effect.scoped(Effect.flatMap(ResponseCache.open(dir), f))

const textOf = (cache: ResponseCache.ResponseCache, key: string): string | undefined => {
  const json = cache.read(key)
  return json === undefined ? undefined : (JSON.parse(json) as { text: string }).text
}

/**
 * Writes a segment by hand, in the format every build so far has written: `<key> <offset>
 * <length>\n` per answer in `.idx`, the answer's JSON per line in `.jsonl`. Returns the idx text.
 */
const writeSegment = (dir: string, name: string, entries: ReadonlyArray<readonly [string, string]>, extraIdx = "") => {
  mkdirSync(join(dir, "v1"), { recursive: true })
  let data = ""
  let at = 0
  let idx = ""
  for (const [key, text] of entries) {
    const json = JSON.stringify({ text, finishReason: "stop", usage: null, raw: null })
    idx += `${key} ${at} ${Buffer.byteLength(json)}\n`
    data += json + "\n"
    at += Buffer.byteLength(json) + 1
  }
  writeFileSync(join(dir, "v1", `${name}.jsonl`), data)
  writeFileSync(join(dir, "v1", `${name}.idx`), idx + extraIdx)
  return idx
}

describe("CacheIndex (the table)", () => {
  it("finds each entry by fingerprint and the caller's full-key check, across growth", () => {
    const index = new CacheIndex(16)
    // Positions stand for keys here: entry i has position i*100 and fingerprint i % 7, so
    // most fingerprints are shared by many entries; only the matcher tells them apart.
    const n = 5000
    for (let i = 0; i < n; i++) index.add(i % 7, i * 100)
    expect(index.count).toBe(n)
    for (const i of [0, 1, 6, 7, 2500, 4999]) {
      expect(index.find(i % 7, (p) => p === i * 100)).toBe(i * 100)
    }
    // A fingerprint held, but no entry whose key matches: a miss, after checking each candidate.
    let checked = 0
    expect(index.find(3, () => (checked++, false))).toBe(-1)
    expect(checked).toBe(Math.ceil((n - 3) / 7))
    // A fingerprint not held: a miss without a check.
    expect(index.find(123456, () => {
      throw new Error("no candidate should be checked")
    })).toBe(-1)
  })

  it("holds fingerprints of all 32 bits and positions up to 2^40, and ignores positions past that", () => {
    const index = new CacheIndex()
    index.add(0xffffffff, 2 ** 40 - 2)
    index.add(0, 0)
    index.add(0x80000000, 2 ** 33 + 5)
    index.add(1, 2 ** 40) // past what a slot holds: not indexed
    expect(index.count).toBe(3)
    expect(index.find(0xffffffff, () => true)).toBe(2 ** 40 - 2)
    expect(index.find(0, () => true)).toBe(0)
    expect(index.find(0x80000000, () => true)).toBe(2 ** 33 + 5)
    expect(index.find(1, () => true)).toBe(-1)
  })

  it("keeps about 13 bytes per entry once reserved", () => {
    const index = new CacheIndex(100_000)
    for (let i = 0; i < 100_000; i++) index.add((i * 2654435761) >>> 0, i * 80)
    expect(index.bytes() / index.count).toBeLessThan(14)
  })
})

describe("ResponseCache lookups through the compact index", () => {
  it.effect("keys that share their first 32 bits are told apart by the full key, before and after reopening", () =>
    Effect.gen(function* () {
      const dir = tmp()
      const a = keyWith("0badcafe", 1)
      const b = keyWith("0badcafe", 2)
      const c = keyWith("0badcafe", 3)
      yield* withCache(dir, (cache) =>
        Effect.gen(function* () {
          cache.put(a, answer("A"))
          yield* cache.flush
          // b shares a's fingerprint and is not stored: no false hit.
          expect(cache.has(b)).toBe(false)
          expect(cache.read(b)).toBeUndefined()
          expect(cache.put(b, answer("B"))).toBe(false)
          yield* cache.flush
          expect(textOf(cache, a)).toBe("A")
          expect(textOf(cache, b)).toBe("B")
        })
      )
      yield* withCache(dir, (cache) =>
        Effect.sync(() => {
          expect(cache.size()).toBe(2)
          expect(textOf(cache, a)).toBe("A")
          expect(textOf(cache, b)).toBe("B")
          expect(cache.has(c)).toBe(false)
          expect(cache.read(c)).toBeUndefined()
        })
      )
    }))

  it.effect("a cache written by an earlier build opens: duplicates across segments, lines across the load's 1 MiB pieces, an overlong garbage line, a torn tail", () =>
    Effect.gen(function* () {
      const dir = tmp()
      // ~15,000 index lines of ~80 bytes: more than one 1 MiB piece of the index file.
      const many = Array.from({ length: 15_000 }, (_, i) => [hashKey(i), `old ${i}`] as const)
      const garbage = "x".repeat((1 << 20) + 10) + "\n"
      writeSegment(dir, "seg-1000-1-aaaaaaaa", many)
      // The second segment stores key 0 again (the first copy wins) and a key of its own; its
      // index holds a garbage line longer than a load piece, then a valid line pointing at a
      // second data line, then a torn last line.
      const second = writeSegment(dir, "seg-2000-1-bbbbbbbb", [[hashKey(0), "newer copy"], [hashKey(20_001), "second"]])
      const secondLines = second.split("\n")
      const idxText = secondLines[0] + "\n" + garbage + secondLines[1] + "\n" + hashKey(20_002).slice(0, 40)
      writeFileSync(join(dir, "v1", "seg-2000-1-bbbbbbbb.idx"), idxText)
      yield* withCache(dir, (cache) =>
        Effect.sync(() => {
          expect(cache.size()).toBe(15_001)
          // Key 0: the older segment's copy.
          for (const i of [0, 1, 6_000, 12_345, 14_999]) expect(textOf(cache, hashKey(i))).toBe(`old ${i}`)
          expect(textOf(cache, hashKey(20_001))).toBe("second")
          expect(cache.has(hashKey(20_002))).toBe(false)
          expect(cache.has(hashKey(15_000))).toBe(false)
          // Every line is found, in order and out of it.
          let found = 0
          for (let i = 0; i < many.length; i++) if (textOf(cache, hashKey(i)) === `old ${i}`) found++
          for (let i = many.length - 1; i >= 0; i -= 7) if (cache.has(hashKey(i))) found++
          expect(found).toBe(15_000 + Math.ceil(15_000 / 7))
        })
      )
    }))

  it.effect("answers flushed after their index block was read are found (the block is read again)", () =>
    Effect.gen(function* () {
      const dir = tmp()
      yield* withCache(dir, (cache) =>
        Effect.gen(function* () {
          cache.put(hashKey(1), answer("one"))
          yield* cache.flush
          // Reads the first block of this process's own index, while it holds one line.
          expect(textOf(cache, hashKey(1))).toBe("one")
          for (let i = 2; i < 20; i++) {
            cache.put(hashKey(i), answer(`n${i}`))
            yield* cache.flush
            for (let j = 1; j <= i; j++) expect(textOf(cache, hashKey(j))).toBe(j === 1 ? "one" : `n${j}`)
          }
        })
      )
    }))

  it.effect("a segment deleted while the cache is open reads as missing, not an error", () =>
    Effect.gen(function* () {
      const dir = tmp()
      writeSegment(dir, "seg-1000-1-aaaaaaaa", [[hashKey(1), "one"]])
      writeSegment(dir, "seg-2000-1-bbbbbbbb", [[hashKey(2), "two"]])
      yield* withCache(dir, (cache) =>
        Effect.sync(() => {
          for (const name of readdirSync(join(dir, "v1"))) if (name.startsWith("seg-1000")) rmSync(join(dir, "v1", name))
          expect(cache.has(hashKey(1))).toBe(false)
          expect(cache.read(hashKey(1))).toBeUndefined()
          expect(textOf(cache, hashKey(2))).toBe("two")
        })
      )
    }))

  it.effect("the on-disk format is unchanged: an index line per answer, `<key> <offset> <length>`", () =>
    Effect.gen(function* () {
      const dir = tmp()
      yield* withCache(dir, (cache) => Effect.sync(() => cache.put(hashKey(7), answer("seven"))))
      const idx = readdirSync(join(dir, "v1")).find((n) => n.endsWith(".idx"))!
      const data = readdirSync(join(dir, "v1")).find((n) => n.endsWith(".jsonl"))!
      const [key, offset, length] = readFileSync(join(dir, "v1", idx), "utf8").trimEnd().split(" ")
      expect(key).toBe(hashKey(7))
      const stored = readFileSync(join(dir, "v1", data)).subarray(Number(offset), Number(offset) + Number(length)).toString()
      expect(JSON.parse(stored).text).toBe("seven")
    }))
})

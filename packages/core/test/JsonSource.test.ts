import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Either, Schema, Stream } from "effect"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "vitest"
import { JsonArraySplitter } from "../src/internal/jsonArray.js"
import * as Source from "../src/Source.js"
import type { SourceItem } from "../src/Source.js"

const dir = mkdtempSync(join(tmpdir(), "sluice-json-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const file = (name: string, content: string | Uint8Array): string => {
  const path = join(dir, name)
  writeFileSync(path, content)
  return path
}

const collect = <A>(source: Source.Source<A>) =>
  source.rows.pipe(Stream.runCollect, Effect.map(Chunk.toArray), Effect.provide(NodeFileSystem.layer))

/** The items before the stream ended, and its error if it failed. */
const collectAll = <A>(source: Source.Source<A>) =>
  Effect.gen(function*() {
    const items: Array<SourceItem<A>> = []
    const result = yield* source.rows.pipe(
      Stream.runForEach((item) => Effect.sync(() => items.push(item))),
      Effect.either,
      Effect.provide(NodeFileSystem.layer)
    )
    return { items, error: Either.isLeft(result) ? result.left : undefined }
  })

const summary = <A>(items: ReadonlyArray<SourceItem<A>>) =>
  items.map((i) => (i._tag === "Row" ? { row: i.row, at: i.location } : { invalid: i.location }))

const Review = Schema.Struct({ id: Schema.String, stars: Schema.Int })

describe("Source.json", () => {
  it.effect("yields the array's elements with locations path:[index]", () =>
    Effect.gen(function*() {
      const path = file(
        "reviews.json",
        `\ufeff[\n  {"id": "a", "stars": 5},\n  {"id": "b, [with] {brackets}", "stars": 4},\r\n  {"id": "c \\"quoted\\" \\\\", "stars": 3}\n]\n`
      )
      const items = yield* collect(Source.json(path, Review))
      expect(summary(items)).toEqual([
        { row: { id: "a", stars: 5 }, at: `${path}:[0]` },
        { row: { id: "b, [with] {brackets}", stars: 4 }, at: `${path}:[1]` },
        { row: { id: `c "quoted" \\`, stars: 3 }, at: `${path}:[2]` }
      ])
      expect(yield* collect(Source.json(file("empty.json", " [ ] "), Review))).toEqual([])
    }))

  it.effect("reports an invalid element as an Invalid item and reads on", () =>
    Effect.gen(function*() {
      const path = file(
        "bad.json",
        `[{"id":"a","stars":5}, {"id":"b","stars":tru}, {"id":"c","stars":"five"},, {"id":"d","stars":[1}]}, {"id":"e","stars":2},]`
      )
      const items = yield* collect(Source.json(path, Review))
      expect(summary(items)).toEqual([
        { row: { id: "a", stars: 5 }, at: `${path}:[0]` },
        { invalid: `${path}:[1]` },
        { invalid: `${path}:[2]` },
        { invalid: `${path}:[3]` },
        { invalid: `${path}:[4]` },
        { row: { id: "e", stars: 2 }, at: `${path}:[5]` },
        { invalid: `${path}:[6]` }
      ])
      const messages = items.map((i) => (i._tag === "Invalid" ? i.message : ""))
      expect(messages[1]).toMatch(/^invalid JSON: /)
      expect(messages[2]).toMatch(/^does not match schema: [\s\S]*stars/)
      expect(messages[3]).toBe("empty element (a stray comma)")
      expect(messages[4]).toMatch(/^invalid JSON: /)
      expect(messages[6]).toBe("empty element (a stray comma)")
    }))

  it.effect("fails with a SourceError when the file is not an array", () =>
    Effect.gen(function*() {
      for (
        const [name, content, pattern] of [
          ["object.json", `{"id":"a","stars":5}`, /not a JSON array: it starts with "\{"/],
          ["blank.json", ``, /not a JSON array: the file is empty/],
          ["spaces.json", `  \n `, /not a JSON array: the file holds only whitespace/],
          ["lines.jsonl", `{"id":"a"}\n{"id":"b"}\n`, /not a JSON array/]
        ] as const
      ) {
        const { error, items } = yield* collectAll(Source.json(file(name, content), Review))
        expect(items).toEqual([])
        expect(error?._tag).toBe("SourceError")
        expect(error?.message).toMatch(pattern)
      }
      const missing = yield* Effect.flip(collect(Source.json(join(dir, "nope.json"), Review)))
      expect(missing.message).toMatch(/file not found/)
    }))

  it.effect("a truncated array or trailing content fails after the elements before it", () =>
    Effect.gen(function*() {
      const truncated = yield* collectAll(Source.json(file("cut.json", `[{"id":"a","stars":1}, {"id":"b","st`), Review))
      expect(summary(truncated.items)).toEqual([{ row: { id: "a", stars: 1 }, at: `${join(dir, "cut.json")}:[0]` }])
      expect(truncated.error?.message).toMatch(/ends before the array's closing "\]" \(inside element \[1\]\)/)
      const trailing = yield* collectAll(Source.json(file("two.json", `[{"id":"a","stars":1}] [2]`), Review))
      expect(trailing.items).toHaveLength(1)
      expect(trailing.error?.message).toMatch(/unexpected "\[" at byte 23, after the array's closing "\]"/)
    }))

  it.effect("streams a large array across chunk boundaries, including multi-byte characters", () =>
    Effect.gen(function*() {
      // Several read chunks (256 KiB each) with multi-byte text and nested values that chunks split.
      const rows = Array.from({ length: 20_000 }, (_, i) => ({ id: `é€😀-${i} "q" [x] {y}`.repeat(3), stars: i }))
      const path = file("big.json", JSON.stringify(rows, null, 1))
      const items = yield* collect(Source.json(path, Review))
      expect(items).toHaveLength(20_000)
      expect(items.every((i) => i._tag === "Row")).toBe(true)
      expect(items[19_999]).toEqual({ _tag: "Row", row: rows[19_999], location: `${path}:[19999]` })
    }))
})

describe("JsonArraySplitter", () => {
  it("finds the same elements whatever the chunking", () => {
    const text = `[1, "a,]b", {"k": [1, {"x": "}"}]}, null, "\\"", [[]], "é😀"]`
    const bytes = new TextEncoder().encode(text)
    const expected = [`1`, `"a,]b"`, `{"k": [1, {"x": "}"}]}`, `null`, `"\\""`, `[[]]`, `"é😀"`]
    for (const size of [1, 2, 3, 5, 7, bytes.length]) {
      const splitter = new JsonArraySplitter()
      const out: Array<string> = []
      for (let i = 0; i < bytes.length; i += size) {
        expect(splitter.push(bytes.subarray(i, i + size), (t) => out.push(t))).toBeUndefined()
      }
      expect(splitter.end()).toBeUndefined()
      expect(out).toEqual(expected)
    }
  })
})

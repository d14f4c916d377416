import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Schema, Stream } from "effect"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "vitest"
import * as Source from "../src/Source.js"
import type { SourceItem } from "../src/Source.js"

const dir = mkdtempSync(join(tmpdir(), "sluice-source-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const file = (name: string, content: string | Uint8Array): string => {
  const path = join(dir, name)
  writeFileSync(path, content)
  return path
}

const collect = <A>(source: Source.Source<A>) =>
  source.rows.pipe(Stream.runCollect, Effect.map(Chunk.toArray), Effect.provide(NodeFileSystem.layer))

const summary = <A>(items: ReadonlyArray<SourceItem<A>>) =>
  items.map((i) => (i._tag === "Row" ? { row: i.row, at: i.location } : { invalid: i.location }))

const Review = Schema.Struct({ id: Schema.String, stars: Schema.Int })

describe("Source.jsonl", () => {
  it.effect("yields valid rows and reports bad lines with their line numbers", () =>
    Effect.gen(function*() {
      const path = file(
        "reviews.jsonl",
        [
          `{"id":"a","stars":5}`,
          ``,
          `{"id":"b","stars":`,
          `{"id":"c","stars":"five"}`,
          `   `,
          `{"id":"d","stars":3}`
        ].join("\n")
      )
      const items = yield* collect(Source.jsonl(path, Review))
      expect(summary(items)).toEqual([
        { row: { id: "a", stars: 5 }, at: `${path}:1` },
        { invalid: `${path}:3` },
        { invalid: `${path}:4` },
        { row: { id: "d", stars: 3 }, at: `${path}:6` }
      ])
      const [, badJson, badSchema] = items as Array<Source.SourceInvalid>
      expect(badJson!.message).toMatch(/^invalid JSON: /)
      expect(badSchema!.message).toMatch(/^does not match schema: /)
      expect(badSchema!.message).toMatch(/stars/)
    }))

  it.effect("handles a BOM, CRLF and no trailing newline", () =>
    Effect.gen(function*() {
      const path = file("bom.jsonl", `\ufeff{"id":"a","stars":1}\r\n\r\n{"id":"b","stars":2}\r\n{"id":"c","stars":3}`)
      const items = yield* collect(Source.jsonl(path, Review))
      expect(summary(items)).toEqual([
        { row: { id: "a", stars: 1 }, at: `${path}:1` },
        { row: { id: "b", stars: 2 }, at: `${path}:3` },
        { row: { id: "c", stars: 3 }, at: `${path}:4` }
      ])
    }))

  it.effect("splits lines across chunk boundaries, including multi-byte characters", () =>
    Effect.gen(function*() {
      // Larger than one read chunk (256 KiB), with multi-byte text that chunks split.
      const lines = Array.from({ length: 5000 }, (_, i) => JSON.stringify({ id: `é€😀-${i}`.repeat(20), stars: i }))
      const path = file("big.jsonl", lines.join("\n") + "\n")
      const items = yield* collect(Source.jsonl(path, Review))
      expect(items).toHaveLength(5000)
      expect(items.every((i) => i._tag === "Row")).toBe(true)
      expect(items[4999]).toEqual({ _tag: "Row", row: { id: `é€😀-4999`.repeat(20), stars: 4999 }, location: `${path}:5000` })
    }))

  it.effect("fails with a SourceError naming a missing file", () =>
    Effect.gen(function*() {
      const path = join(dir, "nope.jsonl")
      const error = yield* Effect.flip(collect(Source.jsonl(path, Review)))
      expect(error._tag).toBe("SourceError")
      expect(error.message).toContain(path)
    }))

  it.effect("can be read twice (resume re-reads the source)", () =>
    Effect.gen(function*() {
      const path = file("twice.jsonl", `{"id":"a","stars":1}\n{"id":"b","stars":2}`)
      const source = Source.jsonl(path, Review)
      const first = yield* collect(source)
      const second = yield* collect(source)
      expect(second).toEqual(first)
      expect(first).toHaveLength(2)
    }))
})

const Row = Schema.Struct({ id: Schema.NumberFromString, text: Schema.String, n: Schema.NumberFromString })

describe("Source.csv", () => {
  it.effect("parses quoted commas and newlines and reports malformed records by line", () =>
    Effect.gen(function*() {
      const path = file(
        "rows.csv",
        [
          `id,text,n`,
          `1,"hello, world",3`,
          `2,"multi`,
          `line`,
          `field",4`,
          ``,
          `3,too few`,
          `4,"""quoted""",x`,
          `5,ok,6`,
          `6,extra,7,8`,
          `7,last,9`
        ].join("\r\n")
      )
      const items = yield* collect(Source.csv(path, Row))
      expect(summary(items)).toEqual([
        { row: { id: 1, text: "hello, world", n: 3 }, at: `${path}:2` },
        { row: { id: 2, text: "multi\r\nline\r\nfield", n: 4 }, at: `${path}:3` },
        { invalid: `${path}:7` },
        { invalid: `${path}:8` },
        { row: { id: 5, text: "ok", n: 6 }, at: `${path}:9` },
        { invalid: `${path}:10` },
        { row: { id: 7, text: "last", n: 9 }, at: `${path}:11` }
      ])
      const invalid = items.filter((i): i is Source.SourceInvalid => i._tag === "Invalid")
      expect(invalid[0]!.message).toMatch(/expected 3 fields \(id, text, n\), got 2/)
      expect(invalid[1]!.message).toMatch(/does not match schema: [\s\S]*\["n"\]/)
      expect(invalid[2]!.message).toMatch(/got 4/)
    }))

  it.effect("reports broken quoting as an Invalid item instead of failing", () =>
    Effect.gen(function*() {
      const path = file("broken.csv", `id,text,n\n1,a,2\n2,b"c,3\n3,d,4\n4,"unclosed,5\n`)
      const items = yield* collect(Source.csv(path, Row))
      expect(summary(items)).toEqual([
        { row: { id: 1, text: "a", n: 2 }, at: `${path}:2` },
        { invalid: `${path}:3` },
        { row: { id: 3, text: "d", n: 4 }, at: `${path}:4` },
        { invalid: `${path}:5` }
      ])
      expect((items[1] as Source.SourceInvalid).message).toMatch(/^malformed CSV: /)
    }))

  it.effect("strips a BOM from the header and supports a delimiter and given columns", () =>
    Effect.gen(function*() {
      const bom = file("bom.csv", `\ufeffid;text;n\n1;a;2\n`)
      const items = yield* collect(Source.csv(bom, Row, { delimiter: ";" }))
      expect(summary(items)).toEqual([{ row: { id: 1, text: "a", n: 2 }, at: `${bom}:2` }])

      const headless = file("headless.csv", `1,a,2\n2,b,3\n`)
      const rows = yield* collect(Source.csv(headless, Row, { columns: ["id", "text", "n"] }))
      expect(summary(rows)).toEqual([
        { row: { id: 1, text: "a", n: 2 }, at: `${headless}:1` },
        { row: { id: 2, text: "b", n: 3 }, at: `${headless}:2` }
      ])
    }))

  it.effect("counts lines right across chunks and CRLF inside quotes", () =>
    Effect.gen(function*() {
      const body = Array.from({ length: 20000 }, (_, i) => `${i},"line one\r\nline two ${"x".repeat(20)}",${i}`)
      const path = file("many.csv", `id,text,n\r\n${body.join("\r\n")}\r\n`)
      const items = yield* collect(Source.csv(path, Row))
      expect(items).toHaveLength(20000)
      expect(items[19999]).toMatchObject({ _tag: "Row", location: `${path}:${2 + 19999 * 2}` })
    }))

  it.effect("stops early without reading the rest", () =>
    Effect.gen(function*() {
      const path = file("early.csv", `id,text,n\n1,a,2\n2,b,3\n3,c,4\n`)
      const first = yield* Source.csv(path, Row).rows.pipe(
        Stream.take(1),
        Stream.runCollect,
        Effect.provide(NodeFileSystem.layer)
      )
      expect(Chunk.toArray(first)).toEqual([{ _tag: "Row", row: { id: 1, text: "a", n: 2 }, location: `${path}:2` }])
    }))

  it.effect("turns a throwing transformation into an Invalid item", () =>
    Effect.gen(function*() {
      const path = file("throws.csv", `id\n1\n`)
      const Throws = Schema.Struct({
        id: Schema.transform(Schema.String, Schema.String, {
          strict: true,
          decode: () => {
            throw new Error("boom")
          },
          encode: (s) => s
        })
      })
      const items = yield* collect(Source.csv(path, Throws))
      expect(items).toEqual([{ _tag: "Invalid", location: `${path}:2`, message: "cannot be decoded: boom" }])
    }))

  it.effect("fails with a SourceError for a missing file", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(collect(Source.csv(join(dir, "missing.csv"), Row)))
      expect(error.message).toContain("missing.csv")
    }))
})

describe("Source.array / fromStream", () => {
  it.effect("numbers rows from 1", () =>
    Effect.gen(function*() {
      const items = yield* collect(Source.array(["a", "b"], "mem"))
      expect(items).toEqual([
        { _tag: "Row", row: "a", location: "mem:1" },
        { _tag: "Row", row: "b", location: "mem:2" }
      ])
    }))

  it.effect("maps a stream's failure into a SourceError", () =>
    Effect.gen(function*() {
      const source = Source.fromStream("db", Stream.concat(Stream.make(1, 2), Stream.fail(new Error("connection lost"))))
      const error = yield* Effect.flip(collect(source))
      expect(error).toBeInstanceOf(Source.SourceError)
      expect(error.message).toBe("source db: connection lost")
      const ok = yield* collect(Source.fromStream("db", Stream.make(1)))
      expect(ok).toEqual([{ _tag: "Row", row: 1, location: "db:1" }])
    }))
})

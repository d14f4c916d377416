/**
 * CSV files the property tests (Source.property.test.ts) found misread, kept as plain cases:
 * a record with an unclosed quote was placed at the line csv-parse gave up on (past the end of
 * the file), and a column named `__proto__` vanished.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Schema, Stream } from "effect"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "vitest"
import * as Source from "../src/Source.js"

const dir = mkdtempSync(join(tmpdir(), "sluice-source-regressions-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const csv = (name: string, content: string) => {
  const path = join(dir, name)
  writeFileSync(path, content)
  return Source.csv(path, Schema.Unknown).rows.pipe(
    Stream.runCollect,
    Effect.map((items) => Chunk.toArray(items).map((i) => (i._tag === "Row" ? { row: { ...(i.row as object) }, at: i.location.slice(path.length) } : { invalid: i.location.slice(path.length) }))),
    Effect.provide(NodeFileSystem.layer)
  )
}

describe("Source.csv: where a malformed record is", () => {
  it.effect("an unclosed quote is reported at the line its record starts on, not past the end of the file", () =>
    Effect.gen(function*() {
      // Four lines; the quote opens on line 2 (it used to be reported at line 5).
      expect(yield* csv("unclosed.csv", "z_4_z,a6p,toString,x\n,,\",\n\r\n,")).toEqual([{ invalid: ":2" }])
      expect(yield* csv("unclosed-first.csv", "a\n\",x\ny")).toEqual([{ invalid: ":2" }])
      // Blank lines before it are skipped, as csv-parse skips them.
      expect(yield* csv("blank-before.csv", "a,b\n1,2\n\n\n\"3,4\n5,6\n")).toEqual([{ row: { a: "1", b: "2" }, at: ":2" }, { invalid: ":5" }])
      expect(yield* csv("blank-before-crlf.csv", "a,b\r\n1,2\r\n\r\n\"3,4\r\n5,6\r\n")).toEqual([{ row: { a: "1", b: "2" }, at: ":2" }, { invalid: ":4" }])
      // In a file of LF lines, a line holding only CR is a record, not an empty line.
      expect(yield* csv("cr-line.csv", "a,b\n1,2\n\r\n\"3,4\n")).toEqual([{ row: { a: "1", b: "2" }, at: ":2" }, { invalid: ":3" }, { invalid: ":4" }])
    })
  )
})

describe("Source.csv: column names", () => {
  it.effect("a column named __proto__ is a field like any other", () =>
    Effect.gen(function*() {
      const [item] = yield* csv("proto.csv", "__proto__,a\n1,2\n")
      expect(item).toEqual({ row: Object.fromEntries([["__proto__", "1"], ["a", "2"]]), at: ":2" })
    })
  )
})

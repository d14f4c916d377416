import { FileSystem } from "@effect/platform"
import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Layer, Schema, Stream } from "effect"
import { parquetMetadata, parquetReadObjects } from "hyparquet"
import { parquetWriteFile } from "hyparquet-writer"
import { createHash } from "node:crypto"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "vitest"
import * as Sink from "../src/Sink.js"
import type { SinkCheckpoint, SinkRecord } from "../src/Sink.js"
import * as Source from "../src/Source.js"
import type { SourceItem } from "../src/Source.js"
import { writeAccepted } from "./support/sinks.js"

const dir = mkdtempSync(join(tmpdir(), "sluice-parquet-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

interface Review {
  readonly id: string
  readonly stars: number
  readonly verified: boolean
  readonly text: string | null
}
interface Label {
  readonly sentiment: string
  readonly score: number
  readonly topics: ReadonlyArray<string>
}

const ReviewSchema = Schema.Struct({
  id: Schema.String,
  stars: Schema.Number,
  verified: Schema.Boolean,
  text: Schema.NullOr(Schema.String)
})

const rec = (i: number): SinkRecord<Review, Label> => ({
  key: `r${i}`,
  customId: `label-r${i}-abc`,
  input: { id: `r${i}`, stars: i % 5, verified: i % 2 === 0, text: i % 3 === 0 ? null : `text ${i} é` },
  output: { sentiment: i % 2 === 0 ? "positive" : "negative", score: i / 10, topics: ["a", `t${i}`] }
})

const withWriter = <R, A, E>(
  sink: Sink.Sink<R>,
  resume: SinkCheckpoint | undefined,
  f: (w: Sink.SinkWriter<R>) => Effect.Effect<A, E>
) => Effect.scoped(Effect.flatMap(sink.open(resume), f)).pipe(Effect.provide(NodeFileSystem.layer))

const collect = <A>(source: Source.Source<A>, layer: Layer.Layer<FileSystem.FileSystem> = NodeFileSystem.layer) =>
  source.rows.pipe(Stream.runCollect, Effect.map(Chunk.toArray), Effect.provide(layer))

const toArrayBuffer = (path: string): ArrayBuffer => {
  const b = readFileSync(path)
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)
}

/** Reads a dataset directory back with hyparquet alone: its committed parts, in order. */
const readDataset = async (path: string): Promise<Array<Record<string, unknown>>> => {
  const parts = readdirSync(path).filter((f) => /^part-\d+\.parquet$/.test(f)).sort()
  const rows: Array<Record<string, unknown>> = []
  for (const p of parts) rows.push(...(await parquetReadObjects({ file: toArrayBuffer(join(path, p)) })))
  return rows
}

const listing = (path: string) => readdirSync(path).sort()

describe("Sink.parquet", () => {
  it("is assignable to a sink of any record type", () => {
    const s: Sink.Sink<SinkRecord<Review, Label>> = Sink.parquet("x")
    const t: Sink.Sink<SinkRecord<number, string>> = Sink.parquet("x", { rowGroupSize: 10, codec: "UNCOMPRESSED" })
    expect([s.name, t.name]).toEqual(["parquet:x", "parquet:x"])
  })

  it.effect("round trip: a Parquet source through the sink, read back with hyparquet", () =>
    Effect.gen(function*() {
      // An input file written by another tool (hyparquet-writer directly).
      const input = join(dir, "reviews.parquet")
      const reviews = Array.from({ length: 25 }, (_, i) => rec(i).input)
      parquetWriteFile({
        filename: input,
        columnData: [
          { name: "id", data: reviews.map((r) => r.id), type: "STRING" },
          { name: "stars", data: reviews.map((r) => r.stars), type: "DOUBLE" },
          { name: "verified", data: reviews.map((r) => r.verified), type: "BOOLEAN" },
          { name: "text", data: reviews.map((r) => r.text), type: "STRING" }
        ],
        rowGroupSize: 10
      })
      const items = yield* collect(Source.parquet(input, ReviewSchema))
      expect(items).toHaveLength(25)
      expect(items[0]).toEqual({ _tag: "Row", row: reviews[0], location: `${input}:row 1` })
      expect(items[24]).toEqual({ _tag: "Row", row: reviews[24], location: `${input}:row 25` })

      const out = join(dir, "round", "labels.parquet")
      const sink = Sink.parquet<Review, Label>(out, { rowGroupSize: 7 })
      const cp = yield* withWriter(sink, undefined, (w) =>
        Effect.gen(function*() {
          for (const item of items) {
            if (item._tag !== "Row") continue
            const i = Number(item.row.id.slice(1))
            yield* w.write([{ ...rec(i), input: item.row }])
          }
          return yield* w.commit
        }))
      expect(cp).toEqual({ offset: 1 })
      expect(listing(out)).toEqual(["part-00001.parquet"])

      const rows = yield* Effect.promise(() => readDataset(out))
      expect(rows).toHaveLength(25)
      expect(rows[3]).toEqual({
        key: "r3",
        custom_id: "label-r3-abc",
        "input.id": "r3",
        "input.stars": 3,
        "input.verified": false,
        "input.text": null,
        "output.sentiment": "negative",
        "output.score": 0.3,
        "output.topics": `["a","t3"]`
      })
      // Typed columns: from the first record's values.
      const metadata = parquetMetadata(toArrayBuffer(join(out, "part-00001.parquet")))
      expect(metadata.schema.slice(1).map((e) => [e.name, e.type])).toEqual([
        ["key", "BYTE_ARRAY"],
        ["custom_id", "BYTE_ARRAY"],
        ["input.id", "BYTE_ARRAY"],
        ["input.stars", "DOUBLE"],
        ["input.verified", "BOOLEAN"],
        ["input.text", "BYTE_ARRAY"],
        ["output.sentiment", "BYTE_ARRAY"],
        ["output.score", "DOUBLE"],
        ["output.topics", "BYTE_ARRAY"]
      ])
      expect(metadata.row_groups.map((g) => Number(g.num_rows))).toEqual([7, 7, 7, 4])

      // The sink's own output directory reads back as a source too.
      const Flat = Schema.Struct({ key: Schema.String, "output.score": Schema.Number })
      const again = yield* collect(Source.parquet(out, Flat))
      expect(again.map((i) => (i._tag === "Row" ? i.row.key : i.message))).toEqual(rows.map((r) => r.key))
      expect(again[1]!.location).toBe(`${join(out, "part-00001.parquet")}:row 2`)
    }))

  it.effect("crash and resume: the uncommitted part is discarded and every row appears once", () =>
    Effect.gen(function*() {
      const out = join(dir, "resume.parquet")
      const sink = Sink.parquet<Review, Label>(out, { rowGroupSize: 2 })
      // Session 1: two commits, then rows written (row groups flushed to disk) but not committed.
      const cp1 = yield* withWriter(sink, undefined, (w) =>
        Effect.gen(function*() {
          yield* w.write([rec(1), rec(2), rec(3)])
          yield* w.commit
          yield* w.write([rec(4)])
          const cp = yield* w.commit
          yield* w.write([rec(5), rec(6), rec(7)]) // a crash before the commit
          return cp
        }))
      expect(cp1).toEqual({ offset: 2 })
      expect(listing(out)).toEqual([".part-00003.parquet.tmp", "part-00001.parquet", "part-00002.parquet"])
      // A crash after a part was renamed but before the runner journaled its checkpoint.
      writeFileSync(join(out, "part-00003.parquet"), "renamed, never journaled")
      writeFileSync(join(out, "notes.txt"), "not ours")

      // Session 2: resume from the journaled checkpoint; the collector writes 5..7 again.
      const cp2 = yield* withWriter(sink, cp1, (w) =>
        Effect.gen(function*() {
          yield* w.write([rec(5), rec(6), rec(7)])
          return yield* w.commit
        }))
      expect(cp2).toEqual({ offset: 3 })
      expect(listing(out)).toEqual(["notes.txt", "part-00001.parquet", "part-00002.parquet", "part-00003.parquet"])
      const rows = yield* Effect.promise(() => readDataset(out))
      expect(rows.map((r) => r.key)).toEqual(["r1", "r2", "r3", "r4", "r5", "r6", "r7"])
      // The resumed part keeps the columns of the first.
      const metadata = parquetMetadata(toArrayBuffer(join(out, "part-00003.parquet")))
      expect(metadata.schema.slice(1).map((e) => e.name)).toContain("output.topics")

      // Session 3: nothing new; a commit adds no part.
      const cp3 = yield* withWriter(sink, cp2, (w) => w.commit)
      expect(cp3).toEqual(cp2)

      // A fresh run starts the dataset over, leaving other files alone — at its first commit:
      // one that stops before (bad input found while planning) leaves the dataset as it was.
      yield* withWriter(sink, undefined, () => Effect.void)
      expect(listing(out)).toEqual(["notes.txt", "part-00001.parquet", "part-00002.parquet", "part-00003.parquet"])
      const cp4 = yield* withWriter(sink, undefined, (w) => Effect.zipRight(w.write([rec(9)]), w.commit))
      expect(cp4).toEqual({ offset: 1 })
      expect(listing(out)).toEqual(["notes.txt", "part-00001.parquet"])
      expect((yield* Effect.promise(() => readDataset(out))).map((r) => r.key)).toEqual(["r9"])
    }))

  it.effect("fails when committed parts are missing, or the path is a file", () =>
    Effect.gen(function*() {
      const out = join(dir, "tampered.parquet")
      const cp = yield* withWriter(Sink.parquet(out), undefined, (w) => Effect.zipRight(w.write([rec(1)]), w.commit))
      rmSync(join(out, "part-00001.parquet"))
      const missing = yield* Effect.flip(withWriter(Sink.parquet(out), cp, () => Effect.void))
      expect(missing.message).toMatch(/part-00001\.parquet is missing/)
      const gone = yield* Effect.flip(withWriter(Sink.parquet(join(dir, "gone.parquet")), cp, () => Effect.void))
      expect(gone.message).toMatch(/is missing/)
      const file = join(dir, "file.parquet")
      writeFileSync(file, "x")
      const notDir = yield* Effect.flip(withWriter(Sink.parquet(file), undefined, () => Effect.void))
      expect(notDir.message).toMatch(/not a directory/)
    }))

  it.effect("types come from the first non-null values; a value of another type fails loudly", () =>
    Effect.gen(function*() {
      const out = join(dir, "types.parquet")
      const sink = Sink.parquet<number, unknown>(out, {
        columns: (r) => ({ n: r.input, maybe: r.input === 1 ? null : r.input * 2, flag: r.input > 1 })
      })
      const cp = yield* withWriter(sink, undefined, (w) =>
        Effect.zipRight(
          w.write([1, 2, 3].map((i) => ({ key: `k${i}`, customId: `c${i}`, input: i, output: null }))),
          w.commit
        ))
      expect(cp.offset).toBe(1)
      const rows = yield* Effect.promise(() => readDataset(out))
      expect(rows).toEqual([
        { n: 1, maybe: null, flag: false },
        { n: 2, maybe: 4, flag: true },
        { n: 3, maybe: 6, flag: true }
      ])
      const bad = Sink.parquet<unknown, unknown>(join(dir, "mixed.parquet"), { columns: (r) => ({ v: r.input }) })
      const error = yield* Effect.flip(withWriter(bad, undefined, (w) =>
        Effect.zipRight(
          w.write([{ key: "1", customId: "c1", input: 1, output: null }, { key: "2", customId: "c2", input: "x", output: null }]),
          w.commit
        )))
      expect(error.message).toMatch(/column v holds numbers/)
      const extra = yield* Effect.flip(withWriter(Sink.parquet(join(dir, "extra.parquet")), undefined, (w) =>
        w.write([{ key: "1", customId: "c1", input: { a: 1 }, output: null }, {
          key: "2",
          customId: "c2",
          input: { a: 1, b: 2 },
          output: null
        }])))
      expect(extra.message).toMatch(/input\.b not among the columns/)
    }))
})

describe("Source.parquet", () => {
  it.effect("reports rows that do not match the schema as Invalid items naming path:row N", () =>
    Effect.gen(function*() {
      const path = join(dir, "mixed-input.parquet")
      parquetWriteFile({
        filename: path,
        columnData: [
          { name: "id", data: ["a", "b", null, "d"], type: "STRING" },
          { name: "stars", data: [5n, 4n, 3n, 2n ** 60n], type: "INT64" }
        ]
      })
      const items = yield* collect(Source.parquet(path, Schema.Struct({ id: Schema.String, stars: Schema.Number })))
      const summary = items.map((i: SourceItem<unknown>) => (i._tag === "Row" ? { row: i.row } : { invalid: i.location }))
      expect(summary).toEqual([
        { row: { id: "a", stars: 5 } }, // INT64 arrives as a number when exact
        { row: { id: "b", stars: 4 } },
        { invalid: `${path}:row 3` },
        { invalid: `${path}:row 4` } // 2^60 stays a bigint: not a number
      ])
      expect((items[2] as Source.SourceInvalid).message).toMatch(/^does not match schema: [\s\S]*id/)
      // Only the requested columns are read.
      const ids = yield* collect(Source.parquet(path, Schema.Struct({ id: Schema.NullOr(Schema.String) }), { columns: ["id"] }))
      expect(ids.map((i) => (i._tag === "Row" ? i.row : null))).toEqual([{ id: "a" }, { id: "b" }, { id: null }, { id: "d" }])
    }))

  it.effect("fails with a SourceError for a missing file or one that is not Parquet", () =>
    Effect.gen(function*() {
      const S = Schema.Struct({ id: Schema.String })
      const missing = yield* Effect.flip(collect(Source.parquet(join(dir, "nope.parquet"), S)))
      expect(missing._tag).toBe("SourceError")
      expect(missing.message).toMatch(/file not found/)
      const junk = join(dir, "junk.parquet")
      writeFileSync(junk, "this is not parquet, just text long enough to have a footer")
      const notParquet = yield* Effect.flip(collect(Source.parquet(junk, S)))
      expect(notParquet._tag).toBe("SourceError")
      expect(notParquet.message).toMatch(/not a readable Parquet file/)
      const empty = join(dir, "empty-dataset")
      mkdirSync(empty)
      expect(yield* collect(Source.parquet(empty, S))).toEqual([])
    }))

  it.effect("streams a 50k-row file one row group at a time", () =>
    Effect.gen(function*() {
      const out = join(dir, "large.parquet")
      const n = 50_000
      const big = (i: number): SinkRecord<{ id: number; text: string }, { label: string }> => ({
        key: `k${i}`,
        customId: `c${i}`,
        // Hashes: text that does not compress away, so the file is several row groups of bytes.
        input: { id: i, text: createHash("sha256").update(String(i)).digest("hex") },
        output: { label: i % 3 === 0 ? "a" : "b" }
      })
      // Written through the sink in 5,000-row groups, in batches as the collector writes.
      yield* withWriter(Sink.parquet(out, { rowGroupSize: 5000 }), undefined, (w) =>
        Effect.gen(function*() {
          for (let start = 0; start < n; start += 1000) {
            yield* w.write(Array.from({ length: 1000 }, (_, j) => big(start + j)))
          }
          return yield* w.commit
        }))
      const part = join(out, "part-00001.parquet")
      const size = statSync(part).size
      expect(existsSync(part)).toBe(true)

      // Counts the bytes of each read the source makes.
      const reads: Array<number> = []
      const counting = Layer.effect(
        FileSystem.FileSystem,
        Effect.map(FileSystem.FileSystem, (fs) => ({
          ...fs,
          open: (path: string, options?: FileSystem.OpenFileOptions) =>
            Effect.map(fs.open(path, options), (file) =>
              new Proxy(file, {
                get: (target, prop, receiver) =>
                  prop === "read"
                    ? (buffer: Uint8Array) => {
                      reads.push(buffer.length)
                      return target.read(buffer)
                    }
                    : Reflect.get(target, prop, receiver)
              }))
        }))
      ).pipe(Layer.provide(NodeFileSystem.layer))

      const Row = Schema.Struct({ key: Schema.String, "input.id": Schema.Number, "output.label": Schema.String })
      let count = 0
      let ordered = true
      yield* Source.parquet(out, Row).rows.pipe(
        Stream.runForEach((item) =>
          Effect.sync(() => {
            if (item._tag !== "Row" || item.row["input.id"] !== count) ordered = false
            count++
          })
        ),
        Effect.provide(counting)
      )
      expect(count).toBe(n)
      expect(ordered).toBe(true)
      // Ten row groups: no single read comes near the whole file.
      expect(reads.length).toBeGreaterThan(10)
      expect(Math.max(...reads)).toBeLessThan(size / 4)
    }))
})

describe("Sink.parquet refusals", () => {
  it.effect("a lone surrogate, a value of another type, an extra column: the row is refused, the others written", () =>
    Effect.gen(function*() {
      const out = join(dir, "refusals.parquet")
      const sink = Sink.parquet<unknown, unknown>(out, { columns: (r) => r.output as Record<string, unknown> })
      const at = (i: number, output: Record<string, unknown>) => ({ key: `k${i}`, customId: `c${i}`, input: null, output })
      const refused = yield* withWriter(sink, undefined, (w) =>
        writeAccepted(w, [
          at(1, { text: "nul \u0000 kept", n: null }),
          at(2, { text: "lone \ud800", n: 1 }),
          at(3, { text: "fine", n: 2 }),
          at(4, { text: "fine", n: "two" }),
          at(5, { text: "fine", n: 3, more: true }),
          at(6, { text: 7, n: 4 }),
          at(7, { text: "pair \ud83d\ude00", n: null })
        ]))
      expect(refused).toEqual([
        `parquet:${out}: column text has a lone surrogate (U+D800) at character 5, which UTF-8 cannot encode`,
        `parquet:${out}: column n holds numbers (from the first rows written) but got "two"; pass \`columns\` to Sink.parquet to fix the columns' values`,
        `parquet:${out}: column more not among the columns (text, n); pass \`columns\` to Sink.parquet to fix the set of columns`
      ])
      expect(yield* Effect.promise(() => readDataset(out))).toEqual([
        { text: "nul \u0000 kept", n: null },
        { text: "fine", n: 2 },
        { text: "7", n: 4 },
        { text: "pair \ud83d\ude00", n: null }
      ])
      // A caller that does not ask: write itself refuses, rather than writing U+FFFD.
      const error = yield* Effect.flip(withWriter(sink, undefined, (w) => w.write([at(2, { text: "lone \ud800", n: 1 })])))
      expect(error.message).toMatch(/column text has a lone surrogate \(U\+D800\)/)
    }))

  it.effect("a resumed dataset refuses by the committed parts' column types", () =>
    Effect.gen(function*() {
      const out = join(dir, "refusals-resumed.parquet")
      const sink = Sink.parquet<number, unknown>(out, { columns: (r) => ({ n: r.input }) })
      const rec = (i: number, input: unknown) => ({ key: `k${i}`, customId: `c${i}`, input: input as number, output: null })
      const cp = yield* withWriter(sink, undefined, (w) => Effect.zipRight(w.write([rec(1, 1)]), w.commit))
      const refused = yield* withWriter(sink, cp, (w) => writeAccepted(w, [rec(2, true), rec(3, 3)]))
      expect(refused).toEqual([
        `parquet:${out}: column n holds numbers (from the first rows written) but got true; pass \`columns\` to Sink.parquet to fix the columns' values`
      ])
      expect(yield* Effect.promise(() => readDataset(out))).toEqual([{ n: 1 }, { n: 3 }])
    }))
})

/**
 * Parquet helpers over hyparquet (reading) and hyparquet-writer (writing):
 *
 * - `asyncBuffer`: a hyparquet `AsyncBuffer` over an open platform file, so hyparquet reads
 *   only the byte ranges it asks for (the footer, then one row group's column chunks at a
 *   time) instead of the whole file.
 * - `PartWriter`: writes one Parquet file row group by row group, handing back the encoded
 *   bytes after each group so memory stays bounded by a row group.
 * - Column kinds: the flat column types the Parquet sink writes (string, number, boolean),
 *   read back from an existing part's footer on resume (the sink infers them from the first values).
 *
 * Both libraries load on first use (`reader`, `writer`): ~50 modules that every process
 * importing @sluice/core (each `sluice` command, each pipeline file) would load otherwise.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import type { PlatformError } from "@effect/platform/Error"
import { Effect, Runtime } from "effect"
import type * as Hyparquet from "hyparquet"
import type { AsyncBuffer, FileMetaData, SchemaElement } from "hyparquet"
import type * as HyparquetWriter from "hyparquet-writer"

let readerModule: Promise<typeof Hyparquet> | undefined
let writerModule: Promise<typeof HyparquetWriter> | undefined
/** hyparquet, loaded once. */
export const reader: Effect.Effect<typeof Hyparquet> = Effect.promise(() => (readerModule ??= import("hyparquet")))
/** hyparquet-writer, loaded once. */
export const writer: Effect.Effect<typeof HyparquetWriter> = Effect.promise(() => (writerModule ??= import("hyparquet-writer")))

/** An `AsyncBuffer` reading `file` (of `size` bytes) with positioned reads, one at a time. */
export const asyncBuffer = (
  file: FileSystem.File,
  size: number
): Effect.Effect<AsyncBuffer, never, never> =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<never>()
    // The platform file has one position: serialize seek + read.
    const lock = yield* Effect.makeSemaphore(1)
    const readAt = (start: number, end: number): Effect.Effect<ArrayBuffer, PlatformError | Error> =>
      lock.withPermits(1)(Effect.gen(function*() {
        const out = new Uint8Array(end - start)
        yield* file.seek(FileSystem.Size(start), "start")
        let filled = 0
        while (filled < out.length) {
          const n = Number(yield* file.read(out.subarray(filled)))
          if (n === 0) return yield* Effect.fail(new Error(`unexpected end of file at byte ${start + filled}`))
          filled += n
        }
        return out.buffer
      }))
    return {
      byteLength: size,
      slice: (start: number, end?: number) => {
        const to = Math.min(end ?? size, size)
        if (to <= start) return Promise.resolve(new ArrayBuffer(0))
        return Runtime.runPromise(runtime)(readAt(start, to))
      }
    }
  })

/** Opens `path` in the current scope and reads its Parquet footer. */
export const openForReading = (path: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const file = yield* fs.open(path, { flag: "r" })
    const size = Number((yield* file.stat).size)
    const buffer = yield* asyncBuffer(file, size)
    const { parquetMetadataAsync } = yield* reader
    const metadata = yield* Effect.tryPromise({
      try: () => parquetMetadataAsync(buffer),
      catch: (e) => new Error(`not a readable Parquet file: ${e instanceof Error ? e.message : String(e)}`)
    })
    return { buffer, metadata }
  })

/** The types the Parquet sink writes; every column is nullable. */
export type Kind = "string" | "number" | "boolean"

export interface Column {
  readonly name: string
  readonly kind: Kind
}

export type Cell = string | number | boolean | null

const element = (column: Column): SchemaElement => {
  switch (column.kind) {
    case "string":
      return { name: column.name, type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" }
    case "number":
      return { name: column.name, type: "DOUBLE", repetition_type: "OPTIONAL" }
    case "boolean":
      return { name: column.name, type: "BOOLEAN", repetition_type: "OPTIONAL" }
  }
}

export const schemaOf = (columns: ReadonlyArray<Column>): Array<SchemaElement> => [
  { name: "root", num_children: columns.length },
  ...columns.map(element)
]

/**
 * The columns of a file the sink wrote before (a resumed run), so that new parts keep them.
 * Fails on a schema the sink would not have written.
 */
export const columnsOf = (metadata: FileMetaData): Array<Column> | string => {
  const [root, ...leaves] = metadata.schema
  if (root === undefined || leaves.length !== (root.num_children ?? 0)) return "it has nested columns"
  const out: Array<Column> = []
  for (const e of leaves) {
    if (e.type === "BYTE_ARRAY") out.push({ name: e.name, kind: "string" })
    else if (e.type === "DOUBLE") out.push({ name: e.name, kind: "number" })
    else if (e.type === "BOOLEAN") out.push({ name: e.name, kind: "boolean" })
    else return `column ${e.name} has type ${e.type ?? "group"}`
  }
  return out
}

/** The bytes written to `out` so far, taken out (after each row group) instead of accumulating. */
const take = (out: HyparquetWriter.ByteWriter): Uint8Array => {
  const bytes = new Uint8Array(out.buffer, 0, out.index).slice()
  out.index = 0
  return bytes
}

export type Codec = "SNAPPY" | "UNCOMPRESSED"

/**
 * One Parquet file being written: `group` encodes a row group and returns its bytes (the
 * first call's bytes start with the file's magic number); `finish` returns the footer's.
 * The caller writes the bytes out, in order. `library`: hyparquet-writer (`writer`).
 */
export class PartWriter {
  private readonly out: HyparquetWriter.ByteWriter
  private readonly writer: HyparquetWriter.ParquetWriter

  constructor(private readonly columns: ReadonlyArray<Column>, codec: Codec, library: typeof HyparquetWriter) {
    this.out = new library.ByteWriter(1 << 16)
    this.writer = new library.ParquetWriter({ writer: this.out, schema: schemaOf(columns), codec })
  }

  /** Throws with a description naming the column when a value does not fit its type. */
  group(rows: ReadonlyArray<ReadonlyArray<Cell>>): Uint8Array {
    const columnData = this.columns.map((column, i) => {
      const data = new Array<Cell>(rows.length)
      for (let r = 0; r < rows.length; r++) data[r] = fit(column, rows[r]![i] ?? null)
      return { name: column.name, data }
    })
    // Synchronous: the writer has no `flush`, so hyparquet-writer never waits on it.
    void this.writer.write({ columnData, rowGroupSize: Math.max(rows.length, 1) })
    return take(this.out)
  }

  finish(): Uint8Array {
    void this.writer.finish()
    return take(this.out)
  }
}

const fit = (column: Column, value: Cell): Cell => {
  if (value === null) return null
  switch (column.kind) {
    case "string":
      // Lossless: a number or boolean in a text column is kept as its text.
      return typeof value === "string" ? value : String(value)
    case "number":
      if (typeof value === "number") return value
      break
    case "boolean":
      if (typeof value === "boolean") return value
      break
  }
  throw new Error(
    `column ${column.name} holds ${column.kind}s (from the first rows written) but got ${JSON.stringify(value)}; ` +
      "pass `columns` to Sink.parquet to fix the columns' values"
  )
}

/**
 * Sources: where a pipeline's rows come from. A source is a stream of items, each either a
 * decoded row or an invalid one that names its location, so that bad input is reported with
 * file and line instead of crashing the run or silently disappearing.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import type { PlatformError } from "@effect/platform/Error"
import { Chunk, Effect, Either, ParseResult, Schema, Stream } from "effect"
import { join } from "node:path"
import { csvRecords } from "./internal/csvRecords.js"
import { JsonArraySplitter } from "./internal/jsonArray.js"
import { isBlank, LineSplitter } from "./internal/lines.js"
import * as ParquetFile from "./internal/parquetFile.js"

export interface SourceRow<Row> {
  readonly _tag: "Row"
  readonly row: Row
  /** Where the row came from, e.g. "data/reviews.jsonl:12". */
  readonly location: string
}

export interface SourceInvalid {
  readonly _tag: "Invalid"
  readonly location: string
  readonly message: string
}

export type SourceItem<Row> = SourceRow<Row> | SourceInvalid

/** Failure to read a source at all (missing file, unreadable). Invalid rows are items, not errors. */
export class SourceError extends Schema.TaggedError<SourceError>()("SourceError", {
  source: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return `source ${this.source}: ${this.description}`
  }
}

export interface Source<Row> {
  /** A human-readable name, e.g. "jsonl:data/reviews.jsonl". */
  readonly name: string
  /** Rows in a stable order: resuming a run re-reads the source and skips what was planned. */
  readonly rows: Stream.Stream<SourceItem<Row>, SourceError, FileSystem.FileSystem>
  /**
   * The files (or Parquet directory) it reads: a run records their size and modification time
   * when it plans, and says so when they change later (rows added after planning are not in it).
   */
  readonly paths?: ReadonlyArray<string>
}

/** Constructors. */

const describe = (e: unknown): string => {
  if (e instanceof Error) return e.message
  if (typeof e === "string") return e
  try {
    return JSON.stringify(e) ?? String(e)
  } catch {
    return String(e)
  }
}

const readError = (name: string, path: string) => (e: PlatformError): SourceError =>
  new SourceError({
    source: name,
    description: e._tag === "SystemError" && e.reason === "NotFound"
      ? `file not found: ${path}`
      : `cannot read ${path}: ${e.message}`
  })

/** Larger than the platform's 64 KiB default: fewer chunks, fewer Effect steps per byte. */
const CHUNK_SIZE = FileSystem.KiB(256)

/**
 * The row's item from a parsed value. Built once per source with the decoder hoisted; catches
 * a user transformation that throws, so bad input stays an item, never a crash.
 */
const decodeRow = <A, I>(schema: Schema.Schema<A, I, never>) => {
  const decode = Schema.decodeUnknownEither(schema, { errors: "all" })
  return (value: unknown, location: string): SourceItem<A> => {
    try {
      const result = decode(value)
      return Either.isRight(result)
        ? { _tag: "Row", row: result.right, location }
        : {
          _tag: "Invalid",
          location,
          message: `does not match schema: ${ParseResult.TreeFormatter.formatIssueSync(result.left.issue)}`
        }
    } catch (e) {
      return { _tag: "Invalid", location, message: `cannot be decoded: ${describe(e)}` }
    }
  }
}

/**
 * Rows of a JSON Lines file, decoded with `schema`. Read as a stream: memory stays flat
 * whatever the file size. Blank lines are skipped; a line that is not JSON or does not match
 * the schema becomes an `Invalid` item naming `path:line`.
 */
/** One JSON text decoded into a row, or an Invalid item naming its location. */
const parseItem = <A>(
  text: string,
  location: string,
  decode: (json: unknown, location: string) => SourceItem<A>
): SourceItem<A> => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (e) {
    return { _tag: "Invalid", location, message: `invalid JSON: ${describe(e)}` }
  }
  return decode(json, location)
}

export const jsonl = <A, I>(path: string, schema: Schema.Schema<A, I, never>): Source<A> => {
  const name = `jsonl:${path}`
  const decode = decodeRow(schema)
  const toItem = (line: string, lineNumber: number): SourceItem<A> | undefined => {
    if (isBlank(line)) return undefined
    return parseItem(line, `${path}:${lineNumber}`, decode)
  }
  const rows = Stream.unwrap(
    Effect.map(FileSystem.FileSystem, (fs) => {
      // Per run: a source may be read more than once (resume re-reads it).
      const splitter = new LineSplitter()
      let out: Array<SourceItem<A>> = []
      const onLine = (line: string, lineNumber: number) => {
        const item = toItem(line, lineNumber)
        if (item !== undefined) out.push(item)
      }
      const take = () => {
        const items = out
        out = []
        return Chunk.unsafeFromArray(items)
      }
      return fs.stream(path, { chunkSize: CHUNK_SIZE }).pipe(
        Stream.mapError(readError(name, path)),
        Stream.mapChunks((chunk) => {
          for (const bytes of chunk) splitter.push(bytes, onLine)
          return take()
        }),
        Stream.concat(Stream.suspend(() => {
          splitter.end(onLine)
          return Stream.fromChunk(take())
        }))
      )
    })
  )
  return { name, rows, paths: [path] }
}

export interface CsvOptions {
  /** Field delimiter; a comma unless given. */
  readonly delimiter?: string
  /**
   * `true` (the default): the first record is the header and names the fields.
   * An array: the file has no header and these are the field names.
   */
  readonly columns?: true | ReadonlyArray<string>
}

/**
 * Rows of a CSV file, decoded with `schema`. Every value arrives as a string: use
 * `Schema.NumberFromString` and friends for other types. A malformed record (wrong field
 * count, broken quoting) or one that does not match the schema becomes an `Invalid` item
 * naming `path:line`, the line the record starts on.
 */
export const csv = <A, I>(path: string, schema: Schema.Schema<A, I, never>, options: CsvOptions = {}): Source<A> => {
  const name = `csv:${path}`
  const decode = decodeRow(schema)
  const given = Array.isArray(options.columns) ? options.columns : undefined
  const rows = Stream.unwrap(
    Effect.map(FileSystem.FileSystem, (fs) => {
      let header: ReadonlyArray<string> | undefined = given
      const onRecord = (fields: Array<string>, line: number): SourceItem<A> | undefined => {
        if (header === undefined) {
          header = fields
          return undefined
        }
        const location = `${path}:${line}`
        if (fields.length !== header.length) {
          return {
            _tag: "Invalid",
            location,
            message: `expected ${header.length} fields (${header.join(", ")}), got ${fields.length}`
          }
        }
        const record: Record<string, string> = {}
        for (let i = 0; i < header.length; i++) {
          const name = header[i]!
          // Assigning "__proto__" would set the prototype and drop the column.
          if (name === "__proto__") Object.defineProperty(record, name, { value: fields[i]!, enumerable: true, writable: true, configurable: true })
          else record[name] = fields[i]!
        }
        return decode(record, location)
      }
      const onMalformed = (message: string, line: number): SourceItem<A> => ({
        _tag: "Invalid",
        location: `${path}:${line}`,
        message: `malformed CSV: ${message}`
      })
      return csvRecords(
        fs.stream(path, { chunkSize: CHUNK_SIZE }).pipe(Stream.mapError(readError(name, path))),
        options.delimiter !== undefined ? { delimiter: options.delimiter } : {},
        onRecord,
        onMalformed,
        (message) => new SourceError({ source: name, description: `cannot parse ${path}: ${message}` })
      )
    })
  )
  return { name, rows, paths: [path] }
}

/**
 * Rows of a file holding one JSON array, decoded with `schema`; locations are `path:[index]`
 * (zero-based). Read as a stream: the file is split into its top-level elements as it is
 * read, so memory is bounded by the largest element, not the file. An element that is not
 * valid JSON (or a stray comma's empty element) or does not match the schema becomes an
 * `Invalid` item and reading goes on. A file that is not a JSON array, is truncated before
 * its closing `]`, or has content after it fails with a `SourceError` — after the elements
 * before the problem have been yielded.
 */
export const json = <A, I>(path: string, schema: Schema.Schema<A, I, never>): Source<A> => {
  const name = `json:${path}`
  const decode = decodeRow(schema)
  const toItem = (text: string, index: number): SourceItem<A> => {
    const location = `${path}:[${index}]`
    if (text.length === 0) return { _tag: "Invalid", location, message: "empty element (a stray comma)" }
    return parseItem(text, location, decode)
  }
  const rows = Stream.unwrap(
    Effect.map(FileSystem.FileSystem, (fs) => {
      const splitter = new JsonArraySplitter()
      let out: Array<SourceItem<A>> = []
      let failed: SourceError | undefined
      const fail = (description: string) => new SourceError({ source: name, description: `cannot parse ${path}: ${description}` })
      const onElement = (text: string, index: number) => {
        out.push(toItem(text, index))
      }
      const take = () => {
        const items = out
        out = []
        return Chunk.unsafeFromArray(items)
      }
      return fs.stream(path, { chunkSize: CHUNK_SIZE }).pipe(
        Stream.mapError(readError(name, path)),
        Stream.mapChunksEffect((chunk) => {
          if (failed !== undefined) return Effect.fail(failed)
          for (const bytes of chunk) {
            const error = splitter.push(bytes, onElement)
            if (error !== undefined) {
              failed = fail(error)
              break
            }
          }
          const items = take()
          // Items before the problem go out first; the failure follows.
          return failed !== undefined && Chunk.isEmpty(items) ? Effect.fail(failed) : Effect.succeed(items)
        }),
        Stream.concat(Stream.suspend(() => {
          if (failed !== undefined) return Stream.fail(failed)
          const error = splitter.end()
          return error !== undefined ? Stream.fail(fail(error)) : Stream.fromChunk(take())
        }))
      )
    })
  )
  return { name, rows, paths: [path] }
}

export interface ParquetOptions {
  /** Read only these columns (top-level names); all of them unless given. */
  readonly columns?: ReadonlyArray<string>
}

/** INT64 values arrive from hyparquet as bigint: a number when it is exact, else left as it is. */
const fromParquet = (value: unknown): unknown => {
  if (typeof value === "bigint") {
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value
  }
  if (Array.isArray(value)) return value.map(fromParquet)
  if (typeof value === "object" && value !== null && Object.getPrototypeOf(value) === Object.prototype) {
    const record = value as Record<string, unknown>
    for (const k of Object.keys(record)) record[k] = fromParquet(record[k])
  }
  return value
}

const isParquetPart = (file: string): boolean =>
  file.endsWith(".parquet") && !file.startsWith(".") && !file.startsWith("_")

/**
 * Rows of a Parquet file, read with hyparquet and decoded with `schema`; locations are
 * `path:row N` (N from 1). The file is read one row group at a time through positioned
 * reads, so memory is bounded by a row group, not the file. `path` may also be a directory
 * of Parquet files (a dataset, such as `Sink.parquet` writes): its `*.parquet` files are
 * read in name order, skipping hidden ones (`.` or `_` first).
 *
 * Values arrive as hyparquet decodes them: strings, numbers, booleans, `null`, `Date` for
 * timestamps, objects and arrays for nested columns; INT64 values become numbers when they
 * are exact integers in a double, and stay `bigint` otherwise. A row that does not match the
 * schema becomes an `Invalid` item; a file that is not Parquet fails with a `SourceError`.
 */
export const parquet = <A, I>(
  path: string,
  schema: Schema.Schema<A, I, never>,
  options: ParquetOptions = {}
): Source<A> => {
  const name = `parquet:${path}`
  const decode = decodeRow(schema)
  const columns = options.columns !== undefined ? [...options.columns] : undefined
  const fileRows = (file: string) =>
    Stream.unwrapScoped(
      Effect.gen(function*() {
        const { buffer, metadata } = yield* ParquetFile.openForReading(file).pipe(
          Effect.mapError((e) =>
            "_tag" in e && (e._tag === "SystemError" || e._tag === "BadArgument")
              ? readError(name, file)(e)
              : new SourceError({ source: name, description: `cannot read ${file}: ${e.message}` })
          )
        )
        const { parquetReadObjects } = yield* ParquetFile.reader
        const groups: Array<{ start: number; end: number }> = []
        let start = 0
        for (const group of metadata.row_groups) {
          const end = start + Number(group.num_rows)
          if (end > start) groups.push({ start, end })
          start = end
        }
        return Stream.fromIterable(groups).pipe(
          Stream.mapEffect(({ end, start }) =>
            Effect.tryPromise({
              try: () =>
                parquetReadObjects({
                  file: buffer,
                  metadata,
                  rowStart: start,
                  rowEnd: end,
                  ...(columns !== undefined ? { columns } : {})
                }),
              catch: (e) =>
                new SourceError({ source: name, description: `cannot read rows ${start + 1}-${end} of ${file}: ${describe(e)}` })
            }).pipe(
              Effect.map((objects) => {
                const items = new Array<SourceItem<A>>(objects.length)
                for (let i = 0; i < objects.length; i++) {
                  items[i] = decode(fromParquet(objects[i]), `${file}:row ${start + i + 1}`)
                }
                return Chunk.unsafeFromArray(items)
              })
            )
          ),
          Stream.flattenChunks
        )
      })
    )
  const rows = Stream.unwrap(
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const info = yield* fs.stat(path).pipe(Effect.mapError(readError(name, path)))
      if (info.type !== "Directory") return fileRows(path)
      const entries = yield* fs.readDirectory(path).pipe(Effect.mapError(readError(name, path)))
      const files = entries.filter(isParquetPart).sort().map((f) => join(path, f))
      return Stream.flatMap(Stream.fromIterable(files), fileRows)
    })
  )
  return { name, rows, paths: [path] }
}

/** Rows from memory; locations are `name:1`, `name:2`, … */
export const array = <A>(rows: Iterable<A>, name = "array"): Source<A> => ({
  name,
  rows: numbered(name, Stream.fromIterable(rows))
})

/**
 * Rows from any Effect stream (a database cursor, an HTTP API …). Its failure becomes a
 * `SourceError`: the source could not be read.
 */
export const fromStream = <A, E, R extends FileSystem.FileSystem = never>(
  name: string,
  stream: Stream.Stream<A, E, R>
): Source<A> => ({
  name,
  rows: numbered(
    name,
    Stream.mapError(stream, (e) => (e instanceof SourceError ? e : new SourceError({ source: name, description: describe(e) })))
  )
})

const numbered = <A, E, R>(name: string, stream: Stream.Stream<A, E, R>): Stream.Stream<SourceItem<A>, E, R> =>
  Stream.suspend(() => {
    let n = 0
    return Stream.mapChunks(stream, (chunk) =>
      Chunk.map(chunk, (row): SourceItem<A> => ({ _tag: "Row", row, location: `${name}:${++n}` }))
    )
  })

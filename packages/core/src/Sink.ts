/**
 * Sinks: where a pipeline's results go. Writes are committed in batches; a commit returns a
 * checkpoint that the runner journals, and a sink opened with the last checkpoint discards
 * anything written after it — so a crash mid-write never leaves a row twice.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import { stringify } from "csv-stringify/sync"
import { Effect, ExecutionStrategy, Exit, Option, Schema, Scope, Stream } from "effect"
import { join } from "node:path"
import * as CheckpointedFile from "./internal/checkpointedFile.js"
import { csvRecords } from "./internal/csvRecords.js"
import * as ParquetFile from "./internal/parquetFile.js"
import * as Unicode from "./internal/unicode.js"

/** What a sink receives for each row. */
export interface SinkRecord<In, Out> {
  /** The row's stable key. */
  readonly key: string
  readonly customId: string
  readonly input: In
  readonly output: Out
  /**
   * In a pipeline of several stages: the custom_ids of the upstream requests that led to
   * this row, first stage first (its own `customId` is the last stage's).
   */
  readonly lineage?: ReadonlyArray<string>
}

/**
 * Opaque to the runner: a file sink stores its committed byte length, the Parquet sink its
 * number of committed part files, the PostgreSQL sink the rows it has accepted.
 */
export const SinkCheckpoint = Schema.Struct({
  offset: Schema.Number,
  /** The checkpoints of the sinks of `Sink.all`, in order. */
  parts: Schema.optional(Schema.Array(Schema.Struct({ offset: Schema.Number })))
})
export type SinkCheckpoint = typeof SinkCheckpoint.Type

export class SinkError extends Schema.TaggedError<SinkError>()("SinkError", {
  sink: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return `sink ${this.sink}: ${this.description}`
  }
}

export interface SinkWriter<A> {
  readonly write: (records: ReadonlyArray<A>) => Effect.Effect<void, SinkError>
  /** Makes everything written so far durable and returns the checkpoint to journal. */
  readonly commit: Effect.Effect<SinkCheckpoint, SinkError>
  /**
   * Why the sink cannot store `record` (a sentence naming the sink and the value), or
   * undefined when it can. The runner asks before writing each record: a refused record's
   * row fails alone — class `sink_rejected` in failures.jsonl, with this reason — and is not
   * written, so one row never blocks a commit. Answering may settle what the sink derives
   * from the records it sees (a CSV header, a column's type), so records are asked about in
   * the order they are then written. `write` fails with a SinkError on a record it would
   * refuse (a caller that did not ask).
   */
  readonly refuse?: (record: A) => string | undefined
}

export interface Sink<A> {
  readonly name: string
  /**
   * The files or directories the sink writes, as given (relative to the working directory).
   * The runner locks each for the run, so that two runs never write one file at once.
   */
  readonly paths?: ReadonlyArray<string>
  /**
   * Opens the sink for appending. `resume` is the last journaled checkpoint (undefined for a
   * fresh run): everything after it is discarded.
   */
  readonly open: (
    resume: SinkCheckpoint | undefined
  ) => Effect.Effect<SinkWriter<A>, SinkError, FileSystem.FileSystem | Scope.Scope>
}

/**
 * Why a string cannot be stored, naming the character and its position, or undefined: a lone
 * surrogate (which no UTF-8 encoder can write: it would silently become U+FFFD), and with
 * `nul` U+0000 too (which PostgreSQL's text and jsonb refuse). For sinks of your own.
 */
export const textProblem: (s: string, nul: boolean) => string | undefined = Unicode.textProblem

/**
 * `textProblem` for every string of a value — nested in arrays and objects, object keys
 * included — as `"<path> has <problem>"`, or undefined.
 */
export const jsonProblem: (value: unknown, path: string, nul: boolean) => string | undefined = Unicode.jsonProblem

/** Constructors. */

const failWith = (sink: string) => (description: string) => new SinkError({ sink, description })

const tryEncode = <A>(sink: string, f: () => A): Effect.Effect<A, SinkError> =>
  Effect.try({
    try: f,
    catch: (e) => new SinkError({ sink, description: `cannot encode a record: ${e instanceof Error ? e.message : String(e)}` })
  })

/**
 * A JSON Lines file, one line per record: `{"key", "custom_id", "input", "output"}`.
 * Parent directories are created. Generic so that it fits a pipeline of any row type.
 * It stores any string: U+0000 and lone surrogates are written as JSON escapes (`\u0000`,
 * `\ud800`), so the file is valid UTF-8 and JSON.parse gives back the very same string.
 */
export const jsonl = <In = unknown, Out = unknown>(path: string): Sink<SinkRecord<In, Out>> => {
  const name = `jsonl:${path}`
  return {
    name,
    paths: [path],
    open: (resume) =>
      Effect.map(CheckpointedFile.open(path, resume, failWith(name)), (file): SinkWriter<SinkRecord<In, Out>> => ({
        write: (records) =>
          records.length === 0 ? Effect.void : Effect.flatMap(
            tryEncode(name, () => {
              let text = ""
              for (const r of records) {
                text +=
                  JSON.stringify(
                    r.lineage === undefined
                      ? { key: r.key, custom_id: r.customId, input: r.input, output: r.output }
                      : { key: r.key, custom_id: r.customId, lineage: r.lineage, input: r.input, output: r.output }
                  ) + "\n"
              }
              return text
            }),
            file.append
          ),
        commit: file.commit
      }))
  }
}

export type CsvCell = string | number | boolean | null

export interface CsvOptions<In, Out> {
  /**
   * The cells of one record, by column name. The columns (and their order) are those of the
   * first record written. Default: `key`, `custom_id`, then `input.<field>` and
   * `output.<field>` for each top-level field (non-scalar values as JSON).
   */
  readonly columns?: (record: SinkRecord<In, Out>) => Record<string, CsvCell>
  /**
   * Neutralise cells a spreadsheet would run as a formula (OWASP's CSV injection advice): a
   * text cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a `'` in
   * front, unless it is a plain number (`-5`, `+1.5e3`). Numbers are never changed. On unless
   * `false` (then every cell is written exactly as it is).
   */
  readonly formulaEscape?: boolean
}

const cell = (value: unknown): string | null => {
  if (value === null || value === undefined) return null
  switch (typeof value) {
    case "string":
      return value
    case "number":
    case "boolean":
    case "bigint":
      return String(value)
  }
  if (value instanceof Date) return value.toISOString()
  return JSON.stringify(value) ?? null
}

const FORMULA_START = /^[=+\-@\t\r]/
const PLAIN_NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/

/** A text cell as OWASP advises for CSV files opened in spreadsheets (see `formulaEscape`). */
export const neutraliseFormula = (text: string): string =>
  FORMULA_START.test(text) && !PLAIN_NUMBER.test(text) ? `'${text}` : text

const isPlainObject = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" && u !== null && !Array.isArray(u) && !(u instanceof Date)

const flatten = (out: Record<string, unknown>, prefix: string, value: unknown): void => {
  if (isPlainObject(value)) {
    for (const k of Object.keys(value)) out[`${prefix}.${k}`] = value[k]
  } else {
    out[prefix] = value
  }
}

const defaultColumns = (record: SinkRecord<unknown, unknown>): Record<string, unknown> => {
  const out: Record<string, unknown> = { key: record.key, custom_id: record.customId }
  if (record.lineage !== undefined) out["lineage"] = record.lineage.join(" ")
  flatten(out, "input", record.input)
  flatten(out, "output", record.output)
  return out
}

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e))

/**
 * The cells of a record, or why there are none (the `columns` function threw: that fails
 * the record's row, as a throwing transform does).
 */
const cellsOf = <R>(toCells: (record: R) => Record<string, unknown>, record: R): Record<string, unknown> | string => {
  try {
    return toCells(record)
  } catch (e) {
    return `the columns function failed: ${errorText(e)}`
  }
}

/** The first column name with a lone surrogate: no file can hold it. */
const nameProblem = (names: ReadonlyArray<string>): string | undefined => {
  for (const n of names) {
    const problem = Unicode.textProblem(n, false)
    if (problem !== undefined) return `column name ${JSON.stringify(n)} has ${problem}, which UTF-8 cannot encode`
  }
  return undefined
}

/**
 * Reads the header of a CSV file written before (a resumed run) so that new rows keep its
 * columns and order.
 */
const readHeader = (path: string, upTo: number, name: string) =>
  Effect.flatMap(FileSystem.FileSystem, (fs) =>
    csvRecords(
      fs.stream(path, { bytesToRead: FileSystem.Size(upTo) }).pipe(
        Stream.mapError((e) => new SinkError({ sink: name, description: `cannot read the header of ${path}: ${e.message}` }))
      ),
      {},
      (fields) => fields as ReadonlyArray<string>,
      () => undefined,
      (message) => new SinkError({ sink: name, description: `cannot parse the header of ${path}: ${message}` })
    ).pipe(
      Stream.runHead,
      Effect.flatMap(Option.match({
        onNone: () => Effect.fail(new SinkError({ sink: name, description: `${path} has no header row` })),
        onSome: Effect.succeed
      }))
    ))

/**
 * A CSV file with a header row, written with csv-stringify. The header is written once, when
 * the file starts empty; a resumed run reads it back and keeps its columns.
 *
 * Refused (the row fails alone, `sink_rejected`): a text cell or column name holding a lone
 * surrogate (UTF-8 cannot encode it; CSV has no escape for it), a record with a column the
 * header lacks, a record whose `columns` function throws. U+0000 is valid UTF-8 and is
 * written as it is. Formula-like text cells are neutralised (see `formulaEscape`); the
 * header is written as given.
 */
export const csv = <In = unknown, Out = unknown>(
  path: string,
  options: CsvOptions<In, Out> = {}
): Sink<SinkRecord<In, Out>> => {
  const name = `csv:${path}`
  const toCells: (record: SinkRecord<In, Out>) => Record<string, unknown> = options.columns ?? defaultColumns
  const text = options.formulaEscape === false
    ? cell
    : (value: unknown) => (typeof value === "string" ? neutraliseFormula(value) : cell(value))
  return {
    name,
    paths: [path],
    open: (resume) =>
      Effect.gen(function*() {
        const file = yield* CheckpointedFile.open(path, resume, failWith(name))
        // Opened first: it checks the file; the header lies before the checkpoint, untouched.
        let header: ReadonlyArray<string> | undefined =
          file.startOffset > 0 ? yield* readHeader(path, file.startOffset, name) : undefined
        let headerWritten = header !== undefined
        /** Records `refuse` accepted, with their cells: `write` takes them as they are. */
        const accepted = new WeakMap<object, Record<string, unknown>>()

        /** Why the cells cannot be a row of this file; the first record accepted fixes the header. */
        const check = (cells: Record<string, unknown>): string | undefined => {
          const names = Object.keys(cells)
          const columns = header ?? names
          const badName = nameProblem(names)
          if (badName !== undefined) return badName
          const extra = names.filter((k) => !columns.includes(k))
          if (extra.length > 0) {
            // Dropping the cell would lose data silently; the header is already written.
            return `column${extra.length > 1 ? "s" : ""} ${extra.join(", ")} not in the header (${columns.join(", ")}); ` +
              "pass `columns` to Sink.csv to fix the set of columns"
          }
          for (const c of names) {
            const v = cells[c]
            const problem = typeof v === "string" ? Unicode.textProblem(v, false) : undefined
            if (problem !== undefined) return `column ${c} has ${problem}, which UTF-8 cannot encode`
          }
          header = columns
          return undefined
        }

        const refuse = (record: SinkRecord<In, Out>): string | undefined => {
          const cells = cellsOf(toCells, record)
          const reason = typeof cells === "string" ? cells : check(cells)
          if (reason !== undefined) return `${name}: ${reason}`
          accepted.set(record, cells as Record<string, unknown>)
          return undefined
        }

        const write = (records: ReadonlyArray<SinkRecord<In, Out>>) =>
          records.length === 0 ? Effect.void : Effect.flatMap(
            tryEncode(name, () => {
              const rows: Array<Array<string | null>> = []
              let withHeader = !headerWritten
              for (const r of records) {
                let cells = accepted.get(r)
                if (cells === undefined) {
                  cells = toCells(r)
                  const reason = check(cells)
                  if (reason !== undefined) throw new Error(reason)
                }
                const columns = header!
                if (withHeader) {
                  rows.push([...columns])
                  withHeader = false
                }
                rows.push(columns.map((c) => text(cells[c])))
              }
              return stringify(rows)
            }),
            (encoded) => Effect.map(file.append(encoded), () => void (headerWritten = true))
          )
        return { write, commit: file.commit, refuse } satisfies SinkWriter<SinkRecord<In, Out>>
      })
  }
}

export type ParquetCell = string | number | boolean | null

export interface ParquetOptions<In, Out> {
  /**
   * The cells of one record, by column name, as for `Sink.csv`. Default: `key`, `custom_id`,
   * then `input.<field>` and `output.<field>` for each top-level field, non-scalar values as
   * JSON text.
   */
  readonly columns?: (record: SinkRecord<In, Out>) => Record<string, unknown>
  /** Rows per row group (the unit a reader loads at once); 10,000 unless given. */
  readonly rowGroupSize?: number
  /** Page compression; Snappy unless given. */
  readonly codec?: "SNAPPY" | "UNCOMPRESSED"
}

/** A value as the Parquet sink stores it: scalars as they are, anything else as JSON text. */
const parquetCell = (value: unknown): ParquetCell => {
  if (value === null || value === undefined) return null
  switch (typeof value) {
    case "string":
    case "number":
    case "boolean":
      return value
    case "bigint":
      return String(value)
  }
  if (value instanceof Date) return value.toISOString()
  return JSON.stringify(value) ?? null
}

const PART = /^part-(\d+)\.parquet$/
const TEMP_PART = /^\.part-\d+\.parquet\.tmp$/
const partName = (n: number) => `part-${String(n).padStart(5, "0")}.parquet`

/**
 * A Parquet dataset: a directory at `path` holding one file per commit,
 * `part-00001.parquet`, `part-00002.parquet`, … — the layout Spark, DuckDB
 * (`read_parquet('path/*.parquet')`), pyarrow and pandas (`read_parquet('path')`) read as one
 * table. A Parquet file cannot be appended to once its footer is written, so each commit
 * closes a file of its own.
 *
 * Exactly once: a part is written as a hidden `.part-NNNNN.parquet.tmp` (readers skip it),
 * row group by row group, then at commit its footer is written, it is fsynced and renamed
 * into place; the checkpoint is the number of committed parts. Opening with a checkpoint
 * deletes parts numbered past it and any temporary part (a crash's leftovers), so rows
 * written again after a resume appear once. A fresh open deletes every `part-*.parquet`
 * (and temporary part) in the directory and leaves other files alone. A commit with nothing
 * written adds no part.
 *
 * Columns are those of the first record (see `columns`); each column's type is that of its
 * first non-null value — string, number (DOUBLE) or boolean — and every column is nullable.
 * A resumed run reads the columns back from `part-00001.parquet`. A number or boolean in a
 * string column is kept as its text. Refused (the row fails alone, `sink_rejected`): a later
 * value of another type, a column the first record did not have, a string or column name
 * holding a lone surrogate (UTF-8 cannot encode it), a record whose `columns` function
 * throws. U+0000 is valid UTF-8 and is stored as it is. Memory is bounded by one row group.
 */
export const parquet = <In = unknown, Out = unknown>(
  path: string,
  options: ParquetOptions<In, Out> = {}
): Sink<SinkRecord<In, Out>> => {
  const name = `parquet:${path}`
  const fail = failWith(name)
  const toCells: (record: SinkRecord<In, Out>) => Record<string, unknown> = options.columns ?? defaultColumns
  const rowGroupSize = options.rowGroupSize ?? 10_000
  const codec = options.codec ?? "SNAPPY"
  return {
    name,
    paths: [path],
    open: (resume) =>
      Effect.gen(function*() {
        if (!Number.isSafeInteger(rowGroupSize) || rowGroupSize < 1) {
          return yield* Effect.fail(fail(`rowGroupSize must be a positive integer, got ${rowGroupSize}`))
        }
        const fs = yield* FileSystem.FileSystem
        const scope = yield* Effect.scope
        const platform = (what: string) => (e: { readonly message: string }) => fail(`${what}: ${e.message}`)
        const committed = resume?.offset ?? 0
        if (!Number.isSafeInteger(committed) || committed < 0) {
          return yield* Effect.fail(fail(`invalid checkpoint offset ${committed} for ${path}`))
        }

        // The directory, cleared of what was not committed.
        if (yield* fs.exists(path).pipe(Effect.mapError(platform(`cannot access ${path}`)))) {
          const info = yield* fs.stat(path).pipe(Effect.mapError(platform(`cannot stat ${path}`)))
          if (info.type !== "Directory") {
            return yield* Effect.fail(
              fail(`${path} exists and is not a directory; Sink.parquet writes a directory of part files there`)
            )
          }
        } else if (committed > 0) {
          return yield* Effect.fail(
            fail(`${path} is missing, but ${committed} parts of it were committed; it was moved or deleted`)
          )
        }
        yield* fs.makeDirectory(path, { recursive: true }).pipe(Effect.mapError(platform(`cannot create ${path}`)))
        const present = new Set<number>()
        const uncommitted: Array<string> = []
        for (const entry of yield* fs.readDirectory(path).pipe(Effect.mapError(platform(`cannot list ${path}`)))) {
          const match = PART.exec(entry)
          const n = match !== null ? Number(match[1]) : undefined
          if (n !== undefined && n <= committed) present.add(n)
          else if (n !== undefined || TEMP_PART.test(entry)) uncommitted.push(join(path, entry))
        }
        /** Deletes the parts beyond the checkpoint: a fresh run's only at its first commit, so a
         * run that stops before one leaves the parts it found (an earlier run's) as they were. */
        const clearUncommitted = Effect.suspend(() => Effect.forEach(uncommitted.splice(0), (file) => fs.remove(file), { discard: true }))
        const clearing = `cannot delete the uncommitted parts of ${path}`
        if (committed > 0) yield* clearUncommitted.pipe(Effect.mapError(platform(clearing)))
        for (let n = 1; n <= committed; n++) {
          if (!present.has(n)) {
            return yield* Effect.fail(
              fail(`${join(path, partName(n))} is missing, but ${committed} parts were committed; it was moved or deleted`)
            )
          }
        }

        // The columns: those of the parts already committed, or (fresh) the first record's,
        // each typed by its first non-null value; `columns` is fixed when the first part opens.
        let names: ReadonlyArray<string> | undefined
        const kinds = new Map<string, ParquetFile.Kind>()
        let columns: ReadonlyArray<ParquetFile.Column> | undefined
        if (committed > 0) {
          const first = join(path, partName(1))
          const { metadata } = yield* Effect.scoped(ParquetFile.openForReading(first)).pipe(
            Effect.mapError(platform(`cannot read the columns of ${first}`))
          )
          const read = ParquetFile.columnsOf(metadata)
          if (typeof read === "string") {
            return yield* Effect.fail(fail(`${first} was not written by Sink.parquet: ${read}`))
          }
          columns = read
          names = read.map((c) => c.name)
          for (const c of read) kinds.set(c.name, c.kind)
        }

        /** Why the cells cannot be a row of this dataset, or the row; accepting settles names and kinds. */
        const check = (cells: Record<string, unknown>): string | Array<ParquetFile.Cell> => {
          const own = Object.keys(cells)
          const header = names ?? own
          const badName = nameProblem(own)
          if (badName !== undefined) return badName
          const extra = own.filter((k) => !header.includes(k))
          if (extra.length > 0) {
            return `column${extra.length > 1 ? "s" : ""} ${extra.join(", ")} not among the columns (${header.join(", ")}); ` +
              "pass `columns` to Sink.parquet to fix the set of columns"
          }
          const row = header.map((c) => parquetCell(cells[c]))
          const decided = new Map<string, ParquetFile.Kind>()
          for (let i = 0; i < header.length; i++) {
            const v = row[i]!
            if (v === null) continue
            const c = header[i]!
            const problem = typeof v === "string" ? Unicode.textProblem(v, false) : undefined
            if (problem !== undefined) return `column ${c} has ${problem}, which UTF-8 cannot encode`
            const kind = kinds.get(c) ?? decided.get(c)
            const found: ParquetFile.Kind = typeof v === "number" ? "number" : typeof v === "boolean" ? "boolean" : "string"
            if (kind === undefined) decided.set(c, found)
            else if (kind !== found && kind !== "string") {
              return `column ${c} holds ${kind}s (from the first rows written) but got ${JSON.stringify(v)}; ` +
                "pass `columns` to Sink.parquet to fix the columns' values"
            }
          }
          names = header
          for (const [c, kind] of decided) kinds.set(c, kind)
          return row
        }
        /** Records `refuse` accepted, with their rows: `write` takes them as they are. */
        const accepted = new WeakMap<object, Array<ParquetFile.Cell>>()
        const refuse = (record: SinkRecord<In, Out>): string | undefined => {
          const cells = cellsOf(toCells, record)
          const row = typeof cells === "string" ? cells : check(cells)
          if (typeof row === "string") return `${name}: ${row}`
          accepted.set(record, row)
          return undefined
        }

        let pending: Array<Array<ParquetFile.Cell>> = []
        let parts = committed
        let part:
          | { readonly scope: Scope.CloseableScope; readonly file: FileSystem.File; readonly writer: ParquetFile.PartWriter }
          | undefined
        // As for the file sinks: after a failed or interrupted write the part is in an unknown
        // state; refuse to go on. Reopening from the last checkpoint recovers.
        let broken: SinkError | undefined
        const lock = yield* Effect.makeSemaphore(1)
        const temp = (n: number) => join(path, `.${partName(n)}.tmp`)

        const guard = <A, E extends { readonly message: string }, R>(what: string, effect: Effect.Effect<A, E, R>) =>
          effect.pipe(
            Effect.mapError((e) => (broken = fail(`${what}: ${e.message}`))),
            Effect.onInterrupt(() =>
              Effect.sync(() => {
                broken = fail(`a write to ${path} was interrupted; reopen the sink from its last checkpoint`)
              })
            )
          )
        const encode = <A>(f: () => A) =>
          Effect.try({
            try: f,
            catch: (e) => (broken = fail(`cannot encode a record: ${e instanceof Error ? e.message : String(e)}`))
          })

        /** Encodes the pending rows as a row group of the current part (opened if need be). */
        const flushGroup = Effect.gen(function*() {
          if (pending.length === 0) return
          const rows = pending
          pending = []
          if (columns === undefined) {
            // A column with no value yet is a string column from now on.
            columns = (names ?? []).map((c) => ({ name: c, kind: kinds.get(c) ?? "string" }))
            for (const c of columns) kinds.set(c.name, c.kind)
          }
          if (part === undefined) {
            const partScope = yield* Scope.fork(scope, ExecutionStrategy.sequential)
            const file = yield* guard(
              `cannot open ${temp(parts + 1)}`,
              fs.open(temp(parts + 1), { flag: "w" }).pipe(Scope.extend(partScope))
            )
            const fixed = columns
            const library = yield* ParquetFile.writer
            const writer = yield* encode(() => new ParquetFile.PartWriter(fixed, codec, library))
            part = { scope: partScope, file, writer }
          }
          const { file, writer } = part
          const bytes = yield* encode(() => writer.group(rows))
          yield* guard(`cannot write ${temp(parts + 1)}`, file.writeAll(bytes))
        })

        const write = (records: ReadonlyArray<SinkRecord<In, Out>>) =>
          lock.withPermits(1)(Effect.gen(function*() {
            if (broken !== undefined) return yield* Effect.fail(broken)
            for (const record of records) {
              const row = accepted.get(record) ?? (yield* tryEncode(name, () => {
                const checked = check(toCells(record))
                if (typeof checked === "string") throw new Error(checked)
                return checked
              }))
              pending.push(row)
              if (pending.length >= rowGroupSize) yield* flushGroup
            }
          }))

        const commit = lock.withPermits(1)(Effect.gen(function*() {
          if (broken !== undefined) return yield* Effect.fail(broken)
          yield* guard(clearing, clearUncommitted)
          yield* flushGroup
          if (part !== undefined) {
            const { file, scope: partScope, writer } = part
            const n = parts + 1
            const footer = yield* encode(() => writer.finish())
            yield* guard(`cannot write ${temp(n)}`, file.writeAll(footer))
            yield* guard(`cannot fsync ${temp(n)}`, file.sync)
            yield* Scope.close(partScope, Exit.void)
            part = undefined
            yield* guard(`cannot rename ${temp(n)}`, fs.rename(temp(n), join(path, partName(n))))
            // Makes the rename durable; best effort (not every platform opens directories).
            yield* Effect.scoped(Effect.flatMap(fs.open(path, { flag: "r" }), (dir) => dir.sync)).pipe(Effect.ignore)
            parts = n
          }
          return { offset: parts } satisfies SinkCheckpoint
        }))

        return { write, commit, refuse } satisfies SinkWriter<SinkRecord<In, Out>>
      })
  }
}

/**
 * Writes every record to each of `sinks` (a database table and a file, say). A commit
 * commits them in order and checkpoints them together, so a resume rolls each back to the
 * same point.
 */
export const all = <A>(...sinks: ReadonlyArray<Sink<A>>): Sink<A> => ({
  name: `all(${sinks.map((s) => s.name).join(", ")})`,
  paths: sinks.flatMap((s) => s.paths ?? []),
  open: (resume) =>
    Effect.gen(function* () {
      if (resume !== undefined && resume.parts?.length !== sinks.length) {
        // A checkpoint of another sink (the pipeline's sink was changed mid-run): opening the
        // parts fresh would discard what they committed.
        return yield* Effect.fail(
          new SinkError({ sink: `all(${sinks.map((s) => s.name).join(", ")})`, description: "the run's checkpoint is not one of these sinks: was the pipeline's sink changed? Start a new run directory" })
        )
      }
      const writers: Array<SinkWriter<A>> = []
      for (const [i, sink] of sinks.entries()) {
        const part = resume?.parts?.[i]
        writers.push(yield* sink.open(part === undefined ? undefined : { offset: part.offset }))
      }
      const refusing = writers.filter((w) => w.refuse !== undefined)
      return {
        write: (records) => Effect.forEach(writers, (w) => w.write(records), { discard: true }),
        // The first sink's refusal stands: a row is stored in all of them or in none.
        ...(refusing.length === 0 ? {} : {
          refuse: (record: A) => {
            for (const w of refusing) {
              const reason = w.refuse!(record)
              if (reason !== undefined) return reason
            }
            return undefined
          }
        }),
        commit: Effect.map(Effect.forEach(writers, (w) => w.commit), (parts) => ({
          offset: parts.reduce((a, p) => a + p.offset, 0),
          parts: parts.map((p) => ({ offset: p.offset }))
        }))
      } satisfies SinkWriter<A>
    })
})

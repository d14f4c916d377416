/**
 * Sinks: where a pipeline's results go. Writes are committed in batches; a commit returns a
 * checkpoint that the runner journals, and a sink opened with the last checkpoint discards
 * anything written after it — so a crash mid-write never leaves a row twice.
 */
import { FileSystem } from "@effect/platform"
import { stringify } from "csv-stringify/sync"
import { Effect, Option, Schema, Stream } from "effect"
import type { Scope } from "effect"
import * as CheckpointedFile from "./internal/checkpointedFile.js"
import { csvRecords } from "./internal/csvRecords.js"

/** What a sink receives for each row. */
export interface SinkRecord<In, Out> {
  /** The row's stable key. */
  readonly key: string
  readonly customId: string
  readonly input: In
  readonly output: Out
}

/** Opaque to the runner; a file sink stores its committed byte length. */
export const SinkCheckpoint = Schema.Struct({ offset: Schema.Number })
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
}

export interface Sink<A> {
  readonly name: string
  /**
   * Opens the sink for appending. `resume` is the last journaled checkpoint (undefined for a
   * fresh run): everything after it is discarded.
   */
  readonly open: (
    resume: SinkCheckpoint | undefined
  ) => Effect.Effect<SinkWriter<A>, SinkError, FileSystem.FileSystem | Scope.Scope>
}

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
 */
export const jsonl = <In = unknown, Out = unknown>(path: string): Sink<SinkRecord<In, Out>> => {
  const name = `jsonl:${path}`
  return {
    name,
    open: (resume) =>
      Effect.map(CheckpointedFile.open(path, resume, failWith(name)), (file): SinkWriter<SinkRecord<In, Out>> => ({
        write: (records) =>
          records.length === 0 ? Effect.void : Effect.flatMap(
            tryEncode(name, () => {
              let text = ""
              for (const r of records) {
                text += JSON.stringify({ key: r.key, custom_id: r.customId, input: r.input, output: r.output }) + "\n"
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
  flatten(out, "input", record.input)
  flatten(out, "output", record.output)
  return out
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
 */
export const csv = <In = unknown, Out = unknown>(
  path: string,
  options: CsvOptions<In, Out> = {}
): Sink<SinkRecord<In, Out>> => {
  const name = `csv:${path}`
  const toCells: (record: SinkRecord<In, Out>) => Record<string, unknown> = options.columns ?? defaultColumns
  return {
    name,
    open: (resume) =>
      Effect.gen(function*() {
        const file = yield* CheckpointedFile.open(path, resume, failWith(name))
        // Opened first: it checks the file; the header lies before the checkpoint, untouched.
        let header: ReadonlyArray<string> | undefined =
          file.startOffset > 0 ? yield* readHeader(path, file.startOffset, name) : undefined
        const row = (cells: Record<string, unknown>, columns: ReadonlyArray<string>): Array<string | null> => {
          const out = new Array<string | null>(columns.length)
          let found = 0
          for (let i = 0; i < columns.length; i++) {
            const c = columns[i]!
            if (Object.hasOwn(cells, c)) found++
            out[i] = cell(cells[c])
          }
          if (found !== Object.keys(cells).length) {
            const extra = Object.keys(cells).filter((k) => !columns.includes(k))
            // Dropping the cell would lose data silently; the header is already written.
            throw new Error(
              `column${extra.length > 1 ? "s" : ""} ${extra.join(", ")} not in the header (${columns.join(", ")}); ` +
                "pass `columns` to Sink.csv to fix the set of columns"
            )
          }
          return out
        }
        const write = (records: ReadonlyArray<SinkRecord<In, Out>>) =>
          records.length === 0 ? Effect.void : Effect.flatMap(
            tryEncode(name, () => {
              const rows: Array<Array<string | null>> = []
              let columns = header
              for (const r of records) {
                const cells = toCells(r)
                if (columns === undefined) {
                  columns = Object.keys(cells)
                  rows.push([...columns])
                }
                rows.push(row(cells, columns))
              }
              const text = stringify(rows)
              header = columns
              return text
            }),
            file.append
          )
        return { write, commit: file.commit } satisfies SinkWriter<SinkRecord<In, Out>>
      })
  }
}

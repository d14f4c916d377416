/**
 * A PostgreSQL table as a pipeline's sink, through @effect/sql-pg. It lives in the runner
 * package so that @sluice/core stays free of database drivers.
 *
 * Exactly once: every row is keyed by its `custom_id` (the table's primary key) and written
 * with `INSERT … ON CONFLICT (custom_id) DO NOTHING`, one transaction per commit. A crash
 * between the database commit and the runner's journal leaves rows that the resumed run
 * writes again when it re-collects the shard: the conflict skips them, so each row is in
 * the table once and nothing has to be deleted on resume. The checkpoint's `offset` is the
 * number of rows the sink has accepted up to the commit (resumed from the checkpoint, so it
 * only grows); it is informational, as the inserts themselves are idempotent.
 *
 * A fresh run (no checkpoint) deletes nothing either: rows already in the table under the
 * same `custom_id` — an earlier run of the same requests — are kept as they are.
 *
 * One row never blocks a commit: a value PostgreSQL would refuse (U+0000, a lone surrogate,
 * text in a numeric column; see internal/pgColumns.ts) makes the sink refuse its record
 * before the INSERT, and the runner fails that row alone (`sink_rejected`).
 */
import { Sink } from "@sluice/core"
import type { SinkCheckpoint, SinkRecord, SinkWriter } from "@sluice/core"
import type { SqlError } from "@effect/sql/SqlError"
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Redacted } from "effect"
import * as PgColumns from "./internal/pgColumns.js"

export interface TableOptions<In, Out> {
  /**
   * A connection URL, `postgres://user:password@host:5432/database`. Pass it as a
   * `Redacted` to keep it out of logs; the sink never prints it either way.
   */
  readonly url?: string | Redacted.Redacted<string>
  /**
   * Connection options (host, port, database, username, password as a `Redacted`, ssl, …)
   * for @effect/sql-pg; combined with `url` when both are given. With neither, the `PG*`
   * environment variables apply, as for psql.
   */
  readonly client?: Omit<PgClient.PgClientConfig, "url">
  /**
   * The table, optionally schema-qualified: `"labels"`, `"etl.labels"`. Created if missing.
   * An empty part, a part longer than 63 bytes, U+0000 or a second dot throw at definition.
   */
  readonly table: string
  /**
   * The row's columns next to `custom_id` and `key`: by default `input` and `output`, both
   * `jsonb`. With this function, its cells instead (`custom_id`, `key` and `written_at` are
   * reserved; a name with a dot, longer than 63 bytes, or empty stops the run before the
   * first commit, naming it). The columns are the union of the records' cells (a record
   * without a cell gets NULL). A column the table lacks is created (or added, nullable)
   * with the type of its first non-null value: text, double precision, boolean, or jsonb for
   * objects, arrays and all-null columns; the columns a table has keep their types. Values
   * for `json`/`jsonb` columns are stored as JSON; objects and arrays for other columns as
   * JSON text. A record whose value its column cannot hold is refused (its row fails as
   * `sink_rejected`), and so is one whose function throws.
   */
  readonly columns?: (record: SinkRecord<In, Out>) => Record<string, unknown>
  /** Rows per INSERT statement; 500 unless given (fewer when they would pass 65,535 parameters). */
  readonly batchSize?: number
}

const RESERVED = new Set(["custom_id", "key", "written_at"])

/** The words that must never appear in a message: the URL and the password. */
const secretsOf = (url: string | undefined, password: string | undefined): Array<string> => {
  const out: Array<string> = []
  if (password !== undefined && password !== "") out.push(password)
  if (url !== undefined && url !== "") {
    out.push(url)
    try {
      const parsed = new URL(url)
      if (parsed.password !== "") out.push(parsed.password, decodeURIComponent(parsed.password))
    } catch {
      // Not a URL pg can parse either; the URL itself is hidden.
    }
  }
  // Longest first, so a password inside the URL does not leave the rest of it behind.
  return out.sort((a, b) => b.length - a.length)
}

const scrub = (text: string, secrets: ReadonlyArray<string>): string => {
  let out = text
  for (const s of secrets) out = out.split(s).join("***")
  return out
}

/** The SQL error's message and its cause's: pg's own message says what went wrong. */
const explain = (e: SqlError): string => {
  const cause = e.cause instanceof Error ? e.cause.message : e.cause === undefined ? "" : String(e.cause)
  return cause !== "" && cause !== e.message ? `${e.message}: ${cause}` : e.message
}

/**
 * Rows into a PostgreSQL table: `custom_id text PRIMARY KEY, key text NOT NULL, input jsonb,
 * output jsonb, written_at timestamptz NOT NULL DEFAULT now()` unless `columns` says
 * otherwise. The connection (a small pool) is opened with the sink and closed with its scope.
 * A table name the sink cannot quote (see `PgColumns.tableProblem`) throws here, when the
 * pipeline is defined.
 */
export const table = <In = unknown, Out = unknown>(options: TableOptions<In, Out>): Sink.Sink<SinkRecord<In, Out>> => {
  const tableProblem = PgColumns.tableProblem(options.table)
  if (tableProblem !== undefined) {
    throw new Error(`PgSink.table: table ${JSON.stringify(options.table)} cannot be quoted: ${tableProblem}`)
  }
  const name = `pg:${options.table}`
  const fail = (description: string) => new Sink.SinkError({ sink: name, description })
  const url = options.url === undefined
    ? undefined
    : Redacted.isRedacted(options.url)
    ? options.url
    : Redacted.make(options.url)
  const secrets = secretsOf(
    url === undefined ? undefined : Redacted.value(url),
    options.client?.password === undefined ? undefined : Redacted.value(options.client.password)
  )
  const sqlFail = (what: string) => (e: SqlError) => fail(scrub(`${what}: ${explain(e)}`, secrets))
  const batchSize = options.batchSize ?? 500
  const toCells = options.columns
  const cellsOf = (r: SinkRecord<In, Out>): Record<string, unknown> =>
    toCells !== undefined ? toCells(r)
    : r.lineage === undefined ? { input: r.input, output: r.output }
    : { lineage: r.lineage, input: r.input, output: r.output }
  // The quoted name, for the catalog look-up: same quoting as the identifier helper.
  const quoted = options.table.split(".").map((p) => `"${p.replace(/"/g, `""`)}"`).join(".")

  return {
    name,
    open: (resume) =>
      Effect.gen(function*() {
        const start = resume?.offset ?? 0
        if (!Number.isSafeInteger(start) || start < 0) {
          return yield* Effect.fail(fail(`invalid checkpoint offset ${start}`))
        }
        if (!Number.isSafeInteger(batchSize) || batchSize < 1) {
          return yield* Effect.fail(fail(`batchSize must be a positive integer, got ${batchSize}`))
        }
        // Built in the sink's scope: the pool closes when the sink does.
        const context = yield* Layer.build(
          PgClient.layer({
            ...options.client,
            ...(url !== undefined ? { url } : {}),
            applicationName: options.client?.applicationName ?? "sluice"
          })
        ).pipe(Effect.mapError(sqlFail("cannot connect to PostgreSQL")))
        const sql = Context.get(context, PgClient.PgClient)
        const target = sql(options.table)

        const readColumns = Effect.map(
          sql<{ name: string; type: string }>`
            SELECT attname AS name, format_type(atttypid, atttypmod) AS type
            FROM pg_attribute
            WHERE attrelid = to_regclass(${quoted}::text) AND attnum > 0 AND NOT attisdropped
            ORDER BY attnum`,
          (rows) => new Map(rows.map((r) => [r.name, r.type]))
        )
        /** The table's columns and their types (empty: no table yet), as of the last commit. */
        let types = yield* readColumns.pipe(Effect.mapError(sqlFail(`cannot read the columns of ${options.table}`)))
        /**
         * Columns the table lacks, in the order they were first seen, with the type they will
         * be created with (undefined: no non-null value yet, so jsonb).
         */
        const planned = new Map<string, PgColumns.SqlType | undefined>()

        let accepted = start
        let pending: Array<Record<string, unknown>> = []
        /** Records `refuse` accepted, as rows: `write` takes them as they are. */
        const checked = new WeakMap<object, Record<string, unknown>>()

        type Checked =
          | { readonly _tag: "Row"; readonly row: Record<string, unknown> }
          /** The row fails alone. */
          | { readonly _tag: "Refused"; readonly reason: string }
          /** The pipeline's `columns` is wrong: the run stops, before the commit. */
          | { readonly _tag: "Invalid"; readonly description: string }

        /** Whether a record can be a row of the table; accepting settles the types of new columns. */
        const check = (r: SinkRecord<In, Out>): Checked => {
          let cells: Record<string, unknown>
          try {
            cells = cellsOf(r)
          } catch (e) {
            return { _tag: "Refused", reason: `the columns function failed: ${e instanceof Error ? e.message : String(e)}` }
          }
          const columns = Object.keys(cells)
          const reserved = columns.filter((c) => RESERVED.has(c))
          if (reserved.length > 0) {
            return { _tag: "Invalid", description: `columns ${reserved.join(", ")} are reserved: the sink fills them` }
          }
          for (const c of columns) {
            const problem = PgColumns.identifierProblem(c)
            if (problem !== undefined) {
              return {
                _tag: "Invalid",
                description: `column ${JSON.stringify(c)} (from \`columns\`, for ${r.customId}) cannot be a PostgreSQL column name: ${problem}; rename it`
              }
            }
          }
          const key = Sink.textProblem(r.key, true)
          if (key !== undefined) return { _tag: "Refused", reason: `key has ${key}, which PostgreSQL text cannot hold` }
          /** The columns this record adds, with their type (undefined: only nulls so far). */
          const fresh = new Map<string, PgColumns.SqlType | undefined>()
          for (const c of columns) {
            const value = cells[c]
            const known = types.get(c) ?? planned.get(c)
            if (value === null || value === undefined) {
              if (known === undefined && !planned.has(c)) fresh.set(c, undefined)
              continue
            }
            const type = known ?? (toCells === undefined ? "jsonb" : PgColumns.sqlTypeOf(value))
            const problem = PgColumns.valueProblem(c, value, type)
            if (problem !== undefined) return { _tag: "Refused", reason: problem }
            if (known === undefined) fresh.set(c, type as PgColumns.SqlType)
          }
          // custom_id, key and written_at are created with the table.
          const width = (types.size === 0 ? 3 : types.size) + planned.size + [...fresh.keys()].filter((c) => !planned.has(c)).length
          if (width > PgColumns.MAX_COLUMNS) {
            return { _tag: "Refused", reason: `its new columns would give the table ${width} columns; PostgreSQL allows ${PgColumns.MAX_COLUMNS}` }
          }
          for (const [c, type] of fresh) if (type !== undefined || !planned.has(c)) planned.set(c, type)
          return { _tag: "Row", row: { custom_id: r.customId, key: r.key, ...cells } }
        }

        const refuse = (r: SinkRecord<In, Out>): string | undefined => {
          const result = check(r)
          switch (result._tag) {
            case "Row":
              checked.set(r, result.row)
              return undefined
            case "Refused":
              return `${name} cannot store the row: ${result.reason}`
            case "Invalid":
              // Not the row's fault: \`write\` stops the run with it.
              return undefined
          }
        }

        const write = (records: ReadonlyArray<SinkRecord<In, Out>>) =>
          Effect.try({
            try: () => {
              const rows: Array<Record<string, unknown>> = []
              for (const r of records) {
                const row = checked.get(r)
                if (row !== undefined) {
                  rows.push(row)
                  continue
                }
                const result = check(r)
                if (result._tag !== "Row") throw new Error(result._tag === "Refused" ? result.reason : result.description)
                rows.push(result.row)
              }
              for (const row of rows) pending.push(row)
              accepted += records.length
            },
            catch: (e) => fail(`cannot encode a record: ${e instanceof Error ? e.message : String(e)}`)
          })

        /** Creates the table, or adds the columns it lacks; returns the columns' types. */
        const ensureColumns = Effect.gen(function*() {
          const typeOf = (c: string) => sql.literal(planned.get(c) ?? "jsonb")
          let now = types
          if (now.size === 0) {
            yield* sql`CREATE TABLE IF NOT EXISTS ${target} (${
              sql.csv([
                sql`custom_id text PRIMARY KEY`,
                sql`key text NOT NULL`,
                ...[...planned.keys()].map((c) => sql`${sql(c)} ${typeOf(c)}`),
                sql`written_at timestamptz NOT NULL DEFAULT now()`
              ])
            })`
            now = yield* readColumns
          }
          // Also when another process created the table first.
          const missing = [...planned.keys()].filter((c) => !now.has(c))
          for (const c of missing) yield* sql`ALTER TABLE ${target} ADD COLUMN IF NOT EXISTS ${sql(c)} ${typeOf(c)}`
          return missing.length > 0 ? yield* readColumns : now
        })

        const commit = Effect.suspend(() => {
          if (pending.length === 0) return Effect.succeed<SinkCheckpoint>({ offset: accepted })
          const rows = pending
          const offset = accepted
          return Effect.gen(function*() {
            const columnTypes = yield* ensureColumns
            // Every INSERT names the union of the rows' columns: a cell a row lacks is NULL.
            const seen = new Set<string>()
            for (const row of rows) for (const c of Object.keys(row)) seen.add(c)
            const columns = [...seen]
            const perInsert = Math.max(1, Math.min(batchSize, Math.floor(PgColumns.MAX_PARAMETERS / columns.length)))
            for (let i = 0; i < rows.length; i += perInsert) {
              const batch = rows.slice(i, i + perInsert).map((row) => {
                const out: Record<string, unknown> = {}
                for (const c of columns) out[c] = PgColumns.param(row[c], columnTypes.get(c))
                return out
              })
              yield* sql`INSERT INTO ${target} ${sql.insert(batch)} ON CONFLICT (custom_id) DO NOTHING`
            }
            return columnTypes
          }).pipe(
            sql.withTransaction,
            Effect.mapError(sqlFail(`cannot write to ${options.table}`)),
            // Kept on failure: the inserts are idempotent, so a later commit may try again.
            Effect.map((columnTypes): SinkCheckpoint => {
              // Known only once the transaction that may have created the table committed.
              types = columnTypes
              for (const c of [...planned.keys()]) if (types.has(c)) planned.delete(c)
              pending = pending.slice(rows.length)
              return { offset }
            })
          )
        })

        return { write, commit, refuse } satisfies SinkWriter<SinkRecord<In, Out>>
      })
  }
}

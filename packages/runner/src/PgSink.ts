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
 */
import { Sink } from "@sluice/core"
import type { SinkCheckpoint, SinkRecord, SinkWriter } from "@sluice/core"
import type { SqlError } from "@effect/sql/SqlError"
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Redacted } from "effect"

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
  /** The table, optionally schema-qualified: `"labels"`, `"etl.labels"`. Created if missing. */
  readonly table: string
  /**
   * The row's columns next to `custom_id` and `key`: by default `input` and `output`, both
   * `jsonb`. With this function, its cells instead (`custom_id`, `key` and `written_at` are
   * reserved). When the sink creates the table, each column's type comes from its first
   * non-null value (text, double precision, boolean, or jsonb for objects, arrays and
   * all-null columns); a table that exists is used as it is. Values for `json`/`jsonb`
   * columns are stored as JSON; objects and arrays for other columns as JSON text.
   */
  readonly columns?: (record: SinkRecord<In, Out>) => Record<string, unknown>
  /** Rows per INSERT statement; 500 unless given. */
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

type SqlType = "text" | "double precision" | "boolean" | "jsonb"

const sqlTypeOf = (value: unknown): SqlType => {
  switch (typeof value) {
    case "string":
      return "text"
    case "number":
      return "double precision"
    case "boolean":
      return "boolean"
  }
  return value instanceof Date ? "text" : "jsonb"
}

const isJsonType = (type: string) => type === "json" || type === "jsonb"

/** A cell as a query parameter for a column of `type` (from the catalog). */
const param = (value: unknown, type: string | undefined): unknown => {
  if (value === undefined || value === null) return null
  if (type !== undefined && isJsonType(type)) return JSON.stringify(value) ?? null
  switch (typeof value) {
    case "string":
    case "number":
    case "boolean":
      return value
    case "bigint":
      return value.toString()
  }
  if (value instanceof Date) return value
  return JSON.stringify(value) ?? null
}

/**
 * Rows into a PostgreSQL table: `custom_id text PRIMARY KEY, key text NOT NULL, input jsonb,
 * output jsonb, written_at timestamptz NOT NULL DEFAULT now()` unless `columns` says
 * otherwise. The connection (a small pool) is opened with the sink and closed with its scope.
 */
export const table = <In = unknown, Out = unknown>(options: TableOptions<In, Out>): Sink.Sink<SinkRecord<In, Out>> => {
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
        // The quoted name, for the catalog look-up: same quoting as the identifier helper.
        const quoted = options.table.split(".").map((p) => `"${p.replace(/"/g, `""`)}"`).join(".")

        let accepted = start
        let pending: Array<Record<string, unknown>> = []
        /** Column name → type, from the catalog, once the table is known to exist. */
        let types: Map<string, string> | undefined

        const ensureTable = (first: ReadonlyArray<Record<string, unknown>>) =>
          Effect.gen(function*() {
            if (types !== undefined) return types
            const columns = Object.keys(first[0]!).filter((c) => !RESERVED.has(c)).map((c) => {
              let type: SqlType = "jsonb"
              if (toCells !== undefined) {
                const sample = first.find((r) => r[c] !== null && r[c] !== undefined)
                if (sample !== undefined) type = sqlTypeOf(sample[c])
              }
              return sql`${sql(c)} ${sql.literal(type)}`
            })
            yield* sql`CREATE TABLE IF NOT EXISTS ${target} (${
              sql.csv([
                sql`custom_id text PRIMARY KEY`,
                sql`key text NOT NULL`,
                ...columns,
                sql`written_at timestamptz NOT NULL DEFAULT now()`
              ])
            })`
            const rows = yield* sql<{ name: string; type: string }>`
              SELECT attname AS name, format_type(atttypid, atttypmod) AS type
              FROM pg_attribute
              WHERE attrelid = to_regclass(${quoted}::text) AND attnum > 0 AND NOT attisdropped`
            return new Map(rows.map((r) => [r.name, r.type]))
          })

        const write = (records: ReadonlyArray<SinkRecord<In, Out>>) =>
          Effect.try({
            try: () => {
              for (const r of records) {
                const cells =
                  toCells !== undefined ? toCells(r)
                  : r.lineage === undefined ? { input: r.input, output: r.output }
                  : { lineage: r.lineage, input: r.input, output: r.output }
                const reserved = Object.keys(cells).filter((c) => RESERVED.has(c))
                if (reserved.length > 0) {
                  throw new Error(`columns ${reserved.join(", ")} are reserved: the sink fills them`)
                }
                pending.push({ custom_id: r.customId, key: r.key, ...cells })
              }
              accepted += records.length
            },
            catch: (e) => fail(`cannot encode a record: ${e instanceof Error ? e.message : String(e)}`)
          })

        const commit = Effect.suspend(() => {
          if (pending.length === 0) return Effect.succeed<SinkCheckpoint>({ offset: accepted })
          const rows = pending
          const offset = accepted
          return Effect.gen(function*() {
            const columnTypes = yield* ensureTable(rows)
            for (let i = 0; i < rows.length; i += batchSize) {
              const batch = rows.slice(i, i + batchSize).map((row) => {
                const out: Record<string, unknown> = {}
                for (const [c, v] of Object.entries(row)) out[c] = param(v, columnTypes.get(c))
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
              pending = pending.slice(rows.length)
              return { offset }
            })
          )
        })

        return { write, commit } satisfies SinkWriter<SinkRecord<In, Out>>
      })
  }
}

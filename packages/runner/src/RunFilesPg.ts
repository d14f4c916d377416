/**
 * The files of cluster runs in their cluster's PostgreSQL database (RunFiles.ts's store):
 *
 *   sluice_run_files        (run_id, path) → version, size
 *   sluice_run_file_chunks  (run_id, path, version, at) → bytes (bytea, at most 1 MiB a row)
 *
 * A version is taken from a sequence (`sluice_run_file_version`), so none is ever reused, even
 * for a file removed and created again. A new version keeping the first bytes of the old one
 * moves the old rows below the cut to it (the row across the cut shortened) in the database,
 * without sending them again. Each `apply` is one transaction whose every change first checks
 * that the file is still at the version and size the flushing copy saw.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer } from "effect"
import type { Redacted } from "effect"
import { onFirstUse } from "./internal/pgTables.js"
import { unavailable } from "./ClusterDatabase.js"
import * as RunFiles from "./RunFiles.js"

export const filesTable = "sluice_run_files"
export const chunksTable = "sluice_run_file_chunks"
const versions = "sluice_run_file_version"

/** Bytes per row at most. */
export const chunkSize = 1 << 20

/** Rows read per query by a pull. */
const page = 16

const ensure = onFirstUse((sql) =>
  Effect.gen(function* () {
    yield* sql`CREATE TABLE IF NOT EXISTS ${sql(filesTable)} (
      run_id text NOT NULL, path text NOT NULL, version bigint NOT NULL, size bigint NOT NULL, PRIMARY KEY (run_id, path))`
    yield* sql`CREATE TABLE IF NOT EXISTS ${sql(chunksTable)} (
      run_id text NOT NULL, path text NOT NULL, version bigint NOT NULL, at bigint NOT NULL, bytes bytea NOT NULL,
      PRIMARY KEY (run_id, path, version, at))`
    yield* sql`CREATE SEQUENCE IF NOT EXISTS ${sql(versions)}`
  })
)

const ensureWriters = onFirstUse(
  (sql) => sql`CREATE TABLE IF NOT EXISTS ${sql(writersTable)} (run_id text PRIMARY KEY, writer text NOT NULL, since timestamptz NOT NULL DEFAULT now())`
)

interface FileRow {
  readonly path: string
  readonly version: string | number
  readonly size: string | number
}

const toStored = (r: FileRow): RunFiles.Stored => ({ path: r.path, version: Number(r.version), size: Number(r.size) })

/** The store on the database of the SqlClient given (its tables created if missing). */
export const make: Effect.Effect<RunFiles.Backend, SqlError, SqlClient.SqlClient> = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* ensure(sql)
  const fail = (runId: string) => (e: SqlError) => new RunFiles.RunFilesError({ runId, description: e.message })

  /** Inserts [from, size) of the source as rows of `version`. */
  const insert = (runId: string, path: string, version: number, from: number, size: number, source: RunFiles.Source) =>
    Effect.gen(function* () {
      for (let at = from; at < size; at += chunkSize) {
        const bytes = yield* source(at, Math.min(chunkSize, size - at))
        yield* sql`INSERT INTO ${sql(chunksTable)} (run_id, path, version, at, bytes) VALUES (${runId}, ${path}, ${version}, ${at}, ${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)})`
      }
    })

  const conflict = (runId: string, path: string) =>
    new RunFiles.RunFilesError({ runId, description: `${path} changed in the database since this copy last saw it (another step wrote the run)` })

  const applyOne = (runId: string, c: RunFiles.Change) =>
    Effect.gen(function* () {
      if (c.op === "remove") {
        const gone = yield* sql`DELETE FROM ${sql(filesTable)} WHERE run_id = ${runId} AND path = ${c.path} AND version = ${c.expect.version} AND size = ${c.expect.size} RETURNING 1`
        if (gone.length === 0) return yield* conflict(runId, c.path)
        yield* sql`DELETE FROM ${sql(chunksTable)} WHERE run_id = ${runId} AND path = ${c.path} AND version = ${c.expect.version}`
        return
      }
      if (c.op === "append") {
        const grown = yield* sql`UPDATE ${sql(filesTable)} SET size = ${c.size}
          WHERE run_id = ${runId} AND path = ${c.path} AND version = ${c.expect.version} AND size = ${c.expect.size} RETURNING 1`
        if (grown.length === 0) return yield* conflict(runId, c.path)
        yield* insert(runId, c.path, c.expect.version, c.expect.size, c.size, c.source)
        return
      }
      const [next] = yield* sql<{ v: string }>`SELECT nextval(${versions}) AS v`
      const version = Number(next!.v)
      if (c.expect === undefined) {
        const made = yield* sql`INSERT INTO ${sql(filesTable)} (run_id, path, version, size) VALUES (${runId}, ${c.path}, ${version}, ${c.size})
          ON CONFLICT (run_id, path) DO NOTHING RETURNING 1`
        if (made.length === 0) return yield* conflict(runId, c.path)
      } else {
        const moved = yield* sql`UPDATE ${sql(filesTable)} SET version = ${version}, size = ${c.size}
          WHERE run_id = ${runId} AND path = ${c.path} AND version = ${c.expect.version} AND size = ${c.expect.size} RETURNING 1`
        if (moved.length === 0) return yield* conflict(runId, c.path)
        if (c.keep > 0) {
          // The old version's bytes below the cut become the new version's, without leaving the database.
          yield* sql`UPDATE ${sql(chunksTable)} SET version = ${version},
              bytes = CASE WHEN at + length(bytes) > ${c.keep} THEN substring(bytes FROM 1 FOR (${c.keep} - at)::int) ELSE bytes END
            WHERE run_id = ${runId} AND path = ${c.path} AND version = ${c.expect.version} AND at < ${c.keep}`
        }
        yield* sql`DELETE FROM ${sql(chunksTable)} WHERE run_id = ${runId} AND path = ${c.path} AND version = ${c.expect.version}`
      }
      yield* insert(runId, c.path, version, c.keep, c.size, c.source)
    })

  const apply: RunFiles.Backend["apply"] = (runId, changes) =>
    sql.withTransaction(
      Effect.gen(function* () {
        for (const c of changes) yield* applyOne(runId, c)
        const paths = changes.map((c) => c.path)
        const rows = yield* sql<FileRow>`SELECT path, version, size FROM ${sql(filesTable)} WHERE run_id = ${runId} AND path IN ${sql.in(paths)}`
        return rows.map(toStored)
      })
    ).pipe(Effect.catchTag("SqlError", (e) => Effect.fail(fail(runId)(e))))

  const snapshot: RunFiles.Backend["snapshot"] = (runId, use) =>
    sql.withTransaction(
      Effect.gen(function* () {
        yield* sql`SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY`
        const files = (yield* sql<FileRow>`SELECT path, version, size FROM ${sql(filesTable)} WHERE run_id = ${runId} ORDER BY path`).map(toStored)
        const read: RunFiles.View["read"] = (file, from, to, piece) =>
          Effect.gen(function* () {
            let bytes = 0
            let after = -1
            for (;;) {
              const rows = yield* sql<{ at: string | number; bytes: Uint8Array }>`SELECT at, bytes FROM ${sql(chunksTable)}
                WHERE run_id = ${runId} AND path = ${file.path} AND version = ${file.version} AND at > ${after} AND at + length(bytes) > ${from} AND at < ${to}
                ORDER BY at LIMIT ${page}`
              for (const row of rows) {
                const at = Number(row.at)
                const skip = Math.max(0, from - at)
                const part = row.bytes.subarray(skip, Math.min(row.bytes.length, to - at))
                piece(at + skip, part)
                bytes += part.length
                after = at
              }
              if (rows.length < page) return bytes
            }
          }).pipe(Effect.catchTag("SqlError", (e) => Effect.fail(fail(runId)(e))))
        return yield* use({ files, read })
      })
    ).pipe(Effect.catchTag("SqlError", (e) => Effect.fail(fail(runId)(e))))

  const has: RunFiles.Backend["has"] = (runId, path) =>
    sql`SELECT 1 FROM ${sql(filesTable)} WHERE run_id = ${runId} AND path = ${path}`.pipe(
      Effect.map((rows) => rows.length > 0),
      Effect.mapError(fail(runId))
    )

  return { apply, snapshot, has }
})

export const writersTable = "sluice_run_file_writers"

/**
 * Marks `writer` (a step, a cancel) as writing the run's files, and returns the writer marked
 * before it that never said it ended (a step that died, or whose session ended while it ran:
 * it may still be stopping), if any. Taken holding the run's lock in the database.
 */
export const claim = (runId: string, writer: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* ensure(sql)
    yield* ensureWriters(sql)
    const before = yield* sql<{ writer: string }>`SELECT writer FROM ${sql(writersTable)} WHERE run_id = ${runId}`
    yield* sql`INSERT INTO ${sql(writersTable)} (run_id, writer) VALUES (${runId}, ${writer})
      ON CONFLICT (run_id) DO UPDATE SET writer = EXCLUDED.writer, since = now()`
    return before[0]?.writer
  })

/** The writer ended (its last flush done): the next need not wait for it. */
export const release = (runId: string, writer: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql`DELETE FROM ${sql(writersTable)} WHERE run_id = ${runId} AND writer = ${writer}`)

/** The store, as a service. */
export class Store extends Context.Tag("@sluice/runner/RunFilesPg/Store")<Store, RunFiles.Backend>() {}

/** The store of the cluster's database at `url`, for a command that is not a worker (readers, `run --cluster`). */
export const layer = (url: Redacted.Redacted) =>
  Layer.effect(Store, make).pipe(Layer.provide(PgClient.layer({ url })), Layer.mapError(unavailable(url)))

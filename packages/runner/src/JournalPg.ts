/**
 * The journals of a cluster's runs in its PostgreSQL database (JournalStore.ts's second store):
 * one row per event in `sluice_journal`, keyed by the run id and the event's seq (1, 2, … in the
 * order appended). A row holds the event's line exactly as journal.jsonl would (its time `t`
 * included), checked to read back before it is written; `t` is also a column of its own.
 *
 * Before each INSERT, the run's local copy of its files is flushed to the database when the run
 * keeps them there (RunFiles.ts): an event never names bytes the database does not have.
 *
 * An append is durable when its INSERT commits (before the action it guards, as the fsync of a
 * line is). Its seq is the run's last plus one, taken in the INSERT itself; two appends to one
 * run at once (steps of a run take turns on its lock, ClusterRunLock.ts, but nothing here relies
 * on it) compute the same seq and the primary key admits one: the other sees no row inserted
 * and takes the next seq. A row that does not decode fails a replay with JournalRowCorrupt,
 * naming the run and the seq. A changed pipeline's next generation has a run id of its own
 * (Rebase.ts): the old generation's rows stay under the old id.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { PgClient } from "@effect/sql-pg"
import { Effect, Either, Layer, Option, Stream } from "effect"
import type { Redacted } from "effect"
import { onFirstUse } from "./internal/pgTables.js"
import { unavailable } from "./ClusterDatabase.js"
import * as Journal from "./Journal.js"
import type { TimedEvent } from "./Journal.js"
import * as JournalStore from "./JournalStore.js"
import * as RunFiles from "./RunFiles.js"

export const table = "sluice_journal"

/** Rows read per query by a replay or a follower. */
const page = 2000

const ensure = onFirstUse(
  (sql) => sql`CREATE TABLE IF NOT EXISTS ${sql(table)} (
      run_id text NOT NULL, seq bigint NOT NULL, t bigint NOT NULL, event text NOT NULL, PRIMARY KEY (run_id, seq))`
)

/** Where a run's journal is, for errors (the database's address is never in them). */
const where = (runId: string) => `of run ${runId} (PostgreSQL table ${table})`

const ioError = (runId: string) => (e: SqlError) => new Journal.JournalIOError({ path: where(runId), description: e.message })

interface Row {
  readonly seq: string | number
  readonly event: string
}

const decodeRow = (runId: string, row: Row): Either.Either<TimedEvent, JournalStore.JournalRowCorrupt> =>
  Either.mapLeft(Journal.parseTimed(row.event), (description) => new JournalStore.JournalRowCorrupt({ table, run: runId, seq: Number(row.seq), description }))

/** The run's rows after `seq`, a page of them in order. */
const rowsAfter = (sql: SqlClient.SqlClient, runId: string, seq: number) =>
  sql<Row>`SELECT seq, event FROM ${sql(table)} WHERE run_id = ${runId} AND seq > ${seq} ORDER BY seq LIMIT ${page}`

const decodeAll = (runId: string, rows: ReadonlyArray<Row>) =>
  Effect.forEach(rows, (row) => decodeRow(runId, row))

/** The store on the database of the SqlClient given (its table created if missing). */
export const make: Effect.Effect<JournalStore.Backend, SqlError, SqlClient.SqlClient> = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* ensure(sql)

  const open: JournalStore.Backend["open"] = ({ paths, runId }) =>
    Effect.gen(function* () {
      // In the run directory, where its journal would be: the line that says it is here.
      yield* Journal.markInDatabase(paths.journal)
      // A cluster run's files in the database too (RunFiles.ts): every byte an event depends on is there before the event.
      const mirror = yield* RunFiles.Active
      // Another directory's journal opened beside a copy would write events no flush covers: refused.
      if (mirror !== undefined && mirror.root !== paths.root) {
        return yield* new Journal.JournalIOError({ path: where(runId), description: `opened in ${paths.root} while the copy of run ${mirror.runId} in ${mirror.root} is in use` })
      }
      const flush = mirror === undefined
        ? Effect.void
        : mirror.flush.pipe(Effect.mapError((e) => new Journal.JournalIOError({ path: where(runId), description: e.message })))
      const lock = yield* Effect.makeSemaphore(1)
      // The time is taken holding the lock: the rows' times follow their order (as far as the clock does).
      const append = (event: Parameters<Journal.JournalWriter["append"]>[0]) =>
        lock.withPermits(1)(
          Effect.gen(function* () {
            const line = Journal.lineOf(event, Date.now())
            if (Either.isLeft(line)) {
              return yield* new Journal.JournalIOError({ path: where(runId), description: `refused a ${event._tag} event that would not read back: ${line.left}` })
            }
            const t = (JSON.parse(line.right) as { t: number }).t
            yield* flush
            // The next seq, unless another writer took it between the SELECT and the INSERT: then again.
            for (let tries = 0; tries < 100; tries++) {
              const inserted = yield* sql`INSERT INTO ${sql(table)} (run_id, seq, t, event)
                SELECT ${runId}, COALESCE(MAX(seq), 0) + 1, ${t}, ${line.right} FROM ${sql(table)} WHERE run_id = ${runId}
                ON CONFLICT (run_id, seq) DO NOTHING RETURNING seq`.pipe(Effect.mapError(ioError(runId)))
              if (inserted.length > 0) return
            }
            return yield* new Journal.JournalIOError({ path: where(runId), description: "no seq free after 100 tries: too many writers of one run at once" })
          })
        )
      return { append }
    })

  // A page of rows at a time (an empty run: no piece).
  const replayChunks: JournalStore.Backend["replayChunks"] = ({ runId }) =>
    Stream.paginateEffect(0, (after) =>
      rowsAfter(sql, runId, after).pipe(
        Effect.mapError(ioError(runId)),
        Effect.flatMap((rows) =>
          Effect.map(decodeAll(runId, rows), (events) => [
            events,
            rows.length < page ? Option.none<number>() : Option.some(Number(rows[rows.length - 1]!.seq))
          ] as const)
        )
      )
    ).pipe(Stream.filter((events) => events.length > 0))

  const replayTimed: JournalStore.Backend["replayTimed"] = (run) => Stream.flattenIterables(replayChunks(run))

  const readAfter: JournalStore.Backend["readAfter"] = ({ runId }, from) =>
    Effect.gen(function* () {
      // A position past this run's rows: the run is another generation (a new run id) now.
      const known = from.at === 0 || (yield* sql`SELECT 1 FROM ${sql(table)} WHERE run_id = ${runId} AND seq = ${from.at}`).length > 0
      const at = known ? from : Journal.start
      const rows = yield* rowsAfter(sql, runId, at.at)
      const events = yield* decodeAll(runId, rows)
      const last = rows.length === 0 ? at.at : Number(rows[rows.length - 1]!.seq)
      return { events, position: { at: last, lines: at.lines + rows.length }, restarted: !known, more: rows.length === page }
    }).pipe(Effect.catchTag("SqlError", (e) => Effect.fail(ioError(runId)(e))))

  return { kind: "postgres", open, replayTimed, replayChunks, readAfter, archive: () => Effect.void }
})

/**
 * The stores of a process connected to the cluster's database at `url`: journals of runs that
 * keep theirs there are read and written in it; `newRuns` says where runs this process creates keep theirs.
 */
export const layer = (url: Redacted.Redacted, newRuns: JournalStore.Kind = "file") =>
  Layer.effect(JournalStore.JournalStore, Effect.map(make, (backend) => JournalStore.withDatabase(backend, newRuns))).pipe(
    Layer.provide(PgClient.layer({ url })),
    Layer.mapError(unavailable(url))
  )

/** `layer`, for a process whose SqlClient is the cluster's database already (a worker). */
export const provide = (newRuns: JournalStore.Kind) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(make, (backend) => Effect.provideService(effect, JournalStore.JournalStore, JournalStore.withDatabase(backend, newRuns)))

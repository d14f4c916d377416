/**
 * The attempts of a distributed run (Cluster.ts), one row per run in `sluice_run_attempts` of the
 * cluster's database: which attempt is the run's current one, and whether it was cancelled.
 *
 * A workflow's failure is final for its idempotency key. So a run whose workflow failed (or was
 * cancelled) is continued by a new *attempt*: a workflow of the same run under a new key (the
 * run id for the first attempt, so that workflows started before attempts existed are still
 * found; `<run id>#<n>` after). The row says which attempt is current. Every step checks it,
 * holding the run's lock in the database (ClusterRunLock.ts), before it does anything: a step of
 * an attempt that is cancelled, or that a later attempt replaced, does nothing and its workflow
 * ends. `sluice cancel --cluster` marks the current attempt cancelled under that same lock, so
 * that once it holds the lock no step of the run submits anything again.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
import { onFirstUse } from "./internal/pgTables.js"

export const table = "sluice_run_attempts"

export interface Current {
  readonly attempt: number
  readonly cancelled: boolean
}

const ensure = onFirstUse(
  (sql) => sql`CREATE TABLE IF NOT EXISTS ${sql(table)} (
      run_id text PRIMARY KEY, attempt integer NOT NULL, cancelled boolean NOT NULL DEFAULT false, updated_at timestamptz NOT NULL DEFAULT now())`
)

const withTable = <A>(f: (sql: SqlClient.SqlClient) => Effect.Effect<A, SqlError>): Effect.Effect<A, SqlError, SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => Effect.zipRight(ensure(sql), f(sql)))

/** The run's current attempt (the first, not cancelled, when the run has no row). */
export const current = (runId: string) =>
  withTable((sql) =>
    Effect.map(
      sql<{ attempt: number; cancelled: boolean }>`SELECT attempt, cancelled FROM ${sql(table)} WHERE run_id = ${runId}`,
      (rows): Current => (rows[0] === undefined ? { attempt: 0, cancelled: false } : { attempt: Number(rows[0].attempt), cancelled: rows[0].cancelled === true })
    )
  )

/** Whether a step of `attempt` must do nothing: that attempt was cancelled, or a later one replaced it. */
export const stopped = (runId: string, attempt: number) =>
  Effect.map(current(runId), (now) => now.attempt > attempt || (now.attempt === attempt && now.cancelled))

/** Marks the run's current attempt cancelled; its number. */
export const cancel = (runId: string) =>
  withTable((sql) =>
    Effect.map(
      sql<{ attempt: number }>`INSERT INTO ${sql(table)} (run_id, attempt, cancelled) VALUES (${runId}, 0, true)
        ON CONFLICT (run_id) DO UPDATE SET cancelled = true, updated_at = now() RETURNING attempt`,
      (rows) => Number(rows[0]?.attempt ?? 0)
    )
  )

/**
 * Makes the attempt after `from` the current one, unless another caller already replaced `from`
 * (two `run --cluster` at once start one new attempt); the current attempt's number afterwards.
 */
export const next = (runId: string, from: number) =>
  withTable((sql) =>
    Effect.gen(function* () {
      yield* sql`INSERT INTO ${sql(table)} (run_id, attempt, cancelled) VALUES (${runId}, ${from + 1}, false)
        ON CONFLICT (run_id) DO UPDATE SET attempt = EXCLUDED.attempt, cancelled = false, updated_at = now()
        WHERE ${sql(table)}.attempt = ${from}`
      return (yield* current(runId).pipe(Effect.provideService(SqlClient.SqlClient, sql))).attempt
    })
  )

/**
 * The enqueued-token ledger of a cluster (TokenLedger.ts's Store): the document the cache
 * directory's file holds on one machine, as one row of `sluice_token_ledger` in the cluster's
 * PostgreSQL database — so every run of every worker shares one ledger per provider and model.
 * An update reads the row `FOR UPDATE` and writes it back in the same transaction: the workers of
 * all machines take turns on it as the runs of one machine take turns on the file's lock.
 * Its entries are leased (TokenLedger.Leases), renewed by the steps of the shards that hold them.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Duration, Effect, Option, Schedule, Schema } from "effect"
import { onFirstUse } from "./internal/pgTables.js"
import * as TokenLedger from "./TokenLedger.js"

export const table = "sluice_token_ledger"
/** The row of the enqueued-token ledger (the table could hold others). */
const row = "enqueued-tokens"

const decode = Schema.decodeUnknownOption(TokenLedger.LedgerData)

/** The ledger as the row holds it (a row that cannot be read starts afresh, as the file does). */
const parse = (rows: ReadonlyArray<{ readonly data: unknown }>): TokenLedger.LedgerData =>
  rows[0] === undefined ? TokenLedger.empty() : Option.getOrElse(decode(rows[0].data), TokenLedger.empty)

const ensure = onFirstUse((sql) =>
  Effect.zipRight(
    sql`CREATE TABLE IF NOT EXISTS ${sql(table)} (name text PRIMARY KEY, data jsonb NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`,
    sql`INSERT INTO ${sql(table)} (name, data) VALUES (${row}, ${JSON.stringify(TokenLedger.empty())}::jsonb) ON CONFLICT (name) DO NOTHING`
  )
)

/** Transient failures (a connection dropped) are tried again; then a step fails and its workflow tries it again. */
const attempts = Schedule.exponential("100 millis").pipe(Schedule.compose(Schedule.recurs(4)))

/** The cluster's ledger on the database of the SqlClient given (its table created if missing). */
export const make: Effect.Effect<TokenLedger.Store, SqlError, SqlClient.SqlClient> = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* ensure(sql)
  return {
    update: (f) =>
      sql.withTransaction(
        Effect.gen(function* () {
          const data = parse(yield* sql<{ data: unknown }>`SELECT data FROM ${sql(table)} WHERE name = ${row} FOR UPDATE`)
          const [a, next] = f(TokenLedger.prune(data, Date.now()))
          yield* sql`INSERT INTO ${sql(table)} (name, data) VALUES (${row}, ${JSON.stringify(next)}::jsonb)
            ON CONFLICT (name) DO UPDATE SET data = EXCLUDED.data, updated_at = now()`
          return a
        })
      ).pipe(
        Effect.retry(attempts),
        // The Store port has no error channel: a database that stays away fails the step, which is tried again.
        Effect.orDie
      )
  }
})

/**
 * The ledger as it is now (pruned), read without a lock and without creating its table: for a
 * reader (`sluice status`), a cluster whose runs never needed the ledger has none (empty).
 */
export const read: Effect.Effect<TokenLedger.LedgerData, SqlError, SqlClient.SqlClient> = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const [present] = yield* sql<{ present: boolean }>`SELECT to_regclass(${table}::text) IS NOT NULL AS present`
  if (present?.present !== true) return TokenLedger.empty()
  return TokenLedger.prune(parse(yield* sql<{ data: unknown }>`SELECT data FROM ${sql(table)} WHERE name = ${row}`), Date.now())
})

/** Whether a shard of a run is in the ledger's line for headroom (read without a lock). */
export const inLine = (runId: string, shard: string): Effect.Effect<boolean, SqlError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* ensure(sql)
    const data = TokenLedger.prune(parse(yield* sql<{ data: unknown }>`SELECT data FROM ${sql(table)} WHERE name = ${row}`), Date.now())
    return data.waiting.some((e) => e.run === runId && e.shard === shard)
  })

/**
 * The leases of a run polled every `pollSeconds`: a shard's steps come at least that often while
 * its batch runs or it waits (plus the run lock's turn, and a failover). An entry lives 15
 * minutes or five polls without one; a place in line 2 minutes or three polls.
 */
export const leases = (pollSeconds: number): TokenLedger.Leases => ({
  hold: Duration.max(Duration.minutes(15), Duration.seconds(5 * pollSeconds)),
  wait: Duration.max(Duration.minutes(2), Duration.seconds(3 * pollSeconds))
})

/**
 * The cluster's tables created on first use, once per database client: `create` runs its
 * `CREATE … IF NOT EXISTS` statements the first time a client needs them, and not again.
 */
import type { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Schedule } from "effect"

export const onFirstUse = (create: (sql: SqlClient.SqlClient) => Effect.Effect<unknown, SqlError>) => {
  const ready = new WeakSet<SqlClient.SqlClient>()
  return (sql: SqlClient.SqlClient): Effect.Effect<void, SqlError> =>
    Effect.suspend(() => (ready.has(sql) ? Effect.void : Effect.tap(create(sql), () => void ready.add(sql)))).pipe(
      Effect.asVoid,
      // Two processes creating a table at once: one loses the race on the catalog and finds it next time.
      Effect.retry({ times: 3, schedule: Schedule.spaced("50 millis") })
    )
}

/**
 * The journal store of a cluster's database for the commands that read runs (`status`,
 * `report`, `ui`, `gc`), apart from JournalStore.ts so that the database's module (JournalPg.ts,
 * and with it the PostgreSQL client) loads only for a run that keeps its journal there.
 */
import { Effect, Option, Redacted } from "effect"
import { databaseUrlVariable } from "./internal/clusterEnv.js"
import * as JournalStore from "./JournalStore.js"

/**
 * For a command that reads runs (`status`, `report`, `ui`, `gc`): when one of them keeps its
 * journal in a cluster's database and a URL is given (`--cluster`, else `$SLUICE_DATABASE_URL`),
 * the database's store for `effect`. Without a URL it runs as is: reading such a run fails with
 * JournalElsewhere, which says what to give. The database module is loaded only then.
 */
export const provideFor = (runDirs: ReadonlyArray<string>, given: Option.Option<Redacted.Redacted>) =>
<A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const needed = yield* Effect.exists(runDirs, JournalStore.keptInDatabase)
    const env = process.env[databaseUrlVariable]
    const url = Option.isSome(given) ? given.value : env === undefined || env === "" ? undefined : Redacted.make(env)
    if (!needed || url === undefined) return yield* effect
    const JournalPg = yield* Effect.promise(() => import("./JournalPg.js"))
    return yield* Effect.provide(effect, JournalPg.layer(url))
  })

/**
 * The journal store of a cluster's database for the commands that read runs (`status`,
 * `report`, `ui`, `gc`), apart from JournalStore.ts so that the database's module (JournalPg.ts,
 * and with it the PostgreSQL client) loads only for a run that keeps its journal there.
 */
import { Effect, Layer, Option, Redacted } from "effect"
import { readFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { type ClusterUnavailable, unavailable } from "./ClusterDatabase.js"
import * as JournalMarker from "./internal/journalMarker.js"
import { databaseUrlVariable } from "./internal/clusterEnv.js"
import * as JournalStore from "./JournalStore.js"
import type * as TokenLedger from "./TokenLedger.js"

/** `--cluster` as given, else `$SLUICE_DATABASE_URL`, else none. */
const urlOf = (given: Option.Option<Redacted.Redacted>): Redacted.Redacted | undefined => {
  const env = process.env[databaseUrlVariable]
  return Option.isSome(given) ? given.value : env === undefined || env === "" ? undefined : Redacted.make(env)
}

/**
 * For a command that reads runs (`status`, `report`, `ui`, `gc`): when one of them keeps its
 * journal in a cluster's database and a URL is given (`--cluster`, else `$SLUICE_DATABASE_URL`),
 * the database's store for `effect`; a run whose files the database holds (RunFiles.ts) has its
 * directory here brought up to the database's copy first. Without a URL it runs as is: reading such a run fails with
 * JournalElsewhere, which says what to give. The database module is loaded only then.
 */
export const provideFor = (runDirs: ReadonlyArray<string>, given: Option.Option<Redacted.Redacted>) =>
<A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const needed = yield* Effect.exists(runDirs, JournalStore.keptInDatabase)
    const url = urlOf(given)
    if (!needed || url === undefined) return yield* effect
    const JournalPg = yield* Effect.promise(() => import("./JournalPg.js"))
    // A run whose files the database holds too: its directory here is a copy, brought up to date first.
    const copies = runDirs.filter(JournalMarker.filesInDatabase)
    if (copies.length > 0) yield* pullAll(copies, url)
    return yield* Effect.provide(effect, JournalPg.layer(url))
  })

/**
 * For `status` of a run that keeps its journal in a cluster's database: that cluster's
 * enqueued-token ledger as it is now (ClusterLedger.ts), shared by every run of the cluster;
 * undefined for another run, or without a URL (reading the run then fails with JournalElsewhere).
 */
export const ledgerFor = (runDir: string, given: Option.Option<Redacted.Redacted>): Effect.Effect<TokenLedger.LedgerData | undefined, ClusterUnavailable> =>
  Effect.gen(function* () {
    const url = urlOf(given)
    if (url === undefined || !(yield* JournalStore.keptInDatabase(runDir))) return undefined
    const [ClusterLedger, Pg] = yield* Effect.promise(() => Promise.all([import("./ClusterLedger.js"), import("@effect/sql-pg")]))
    return yield* ClusterLedger.read.pipe(Effect.provide(Pg.PgClient.layer({ url })), Effect.mapError(unavailable(url)))
  })

/** The database of the runs at `runDirs` when one of them keeps its journal in a cluster's database and a URL is given (`--cluster`, else the variable). */
export const databaseFor = (runDirs: ReadonlyArray<string>, given: Option.Option<Redacted.Redacted>): Effect.Effect<Redacted.Redacted | undefined> =>
  Effect.map(Effect.exists(runDirs, JournalStore.keptInDatabase), (needed) => (needed ? urlOf(given) : undefined))

/** The run directories given brought up to the database's copy of their files (RunFiles.ts). */
const pullAll = (runDirs: ReadonlyArray<string>, url: Redacted.Redacted) =>
  Effect.gen(function* () {
    const [RunFiles, RunFilesPg, Watched] = yield* Effect.promise(() =>
      Promise.all([import("./RunFiles.js"), import("./RunFilesPg.js"), import("./internal/WatchedFileSystem.js")])
    )
    const store = yield* RunFilesPg.Store
    for (const root of runDirs) {
      const { runId } = JSON.parse(readFileSync(join(root, "manifest.json"), "utf8")) as { runId: string }
      // A database without the run (another cluster's): the copy here is left as it is, not emptied.
      if (!(yield* store.has(runId, "manifest.json"))) {
        return yield* new RunFiles.RunFilesError({ runId, description: `the database given holds none of them: give the database of the cluster that ran it (${root} is left as it is)` })
      }
      yield* Effect.flatMap(RunFiles.make(store, runId, resolve(root), Watched.recorder()), (copy) => copy.pull)
    }
  }).pipe(Effect.provide(Layer.unwrapEffect(Effect.promise(() => import("./RunFilesPg.js")).pipe(Effect.map((m) => m.layer(url))))))

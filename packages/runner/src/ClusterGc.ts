/**
 * `sluice gc`'s part in a cluster's database: the rows kept under run ids that no run uses any
 * more. A changed pipeline accepted on a run (Rebase.ts) gives its next generation a run id of
 * its own; on one machine the old generation's journal moves to `previous/<n>/`, in the database
 * its rows stay under the old id (JournalPg.ts), as do its row of attempts (ClusterAttempts.ts)
 * and the files its copies pushed (RunFilesPg.ts).
 * Nothing reads them again: the new generation carries the old one's answers through the
 * response cache, and the old id is never continued. So gc lists them, and with `--yes` deletes
 * them. Only ids derived from the manifest of a run gc reads (`<base>`, `<base>-g<k>` below its
 * generation, and `carriedFrom`) are touched, never one a run read names as its own.
 *
 * Left alone on purpose: the journal and attempts of a current generation, even finished (its
 * attempts row keeps a later `retry` from finding a finished attempt's workflow under a reused
 * key, and its journal is the run); rows of run ids no run directory read names (a run of
 * another machine's directory may still be going); the ledger (ClusterLedger.ts), whose entries
 * lapse by their lease or leave when their run finishes; and @effect/cluster's own tables.
 */
import * as Path from "@effect/platform/Path"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Effect } from "effect"
import type { Redacted } from "effect"
import { unavailable } from "./ClusterDatabase.js"
import * as ClusterAttempts from "./ClusterAttempts.js"
import * as JournalPg from "./JournalPg.js"
import * as RunDir from "./RunDir.js"
import * as RunFilesPg from "./RunFilesPg.js"

/** An old generation's rows in the database. */
export interface OldGeneration {
  readonly runDir: string
  /** The run id of the run directory now. */
  readonly current: string
  /** The old generation's run id, under which the rows are kept. */
  readonly runId: string
  /** Its events in `sluice_journal`. */
  readonly journalRows: number
  /** Whether `sluice_run_attempts` has a row for it. */
  readonly attempts: boolean
  /** Its files in `sluice_run_files` (their bytes in `sluice_run_file_chunks`). */
  readonly files: number
}

export interface DatabaseGc {
  readonly oldGenerations: ReadonlyArray<OldGeneration>
  /** Rows deleted now (with --yes). */
  readonly deleted: { readonly journalRows: number; readonly attempts: number; readonly files: number }
}

/** The run ids a run's earlier generations had, as Rebase.ts names them: `<base>`, `<base>-g2` … below the current one, and the one it carried from. */
export const earlierIds = (manifest: Pick<RunDir.Manifest, "runId" | "generation" | "carriedFrom">): ReadonlyArray<string> => {
  const base = manifest.runId.replace(/-g\d+$/, "")
  const ids = new Set<string>([base])
  for (let k = 2; k <= (manifest.generation ?? 1); k++) ids.add(`${base}-g${k}`)
  if (manifest.carriedFrom !== undefined) ids.add(manifest.carriedFrom)
  ids.delete(manifest.runId)
  return [...ids]
}

const present = (sql: SqlClient.SqlClient, table: string) =>
  Effect.map(sql<{ present: boolean }>`SELECT to_regclass(${table}::text) IS NOT NULL AS present`, (rows) => rows[0]?.present === true)

/**
 * The old generations' rows of the runs at `runDirs` that keep their journal in the database
 * (others are skipped), deleted when `yes`.
 */
export const collect = (runDirs: ReadonlyArray<string>, yes: boolean) =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    const sql = yield* SqlClient.SqlClient
    const runs: Array<{ readonly runDir: string; readonly manifest: RunDir.Manifest }> = []
    for (const dir of new Set(runDirs.map((d) => path.resolve(d)))) {
      const paths = RunDir.paths(dir, path)
      const manifest = yield* RunDir.readManifest(paths)
      if (manifest.journal === "postgres") runs.push({ runDir: paths.root, manifest })
    }
    // An id a run read names as its own is never an old one (two directories of one run, copied).
    const inUse = new Set(runs.map((r) => r.manifest.runId))
    const candidates = runs.flatMap((r) => earlierIds(r.manifest).filter((id) => !inUse.has(id)).map((runId) => ({ runDir: r.runDir, current: r.manifest.runId, runId })))
    const ids = candidates.map((c) => c.runId)
    const journal = ids.length > 0 && (yield* present(sql, JournalPg.table))
      ? yield* sql<{ run_id: string; n: string }>`SELECT run_id, count(*) AS n FROM ${sql(JournalPg.table)} WHERE run_id IN ${sql.in(ids)} GROUP BY run_id`
      : []
    const attempts = ids.length > 0 && (yield* present(sql, ClusterAttempts.table))
      ? yield* sql<{ run_id: string }>`SELECT run_id FROM ${sql(ClusterAttempts.table)} WHERE run_id IN ${sql.in(ids)}`
      : []
    const files = ids.length > 0 && (yield* present(sql, RunFilesPg.filesTable))
      ? yield* sql<{ run_id: string; n: string }>`SELECT run_id, count(*) AS n FROM ${sql(RunFilesPg.filesTable)} WHERE run_id IN ${sql.in(ids)} GROUP BY run_id`
      : []
    const rowsOf = new Map(journal.map((r) => [r.run_id, Number(r.n)]))
    const withAttempts = new Set(attempts.map((r) => r.run_id))
    const filesOf = new Map(files.map((r) => [r.run_id, Number(r.n)]))
    const oldGenerations = candidates
      .map((c) => ({ ...c, journalRows: rowsOf.get(c.runId) ?? 0, attempts: withAttempts.has(c.runId), files: filesOf.get(c.runId) ?? 0 }))
      .filter((g) => g.journalRows > 0 || g.attempts || g.files > 0)
    const deleted = { journalRows: 0, attempts: 0, files: 0 }
    if (yes && oldGenerations.length > 0) {
      const gone = oldGenerations.map((g) => g.runId)
      yield* sql.withTransaction(
        Effect.gen(function* () {
          const count = (rows: ReadonlyArray<{ readonly n: string }>) => Number(rows[0]?.n ?? 0)
          if (rowsOf.size > 0) {
            deleted.journalRows = count(yield* sql<{ n: string }>`WITH d AS (DELETE FROM ${sql(JournalPg.table)} WHERE run_id IN ${sql.in(gone)} RETURNING 1) SELECT count(*) AS n FROM d`)
          }
          if (withAttempts.size > 0) {
            deleted.attempts = count(yield* sql<{ n: string }>`WITH d AS (DELETE FROM ${sql(ClusterAttempts.table)} WHERE run_id IN ${sql.in(gone)} RETURNING 1) SELECT count(*) AS n FROM d`)
          }
          if (filesOf.size > 0) {
            yield* sql`DELETE FROM ${sql(RunFilesPg.chunksTable)} WHERE run_id IN ${sql.in(gone)}`
            if (yield* present(sql, RunFilesPg.writersTable)) yield* sql`DELETE FROM ${sql(RunFilesPg.writersTable)} WHERE run_id IN ${sql.in(gone)}`
            deleted.files = count(yield* sql<{ n: string }>`WITH d AS (DELETE FROM ${sql(RunFilesPg.filesTable)} WHERE run_id IN ${sql.in(gone)} RETURNING 1) SELECT count(*) AS n FROM d`)
          }
        })
      )
    }
    return { oldGenerations, deleted } satisfies DatabaseGc
  })

/** `collect` on the cluster's database at `url`. */
export const onDatabase = (url: Redacted.Redacted, runDirs: ReadonlyArray<string>, yes: boolean) =>
  collect(runDirs, yes).pipe(
    Effect.provide(PgClient.layer({ url })),
    Effect.catchTag("SqlError", (e) => Effect.fail(unavailable(url)(e)))
  )

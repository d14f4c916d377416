/**
 * The journal's port: where a run's events are appended and read back, whatever holds them.
 * Every module that reads or writes a journal goes through it, so the runner's logic is one
 * code path for the two stores:
 *
 *   - the run directory's `journal.jsonl` (Journal.ts), the default everywhere;
 *   - a table of the cluster's PostgreSQL database (JournalPg.ts), for runs started on a
 *     cluster (Cluster.ts), keyed by the run id.
 *
 * Which one holds a run's journal is the run's manifest's to say (`journal`, absent: the run
 * directory), written once when the run is created: a run's journal never moves between stores.
 * The service holds the database's store when this process has one (a worker; a command given
 * `--cluster` or `$SLUICE_DATABASE_URL`); a run whose journal is in a database this process has
 * no connection to fails with JournalElsewhere rather than reading as a run with no events.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import { Context, Effect, Schema, Stream } from "effect"
import type { Scope } from "effect"
import * as Journal from "./Journal.js"
import type { JournalCorrupt, JournalIOError, JournalWriter, TimedEvent } from "./Journal.js"
import type { JournalEvent } from "./JournalEvent.js"
import { databaseUrlVariable } from "./internal/clusterEnv.js"
import * as JournalMarker from "./internal/journalMarker.js"
import type { RunPaths } from "./RunDir.js"

/** Where a run's journal lives: its run directory's file, or the cluster's PostgreSQL database. */
export type Kind = "file" | "postgres"

/** A run whose journal is in its cluster's database, read by a process not connected to it. */
export class JournalElsewhere extends Schema.TaggedError<JournalElsewhere>()("JournalElsewhere", {
  runDir: Schema.String,
  runId: Schema.String
}) {
  override get message(): string {
    return (
      `run ${this.runId} (${this.runDir}) keeps its journal in its cluster's PostgreSQL database, not in the run directory: ` +
      `give --cluster postgres://… or set ${databaseUrlVariable} (resume and retry then continue the run through the cluster)`
    )
  }
}

/** A row of a journal in a database that does not decode as an event. */
export class JournalRowCorrupt extends Schema.TaggedError<JournalRowCorrupt>()("JournalRowCorrupt", {
  table: Schema.String,
  run: Schema.String,
  seq: Schema.Number,
  description: Schema.String
}) {
  override get message(): string {
    return `the journal of run ${this.run} (table ${this.table}) is corrupt at seq ${this.seq}: ${this.description}`
  }
}

/** A journal's read errors, whatever holds it. */
export type ReadError = JournalCorrupt | JournalRowCorrupt | JournalIOError

/** A run as a store knows it: its directory and its id (the key of a database's rows). */
export interface RunKey {
  readonly paths: RunPaths
  readonly runId: string
}

/** One store of journals. */
export interface Backend {
  readonly kind: Kind
  /** Opens the run's journal for appending: an event is durable when `append` returns, and one that would not read back is refused. */
  readonly open: (run: RunKey) => Effect.Effect<JournalWriter, JournalIOError, FileSystem.FileSystem | Scope.Scope>
  /** The run's events in order, each with the time it was written; none for a run with no journal. */
  readonly replayTimed: (run: RunKey) => Stream.Stream<TimedEvent, ReadError, FileSystem.FileSystem>
  /** `replayTimed` a piece at a time (no piece empty), for folds over the whole journal (Journal.replayChunks). */
  readonly replayChunks: (run: RunKey) => Stream.Stream<ReadonlyArray<TimedEvent>, ReadError, FileSystem.FileSystem>
  /** The events appended after a position (what a follower of a run has not seen yet). */
  readonly readAfter: (run: RunKey, from: Journal.Position) => Effect.Effect<Journal.Appended, ReadError, FileSystem.FileSystem>
  /**
   * A generation's journal set aside when a changed pipeline is accepted (Rebase.ts), into its
   * `previous/<n>/` directory. (A database keys the next generation by its new run id: the old
   * one's rows stay under the old id.)
   */
  readonly archive: (run: RunKey, directory: string) => Effect.Effect<void, JournalIOError, FileSystem.FileSystem>
}

/** The run directory's journal.jsonl (Journal.ts). */
export const file: Backend = {
  kind: "file",
  open: (run) => Journal.open(run.paths.journal),
  replayTimed: (run) => Journal.replayTimed(run.paths.journal),
  replayChunks: (run) => Journal.replayChunks(run.paths.journal),
  readAfter: (run, from) => Journal.readAfter(run.paths.journal, from),
  archive: (run, directory) => Journal.archive(run.paths.journal, `${directory}/journal.jsonl`)
}

export interface Stores {
  /** The cluster database's store, when this process is connected to one. */
  readonly database: Backend | undefined
  /** Where a run created by this process keeps its journal. */
  readonly newRuns: Kind
}

/** The stores this process has: the run directory only, unless a cluster's database is given. */
export class JournalStore extends Context.Reference<JournalStore>()("@sluice/runner/JournalStore", {
  defaultValue: (): Stores => ({ database: undefined, newRuns: "file" })
}) {}

/** The stores of a process connected to a cluster's database; runs it creates keep their journal there when `newRuns` says so. */
export const withDatabase = (database: Backend, newRuns: Kind = "file"): Stores => ({ database, newRuns })

/** Where a run created now keeps its journal (recorded in its manifest by Runner.ts). */
export const kindForNewRuns: Effect.Effect<Kind> = Effect.map(JournalStore, (s) => (s.database === undefined ? "file" : s.newRuns))

const ManifestKeys = Schema.parseJson(Schema.Struct({ runId: Schema.String, journal: Schema.optional(Schema.Literal("file", "postgres")) }))
const decodeKeys = Schema.decodeUnknownEither(ManifestKeys)

/**
 * The store holding the run's journal and the run's key in it, as its manifest says. A
 * directory with no manifest yet (a run being created) has its journal in the file.
 */
export const of = (paths: RunPaths): Effect.Effect<readonly [Backend, RunKey], JournalIOError | JournalElsewhere, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const text = yield* fs.readFileString(paths.manifest).pipe(
      Effect.catchIf((e) => e._tag === "SystemError" && e.reason === "NotFound", () => Effect.succeed(undefined)),
      Effect.mapError((e) => new Journal.JournalIOError({ path: paths.journal, description: `cannot read ${paths.manifest}: ${e.message}` }))
    )
    if (text === undefined) return [file, { paths, runId: "" }] as const
    const keys = decodeKeys(text)
    if (keys._tag === "Left") {
      return yield* new Journal.JournalIOError({ path: paths.journal, description: `cannot tell where the run's journal is: ${paths.manifest} does not read (${keys.left.message.split("\n")[0]})` })
    }
    const run = { paths, runId: keys.right.runId }
    // The marker in journal.jsonl stands even if a version that does not know `journal` rewrote the manifest.
    const kind = keys.right.journal ?? ((yield* Journal.isInDatabaseMarker(paths.journal)) ? "postgres" : "file")
    if (kind === "file") return [file, run] as const
    const { database } = yield* JournalStore
    if (database === undefined || database.kind !== kind) return yield* new JournalElsewhere({ runDir: paths.root, runId: run.runId })
    return [database, run] as const
  })

/** Where the run's journal is: "file" or "postgres". */
export const kindOf = (paths: RunPaths) => Effect.map(of(paths), ([backend]) => backend.kind)

export const open = (paths: RunPaths) => Effect.flatMap(of(paths), ([backend, run]) => backend.open(run))

export const replayTimed = (paths: RunPaths): Stream.Stream<TimedEvent, ReadError | JournalElsewhere, FileSystem.FileSystem> =>
  Stream.unwrap(Effect.map(of(paths), ([backend, run]) => backend.replayTimed(run)))

export const replayChunks = (paths: RunPaths): Stream.Stream<ReadonlyArray<TimedEvent>, ReadError | JournalElsewhere, FileSystem.FileSystem> =>
  Stream.unwrap(Effect.map(of(paths), ([backend, run]) => backend.replayChunks(run)))

export const replay = (paths: RunPaths): Stream.Stream<JournalEvent, ReadError | JournalElsewhere, FileSystem.FileSystem> =>
  Stream.map(replayTimed(paths), (line) => line.event)

export const readAfter = (paths: RunPaths, from: Journal.Position) => Effect.flatMap(of(paths), ([backend, run]) => backend.readAfter(run, from))

export const archive = (paths: RunPaths, directory: string) => Effect.flatMap(of(paths), ([backend, run]) => backend.archive(run, directory))

/** Whether the run at `root` keeps its journal in a database (its manifest or its journal.jsonl says so; unreadable: not known to). */
export const keptInDatabase = (root: string): Effect.Effect<boolean> => Effect.sync(() => JournalMarker.keptInDatabase(root))

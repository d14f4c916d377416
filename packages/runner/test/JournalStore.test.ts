/**
 * The journal's port (JournalStore.ts): one suite of what every store must do, run against the
 * run directory's file (real files in a temp directory) and the cluster's PostgreSQL table
 * (JournalPg.ts, on a real server from scripts/lib/tempPostgres.ts; those cases are skipped,
 * saying why, where the server binaries are not installed). Then the routing: a run's manifest
 * says which store holds its journal.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { NodeContext } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Redacted, Stream } from "effect"
import type { Scope } from "effect"
import { appendFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as TempPostgres from "../../../scripts/lib/tempPostgres.js"
import * as Journal from "../src/Journal.js"
import type { JournalEvent } from "../src/JournalEvent.js"
import * as JournalPg from "../src/JournalPg.js"
import * as JournalStore from "../src/JournalStore.js"
import * as RunDir from "../src/RunDir.js"
import { planned } from "./fixtures/events.js"


const pathsOf = (dir: string) => Effect.runSync(Effect.map(Path.Path, (p) => RunDir.paths(dir, p)).pipe(Effect.provide(Path.layer)))

let runs = 0
/** A run of its own: a fresh directory, a fresh id. */
const freshRun = (): JournalStore.RunKey => ({ paths: pathsOf(mkdtempSync(join(tmpdir(), "sluice-jstore-"))), runId: `run-${process.pid}-${++runs}` })

type Use = <A, E>(f: (store: JournalStore.Backend) => Effect.Effect<A, E, FileSystem.FileSystem | Scope.Scope>) => Promise<A>

interface Subject {
  readonly name: string
  readonly skip: string | undefined
  /** Runs `f` with the store over a connection of its own (another machine, for a database). */
  readonly use: Use
  /** Writes a record that is no event after the run's last, as a bad disk or a hand edit would. */
  readonly corrupt: (run: JournalStore.RunKey, text: string) => Promise<void>
  /** The keys of the run's records in order, where the store has keys of its own (a database's seq). */
  readonly keys?: (run: JournalStore.RunKey) => Promise<ReadonlyArray<number>>
  /** What an error naming the corrupt record says. */
  readonly names: (run: JournalStore.RunKey, at: number) => RegExp
}

let server: TempPostgres.TempPostgres | undefined

const withSql = <A, E>(f: (sql: SqlClient.SqlClient) => Effect.Effect<A, E, FileSystem.FileSystem | Scope.Scope | SqlClient.SqlClient>) =>
  Effect.runPromise(
    Effect.scoped(
      Effect.flatMap(Layer.build(PgClient.layer({ url: Redacted.make(server!.url), maxConnections: 4 })), (ctx) => {
        const sql = Context.get(ctx, SqlClient.SqlClient)
        return Effect.provideService(f(sql), SqlClient.SqlClient, sql)
      })
    ).pipe(Effect.provide(NodeContext.layer))
  )

const subjects: ReadonlyArray<Subject> = [
  {
    name: "the run directory's file",
    skip: undefined,
    use: (f) => Effect.runPromise(Effect.scoped(f(JournalStore.file)).pipe(Effect.provide(NodeContext.layer))),
    corrupt: async (run, text) => appendFileSync(run.paths.journal, `${text}\n`),
    names: (run, at) => new RegExp(`${run.paths.journal.replace(/[/\\.]/g, "\\$&")} is corrupt at line ${at}`)
  },
  {
    name: "the cluster's PostgreSQL table",
    skip: TempPostgres.skipReason,
    use: (f) => withSql(() => Effect.flatMap(JournalPg.make, f)),
    corrupt: (run, text) =>
      withSql((sql) =>
        Effect.zipRight(
          JournalPg.make,
          sql`INSERT INTO sluice_journal (run_id, seq, t, event) SELECT ${run.runId}, COALESCE(MAX(seq), 0) + 1, 0, ${text} FROM sluice_journal WHERE run_id = ${run.runId}`
        )
      ).then(() => undefined),
    keys: (run) =>
      withSql((sql) => Effect.map(sql<{ seq: string }>`SELECT seq FROM sluice_journal WHERE run_id = ${run.runId} ORDER BY seq`, (rows) => rows.map((r) => Number(r.seq)))),
    names: (run, at) => new RegExp(`run ${run.runId} \\(table sluice_journal\\) is corrupt at seq ${at}`)
  }
]

const replayOf = (store: JournalStore.Backend, run: JournalStore.RunKey) => Stream.map(store.replayTimed(run), (l) => l.event)

const collect = <A, E, R>(s: Stream.Stream<A, E, R>) => Effect.map(Stream.runCollect(s), (c) => [...c])

beforeAll(async () => {
  if (TempPostgres.skipReason === undefined) server = await TempPostgres.start({ prefix: "sluice-jstore-pg-" })
}, 60_000)
afterAll(() => server?.stop())

for (const subject of subjects) {
  if (subject.skip !== undefined) console.warn(`JournalStore tests of ${subject.name} skipped: ${subject.skip}`)
  describe.skipIf(subject.skip !== undefined)(`JournalStore: ${subject.name}`, () => {
    it("appends events that replay in order, each with the time it was written", async () => {
      const run = freshRun()
      const before = Date.now()
      await subject.use((store) =>
        Effect.gen(function* () {
          const journal = yield* store.open(run)
          for (const shard of ["a", "b", "c"]) yield* journal.append(planned(shard))
          yield* journal.append({ _tag: "SubmitIntent", shard: "a", submission: 1, at: 5 })
        })
      )
      const after = Date.now()
      // Read back over another connection: what was appended is durable, not held by the writer.
      const timed = await subject.use((store) => collect(store.replayTimed(run)))
      expect(timed.map((l) => l.event)).toEqual([planned("a"), planned("b"), planned("c"), { _tag: "SubmitIntent", shard: "a", submission: 1, at: 5 }])
      for (const { t } of timed) {
        expect(t).toBeGreaterThanOrEqual(before)
        expect(t).toBeLessThanOrEqual(after)
      }
      expect([...timed.map((l) => l.t!)].sort((x, y) => x - y)).toEqual(timed.map((l) => l.t))
      // Opened again (a resumed run): appends go on after the last.
      await subject.use((store) => Effect.flatMap(store.open(run), (j) => j.append(planned("d"))))
      expect((await subject.use((store) => collect(store.replayTimed(run)))).map((l) => l.event)).toEqual([
        planned("a"), planned("b"), planned("c"), { _tag: "SubmitIntent", shard: "a", submission: 1, at: 5 }, planned("d")
      ])
    }, 60_000)

    it("refuses an event that would not read back, and writes nothing of it", async () => {
      const run = freshRun()
      const refused = await subject.use((store) =>
        Effect.gen(function* () {
          const journal = yield* store.open(run)
          yield* journal.append(planned("a"))
          return yield* Effect.flip(journal.append({ ...(planned("b") as Extract<JournalEvent, { _tag: "ShardPlanned" }>), bytes: Number.POSITIVE_INFINITY }))
        })
      )
      expect(refused._tag).toBe("JournalIOError")
      expect(refused.message).toMatch(/refused a ShardPlanned event that would not read back: bytes is Infinity/)
      expect((await subject.use((store) => collect(replayOf(store, run)))).length).toBe(1)
    }, 60_000)

    it("appends from three connections at once: none lost, each once, each writer's in its order", async () => {
      const run = freshRun()
      const perWriter = 40
      const writer = (name: string) =>
        subject.use((store) =>
          Effect.flatMap(store.open(run), (journal) =>
            Effect.forEach(Array.from({ length: perWriter }, (_, i) => i), (i) => journal.append(planned(`${name}${i}`)))
          )
        )
      await Promise.all([writer("x"), writer("y"), writer("z")])
      const shards = (await subject.use((store) => collect(replayOf(store, run)))).map((e) => (e as { shard: string }).shard)
      expect(shards.length).toBe(3 * perWriter)
      expect(new Set(shards).size).toBe(3 * perWriter)
      // Seqs 1, 2, … without a gap or a double.
      if (subject.keys !== undefined) expect(await subject.keys(run)).toEqual(Array.from({ length: 3 * perWriter }, (_, i) => i + 1))
      // Each writer's events in the order it appended them.
      for (const name of ["x", "y", "z"]) {
        expect(shards.filter((s) => s.startsWith(name))).toEqual(Array.from({ length: perWriter }, (_, i) => `${name}${i}`))
      }
    }, 60_000)

    it("fails a replay at a record that is no event, naming it", async () => {
      const run = freshRun()
      await subject.use((store) => Effect.flatMap(store.open(run), (j) => Effect.zipRight(j.append(planned("a")), j.append(planned("b")))))
      await subject.corrupt(run, `{"_tag":"NoSuchEvent"}`)
      await subject.use((store) => Effect.flatMap(store.open(run), (j) => j.append(planned("c"))))
      const failed = await subject.use((store) => Effect.flip(collect(replayOf(store, run))))
      expect(failed._tag).toMatch(/^Journal(Row)?Corrupt$/)
      expect(failed.message).toMatch(subject.names(run, 3))
      expect(failed.message).toMatch(/not a journal event/)
      // A follower is told too, not given a run without the event.
      const read = await subject.use((store) => Effect.flip(store.readAfter(run, Journal.start)))
      expect(read.message).toMatch(subject.names(run, 3))
    }, 60_000)

    it("replays a run it has no journal of as no events", async () => {
      const run = freshRun()
      expect(await subject.use((store) => collect(replayOf(store, run)))).toEqual([])
      expect(await subject.use((store) => store.readAfter(run, Journal.start))).toEqual({ events: [], position: Journal.start, restarted: false, more: false })
    }, 60_000)

    it("reads what was appended after a position, and from the start once the journal was replaced", async () => {
      const run = freshRun()
      const first = await subject.use((store) =>
        Effect.gen(function* () {
          const journal = yield* store.open(run)
          yield* journal.append(planned("a"))
          yield* journal.append(planned("b"))
          return yield* store.readAfter(run, Journal.start)
        })
      )
      expect(first.events.map((l) => l.event)).toEqual([planned("a"), planned("b")])
      expect(first.position.lines).toBe(2)
      const second = await subject.use((store) =>
        Effect.gen(function* () {
          const nothing = yield* store.readAfter(run, first.position)
          yield* Effect.flatMap(store.open(run), (j) => j.append(planned("c")))
          return [nothing, yield* store.readAfter(run, first.position)] as const
        })
      )
      expect(second[0]).toEqual({ events: [], position: first.position, restarted: false, more: false })
      expect(second[1].events.map((l) => l.event)).toEqual([planned("c")])
      expect(second[1].restarted).toBe(false)
      // The run's next generation (the file archived; a database's rows under a new run id).
      const next = { ...run, runId: `${run.runId}-g2` }
      const replaced = await subject.use((store) =>
        Effect.gen(function* () {
          const archive = join(run.paths.root, "previous", "1")
          yield* Effect.flatMap(FileSystem.FileSystem, (fs) => fs.makeDirectory(archive, { recursive: true }))
          yield* store.archive(run, archive)
          yield* Effect.flatMap(store.open(next), (j) => j.append(planned("z")))
          return yield* store.readAfter(next, second[1].position)
        })
      )
      expect(replaced.restarted).toBe(true)
      expect(replaced.events.map((l) => l.event)).toEqual([planned("z")])
      expect(await subject.use((store) => Effect.map(collect(replayOf(store, next)), (e) => e.length))).toBe(1)
    }, 60_000)
  })
}

describe("JournalStore: a run's manifest says where its journal is", () => {
  const manifestOf = (run: JournalStore.RunKey, journal?: string) =>
    writeFileSync(run.paths.manifest, JSON.stringify({ runId: run.runId, ...(journal === undefined ? {} : { journal }) }))
  const events = (run: JournalStore.RunKey, stores?: JournalStore.Stores) =>
    Effect.runPromise(
      collect(JournalStore.replay(run.paths)).pipe(
        stores === undefined ? (e) => e : Effect.provideService(JournalStore.JournalStore, stores),
        Effect.either,
        Effect.provide(NodeContext.layer)
      )
    )

  it("a run kept in a database, read without one: refused, saying what to give (never read as a run with no events)", async () => {
    const run = freshRun()
    manifestOf(run, "postgres")
    const read = await events(run)
    expect(read._tag).toBe("Left")
    const error = (read as { left: { _tag: string; message: string } }).left
    expect(error._tag).toBe("JournalElsewhere")
    expect(error.message).toContain("give --cluster postgres://… or set SLUICE_DATABASE_URL (resume and retry then continue the run through the cluster)")
    expect(error.message).toContain(run.runId)
  })

  it("a run without `journal` in its manifest (one machine, or a cluster run from before) stays in its file, whatever the process is connected to", async () => {
    const run = freshRun()
    manifestOf(run)
    await Effect.runPromise(Effect.scoped(Effect.flatMap(JournalStore.file.open(run), (j) => j.append(planned("a")))).pipe(Effect.provide(NodeContext.layer)))
    const elsewhere: JournalStore.Backend = { ...JournalStore.file, kind: "postgres", replayTimed: () => Stream.dieMessage("the database was asked") }
    const read = await events(run, JournalStore.withDatabase(elsewhere, "postgres"))
    expect(read._tag === "Right" ? read.right : read.left).toEqual([planned("a")])
    expect(existsSync(run.paths.journal)).toBe(true)
  })

  it.skipIf(TempPostgres.skipReason !== undefined)("a run kept in the database is read from it by a process connected to it", async () => {
    const run = freshRun()
    manifestOf(run, "postgres")
    const read = await withSql(() =>
      Effect.gen(function* () {
        const stores = JournalStore.withDatabase(yield* JournalPg.make)
        yield* Effect.flatMap(JournalStore.open(run.paths), (j) => j.append(planned("a"))).pipe(Effect.provideService(JournalStore.JournalStore, stores))
        return yield* collect(JournalStore.replay(run.paths)).pipe(Effect.provideService(JournalStore.JournalStore, stores))
      })
    )
    expect(read).toEqual([planned("a")])
    // In the run directory only the line that says so, which no version of sluice reads as an event.
    expect(readFileSync(run.paths.journal, "utf8")).toBe(`${Journal.inDatabaseLine}\n`)
    expect(Journal.parseLine(Journal.inDatabaseLine)._tag).toBe("Left")
    // A manifest rewritten by a version that does not know `journal`: the line still routes the run to the database.
    manifestOf(run)
    const again = await withSql(() =>
      Effect.gen(function* () {
        const stores = JournalStore.withDatabase(yield* JournalPg.make)
        return yield* collect(JournalStore.replay(run.paths)).pipe(Effect.provideService(JournalStore.JournalStore, stores))
      })
    )
    expect(again).toEqual([planned("a")])
    expect((await events(run))._tag).toBe("Left")
  }, 60_000)
})

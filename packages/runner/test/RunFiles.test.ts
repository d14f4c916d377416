/**
 * A cluster run's files in PostgreSQL (RunFiles.ts, RunFilesPg.ts) on a real server
 * (scripts/lib/tempPostgres.ts; skipped, saying why, without the server binaries): a writer's
 * copy changed through the watched FileSystem (internal/WatchedFileSystem.ts) and behind it
 * (node:fs), flushed, and other copies pulled from the database — byte for byte the writer's.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { NodeContext } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Option, Redacted } from "effect"
import type { Scope } from "effect"
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, relative } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as TempPostgres from "../../../scripts/lib/tempPostgres.js"
import * as ClusterJournal from "../src/ClusterJournal.js"
import * as LineFile from "../src/internal/LineFile.js"
import * as Watched from "../src/internal/WatchedFileSystem.js"
import * as JournalPg from "../src/JournalPg.js"
import * as JournalStore from "../src/JournalStore.js"
import * as RunDir from "../src/RunDir.js"
import * as RunFiles from "../src/RunFiles.js"
import * as RunFilesPg from "../src/RunFilesPg.js"
import { planned } from "./fixtures/events.js"

let server: TempPostgres.TempPostgres | undefined
if (TempPostgres.skipReason !== undefined) console.warn(`RunFiles tests skipped: ${TempPostgres.skipReason}`)

beforeAll(async () => {
  if (TempPostgres.skipReason === undefined) server = await TempPostgres.start({ prefix: "sluice-runfiles-pg-" })
}, 60_000)
afterAll(() => server?.stop())

type R = FileSystem.FileSystem | Path.Path | Scope.Scope | SqlClient.SqlClient

/** Runs `f` over a connection pool of its own (another machine's, as far as the database can tell). */
const withDb = <A, E>(f: Effect.Effect<A, E, R>) =>
  Effect.runPromise(
    Effect.scoped(
      Effect.flatMap(Layer.build(PgClient.layer({ url: Redacted.make(server!.url), maxConnections: 3 })), (ctx) =>
        Effect.provideService(f, SqlClient.SqlClient, Context.get(ctx, SqlClient.SqlClient)))
    ).pipe(Effect.provide(NodeContext.layer))
  )

let runs = 0
const freshRunId = () => `files-${process.pid}-${++runs}`
const freshDir = () => mkdtempSync(join(tmpdir(), "sluice-runfiles-"))

/** A copy of the run at `root` and a FileSystem that records what it changes there. */
const copyOf = (runId: string, root: string) =>
  Effect.gen(function* () {
    const recorder = Watched.recorder()
    const mirror = yield* RunFiles.make(yield* RunFilesPg.make, runId, root, recorder)
    const fs = Watched.watch(yield* FileSystem.FileSystem, root, recorder)
    return { mirror, fs }
  })

/** Every file under `root` but the copy's own (its record, the lock), with its bytes. */
const contents = (root: string): Record<string, string> => {
  const out: Record<string, string> = {}
  const walk = (dir: string) => {
    for (const name of readdirSync(dir, { withFileTypes: true })) {
      const abs = join(dir, name.name)
      const rel = relative(root, abs)
      if (RunFiles.isLocal(rel)) continue
      if (name.isDirectory()) walk(abs)
      else out[rel] = readFileSync(abs).toString("base64")
    }
  }
  walk(root)
  return out
}

/** A small deterministic generator (mulberry32), so every run tries the same sequence. */
const random = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const bytesOf = (next: () => number, n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(next() * 256)))

describe.skipIf(TempPostgres.skipReason !== undefined)("RunFiles: a run's files in PostgreSQL", () => {
  it("appends, truncations, replacements, renames, removals and node:fs writes: every pulled copy is the writer's, byte for byte", async () => {
    const runId = freshRunId()
    const writer = freshDir()
    const reader = freshDir()
    const files = ["results.jsonl", "failures.jsonl", "shards/a.jsonl", "shards/a.rows.jsonl", "stages/two.jsonl", "manifest.json"]
    await withDb(
      Effect.gen(function* () {
        const w = yield* copyOf(runId, writer)
        const r = yield* copyOf(runId, reader)
        const next = random(17)
        const pick = <A>(xs: ReadonlyArray<A>) => xs[Math.floor(next() * xs.length)]!
        // Sizes around the store's 1 MiB rows, now and then.
        const size = () => (next() < 0.1 ? RunFilesPg.chunkSize - 3 + Math.floor(next() * 7) : Math.floor(next() * 5000))
        let pulledWhole = 0
        for (let step = 0; step < 120; step++) {
          const file = pick(files)
          const abs = join(writer, file)
          const exists = existsSync(abs)
          const op = next()
          yield* w.fs.makeDirectory(join(writer, "shards"), { recursive: true })
          yield* w.fs.makeDirectory(join(writer, "stages"), { recursive: true })
          if (op < 0.35) {
            // Appended through a handle, as LineFile and the sinks write.
            yield* Effect.scoped(Effect.flatMap(w.fs.open(abs, { flag: "a+" }), (f) => f.writeAll(bytesOf(next, size()))))
          } else if (op < 0.45 && exists) {
            // Opened at a committed length, as LineFile.open does after a crash: cut, then appended.
            const keep = Math.floor(next() * statSync(abs).size)
            yield* Effect.scoped(
              Effect.gen(function* () {
                const f = yield* w.fs.open(abs, { flag: "a+" })
                yield* f.truncate(FileSystem.Size(keep))
                yield* f.writeAll(bytesOf(next, size()))
              })
            )
          } else if (op < 0.52 && exists) {
            // Written where it stands after a seek, as a sink resumed from its checkpoint.
            const at = Math.floor(next() * statSync(abs).size)
            yield* Effect.scoped(
              Effect.gen(function* () {
                const f = yield* w.fs.open(abs, { flag: "r+" })
                yield* f.seek(FileSystem.Size(at), "start")
                yield* f.writeAll(bytesOf(next, size()))
              })
            )
          } else if (op < 0.6) {
            yield* w.fs.writeFile(abs, bytesOf(next, size()))
          } else if (op < 0.67) {
            // Replaced atomically, as the manifest is.
            yield* w.fs.writeFile(`${abs}.tmp`, bytesOf(next, size()))
            yield* w.fs.rename(`${abs}.tmp`, abs)
          } else if (op < 0.72 && exists) {
            yield* w.fs.remove(abs)
          } else if (op < 0.8 && exists) {
            // Behind the recorder's back (a module writing with node:fs): cut, and grown by another length.
            const before = statSync(abs).size
            truncateSync(abs, Math.floor(next() * before))
            appendFileSync(abs, bytesOf(next, 1 + Math.floor(next() * 300)))
          } else if (op < 0.85) {
            appendFileSync(abs, bytesOf(next, size()))
          } else if (op < 0.9 && exists) {
            yield* w.fs.truncate(abs, FileSystem.Size(Math.floor(next() * statSync(abs).size)))
          }
          if (next() < 0.5) {
            yield* w.mirror.flush
            // The reader pulls now and then (incrementally), a fresh copy at times (whole).
            if (next() < 0.8) {
              yield* r.mirror.pull
              expect(contents(reader), `after step ${step}`).toEqual(contents(writer))
            }
            if (next() < 0.1) {
              const fresh = freshDir()
              const pulled = yield* (yield* copyOf(runId, fresh)).mirror.pull
              pulledWhole += pulled.whole
              expect(contents(fresh)).toEqual(contents(writer))
            }
          }
        }
        yield* w.mirror.flush
        yield* r.mirror.pull
        expect(contents(reader)).toEqual(contents(writer))
        expect(Object.keys(contents(writer)).length).toBeGreaterThan(2)
        expect(pulledWhole).toBeGreaterThan(0)
      })
    )
  }, 120_000)

  it("a pull downloads only what the copy lacks; a new version of a file is downloaded whole", async () => {
    const runId = freshRunId()
    const writer = freshDir()
    const reader = freshDir()
    await withDb(
      Effect.gen(function* () {
        const w = yield* copyOf(runId, writer)
        const r = yield* copyOf(runId, reader)
        yield* w.fs.writeFile(join(writer, "results.jsonl"), Buffer.alloc(3 * RunFilesPg.chunkSize + 5, "a"))
        yield* w.fs.writeFile(join(writer, "manifest.json"), Buffer.from("{}\n"))
        yield* w.mirror.flush
        expect(yield* r.mirror.pull).toEqual({ whole: 2, appended: 0, removed: 0, bytes: 3 * RunFilesPg.chunkSize + 8 })
        // Nothing changed: nothing read.
        expect(yield* r.mirror.pull).toEqual({ whole: 0, appended: 0, removed: 0, bytes: 0 })
        // 100 bytes appended: those 100 read, from the middle of a row.
        yield* Effect.scoped(Effect.flatMap(w.fs.open(join(writer, "results.jsonl"), { flag: "a" }), (f) => f.writeAll(Buffer.alloc(100, "b"))))
        yield* w.mirror.flush
        expect(yield* r.mirror.pull).toEqual({ whole: 0, appended: 1, removed: 0, bytes: 100 })
        expect(contents(reader)).toEqual(contents(writer))
        // Written in the middle where a handle stands (a sink resumed at its checkpoint): a new version, read whole.
        yield* Effect.scoped(
          Effect.gen(function* () {
            const f = yield* w.fs.open(join(writer, "results.jsonl"), { flag: "r+" })
            yield* f.seek(FileSystem.Size(RunFilesPg.chunkSize + 7), "start")
            yield* f.writeAll(Buffer.from("overwritten"))
          })
        )
        yield* w.mirror.flush
        expect(yield* r.mirror.pull).toEqual({ whole: 1, appended: 0, removed: 0, bytes: 3 * RunFilesPg.chunkSize + 105 })
        expect(contents(reader)).toEqual(contents(writer))
        // Cut below what was pushed (a new version, the first bytes kept in the database), then grown.
        yield* Effect.scoped(
          Effect.gen(function* () {
            const f = yield* w.fs.open(join(writer, "results.jsonl"), { flag: "a+" })
            yield* f.truncate(FileSystem.Size(10))
            yield* f.writeAll(Buffer.alloc(20, "c"))
          })
        )
        yield* w.fs.remove(join(writer, "manifest.json"))
        yield* w.mirror.flush
        expect(yield* r.mirror.pull).toEqual({ whole: 1, appended: 0, removed: 1, bytes: 30 })
        expect(contents(reader)).toEqual(contents(writer))
        // The database holds the new version's 30 bytes only.
        const sql = yield* SqlClient.SqlClient
        const [held] = yield* sql<{ n: string; bytes: string }>`SELECT count(*) AS n, sum(length(bytes)) AS bytes FROM sluice_run_file_chunks WHERE run_id = ${runId}`
        expect(Number(held!.bytes)).toBe(30)
        // A reader's file changed locally behind its record: downloaded whole again.
        appendFileSync(join(reader, "results.jsonl"), "local tail\n")
        expect(yield* r.mirror.pull).toEqual({ whole: 1, appended: 0, removed: 0, bytes: 30 })
        expect(contents(reader)).toEqual(contents(writer))
      })
    )
  }, 60_000)

  it("every byte written before a journal event is in the database once the event is: a copy pulled after a crash has them", async () => {
    const runId = freshRunId()
    const writer = freshDir()
    const paths = Effect.runSync(Effect.map(Path.Path, (p) => RunDir.paths(writer, p)).pipe(Effect.provide(Path.layer)))
    writeFileSync(paths.manifest, JSON.stringify({ runId, journal: "postgres" }))
    const written = await withDb(
      Effect.gen(function* () {
        const w = yield* copyOf(runId, writer)
        const journals = JournalStore.withDatabase(yield* JournalPg.make)
        return yield* Effect.gen(function* () {
          const journal = yield* JournalStore.open(paths)
          // Lines in results.jsonl, as a collection writes them (LineFile), then the event that names their length.
          const results = yield* LineFile.open(paths.results, 0)
          for (let i = 0; i < 500; i++) results.append(JSON.stringify({ custom_id: `r${i}`, answer: "x".repeat(i % 37) }))
          const length = yield* results.sync
          yield* journal.append(planned("a", { offsets: { results: length, failures: 0, sink: 0 } }))
          // More after the event: the crash comes before the next one.
          results.append("not yet journaled")
          yield* results.flush
          return readFileSync(paths.results).subarray(0, length)
        }).pipe(
          Effect.provideService(FileSystem.FileSystem, w.fs),
          Effect.provideService(JournalStore.JournalStore, journals),
          Effect.provideService(RunFiles.Active, w.mirror)
        )
      })
    )
    // The writer's process is gone (no flush after the event): another copy has what the event names.
    const other = freshDir()
    await withDb(Effect.flatMap(copyOf(runId, other), (c) => c.mirror.pull))
    const pulled = readFileSync(join(other, "results.jsonl"))
    expect(pulled.subarray(0, written.length).equals(written)).toBe(true)
    expect(written.length).toBeGreaterThan(10_000)
    expect(JSON.parse(readFileSync(join(other, "manifest.json"), "utf8"))).toEqual({ runId, journal: "postgres" })
  }, 60_000)

  it("files changed with node:fs, behind the recording FileSystem: found by their stat and pushed whole", async () => {
    const runId = freshRunId()
    const writer = freshDir()
    const reader = freshDir()
    await withDb(
      Effect.gen(function* () {
        const w = yield* copyOf(runId, writer)
        const r = yield* copyOf(runId, reader)
        yield* w.fs.writeFile(join(writer, "failures.jsonl"), Buffer.from("one\ntwo\n"))
        yield* w.mirror.flush
        yield* r.mirror.pull
        // Rewritten in place below what was pushed, and grown; and a file the recorder never saw.
        writeFileSync(join(writer, "failures.jsonl"), "ONE\ntwo\nthree\n")
        writeFileSync(join(writer, "stray.jsonl"), "made by node:fs\n")
        yield* w.mirror.flush
        expect(yield* r.mirror.pull).toEqual({ whole: 2, appended: 0, removed: 0, bytes: 30 })
        expect(contents(reader)).toEqual(contents(writer))
        expect(readFileSync(join(reader, "failures.jsonl"), "utf8")).toBe("ONE\ntwo\nthree\n")
      })
    )
  }, 60_000)

  it("a reader given --cluster has its run directory brought up to date first; a database without the run leaves the directory as it is", async () => {
    const runId = freshRunId()
    const writer = freshDir()
    const manifest = JSON.stringify({ runId, journal: "postgres", files: "postgres" })
    await withDb(
      Effect.gen(function* () {
        const w = yield* copyOf(runId, writer)
        yield* w.fs.writeFile(join(writer, "manifest.json"), Buffer.from(manifest))
        yield* w.fs.writeFile(join(writer, "results.jsonl"), Buffer.from("a\nb\n"))
        yield* w.mirror.flush
      })
    )
    const url = Option.some(Redacted.make(server!.url))
    const reader = freshDir()
    writeFileSync(join(reader, "manifest.json"), manifest)
    await Effect.runPromise(ClusterJournal.provideFor([reader], url)(Effect.void).pipe(Effect.provide(NodeContext.layer)))
    expect(contents(reader)).toEqual(contents(writer))
    // Another cluster's database (no files of the run): refused, nothing deleted.
    const elsewhere = freshDir()
    writeFileSync(join(elsewhere, "manifest.json"), JSON.stringify({ runId: "never-here", journal: "postgres", files: "postgres" }))
    writeFileSync(join(elsewhere, "results.jsonl"), "kept\n")
    const error = await Effect.runPromise(Effect.flip(ClusterJournal.provideFor([elsewhere], url)(Effect.void)).pipe(Effect.provide(NodeContext.layer)))
    expect(error.message).toContain("the files of run never-here in the cluster's database: the database given holds none of them")
    expect(readFileSync(join(elsewhere, "results.jsonl"), "utf8")).toBe("kept\n")
  }, 60_000)

  it("a file replaced or removed while a flush reads it: the flush scans again and the database gets what is there", async () => {
    const runId = freshRunId()
    const writer = freshDir()
    await withDb(
      Effect.gen(function* () {
        const store = yield* RunFilesPg.make
        const recorder = Watched.recorder()
        const fs = Watched.watch(yield* FileSystem.FileSystem, writer, recorder)
        // Between the flush's scan and its reads, another fiber replaces one file and removes another.
        let race = true
        const racing: RunFiles.Backend = {
          ...store,
          apply: (id, changes) =>
            Effect.suspend(() => {
              if (race) {
                race = false
                writeFileSync(join(writer, "replaced.tmp"), "the new one, longer than the old\n")
                renameSync(join(writer, "replaced.tmp"), join(writer, "results.jsonl"))
                rmSync(join(writer, "shards", "gone.jsonl"))
              }
              return store.apply(id, changes)
            })
        }
        const mirror = yield* RunFiles.make(racing, runId, writer, recorder)
        yield* fs.makeDirectory(join(writer, "shards"))
        yield* fs.writeFile(join(writer, "results.jsonl"), Buffer.from("old\n"))
        yield* fs.writeFile(join(writer, "shards", "gone.jsonl"), Buffer.from("soon gone\n"))
        yield* mirror.flush
        expect(race).toBe(false)
        const fresh = freshDir()
        yield* Effect.flatMap(RunFiles.make(store, runId, fresh, Watched.recorder()), (m) => m.pull)
        expect(contents(fresh)).toEqual(contents(writer))
        expect(readFileSync(join(fresh, "results.jsonl"), "utf8")).toBe("the new one, longer than the old\n")
      })
    )
  }, 60_000)

  it("two copies writing one run: the second flush is refused (a conflict), never an overwrite", async () => {
    const runId = freshRunId()
    const one = freshDir()
    const two = freshDir()
    const error = await withDb(
      Effect.gen(function* () {
        const a = yield* copyOf(runId, one)
        const b = yield* copyOf(runId, two)
        yield* a.fs.writeFile(join(one, "results.jsonl"), Buffer.from("a\n"))
        yield* a.mirror.flush
        yield* b.mirror.pull
        yield* Effect.scoped(Effect.flatMap(a.fs.open(join(one, "results.jsonl"), { flag: "a" }), (f) => f.writeAll(Buffer.from("from a\n"))))
        yield* Effect.scoped(Effect.flatMap(b.fs.open(join(two, "results.jsonl"), { flag: "a" }), (f) => f.writeAll(Buffer.from("from b\n"))))
        yield* a.mirror.flush
        return yield* Effect.flip(b.mirror.flush)
      })
    )
    expect(error._tag).toBe("RunFilesError")
    expect(error.message).toContain(`run ${runId}`)
    expect(error.message).toContain("results.jsonl changed in the database since this copy last saw it")
    const check = freshDir()
    await withDb(Effect.flatMap(copyOf(runId, check), (c) => c.mirror.pull))
    expect(readFileSync(join(check, "results.jsonl"), "utf8")).toBe("a\nfrom a\n")
  }, 60_000)
})

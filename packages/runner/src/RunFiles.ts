/**
 * The files of a cluster run's directory held by its cluster's database (issue 17), and a local
 * copy of them that the runner works on as on one machine. Every file of the run directory is
 * held — the manifest, `shards/`, results, failures, outputs, inboxes, `keys/` … — but the lock
 * (`run.lock`: each copy has its own; the run's lock is in the database, ClusterRunLock.ts), the
 * copy's own record (`.sluice-mirror.json`) and a reader's `report.html`. The journal is in the
 * database already (JournalPg.ts): the copy's journal.jsonl is its one marker line.
 *
 * **The store** (a port, `Backend`; RunFilesPg.ts in PostgreSQL) holds per run and path a
 * version and a size, and the bytes of that version. Versions are never reused: a reader that
 * has a file's version v up to n bytes has exactly the store's first n bytes of it. Appending
 * keeps the version; anything else (a truncation below what was pushed, a file replaced) makes a
 * new one, whose bytes below the cut the store copies itself.
 *
 * **The invariant**: every byte a journal event depends on is in the store before the event is.
 * JournalPg.ts flushes the run's copy (`Active`) before each INSERT. A flush pushes what changed
 * since the last flush or pull: the copy's FileSystem records truncations and writes
 * (internal/WatchedFileSystem.ts), and every file's stat (inode, size, modification and change
 * times) is compared with the one recorded at its last push — a file changed behind the
 * recorder's back (node:fs) is pushed whole. A flush is one transaction, refused when the store's
 * version or size of a file is not the one this copy last saw (another writer: a conflict, never
 * a silent overwrite).
 *
 * **A pull** makes the copy the store's: a file the copy has at the store's version, unchanged
 * since (its stat), gets only the bytes it lacks; any other is downloaded whole; a local file the
 * store has not is deleted. It reads in one snapshot of the database.
 */
import { Context, Effect, Schema } from "effect"
import {
  closeSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmdirSync,
  rmSync,
  writeFileSync,
  writeSync
} from "node:fs"
import type { BigIntStats } from "node:fs"
import { dirname, join } from "node:path"
import { directoryMode, fileMode } from "./internal/privateMode.js"
import type { Recorder } from "./internal/WatchedFileSystem.js"

/** The store cannot be used, or a flush found the store changed under it. */
export class RunFilesError extends Schema.TaggedError<RunFilesError>()("RunFilesError", {
  runId: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return `the files of run ${this.runId} in the cluster's database: ${this.description}`
  }
}

/** A file as the store holds it. */
export interface Stored {
  readonly path: string
  readonly version: number
  readonly size: number
}

/** Reads `length` bytes at `offset` of the local file (exactly: fewer fail). */
export type Source = (offset: number, length: number) => Effect.Effect<Uint8Array, RunFilesError>

export type Change =
  /** Bytes [expect.size, size) added to the version the copy has. */
  | { readonly op: "append"; readonly path: string; readonly expect: Stored; readonly size: number; readonly source: Source }
  /** A new version: the first `keep` bytes of the one the copy has (none: a new file), then [keep, size) from the source. */
  | { readonly op: "rewrite"; readonly path: string; readonly expect: Stored | undefined; readonly keep: number; readonly size: number; readonly source: Source }
  | { readonly op: "remove"; readonly path: string; readonly expect: Stored }

/** What a pull read from the store. */
export interface Pulled {
  readonly whole: number
  readonly appended: number
  readonly removed: number
  /** Bytes received. */
  readonly bytes: number
}

/** A consistent view of a run's files (one snapshot). */
export interface View {
  readonly files: ReadonlyArray<Stored>
  /** The bytes of a version from `from` to `to`, piece by piece in order. */
  readonly read: (file: Stored, from: number, to: number, piece: (offset: number, bytes: Uint8Array) => void) => Effect.Effect<number, RunFilesError>
}

export interface Backend {
  /** Applies the changes in one transaction: all, or none (a RunFilesError). Returns the files as stored after. */
  readonly apply: (runId: string, changes: ReadonlyArray<Change>) => Effect.Effect<ReadonlyArray<Stored>, RunFilesError>
  /** Runs `use` on one snapshot of the run's files. */
  readonly snapshot: <A>(runId: string, use: (view: View) => Effect.Effect<A, RunFilesError>) => Effect.Effect<A, RunFilesError>
  /** Whether the store holds `path` of the run (its manifest, once the first step pushed it). */
  readonly has: (runId: string, path: string) => Effect.Effect<boolean, RunFilesError>
}

/** The copy's own record of what it holds, beside its files. */
export const recordName = ".sluice-mirror.json"

/**
 * Files of a run directory that are never held: its lock (and the lock's own temporary files),
 * the copy's record, and `sluice report`'s page written into a reader's copy (Report.ts).
 */
export const isLocal = (rel: string): boolean =>
  rel === "run.lock" || (rel.startsWith("run.lock.") && !rel.includes("/")) || rel.startsWith(recordName) || rel === "report.html"

interface Entry {
  readonly version: number
  /** The store's size, which the local file had when last pushed or pulled. */
  readonly size: number
  /** The local file's stat then. */
  readonly stat: string
}

const statKey = (s: BigIntStats) => `${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`

/** Every file under `root` (relative paths with `/`), but the local ones, with its stat. */
const scan = (root: string): Map<string, BigIntStats> => {
  const found = new Map<string, BigIntStats>()
  const walk = (dir: string, prefix: string) => {
    let names: Array<string>
    try {
      names = readdirSync(dir)
    } catch {
      return
    }
    for (const name of names) {
      const rel = prefix === "" ? name : `${prefix}/${name}`
      if (isLocal(rel)) continue
      let s: BigIntStats
      try {
        s = lstatSync(join(dir, name), { bigint: true })
      } catch {
        continue // gone meanwhile
      }
      if (s.isDirectory()) walk(join(dir, name), rel)
      else if (s.isFile()) found.set(rel, s)
    }
  }
  walk(root, "")
  return found
}

export interface Mirror {
  readonly runId: string
  /** The local copy's directory. */
  readonly root: string
  /** Pushes what changed in the copy since its last flush or pull. */
  readonly flush: Effect.Effect<void, RunFilesError>
  /** Makes the copy the store's. */
  readonly pull: Effect.Effect<Pulled, RunFilesError>
  /** What the copy's FileSystem records (internal/WatchedFileSystem.ts). */
  readonly recorder: Recorder
}

/** The mirror whose copy is the run directory at `root`, if any: JournalPg.ts flushes it before each event. */
export class Active extends Context.Reference<Active>()("@sluice/runner/RunFiles/Active", {
  defaultValue: (): Mirror | undefined => undefined
}) {}

const tryIo = <A>(runId: string, what: string, f: () => A) =>
  Effect.try({ try: f, catch: (e) => new RunFilesError({ runId, description: `${what}: ${e instanceof Error ? e.message : String(e)}` }) })

/** What a flush finds when a file changes while it is read: scanned and pushed again. */
const changedWhilePushed = "changed while pushed"

/**
 * A source reading the local file `abs` as scanned (inode `ino`): gone, replaced or shorter
 * than asked, it fails saying it changed while pushed.
 */
const sourceOf = (runId: string, abs: string, ino: bigint): Source => (offset, length) =>
  Effect.try({
    try: () => {
      const out = Buffer.allocUnsafe(length)
      let fd: number
      try {
        fd = openSync(abs, "r")
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") throw new Error(`${abs} is gone (${changedWhilePushed})`)
        throw e
      }
      try {
        if (fstatSync(fd, { bigint: true }).ino !== ino) throw new Error(`${abs} was replaced (${changedWhilePushed})`)
        let got = 0
        while (got < length) {
          const n = readSync(fd, out, got, length - got, offset + got)
          if (n === 0) throw new Error(`${abs} has fewer than ${offset + length} bytes (${changedWhilePushed})`)
          got += n
        }
      } finally {
        closeSync(fd)
      }
      return out
    },
    catch: (e) => new RunFilesError({ runId, description: `cannot read ${abs}: ${e instanceof Error ? e.message : String(e)}` })
  })

/**
 * The mirror of `runId`'s files in `root` (created 0700 if missing), with the record its last
 * flush or pull left there.
 */
export const make = (backend: Backend, runId: string, root: string, recorder: Recorder): Effect.Effect<Mirror, RunFilesError> =>
  Effect.gen(function* () {
    const recordPath = join(root, recordName)
    yield* tryIo(runId, `cannot create ${root}`, () => mkdirSync(root, { recursive: true, mode: directoryMode }))
    const entries = new Map<string, Entry>()
    // A record from another run (a directory reused) or unreadable: no entry, every file downloaded whole.
    try {
      const saved = JSON.parse(readFileSync(recordPath, "utf8")) as { runId: string; files: Record<string, Entry> }
      if (saved.runId === runId) for (const [k, v] of Object.entries(saved.files)) entries.set(k, v)
    } catch {
      // none yet
    }
    const save = tryIo(runId, `cannot write ${recordPath}`, () => {
      const tmp = `${recordPath}.tmp`
      writeFileSync(tmp, JSON.stringify({ runId, files: Object.fromEntries(entries) }), { mode: fileMode })
      renameSync(tmp, recordPath)
    })
    const stored = (rel: string, e: Entry): Stored => ({ path: rel, version: e.version, size: e.size })
    const lock = yield* Effect.makeSemaphore(1)

    const flushOnce = Effect.gen(function* () {
      const records = recorder.take()
      const local = scan(root)
      const changes: Array<Change> = []
      for (const [rel, s] of local) {
        const e = entries.get(rel)
        const size = Number(s.size)
        const source = sourceOf(runId, join(root, rel), s.ino)
        const r = records.get(rel)
        if (e === undefined) {
          changes.push({ op: "rewrite", path: rel, expect: undefined, keep: 0, size, source })
          continue
        }
        if (r === undefined && e.stat === statKey(s)) continue
        // Changed with no record of how (node:fs), another file now (a new inode), or shorter than
        // pushed with no record of a cut: whole.
        const low = r === undefined ? 0 : Math.min(r.cut ?? Infinity, r.wrote ?? Infinity)
        const shorterUnseen = size < e.size && !(r?.cut !== undefined && r.cut <= size)
        const otherFile = e.stat.split(":")[0] !== String(s.ino)
        if (r === undefined || shorterUnseen || otherFile) {
          changes.push({ op: "rewrite", path: rel, expect: stored(rel, e), keep: 0, size, source })
        } else if (low < e.size) {
          changes.push({ op: "rewrite", path: rel, expect: stored(rel, e), keep: Math.min(low, size), size, source })
        } else if (size > e.size) {
          changes.push({ op: "append", path: rel, expect: stored(rel, e), size, source })
        } else {
          entries.set(rel, { ...e, stat: statKey(s) })
        }
      }
      for (const [rel, e] of entries) if (!local.has(rel)) changes.push({ op: "remove", path: rel, expect: stored(rel, e) })
      if (changes.length > 0) {
        // Not pushed: what was recorded stays for the next flush.
        const applied = yield* Effect.tapError(backend.apply(runId, changes), () => Effect.sync(() => recorder.restore(records)))
        const after = new Map(applied.map((f) => [f.path, f]))
        for (const c of changes) {
          const f = after.get(c.path)
          if (c.op === "remove" || f === undefined) entries.delete(c.path)
          else entries.set(c.path, { version: f.version, size: f.size, stat: statKey(local.get(c.path)!) })
        }
      }
      yield* save
    })

    // A file that changed while it was read (a truncation at the same moment): scanned and pushed again.
    const flush = lock.withPermits(1)(
      flushOnce.pipe(Effect.retry({ times: 3, while: (e) => e.description.includes(changedWhilePushed) }))
    )

    const pull = lock.withPermits(1)(
      Effect.gen(function* () {
        recorder.take()
        const result = yield* backend.snapshot(runId, (view) =>
          Effect.gen(function* () {
            let whole = 0
            let appended = 0
            let removed = 0
            let bytes = 0
            const local = scan(root)
            for (const f of view.files) {
              const abs = join(root, f.path)
              const s = local.get(f.path)
              const e = entries.get(f.path)
              const current = s !== undefined && e !== undefined && e.version === f.version && e.stat === statKey(s) && e.size <= f.size
              if (current && e.size === f.size) continue
              const from = current ? e.size : 0
              yield* tryIo(runId, `cannot create ${dirname(abs)}`, () => mkdirSync(dirname(abs), { recursive: true, mode: directoryMode }))
              const fd = yield* tryIo(runId, `cannot open ${abs}`, () => openSync(abs, current ? "r+" : "w", fileMode))
              const got = yield* Effect.ensuring(
                Effect.gen(function* () {
                  if (!current && s !== undefined && !s.isFile()) return yield* new RunFilesError({ runId, description: `${abs} is not a file` })
                  const n = yield* view.read(f, from, f.size, (offset, piece) => {
                    let done = 0
                    while (done < piece.length) done += writeSync(fd, piece, done, piece.length - done, offset + done)
                  })
                  yield* tryIo(runId, `cannot write ${abs}`, () => {
                    ftruncateSync(fd, f.size)
                    fsyncSync(fd)
                  })
                  return n
                }),
                Effect.sync(() => closeSync(fd))
              )
              bytes += got
              if (current) appended++
              else whole++
              const after = yield* tryIo(runId, `cannot stat ${abs}`, () => lstatSync(abs, { bigint: true }))
              entries.set(f.path, { version: f.version, size: f.size, stat: statKey(after) })
            }
            const held = new Set(view.files.map((f) => f.path))
            for (const rel of local.keys()) {
              if (held.has(rel)) continue
              yield* tryIo(runId, `cannot remove ${join(root, rel)}`, () => rmSync(join(root, rel), { force: true }))
              removeEmptyParents(root, rel)
              entries.delete(rel)
              removed++
            }
            for (const rel of [...entries.keys()]) if (!held.has(rel)) entries.delete(rel)
            return { whole, appended, removed, bytes }
          })
        )
        yield* save
        return result
      })
    )
    return { runId, root, flush, pull, recorder }
  })

/** Removes the directories a removed file leaves empty, up to `root` (exclusive). */
const removeEmptyParents = (root: string, rel: string) => {
  const parts = rel.split("/").slice(0, -1)
  while (parts.length > 0) {
    try {
      rmdirSync(join(root, ...parts))
    } catch {
      return // not empty, or gone
    }
    parts.pop()
  }
}

/**
 * External merge sort of binary records in bounded memory. Records are collected into a run
 * until it reaches its bound (bytes or records), then the run is sorted and written to a file
 * of its own; reading merges the runs (and the last one, still in memory) with a heap. With
 * few records nothing touches the disk.
 *
 * The sort is stable: records that compare equal come out in the order they were added. A
 * run is sorted natively on a 32-bit prefix of each record's key (with the record's ordinal
 * in the low bits of one float), and only records with equal prefixes are compared in full.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import type { PlatformError } from "@effect/platform/Error"
import { Effect } from "effect"
import type { Scope } from "effect"
import * as RecordFile from "./RecordFile.js"
import * as PrivateFiles from "./PrivateFiles.js"

export interface Order {
  /**
   * A prefix of the key of the record at `at` in `bytes`, as an unsigned 32-bit integer: a
   * smaller prefix sorts first.
   */
  readonly prefix: (bytes: Buffer, at: number) => number
  /** The whole order, consistent with `prefix`. */
  readonly compare: (a: Buffer, b: Buffer) => number
}

export interface Options {
  /** A directory of its own for the run files (made if missing). */
  readonly dir: string
  readonly order: Order
  /** Bytes of records held in memory before a run is written (default 64 MB). */
  readonly maxRunBytes?: number
  /** Records held in memory before a run is written (default and at most 2^20). */
  readonly maxRunRecords?: number
  /** Runs merged at once; more are merged in passes (default 64). */
  readonly fanIn?: number
}

export interface Sorter {
  /** Adds a record (copied); returns an Effect only when a run must be written: run it before the next `add`. */
  readonly add: (record: Uint8Array) => Effect.Effect<void, PlatformError> | undefined
  /** Records added so far. */
  readonly size: () => number
  /** Runs written to disk so far. */
  readonly spilled: () => number
  /**
   * Visits every record in order. `f` is synchronous and returns an Effect only for I/O; a
   * record it receives stays valid after it returns. May be called more than once.
   */
  readonly forEach: <E, R>(f: (record: Buffer) => Effect.Effect<void, E, R> | undefined) => Effect.Effect<void, E | PlatformError, R | FileSystem.FileSystem>
}

const ORDINAL_BITS = 20
const MAX_RUN_RECORDS = 1 << ORDINAL_BITS

/** Records of one run in memory: their bytes end to end, and where each starts. */
interface MemoryRun {
  readonly arena: Buffer
  readonly starts: Uint32Array
  readonly count: number
  /** Bytes of the arena in use: where the last record ends. */
  readonly used: number
}

const view = (run: MemoryRun, i: number) => run.arena.subarray(run.starts[i]!, i + 1 < run.count ? run.starts[i + 1]! : run.used)

/**
 * Sorts a run (stably), returning its records' ordinals in order: no object per record, a
 * million-record run costs its bytes and three numbers a record.
 */
const sortRun = (run: MemoryRun, order: Order): Uint32Array => {
  const n = run.count
  const keys = new Float64Array(n)
  for (let i = 0; i < n; i++) keys[i] = order.prefix(run.arena, run.starts[i]!) * MAX_RUN_RECORDS + i
  keys.sort()
  const sorted = new Uint32Array(n)
  for (let i = 0; i < n; i++) sorted[i] = keys[i]! % MAX_RUN_RECORDS
  // Equal prefixes are next to each other, in the order they were added: sort each such
  // block in full (Array.prototype.sort is stable).
  for (let i = 0; i < n; ) {
    const p = Math.floor(keys[i]! / MAX_RUN_RECORDS)
    let j = i + 1
    while (j < n && Math.floor(keys[j]! / MAX_RUN_RECORDS) === p) j++
    if (j - i > 1) {
      const block = Array.from(sorted.subarray(i, j)).sort((a, b) => order.compare(view(run, a), view(run, b)))
      sorted.set(block, i)
    }
    i = j
  }
  return sorted
}

/** A source of records in order: a run file, or a sorted run in memory. */
interface Cursor {
  readonly current: () => Buffer | undefined
  readonly advance: () => Effect.Effect<void, PlatformError> | undefined
}

const memoryCursor = (run: MemoryRun, sorted: Uint32Array): Cursor => {
  let i = 0
  let record = sorted.length > 0 ? view(run, sorted[0]!) : undefined
  return {
    current: () => record,
    advance: () => void (record = ++i < sorted.length ? view(run, sorted[i]!) : undefined)
  }
}

/** Merges cursors (ties: the earlier cursor first, which keeps the sort stable). */
const merge = <E, R>(
  cursors: ReadonlyArray<Cursor>,
  order: Order,
  f: (record: Buffer) => Effect.Effect<void, E, R> | undefined
): Effect.Effect<void, E | PlatformError, R> =>
  Effect.gen(function* () {
    const less = (a: number, b: number) => {
      const c = order.compare(cursors[a]!.current()!, cursors[b]!.current()!)
      return c < 0 || (c === 0 && a < b)
    }
    // A binary heap of cursor indexes, smallest record on top.
    const heap: Array<number> = []
    const down = (at: number) => {
      for (;;) {
        const l = 2 * at + 1
        const r = l + 1
        let m = at
        if (l < heap.length && less(heap[l]!, heap[m]!)) m = l
        if (r < heap.length && less(heap[r]!, heap[m]!)) m = r
        if (m === at) return
        ;[heap[at], heap[m]] = [heap[m]!, heap[at]!]
        at = m
      }
    }
    for (let i = 0; i < cursors.length; i++) if (cursors[i]!.current() !== undefined) heap.push(i)
    for (let i = (heap.length >> 1) - 1; i >= 0; i--) down(i)
    while (heap.length > 0) {
      const top = heap[0]!
      const cursor = cursors[top]!
      const io = f(cursor.current()!)
      if (io !== undefined) yield* io
      const more = cursor.advance()
      if (more !== undefined) yield* more
      if (cursor.current() === undefined) {
        heap[0] = heap[heap.length - 1]!
        heap.pop()
      }
      down(0)
    }
  })

/** A sorter whose run files live in `options.dir` until the scope closes. */
export const make = (options: Options): Effect.Effect<Sorter, PlatformError, FileSystem.FileSystem | Scope.Scope> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    yield* PrivateFiles.makeDirectory(options.dir)
    const maxBytes = options.maxRunBytes ?? 64 * 1024 * 1024
    const maxRecords = Math.min(MAX_RUN_RECORDS, options.maxRunRecords ?? MAX_RUN_RECORDS)
    const fanIn = Math.max(2, options.fanIn ?? 64)
    const { order } = options
    const runs: Array<string> = []
    let fileSeq = 0
    let size = 0
    // The run being collected; its arena and offsets are reused from run to run.
    let arena = Buffer.allocUnsafe(Math.min(maxBytes, 1 << 20))
    let used = 0
    let starts = new Uint32Array(Math.min(maxRecords, 1 << 12))
    let count = 0

    const newRunPath = () => `${options.dir}/run-${String(++fileSeq).padStart(6, "0")}.bin`
    const writeRun = <R>(path: string, write: (w: RecordFile.RecordWriter) => Effect.Effect<void, PlatformError, R>) =>
      Effect.scoped(
        Effect.gen(function* () {
          const w = yield* RecordFile.create(path)
          yield* write(w)
          yield* w.flush
        })
      )

    const memory = (): MemoryRun => ({ arena, starts, count, used })

    /** Sorts the records in memory and writes them as a run; then the memory takes the next run. */
    const spill = Effect.suspend(() => {
      const run = memory()
      const sorted = sortRun(run, order)
      const path = newRunPath()
      runs.push(path)
      return writeRun(path, (w) =>
        Effect.gen(function* () {
          for (const i of sorted) if (w.append(view(run, i))) yield* w.flush
        })
      ).pipe(
        Effect.provideService(FileSystem.FileSystem, fs),
        Effect.zipRight(Effect.sync(() => void ((used = 0), (count = 0))))
      )
    })

    const add = (record: Uint8Array) => {
      if (used + record.length > arena.length) {
        // Grow the arena up to the bound (a single record larger than the bound gets room of its own).
        const grown = Buffer.allocUnsafe(Math.max(used + record.length, Math.min(maxBytes, arena.length * 2)))
        arena.copy(grown, 0, 0, used)
        arena = grown
      }
      if (count === starts.length) {
        const grown = new Uint32Array(Math.min(maxRecords, starts.length * 2))
        grown.set(starts)
        starts = grown
      }
      arena.set(record, used)
      starts[count++] = used
      used += record.length
      size++
      return count >= maxRecords || used >= maxBytes ? spill : undefined
    }

    /** Merges runs in passes until at most `fanIn` are left. */
    const reduceRuns = Effect.gen(function* () {
      while (runs.length > fanIn) {
        const group = runs.splice(0, fanIn)
        const path = newRunPath()
        yield* writeRun(path, (w) =>
          Effect.scoped(
            Effect.gen(function* () {
              const cursors = yield* Effect.forEach(group, (p) => RecordFile.reader(p))
              yield* merge(cursors, order, (r) => (w.append(r) ? w.flush : undefined))
            })
          )
        )
        // The merged run goes first: it holds the earliest records (the sort stays stable).
        runs.unshift(path)
        for (const p of group) yield* fs.remove(p)
      }
    })

    const forEach = <E, R>(f: (record: Buffer) => Effect.Effect<void, E, R> | undefined) =>
      Effect.scoped(
        Effect.gen(function* () {
          yield* reduceRuns
          const run = memory()
          const inMemory = sortRun(run, order)
          const cursors: Array<Cursor> = yield* Effect.forEach(runs, (p) => RecordFile.reader(p))
          cursors.push(memoryCursor(run, inMemory))
          if (cursors.length === 1) {
            for (const i of inMemory) {
              const io = f(view(run, i))
              if (io !== undefined) yield* io
            }
            return
          }
          yield* merge(cursors, order, f)
        })
      )

    // The run files go with the scope.
    yield* Effect.addFinalizer(() => Effect.forEach(runs, (p) => fs.remove(p).pipe(Effect.ignore), { discard: true }))
    return { add, size: () => size, spilled: () => runs.length, forEach }
  })

/**
 * Files of binary records, each a 4-byte length and its bytes: the planner's key sidecars and
 * the external sort's runs. Writes are buffered into ~1 MB pieces; reads go chunk by chunk,
 * each chunk a fresh buffer, so a record handed out stays valid after the next one is read.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import type { PlatformError } from "@effect/platform/Error"
import { Effect } from "effect"
import type { Scope } from "effect"
import * as PrivateFiles from "./PrivateFiles.js"

const CHUNK = 1 << 20
/** A writer starts small and grows to CHUNK: many small files (a spooled group) stay cheap. */
const FIRST = 1 << 14

export interface RecordWriter {
  /** Buffers one record without an Effect; true when the buffer is full and `flush` should run. */
  readonly append: (record: Uint8Array) => boolean
  readonly flush: Effect.Effect<void, PlatformError>
  /** Flushes and fsyncs; returns the file's length in bytes. */
  readonly sync: Effect.Effect<number, PlatformError>
}

/** Opens `path` empty (truncating what was there) for appending records. */
export const create = (path: string): Effect.Effect<RecordWriter, PlatformError, FileSystem.FileSystem | Scope.Scope> =>
  Effect.gen(function* () {
    const file = yield* PrivateFiles.open(path, "w")
    let size = FIRST
    let buffer = Buffer.allocUnsafe(size)
    let used = 0
    let written = 0
    let pending: Array<Uint8Array> = []
    const append = (record: Uint8Array): boolean => {
      const need = 4 + record.length
      if (used + need > buffer.length) {
        // Full: the buffer goes to the pending writes, and a new one (large enough) takes over.
        if (used > 0) pending.push(buffer.subarray(0, used))
        size = Math.min(CHUNK, size * 2)
        buffer = Buffer.allocUnsafe(Math.max(size, need))
        used = 0
      }
      buffer.writeUInt32LE(record.length, used)
      buffer.set(record, used + 4)
      used += need
      return pending.length > 0
    }
    const flush = Effect.suspend(() => {
      if (used > 0) {
        pending.push(buffer.subarray(0, used))
        buffer = Buffer.allocUnsafe(size)
        used = 0
      }
      const out = pending
      pending = []
      return Effect.forEach(out, (piece) => Effect.zipRight(file.writeAll(piece), Effect.sync(() => void (written += piece.length))), {
        discard: true
      })
    })
    return { append, flush, sync: flush.pipe(Effect.zipRight(file.sync), Effect.map(() => written)) }
  })

/**
 * Reads records one at a time: `current` is the record at hand (undefined at the end), and
 * `advance` moves on, returning an Effect only when a chunk must be read.
 */
export interface RecordReader {
  readonly current: () => Buffer | undefined
  readonly advance: () => Effect.Effect<void, PlatformError> | undefined
}

/** A reader over `path`; `start` reads the first record. */
export const reader = (path: string): Effect.Effect<RecordReader, PlatformError, FileSystem.FileSystem | Scope.Scope> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const file = yield* fs.open(path, { flag: "r" })
    // Chunks are no larger than what is left of the file.
    let left = Number((yield* file.stat).size)
    let chunk = Buffer.alloc(0)
    let at = 0
    let eof = false
    let record: Buffer | undefined
    /** The record at `at`, if the chunk holds all of it. */
    const take = (): boolean => {
      if (chunk.length - at < 4) return false
      const length = chunk.readUInt32LE(at)
      if (chunk.length - at - 4 < length) return false
      record = chunk.subarray(at + 4, at + 4 + length)
      at += 4 + length
      return true
    }
    const fill: Effect.Effect<void, PlatformError> = Effect.gen(function* () {
      for (;;) {
        if (take()) return
        if (eof) {
          if (at < chunk.length) return yield* Effect.dieMessage(`${path}: a torn record at its end`)
          record = undefined
          return
        }
        // The unread tail moves into a fresh buffer with the next chunk: records already
        // handed out keep pointing at the old one.
        const rest = chunk.subarray(at)
        const want = Math.max(1, Math.min(CHUNK, left), rest.length >= 4 ? 4 + rest.readUInt32LE(0) - rest.length : 0)
        const next = Buffer.allocUnsafe(rest.length + want)
        rest.copy(next, 0)
        const n = Number(yield* file.read(next.subarray(rest.length)))
        left -= n
        if (n === 0) eof = true
        chunk = next.subarray(0, rest.length + n)
        at = 0
      }
    })
    yield* fill
    return {
      current: () => record,
      advance: () => (take() ? undefined : fill)
    }
  })

/** Visits every record of `path` in order; `f` is synchronous and returns an Effect only for I/O. */
export const forEach = <E, R>(
  path: string,
  f: (record: Buffer) => Effect.Effect<void, E, R> | undefined
): Effect.Effect<void, E | PlatformError, FileSystem.FileSystem | R> =>
  Effect.scoped(
    Effect.gen(function* () {
      const r = yield* reader(path)
      for (let record = r.current(); record !== undefined; record = r.current()) {
        const io = f(record)
        if (io !== undefined) yield* io
        const more = r.advance()
        if (more !== undefined) yield* more
      }
    })
  )

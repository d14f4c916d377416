/**
 * Buffered line writer over a FileSystem file: lines are encoded into ~1 MB writes, and
 * `sync` flushes and fsyncs. Used for shard files and the run's append-only outputs.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import { SystemError } from "@effect/platform/Error"
import type { PlatformError } from "@effect/platform/Error"
import { Effect } from "effect"
import type { Scope } from "effect"
import * as PrivateFiles from "./PrivateFiles.js"

export interface LineFile {
  /** Appends one line (a newline is added). */
  readonly line: (text: string) => Effect.Effect<void, PlatformError>
  /**
   * Buffers one line without an Effect (for hot loops); true when the buffer is full and
   * `flush` should run.
   */
  readonly append: (text: string) => boolean
  readonly flush: Effect.Effect<void, PlatformError>
  /** Flushes and fsyncs; returns the file's length in bytes. */
  readonly sync: Effect.Effect<number, PlatformError>
  /** Length in bytes including buffered lines. */
  readonly size: () => number
  /** Appends the whole of another file's bytes (lines written elsewhere), after the buffered lines. */
  readonly appendFile: (path: string) => Effect.Effect<void, PlatformError, FileSystem.FileSystem>
}

const FLUSH_AT = 1 << 20

/**
 * Opens `path` for appending after truncating it to `keep` bytes (0 = start empty).
 * Truncation discards a tail that was written but never committed before a crash.
 * A file it creates is private (0600): these files hold the run's rows and answers.
 */
export const open = (
  path: string,
  keep: number
): Effect.Effect<LineFile, PlatformError, FileSystem.FileSystem | Scope.Scope> =>
  Effect.gen(function* () {
    // Writes go through a descriptor: name the file in their errors instead.
    const named = Effect.mapError((e: PlatformError): PlatformError =>
      e._tag === "SystemError" && typeof e.pathOrDescriptor !== "string" ? new SystemError({ ...e, pathOrDescriptor: path }) : e
    )
    const file = yield* PrivateFiles.open(path, "a+")
    const current = Number((yield* file.stat).size)
    if (current < keep) {
      return yield* Effect.dieMessage(`${path} is ${current} bytes, shorter than its committed ${keep} bytes`)
    }
    if (current > keep) yield* file.truncate(keep)
    // Lines are encoded into a byte buffer as they come: no string is held until the write,
    // and no joined megabyte string is made (V8 puts each in its large-object space, freed
    // only by a full GC: ~1 MB of old garbage per megabyte written). A buffer being written
    // is set aside (`spare` once done), so appends meanwhile never touch its bytes.
    let buffer: Buffer | undefined
    let spare: Buffer | undefined
    let used = 0
    let written = keep
    const flush = Effect.suspend(() => {
      if (used === 0 || buffer === undefined) return Effect.void
      const out = buffer
      const bytes = out.subarray(0, used)
      buffer = spare
      spare = undefined
      written += used
      used = 0
      return named(file.writeAll(bytes)).pipe(
        // A buffer grown for a long line is not kept.
        Effect.ensuring(Effect.sync(() => void (out.length <= 2 * FLUSH_AT && (spare = out))))
      )
    })
    const append = (text: string) => {
      // At most 3 bytes per UTF-16 unit; a long line is measured instead.
      const need = (text.length > 65_536 ? Buffer.byteLength(text) : text.length * 3) + 1
      if (buffer === undefined || used + need > buffer.length) {
        const bigger = Buffer.allocUnsafeSlow(Math.max(used + need, buffer === undefined ? 65_536 : buffer.length * 2))
        if (buffer !== undefined) buffer.copy(bigger, 0, 0, used)
        buffer = bigger
      }
      used += buffer.write(text, used, "utf8")
      buffer[used++] = 10
      return used >= FLUSH_AT
    }
    const line = (text: string) => Effect.suspend(() => (append(text) ? flush : Effect.void))
    const appendFile = (from: string) =>
      flush.pipe(
        Effect.zipRight(Effect.scoped(Effect.gen(function* () {
          const source = yield* (yield* FileSystem.FileSystem).open(from, { flag: "r" })
          const piece = Buffer.allocUnsafe(FLUSH_AT)
          for (;;) {
            const n = Number(yield* source.read(piece))
            if (n === 0) return
            yield* named(file.writeAll(piece.subarray(0, n)))
            written += n
          }
        })))
      )
    return {
      line,
      append,
      flush,
      sync: flush.pipe(
        Effect.zipRight(named(file.sync)),
        Effect.map(() => written)
      ),
      size: () => written + used,
      appendFile
    }
  })

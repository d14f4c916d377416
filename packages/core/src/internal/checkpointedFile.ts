/**
 * An append-only output file whose committed length is the checkpoint. Opening it with a
 * checkpoint cuts off whatever was written after that commit (a torn tail after a crash), so
 * a record is in the file exactly once however often the run resumes. Without a checkpoint
 * the file is emptied at the first write or commit, not at opening.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import type { PlatformError } from "@effect/platform/Error"
import { Effect } from "effect"
import type { Scope } from "effect"
import { dirname } from "node:path"
import type { SinkCheckpoint } from "../Sink.js"

export interface CheckpointedFile<E> {
  /** Bytes already committed when the file was opened: 0 for a fresh file. */
  readonly startOffset: number
  /** Buffers text; writes it out when the buffer is large. */
  readonly append: (text: string) => Effect.Effect<void, E>
  /** Writes the buffer, fsyncs, and returns the new committed length. */
  readonly commit: Effect.Effect<SinkCheckpoint, E>
}

/** Flush threshold, in bytes. */
const BUFFER_LIMIT = 1 << 20

/** `fail` builds the caller's error from a description that names the file. */
export const open = <E>(
  path: string,
  resume: SinkCheckpoint | undefined,
  fail: (description: string) => E
): Effect.Effect<CheckpointedFile<E>, E, FileSystem.FileSystem | Scope.Scope> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const failWith = (what: string) => (e: PlatformError) =>
      fail(`${what} ${path}: ${e.message}`)
    const offset = resume?.offset ?? 0
    if (!Number.isSafeInteger(offset) || offset < 0) {
      return yield* Effect.fail(fail(`invalid checkpoint offset ${offset} for ${path}`))
    }
    let file: FileSystem.File
    // Nothing committed yet: the file starts empty, whatever is there — but only when the
    // first bytes are written or committed. A run that stops before that (bad input found
    // while planning, say) leaves a file it found (an earlier run's output) as it was.
    let replaceAtFirstWrite = false
    if (offset === 0) {
      yield* fs.makeDirectory(dirname(path), { recursive: true }).pipe(
        Effect.mapError(failWith("cannot create the directory of"))
      )
      // Opened now, so that a path that cannot be written fails the run at its start.
      file = yield* fs.open(path, { flag: "a+" }).pipe(Effect.mapError(failWith("cannot open")))
      replaceAtFirstWrite = Number((yield* file.stat.pipe(Effect.mapError(failWith("cannot stat")))).size) > 0
    } else {
      if (!(yield* fs.exists(path).pipe(Effect.mapError(failWith("cannot access"))))) {
        return yield* Effect.fail(
          fail(`${path} is missing, but ${offset} bytes of it were committed; it was moved or deleted`)
        )
      }
      file = yield* fs.open(path, { flag: "r+" }).pipe(Effect.mapError(failWith("cannot open")))
      const size = Number((yield* file.stat.pipe(Effect.mapError(failWith("cannot stat")))).size)
      if (size < offset) {
        return yield* Effect.fail(
          fail(`${path} has ${size} bytes but ${offset} were committed; it was truncated or replaced`)
        )
      }
      if (size > offset) {
        yield* file.truncate(FileSystem.Size(offset)).pipe(Effect.mapError(failWith("cannot truncate")))
      }
      yield* file.seek(FileSystem.Size(offset), "start")
    }

    // Text is encoded when appended: a string held until the flush outlives young-generation
    // collections and becomes old-space garbage (joined, a large-object one).
    let parts: Array<Buffer> = []
    let buffered = 0
    let written = offset
    // After a failed or interrupted write the buffer is gone and the file's length unknown:
    // refuse to go on rather than lose records or commit a wrong offset. Reopening from the
    // last checkpoint recovers.
    let broken: E | undefined
    const lock = yield* Effect.makeSemaphore(1)
    const guard = <A>(what: string, effect: Effect.Effect<A, PlatformError>): Effect.Effect<A, E> =>
      effect.pipe(
        Effect.mapError((e) => (broken = failWith(what)(e))),
        Effect.onInterrupt(() =>
          Effect.sync(() => {
            broken = fail(`a write to ${path} was interrupted; reopen the sink from its last checkpoint`)
          })
        )
      )

    const replace = Effect.suspend((): Effect.Effect<void, E> => {
      if (broken !== undefined) return Effect.fail(broken)
      if (!replaceAtFirstWrite) return Effect.void
      replaceAtFirstWrite = false
      return guard("cannot truncate", file.truncate(FileSystem.Size(0)))
    })

    const write = Effect.suspend((): Effect.Effect<void, E> => {
      if (broken !== undefined) return Effect.fail(broken)
      if (buffered === 0) return Effect.void
      const bytes = parts.length === 1 ? parts[0]! : Buffer.concat(parts, buffered)
      parts = []
      buffered = 0
      return guard("cannot write", file.writeAll(bytes)).pipe(
        Effect.map(() => {
          written += bytes.length
        })
      )
    })

    const flush = Effect.zipRight(replace, write)

    const append = (text: string) =>
      lock.withPermits(1)(
        Effect.suspend(() => {
          if (broken !== undefined) return Effect.fail(broken)
          const bytes = Buffer.from(text, "utf8")
          parts.push(bytes)
          buffered += bytes.length
          return buffered >= BUFFER_LIMIT ? flush : Effect.void
        })
      )

    const commit = lock.withPermits(1)(
      flush.pipe(
        Effect.zipRight(guard("cannot fsync", file.sync)),
        Effect.map((): SinkCheckpoint => ({ offset: written }))
      )
    )

    return { startOffset: offset, append, commit }
  })

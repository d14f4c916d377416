/**
 * The append-only journal: the run's source of truth. Each event is one JSON line, fsynced
 * before the action it guards. A torn last line (a crash mid-write) is dropped on open;
 * a corrupt line anywhere else is an error naming the line — events are never skipped.
 */
import { FileSystem } from "@effect/platform"
import { Effect, Either, Schema, Stream } from "effect"
import type { Scope } from "effect"
import { dirname } from "node:path"
import * as PrivateFiles from "./internal/PrivateFiles.js"
import { JournalEvent } from "./JournalEvent.js"

export class JournalCorrupt extends Schema.TaggedError<JournalCorrupt>()("JournalCorrupt", {
  path: Schema.String,
  line: Schema.Number,
  description: Schema.String
}) {
  override get message(): string {
    return `journal ${this.path} is corrupt at line ${this.line}: ${this.description}`
  }
}

export class JournalIOError extends Schema.TaggedError<JournalIOError>()("JournalIOError", {
  path: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return `journal ${this.path}: ${this.description}`
  }
}

const decodeEvent = Schema.decodeUnknownEither(JournalEvent)
const encodeEvent = Schema.encodeSync(JournalEvent)

/**
 * Streams the journal's events in order. A line that does not decode is tolerated only if it
 * is the last one (a torn write); anywhere else it fails the stream with JournalCorrupt.
 */
export const replay = (
  path: string
): Stream.Stream<JournalEvent, JournalCorrupt | JournalIOError, FileSystem.FileSystem> =>
  Stream.unwrap(
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const exists = yield* fs.exists(path).pipe(Effect.mapError(ioError(path)))
      if (!exists) return Stream.empty
      let lineNo = 0
      let pendingBad: { line: number; description: string } | undefined
      return fs.stream(path).pipe(
        Stream.mapError(ioError(path)),
        Stream.decodeText(),
        Stream.splitLines,
        Stream.mapEffect((text) => {
          lineNo++
          if (text.trim() === "") return Effect.succeed<JournalEvent | undefined>(undefined)
          if (pendingBad !== undefined) {
            return Effect.fail(new JournalCorrupt({ path, line: pendingBad.line, description: pendingBad.description }))
          }
          const parsed = parseLine(text)
          if (Either.isLeft(parsed)) {
            pendingBad = { line: lineNo, description: parsed.left }
            return Effect.succeed(undefined)
          }
          return Effect.succeed<JournalEvent | undefined>(parsed.right)
        }),
        Stream.filter((e): e is JournalEvent => e !== undefined)
      )
    })
  )

const parseLine = (text: string): Either.Either<JournalEvent, string> => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (e) {
    return Either.left(`not JSON (${(e as Error).message})`)
  }
  return Either.mapLeft(decodeEvent(json), (err) => `not a journal event (${err.message.split("\n")[0]})`)
}

const ioError = (path: string) => (e: unknown) =>
  new JournalIOError({ path, description: e instanceof Error ? e.message : String(e) })

export interface JournalWriter {
  readonly append: (event: JournalEvent) => Effect.Effect<void, JournalIOError>
}

/**
 * Opens the journal for appending. A torn tail (no final newline) is cut off first, so the
 * next event starts on a line of its own. A journal it creates (0600) has its directory
 * fsynced, so the file's name survives a power cut along with the events fsynced into it.
 */
export const open = (path: string): Effect.Effect<JournalWriter, JournalIOError, FileSystem.FileSystem | Scope.Scope> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    yield* cutTornTail(path)
    const existed = yield* fs.exists(path).pipe(Effect.mapError(ioError(path)))
    const file = yield* PrivateFiles.open(path, "a").pipe(Effect.mapError(ioError(path)))
    if (!existed) yield* PrivateFiles.syncDirectory(dirname(path)).pipe(Effect.mapError(ioError(path)))
    const lock = yield* Effect.makeSemaphore(1)
    const encoder = new TextEncoder()
    const append = (event: JournalEvent) =>
      lock.withPermits(1)(
        file.writeAll(encoder.encode(JSON.stringify(encodeEvent(event)) + "\n")).pipe(
          Effect.zipRight(file.sync),
          Effect.mapError(ioError(path))
        )
      )
    return { append }
  })

const cutTornTail = (path: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    if (!(yield* fs.exists(path))) return
    const size = Number((yield* fs.stat(path)).size)
    if (size === 0) return
    yield* Effect.scoped(
      Effect.gen(function* () {
        const file = yield* fs.open(path, { flag: "r+" })
        // Scan backwards in blocks for the last newline.
        const block = 64 * 1024
        let end = size
        while (end > 0) {
          const start = Math.max(0, end - block)
          const buf = new Uint8Array(end - start)
          yield* file.seek(start, "start")
          yield* file.read(buf)
          const idx = buf.lastIndexOf(10)
          if (idx >= 0) {
            const keep = start + idx + 1
            if (keep < size) yield* file.truncate(keep)
            return
          }
          end = start
        }
        yield* file.truncate(0)
      })
    )
  }).pipe(Effect.mapError(ioError(path)))

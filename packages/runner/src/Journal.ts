/**
 * The append-only journal: the run's source of truth. Each event is one JSON line, fsynced
 * before the action it guards. A line counts once its newline is written: the bytes after the
 * last newline are a torn write (a crash mid-append), which replay ignores and open cuts off,
 * whatever they hold. A complete line that is not an event is an error naming the line —
 * events are never skipped. An event that would not read back is never written.
 *
 * Every line also carries `t`, the time it was written (unix ms), for views of the run over
 * time (RunView.ts). It is not part of the event: decoding ignores it, so the state a replay
 * builds never depends on it, and journals written before it existed replay the same.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import { Effect, Either, Schema, Stream } from "effect"
import type { Scope } from "effect"
import { dirname } from "node:path"
import * as JournalMarker from "./internal/journalMarker.js"
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
const encodeEvent = Schema.encodeEither(JournalEvent)

/** Where a value holds a number JSON cannot (Infinity, NaN: written as null, read back as something else). */
const nonFinite = (value: unknown, path: string): string | undefined => {
  if (typeof value === "number") return Number.isFinite(value) ? undefined : `${path} is ${value}`
  if (typeof value !== "object" || value === null) return undefined
  for (const [key, item] of Object.entries(value)) {
    const found = nonFinite(item, path === "" ? key : `${path}.${key}`)
    if (found !== undefined) return found
  }
  return undefined
}

/**
 * The event's line, checked to read back as the same event: a line that does not would make
 * the journal corrupt for every later replay, or replay as another event.
 */
export const lineOf = (event: JournalEvent, t: number): Either.Either<string, string> =>
  Either.flatMap(Either.mapLeft(encodeEvent(event), (e) => e.message.split("\n")[0]!), (encoded) => {
    const problem = nonFinite(encoded, "")
    if (problem !== undefined) return Either.left(`${problem}, which JSON cannot hold`)
    const text = JSON.stringify({ ...encoded, t })
    return Either.map(parseLine(text), () => text)
  })

/**
 * Streams the journal's events in order: those of its complete lines. The text after the last
 * newline is a torn write and is ignored, as `open` cuts it off (an event kept here but cut
 * there would be in the state of the resumed run and missing from its journal). A complete
 * line that does not decode fails the stream with JournalCorrupt.
 */
export const replay = (
  path: string
): Stream.Stream<JournalEvent, JournalCorrupt | JournalIOError, FileSystem.FileSystem> =>
  Stream.map(replayTimed(path), (line) => line.event)

/** A journal line's event and the time it was written (null in journals from before lines carried `t`). */
export interface TimedEvent {
  readonly event: JournalEvent
  readonly t: number | null
}

const timeOf = (json: unknown): number | null => {
  const t = (json as { readonly t?: unknown }).t
  return typeof t === "number" && Number.isFinite(t) ? t : null
}

/** `replay`, with the time each line was written. */
export const replayTimed = (
  path: string
): Stream.Stream<TimedEvent, JournalCorrupt | JournalIOError, FileSystem.FileSystem> => Stream.flattenIterables(replayChunks(path))

/**
 * `replayTimed`, the events of each piece of the file read together (in order; no piece is
 * empty). For folds over the whole journal (loadState): a plain loop over each piece costs
 * ~3 µs an event where a stream element costs ~20, and an effect per line (how replay decoded
 * until now) ~70 — most of `sluice status`'s time on a journal of a few thousand lines.
 */
export const replayChunks = (
  path: string
): Stream.Stream<ReadonlyArray<TimedEvent>, JournalCorrupt | JournalIOError, FileSystem.FileSystem> =>
  Stream.unwrap(
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const exists = yield* fs.exists(path).pipe(Effect.mapError(ioError(path)))
      if (!exists) return Stream.empty
      let lineNo = 0
      return fs.stream(path).pipe(
        Stream.mapError(ioError(path)),
        Stream.decodeText(),
        completeLines,
        Stream.flatMap((lines) => {
          const events: Array<TimedEvent> = []
          for (const text of lines) {
            lineNo++
            if (text.trim() === "") continue
            const parsed = parseTimed(text)
            if (Either.isLeft(parsed)) {
              // The events before the corrupt line come first, as they did line by line.
              const corrupt = Stream.fail(new JournalCorrupt({ path, line: lineNo, description: parsed.left }))
              return events.length === 0 ? corrupt : Stream.concat(Stream.succeed(events), corrupt)
            }
            events.push(parsed.right)
          }
          return events.length === 0 ? Stream.empty : Stream.succeed(events)
        })
      )
    })
  )

/** The newline-terminated lines of a text stream (a CR before the newline dropped), those of each piece of text together; the rest is never emitted. */
const completeLines = <E, R>(text: Stream.Stream<string, E, R>): Stream.Stream<ReadonlyArray<string>, E, R> =>
  text.pipe(
    Stream.mapAccum("", (pending, chunk): readonly [string, ReadonlyArray<string>] => {
      if (!chunk.includes("\n")) return [pending + chunk, []]
      const lines = (pending + chunk).split("\n")
      const rest = lines.pop()!
      return [rest, lines.map((line) => (line.endsWith("\r") ? line.slice(0, -1) : line))]
    })
  )

export const parseTimed = (text: string): Either.Either<TimedEvent, string> => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (e) {
    return Either.left(`not JSON (${(e as Error).message})`)
  }
  return Either.match(decodeEvent(json), {
    onLeft: (err) => Either.left(`not a journal event (${err.message.split("\n")[0]})`),
    onRight: (event) => Either.right({ event, t: timeOf(json) })
  })
}

export const parseLine = (text: string): Either.Either<JournalEvent, string> => Either.map(parseTimed(text), (line) => line.event)

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
    // The time is taken holding the lock: the lines' times follow their order (as far as the clock does).
    const append = (event: JournalEvent) =>
      lock.withPermits(1)(
        Effect.suspend(() => {
          const line = lineOf(event, Date.now())
          if (Either.isLeft(line)) {
            return Effect.fail(new JournalIOError({ path, description: `refused a ${event._tag} event that would not read back: ${line.left}` }))
          }
          return file.writeAll(encoder.encode(line.right + "\n")).pipe(
            Effect.zipRight(file.sync),
            Effect.mapError(ioError(path))
          )
        })
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

export { inDatabaseLine } from "./internal/journalMarker.js"

/** Whether the file at `path` is the marker of a journal kept in a database (`inDatabaseLine`). */
export const isInDatabaseMarker = (path: string): Effect.Effect<boolean> => Effect.sync(() => JournalMarker.hasMarker(path))

/** Writes the marker (0600, fsynced, its name too) unless the run directory has a journal.jsonl already. */
export const markInDatabase = (path: string): Effect.Effect<void, JournalIOError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    if (yield* fs.exists(path)) return
    yield* Effect.scoped(
      Effect.gen(function* () {
        const file = yield* PrivateFiles.open(path, "wx")
        yield* file.writeAll(new TextEncoder().encode(JournalMarker.inDatabaseLine + "\n"))
        yield* file.sync
      })
    )
    yield* PrivateFiles.syncDirectory(dirname(path))
  }).pipe(
    // Another writer made it meanwhile ("wx" refused): it is there.
    Effect.catchIf((e) => e._tag === "SystemError" && e.reason === "AlreadyExists", () => Effect.void),
    Effect.mapError(ioError(path))
  )

/**
 * How far a reader of a journal has read: the bytes of its complete lines (in the table of a
 * database: the last seq) and how many events they held.
 */
export interface Position {
  readonly at: number
  readonly lines: number
}

export const start: Position = { at: 0, lines: 0 }

/** What was appended after a position, and the position after it. */
export interface Appended {
  readonly events: ReadonlyArray<TimedEvent>
  readonly position: Position
  /** The journal was replaced since (a new generation of the run): `events` are from its start. */
  readonly restarted: boolean
  /** More was appended than one read returns: read on from `position`. */
  readonly more: boolean
}

/** What one `readAfter` of a file reads at most (a line longer than this is read whole). */
const readWindow = 8 * 1024 * 1024

/**
 * The complete lines appended after `from` (the torn tail is not read: its step is dead or
 * still writing). A journal shorter than `from` was replaced: read from its start. A complete
 * line that does not decode fails with JournalCorrupt naming its line.
 */
export const readAfter = (path: string, from: Position): Effect.Effect<Appended, JournalCorrupt | JournalIOError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    if (!(yield* fs.exists(path))) return { events: [], position: start, restarted: from.at > 0, more: false }
    const size = Number((yield* fs.stat(path)).size)
    const restarted = size < from.at
    const at = restarted ? start : from
    if (size === at.at) return { events: [], position: at, restarted, more: false }
    const read = (length: number) =>
      Effect.scoped(
        Effect.gen(function* () {
          const file = yield* fs.open(path, { flag: "r" })
          yield* file.seek(at.at, "start")
          const bytes = yield* file.readAlloc(length)
          return bytes._tag === "None" ? new Uint8Array(0) : bytes.value
        })
      )
    let buffer = yield* read(Math.min(size - at.at, readWindow))
    let end = buffer.lastIndexOf(10)
    if (end < 0 && buffer.length < size - at.at) {
      buffer = yield* read(size - at.at)
      end = buffer.lastIndexOf(10)
    }
    if (end < 0) return { events: [], position: at, restarted, more: false }
    const events: Array<TimedEvent> = []
    let lineNo = at.lines
    for (const raw of new TextDecoder().decode(buffer.subarray(0, end)).split("\n")) {
      lineNo++
      const text = raw.endsWith("\r") ? raw.slice(0, -1) : raw
      if (text.trim() === "") continue
      const parsed = parseTimed(text)
      if (Either.isLeft(parsed)) return yield* new JournalCorrupt({ path, line: lineNo, description: parsed.left })
      events.push(parsed.right)
    }
    const next = at.at + end + 1
    return { events, position: { at: next, lines: lineNo }, restarted, more: buffer.length < size - at.at }
  }).pipe(Effect.catchTag("BadArgument", "SystemError", (e) => Effect.fail(ioError(path)(e))))

/**
 * Moves the journal to `target` (a generation's archive, Rebase.ts). Moved before a crash and
 * recreated empty since: the empty one is removed; two journals with events are left to the user.
 */
export const archive = (path: string, target: string): Effect.Effect<void, JournalIOError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    if (!(yield* fs.exists(path))) return
    if (yield* fs.exists(target)) {
      if ((yield* fs.stat(path)).size !== BigInt(0)) {
        return yield* new JournalIOError({ path, description: `${target} exists too: move one of them away and run again` })
      }
      return yield* fs.remove(path)
    }
    yield* fs.rename(path, target)
  }).pipe(Effect.catchTag("BadArgument", "SystemError", (e) => Effect.fail(ioError(path)(e))))

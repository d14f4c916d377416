import type { PlatformError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import { Chunk, Effect, Option, Stream } from "effect"

/** Bytes read at a time; a longer line grows its reader's buffer. */
const CHUNK = 256 * 1024

/**
 * The non-empty lines of a file (or of a byte range of it), streamed: split on `\n` (a `\r`
 * before it dropped), the last line kept without its newline, UTF-8 decoded, a leading BOM
 * skipped — what `Stream.decodeText` and `Stream.splitLines` make of the file.
 *
 * Memory: one buffer per reader, reused for every read, and each line decoded on its own.
 * Decoding whole reads made a 256 KiB string per read (V8's large-object space, freed only by
 * a full GC), beside a fresh 256 KiB buffer per read and 16 reads buffered ahead: reading a
 * shard's 65 MB row sidecar twice in a collection left ~150 MB of such garbage before a GC.
 */
export const lines = (path: string, range?: { readonly offset: number; readonly bytesToRead: number }) =>
  Stream.unwrapScoped(
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const file = yield* fs.open(path, { flag: "r" })
      if (range !== undefined && range.offset > 0) yield* file.seek(range.offset, "start")
      let left = range === undefined ? Infinity : range.bytesToRead
      let buffer = Buffer.allocUnsafe(CHUNK)
      let held = 0 // bytes of a line begun in an earlier read, at buffer[0]
      let first = true
      let ended = false
      const decoder = new TextDecoder("utf-8", { ignoreBOM: true })
      const take = (bytes: Buffer, out: Array<string>, last = false) => {
        let start = 0
        if (first && bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) start = 3
        first = false
        if (last) {
          // A last line cut inside a character (a torn tail, a range's end) loses that character, as a
          // streaming decoder that is never flushed does; a `\r` it then ends with is dropped, as at a newline.
          const text = new TextDecoder("utf-8", { ignoreBOM: true }).decode(bytes.subarray(start), { stream: true })
          const line = text.endsWith("\r") ? text.slice(0, -1) : text
          if (line.length > 0) out.push(line)
          return
        }
        const end = bytes.length > start && bytes[bytes.length - 1] === 13 ? bytes.length - 1 : bytes.length
        if (end <= start) return
        const text = decoder.decode(bytes.subarray(start, end))
        if (text.length > 0) out.push(text)
      }
      const pull: Effect.Effect<Chunk.Chunk<string>, Option.Option<PlatformError>> = Effect.suspend(() => {
        if (ended) return Effect.fail(Option.none())
        if (held === buffer.length) {
          // One line longer than the buffer: make room.
          const bigger = Buffer.allocUnsafe(buffer.length * 2)
          buffer.copy(bigger, 0, 0, held)
          buffer = bigger
        }
        const want = Math.min(buffer.length - held, left)
        const read = want === 0 ? Effect.succeed(0) : Effect.map(file.read(buffer.subarray(held, held + want)), Number)
        return Effect.flatMap(Effect.mapError(read, Option.some), (n) => {
          left -= n
          const filled = held + n
          const out: Array<string> = []
          if (n === 0) {
            // The end: a last line without its newline. A first line may still begin with a BOM.
            ended = true
            if (held > 0) take(buffer.subarray(0, held), out, true)
            held = 0
            return out.length === 0 ? Effect.fail(Option.none()) : Effect.succeed(Chunk.unsafeFromArray(out))
          }
          let start = 0
          for (let nl = buffer.indexOf(10, start); nl !== -1 && nl < filled; nl = buffer.indexOf(10, start)) {
            take(buffer.subarray(start, nl), out)
            start = nl + 1
          }
          buffer.copy(buffer, 0, start, filled)
          held = filled - start
          return Effect.succeed(Chunk.unsafeFromArray(out))
        })
      })
      return Stream.repeatEffectChunkOption(pull)
    })
  )

/**
 * A copy of `s` that holds no larger string alive. A substring of 13 characters or more is a
 * slice of its parent in V8: a custom_id read off a sidecar line and kept in a set kept the
 * whole line alive (before lines were decoded one by one, the whole 256 KiB read), i.e. the
 * shard's entire sidecar text (~65 MB per 50,000 rows) for the length of a collection. A JSON
 * round trip makes a flat string of its own.
 */
export const ownString = (s: string): string => JSON.parse(JSON.stringify(s)) as string

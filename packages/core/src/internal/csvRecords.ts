/**
 * Streams CSV records out of a byte stream with csv-parse, chunk by chunk, with the line each
 * record starts on. Malformed records become `onError` calls in file order instead of errors
 * that end the stream.
 */
import { Parser } from "csv-parse"
import { Chunk, Effect, Stream } from "effect"

export interface CsvParseOptions {
  readonly delimiter?: string
}

/** Turns a record (fields as strings) into an output item, or drops it with `undefined`. */
export type OnRecord<T> = (fields: Array<string>, line: number) => T | undefined
/** Turns a malformed record into an output item, or drops it with `undefined`. */
export type OnMalformed<T> = (message: string, line: number) => T | undefined

/**
 * Counts newlines in the bytes seen so far, up to a given offset. csv-parse reports where a
 * record ends in bytes; its own line counter counts a CRLF inside a quoted field twice, so
 * lines are derived from the bytes instead.
 */
class NewlineCounter {
  private readonly chunks: Array<Buffer> = []
  /** Absolute offset of chunks[0]. */
  private base = 0
  /** Absolute offset scanned so far. */
  private pos = 0
  private count = 0
  /** Newlines in every byte added. */
  private total = 0

  add(buf: Buffer): void {
    this.chunks.push(buf)
    for (let i = buf.indexOf(10); i !== -1; i = buf.indexOf(10, i + 1)) this.total++
  }

  /** Lines of the bytes added so far. */
  lines(): number {
    return this.total + 1
  }

  byteAt(offset: number): number | undefined {
    let start = this.base
    for (const buf of this.chunks) {
      if (offset < start + buf.length) return offset >= start ? buf[offset - start] : undefined
      start += buf.length
    }
    return undefined
  }

  /**
   * The line a record starting at `offset` begins on: past the empty lines csv-parse skips
   * (LF or CRLF ones, as the file's records end) and a byte order mark at the very start.
   * Offsets must not decrease between calls.
   */
  lineOfRecordAt(offset: number, crlf: boolean): number {
    let line = this.before(offset) + 1
    let at = offset
    for (;;) {
      const b = this.byteAt(at)
      if (b === 10 && !crlf) {
        line++
        at++
      } else if (b === 13 && crlf && this.byteAt(at + 1) === 10) {
        line++
        at += 2
      } else if (b !== undefined && at < 3 && b === [0xef, 0xbb, 0xbf][at]) {
        at++
      } else {
        return line
      }
    }
  }

  /** Newlines in bytes [0, offset). Offsets must not decrease between calls. */
  before(offset: number): number {
    while (this.pos < offset && this.chunks.length > 0) {
      const buf = this.chunks[0]!
      const stop = Math.min(buf.length, offset - this.base)
      let i = buf.indexOf(10, this.pos - this.base)
      while (i !== -1 && i < stop) {
        this.count++
        i = buf.indexOf(10, i + 1)
      }
      this.pos = this.base + stop
      if (stop < buf.length) break
      this.base += buf.length
      this.chunks.shift()
    }
    return this.count
  }
}

const newlinesIn = (fields: ReadonlyArray<string>): number => {
  let n = 0
  for (const f of fields) {
    let i = f.indexOf("\n")
    while (i !== -1) {
      n++
      i = f.indexOf("\n", i + 1)
    }
  }
  return n
}

const toBuffer = (u: Uint8Array): Buffer =>
  Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength)

/**
 * Parses `bytes` as CSV. Column handling is the caller's (`columns: false` here), so a header
 * row arrives as an ordinary record and a wrong field count is the caller's to report.
 * `fail` builds the stream's error for the rare failures csv-parse cannot skip.
 */
export const csvRecords = <T, E, R, E2>(
  bytes: Stream.Stream<Uint8Array, E, R>,
  options: CsvParseOptions,
  onRecord: OnRecord<T>,
  onMalformed: OnMalformed<T>,
  fail: (message: string) => E2
): Stream.Stream<T, E | E2, R> =>
  Stream.unwrapScoped(
    Effect.map(
      Effect.acquireRelease(
        Effect.sync(() => {
          const counter = new NewlineCounter()
          let out: Array<T> = []
          // csv-parse's line number minus ours, as of the last good record: corrects its
          // line numbers for malformed records, which have no byte offset we can trust.
          let skew = 0
          // Where the record after the last good one starts (bytes), and the line of the last
          // malformed record since then, if any.
          let nextStart = 0
          let skippedLine: number | undefined
          // Whether records end in CRLF (csv-parse takes the first record's ending for all).
          let crlf: boolean | undefined
          const parser = new Parser({
            ...(options.delimiter !== undefined ? { delimiter: options.delimiter } : {}),
            bom: true,
            skip_empty_lines: true,
            relax_column_count: true,
            skip_records_with_error: true,
            // Records are taken here, synchronously, with their position; returning null
            // keeps them out of the Readable side, so no stream buffering is involved.
            on_record: (fields, info) => {
              crlf ??= counter.byteAt(info.bytes - 2) === 13 && counter.byteAt(info.bytes - 1) === 10
              const end = counter.before(info.bytes - 1) + 1
              skew = info.lines - end
              nextStart = info.bytes
              skippedLine = undefined
              const item = onRecord(fields, end - newlinesIn(fields))
              if (item !== undefined) out.push(item)
              return null
            },
            on_skip: (err) => {
              // The first malformed record after a good one starts where that one ended (csv-parse
              // reports the line it gave up on: for an unclosed quote, the end of the file). A
              // later one starts after it, at the line csv-parse names, within the file.
              const reported = typeof err?.lines === "number" ? err.lines - skew : 0
              const line = skippedLine === undefined
                ? counter.lineOfRecordAt(nextStart, crlf ?? false)
                : Math.min(Math.max(skippedLine + 1, reported), counter.lines())
              skippedLine = line
              const item = onMalformed(err?.message ?? "malformed record", Math.max(1, line))
              if (item !== undefined) out.push(item)
              return undefined
            }
          })
          // Errors are read from `parser.errored` after each call; this only stops Node from
          // treating an emitted 'error' as unhandled.
          parser.on("error", () => {})
          const take = (): Chunk.Chunk<T> => {
            const items = out
            out = []
            return Chunk.unsafeFromArray(items)
          }
          const feed = (chunk: Chunk.Chunk<Uint8Array>): Effect.Effect<Chunk.Chunk<T>, E2> =>
            Effect.suspend(() => {
              for (const u of chunk) {
                const buf = toBuffer(u)
                counter.add(buf)
                parser.write(buf)
                if (parser.errored) return Effect.fail(fail(parser.errored.message))
              }
              return Effect.succeed(take())
            })
          const end: Effect.Effect<Chunk.Chunk<T>, E2> = Effect.async<Chunk.Chunk<T>, E2>((resume) => {
            if (parser.errored) return resume(Effect.fail(fail(parser.errored.message)))
            parser.once("error", (e) => resume(Effect.fail(fail(e.message))))
            parser.once("finish", () => resume(Effect.sync(take)))
            parser.end()
          })
          return { parser, feed, end }
        }),
        ({ parser }) => Effect.sync(() => parser.destroy())
      ),
      ({ end, feed }) =>
        bytes.pipe(
          Stream.mapChunksEffect(feed),
          Stream.concat(Stream.flattenChunks(Stream.fromEffect(end)))
        )
    )
  )

/**
 * Result files and streams split into lines, with a cap on a line's length. A provider's
 * answer is untrusted input: a body without a newline would otherwise grow one string until
 * V8 gives up ("Invalid string length", or an internal error) and the run with it.
 *
 * Lines are split on bytes (`\n`, a trailing `\r` dropped) and decoded one by one. A line
 * over the cap is not kept: only its first `headBytes` (to read the custom_id from) and its
 * length, so memory stays within the cap whatever the provider sends.
 *
 * The default cap, 64 MiB, is far above any legal answer line: the largest outputs the
 * providers allow for one request are about 128K tokens (OpenAI), 300K (Anthropic's batch
 * beta) and 64K (Gemini), a few MB of JSON even with every character escaped; what grows past
 * that is a provider fault or an attack (`logprobs` with 20 alternatives per token is the one
 * legal way near it: raise the cap for that).
 */
import type { BatchResult } from "@sluice/core"
import { Chunk, Effect, Either, Stream } from "effect"
import { formatBytes } from "./http.js"

/** Default longest result line, in bytes. */
export const defaultMaxLineBytes = 64 * 1024 * 1024

/** What is kept of a line over the cap: enough to find its custom_id. */
export const headBytes = 64 * 1024

export type ResultLine =
  | { readonly _tag: "Line"; readonly text: string }
  | {
    readonly _tag: "Oversized"
    /** The line's length in bytes (without its newline). */
    readonly bytes: number
    /** Its first `headBytes` bytes, decoded. */
    readonly head: string
  }

const decoder = new TextDecoder()

/** The byte splitter behind `splitLines`: feed it chunks, then `end` it. */
export class LineSplitter {
  private parts: Array<Uint8Array> = []
  private size = 0
  /** Set while skipping the rest of a line over the cap. */
  private over: { head: Uint8Array; bytes: number } | undefined = undefined

  constructor(readonly maxLineBytes: number) {}

  push(chunk: Uint8Array): Array<ResultLine> {
    const out: Array<ResultLine> = []
    let start = 0
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
      this.append(chunk.subarray(start, nl))
      out.push(this.finish())
      start = nl + 1
    }
    if (start < chunk.length) this.append(chunk.subarray(start))
    return out
  }

  /** The last line, when the stream does not end with a newline. */
  end(): Array<ResultLine> {
    return this.size > 0 || this.over !== undefined ? [this.finish()] : []
  }

  private append(part: Uint8Array): void {
    if (this.over !== undefined) {
      this.over.bytes += part.length
      return
    }
    if (this.size + part.length <= this.maxLineBytes) {
      this.parts.push(part)
      this.size += part.length
      return
    }
    // Over the cap: keep the head, drop the rest of the line as it arrives.
    const head = Buffer.concat([...this.parts, part]).subarray(0, Math.min(headBytes, this.maxLineBytes))
    this.over = { head: Uint8Array.from(head), bytes: this.size + part.length }
    this.parts = []
    this.size = 0
  }

  private finish(): ResultLine {
    const over = this.over
    if (over !== undefined) {
      this.over = undefined
      return { _tag: "Oversized", bytes: over.bytes, head: decoder.decode(over.head) }
    }
    const bytes = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts)
    this.parts = []
    this.size = 0
    const end = bytes.length > 0 && bytes[bytes.length - 1] === 13 ? bytes.length - 1 : bytes.length
    return { _tag: "Line", text: decoder.decode(bytes.subarray(0, end)) }
  }
}

/**
 * `result` with the text its `raw` was parsed from, when `raw` is the parsed line itself (the
 * codecs keep a result line whole as `raw`): the runner writes it as received (see
 * `Succeeded.rawText`).
 */
export const withRawText = (result: BatchResult, parsed: unknown, text: string): BatchResult =>
  result.raw === parsed ? { ...result, rawText: text } : result

/** Splits a byte stream into lines of at most `maxLineBytes` bytes (see `ResultLine`). */
export const splitLines = (maxLineBytes: number) => <E, R>(bytes: Stream.Stream<Uint8Array, E, R>): Stream.Stream<ResultLine, E, R> =>
  Stream.suspend(() => {
    const splitter = new LineSplitter(maxLineBytes)
    return bytes.pipe(
      Stream.mapConcat((chunk) => splitter.push(chunk)),
      Stream.concat(Stream.suspend(() => Stream.fromIterable(splitter.end())))
    )
  })

/**
 * The value of a top-level string member `field` (`custom_id`, Gemini's `key`) at the start
 * of a JSON object, read without parsing the whole: a scan that tracks strings and depth, so
 * a `"custom_id"` inside an answer's text (escaped) or in a nested object never counts.
 * `undefined` when it is not in `head`.
 */
export const topLevelString = (head: string, field: string): string | undefined => {
  let depth = 0
  let i = 0
  const n = head.length
  /** The end (exclusive) of the string literal starting at `at` (a quote), or -1. */
  const stringEnd = (at: number): number => {
    for (let j = at + 1; j < n; j++) {
      const c = head.charCodeAt(j)
      if (c === 92) j++ // backslash: skip the escaped character
      else if (c === 34) return j + 1
    }
    return -1
  }
  while (i < n) {
    const c = head.charCodeAt(i)
    if (c === 34) {
      const end = stringEnd(i)
      if (end === -1) return undefined
      if (depth === 1) {
        // A key at the top level when a colon follows.
        let k = end
        while (k < n && /\s/.test(head[k]!)) k++
        if (head[k] === ":") {
          let key: unknown
          try {
            key = JSON.parse(head.slice(i, end))
          } catch {
            return undefined
          }
          let v = k + 1
          while (v < n && /\s/.test(head[v]!)) v++
          if (key === field) {
            if (head[v] !== "\"") return undefined
            const valueEnd = stringEnd(v)
            if (valueEnd === -1) return undefined
            try {
              const value: unknown = JSON.parse(head.slice(v, valueEnd))
              return typeof value === "string" && value !== "" ? value : undefined
            } catch {
              return undefined
            }
          }
          i = v
          continue
        }
      }
      i = end
      continue
    }
    if (c === 123 || c === 91) depth++
    else if (c === 125 || c === 93) {
      depth--
      if (depth <= 0) return undefined
    }
    i++
  }
  return undefined
}

/**
 * A result line over the cap as a row failure, when its custom_id can be read from its start
 * (`idField` is the member that holds it); `undefined` when it cannot (a garbage line).
 */
export const oversizedResult = (
  line: Extract<ResultLine, { _tag: "Oversized" }>,
  idField: string,
  maxLineBytes: number
): BatchResult | undefined => {
  const customId = topLevelString(line.head, idField)
  if (customId === undefined) return undefined
  return {
    _tag: "Failed",
    customId,
    failure: "permanent",
    code: "result_too_large",
    message: `the result line is ${line.bytes} bytes, over the ${formatBytes(maxLineBytes)} cap on a result line ` +
      "(maxResultLineBytes, SLUICE_MAX_RESULT_LINE_BYTES); it was not read",
    status: null,
    raw: null
  }
}

/**
 * A result file or stream as classified results. A line that cannot be attributed to a
 * request (not JSON, no custom_id, or over the cap with no custom_id at its start) is logged
 * with its position and skipped, so one garbage line never costs the other results; the
 * runner finds that request *missing* by diffing against the shard, and reschedules it.
 */
export const classifyResultLines = (options: {
  /** Provider name, for the log. */
  readonly provider: string
  /** Where the lines come from, for the log: "file file-abc", "batch msgbatch_1". */
  readonly source: string
  /** The member that holds the custom_id: "custom_id", Gemini's "key". */
  readonly idField: string
  readonly maxLineBytes: number
  readonly parse: (line: string) => Either.Either<BatchResult, string>
}) =>
<E, R>(bytes: Stream.Stream<Uint8Array, E, R>): Stream.Stream<BatchResult, E, R> =>
  Stream.suspend(() => {
    let lineNo = 0
    const skipping = (reason: string) => `${options.provider}: skipping unusable result line ${lineNo} of ${options.source}: ${reason}`
    return bytes.pipe(
      splitLines(options.maxLineBytes),
      Stream.mapChunksEffect((lines) => {
        const out: Array<BatchResult> = []
        const warnings: Array<string> = []
        for (const line of lines) {
          lineNo++
          if (line._tag === "Oversized") {
            const failed = oversizedResult(line, options.idField, options.maxLineBytes)
            if (failed === undefined) {
              warnings.push(skipping(`${line.bytes} bytes, over the ${formatBytes(options.maxLineBytes)} cap, with no ${options.idField} at its start`))
            } else {
              out.push(failed)
              warnings.push(
                `${options.provider}: result line ${lineNo} of ${options.source} is ${line.bytes} bytes, over the ` +
                  `${formatBytes(options.maxLineBytes)} cap: ${failed.customId} fails (result_too_large)`
              )
            }
            continue
          }
          if (line.text.trim() === "") continue
          const parsed = options.parse(line.text)
          if (Either.isRight(parsed)) out.push(parsed.right)
          else warnings.push(skipping(parsed.left))
        }
        const chunk = Chunk.unsafeFromArray(out)
        return warnings.length === 0 ?
          Effect.succeed(chunk) :
          Effect.as(Effect.forEach(warnings, (w) => Effect.logWarning(w), { discard: true }), chunk)
      })
    )
  })

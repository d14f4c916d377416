/**
 * Property tests of the file sources: any bytes give rows, or `Invalid` items naming
 * `file:line` (`file:[index]` for a JSON array), or for CSV and JSON a `SourceError` saying
 * why the file cannot be read on — never a crash. JSON Lines accounts for every line (rows +
 * invalid = non-blank lines); CSV and JSON arrays written from any values read back as those
 * values, each at its own line or index, however the bytes are cut into chunks.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { Cause, Chunk, Effect, Exit, Schema, Stream } from "effect"
import fc from "fast-check"
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { anyBytes, anyString, checkAsync, check, prototypeKeys } from "../../../test/support/properties.js"
import { JsonArraySplitter } from "../src/internal/jsonArray.js"
import { LineSplitter } from "../src/internal/lines.js"
import * as Source from "../src/Source.js"
import type { SourceItem } from "../src/Source.js"

// Real files; in memory where the OS has a tmpfs.
const dir = mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "sluice-source-props-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
let files = 0
const file = (content: string | Uint8Array): string => {
  const path = join(dir, `f${++files}`)
  writeFileSync(path, content)
  return path
}

const read = <A>(source: Source.Source<A>) =>
  Effect.runPromiseExit(source.rows.pipe(Stream.runCollect, Effect.map(Chunk.toArray), Effect.provide(NodeFileSystem.layer)))

/** The items of a run that must not fail. */
const items = async <A>(source: Source.Source<A>): Promise<Array<SourceItem<A>>> => {
  const exit = await read(source)
  if (Exit.isFailure(exit)) throw new Error(`the source failed: ${Cause.pretty(exit.cause)}`)
  return exit.value
}

/** Items read before a typed failure (a SourceError), or all of them; a defect fails the test. */
const itemsOrSourceError = async <A>(source: Source.Source<A>): Promise<{ items: Array<SourceItem<A>>; error: string | undefined }> => {
  const collected: Array<SourceItem<A>> = []
  const exit = await Effect.runPromiseExit(
    source.rows.pipe(Stream.runForEach((item) => Effect.sync(() => collected.push(item))), Effect.provide(NodeFileSystem.layer))
  )
  if (Exit.isSuccess(exit)) return { items: collected, error: undefined }
  const failure = Cause.failureOption(exit.cause)
  if (failure._tag === "None") throw new Error(`a defect, not a SourceError: ${Cause.pretty(exit.cause)}`)
  expect(failure.value._tag).toBe("SourceError")
  return { items: collected, error: failure.value.message }
}

/** Splits bytes at the given cut points, as a stream may deliver them. */
const chunked = (bytes: Uint8Array, cuts: ReadonlyArray<number>): Array<Uint8Array> => {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)
  const out: Array<Uint8Array> = []
  let start = 0
  for (const p of points) {
    out.push(bytes.subarray(start, p))
    start = p
  }
  out.push(bytes.subarray(start))
  return out
}

// -----------------------------------------------------------------------------------------
// JSON Lines
// -----------------------------------------------------------------------------------------

/** What a reader should see: the text's lines, numbered from 1, a CR before the newline dropped. */
const linesOf = (bytes: Uint8Array): Array<string> => {
  const lines = new TextDecoder().decode(bytes).split("\n")
  // A final newline ends the last line; it does not start another.
  if (lines[lines.length - 1] === "") lines.pop()
  return lines.map((l) => (l.endsWith("\r") ? l.slice(0, -1) : l))
}

const blank = (line: string) => /^[ \t\r\n\uFEFF]*$/.test(line)

const parsed = (line: string): { ok: true; value: unknown } | { ok: false } => {
  try {
    return { ok: true, value: JSON.parse(line) }
  } catch {
    return { ok: false }
  }
}

/** JSON Lines files: any bytes, and lines of JSON (with some broken) joined by LF or CRLF. */
const jsonlBytes = fc.oneof(
  anyBytes,
  fc.tuple(
    fc.array(fc.oneof(fc.jsonValue().map((v) => JSON.stringify(v)), fc.string(), fc.constantFrom("", "  ", "\uFEFF")), { maxLength: 12 }),
    fc.constantFrom("\n", "\r\n"),
    fc.boolean(),
    fc.boolean()
  ).map(([lines, eol, bom, last]) => new TextEncoder().encode((bom ? "\uFEFF" : "") + lines.join(eol) + (last ? eol : "")))
)

describe("Source.jsonl properties", () => {
  it("any bytes: one item per non-blank line, at its line; a row exactly when the line is JSON", async () => {
    await checkAsync(
      fc.asyncProperty(jsonlBytes, async (bytes) => {
        const path = file(bytes)
        const got = await items(Source.jsonl(path, Schema.Unknown))
        const expected = linesOf(bytes).flatMap((line, i) => {
          if (blank(line)) return []
          const json = parsed(line)
          return [json.ok ? { row: json.value, at: `${path}:${i + 1}` } : { invalid: `${path}:${i + 1}` }]
        })
        expect(got.map((item) => (item._tag === "Row" ? { row: item.row, at: item.location } : { invalid: item.location }))).toEqual(expected)
      }),
      200
    )
  })

  it("the line splitter gives the same lines however the bytes are cut into chunks", () => {
    check(
      fc.property(jsonlBytes, fc.array(fc.nat(), { maxLength: 8 }), (bytes, cuts) => {
        const whole: Array<[string, number]> = []
        const whole1 = new LineSplitter()
        whole1.push(bytes, (l, n) => whole.push([l, n]))
        whole1.end((l, n) => whole.push([l, n]))
        const parts: Array<[string, number]> = []
        const splitter = new LineSplitter()
        for (const chunk of chunked(bytes, cuts)) splitter.push(chunk, (l, n) => parts.push([l, n]))
        splitter.end((l, n) => parts.push([l, n]))
        expect(parts).toEqual(whole)
        expect(whole.map(([l]) => l)).toEqual(linesOf(bytes).map((l) => l))
      }),
      300
    )
  })
})

// -----------------------------------------------------------------------------------------
// CSV
// -----------------------------------------------------------------------------------------

/** Field text: anything, with the characters CSV must quote (comma, quote, CR, LF) common. */
const fieldText = fc.oneof(
  fc.string({ maxLength: 8 }),
  fc.string({ unit: fc.constantFrom(",", "\"", "\n", "\r\n", "a", " ", "é"), maxLength: 6 }),
  anyString.filter((s) => s.length <= 8)
)

/** A field as a careful writer writes it: quoted when it must be (and sometimes when it need not). */
const csvField = (value: string, quoteAnyway: boolean): string =>
  quoteAnyway || /[",\r\n]/.test(value) || value === "" ? `"${value.replace(/"/g, "\"\"")}"` : value

const header = fc.uniqueArray(fc.oneof(fc.stringMatching(/^[a-z][a-z0-9_]{0,7}$/), fc.constantFrom(...prototypeKeys)), { minLength: 1, maxLength: 4 })

/** A CSV file written from a header and records of any text, some with a wrong field count. */
const csvFile = header.chain((names) =>
  fc.record({
    names: fc.constant(names),
    records: fc.array(
      fc.oneof(
        { weight: 5, arbitrary: fc.array(fieldText, { minLength: names.length, maxLength: names.length }) },
        { weight: 1, arbitrary: fc.array(fieldText, { minLength: 1, maxLength: names.length + 2 }) }
      ),
      { maxLength: 8 }
    ),
    quote: fc.boolean(),
    eol: fc.constantFrom("\n", "\r\n"),
    bom: fc.boolean(),
    /** A last record whose quote never closes: it runs to the end of the file. */
    unclosed: fc.option(fieldText.map((t) => `"${t.replace(/"/g, "")}`), { nil: undefined })
  })
)

describe("Source.csv properties", () => {
  it("any bytes: rows and Invalid items at lines of the file, after the rows before them, or a SourceError; never a crash", async () => {
    await checkAsync(
      fc.asyncProperty(fc.oneof(anyBytes, csvFile.map((f) => new TextEncoder().encode(f.names.join(",") + "\n" + f.records.map((r) => r.join(",")).join("\n")))), async (bytes) => {
        const path = file(bytes)
        const { items } = await itemsOrSourceError(Source.csv(path, Schema.Unknown))
        const lineCount = new TextDecoder().decode(bytes).split("\n").length
        // Items follow the file, each at one of its lines. (A malformed record right after
        // another is placed by csv-parse's own count, which a CRLF in quotes can put late.)
        let previous = 0
        for (const item of items) {
          const m = /:(\d+)$/.exec(item.location)
          expect(item.location.startsWith(`${path}:`) && m !== null).toBe(true)
          const line = Number(m![1])
          expect(line >= 1 && line <= lineCount, `${item.location} of ${lineCount} lines`).toBe(true)
          expect(line >= previous).toBe(true)
          previous = item._tag === "Row" ? line : previous
        }
      }),
      200
    )
  })

  it("a file written from any records reads back as those records, each at the line it starts on; a wrong field count or an unclosed quote is Invalid there", async () => {
    await checkAsync(
      fc.asyncProperty(csvFile, async ({ bom, eol, names, quote, records, unclosed }) => {
        let text = (bom ? "\uFEFF" : "") + names.map((n) => csvField(n, quote)).join(",") + eol
        const expected: Array<unknown> = []
        for (const fields of records) {
          const line = text.split("\n").length
          const at = `:${line}`
          text += fields.map((f) => csvField(f, quote)).join(",") + eol
          if (fields.length === names.length) {
            // A file holds UTF-8, where a lone surrogate is U+FFFD.
            expected.push({ row: Object.fromEntries(names.map((n, i) => [n, Buffer.from(fields[i]!).toString()])), at })
          } else {
            expected.push({ invalid: at })
          }
        }
        if (unclosed !== undefined) {
          expected.push({ invalid: `:${text.split("\n").length}` })
          text += `${unclosed},x${eol}y`
        }
        const path = file(text)
        const got = await items(Source.csv(path, Schema.Unknown))
        expect(got.map((item) =>
          item._tag === "Row"
            ? { row: { ...(item.row as object) }, at: item.location.slice(path.length) }
            : { invalid: item.location.slice(path.length) }
        )).toEqual(expected)
      }),
      200
    )
  })
})

// -----------------------------------------------------------------------------------------
// JSON arrays
// -----------------------------------------------------------------------------------------

describe("Source.json properties", () => {
  it("any bytes: items at [index] in order, and a SourceError only when the file is no complete array; never a crash", async () => {
    await checkAsync(
      fc.asyncProperty(fc.oneof(anyBytes, fc.jsonValue().map((v) => new TextEncoder().encode(JSON.stringify(v)))), async (bytes) => {
        const path = file(bytes)
        const { error, items } = await itemsOrSourceError(Source.json(path, Schema.Unknown))
        items.forEach((item, i) => expect(item.location).toBe(`${path}:[${i}]`))
        const whole = parsed(new TextDecoder().decode(bytes).replace(/^\uFEFF/, ""))
        // A well-formed array is never refused, and yields its elements.
        if (whole.ok && Array.isArray(whole.value)) {
          expect(error).toBeUndefined()
          expect(items.map((item) => (item._tag === "Row" ? item.row : undefined))).toEqual(whole.value)
        }
      }),
      200
    )
  })

  it("an array of any values, however laid out and however chunked, splits into its elements", () => {
    check(
      fc.property(
        fc.array(fc.jsonValue(), { maxLength: 8 }),
        fc.constantFrom(undefined, 0, 2, "\t"),
        fc.array(fc.nat(), { maxLength: 8 }),
        (values, indent, cuts) => {
          const bytes = new TextEncoder().encode(JSON.stringify(values, null, indent))
          const elements: Array<[string, number]> = []
          const splitter = new JsonArraySplitter()
          for (const chunk of chunked(bytes, cuts)) expect(splitter.push(chunk, (t, i) => elements.push([t, i]))).toBeUndefined()
          expect(splitter.end()).toBeUndefined()
          expect(elements.map(([, i]) => i)).toEqual(values.map((_, i) => i))
          expect(elements.map(([t]) => JSON.parse(t))).toEqual(JSON.parse(JSON.stringify(values)))
        }
      ),
      300
    )
  })
})

import * as NodeContext from "@effect/platform-node/NodeContext"
import * as FileSystem from "@effect/platform/FileSystem"
import { Chunk, Effect, Stream } from "effect"
import fc from "fast-check"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { lines } from "../src/internal/lines.js"

const dir = mkdtempSync(join(tmpdir(), "sluice-lines-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
let files = 0

const run = <A>(stream: Stream.Stream<A, unknown, FileSystem.FileSystem>) =>
  Effect.runPromise(Stream.runCollect(stream).pipe(Effect.map(Chunk.toArray), Effect.provide(NodeContext.layer)))

/** What the runner read files with before: Effect's text decoder and line splitter over the file's stream. */
const reference = (path: string, range?: { offset: number; bytesToRead: number }) =>
  Stream.unwrap(
    Effect.map(FileSystem.FileSystem, (fs) =>
      fs.stream(path, { chunkSize: 997, ...(range === undefined ? {} : range) }).pipe(
        Stream.decodeText(),
        Stream.splitLines,
        Stream.filter((l) => l.length > 0)
      )
    )
  )

const write = (bytes: Uint8Array) => {
  const path = join(dir, `f${++files}`)
  writeFileSync(path, bytes)
  return path
}

/** Bytes made of line breaks, carriage returns, ASCII, multi-byte characters and a BOM. */
const pieces = fc.array(
  fc.oneof(
    fc.constant("\n"),
    fc.constant("\r"),
    fc.constant("\r\n"),
    fc.constant("\uFEFF"),
    fc.constant("é€😀"),
    fc.string({ maxLength: 40 }),
    fc.string({ maxLength: 40 }),
    fc.string({ maxLength: 40 }),
    fc.constant("x".repeat(300_000)) // longer than a read
  ),
  { maxLength: 30 }
)

describe("lines", () => {
  it("reads what Effect's decodeText and splitLines read, for any mix of line breaks and characters", async () => {
    await fc.assert(
      fc.asyncProperty(pieces, async (parts) => {
        const path = write(Buffer.from(parts.join("")))
        expect(await run(lines(path))).toEqual(await run(reference(path)))
      }),
      { numRuns: 80 }
    )
  })

  it("reads a byte range as Effect's file stream does", async () => {
    await fc.assert(
      fc.asyncProperty(pieces, fc.nat(), fc.nat(), async (parts, a, b) => {
        const bytes = Buffer.from(parts.join(""))
        const offset = bytes.length === 0 ? 0 : a % bytes.length
        const range = { offset, bytesToRead: bytes.length - offset === 0 ? 0 : b % (bytes.length - offset + 1) }
        const path = write(bytes)
        expect(await run(lines(path, range))).toEqual(await run(reference(path, range)))
      }),
      { numRuns: 80 }
    )
  })

  it("a range ending in a \\r and part of a character: the character is lost and the \\r dropped, as Effect's reading does", async () => {
    for (const [text, bytesToRead] of [["\r\uFEFF", 2], ["a\r\uFEFF", 3], ["a\ré", 3], ["a\r\r\u20AC", 4]] as const) {
      const path = write(Buffer.from(text))
      const range = { offset: 0, bytesToRead }
      expect(await run(lines(path, range)), JSON.stringify(text)).toEqual(await run(reference(path, range)))
    }
  })

  it("skips a leading BOM only, and keeps a last line without its newline", async () => {
    const path = write(Buffer.from("\uFEFF{\"a\":1}\r\n\n\uFEFFb\r\nlast"))
    expect(await run(lines(path))).toEqual(["{\"a\":1}", "\uFEFFb", "last"])
  })

  it("fails on a missing file as Effect's file stream does", async () => {
    const missing = join(dir, "missing.jsonl")
    const error = await Effect.runPromise(Stream.runDrain(lines(missing)).pipe(Effect.flip, Effect.provide(NodeContext.layer)))
    const expected = await Effect.runPromise(Stream.runDrain(reference(missing)).pipe(Effect.flip, Effect.provide(NodeContext.layer)))
    expect(error).toMatchObject({ _tag: "SystemError", reason: "NotFound" })
    expect(error.message).toBe((expected as Error).message)
  })
})

/**
 * LineFile encodes lines into a byte buffer as they come: the file must hold exactly the lines
 * appended, in order, UTF-8 encoded as `TextEncoder` would (lone surrogates as U+FFFD), whatever
 * the mix of short, multi-byte and buffer-sized lines and of flushes; `size` and `sync` must
 * agree with the file; `appendFile` copies another file's bytes after the buffered lines.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Effect } from "effect"
import fc from "fast-check"
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import * as LineFile from "../src/internal/LineFile.js"

const dir = mkdtempSync(join(tmpdir(), "sluice-linefile-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
let files = 0

const run = <A>(effect: Effect.Effect<A, unknown, any>) =>
  Effect.runPromise(Effect.scoped(effect).pipe(Effect.provide(NodeContext.layer)) as Effect.Effect<A>)

const text = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "grapheme", maxLength: 40 }),
  // Lone surrogates: written as U+FFFD, as the encoder before wrote them.
  fc.constantFrom("\ud800", "a\udc00b", "\ud83d\ude00"),
  // Longer than a megabyte buffer, and longer than the exactly measured limit.
  fc.integer({ min: 60_000, max: 1_300_000 }).map((n) => "é".repeat(n))
)

describe("LineFile", () => {
  it("writes exactly the lines appended, through flushes, with size and sync agreeing with the file", async () => {
    const encoder = new TextEncoder()
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(text, fc.boolean()), { maxLength: 30 }),
        fc.string({ maxLength: 20 }),
        async (appends, kept) => {
          const path = join(dir, `f${++files}`)
          writeFileSync(path, `${kept}garbage past the committed length`)
          const keep = Buffer.byteLength(kept)
          const { size, synced } = await run(
            Effect.gen(function* () {
              const file = yield* LineFile.open(path, keep)
              for (const [line, flush] of appends) {
                const full = file.append(line)
                if (full || flush) yield* file.flush
              }
              const size = file.size()
              return { size, synced: yield* file.sync }
            })
          )
          const expected = Buffer.concat([Buffer.from(kept), ...appends.map(([line]) => encoder.encode(`${line}\n`))])
          const got = readFileSync(path)
          expect(got.equals(expected)).toBe(true)
          expect(size).toBe(expected.length)
          expect(synced).toBe(expected.length)
        }
      ),
      { numRuns: 40 }
    )
  })

  it("appendFile copies another file's bytes after the lines buffered before it", async () => {
    const path = join(dir, `f${++files}`)
    const other = join(dir, `f${++files}`)
    const body = Buffer.from(Array.from({ length: 40_000 }, (_, i) => `{"n":${i},"t":"ü"}\n`).join(""))
    writeFileSync(other, body)
    const synced = await run(
      Effect.gen(function* () {
        const file = yield* LineFile.open(path, 0)
        file.append("before")
        yield* file.appendFile(other)
        file.append("after")
        return yield* file.sync
      })
    )
    const expected = Buffer.concat([Buffer.from("before\n"), body, Buffer.from("after\n")])
    expect(readFileSync(path).equals(expected)).toBe(true)
    expect(synced).toBe(statSync(path).size)
  })
})

import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { parse } from "csv-parse/sync"
import { Effect } from "effect"
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "vitest"
import * as Sink from "../src/Sink.js"
import type { SinkCheckpoint, SinkRecord } from "../src/Sink.js"
import { writeAccepted } from "./support/sinks.js"

const dir = mkdtempSync(join(tmpdir(), "sluice-sink-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

interface Review {
  readonly id: string
  readonly text: string
}
interface Label {
  readonly sentiment: string
  readonly topics: ReadonlyArray<string>
}

const rec = (i: number): SinkRecord<Review, Label> => ({
  key: `r${i}`,
  customId: `label-r${i}-abc`,
  input: { id: `r${i}`, text: `text, "quoted"\nline ${i}` },
  output: { sentiment: i % 2 === 0 ? "positive" : "negative", topics: ["a", `t${i}`] }
})

/** Opens a sink, runs `f` with its writer, closes the file handle. */
const withWriter = <R, A, E>(
  sink: Sink.Sink<R>,
  resume: SinkCheckpoint | undefined,
  f: (w: Sink.SinkWriter<R>) => Effect.Effect<A, E>
) => Effect.scoped(Effect.flatMap(sink.open(resume), f)).pipe(Effect.provide(NodeFileSystem.layer))

const jsonLines = (path: string) =>
  readFileSync(path, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l))

describe("Sink.jsonl", () => {
  it.effect("writes one line per record and creates parent directories", () =>
    Effect.gen(function*() {
      const path = join(dir, "nested", "deeper", "out.jsonl")
      const sink: Sink.Sink<SinkRecord<Review, Label>> = Sink.jsonl(path)
      const cp = yield* withWriter(sink, undefined, (w) => Effect.zipRight(w.write([rec(1), rec(2)]), w.commit))
      expect(cp.offset).toBe(statSync(path).size)
      expect(jsonLines(path)).toEqual([
        { key: "r1", custom_id: "label-r1-abc", input: rec(1).input, output: rec(1).output },
        { key: "r2", custom_id: "label-r2-abc", input: rec(2).input, output: rec(2).output }
      ])
    }))

  it.effect("a resumed sink drops what was written after the checkpoint", () =>
    Effect.gen(function*() {
      const path = join(dir, "resume.jsonl")
      const sink = Sink.jsonl<Review, Label>(path)
      // Session 1: commit two, then write a third that is never committed (crash).
      const cp1 = yield* withWriter(sink, undefined, (w) =>
        Effect.gen(function*() {
          yield* w.write([rec(1), rec(2)])
          const cp = yield* w.commit
          yield* w.write([rec(3)])
          return cp
        }))
      // The uncommitted record may or may not have reached the disk; simulate a torn tail.
      appendFileSync(path, `{"key":"r3","custom_id":"lab`)
      expect(statSync(path).size).toBeGreaterThan(cp1.offset)

      // Session 2: resume from the checkpoint, write the third again and a fourth.
      const cp2 = yield* withWriter(sink, cp1, (w) =>
        Effect.gen(function*() {
          yield* w.write([rec(3)])
          yield* w.write([rec(4)])
          return yield* w.commit
        }))
      expect(jsonLines(path).map((l) => l.key)).toEqual(["r1", "r2", "r3", "r4"])
      expect(cp2.offset).toBe(statSync(path).size)

      // Session 3: resume at the end with nothing to add: the file is unchanged.
      const cp3 = yield* withWriter(sink, cp2, (w) => w.commit)
      expect(cp3).toEqual(cp2)
      expect(jsonLines(path)).toHaveLength(4)
    }))

  it.effect("a fresh sink leaves a file it finds as it was until its first commit, then replaces it", () =>
    Effect.gen(function*() {
      const path = join(dir, "fresh.jsonl")
      const old = "an earlier run's output\n".repeat(3)
      writeFileSync(path, old)
      // Opened and closed without a commit (a run that stopped at bad input): untouched.
      yield* withWriter(Sink.jsonl(path), undefined, () => Effect.void)
      expect(readFileSync(path, "utf8")).toBe(old)
      const cp = yield* withWriter(Sink.jsonl(path), undefined, (w) => Effect.zipRight(w.write([rec(1)]), w.commit))
      expect(jsonLines(path).map((l) => l.key)).toEqual(["r1"])
      expect(cp.offset).toBe(statSync(path).size)
      // A first commit of nothing empties it too: the file is what the checkpoint says.
      writeFileSync(path, old)
      expect(yield* withWriter(Sink.jsonl(path), undefined, (w) => w.commit)).toEqual({ offset: 0 })
      expect(statSync(path).size).toBe(0)
      // Writes large enough to flush before the commit replace it as well.
      writeFileSync(path, old.repeat(50_000))
      const records = Array.from({ length: 2000 }, (_, i) => ({ ...rec(i), input: { id: `r${i}`, text: "é".repeat(1000) } }))
      const big = yield* withWriter(Sink.jsonl(path), undefined, (w) => Effect.zipRight(w.write(records), w.commit))
      expect(big.offset).toBe(statSync(path).size)
      expect(jsonLines(path).map((l) => l.key)).toEqual(records.map((r) => r.key))
    }))

  it.effect("a fresh CSV sink writes its header over a file it replaces, not after it", () =>
    Effect.gen(function*() {
      const path = join(dir, "fresh.csv")
      writeFileSync(path, "a,b\n1,2\n")
      yield* withWriter(Sink.csv(path), undefined, () => Effect.void)
      expect(readFileSync(path, "utf8")).toBe("a,b\n1,2\n")
      yield* withWriter(Sink.csv(path), undefined, (w) => Effect.zipRight(w.write([rec(1)]), w.commit))
      const rows = parse(readFileSync(path, "utf8"), { columns: true }) as Array<Record<string, string>>
      expect(rows.map((r) => r["key"])).toEqual(["r1"])
    }))

  it.effect("fails when the file is shorter than the checkpoint or missing", () =>
    Effect.gen(function*() {
      const path = join(dir, "tampered.jsonl")
      const cp = yield* withWriter(Sink.jsonl(path), undefined, (w) => Effect.zipRight(w.write([rec(1), rec(2)]), w.commit))
      truncateSync(path, cp.offset - 5)
      const short = yield* Effect.flip(withWriter(Sink.jsonl(path), cp, () => Effect.void))
      expect(short._tag).toBe("SinkError")
      expect(short.message).toMatch(/truncated or replaced/)
      const missing = yield* Effect.flip(withWriter(Sink.jsonl(join(dir, "gone.jsonl")), cp, () => Effect.void))
      expect(missing.message).toMatch(/is missing/)
    }))

  it.effect("commits large writes (buffer flushes) with an exact byte offset", () =>
    Effect.gen(function*() {
      const path = join(dir, "large.jsonl")
      const records = Array.from({ length: 3000 }, (_, i) => ({ ...rec(i), input: { id: `r${i}`, text: "é".repeat(1000) } }))
      const cp = yield* withWriter(Sink.jsonl(path), undefined, (w) => Effect.zipRight(w.write(records), w.commit))
      expect(cp.offset).toBe(statSync(path).size)
      expect(jsonLines(path)).toHaveLength(3000)
    }))

  it("is assignable to a sink of any record type", () => {
    const s: Sink.Sink<SinkRecord<Review, Label>> = Sink.jsonl("x.jsonl")
    const t: Sink.Sink<SinkRecord<number, string>> = Sink.jsonl("x.jsonl")
    const c: Sink.Sink<SinkRecord<Review, Label>> = Sink.csv("x.csv")
    expect([s.name, t.name, c.name]).toEqual(["jsonl:x.jsonl", "jsonl:x.jsonl", "csv:x.csv"])
  })
})

describe("Sink.csv", () => {
  const readCsv = (path: string) => parse(readFileSync(path), { columns: true }) as Array<Record<string, string>>

  it.effect("writes flattened columns with the header once across a resume", () =>
    Effect.gen(function*() {
      const path = join(dir, "out", "labels.csv")
      const sink = Sink.csv<Review, Label>(path)
      const cp1 = yield* withWriter(sink, undefined, (w) =>
        Effect.gen(function*() {
          yield* w.write([rec(1)])
          yield* w.write([rec(2)])
          const cp = yield* w.commit
          yield* w.write([rec(3)]) // uncommitted
          return cp
        }))
      const cp2 = yield* withWriter(sink, cp1, (w) => Effect.zipRight(w.write([rec(3), rec(4)]), w.commit))
      expect(cp2.offset).toBe(statSync(path).size)
      const text = readFileSync(path, "utf8")
      expect(text.split("\n")[0]).toBe("key,custom_id,input.id,input.text,output.sentiment,output.topics")
      expect(text.match(/^key,/gm)).toHaveLength(1)
      const rows = readCsv(path)
      expect(rows.map((r) => r.key)).toEqual(["r1", "r2", "r3", "r4"])
      expect(rows[0]).toEqual({
        key: "r1",
        custom_id: "label-r1-abc",
        "input.id": "r1",
        "input.text": `text, "quoted"\nline 1`,
        "output.sentiment": "negative",
        "output.topics": `["a","t1"]`
      })
    }))

  it.effect("uses a custom columns function and keeps the header's order on resume", () =>
    Effect.gen(function*() {
      const path = join(dir, "custom.csv")
      const sink = Sink.csv<Review, Label>(path, {
        columns: (r) => ({ id: r.input.id, sentiment: r.output.sentiment, n: r.output.topics.length, ok: true, none: null })
      })
      const cp = yield* withWriter(sink, undefined, (w) => Effect.zipRight(w.write([rec(1)]), w.commit))
      yield* withWriter(sink, cp, (w) => Effect.zipRight(w.write([rec(2)]), w.commit))
      expect(readFileSync(path, "utf8")).toBe("id,sentiment,n,ok,none\nr1,negative,2,true,\nr2,positive,2,true,\n")
    }))

  it.effect("fails loudly on a column the header does not have", () =>
    Effect.gen(function*() {
      const path = join(dir, "extra.csv")
      const sink = Sink.csv<{ a: string; b?: string }, string>(path)
      const error = yield* Effect.flip(withWriter(sink, undefined, (w) =>
        Effect.zipRight(
          w.write([
            { key: "1", customId: "c1", input: { a: "x" }, output: "o" },
            { key: "2", customId: "c2", input: { a: "y", b: "z" }, output: "o" }
          ]),
          w.commit
        )))
      expect(error.message).toMatch(/input\.b not in the header/)
    }))
})

describe("Sink.all", () => {
  it.effect("writes every record to each sink and resumes each from the checkpoint they share", () =>
    Effect.gen(function*() {
      const a = join(dir, "all-a.jsonl")
      const b = join(dir, "all-b.csv")
      const sink = Sink.all(Sink.jsonl<Review, Label>(a), Sink.csv<Review, Label>(b))
      // Session 1: commit two records, then write a third that is never committed (crash).
      const cp = yield* withWriter(sink, undefined, (w) =>
        Effect.gen(function*() {
          yield* w.write([rec(1), rec(2)])
          const committed = yield* w.commit
          yield* w.write([rec(3)])
          return committed
        })
      )
      expect(cp.parts).toEqual([{ offset: statSync(a).size }, expect.objectContaining({ offset: expect.any(Number) })])
      expect(jsonLines(a).length).toBe(2)
      // Session 2 opens from the checkpoint: each sink drops what came after it, then takes new records.
      yield* withWriter(sink, cp, (w) => Effect.zipRight(w.write([rec(4)]), w.commit))
      expect(jsonLines(a).map((r) => r.key)).toEqual(["r1", "r2", "r4"])
      const csv = parse(readFileSync(b, "utf8"), { columns: true }) as Array<{ key: string; lineage?: string }>
      expect(csv.map((r) => r.key)).toEqual(["r1", "r2", "r4"])
    }))

  it.effect("file sinks write a record's lineage when it has one", () =>
    Effect.gen(function*() {
      const path = join(dir, "lineage.jsonl")
      yield* withWriter(Sink.jsonl<Review, Label>(path), undefined, (w) =>
        Effect.zipRight(w.write([{ ...rec(1), lineage: ["extract-r1-0123456789abcdef"] }]), w.commit)
      )
      expect(jsonLines(path)[0]).toEqual({ key: "r1", custom_id: "label-r1-abc", lineage: ["extract-r1-0123456789abcdef"], input: rec(1).input, output: rec(1).output })
    }))
})

/** U+0000, a lone high and a lone low surrogate, a valid pair (one emoji), and a pair cut in two. */
const awkward = ["nul \u0000 inside", "high \ud800 alone", "low \udc00 alone", "pair \ud83d\ude00 ok", "\ude00\ud83d reversed"]

describe("strings no UTF-8 file can hold", () => {
  it.effect("Sink.jsonl stores U+0000 and lone surrogates as JSON escapes: valid UTF-8, read back the same", () =>
    Effect.gen(function*() {
      const path = join(dir, "awkward.jsonl")
      const records = awkward.map((text, i) => ({ key: `k${i}`, customId: `c${i}`, input: { text }, output: { [text]: [text] } }))
      const sink = Sink.jsonl<{ text: string }, Record<string, Array<string>>>(path)
      yield* withWriter(sink, undefined, (w) => Effect.gen(function*() {
        expect(records.map((r) => w.refuse?.(r))).toEqual(records.map(() => undefined))
        yield* w.write(records)
        yield* w.commit
      }))
      const bytes = readFileSync(path)
      // A fatal decoder throws on any byte sequence that is not UTF-8 (U+FFFD would be valid, so check it is absent).
      const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes)
      expect(text).not.toContain("\ufffd")
      expect(text).toContain("\\u0000")
      expect(text).toContain("\\ud800")
      expect(text).toContain("\\udc00")
      const back = jsonLines(path)
      expect(back.map((l) => l.input.text)).toEqual(awkward)
      expect(back.map((l) => Object.keys(l.output)[0])).toEqual(awkward)
      expect(back.map((l, i) => l.output[awkward[i]!][0])).toEqual(awkward)
    }))

  it.effect("Sink.csv refuses a lone surrogate in a cell or a column name; U+0000 and pairs are written as they are", () =>
    Effect.gen(function*() {
      const path = join(dir, "awkward.csv")
      const sink = Sink.csv<string, unknown>(path, { columns: (r) => r.output as Record<string, Sink.CsvCell> })
      const records = [...awkward.map((text, i) => ({ key: `k${i}`, customId: `c${i}`, input: "", output: { id: `k${i}`, text } })),
        { key: "kx", customId: "cx", input: "", output: { id: "kx", ["name \ud800"]: "x" } }]
      const refused = yield* withWriter(sink, undefined, (w) => writeAccepted(w, records))
      expect(refused).toEqual([
        `csv:${path}: column text has a lone surrogate (U+D800) at character 5, which UTF-8 cannot encode`,
        `csv:${path}: column text has a lone surrogate (U+DC00) at character 4, which UTF-8 cannot encode`,
        `csv:${path}: column text has a lone surrogate (U+DE00) at character 0, which UTF-8 cannot encode`,
        `csv:${path}: column name "name \\ud800" has a lone surrogate (U+D800) at character 5, which UTF-8 cannot encode`
      ])
      const bytes = readFileSync(path)
      new TextDecoder("utf-8", { fatal: true }).decode(bytes)
      expect(parse(bytes, { columns: true })).toEqual([
        { id: "k0", text: "nul \u0000 inside" },
        { id: "k3", text: "pair \ud83d\ude00 ok" }
      ])
      // A caller that does not ask: write itself refuses, rather than writing U+FFFD.
      const error = yield* Effect.flip(withWriter(sink, undefined, (w) => w.write([records[1]!])))
      expect(error.message).toMatch(/cannot encode a record: column text has a lone surrogate \(U\+D800\)/)
    }))

  it.effect("Sink.csv refuses a record with a column the header lacks, or whose columns function throws; the rest is written", () =>
    Effect.gen(function*() {
      const path = join(dir, "refused-extra.csv")
      const sink = Sink.csv<{ a: string; b?: string }, string>(path, {
        columns: (r) => {
          if (r.output === "boom") throw new Error("no columns for boom")
          return { ...r.input }
        }
      })
      const refused = yield* withWriter(sink, undefined, (w) =>
        writeAccepted(w, [
          { key: "1", customId: "c1", input: { a: "x" }, output: "o" },
          { key: "2", customId: "c2", input: { a: "y", b: "z" }, output: "o" },
          { key: "3", customId: "c3", input: { a: "w" }, output: "boom" },
          { key: "4", customId: "c4", input: { a: "v" }, output: "o" }
        ]))
      expect(refused).toEqual([
        `csv:${path}: column b not in the header (a); pass \`columns\` to Sink.csv to fix the set of columns`,
        `csv:${path}: the columns function failed: no columns for boom`
      ])
      expect(readFileSync(path, "utf8")).toBe("a\nx\nv\n")
    }))

  it.effect("Sink.all refuses a record any of its sinks refuses, with that sink's reason", () =>
    Effect.gen(function*() {
      const a = join(dir, "all-refuse.jsonl")
      const b = join(dir, "all-refuse.csv")
      const sink = Sink.all(Sink.jsonl<string, string>(a), Sink.csv<string, string>(b))
      const refused = yield* withWriter(sink, undefined, (w) =>
        writeAccepted(w, [
          { key: "1", customId: "c1", input: "fine", output: "fine" },
          { key: "2", customId: "c2", input: "fine", output: "lone \udfff" }
        ]))
      expect(refused).toEqual([`csv:${b}: column output has a lone surrogate (U+DFFF) at character 5, which UTF-8 cannot encode`])
      expect(jsonLines(a).map((l) => l.key)).toEqual(["1"])
      expect(parse(readFileSync(b), { columns: true })).toEqual([{ key: "1", custom_id: "c1", input: "fine", output: "fine" }])
    }))
})

describe("Sink.csv formula neutralisation", () => {
  const cells = ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3+cmd|' /C calc'!A0", "@SUM(A1)", "\tTab", "\rCR", "-5", "+1.5e3", ".5", "a=b", "plain", "'quoted", ""]
  const records = cells.map((text, i) => ({ key: `k${i}`, customId: `c${i}`, input: i, output: { text, n: -i - 0.5, big: -1e21 } }))
  const read = (path: string) => parse(readFileSync(path), { columns: true }) as Array<Record<string, string>>

  it.effect("is on by default: text cells a spreadsheet would execute get a leading ', numbers and plain numeric text do not", () =>
    Effect.gen(function*() {
      const path = join(dir, "formula-on.csv")
      const sink = Sink.csv<number, { text: string; n: number; big: number }>(path, {
        columns: (r) => ({ text: r.output.text, n: r.output.n, big: r.output.big })
      })
      yield* withWriter(sink, undefined, (w) => writeAccepted(w, records))
      const rows = read(path)
      expect(rows.map((r) => r.text)).toEqual([
        "'=HYPERLINK(\"http://x\")",
        "'+1+1",
        "'-2+3+cmd|' /C calc'!A0",
        "'@SUM(A1)",
        "'\tTab",
        "'\rCR",
        "-5",
        "+1.5e3",
        ".5",
        "a=b",
        "plain",
        "'quoted",
        ""
      ])
      expect(rows.map((r) => r.n)).toEqual(cells.map((_, i) => String(-i - 0.5)))
      expect(rows.every((r) => r.big === "-1e+21")).toBe(true)
    }))

  it.effect("applies to the default columns too, input and output alike", () =>
    Effect.gen(function*() {
      const path = join(dir, "formula-default.csv")
      yield* withWriter(Sink.csv<{ q: string }, string>(path), undefined, (w) =>
        writeAccepted(w, [{ key: "=k", customId: "c1", input: { q: "@q" }, output: "=1+2" }]))
      expect(read(path)).toEqual([{ key: "'=k", custom_id: "c1", "input.q": "'@q", output: "'=1+2" }])
    }))

  it.effect("formulaEscape: false writes every cell as it is", () =>
    Effect.gen(function*() {
      const path = join(dir, "formula-off.csv")
      const sink = Sink.csv<number, { text: string; n: number; big: number }>(path, {
        columns: (r) => ({ text: r.output.text }),
        formulaEscape: false
      })
      yield* withWriter(sink, undefined, (w) => writeAccepted(w, records))
      expect(read(path).map((r) => r.text)).toEqual(cells)
    }))
})

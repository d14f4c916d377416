/**
 * PgSink against a real PostgreSQL server, started by the test in a temporary directory on a
 * free loopback port and stopped afterwards (scripts/lib/tempPostgres.ts). Skipped, saying
 * why, where the server binaries (initdb, pg_ctl) are not installed.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import type { SqlError } from "@effect/sql/SqlError"
import { describe, expect, it } from "@effect/vitest"
import type { SinkCheckpoint, SinkRecord, SinkWriter } from "@sluice/core"
import type { Sink } from "@sluice/core"
import { Context, Effect, Layer, Redacted } from "effect"
import { afterAll, beforeAll } from "vitest"
import * as TempPostgres from "../../../scripts/lib/tempPostgres.js"
import * as PgSink from "../src/PgSink.js"
import { writeAccepted } from "../../core/test/support/sinks.js"

const { freePort, skipReason } = TempPostgres
if (skipReason !== undefined) console.warn(`PgSink tests skipped: ${skipReason}`)

let server: TempPostgres.TempPostgres | undefined
let port = 0
let url = ""

interface Review {
  readonly id: string
  readonly text: string
  readonly stars: number
}
interface Label {
  readonly sentiment: string
  readonly score: number
  readonly flags: { readonly spam: boolean; readonly lang: string | null }
  readonly topics: ReadonlyArray<string>
}

const rec = (i: number): SinkRecord<Review, Label> => ({
  key: `r${i}`,
  customId: `label-r${i}-a1`,
  input: { id: `r${i}`, text: `texte n°${i} — "quoted" 😀`, stars: i % 5 },
  output: {
    sentiment: i % 2 === 0 ? "positive" : "negative",
    score: i / 8,
    flags: { spam: i % 3 === 0, lang: i % 4 === 0 ? null : "fr" },
    topics: ["a", `t${i}`]
  }
})
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, k) => rec(from + k))

const withWriter = <R, A, E>(
  sink: Sink.Sink<R>,
  resume: SinkCheckpoint | undefined,
  f: (w: SinkWriter<R>) => Effect.Effect<A, E>
) => Effect.scoped(Effect.flatMap(sink.open(resume), f)).pipe(Effect.provide(NodeFileSystem.layer))


/** Runs `f` with a client of its own, to look at what the sink wrote. */
const query = <A>(f: (sql: PgClient.PgClient) => Effect.Effect<A, SqlError>) =>
  Effect.scoped(
    Effect.flatMap(Layer.build(PgClient.layer({ url: Redacted.make(url) })), (ctx) => f(Context.get(ctx, PgClient.PgClient)))
  )

describe.skipIf(skipReason !== undefined)("PgSink.table (a real PostgreSQL server)", () => {
  beforeAll(async () => {
    server = await TempPostgres.start()
    port = server.port
    url = server.url
  })

  afterAll(() => {
    server?.stop()
  })

  it.effect("crash and resume: every row is in the table exactly once, jsonb round-trips", () =>
    Effect.gen(function*() {
      const sink = PgSink.table<Review, Label>({ url, table: "labels" })
      expect(sink.name).toBe("pg:labels")

      // Session 1: a committed shard; a second one committed to the database but never
      // journaled (the crash hit between the two); then a third written but not committed.
      const cp1 = yield* withWriter(sink, undefined, (w) =>
        Effect.gen(function*() {
          yield* w.write(range(1, 3))
          yield* w.write(range(4, 5))
          const cp = yield* w.commit
          yield* w.write(range(6, 8))
          const lost = yield* w.commit
          expect(lost).toEqual({ offset: 8 })
          yield* w.write(range(9, 10)) // no commit: the process dies
          return cp
        }))
      expect(cp1).toEqual({ offset: 5 })
      const afterCrash = yield* query((sql) => sql<{ key: string }>`SELECT key FROM labels ORDER BY key`)
      expect(afterCrash).toHaveLength(8)

      // Session 2: resumed from the journaled checkpoint, the runner collects shards 2 and 3
      // again and writes the same rows.
      const cp2 = yield* withWriter(sink, cp1, (w) =>
        Effect.gen(function*() {
          yield* w.write(range(6, 8))
          yield* w.write(range(9, 10))
          return yield* w.commit
        }))
      expect(cp2).toEqual({ offset: 10 })

      // Session 3: resumed at the end with nothing to add.
      expect(yield* withWriter(sink, cp2, (w) => w.commit)).toEqual(cp2)

      const rows = yield* query((sql) =>
        sql<{ custom_id: string; key: string; input: unknown; output: unknown; written_at: Date }>`
          SELECT custom_id, key, input, output, written_at FROM labels ORDER BY custom_id`
      )
      expect(rows.map((r) => r.custom_id)).toEqual(range(1, 10).map((r) => r.customId).sort())
      for (const row of rows) {
        const expected = rec(Number(row.key.slice(1)))
        expect(row.input).toEqual(expected.input)
        expect(row.output).toEqual(expected.output)
        expect(row.written_at).toBeInstanceOf(Date)
      }
      const types = yield* query((sql) =>
        sql<{ name: string; type: string }>`
          SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute
          WHERE attrelid = 'labels'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`
      )
      expect(types).toEqual([
        { name: "custom_id", type: "text" },
        { name: "key", type: "text" },
        { name: "input", type: "jsonb" },
        { name: "output", type: "jsonb" },
        { name: "written_at", type: "timestamp with time zone" }
      ])
      const typed = yield* query((sql) =>
        sql<{ score: number; spam: boolean; lang: string | null; t: string }>`
          SELECT (output->>'score')::float8 AS score, (output->'flags'->>'spam')::boolean AS spam,
                 output->'flags'->>'lang' AS lang, jsonb_typeof(output->'topics') AS t
          FROM labels WHERE key = 'r4'`
      )
      expect(typed).toEqual([{ score: 0.5, spam: false, lang: null, t: "array" }])
    }))

  it.effect("custom columns in a schema-qualified table, typed from the first values", () =>
    Effect.gen(function*() {
      yield* query((sql) => sql`CREATE SCHEMA etl`)
      const sink = PgSink.table<Review, Label>({
        client: { host: "127.0.0.1", port, username: "postgres", database: "postgres" },
        table: "etl.sentiments",
        batchSize: 2,
        columns: (r) => ({
          sentiment: r.output.sentiment,
          score: r.output.score,
          spam: r.output.flags.spam,
          topics: r.output.topics,
          lang: r.output.flags.lang
        })
      })
      const cp = yield* withWriter(sink, undefined, (w) => Effect.zipRight(w.write(range(1, 5)), w.commit))
      expect(cp).toEqual({ offset: 5 })
      const rows = yield* query((sql) =>
        sql<Record<string, unknown>>`
          SELECT key, sentiment, score, spam, topics, lang FROM etl.sentiments ORDER BY key`
      )
      expect(rows[3]).toEqual({ key: "r4", sentiment: "positive", score: 0.5, spam: false, topics: ["a", "t4"], lang: null })
      expect(rows).toHaveLength(5)
      const types = yield* query((sql) =>
        sql<{ name: string; type: string }>`
          SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute
          WHERE attrelid = 'etl.sentiments'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`
      )
      expect(types.map((t) => `${t.name} ${t.type}`)).toEqual([
        "custom_id text",
        "key text",
        "sentiment text",
        "score double precision",
        "spam boolean",
        "topics jsonb",
        "lang text",
        "written_at timestamp with time zone"
      ])
      const reserved = yield* Effect.flip(withWriter(
        PgSink.table<Review, Label>({ url, table: "x", columns: (r) => ({ key: r.key }) }),
        undefined,
        (w) => w.write(range(1, 1))
      ))
      expect(reserved.message).toMatch(/columns key are reserved/)
    }))

  it.effect("columns are the union of the rows; a later commit adds the columns it brings", () =>
    Effect.gen(function*() {
      type Cells = Record<string, unknown>
      const sink = PgSink.table<null, Cells>({ url, table: "unioned", columns: (r) => r.output })
      const at = (i: number, output: Cells): SinkRecord<null, Cells> => ({ key: `k${i}`, customId: `c${i}`, input: null, output })
      yield* withWriter(sink, undefined, (w) =>
        Effect.gen(function*() {
          // The first row lacks b and c: they are columns all the same, NULL for it.
          yield* w.write([at(1, { a: "x" }), at(2, { a: "y", b: 2 }), at(3, { c: null, b: 3 })])
          yield* w.commit
          yield* w.write([at(4, { a: "z", d: true }), at(5, { e: { deep: [1] } })])
          yield* w.commit
        }))
      const rows = yield* query((sql) => sql<Cells>`SELECT key, a, b, c, d, e FROM unioned ORDER BY key`)
      expect(rows).toEqual([
        { key: "k1", a: "x", b: null, c: null, d: null, e: null },
        { key: "k2", a: "y", b: 2, c: null, d: null, e: null },
        { key: "k3", a: null, b: 3, c: null, d: null, e: null },
        { key: "k4", a: "z", b: null, c: null, d: true, e: null },
        { key: "k5", a: null, b: null, c: null, d: null, e: { deep: [1] } }
      ])
      const types = yield* query((sql) =>
        sql<{ name: string; type: string }>`
          SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute
          WHERE attrelid = 'unioned'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`
      )
      expect(types.map((t) => `${t.name} ${t.type}`)).toEqual([
        "custom_id text",
        "key text",
        "a text",
        "b double precision",
        "c jsonb",
        "written_at timestamp with time zone",
        "d boolean",
        "e jsonb"
      ])
    }))

  it.effect("a commit wider than one statement's 65,535 parameters is split", () =>
    Effect.gen(function*() {
      const width = 200
      const sink = PgSink.table<number, null>({
        url,
        table: "wide",
        columns: (r) => Object.fromEntries(Array.from({ length: width }, (_, c) => [`c${c}`, r.input * 1000 + c]))
      })
      const records = Array.from({ length: 400 }, (_, i) => ({ key: `k${i}`, customId: `w${i}`, input: i, output: null }))
      expect(yield* withWriter(sink, undefined, (w) => Effect.zipRight(w.write(records), w.commit))).toEqual({ offset: 400 })
      const stored = yield* query((sql) => sql<{ n: string; last: number }>`SELECT count(*)::text AS n, max(c199) AS last FROM wide`)
      expect(stored).toEqual([{ n: "400", last: 399_199 }])
    }))

  it.effect("refuses, before the INSERT, a value its column cannot hold; the commit stores every other row", () =>
    Effect.gen(function*() {
      yield* query((sql) => sql`CREATE TABLE typed (custom_id text PRIMARY KEY, key text NOT NULL, n integer, code varchar(3), doc json, written_at timestamptz NOT NULL DEFAULT now())`)
      const at = <O>(i: number, output: O, key = `k${i}`): SinkRecord<null, O> => ({ key, customId: `c${i}`, input: null, output })

      // The default columns: input and output are jsonb.
      const plain = PgSink.table<null, unknown>({ url, table: "plain" })
      const plainRecords = [
        at(1, "fine"),
        at(2, { answer: "nul \u0000 inside" }),
        at(3, ["ok", "lone \ud800"]),
        at(4, { ["key \u0000"]: 1 }),
        at(5, "a pair \ud83d\ude00 is fine"),
        at(6, "fine", "key \u0000"),
        at(7, "fine too")
      ]
      const plainRefused = yield* withWriter(plain, undefined, (w) => writeAccepted(w, plainRecords))
      expect(plainRefused).toEqual([
        "pg:plain cannot store the row: output.answer has U+0000 at character 4, which jsonb cannot hold",
        "pg:plain cannot store the row: output[1] has a lone surrogate (U+D800) at character 5, which jsonb cannot hold",
        "pg:plain cannot store the row: a key of output has U+0000 at character 4, which jsonb cannot hold",
        "pg:plain cannot store the row: key has U+0000 at character 4, which PostgreSQL text cannot hold"
      ])
      const plainRows = yield* query((sql) => sql<{ key: string; output: unknown }>`SELECT key, output FROM plain ORDER BY key`)
      expect(plainRows).toEqual([
        { key: "k1", output: "fine" },
        { key: "k5", output: "a pair \ud83d\ude00 is fine" },
        { key: "k7", output: "fine too" }
      ])

      // Columns of the types an existing table gives them, and of the first values.
      type Cells = Record<string, unknown>
      const typed = PgSink.table<null, Cells>({ url, table: "typed", columns: (r) => r.output })
      const typedRefused = yield* withWriter(typed, undefined, (w) =>
        writeAccepted(w, [
          at(1, { n: 1, code: "abc", doc: { text: "nul \u0000 and lone \udc00: json keeps the escapes" }, label: "x", score: 0.5 }),
          at(2, { n: 1.5 }),
          at(3, { n: 2 ** 31 }),
          at(4, { n: "12" }),
          at(5, { code: "abcd" }),
          at(6, { label: "nul \u0000" }),
          at(7, { label: 5, score: "high" }),
          at(8, { score: "2.5e1", flag: true }),
          at(9, { flag: " Yes" }),
          at(10, { flag: "maybe" })
        ]))
      expect(typedRefused).toEqual([
        "pg:typed cannot store the row: column n is integer: 1.5 is not an integer",
        "pg:typed cannot store the row: column n is integer: 2147483648 is out of range for integer",
        "pg:typed cannot store the row: column code is character varying(3): \"abcd\" is longer than 3 characters",
        "pg:typed cannot store the row: label has U+0000 at character 4, which PostgreSQL text cannot hold",
        "pg:typed cannot store the row: column score is double precision: \"high\" is not a number",
        "pg:typed cannot store the row: column flag is boolean: \"maybe\" is not a boolean"
      ])
      const typedRows = yield* query((sql) =>
        sql<Cells>`SELECT key, n, code, doc::text AS doc, label, score, flag FROM typed ORDER BY custom_id`
      )
      expect(typedRows).toEqual([
        { key: "k1", n: 1, code: "abc", doc: JSON.stringify({ text: "nul \u0000 and lone \udc00: json keeps the escapes" }), label: "x", score: 0.5, flag: null },
        { key: "k4", n: 12, code: null, doc: null, label: null, score: null, flag: null },
        { key: "k8", n: null, code: null, doc: null, label: null, score: 25, flag: true },
        { key: "k9", n: null, code: null, doc: null, label: null, score: null, flag: true }
      ])
      // json stored the escapes: parsed back, the very same strings.
      expect(JSON.parse(typedRows[0]!["doc"] as string)).toEqual({ text: "nul \u0000 and lone \udc00: json keeps the escapes" })

      // A caller that does not ask: write refuses with a SinkError, and nothing is pending.
      const error = yield* Effect.flip(withWriter(plain, undefined, (w) => Effect.zipRight(w.write([at(20, "nul \u0000")]), w.commit)))
      expect(error.message).toBe("sink pg:plain: cannot encode a record: output has U+0000 at character 4, which jsonb cannot hold")
      const after = yield* query((sql) => sql<{ n: string }>`SELECT count(*)::text AS n FROM plain`)
      expect(after).toEqual([{ n: "3" }])
    }))

  it.effect("names it cannot quote: the table when the sink is defined, a column before the first commit", () =>
    Effect.gen(function*() {
      const refused = (table: string) => {
        try {
          PgSink.table({ url, table })
          return "accepted"
        } catch (e) {
          return (e as Error).message
        }
      }
      expect(refused("a..b")).toBe(`PgSink.table: table "a..b" cannot be quoted: it has more than one dot: give \`table\` or \`schema.table\``)
      expect(refused("etl.")).toBe(`PgSink.table: table "etl." cannot be quoted: "": it is empty`)
      expect(refused("db.etl.labels")).toBe(`PgSink.table: table "db.etl.labels" cannot be quoted: it has more than one dot: give \`table\` or \`schema.table\``)
      expect(refused("")).toBe(`PgSink.table: table "" cannot be quoted: it is empty`)
      expect(refused("x".repeat(64))).toBe(`PgSink.table: table "${"x".repeat(64)}" cannot be quoted: it is 64 bytes long; PostgreSQL cuts names past 63`)
      expect(refused("nul\u0000")).toMatch(/cannot be quoted: it has U\+0000 at character 3$/)
      expect(refused("etl.labels")).toBe("accepted")

      // Quotes are doubled: such a name works.
      const quoted = PgSink.table<null, string>({ url, table: `we"ird`, columns: (r) => ({ [`sa"y`]: r.output }) })
      yield* withWriter(quoted, undefined, (w) => Effect.zipRight(w.write([{ key: "k", customId: "c", input: null, output: "hi" }]), w.commit))
      expect(yield* query((sql) => sql<{ v: string }>`SELECT ${sql(`sa"y`)} AS v FROM ${sql(`we"ird`)}`)).toEqual([{ v: "hi" }])

      // A column name from \`columns\`: known only from the records; the run stops before the commit, naming it.
      const dotted = PgSink.table<null, string>({ url, table: "dotted", columns: (r) => ({ "output.text": r.output }) })
      const record = { key: "k", customId: "c1", input: null, output: "hi" }
      const error = yield* Effect.flip(withWriter(dotted, undefined, (w) =>
        Effect.gen(function*() {
          expect(w.refuse?.(record)).toBeUndefined() // not the row's fault
          yield* w.write([record])
          yield* w.commit
        })))
      expect(error.message).toBe(
        `sink pg:dotted: cannot encode a record: column "output.text" (from \`columns\`, for c1) cannot be a PostgreSQL column name: ` +
          `it has a dot, which the quoting would turn into a qualified name ("a"."b"); rename it`
      )
      expect(yield* query((sql) => sql<{ t: string | null }>`SELECT to_regclass('dotted')::text AS t`)).toEqual([{ t: null }])
    }))

  it.effect("a failed connection names neither the URL nor the password", () =>
    Effect.gen(function*() {
      const closed = yield* Effect.promise(freePort)
      const secret = "s3cret-Pa55word"
      const error = yield* Effect.flip(withWriter(
        PgSink.table({ url: `postgres://postgres:${secret}@127.0.0.1:${closed}/postgres`, table: "labels" }),
        undefined,
        () => Effect.void
      ))
      expect(error._tag).toBe("SinkError")
      expect(error.message).toMatch(/^sink pg:labels: cannot connect to PostgreSQL/)
      expect(error.message).not.toContain(secret)
      expect(String(error)).not.toContain(secret)
      const viaClient = yield* Effect.flip(withWriter(
        PgSink.table({
          client: { host: "127.0.0.1", port: closed, username: "postgres", password: Redacted.make(secret) },
          table: "labels"
        }),
        undefined,
        () => Effect.void
      ))
      expect(viaClient.message).not.toContain(secret)
    }))
})

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

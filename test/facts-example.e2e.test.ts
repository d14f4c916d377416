/**
 * The two-stage example (`npm run example:facts`) end to end: scripts/facts-example.ts runs
 * as a real child process (tsx), which runs the real CLI against the emulator on 127.0.0.1,
 * from examples/data/documents.parquet into a PostgreSQL table and a Parquet dataset.
 *
 * The test reads both sinks itself — the table with SQL on a server it started, the Parquet
 * parts with hyparquet — and checks them against the run's own results: the same set of
 * custom_ids in both, each once; keys `<document id>.<topic>`; every row's lineage naming
 * the succeeded `extract-` request of its document; one row for each topic stage 1 found in
 * each document. A second run lets the script start (and stop) its own throwaway server.
 *
 * Skipped, saying why, where the PostgreSQL server binaries are not installed.
 */
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Redacted } from "effect"
import { asyncBufferFromFile, parquetReadObjects } from "hyparquet"
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { connect } from "node:net"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as TempPostgres from "../scripts/lib/tempPostgres.js"

const repo = join(dirname(fileURLToPath(import.meta.url)), "..")
const DOCUMENTS = 200

if (TempPostgres.skipReason !== undefined) console.warn(`facts example test skipped: ${TempPostgres.skipReason}`)

interface Outcome {
  readonly code: number | null
  readonly stderr: string
}

/** `tsx scripts/facts-example.ts`, as `npm run example:facts` runs it (after its build). */
const runExample = (env: Record<string, string>): Promise<Outcome> =>
  new Promise((resolve, reject) => {
    const child = spawn(join(repo, "node_modules", ".bin", "tsx"), ["scripts/facts-example.ts"], {
      cwd: repo,
      env: { ...process.env, ...env },
      stdio: ["ignore", "ignore", "pipe"]
    })
    let stderr = ""
    child.stderr.on("data", (d) => (stderr += d))
    child.on("error", reject)
    child.on("exit", (code) => resolve({ code, stderr }))
  })

interface Row {
  readonly custom_id: string
  readonly key: string
  readonly doc_id: string
  readonly topic: string
  readonly lineage: ReadonlyArray<string>
}

const query = <A extends object>(url: string, text: string) =>
  Effect.runPromise(
    Effect.scoped(
      Effect.flatMap(Layer.build(PgClient.layer({ url: Redacted.make(url) })), (ctx) =>
        Context.get(ctx, PgClient.PgClient).unsafe<A>(text))
    )
  )

const readParquetDir = async (dir: string): Promise<{ parts: number; rows: Array<Record<string, unknown>> }> => {
  const parts = readdirSync(dir).filter((f) => /^part-\d+\.parquet$/.test(f))
  const rows: Array<Record<string, unknown>> = []
  for (const part of parts) rows.push(...(await parquetReadObjects({ file: await asyncBufferFromFile(join(dir, part)) })))
  return { parts: parts.length, rows }
}

const jsonl = <A>(file: string): Array<A> =>
  readFileSync(file, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as A)

const listening = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port })
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
  })

describe.skipIf(TempPostgres.skipReason !== undefined)("npm run example:facts (Parquet → PostgreSQL + Parquet)", () => {
  let server: TempPostgres.TempPostgres | undefined
  let out = ""

  beforeAll(async () => {
    server = await TempPostgres.start({ prefix: "sluice-facts-test-pg-" })
    out = mkdtempSync(join(tmpdir(), "sluice-facts-test-"))
  })

  afterAll(() => {
    server?.stop()
    if (out !== "") rmSync(out, { recursive: true, force: true })
  })

  it("writes the same rows, each once and with its lineage, to the table and the Parquet dataset", { timeout: 240_000 }, async () => {
    const url = server!.url
    const parquetDir = join(out, "into-given-db")
    const r = await runExample({ DATABASE_URL: url, FACTS_TABLE: "fact_summaries", FACTS_PARQUET_DIR: parquetDir })
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/facts: OK: the table and the Parquet dataset hold the same \d+ rows/)
    const runDir = join(repo, /facts: run directory (\S+):/.exec(r.stderr)![1]!)

    // The table, read by us.
    const table = await query<Row>(url, "SELECT custom_id, key, doc_id, topic, lineage FROM fact_summaries")
    // The Parquet dataset, read by us.
    const parquet = await readParquetDir(parquetDir)
    expect(parquet.parts).toBeGreaterThan(1) // one part per commit, and the run committed several times
    const parquetRows: Array<Row> = parquet.rows.map((p) => ({
      custom_id: String(p["custom_id"]),
      key: String(p["key"]),
      doc_id: String(p["doc_id"]),
      topic: String(p["topic"]),
      lineage: String(p["lineage"]).split(" ")
    }))

    // Same set of custom_ids, each once.
    expect(table.length).toBeGreaterThan(0)
    const tableIds = table.map((t) => t.custom_id)
    const parquetIds = parquetRows.map((p) => p.custom_id)
    expect(new Set(tableIds).size, "custom_ids twice in the table").toBe(tableIds.length)
    expect(new Set(parquetIds).size, "custom_ids twice in the Parquet dataset").toBe(parquetIds.length)
    expect([...parquetIds].sort()).toEqual([...tableIds].sort())

    // What stage 1 answered, from the run's results: the succeeded extract request of each
    // document and the topics of its facts.
    const results = jsonl<{ _tag: string; customId: string; text?: string }>(join(runDir, "results.jsonl"))
    const extractOf = new Map<string, string>()
    const expectedKeys = new Set<string>()
    for (const res of results) {
      if (res._tag !== "Succeeded" || !res.customId.startsWith("extract-")) continue
      const docId = /^extract-(.+)-[0-9a-f]{16}$/.exec(res.customId)![1]!
      expect(extractOf.has(docId), `${docId} extracted twice`).toBe(false)
      extractOf.set(docId, res.customId)
      const facts = (JSON.parse(res.text!) as { facts: Array<{ topic: string }> }).facts
      for (const f of facts) expectedKeys.add(`${docId}.${f.topic}`)
    }
    expect(extractOf.size).toBe(DOCUMENTS)

    for (const [where, rows] of [["table", table], ["parquet", parquetRows]] as const) {
      for (const row of rows) {
        expect(row.key, where).toBe(`${row.doc_id}.${row.topic}`)
        expect(row.custom_id, where).toMatch(/^summarise-/)
        expect(row.lineage, `${where} ${row.key}`).toEqual([extractOf.get(row.doc_id)])
        expect(row.lineage[0], where).toMatch(/^extract-/)
      }
      // One row per (document, topic) that stage 1 found: none missing, none extra.
      expect(rows.map((r) => r.key).sort(), where).toEqual([...expectedKeys].sort())
    }
  })

  it("without DATABASE_URL, starts a throwaway PostgreSQL server and stops it afterwards", { timeout: 240_000 }, async () => {
    const env: Record<string, string> = { FACTS_PARQUET_DIR: join(out, "throwaway") }
    const r = await runExample(env)
    const stderr = r.stderr
    expect(r.code, stderr).toBe(0)
    const started = /facts: throwaway PostgreSQL server on 127\.0\.0\.1:(\d+) \(data in (\S+)\)/.exec(stderr)
    expect(started, stderr).not.toBeNull()
    const rows = Number(/facts: PostgreSQL table fact_summaries: (\d+) rows/.exec(stderr)![1])
    expect(rows).toBeGreaterThan(0)
    expect(stderr).toContain(`facts: OK: the table and the Parquet dataset hold the same ${rows} rows`)
    expect((await readParquetDir(join(out, "throwaway"))).rows).toHaveLength(rows)
    // Stopped and removed.
    expect(stderr).toContain(`stopped the throwaway PostgreSQL server and removed ${started![2]}`)
    expect(existsSync(started![2]!)).toBe(false)
    expect(await listening(Number(started![1]))).toBe(false)
  })
})

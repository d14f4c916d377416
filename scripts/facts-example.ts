/**
 * `npm run example:facts`: the two-stage example (examples/facts/facts.pipeline.ts) end to
 * end, from a Parquet file into a PostgreSQL table and a Parquet dataset.
 *
 * 1. Starts the built-in emulator on 127.0.0.1 and points the OpenAI env vars at it.
 * 2. Starts a throwaway PostgreSQL server (scripts/lib/tempPostgres.ts) unless DATABASE_URL
 *    is set.
 * 3. Runs the real CLI (`sluice run … --shard-size 25`, so stage-2 shards start while stage 1
 *    is still running), without the response cache so that every request goes to the
 *    emulator.
 * 4. Reads back what the sinks wrote — the table with SQL, the Parquet parts with hyparquet —
 *    prints a short report, and stops the servers.
 *
 * Exits non-zero when the run fails or the outputs disagree: no rows, a custom_id twice,
 * the table and the Parquet dataset holding different rows, a key that is not
 * `<document id>.<topic>`, a row whose lineage does not name its document's extract request.
 *
 * Environment: DATABASE_URL (use that database instead of a throwaway server),
 * FACTS_TABLE and FACTS_PARQUET_DIR (where the results go; see examples/facts/facts.ts).
 */
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Redacted } from "effect"
import { asyncBufferFromFile, parquetReadObjects } from "hyparquet"
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { parquetDir, tableName } from "../examples/facts/facts.js"
import { startEmulator } from "../packages/emulator/src/Emulator.js"
import type { EmulatorHandle } from "../packages/emulator/src/Emulator.js"
import * as TempPostgres from "./lib/tempPostgres.js"

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const pipelineFile = "examples/facts/facts.pipeline.ts"
const runDir = `.sluice/runs/facts-${new Date().toISOString().replace(/[:.]/g, "-")}`
const parquetPath = resolve(repo, parquetDir)

const log = (line: string) => console.error(`facts: ${line}`)

/** A row as the checks see it, from either sink. */
interface OutRow {
  readonly customId: string
  readonly key: string
  readonly docId: string
  readonly topic: string
  readonly lineage: ReadonlyArray<string>
}

// ---------------------------------------------------------------------------------------------
// Servers, stopped on every way out
// ---------------------------------------------------------------------------------------------

let pg: TempPostgres.TempPostgres | undefined
let emulator: EmulatorHandle | undefined
let child: ChildProcess | undefined
let interrupted: NodeJS.Signals | undefined

const stopServers = async () => {
  const e = emulator
  emulator = undefined
  await e?.close()
  if (pg !== undefined) {
    const p = pg
    pg = undefined
    p.stop()
    log(`stopped the throwaway PostgreSQL server and removed ${p.dir}`)
  }
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    interrupted = signal
    log(`${signal}: stopping`)
    // The CLI stops on the signal too; the servers go when it has exited.
    if (child !== undefined && child.exitCode === null) child.kill(signal)
    else void stopServers().finally(() => process.exit(130))
  })
}

// ---------------------------------------------------------------------------------------------
// Reading the sinks back
// ---------------------------------------------------------------------------------------------

const withSql = <A>(url: string, f: (sql: PgClient.PgClient) => Effect.Effect<A, unknown>): Promise<A> =>
  Effect.runPromise(
    Effect.scoped(
      Effect.flatMap(Layer.build(PgClient.layer({ url: Redacted.make(url) })), (ctx) => f(Context.get(ctx, PgClient.PgClient)))
    )
  )

/** The table's custom_ids, or undefined when it does not exist (yet). */
const tableIds = (url: string) =>
  withSql(url, (sql) =>
    Effect.gen(function*() {
      // Quoted as the sink quotes it, so that the look-up finds the same table.
      const quoted = tableName.split(".").map((p) => `"${p.replace(/"/g, `""`)}"`).join(".")
      const [exists] = yield* sql<{ t: string | null }>`SELECT to_regclass(${quoted}::text)::text AS t`
      if (exists?.t == null) return undefined
      const rows = yield* sql<{ custom_id: string }>`SELECT custom_id FROM ${sql(tableName)}`
      return new Set(rows.map((r) => r.custom_id))
    }))

interface TableReport {
  readonly count: number
  readonly rows: ReadonlyArray<OutRow>
  readonly samples: ReadonlyArray<Record<string, unknown>>
}

const readTable = (url: string): Promise<TableReport> =>
  withSql(url, (sql) =>
    Effect.gen(function*() {
      const counted = yield* sql<{ n: string }>`SELECT count(*)::text AS n FROM ${sql(tableName)}`
      const rows = yield* sql<{ custom_id: string; key: string; doc_id: string; topic: string; lineage: unknown }>`
        SELECT custom_id, key, doc_id, topic, lineage FROM ${sql(tableName)}`
      const samples = yield* sql<Record<string, unknown>>`
        SELECT key, sentiment, fact_count, summary FROM ${sql(tableName)} ORDER BY key LIMIT 3`
      return {
        count: Number(counted[0]?.n ?? 0),
        rows: rows.map((r) => ({
          customId: r.custom_id,
          key: r.key,
          docId: r.doc_id,
          topic: r.topic,
          lineage: Array.isArray(r.lineage) ? (r.lineage as Array<string>) : []
        })),
        samples
      }
    }))

interface ParquetReport {
  readonly parts: ReadonlyArray<string>
  readonly rows: ReadonlyArray<OutRow>
}

const readParquet = async (): Promise<ParquetReport> => {
  const parts = existsSync(parquetPath) ? readdirSync(parquetPath).filter((f) => /^part-\d+\.parquet$/.test(f)).sort() : []
  const rows: Array<OutRow> = []
  for (const part of parts) {
    const file = await asyncBufferFromFile(join(parquetPath, part))
    for (const r of await parquetReadObjects({ file })) {
      rows.push({
        customId: String(r["custom_id"]),
        key: String(r["key"]),
        docId: String(r["doc_id"]),
        topic: String(r["topic"]),
        lineage: typeof r["lineage"] === "string" && r["lineage"] !== "" ? r["lineage"].split(" ") : []
      })
    }
  }
  return { parts, rows }
}

/** Shards per stage from the journal, and whether stage 2 started before stage 1 ended. */
const journalReport = (): string => {
  const file = join(repo, runDir, "journal.jsonl")
  if (!existsSync(file)) return "no journal"
  const events = readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as { _tag: string; stage?: string; shard?: string; attempt?: number })
  const shards = (stage: string) => {
    const planned = events.filter((e) => e._tag === "ShardPlanned" && e.stage === stage)
    const again = planned.filter((e) => (e.attempt ?? 1) > 1).length
    return `${planned.length - again} ${stage} shards` + (again > 0 ? ` (+${again} resubmitting failed rows)` : "")
  }
  const firstSummarise = events.findIndex((e) => e._tag === "ShardPlanned" && e.stage === "summarise")
  const lastExtract = events.findLastIndex((e) => e._tag === "Collected" && String(e.shard).startsWith("extract-"))
  const overlap = firstSummarise !== -1 && firstSummarise < lastExtract
  return `${shards("extract")}, ${shards("summarise")}; ` +
    (overlap ? "stage 2 started before stage 1 had finished" : "the stages did not overlap")
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

const problems: Array<string> = []
const problem = (line: string) => {
  if (problems.length < 20) problems.push(line)
  else if (problems.length === 20) problems.push("…")
}

const checkRows = (where: string, rows: ReadonlyArray<OutRow>) => {
  if (rows.length === 0) problem(`${where}: no rows`)
  const seen = new Set<string>()
  for (const r of rows) {
    if (seen.has(r.customId)) problem(`${where}: custom_id ${r.customId} appears more than once`)
    seen.add(r.customId)
    if (r.key !== `${r.docId}.${r.topic}`) problem(`${where}: key ${r.key} is not <doc id>.<topic> (${r.docId}.${r.topic})`)
    if (!r.customId.startsWith("summarise-")) problem(`${where}: custom_id ${r.customId} is not a summarise request's`)
    if (r.lineage.length !== 1 || !r.lineage[0]!.startsWith(`extract-${r.docId}-`)) {
      problem(`${where}: ${r.key}'s lineage ${JSON.stringify(r.lineage)} does not name an extract-${r.docId}-… request`)
    }
  }
  return seen
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

const main = async (): Promise<number> => {
  let databaseUrl = process.env["DATABASE_URL"]
  if (databaseUrl === undefined || databaseUrl === "") {
    if (TempPostgres.skipReason !== undefined) {
      log(`cannot start a throwaway PostgreSQL server: ${TempPostgres.skipReason}; or set DATABASE_URL`)
      return 2
    }
    pg = await TempPostgres.start({ prefix: "sluice-facts-pg-" })
    databaseUrl = pg.url
    log(`throwaway PostgreSQL server on 127.0.0.1:${pg.port} (data in ${pg.dir})`)
  } else {
    log("using the database at DATABASE_URL")
  }
  // Rows an earlier run left in a table of the user's database are not this run's to check.
  const before = await tableIds(databaseUrl)
  if (before !== undefined && before.size > 0) log(`${tableName} already holds ${before.size} rows`)

  emulator = await startEmulator({
    validatingMs: 200,
    requestsPerSecond: 300,
    finalizingMs: 200,
    // A few requests fail the first time, as in real batches: sluice resubmits them.
    errorRate: 0.02
  })
  log(`emulator on ${emulator.url}`)

  const args = [
    "packages/runner/bin/sluice.js",
    "run",
    pipelineFile,
    "--run-dir",
    runDir,
    "--shard-size",
    "25",
    "--concurrency",
    "4",
    "--poll-interval",
    "0.25",
    "--no-cache"
  ]
  log(`sluice ${args.slice(1).join(" ")}`)
  const code = await new Promise<number>((resolve) => {
    child = spawn(process.execPath, args, {
      cwd: repo,
      stdio: "inherit",
      env: {
        ...process.env,
        DATABASE_URL: databaseUrl,
        OPENAI_BASE_URL: `${emulator!.url}/v1`,
        OPENAI_API_KEY: "facts-example-key-for-the-emulator"
      }
    })
    child.on("exit", (c, signal) => resolve(c ?? (signal !== null ? 128 : 1)))
  })
  child = undefined
  if (interrupted !== undefined) {
    // The emulator (and a throwaway server) stop with this script, so the run cannot be resumed.
    log(`interrupted; sluice exited with ${code}`)
    return 130
  }
  if (code !== 0) {
    log(`sluice exited with ${code}; the run directory is ${runDir}`)
    return code
  }

  const table = await readTable(databaseUrl)
  const parquet = await readParquet()
  log(`run directory ${runDir}: ${journalReport()}`)
  log(`PostgreSQL table ${tableName}: ${table.count} rows; the first three by key:`)
  for (const s of table.samples) {
    const summary = String(s["summary"])
    log(`  ${String(s["key"]).padEnd(20)} ${String(s["sentiment"]).padEnd(8)} ${String(s["fact_count"]).padStart(2)} fact${s["fact_count"] === 1 ? " " : "s"}  ${summary.length > 60 ? `${summary.slice(0, 57)}...` : summary}`)
  }
  log(`Parquet ${parquetDir}: ${parquet.parts.length} part files, ${parquet.rows.length} rows`)

  const tableSet = checkRows(`table ${tableName}`, table.rows)
  const parquetSet = checkRows(`parquet ${parquetDir}`, parquet.rows)
  for (const id of parquetSet) if (!tableSet.has(id)) problem(`${id} is in the Parquet dataset but not in the table`)
  for (const id of tableSet) {
    // A row an earlier run left in the table is not this run's.
    if (!parquetSet.has(id) && !(before?.has(id) ?? false)) problem(`${id} is in the table but not in the Parquet dataset`)
  }

  if (problems.length > 0) {
    for (const p of problems) log(`PROBLEM ${p}`)
    return 1
  }
  log(`OK: the table and the Parquet dataset hold the same ${parquetSet.size} rows, each once, with their lineage`)
  return 0
}

let exitCode = 1
try {
  exitCode = await main()
} catch (e) {
  // Effect's errors (a SqlError, say) keep what went wrong in their cause.
  const messages: Array<string> = []
  for (let c: unknown = e; c !== undefined && c !== null && messages.length < 4; c = (c as { cause?: unknown }).cause) {
    messages.push(c instanceof Error ? c.message : String(c))
  }
  log(`failed: ${messages.join(": ")}`)
} finally {
  await stopServers()
}
process.exit(exitCode)

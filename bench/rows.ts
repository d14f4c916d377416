/**
 * `npm run bench:rows`: the row browser's index (RunRows) over a generated run directory of
 * 1,000,000 rows (bench/rows-run.ts; no provider). Measures opening the index (one pass over
 * the journal and the files) and pages: the first, one in the middle, the last row, filtered
 * pages (by status, by failure class), a text search, and a refresh with nothing new.
 *
 *   npm run bench:rows                    1,000,000 rows
 *   npm run bench:rows -- --rows 100000   another size
 *
 * Options: --rows N, --shard-size N (1000), --keep (keep bench/.data/rows-run-<N>/: the next
 * run reuses it), --pages N (repetitions of each page, median reported; 5).
 * The generated directory is checked with `sluice status --json` (it must read as a run, with
 * the row counts the index finds). Figures go to bench/results/rows-<time>.json.
 */
import { NodeContext } from "@effect/platform-node"
import { Effect, Exit, Scope } from "effect"
import { execFileSync } from "node:child_process"
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import * as RunRows from "../packages/runner/src/RunRows.js"
import type { RowQuery } from "../packages/runner/src/RunRows.js"
import { generateRun } from "./rows-run.js"

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const arg = (name: string, fallback: number): number => {
  const at = process.argv.indexOf(name)
  return at === -1 ? fallback : Number(process.argv[at + 1])
}
const rows = arg("--rows", 1_000_000)
const shardSize = arg("--shard-size", 1000)
const repeats = arg("--pages", 5)
const keep = process.argv.includes("--keep")

const dir = join(root, "bench", ".data", `rows-run-${rows}-${shardSize}`)
const done = join(dir, ".complete")

const ms = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e6
const mb = (n: number) => Math.round(n / 1e5) / 10

const main = async () => {
  if (!existsSync(done)) {
    rmSync(dir, { recursive: true, force: true })
    const t = process.hrtime.bigint()
    const g = await generateRun(join(dir, "run"), rows, shardSize)
    writeFileSync(done, JSON.stringify(g))
    console.log(`generated ${rows.toLocaleString("en")} rows in ${g.shards} shards (${g.retried} retried, ${g.permanent} failed, ${g.invalid} invalid) in ${(ms(t) / 1000).toFixed(1)} s`)
  }
  const runDir = join(dir, "run")
  const status = JSON.parse(
    execFileSync(process.execPath, [join(root, "packages", "runner", "bin", "sluice.js"), "status", runDir, "--json"], { encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } })
  ) as { rows: number; succeeded: number; pending: number; finished: boolean }

  if (global.gc !== undefined) global.gc()
  const heapBefore = process.memoryUsage()
  const scope = Effect.runSync(Scope.make())
  const t0 = process.hrtime.bigint()
  const index = await Effect.runPromise(RunRows.open(runDir).pipe(Scope.extend(scope), Effect.provide(NodeContext.layer)))
  const openMs = ms(t0)
  if (global.gc !== undefined) global.gc()
  const heapAfter = process.memoryUsage()

  const time = async (query: RowQuery, times_ = repeats) => {
    const times: Array<number> = []
    let page: RunRows.RowPage | undefined
    for (let k = 0; k < times_; k++) {
      const t = process.hrtime.bigint()
      page = await Effect.runPromise(index.page(query))
      times.push(ms(t))
    }
    times.sort((a, b) => a - b)
    return { ms: times[Math.floor(times.length / 2)]!, max: times[times.length - 1]!, rows: page!.rows.length, total: page!.total, first: page!.rows[0]?.index ?? null }
  }
  const size = index.size()
  const pages = {
    first: await time({ offset: 0, limit: 50 }),
    middle: await time({ offset: Math.floor(size / 2), limit: 50 }),
    lastRow: await time({ offset: size - 1, limit: 50 }),
    failedLast: await time({ offset: 1_000_000_000, limit: 50, status: "failed" }).then(async (p) => time({ offset: Math.max(0, (p.total ?? 1) - 1), limit: 50, status: "failed" })),
    classMiddle: await time({ offset: Math.floor(status.rows / 200), limit: 50, failureClass: "permanent" }),
    pendingNone: await time({ offset: 0, limit: 50, status: "pending" }),
    // Text searches read the rows as they go (once each: a miss reads the whole run).
    searchMiddle: await time({ offset: 0, limit: 50, q: `row-${Math.floor(rows / 2)}` }, 1),
    searchKeyLast: await time({ offset: 0, limit: 1, q: `row-${rows - 1}` }, 1),
    searchMiss: await time({ offset: 0, limit: 50, q: "no such text" }, 1)
  }
  const t1 = process.hrtime.bigint()
  await Effect.runPromise(index.refresh)
  const refreshMs = ms(t1)
  await Effect.runPromise(Scope.close(scope, Exit.void))

  const figures = {
    rows: size,
    status,
    openMs,
    indexBytes: index.bytes(),
    bytesPerRow: index.bytes() / size,
    heapDeltaMb: mb(heapAfter.heapUsed - heapBefore.heapUsed + heapAfter.arrayBuffers - heapBefore.arrayBuffers),
    rssMb: mb(heapAfter.rss),
    pages,
    refreshMs
  }
  const table = [
    ["rows in the index", size.toLocaleString("en"), `sluice status: ${status.rows.toLocaleString("en")} rows`],
    ["open (build the index)", `${(openMs / 1000).toFixed(2)} s`, `${mb(index.bytes())} MB of arrays, ${figures.bytesPerRow.toFixed(1)} B/row; heap+buffers +${figures.heapDeltaMb} MB`],
    ...Object.entries(pages).map(([name, p]) => [
      `page: ${name}`,
      `${p.ms.toFixed(1)} ms`,
      `max ${p.max.toFixed(1)} ms; ${p.rows} rows from #${p.first}, total ${p.total}${name.startsWith("search") ? "" : p.max < 1000 ? " (under 1 s)" : " (OVER the 1 s target)"}`
    ]),
    ["refresh, nothing new", `${refreshMs.toFixed(1)} ms`, ""]
  ]
  for (const [a, b, c] of table) console.log(`${a!.padEnd(26)} ${b!.padStart(10)}   ${c}`)
  mkdirSync(join(root, "bench", "results"), { recursive: true })
  const out = join(root, "bench", "results", `rows-${new Date().toISOString().replace(/[:.]/g, "-")}.json`)
  writeFileSync(out, JSON.stringify(figures, null, 2))
  console.log(`figures: ${out}`)
  if (status.rows !== size) throw new Error(`the index holds ${size} rows, sluice status counts ${status.rows}`)
  if (!keep) rmSync(dir, { recursive: true, force: true })
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})

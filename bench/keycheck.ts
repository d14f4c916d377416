/**
 * What the duplicate-key check costs a run whose rows have keys of their own (every row gets
 * a key record at planning; once planned, the records are sorted and grouped):
 *
 *   npx tsx bench/keycheck.ts [--rows 1000000] [--max-run-records N]
 *
 * In one process, on the bench dataset (~1 KB rows, unique keys): plans the rows with the
 * bench pipeline into a fresh run directory (nothing is submitted), then runs the check.
 * Prints the plan time, the time the planner spent on key records (the same records written
 * in a bare loop), the check's time, the records' size on disk, and the peak RSS of each step.
 * Memory is bounded by the sort's runs (64 MB of records by default), not by the row count:
 * `--max-run-records` makes the runs smaller to show it.
 */
import { Path } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { OpenAiBatch } from "@sluice/providers"
import { Duration, Effect, Scope } from "effect"
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import * as DuplicateKeys from "../packages/runner/src/DuplicateKeys.js"
import * as RecordFile from "../packages/runner/src/internal/RecordFile.js"
import * as Journal from "../packages/runner/src/Journal.js"
import * as KeyCheck from "../packages/runner/src/KeyCheck.js"
import * as Outputs from "../packages/runner/src/Outputs.js"
import * as Planner from "../packages/runner/src/Planner.js"
import * as Pricing from "../packages/runner/src/Pricing.js"
import * as ResponseCache from "../packages/runner/src/ResponseCache.js"
import type { RunContext, StageRuntime } from "../packages/runner/src/RunContext.js"
import * as RunDir from "../packages/runner/src/RunDir.js"
import * as RunState from "../packages/runner/src/RunState.js"
import * as Runner from "../packages/runner/src/Runner.js"
import { ensureDataset, rowId } from "./dataset.js"

const option = (name: string) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : undefined)
const rows = Number(option("--rows") ?? 1_000_000)
const maxRunRecords = option("--max-run-records") === undefined ? undefined : Number(option("--max-run-records"))

const bench = dirname(fileURLToPath(import.meta.url))
const dataset = join(bench, ".data", `reviews-${rows}.jsonl`)
mkdirSync(dirname(dataset), { recursive: true })
ensureDataset(dataset, rows)
const work = mkdtempSync(join(tmpdir(), "sluice-keycheck-"))
process.env["SLUICE_BENCH_SOURCE"] = resolve(dataset)
process.env["SLUICE_BENCH_SINK"] = join(work, "sink.jsonl")
process.env["SLUICE_BENCH_ON_INVALID"] = "fail"
const { default: pipeline } = await import("./pipeline.js")

let peak = 0
const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20)
const mb = (bytes: number) => `${Math.round(bytes / 1e6)} MB`
const timed = async <A>(what: string, f: () => Promise<A>) => {
  global.gc?.()
  peak = process.memoryUsage().rss
  const start = performance.now()
  const out = await f()
  const ms = performance.now() - start
  console.log(`${what.padEnd(44)} ${(ms / 1000).toFixed(2).padStart(7)} s   peak RSS ${mb(Math.max(peak, process.memoryUsage().rss))}`)
  return { out, ms }
}

const program = Effect.gen(function* () {
  const paths = RunDir.paths(join(work, "run"), yield* Path.Path)
  yield* RunDir.writeManifest(paths, {
    version: 1, runId: "bench", pipeline: "bench", fingerprint: "f", pipelineFile: null, stages: [], providers: {}, sink: null,
    createdAt: new Date().toISOString()
  })
  const journal = yield* Journal.open(paths.journal)
  const stage: StageRuntime = {
    index: 0,
    stage: pipeline.stages[0]!,
    provider: { name: "openai", limits: { maxRequests: 50_000, maxBytes: 190_000_000, oneModelPerShard: true }, encode: OpenAiBatch.encode } as never,
    before: [],
    after: [],
    next: null,
    cacheNamespace: undefined
  }
  const state = RunState.empty()
  const ctx: RunContext = {
    runId: "bench", paths, pipeline, stages: [stage], stageOf: () => stage, cache: ResponseCache.disabled, state,
    settings: { ...Runner.defaultSettings, concurrency: 1, pollInterval: Duration.seconds(1), detach: true },
    prices: Pricing.builtin,
    createLock: yield* Effect.makeSemaphore(1),
    record: (e) => Effect.map(journal.append(e), () => void RunState.apply(state, e))
  }
  const outputs = yield* Outputs.open(ctx)
  return { ctx, outputs, paths }
})

const scope = Effect.runSync(Scope.make())
const run = <A, E>(effect: Effect.Effect<A, E, any>) =>
  Effect.runPromise(effect.pipe(Scope.extend(scope), Effect.provide(NodeContext.layer)) as Effect.Effect<A, E>)

console.log(`${rows} rows of ${dataset}; run directory ${work}`)
const { ctx, outputs, paths } = await run(program)
const plan = await timed("plan (with key records)", () => run(Planner.plan(ctx, outputs, () => Effect.void)))
const keyBytes = readdirSync(paths.keys).reduce((a, f) => a + statSync(join(paths.keys, f)).size, 0)
// The same records in a bare loop: the planner's share of the check.
const records = await timed("  of which key records (bare loop)", () =>
  run(
    Effect.scoped(
      Effect.gen(function* () {
        const w = yield* RecordFile.create(join(work, "bare.keys"))
        for (let i = 0; i < rows; i++) {
          const full = w.append(DuplicateKeys.keyRecord(rowId(i), "0123456789abcdef0123", 1 + Math.floor(i / 50_000), i % 50_000, `${dataset}:${i + 1}`))
          if (full) yield* w.flush
        }
        yield* w.sync
      })
    )
  )
)
const check = await timed("check (sort, group, journal)", () =>
  run(KeyCheck.check(ctx, outputs, maxRunRecords === undefined ? {} : { maxRunRecords }))
)
clearInterval(sampler)
console.log(`key records: ${mb(keyBytes)} on disk (${(keyBytes / rows).toFixed(0)} bytes a row), deleted after the check`)
console.log(
  `cost: key records ${((100 * records.ms) / plan.ms).toFixed(1)}% of the plan, the check ${((100 * check.ms) / plan.ms).toFixed(1)}% of it; ` +
    `${ctx.state.duplicateRows} duplicates, keys checked: ${ctx.state.keysChecked}`
)
await Effect.runPromise(Scope.close(scope, { _tag: "Success", value: undefined } as never))
rmSync(work, { recursive: true, force: true })

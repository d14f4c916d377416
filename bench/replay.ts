/**
 * Journal replay, in process and nothing else: rebuilds a run's state from its journal with
 * the runner's own `loadState` (what `run`, `resume` and `status` do first) and reports the
 * time it took. Prints one JSON line: {events, shards, rows, ms}.
 *
 *   node --conditions=sluice-source --import tsx bench/replay.ts <run-dir>
 */
import { NodeContext } from "@effect/platform-node"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { join, resolve } from "node:path"
import * as RunDir from "../packages/runner/src/RunDir.js"
import { loadState } from "../packages/runner/src/Runner.js"
import { Path } from "@effect/platform"

const runDir = process.argv[2]
if (runDir === undefined) throw new Error("usage: replay.ts <run-dir>")
const journal = join(runDir, "journal.jsonl")
// With --expose-gc: the heap the replayed state keeps, apart from what loading the code took.
const gc = (globalThis as { gc?: () => void }).gc
gc?.()
const heapBefore = process.memoryUsage().heapUsed
const start = performance.now()
const state = await Effect.runPromise(Effect.flatMap(Path.Path, (path) => loadState(RunDir.paths(resolve(runDir), path))).pipe(Effect.provide(NodeContext.layer)))
const ms = performance.now() - start
gc?.()
const heapAfter = process.memoryUsage().heapUsed
const events = readFileSync(journal, "utf8").split("\n").filter((l) => l !== "").length
console.log(
  JSON.stringify({
    events,
    shards: state.shards.size,
    rows: state.rowsPlanned,
    ms,
    heapGrowthMB: gc === undefined ? null : (heapAfter - heapBefore) / 1048576
  })
)

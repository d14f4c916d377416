/**
 * A preload that records where a process's memory is, for finding what a peak is made of:
 *
 *   npm run bench -- --sluice-node-options "--import $PWD/bench/memory-sampler.mjs" …  (with SLUICE_MEMORY_LOG set)
 *   SLUICE_MEMORY_LOG=mem.jsonl NODE_OPTIONS="--import $PWD/bench/memory-sampler.mjs" sluice run …
 *
 * Every 100 ms one JSON line to $SLUICE_MEMORY_LOG: RSS, V8 heap committed and used, external
 * memory and array buffers (MB), each heap space as [committed, used], and — with
 * $SLUICE_MEMORY_RUN_DIR — how many of each journal event the run has written so far (which
 * phase the sample is in). $SLUICE_MEMORY_SNAPSHOT_MB: one heap snapshot (next to the log)
 * the first time RSS passes that many MB; it forces a full GC, so it shows what is live.
 */
import { appendFileSync, existsSync, fstatSync, openSync, readSync, writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import v8 from "node:v8"

const log = process.env["SLUICE_MEMORY_LOG"]
const runDir = process.env["SLUICE_MEMORY_RUN_DIR"]
let snapshotAt = Number(process.env["SLUICE_MEMORY_SNAPSHOT_MB"] ?? "0") * 1e6
if (log !== undefined) {
  const mb = (n) => Math.round(n / 1e6)
  const started = performance.now()
  const events = {}
  let journal
  let read = 0
  const tail = () => {
    if (runDir === undefined) return
    if (journal === undefined) {
      const path = join(runDir, "journal.jsonl")
      if (!existsSync(path)) return
      journal = openSync(path, "r")
    }
    const size = fstatSync(journal).size
    if (size <= read) return
    const bytes = Buffer.alloc(size - read)
    readSync(journal, bytes, 0, bytes.length, read)
    read = size
    for (const m of bytes.toString().matchAll(/"_tag":"(\w+)"/g)) events[m[1]] = (events[m[1]] ?? 0) + 1
  }
  writeFileSync(log, "")
  setInterval(() => {
    tail()
    const m = process.memoryUsage()
    const spaces = Object.fromEntries(
      v8.getHeapSpaceStatistics().map((s) => [s.space_name.replace(/_space$/, ""), [mb(s.space_size), mb(s.space_used_size)]])
    )
    const sample = { t: Math.round(performance.now() - started), rss: mb(m.rss), heapTotal: mb(m.heapTotal), heapUsed: mb(m.heapUsed), external: mb(m.external), arrayBuffers: mb(m.arrayBuffers), spaces, events: { ...events } }
    appendFileSync(log, JSON.stringify(sample) + "\n")
    if (snapshotAt > 0 && m.rss > snapshotAt) {
      snapshotAt = 0
      const file = v8.writeHeapSnapshot(join(dirname(log), `peak-${process.pid}.heapsnapshot`))
      appendFileSync(log, JSON.stringify({ t: sample.t, snapshot: file }) + "\n")
    }
  }, 100).unref()
}

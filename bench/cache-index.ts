/**
 * The response cache's index at scale: the memory it keeps per stored answer, the time `open`
 * takes, and the cost of a lookup (a miss, as when planning a new run; a hit, as when a run is
 * answered from the cache), in process.
 *
 *   node --expose-gc --conditions=sluice-source --import tsx bench/cache-index.ts --entries 1000000 [--segments 4] [--lookups 1000000]
 *
 * The cache is generated once into `bench/.data/cache-<entries>-<segments>/` in the cache's own
 * format (tiny answers: the index is measured, not the answers), and kept for the next run.
 * `--sluice-root DIR` measures the ResponseCache of another checkout (its source, through tsx).
 */
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { closeSync, existsSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from "node:fs"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback
}
const entries = Number(arg("entries", "1000000"))
const segmentCount = Number(arg("segments", "4"))
const lookups = Math.min(Number(arg("lookups", "1000000")), entries)
const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(arg("sluice-root", path.join(here, "..")))
const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error("run with --expose-gc")

const keyOf = (i: number): string => createHash("sha256").update(`entry ${i}`).digest("hex")
const answerOf = (i: number): string => `{"text":"a${i}","finishReason":"stop","usage":null,"raw":null}`

const dir = path.join(here, ".data", `cache-${entries}-${segmentCount}`)
if (!existsSync(dir)) {
  const t0 = Date.now()
  const tmpDir = dir + ".tmp"
  rmSync(tmpDir, { recursive: true, force: true })
  mkdirSync(path.join(tmpDir, "v1"), { recursive: true })
  const perSegment = Math.ceil(entries / segmentCount)
  for (let s = 0; s < segmentCount; s++) {
    const name = path.join(tmpDir, "v1", `seg-${1700000000000 + s}-1-0000000${s}`)
    const data = openSync(name + ".jsonl", "w")
    const idx = openSync(name + ".idx", "w")
    let at = 0
    let dataChunk = ""
    let idxChunk = ""
    for (let i = s * perSegment; i < Math.min(entries, (s + 1) * perSegment); i++) {
      const a = answerOf(i)
      idxChunk += `${keyOf(i)} ${at} ${a.length}\n`
      dataChunk += a + "\n"
      at += a.length + 1
      if (idxChunk.length > 1 << 20) {
        writeSync(data, dataChunk)
        writeSync(idx, idxChunk)
        dataChunk = idxChunk = ""
      }
    }
    writeSync(data, dataChunk)
    writeSync(idx, idxChunk)
    closeSync(data)
    closeSync(idx)
  }
  renameSync(tmpDir, dir)
  console.log(`generated ${dir} in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
}

const ResponseCache = (await import(pathToFileURL(path.join(root, "packages/runner/src/ResponseCache.ts")).href)) as typeof import("../packages/runner/src/ResponseCache.js")

// Keys made before measuring (hashing is not the index's cost).
const hitKeys: Array<string> = []
const missKeys: Array<string> = []
const stride = Math.max(1, Math.floor(entries / lookups))
for (let i = 0; i < lookups; i++) hitKeys.push(keyOf((i * stride) % entries))
for (let i = 0; i < lookups; i++) missKeys.push(keyOf(entries + i))
const shuffled = hitKeys.slice()
for (let i = shuffled.length - 1; i > 0; i--) {
  const j = (i * 2654435761) % (i + 1)
  const t = shuffled[i]!
  shuffled[i] = shuffled[j]!
  shuffled[j] = t
}

const mb = (n: number) => (n / 1048576).toFixed(1)
const cpu = () => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}
const timed = (label: string, keys: Array<string>, f: (k: string) => unknown, expectHit: boolean) => {
  const c0 = cpu()
  const t0 = performance.now()
  let found = 0
  for (const k of keys) if (f(k) !== undefined && f !== undefined) found++
  const wall = (performance.now() - t0) / 1000
  const c = cpu() - c0
  if (found !== (expectHit ? keys.length : 0)) throw new Error(`${label}: ${found} found of ${keys.length}`)
  console.log(`${label.padEnd(34)} ${keys.length} lookups  wall ${wall.toFixed(2)} s  CPU ${c.toFixed(2)} s  ${((wall / keys.length) * 1e6).toFixed(2)} µs each`)
}

gc()
const m0 = process.memoryUsage()
let peakRss = 0
const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 20)
await Effect.runPromise(
  Effect.scoped(
    Effect.gen(function* () {
      const c0 = cpu()
      const t0 = performance.now()
      const cache = yield* ResponseCache.open(dir)
      const openWall = (performance.now() - t0) / 1000
      const openCpu = cpu() - c0
      peakRss = Math.max(peakRss, process.memoryUsage().rss)
      gc()
      const m1 = process.memoryUsage()
      const kept = m1.heapUsed + m1.arrayBuffers - (m0.heapUsed + m0.arrayBuffers)
      console.log(`root ${root}`)
      console.log(`${cache.size()} entries in ${segmentCount} segments; open: wall ${openWall.toFixed(2)} s, CPU ${openCpu.toFixed(2)} s, RSS peak during open ${mb(peakRss)} MB (before ${mb(m0.rss)})`)
      console.log(`index kept: ${mb(kept)} MB (heap ${mb(m1.heapUsed - m0.heapUsed)}, array buffers ${mb(m1.arrayBuffers - m0.arrayBuffers)}), ${(kept / cache.size()).toFixed(1)} bytes per entry`)
      timed("misses, read()", missKeys, (k) => cache.read(k), false)
      timed("misses, has()", missKeys, (k) => (cache.has(k) ? true : undefined), false)
      timed("hits in stored order, read()", hitKeys, (k) => cache.read(k), true)
      timed("hits in random order, read()", shuffled, (k) => cache.read(k), true)
      timed("hits in stored order, has()", hitKeys, (k) => (cache.has(k) ? true : undefined), true)
    })
  )
)
clearInterval(sampler)

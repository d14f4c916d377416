/**
 * `npm run bench`: sluice against the plain-SDK approach and against bare-loop floors, on the
 * same synthetic data, with the emulator at full speed in a process of its own.
 *
 *   npm run bench                      200,000 rows of ~1 KB
 *   npm run bench -- --rows 1000000    the big run
 *   npm run bench -- --quick           20,000 rows: a smoke run of a minute or two
 *   npm run bench -- --rows 10000000 --row-chars 250
 *                                      the 10-million-row run: above 2,000,000 rows only the end-to-end
 *                                      run (with `sluice status` timed during it) and start-up by default
 *
 * Options: --shard-size N (50000) --concurrency N (4) --poll-interval S|adaptive (0.2; adaptive: sluice
 *          runs without --poll-interval, on its own schedule, and the baseline polls every 0.2 s) --profile
 *          (one more sluice run under `node --cpu-prof`, summarised) --growth / --no-growth
 *          (also run sluice and the baseline at 100,000 rows for the RSS growth target; on by
 *          default above 100,000 rows) --skip floors,e2e,isolated,baseline,resume,replay,startup
 *          --sluice-node-options "…" (NODE_OPTIONS of sluice's processes only, e.g. --max-old-space-size=256)
 *          --real-tokens (the emulator counts usage with gpt-tokenizer, not ~4 characters a token)
 *          --startup-runs N (7: rounds of `sluice --help`, `--version`, `status <run-dir>`; medians)
 *          --sluice-root DIR (measure the sluice build of another checkout, to compare builds)
 *          --keep (keep the work directory under bench/.data) --no-wait-quiet / --quiet-timeout S
 *          (each measured child first waits, up to 120 s, for the machine to be quiet)
 *          --row-chars N (1000: the size of the rows' text) --status-every S (`sluice status <run-dir>`
 *          timed every S seconds during the end-to-end run; 30 above 2,000,000 rows, else off)
 *          --min-free-gb G (2: the end-to-end run is SIGKILLed, which sluice survives, if the disk fills).
 *
 * Every measured program is a child process: its wall time, peak RSS and CPU come from GNU
 * time (or /proc), and sluice's phases from its journal, tailed as it grows. Figures go to
 * bench/results/<timestamp>.json; see BENCHMARKS.md for what each one means.
 */
import * as childProcess from "node:child_process"
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statfsSync, statSync, writeFileSync } from "node:fs"
import { once } from "node:events"
import type { WriteStream } from "node:fs"
import { createInterface } from "node:readline"
import os from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { DEFAULT_CHARS, datasetPath, ensureDataset } from "./dataset.js"
import {
  type ChildResult,
  countLines,
  distinctCustomIds,
  hasGnuTime,
  peakIn,
  procCpuSeconds,
  procStatus,
  runChild as runChildNow,
  waitQuiet
} from "./measure.js"
import type { ChildSpec } from "./measure.js"
import { render as renderProfile, summarise as summariseProfile } from "./profile-summary.js"

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const bench = join(root, "bench")
// `--sluice-root DIR` measures the sluice of another checkout (built, with its own
// node_modules) against the same emulator, baseline and floors — to compare builds. The
// pipeline file is copied there so that it imports that checkout's @sluice/core.
const sluiceRoot = resolve(process.argv.includes("--sluice-root") ? process.argv[process.argv.indexOf("--sluice-root") + 1]! : root)
const cli = join(sluiceRoot, "packages", "runner", "bin", "sluice.js")
const pipelineFile = (() => {
  if (sluiceRoot === root) return join(bench, "pipeline.ts")
  const copy = join(sluiceRoot, "bench", "pipeline.ts")
  mkdirSync(dirname(copy), { recursive: true })
  writeFileSync(copy, readFileSync(join(bench, "pipeline.ts")))
  return copy
})()

// ------------------------------------------------------------------------------------------
// Options
// ------------------------------------------------------------------------------------------

const argv = process.argv.slice(2)
const flag = (name: string) => argv.includes(name)
const option = (name: string): string | undefined => {
  const i = argv.indexOf(name)
  return i === -1 ? undefined : argv[i + 1]
}
const quick = flag("--quick")
const rows = Number(option("--rows") ?? (quick ? 20_000 : 200_000))
const shardSize = Number(option("--shard-size") ?? (quick ? 5_000 : 50_000))
const concurrency = Number(option("--concurrency") ?? 4)
const adaptivePoll = option("--poll-interval") === "adaptive"
const pollInterval = adaptivePoll ? 0.2 : Number(option("--poll-interval") ?? 0.2)
/** sluice's poll flag: a fixed interval, or none (its adaptive schedule). */
const pollFlags = adaptivePoll ? [] : ["--poll-interval", String(pollInterval)]
const profile = flag("--profile")
const quietWait = !flag("--no-wait-quiet")
const quietTimeoutS = Number(option("--quiet-timeout") ?? 120)
const keep = flag("--keep")
const GROWTH_FROM = 100_000
/**
 * Above this many rows the benchmark by default runs sluice end to end (and the start-up and
 * replay measurements) only: the SDK baseline holds every row and every answer in memory (2.3 GB
 * at 1,000,000 rows), and the floors, the isolated runs and the resume run would each repeat the
 * big run's work and its disk. `--skip` given explicitly decides instead.
 */
const BIG = 2_000_000
const big = rows > BIG
const BIG_SKIP = "floors,isolated,baseline,resume"
const growth = flag("--growth") || (!flag("--no-growth") && !quick && !big && rows > GROWTH_FROM)
const skip = new Set((option("--skip") ?? (big ? BIG_SKIP : "")).split(",").filter((s) => s !== ""))
const rowChars = Number(option("--row-chars") ?? DEFAULT_CHARS)
/** `sluice status <run-dir>` timed every this many seconds during the end-to-end run (0: never). */
const statusEveryS = Number(option("--status-every") ?? (big ? 30 : 0))
const minFreeGB = Number(option("--min-free-gb") ?? 2)
if (!Number.isInteger(rows) || rows <= 0) throw new Error(`--rows must be a positive integer`)

const stamp = new Date().toISOString().replace(/[:.]/g, "-")
const dataDir = join(bench, ".data")
const work = join(dataDir, `work-${stamp}`)
const resultsDir = join(bench, "results")
mkdirSync(work, { recursive: true })
mkdirSync(resultsDir, { recursive: true })

const say = (text: string) => process.stderr.write(`bench: ${text}\n`)

/**
 * Every measured child starts on a quiet machine if it can: other processes on a 2-core box
 * (a test suite, a compiler) would be measured as sluice's slowness. What other processes
 * used during the run is recorded with it anyway (`foreignCores`).
 */
const quietLog: Array<{ label: string; waitedS: number; quiet: boolean }> = []
const runChild = async (spec: ChildSpec) => {
  if (quietWait) {
    const q = await waitQuiet({ threshold: 0.1, seconds: 3, timeoutS: quietTimeoutS, say })
    quietLog.push({ label: spec.label, waitedS: q.waitedS, quiet: q.quiet })
  }
  const r = await runChildNow(spec)
  if (r.foreignCores !== null && r.foreignCores > 0.1) {
    say(`note: other processes used ${r.foreignCores.toFixed(2)} cores on average during ${spec.label}`)
  }
  return r
}
const mb = (kb: number) => kb / 1024
const secs = (ms: number) => ms / 1000

// ------------------------------------------------------------------------------------------
// The emulator, in its own process
// ------------------------------------------------------------------------------------------

interface Emulator {
  readonly url: string
  readonly pid: number
  readonly child: ChildProcess
}

let emulator: Emulator | undefined

const startEmulator = async (): Promise<Emulator> => {
  const child = spawn(process.execPath, ["--conditions=sluice-source", "--import", "tsx", join(bench, "emulator-server.ts"), "--state-dir", join(work, "emulator"), ...(flag("--real-tokens") ? ["--real-tokens"] : [])], {
    cwd: root,
    stdio: ["pipe", "pipe", "inherit"]
  })
  const [line] = (await once(child.stdout!, "data")) as [Buffer]
  const info = JSON.parse(line.toString().split("\n")[0]!) as { url: string; pid: number }
  return { url: info.url, pid: info.pid, child }
}

const stopEmulator = async () => {
  if (emulator === undefined) return
  const e = emulator
  emulator = undefined
  e.child.kill("SIGTERM")
  await once(e.child, "exit")
}

const call = async <A>(path: string, init?: RequestInit): Promise<A> => {
  const response = await fetch(`${emulator!.url}${path}`, {
    ...init,
    headers: { authorization: "Bearer bench", "content-type": "application/json", ...(init?.headers ?? {}) }
  })
  const text = await response.text()
  if (!response.ok) throw new Error(`${init?.method ?? "GET"} ${path} -> ${response.status}: ${text.slice(0, 300)}`)
  return JSON.parse(text) as A
}

const resetEmulator = () => call("/_emulator/reset", { method: "POST" })

interface WireBatch {
  readonly id: string
  readonly status: string
  readonly output_file_id: string | null
  readonly metadata: Record<string, string> | null
}

const listBatches = async (): Promise<Array<WireBatch>> => {
  const out: Array<WireBatch> = []
  let after: string | undefined
  for (;;) {
    const page = await call<{ data: Array<WireBatch>; has_more: boolean; last_id?: string }>(
      `/v1/batches?limit=100${after === undefined ? "" : `&after=${after}`}`
    )
    out.push(...page.data)
    if (!page.has_more || page.data.length === 0) return out
    after = page.last_id ?? page.data[page.data.length - 1]!.id
  }
}

interface LedgerSummary {
  readonly batches: ReadonlyArray<{ id: string; shard: string | null; requests: number }>
}

const ledger = async (): Promise<LedgerSummary> => {
  const l = await call<{ batches: Array<{ id: string; metadata: Record<string, string> | null; custom_ids: Array<string> }> }>(
    "/_emulator/ledger"
  )
  return {
    batches: l.batches.map((b) => ({ id: b.id, shard: b.metadata?.["sluice_shard"] ?? null, requests: b.custom_ids.length }))
  }
}

/**
 * Provider calls of one measured run, by route (the emulator counts them: `GET /_emulator/requests`,
 * reset before each run), in all and per shard.
 */
type Calls = {
  readonly shards: number
  readonly total: Record<string, number>
  readonly perShard: Record<string, number>
}

const callsOf = async (shards: number): Promise<Calls> => {
  const total = await call<Record<string, number>>("/_emulator/requests")
  const perShard = Object.fromEntries(Object.entries(total).map(([route, n]) => [route, Math.round((n / shards) * 100) / 100]))
  return { shards, total, perShard }
}

/** "POST /v1/files 1 · POST /v1/batches 1 · …", and whether any listing happened. */
const describeCalls = (c: Calls): string => {
  const listed = Object.keys(c.total).some((r) => /^GET .*\/(files|batches)$/.test(r))
  return `${Object.entries(c.perShard).map(([route, n]) => `${route} ${n}`).join(" · ")}${listed ? "" : " (no listing)"}`
}

const emulatorCpu = () => procCpuSeconds(emulator!.pid) ?? 0

// ------------------------------------------------------------------------------------------
// Runs
// ------------------------------------------------------------------------------------------

const tsx = (script: string, ...args: Array<string>) => ["--import", "tsx", join(bench, script), ...args]
/** A bench script that imports sluice's sources (not the build): the workspace's source condition. */
const tsxSrc = (script: string, ...args: Array<string>) => ["--conditions=sluice-source", ...tsx(script, ...args)]

// Each measured run writes a response cache of its own, as a first run does by default: its
// cost is measured, and no run is answered from another's.
let caches = 0
const sluiceEnv = (source: string, sink: string, onInvalid: "skip" | "fail" = "skip"): Record<string, string> => ({
  OPENAI_BASE_URL: `${emulator!.url}/v1`,
  OPENAI_API_KEY: "bench-key-for-the-emulator",
  SLUICE_CACHE_DIR: join(work, `cache-${++caches}`),
  SLUICE_BENCH_SOURCE: source,
  SLUICE_BENCH_SINK: sink,
  SLUICE_BENCH_ON_INVALID: onInvalid,
  // The runner's time and memory, not the compiler's (a type check costs seconds and ~200 MB once).
  SLUICE_TYPECHECK: "off",
  // --sluice-node-options: V8 settings for sluice's processes alone (the emulator and the baseline keep theirs).
  ...(sluiceNodeOptions === undefined ? {} : { NODE_OPTIONS: sluiceNodeOptions })
})
const sluiceNodeOptions = option("--sluice-node-options")

const sluiceRunArgs = (runDir: string, extra: Array<string> = []) => [
  cli,
  "run",
  pipelineFile,
  "--run-dir",
  runDir,
  "--shard-size",
  String(shardSize),
  "--concurrency",
  String(concurrency),
  ...pollFlags,
  ...extra
]

const check = (ok: boolean, what: string) => {
  if (!ok) throw new Error(`check failed: ${what}`)
}

const manifestRunId = (runDir: string): string => (JSON.parse(readFileSync(join(runDir, "manifest.json"), "utf8")) as { runId: string }).runId

interface Phase {
  readonly name: string
  readonly fromMs: number
  readonly toMs: number
  readonly ms: number
  readonly rows: number
  readonly rowsPerS: number
  readonly peakRssMB: number
  readonly note?: string
}

/** Union length of [from, to] intervals (ms). */
const unionMs = (intervals: Array<[number, number]>): number => {
  const sorted = intervals.filter(([a, b]) => b >= a).sort((x, y) => x[0] - y[0])
  let total = 0
  let cur: [number, number] | undefined
  for (const [a, b] of sorted) {
    if (cur === undefined || a > cur[1]) {
      if (cur !== undefined) total += cur[1] - cur[0]
      cur = [a, b]
    } else cur[1] = Math.max(cur[1], b)
  }
  if (cur !== undefined) total += cur[1] - cur[0]
  return total
}

const firstT = (r: ChildResult, tag: string) => r.journal.find((e) => e.tag === tag)?.t
const lastT = (r: ChildResult, tag: string) => r.journal.filter((e) => e.tag === tag).at(-1)?.t

const phase = (r: ChildResult, name: string, from: number | undefined | null, to: number | undefined | null, n: number, note?: string): Phase | undefined => {
  if (from === undefined || from === null || to === undefined || to === null) return undefined
  const ms = Math.max(0, to - from)
  return {
    name,
    fromMs: from,
    toMs: to,
    ms,
    rows: n,
    rowsPerS: ms > 0 ? n / secs(ms) : 0,
    // No sample inside a very short phase: unknown, not zero.
    peakRssMB: peakIn(r.samples, from, to) === 0 ? Number.NaN : mb(peakIn(r.samples, from, to)),
    ...(note === undefined ? {} : { note })
  }
}

/** Collection's busy time: the union of every shard's [Terminal, Collected] interval. */
const collectBusy = (r: ChildResult) => {
  const terminal = new Map<string, number>()
  const intervals: Array<[number, number]> = []
  let collectedRows = 0
  for (const e of r.journal) {
    if (e.tag === "Terminal" && e.shard !== undefined) terminal.set(e.shard, e.t)
    if (e.tag === "Collected" && e.shard !== undefined) {
      const from = terminal.get(e.shard)
      collectedRows += Number(e.event["succeeded"] ?? 0)
      if (from !== undefined) intervals.push([from, e.t])
    }
  }
  return { ms: unionMs(intervals), rows: collectedRows, intervals }
}

const e2ePhases = (r: ChildResult, n: number): Array<Phase> => {
  const busy = collectBusy(r)
  const list = [
    phase(r, "startup (spawn → journal opened)", 0, r.journalSeenAt, n),
    phase(r, "plan (journal opened → PlanComplete)", r.journalSeenAt, lastT(r, "PlanComplete"), n, "overlaps submission and collection"),
    phase(r, "submit (first SubmitIntent → last Created)", firstT(r, "SubmitIntent"), lastT(r, "Created"), n),
    phase(r, "poll (first Created → last Terminal)", firstT(r, "Created"), lastT(r, "Terminal"), n),
    phase(r, "collect window (first Terminal → last Collected)", firstT(r, "Terminal"), lastT(r, "Collected"), n),
    busy.ms > 0
      ? {
          ...phase(r, "collect busy (union of Terminal→Collected per shard)", firstT(r, "Terminal"), lastT(r, "Collected"), busy.rows)!,
          ms: busy.ms,
          rowsPerS: busy.rows / secs(busy.ms)
        }
      : undefined,
    phase(r, "shutdown (last Collected → exit)", lastT(r, "Collected"), r.wallMs, n)
  ]
  return list.filter((p): p is Phase => p !== undefined)
}

interface RunFigures {
  readonly label: string
  readonly rows: number
  readonly wallS: number
  readonly rowsPerS: number
  readonly peakRssMB: number
  readonly cpuS: number | null
  readonly exitCode: number | null
  readonly signal: string | null
  readonly phases?: ReadonlyArray<Phase>
  readonly emulator?: { readonly cpuS: number; readonly peakRssMB: number; readonly cpuPerWall: number }
  readonly internalMs?: number
  readonly [k: string]: unknown
}

const figures = (r: ChildResult, n: number, extra: Record<string, unknown> = {}): RunFigures => ({
  label: r.label,
  rows: n,
  wallS: secs(r.wallMs),
  rowsPerS: n / secs(r.wallMs),
  peakRssMB: mb(r.peakRssKB),
  cpuS: r.cpuUserS === null ? null : r.cpuUserS + (r.cpuSysS ?? 0),
  exitCode: r.exitCode,
  signal: r.signal,
  foreignCores: r.foreignCores,
  ...(r.observed === null
    ? {}
    : { emulator: { cpuS: r.observed.cpuS, peakRssMB: mb(r.observed.peakRssKB), cpuPerWall: r.observed.cpuS / secs(r.wallMs) } }),
  ...extra
})

const logPath = (name: string) => join(work, `${name}.log`)

/** Bytes of the files under a directory. */
const duBytes = (dir: string): number =>
  readdirSync(dir, { withFileTypes: true, recursive: true }).reduce((a, e) => (e.isFile() ? a + statSync(join(e.parentPath ?? e.path, e.name)).size : a), 0)

const startupRuns = Number(option("--startup-runs") ?? 7)
const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

/** One start-up command's figures: medians over the runs, and every run's own. */
interface StartupFigures {
  readonly label: string
  readonly runs: number
  readonly wallS: number
  readonly peakRssMB: number
  /** Median user + system CPU seconds: less disturbed by a busy machine than the wall time. */
  readonly cpuS: number | null
  readonly walls: ReadonlyArray<number>
  readonly rssMB: ReadonlyArray<number>
  readonly foreignCores: number | null
}

/**
 * `sluice --help`, `sluice --version` and, given the end-to-end run's directory, `sluice status`
 * as a user types it (refreshing from the provider: here every batch has ended). The machine is
 * waited for once; the commands then alternate, `startupRuns` rounds, so that a change of load
 * touches all of them alike. Wall time from spawn to exit, peak RSS from GNU time.
 */
const startup = async (run: { readonly runDir: string; readonly env: Record<string, string> } | undefined) => {
  const commands: Array<{ key: string; args: ReadonlyArray<string>; env?: Record<string, string> }> = [
    { key: "help", args: ["--help"] },
    { key: "version", args: ["--version"] },
    ...(run === undefined ? [] : [{ key: "status", args: ["status", run.runDir], env: run.env }])
  ]
  if (quietWait) {
    const q = await waitQuiet({ threshold: 0.1, seconds: 3, timeoutS: quietTimeoutS, say })
    quietLog.push({ label: "startup", waitedS: q.waitedS, quiet: q.quiet })
  }
  const got = new Map<string, Array<Awaited<ReturnType<typeof runChildNow>>>>(commands.map((c) => [c.key, []]))
  for (let i = 0; i < startupRuns; i++) {
    for (const c of commands) {
      const r = await runChildNow({ label: `startup-${c.key}`, args: [cli, ...c.args], ...(c.env === undefined ? {} : { env: c.env }), logFile: logPath(`startup-${c.key}`) })
      if (r.exitCode !== 0) throw new Error(`sluice ${c.args.join(" ")} exited ${r.exitCode}: see ${logPath(`startup-${c.key}`)}`)
      got.get(c.key)!.push(r)
    }
  }
  const figures: Record<string, StartupFigures> = {}
  for (const [key, rs] of got) {
    const foreign = rs.map((r) => r.foreignCores).filter((f): f is number => f !== null)
    figures[key] = {
      label: `sluice ${commands.find((c) => c.key === key)!.args[0]}`,
      runs: rs.length,
      wallS: median(rs.map((r) => secs(r.wallMs))),
      peakRssMB: median(rs.map((r) => mb(r.peakRssKB))),
      cpuS: rs.every((r) => r.cpuUserS !== null && r.cpuSysS !== null) ? median(rs.map((r) => r.cpuUserS! + r.cpuSysS!)) : null,
      walls: rs.map((r) => Math.round(r.wallMs) / 1000),
      rssMB: rs.map((r) => Math.round(mb(r.peakRssKB))),
      foreignCores: foreign.length === 0 ? null : foreign.reduce((a, b) => a + b, 0) / foreign.length
    }
    say(`start-up, ${figures[key]!.label}: median ${figures[key]!.wallS.toFixed(2)} s, ${figures[key]!.cpuS?.toFixed(2) ?? "?"} CPU s, ${figures[key]!.peakRssMB.toFixed(0)} MB (${rs.length} runs)`)
  }
  return figures
}

/** When each shard reached each step (s after spawn), from the tailed journal. */
const shardTimeline = (r: ChildResult) => {
  const out: Record<string, Record<string, number>> = {}
  for (const e of r.journal) {
    if (e.shard === undefined) continue
    const s = (out[e.shard] ??= {})
    const key = e.tag === "StatusChanged" ? `status:${String(e.event["status"])}` : e.tag
    s[key] ??= Math.round(e.t) / 1000
  }
  const planComplete = lastT(r, "PlanComplete")
  return { journalOpened: r.journalSeenAt === null ? null : r.journalSeenAt / 1000, planComplete: planComplete === undefined ? null : planComplete / 1000, shards: out }
}

const freeGB = () => {
  const f = statfsSync(work)
  return (f.bavail * f.bsize) / 1e9
}

/** How far the run was at `t` ms after spawn: shards planned, created, terminal, collected. */
const progressAt = (r: ChildResult, t: number) => {
  const count = (tag: string) => r.journal.filter((e) => e.tag === tag && e.t <= t).length
  return { planned: count("ShardPlanned"), planComplete: count("PlanComplete") > 0, created: count("Created"), terminal: count("Terminal"), collected: count("Collected") }
}

/**
 * RSS over time: the run cut into about 24 equal steps (at least 5 s), each with the highest
 * and the last RSS sampled in it (every 50 ms), the shards planned/created/terminal/collected by
 * its end, and the disk's free space then.
 */
const rssOverTime = (r: ChildResult, disk: ReadonlyArray<{ t: number; freeGB: number }>) => {
  const stepMs = Math.max(5000, Math.ceil(r.wallMs / 24 / 5000) * 5000)
  const out = []
  for (let from = 0; from < r.wallMs; from += stepMs) {
    const to = Math.min(r.wallMs, from + stepMs)
    const inStep = r.samples.filter((x) => x.t >= from && x.t < to)
    if (inStep.length === 0) continue
    out.push({
      fromS: from / 1000,
      toS: to / 1000,
      peakRssMB: mb(Math.max(...inStep.map((x) => x.rssKB))),
      lastRssMB: mb(inStep.at(-1)!.rssKB),
      freeGB: disk.filter((d) => d.t < to).at(-1)?.freeGB ?? null,
      ...progressAt(r, to)
    })
  }
  return out
}

interface StatusCall {
  readonly atS: number
  readonly wallS: number
  readonly cpuS: number | null
  readonly peakRssMB: number
  readonly exitCode: number | null
  readonly progress: ReturnType<typeof progressAt>
}

/**
 * sluice end to end: the real CLI, pipelined (onInvalid "skip"), checkpointing on. With
 * `statusEveryS`, `sluice status <run-dir>` — as a user types it, refreshing from the provider —
 * is timed every that many seconds while the run goes (one at a time). The disk is watched:
 * below `minFreeGB` the run is SIGKILLed (sluice is crash-safe) and the benchmark fails.
 */
const sluiceEndToEnd = async (label: string, source: string, n: number, nodeFlags: Array<string> = []) => {
  const runDir = join(work, "runs", label)
  const sink = join(work, "out", `${label}.jsonl`)
  const env = sluiceEnv(source, sink)
  const started = performance.now() // the child's spawn is placed after the run, from its wall time
  let running = true
  let lowDisk = false
  const disk: Array<{ at: number; freeGB: number }> = []
  const watch = setInterval(() => {
    const free = freeGB()
    disk.push({ at: performance.now(), freeGB: free })
    if (free < minFreeGB && !lowDisk) {
      lowDisk = true
      say(`${label}: only ${free.toFixed(1)} GB free on the disk; killing the run`)
    }
  }, 5000)
  const statusCalls: Array<{ at: number; r: ChildResult }> = []
  const statusLoop = (async () => {
    if (statusEveryS <= 0) return
    let next = started + statusEveryS * 1000
    while (running) {
      await new Promise((r) => setTimeout(r, 250))
      if (!running || performance.now() < next || !existsSync(join(runDir, "journal.jsonl"))) continue
      const at = performance.now()
      const s = await runChildNow({ label: `${label}-status`, args: [cli, "status", runDir], env, logFile: logPath(`${label}-status-${statusCalls.length + 1}`) })
      statusCalls.push({ at, r: s })
      say(`${label}: sluice status at ${((at - started) / 1000).toFixed(0)} s: ${secs(s.wallMs).toFixed(2)} s, ${mb(s.peakRssKB).toFixed(0)} MB, exit ${s.exitCode}`)
      next = at + statusEveryS * 1000
    }
  })()
  const r = await runChild({
    label,
    args: [...nodeFlags, ...sluiceRunArgs(runDir)],
    env,
    logFile: logPath(label),
    journal: join(runDir, "journal.jsonl"),
    observe: emulator!.pid,
    killWhen: () => lowDisk
  }).finally(() => {
    running = false
    clearInterval(watch)
  })
  await statusLoop
  const spawnedAt = performance.now() - r.wallMs
  const status: Array<StatusCall> = statusCalls
    .filter((c) => c.at >= spawnedAt)
    .map(({ at, r: s }) => ({
      atS: (at - spawnedAt) / 1000,
      wallS: secs(s.wallMs),
      cpuS: s.cpuUserS === null ? null : s.cpuUserS + (s.cpuSysS ?? 0),
      peakRssMB: mb(s.peakRssKB),
      exitCode: s.exitCode,
      progress: progressAt(r, at - spawnedAt)
    }))
  check(!lowDisk, `${label}: killed, the disk had less than ${minFreeGB} GB free`)
  check(r.exitCode === 0, `${label}: sluice exited with ${r.exitCode ?? r.signal} (see ${logPath(label)})`)
  const lines = countLines(sink)
  check(lines === n, `${label}: sink has ${lines} lines, expected ${n}`)
  const rss = rssOverTime(r, disk.map((d) => ({ t: d.at - spawnedAt, freeGB: d.freeGB })))
  return {
    result: r,
    runDir,
    sink,
    figures: figures(r, n, { phases: e2ePhases(r, n), sinkBytes: statSync(sink).size, timeline: shardTimeline(r), rssOverTime: rss, statusDuringRun: status, runDirBytes: duBytes(runDir) })
  }
}

/**
 * sluice's plan and collect phases in isolation: plan with nothing submitted before the
 * source is read (onInvalid "fail", --detach), then — once every batch has finished at the
 * provider — collect on `sluice resume`, with nothing else to do.
 */
const isolated = async (label: string, source: string, n: number, planFlags: Array<string> = [], collectFlags: Array<string> = []) => {
  const runDir = join(work, "runs", label)
  const sink = join(work, "out", `${label}.jsonl`)
  const journal = join(runDir, "journal.jsonl")
  const planRun = await runChild({
    label: `${label}-plan`,
    args: [...planFlags, ...sluiceRunArgs(runDir, ["--detach"])],
    env: sluiceEnv(source, sink, "fail"),
    logFile: logPath(`${label}-plan`),
    journal,
    // The emulator validates the uploads of this run's submissions: its CPU is not "other".
    observe: emulator!.pid
  })
  check(planRun.exitCode === 3 || planRun.exitCode === 0, `${label}: sluice run --detach exited with ${planRun.exitCode ?? planRun.signal}`)
  const planPhase = phase(planRun, "plan (isolated)", planRun.journalSeenAt, lastT(planRun, "PlanComplete"), n)!
  const firstSubmit = firstT(planRun, "SubmitIntent")
  check(firstSubmit === undefined || firstSubmit >= planPhase.toMs, `${label}: a shard was submitted before PlanComplete`)
  const plan: RunFigures = {
    ...figures(planRun, n),
    phases: [planPhase],
    rowsPerS: planPhase.rowsPerS,
    peakRssMB: planPhase.peakRssMB,
    processPeakRssMB: mb(planRun.peakRssKB)
  }

  await waitForBatches(manifestRunId(runDir))
  const collectRun = await runChild({
    label: `${label}-collect`,
    args: [...collectFlags, cli, "resume", runDir, "--concurrency", String(concurrency), ...pollFlags],
    env: sluiceEnv(source, sink, "fail"),
    logFile: logPath(`${label}-collect`),
    journal,
    journalFrom: statSync(journal).size,
    observe: emulator!.pid
  })
  check(collectRun.exitCode === 0, `${label}: sluice resume exited with ${collectRun.exitCode ?? collectRun.signal}`)
  check(countLines(sink) === n, `${label}: sink line count`)
  const busy = collectBusy(collectRun)
  const window = phase(collectRun, "collect window (isolated)", firstT(collectRun, "Terminal"), lastT(collectRun, "Collected"), busy.rows)!
  const collect: RunFigures = {
    ...figures(collectRun, busy.rows),
    phases: [window, { ...window, name: "collect busy (isolated)", ms: busy.ms, rowsPerS: busy.rows / secs(busy.ms) }],
    rowsPerS: busy.rows / secs(busy.ms),
    collectedRows: busy.rows,
    peakRssMB: window.peakRssMB,
    processPeakRssMB: mb(collectRun.peakRssKB)
  }
  return { plan, collect }
}

const baseline = async (label: string, source: string, n: number) => {
  const out = join(work, "out", `${label}.jsonl`)
  const r = await runChild({
    label,
    args: tsx("baseline-sdk.ts", "--source", source, "--out", out, "--batch-size", String(shardSize), "--poll-interval", String(pollInterval)),
    env: { OPENAI_BASE_URL: `${emulator!.url}/v1`, OPENAI_API_KEY: "bench-key-for-the-emulator" },
    logFile: logPath(label),
    observe: emulator!.pid
  })
  check(r.exitCode === 0, `${label}: baseline exited with ${r.exitCode ?? r.signal} (see ${logPath(label)})`)
  const lines = countLines(out)
  check(lines === n, `${label}: output has ${lines} lines, expected ${n}`)
  return figures(r, n)
}

/** A floor child: rows/s from the loop's own timer (no process start-up), wall and RSS from outside. */
const floor = async (label: string, args: Array<string>, n: number) => {
  const r = await runChild({ label, args: tsx("floor.ts", ...args), logFile: logPath(label) })
  check(r.exitCode === 0, `${label}: exited with ${r.exitCode ?? r.signal}`)
  const out = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as { rows: number; ms: number }
  check(out.rows === n, `${label}: ${out.rows} rows, expected ${n}`)
  return { ...figures(r, n), rowsPerS: n / secs(out.ms), internalMs: out.ms }
}

/** Downloads the output file of every batch of a run, one file per shard, for the collect floor. */
/**
 * The provider's result lines of a finished run, one file per shard, for the collect floor.
 * sluice deletes a batch's files at the provider once it is collected (without
 * --keep-provider-files), so they come from results.jsonl, which keeps each line as received.
 */
const resultLinesOf = async (runDir: string, dir: string) => {
  mkdirSync(dir, { recursive: true })
  const files = new Map<string, WriteStream>()
  for await (const line of createInterface({ input: createReadStream(join(runDir, "results.jsonl")), crlfDelay: Infinity })) {
    if (line === "") continue
    const r = JSON.parse(line) as { shard: string; raw: unknown }
    let out = files.get(r.shard)
    if (out === undefined) files.set(r.shard, (out = createWriteStream(join(dir, `${r.shard}.jsonl`))))
    if (!out.write(JSON.stringify(r.raw) + "\n")) await once(out, "drain")
  }
  await Promise.all([...files.values()].map((out) => new Promise((done) => out.end(done))))
  return files.size
}

const waitForBatches = async (runId: string) => {
  for (;;) {
    const mine = (await listBatches()).filter((b) => b.metadata?.["sluice_run"] === runId)
    // Retrieving each batch is what makes the emulator finish it (its lifecycle is lazy).
    const states = await Promise.all(mine.map((b) => call<WireBatch>(`/v1/batches/${b.id}`)))
    if (states.every((b) => ["completed", "failed", "expired", "cancelled"].includes(b.status))) return mine.length
    await new Promise((r) => setTimeout(r, 200))
  }
}

// ------------------------------------------------------------------------------------------
// Main
// ------------------------------------------------------------------------------------------

const machine = {
  cpu: os.cpus()[0]?.model ?? "unknown",
  cores: os.cpus().length,
  memoryGB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
  node: process.version,
  platform: `${os.platform()} ${os.release()} ${os.arch()}`,
  peakRssSource: hasGnuTime ? "GNU time (%M)" : "/proc VmHWM, sampled every 50 ms"
}

const git = (() => {
  try {
    const { execFileSync } = childProcess
    const commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: root, encoding: "utf8" }).trim()
    const dirty = execFileSync("git", ["status", "--porcelain", "--", "packages"], { cwd: root, encoding: "utf8" })
      .split("\n")
      .filter((l: string) => l.trim() !== "").length
    return { commit, dirtyFilesInPackages: dirty }
  } catch {
    return null
  }
})()

const results: Record<string, unknown> = {
  version: 1,
  git,
  startedAt: new Date().toISOString(),
  machine,
  config: { rows, rowChars, statusEveryS, shardSize, concurrency, pollInterval, quick, growth, profile, skip: [...skip], sluiceRoot: sluiceRoot === root ? null : sluiceRoot, sluiceNodeOptions: sluiceNodeOptions ?? null, realTokens: flag("--real-tokens") }
}
const m: Record<string, RunFigures | Record<string, unknown>> = {}
results["measurements"] = m

const cleanup = async () => {
  await stopEmulator().catch(() => undefined)
  if (!keep) rmSync(work, { recursive: true, force: true })
}
process.on("SIGINT", () => {
  void cleanup().then(() => process.exit(130))
})

const main = async () => {
  say(`machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGB} GB, node ${machine.node}`)
  if (big && option("--skip") === undefined) say(`above ${BIG} rows: skipping ${BIG_SKIP} (the SDK baseline holds every row in memory; the others repeat the run); --skip decides instead`)
  const dataset = ensureDataset(datasetPath(dataDir, rows, rowChars), rows, rowChars)
  say(`dataset: ${dataset.path} (${rows} rows, ${(dataset.bytes / 1e6).toFixed(1)} MB${dataset.generatedMs === null ? ", cached" : `, generated in ${(dataset.generatedMs / 1000).toFixed(1)} s`})`)
  results["dataset"] = { path: dataset.path.slice(root.length + 1), rows, bytes: dataset.bytes, avgRowBytes: dataset.bytes / rows }
  mkdirSync(join(work, "out"), { recursive: true })

  emulator = await startEmulator()
  say(`emulator: ${emulator.url} (pid ${emulator.pid})`)

  // 1. Floors of the plan phase.
  if (!skip.has("floors")) {
    for (const full of [false, true]) {
      const dir = join(work, "floor-plan")
      mkdirSync(dir, { recursive: true })
      const label = full ? "floor-plan-full" : "floor-plan"
      m[label] = await floor(label, ["plan", "--source", dataset.path, "--out-dir", dir, "--shard-size", String(shardSize), ...(full ? ["--full"] : [])], rows)
      rmSync(dir, { recursive: true, force: true })
      say(`${label}: ${(m[label] as RunFigures).rowsPerS.toFixed(0)} rows/s`)
    }
  }

  // 2. sluice end to end.
  let e2e: Awaited<ReturnType<typeof sluiceEndToEnd>> | undefined
  if (!skip.has("e2e")) {
    await resetEmulator()
    e2e = await sluiceEndToEnd("sluice-e2e", dataset.path, rows)
    m["sluice-e2e"] = e2e.figures
    const calls = await callsOf(Math.ceil(rows / shardSize))
    m["calls-sluice-e2e"] = calls
    say(`sluice calls per shard: ${describeCalls(calls)}`)
    say(`sluice end to end: ${e2e.figures.wallS.toFixed(1)} s, peak RSS ${e2e.figures.peakRssMB.toFixed(0)} MB`)

    // 3. Floor of the collect phase, on the very result files sluice collected.
    if (!skip.has("floors")) {
      const resultsIn = join(work, "collect-floor", "results")
      await resultLinesOf(e2e.runDir, resultsIn)
      for (const full of [false, true]) {
        const label = full ? "floor-collect-full" : "floor-collect"
        m[label] = await floor(
          label,
          ["collect", "--results-dir", resultsIn, "--rows-dir", join(e2e.runDir, "shards"), "--out", join(work, "collect-floor", "sink.jsonl"), ...(full ? ["--full"] : [])],
          rows
        )
        say(`${label}: ${(m[label] as RunFigures).rowsPerS.toFixed(0)} rows/s`)
      }
      rmSync(join(work, "collect-floor"), { recursive: true, force: true })
    }

    // 4. Journal replay.
    if (!skip.has("replay")) {
      const replay = await runChild({ label: "replay", args: ["--expose-gc", ...tsxSrc("replay.ts", e2e.runDir)], logFile: logPath("replay") })
      const out = JSON.parse(replay.stdout.trim().split("\n").at(-1)!) as { events: number; shards: number; ms: number; heapGrowthMB: number | null }
      const status = await runChild({
        label: "status",
        args: [cli, "status", e2e.runDir, "--json", "--no-refresh"],
        env: sluiceEnv(dataset.path, e2e.sink),
        logFile: logPath("status")
      })
      const version = await runChild({ label: "cli-startup", args: [cli, "--version"], logFile: logPath("cli-startup") })
      m["replay"] = {
        label: "journal replay",
        events: out.events,
        shards: out.shards,
        replayMs: out.ms,
        replayHeapGrowthMB: out.heapGrowthMB,
        replayProcessPeakRssMB: mb(replay.peakRssKB),
        statusWallS: secs(status.wallMs),
        statusPeakRssMB: mb(status.peakRssKB),
        cliStartupWallS: secs(version.wallMs),
        cliStartupPeakRssMB: mb(version.peakRssKB)
      }
      say(`journal replay: ${out.events} events in ${out.ms.toFixed(0)} ms; sluice status --no-refresh ${secs(status.wallMs).toFixed(2)} s`)
    }
  }

  // 4b. Start-up: the commands a user types and waits for, each several times, alternating.
  if (!skip.has("startup")) {
    m["startup"] = await startup(e2e === undefined ? undefined : { runDir: e2e.runDir, env: sluiceEnv(dataset.path, e2e.sink) })
  }

  // 5. The openai SDK baseline.
  if (!skip.has("baseline")) {
    await resetEmulator()
    m["baseline-sdk"] = await baseline("baseline-sdk", dataset.path, rows)
    m["calls-baseline-sdk"] = await callsOf(Math.ceil(rows / shardSize))
    say(`baseline (openai SDK): ${(m["baseline-sdk"] as RunFigures).wallS.toFixed(1)} s, peak RSS ${(m["baseline-sdk"] as RunFigures).peakRssMB.toFixed(0)} MB`)
  }

  // 6. sluice's plan and collect phases in isolation.
  if (!skip.has("isolated")) {
    await resetEmulator()
    const iso = await isolated("sluice-isolated", dataset.path, rows)
    m["sluice-plan-isolated"] = iso.plan
    m["sluice-collect-isolated"] = iso.collect
    say(`sluice plan (isolated): ${iso.plan.rowsPerS.toFixed(0)} rows/s; collect (isolated): ${iso.collect.rowsPerS.toFixed(0)} rows/s`)
  }

  // 7. Resume cost: kill a fresh run at ~90% of collection, resume it.
  if (!skip.has("resume")) {
    await resetEmulator()
    const runDir = join(work, "runs", "sluice-resume")
    const sink = join(work, "out", "sluice-resume.jsonl")
    const journal = join(runDir, "journal.jsonl")
    const sinkTarget = e2e?.figures["sinkBytes"] as number | undefined
    const shardsTotal = Math.ceil(rows / shardSize)
    const killRun = await runChild({
      label: "sluice-killed",
      args: sluiceRunArgs(runDir),
      env: sluiceEnv(dataset.path, sink),
      logFile: logPath("sluice-killed"),
      journal,
      // At 90% of the rows written to the sink (the sink of the full run tells its final size),
      // or, without it, once 90% of the shards are collected.
      killWhen: (lines) => {
        if (sinkTarget !== undefined) {
          try {
            return statSync(sink).size >= 0.9 * sinkTarget
          } catch {
            return false
          }
        }
        return lines.filter((e) => e.tag === "Collected").length >= Math.ceil(0.9 * shardsTotal)
      }
    })
    check(killRun.signal === "SIGKILL", `resume test: the run was not killed (exit ${killRun.exitCode}); it finished before 90%`)
    const collectedBefore = new Set(killRun.journal.filter((e) => e.tag === "Collected").map((e) => e.shard!))
    const committedRows = killRun.journal.filter((e) => e.tag === "Collected").reduce((a, e) => a + Number(e.event["succeeded"] ?? 0), 0)
    const sinkAtKill = existsSync(sink) ? statSync(sink).size : 0
    const before = await ledger()
    const resumeRun = await runChild({
      label: "sluice-resumed",
      args: [cli, "resume", runDir, "--concurrency", String(concurrency), ...pollFlags],
      env: sluiceEnv(dataset.path, sink),
      logFile: logPath("sluice-resumed"),
      journal,
      journalFrom: statSync(journal).size,
      observe: emulator.pid
    })
    check(resumeRun.exitCode === 0, `resume test: sluice resume exited with ${resumeRun.exitCode ?? resumeRun.signal}`)
    const after = await ledger()
    const known = new Set(before.batches.map((b) => b.id))
    const added = after.batches.filter((b) => !known.has(b.id))
    const resubmittedFinished = added.filter((b) => b.shard !== null && collectedBefore.has(b.shard))
    const out = distinctCustomIds(sink)
    check(out.lines === rows && out.distinct === rows, `resume test: sink has ${out.lines} lines, ${out.distinct} distinct ids, expected ${rows}`)
    const fullWall = e2e === undefined ? null : e2e.figures.wallS
    m["resume"] = {
      ...figures(resumeRun, rows - committedRows),
      killedAtWallS: secs(killRun.wallMs),
      killedAtSinkFraction: sinkTarget === undefined ? null : sinkAtKill / sinkTarget,
      committedRowsAtKill: committedRows,
      committedFractionAtKill: committedRows / rows,
      shardsCollectedAtKill: collectedBefore.size,
      shards: shardsTotal,
      batchesBeforeResume: before.batches.length,
      newBatches: added.length,
      newRequests: added.reduce((a, b) => a + b.requests, 0),
      resubmittedBatchesForFinishedShards: resubmittedFinished.length,
      resubmittedRequestsForFinishedShards: resubmittedFinished.reduce((a, b) => a + b.requests, 0),
      sinkLines: out.lines,
      sinkDistinctIds: out.distinct,
      fractionOfFullRun: fullWall === null ? null : secs(resumeRun.wallMs) / fullWall
    }
    say(`resume after a kill at ${((sinkTarget === undefined ? 0 : sinkAtKill / sinkTarget) * 100).toFixed(0)}% of the sink: ${secs(resumeRun.wallMs).toFixed(1)} s, ${added.length} new batches`)
  }

  // 8. RSS growth: sluice and the baseline again at 100,000 rows.
  if (growth) {
    const small = ensureDataset(datasetPath(dataDir, GROWTH_FROM, rowChars), GROWTH_FROM, rowChars)
    await resetEmulator()
    const s = await sluiceEndToEnd("sluice-e2e-100k", small.path, GROWTH_FROM)
    m["sluice-e2e-100k"] = s.figures
    await resetEmulator()
    m["baseline-sdk-100k"] = await baseline("baseline-sdk-100k", small.path, GROWTH_FROM)
    say(`at ${GROWTH_FROM} rows: sluice peak RSS ${s.figures.peakRssMB.toFixed(0)} MB, baseline ${(m["baseline-sdk-100k"] as RunFigures).peakRssMB.toFixed(0)} MB`)
  }

  // 9. Profiles (not measured: profiling slows a run down): the isolated plan, the isolated
  //    collect and the end-to-end run, each under `node --cpu-prof`, summarised.
  if (profile) {
    const { copyFileSync } = await import("node:fs")
    const profiles = join(work, "profiles")
    const summaries: Record<string, unknown> = {}
    const texts: Array<string> = []
    const take = (name: string, dir: string, what: string) => {
      const file = existsSync(dir) ? readdirSync(dir).find((f) => f.endsWith(".cpuprofile")) : undefined
      if (file === undefined) return say(`no profile written for ${name}`)
      const summary = summariseProfile(join(dir, file), 40)
      summaries[name] = summary
      texts.push(`=== ${name}: ${what}\n\n${renderProfile(summary)}`)
      mkdirSync(join(dataDir, "profiles"), { recursive: true })
      copyFileSync(join(dir, file), join(dataDir, "profiles", `${stamp}-${name}.cpuprofile`))
    }
    await resetEmulator()
    const flags = (name: string) => ["--cpu-prof", "--cpu-prof-dir", join(profiles, name)]
    const iso = await isolated("profile-isolated", dataset.path, rows, flags("plan"), flags("collect"))
    take("plan", join(profiles, "plan"), `sluice run --detach (onInvalid fail): start-up, plan of ${rows} rows, then the uploads; plan phase ${(iso.plan.phases![0]!.ms / 1000).toFixed(1)} s under the profiler`)
    take("collect", join(profiles, "collect"), `sluice resume once every batch is done: start-up and collection of ${rows} rows; ${iso.collect.wallS.toFixed(1)} s under the profiler`)
    await resetEmulator()
    const p = await sluiceEndToEnd("profile-e2e", dataset.path, rows, flags("e2e"))
    take("e2e", join(profiles, "e2e"), `sluice run end to end, ${rows} rows, ${p.figures.wallS.toFixed(1)} s under the profiler`)
    writeFileSync(join(resultsDir, `${stamp}.profile.txt`), texts.join("\n\n") + "\n")
    results["profiles"] = summaries
    say(`profile summaries written to bench/results/${stamp}.profile.txt (.cpuprofile files in bench/.data/profiles)`)
  }

  const emu = procStatus(emulator.pid)
  results["emulatorProcess"] = { peakRssMB: emu === undefined ? null : mb(emu.hwmKB), cpuS: procCpuSeconds(emulator.pid) }
  await stopEmulator()
}

// ------------------------------------------------------------------------------------------
// Report
// ------------------------------------------------------------------------------------------

const get = (k: string) => m[k] as RunFigures | undefined

/** The end-to-end run's RSS over time, one line a step. */
const rssTable = (e2e: RunFigures | undefined): Array<string> => {
  const steps = e2e?.["rssOverTime"] as ReturnType<typeof rssOverTime> | undefined
  if (steps === undefined || steps.length === 0) return []
  return [
    "",
    "RSS over time, sluice end to end (highest and last sample of each step; shards by the step's end):",
    `  ${"s".padStart(11)} ${"peak MB".padStart(8)} ${"last MB".padStart(8)}  ${"planned".padStart(8)} ${"created".padStart(8)} ${"terminal".padStart(8)} ${"collected".padStart(9)} ${"free GB".padStart(8)}`,
    ...steps.map(
      (x) =>
        `  ${`${x.fromS.toFixed(0)}–${x.toS.toFixed(0)}`.padStart(11)} ${x.peakRssMB.toFixed(0).padStart(8)} ${x.lastRssMB.toFixed(0).padStart(8)}  ${`${x.planned}${x.planComplete ? "✓" : ""}`.padStart(8)} ${String(x.created).padStart(8)} ${String(x.terminal).padStart(8)} ${String(x.collected).padStart(9)} ${(x.freeGB === null ? "" : x.freeGB.toFixed(1)).padStart(8)}`
    )
  ]
}

/** `sluice status <run-dir>` timed during the end-to-end run. */
const statusTable = (e2e: RunFigures | undefined): Array<string> => {
  const calls = e2e?.["statusDuringRun"] as ReadonlyArray<StatusCall> | undefined
  if (calls === undefined || calls.length === 0) return []
  const walls = calls.map((c) => c.wallS)
  return [
    "",
    `sluice status <run-dir> during the run (${calls.length} calls; wall median ${median(walls).toFixed(2)} s, max ${Math.max(...walls).toFixed(2)} s):`,
    `  ${"at s".padStart(7)} ${"wall s".padStart(7)} ${"CPU s".padStart(6)} ${"RSS MB".padStart(7)} ${"exit".padStart(5)}  run then (shards planned/created/terminal/collected)`,
    ...calls.map(
      (c) =>
        `  ${c.atS.toFixed(0).padStart(7)} ${c.wallS.toFixed(2).padStart(7)} ${(c.cpuS === null ? "" : c.cpuS.toFixed(2)).padStart(6)} ${c.peakRssMB.toFixed(0).padStart(7)} ${String(c.exitCode).padStart(5)}  ${c.progress.planned}${c.progress.planComplete ? " (plan complete)" : ""}/${c.progress.created}/${c.progress.terminal}/${c.progress.collected}`
    )
  ]
}

const report = () => {
  const e2e = get("sluice-e2e")
  const base = get("baseline-sdk")
  const planIso = get("sluice-plan-isolated")
  const collectIso = get("sluice-collect-isolated")
  const fPlan = get("floor-plan")
  const fCollect = get("floor-collect")
  const resume = m["resume"] as Record<string, number | null> | undefined
  const replay = m["replay"] as Record<string, number> | undefined
  const start = m["startup"] as unknown as Record<string, StartupFigures> | undefined
  const callsSluice = m["calls-sluice-e2e"] as unknown as Calls | undefined
  const callsBaseline = m["calls-baseline-sdk"] as unknown as Calls | undefined
  const e2ePlan = e2e?.phases?.find((p) => p.name.startsWith("plan"))

  const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || b === 0 ? undefined : a / b)
  const ratios = {
    e2eThroughputSluiceOverBaseline: ratio(base?.wallS, e2e?.wallS),
    e2eWallSluiceOverBaseline: ratio(e2e?.wallS, base?.wallS),
    peakRssSluiceOverBaseline: ratio(e2e?.peakRssMB, base?.peakRssMB),
    planIsolatedOverFloor: ratio(planIso?.rowsPerS, fPlan?.rowsPerS),
    planInE2eOverFloor: ratio(e2ePlan?.rowsPerS, fPlan?.rowsPerS),
    planIsolatedOverFullFloor: ratio(planIso?.rowsPerS, get("floor-plan-full")?.rowsPerS),
    collectIsolatedOverFloor: ratio(collectIso?.rowsPerS, fCollect?.rowsPerS),
    collectIsolatedOverFullFloor: ratio(collectIso?.rowsPerS, get("floor-collect-full")?.rowsPerS),
    emulatorCpuShareDuringE2e: e2e?.emulator?.cpuPerWall
  }
  results["ratios"] = ratios

  const small = get("sluice-e2e-100k")
  const smallBase = get("baseline-sdk-100k")
  const growthPct = small !== undefined && e2e !== undefined ? (e2e.peakRssMB / small.peakRssMB - 1) * 100 : undefined
  const baseGrowthPct = smallBase !== undefined && base !== undefined ? (base.peakRssMB / smallBase.peakRssMB - 1) * 100 : undefined
  type Target = { target: string; measured: string; met: boolean | null; note?: string }
  const statusWalls = ((e2e?.["statusDuringRun"] as ReadonlyArray<StatusCall> | undefined) ?? []).map((c) => c.wallS)
  const fmt = (x: number | undefined | null, d = 2) => (x === undefined || x === null || Number.isNaN(x) ? "n/a" : x.toFixed(d))
  const targets: Array<Target> = [
    {
      target: "plan ≥ 0.5× bare-loop floor (aim 0.7×)",
      measured: `${fmt(ratios.planIsolatedOverFloor)}× isolated; ${fmt(ratios.planInE2eOverFloor)}× inside the pipelined run`,
      met: ratios.planIsolatedOverFloor === undefined ? null : ratios.planIsolatedOverFloor >= 0.5
    },
    {
      target: "collect ≥ 0.5× bare-loop floor (aim 0.7×)",
      measured: `${fmt(ratios.collectIsolatedOverFloor)}× isolated`,
      met: ratios.collectIsolatedOverFloor === undefined ? null : ratios.collectIsolatedOverFloor >= 0.5
    },
    {
      target: "end to end no slower than the SDK baseline (at 200,000 rows)",
      measured: `sluice ${fmt(e2e?.wallS, 1)} s vs baseline ${fmt(base?.wallS, 1)} s at ${rows} rows`,
      met: e2e === undefined || base === undefined ? null : e2e.wallS <= base.wallS,
      ...(rows !== 200_000 ? { note: `measured at ${rows} rows` } : {})
    },
    {
      target: "peak RSS ≤ 256 MB (at 1,000,000 rows)",
      measured: `${fmt(e2e?.peakRssMB, 0)} MB at ${rows} rows`,
      met: e2e === undefined ? null : e2e.peakRssMB <= 256,
      ...(rows !== 1_000_000 ? { note: `measured at ${rows} rows` } : {})
    },
    {
      target: `peak RSS growth ≤ 25% from ${GROWTH_FROM} rows (to 1,000,000)`,
      measured: growthPct === undefined ? "not measured (run with --growth)" : `${fmt(growthPct, 0)}% (${fmt(small?.peakRssMB, 0)} → ${fmt(e2e?.peakRssMB, 0)} MB); baseline ${fmt(baseGrowthPct, 0)}%`,
      met: growthPct === undefined ? null : growthPct <= 25,
      ...(rows !== 1_000_000 ? { note: `to ${rows} rows` } : {})
    },
    {
      target: "resume after a kill at 90% ≤ 15% of a full run, zero resubmitted requests for finished shards",
      measured:
        resume === undefined
          ? "not measured"
          : `${fmt((resume["fractionOfFullRun"] ?? NaN) * 100, 0)}% (${fmt(resume["wallS"], 1)} s); ${resume["resubmittedRequestsForFinishedShards"]} requests resubmitted for finished shards, ${resume["newBatches"]} new batches in all`,
      met:
        resume === undefined || resume["fractionOfFullRun"] === null
          ? null
          : resume["fractionOfFullRun"]! <= 0.15 && resume["resubmittedRequestsForFinishedShards"] === 0
    },
    {
      target: "`sluice status` and `sluice --help` start in ≤ 300 ms",
      measured:
        start === undefined
          ? "not measured"
          : `--help ${fmt(start["help"]?.wallS)} s (${fmt(start["help"]?.peakRssMB, 0)} MB), status ${start["status"] === undefined ? "not measured (needs the end-to-end run)" : `${fmt(start["status"].wallS)} s (${fmt(start["status"].peakRssMB, 0)} MB)`}; medians of ${startupRuns}`,
      met: start === undefined || start["status"] === undefined ? null : start["help"]!.wallS <= 0.3 && start["status"].wallS <= 0.3
    },
    {
      target: "10,000,000 requests planned, tracked and collected with RSS ≤ 256 MB, `sluice status` < 1 s during the run",
      measured:
        e2e === undefined
          ? "not measured"
          : `peak RSS ${fmt(e2e.peakRssMB, 0)} MB at ${rows} rows; status during the run ${statusWalls.length === 0 ? "not timed (--status-every)" : `max ${fmt(Math.max(...statusWalls))} s over ${statusWalls.length} calls`}`,
      met: e2e === undefined || rows < 10_000_000 || statusWalls.length === 0 ? null : e2e.peakRssMB <= 256 && Math.max(...statusWalls) < 1,
      ...(rows < 10_000_000 ? { note: `measured at ${rows} rows` } : {})
    },
    {
      target: "journal replay in a few seconds (≤ 5 s), flat memory",
      measured:
        replay === undefined
          ? "not measured"
          : `${fmt(replay["replayMs"], 0)} ms for ${replay["events"]} events; the replayed state holds ${fmt(replay["replayHeapGrowthMB"], 1)} MB of heap`,
      met: replay === undefined ? null : replay["replayMs"]! <= 5000
    }
  ]
  results["targets"] = targets

  // The table.
  const line = (
    name: string,
    f: { wallS?: number; rowsPerS?: number; peakRssMB?: number; cpuS?: number | null; rows?: number; foreignCores?: number | null } | undefined,
    note = ""
  ) =>
    f === undefined
      ? undefined
      : `${name.padEnd(56)} ${fmt(f.rows, 0).padStart(9)} ${fmt(f.wallS, 2).padStart(9)} ${fmt(f.rowsPerS, 0).padStart(10)} ${fmt(f.peakRssMB, 0).padStart(9)} ${(f.cpuS === undefined || f.cpuS === null ? "" : f.cpuS.toFixed(1)).padStart(7)} ${(f.foreignCores === undefined || f.foreignCores === null ? "" : f.foreignCores.toFixed(2)).padStart(7)}  ${note}`
  const out: Array<string | undefined> = [
    "",
    `sluice benchmark${sluiceRoot === root ? "" : ` of ${sluiceRoot}`} · ${rows} rows (${((results["dataset"] as { bytes: number }).bytes / 1e6).toFixed(0)} MB) · shard size ${shardSize} · concurrency ${concurrency} · poll ${adaptivePoll ? "adaptive (baseline 0.2 s)" : `${pollInterval} s`}`,
    `machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGB} GB RAM, node ${machine.node}, ${machine.platform}`,
    "",
    `${"measurement".padEnd(56)} ${"rows".padStart(9)} ${"wall s".padStart(9)} ${"rows/s".padStart(10)} ${"RSS MB".padStart(9)} ${"CPU s".padStart(7)} ${"other".padStart(7)}`,
    line("sluice end to end (CLI)", e2e, `exit ${e2e?.exitCode}`),
    ...(e2e?.phases ?? []).map((p) => line(`  ${p.name}`, { wallS: secs(p.ms), rowsPerS: p.rowsPerS, peakRssMB: p.peakRssMB, rows: p.rows }, p.note ?? "")),
    line("sluice plan, isolated (onInvalid fail, --detach)", planIso && { ...planIso, wallS: secs(planIso.phases![0]!.ms) }),
    line("sluice collect, isolated (resume, all batches done)", collectIso && { ...collectIso, wallS: secs(collectIso.phases![1]!.ms) }, "busy time"),
    line("baseline: openai SDK, in memory", base),
    line("floor: plan (parse, render, stringify, write)", fPlan, "loop time"),
    line("floor: plan + ids, sidecar, shard hash", get("floor-plan-full"), "loop time"),
    line("floor: collect (parse, join, stringify, write)", fCollect, "loop time"),
    line("floor: collect + results.jsonl", get("floor-collect-full"), "loop time"),
    line(`sluice end to end at ${GROWTH_FROM} rows`, small),
    line(`baseline at ${GROWTH_FROM} rows`, smallBase),
    resume === undefined
      ? undefined
      : line("resume after SIGKILL at ~90% of collection", { wallS: resume["wallS"]!, rows: resume["rows"]!, rowsPerS: resume["rowsPerS"]!, peakRssMB: resume["peakRssMB"]!, cpuS: resume["cpuS"] }, `${resume["newBatches"]} new batches, ${resume["resubmittedRequestsForFinishedShards"]} requests resubmitted for finished shards`),
    replay === undefined
      ? undefined
      : line("journal replay (loadState, in process)", { wallS: replay["replayMs"]! / 1000, peakRssMB: replay["replayProcessPeakRssMB"]! }, `${replay["events"]} events; state holds ${fmt(replay["replayHeapGrowthMB"], 1)} MB of heap (RSS is the code loaded)`),
    replay === undefined ? undefined : line("sluice status --json --no-refresh", { wallS: replay["statusWallS"]!, peakRssMB: replay["statusPeakRssMB"]! }, `CLI start-up alone: ${fmt(replay["cliStartupWallS"])} s`),
    ...Object.values(start ?? {}).map((f) => line(`${f.label}, median of ${f.runs}`, { wallS: f.wallS, peakRssMB: f.peakRssMB, cpuS: f.cpuS, foreignCores: f.foreignCores }, "start-up")),
    e2e?.emulator === undefined ? undefined : `${"emulator during sluice end to end".padEnd(56)} CPU ${e2e.emulator.cpuS.toFixed(1)} s (${(e2e.emulator.cpuPerWall * 100).toFixed(0)}% of one core over the run), peak RSS ${e2e.emulator.peakRssMB.toFixed(0)} MB`,
    base?.emulator === undefined ? undefined : `${"emulator during the baseline".padEnd(56)} CPU ${base.emulator.cpuS.toFixed(1)} s (${(base.emulator.cpuPerWall * 100).toFixed(0)}% of one core over the run), peak RSS ${base.emulator.peakRssMB.toFixed(0)} MB`,
    callsSluice === undefined ? undefined : `${"provider calls per shard, sluice end to end".padEnd(56)} ${describeCalls(callsSluice)}`,
    callsBaseline === undefined ? undefined : `${"provider calls per shard, baseline".padEnd(56)} ${describeCalls(callsBaseline)}`,
    "(RSS: peak resident set of the process; CPU: user + system seconds of the process; other: cores used on average by",
    " processes outside the benchmark during the measurement — above ~0.1 the figure is disturbed)",
    ...(skip.has("baseline") && big ? ["(the SDK baseline is not run above 2,000,000 rows: it holds every row and answer in memory, 2.3 GB at 1,000,000)"] : []),
    ...rssTable(e2e),
    ...statusTable(e2e),
    "",
    "ratios:",
    `  end to end, sluice / baseline throughput:    ${fmt(ratios.e2eThroughputSluiceOverBaseline)}×  (wall ${fmt(ratios.e2eWallSluiceOverBaseline)}×)`,
    `  peak RSS, sluice / baseline:                 ${fmt(ratios.peakRssSluiceOverBaseline)}×`,
    `  plan, sluice / floor:                        ${fmt(ratios.planIsolatedOverFloor)}× isolated, ${fmt(ratios.planInE2eOverFloor)}× in the pipelined run (${fmt(ratios.planIsolatedOverFullFloor)}× of the full-work floor)`,
    `  collect, sluice / floor:                     ${fmt(ratios.collectIsolatedOverFloor)}× isolated (${fmt(ratios.collectIsolatedOverFullFloor)}× of the full-work floor)`,
    "",
    "targets:",
    ...targets.map((t) => `  [${t.met === null ? " n/a " : t.met ? " met " : "MISSED"}] ${t.target}: ${t.measured}${t.note === undefined ? "" : ` (${t.note})`}`),
    ""
  ]
  return out.filter((l): l is string => l !== undefined).join("\n")
}

try {
  await main()
} catch (e) {
  results["error"] = e instanceof Error ? e.message : String(e)
  say(`failed: ${results["error"]}`)
  if (!keep) say(`logs are in ${work} (kept)`)
  await stopEmulator().catch(() => undefined)
  writeFileSync(join(resultsDir, `${stamp}.json`), JSON.stringify(results, null, 2) + "\n")
  process.exit(1)
}
const table = report()
results["finishedAt"] = new Date().toISOString()
results["quietWaits"] = quietLog
results["table"] = table
const resultPath = join(resultsDir, `${stamp}.json`)
writeFileSync(resultPath, JSON.stringify(results, null, 2) + "\n")
console.log(table)
say(`figures written to ${resultPath.slice(root.length + 1)}`)
await cleanup()

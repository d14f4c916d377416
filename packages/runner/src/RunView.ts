/**
 * The aggregates of a run directory, for the report and the live page: totals (exactly those
 * of `sluice status`), rows over time, each shard's timeline, spend at batch and real-time
 * prices, token distributions and failure classes with examples.
 *
 * Cheap enough to recompute on every journal change of a 1,000,000-row run: one pass over the
 * journal (per shard, never per row), one over results.jsonl reading only each line's head
 * (shard, custom_id, usage; never its raw answer) into counts by token value, and one over
 * failures.jsonl keeping a few examples per class. No per-row object is kept. `makeLoader`
 * loads it again and again (the live page), reading the output files on from where it stopped.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Effect, Option, Stream } from "effect"
import * as JournalStore from "./JournalStore.js"
import type { JournalEvent, TokenUsage } from "./JournalEvent.js"
import type { FailureRecord } from "./Outputs.js"
import * as Pricing from "./Pricing.js"
import * as RunDir from "./RunDir.js"
import * as RunState from "./RunState.js"
import { scan } from "./internal/LineScan.js"
import { resultHead } from "./internal/resultLine.js"
import { superseded } from "./Retry.js"
import { summarize } from "./Runner.js"
import type { RunSummary } from "./Runner.js"

/** Rows by outcome at one moment (unix ms); a point is added whenever a count changes. */
export interface TimelinePoint {
  readonly t: number
  readonly succeeded: number
  readonly failed: number
  readonly pending: number
}

export type ShardStep = "planned" | "submitted" | "in_progress" | "ended" | "collected"

export interface ShardTimeline {
  readonly shard: string
  readonly stage: string
  readonly model: string
  readonly attempt: number
  /** The shard whose rows it resubmits (a retry), null for a first attempt. */
  readonly parent: string | null
  /** first: rows planned from the source or inbox; retry: rows rescheduled or taken back by `sluice retry`. */
  readonly kind: "first" | "retry"
  readonly mode: "batch" | "online"
  readonly requests: number
  /** Answers in it that repair an earlier answer that failed the output Schema (custom_id `…-r<n>`). */
  readonly repairs: number
  readonly batchId: string | null
  readonly status: string | null
  /** Each step reached, with when (unix ms; null when the journal predates line times). */
  readonly steps: ReadonlyArray<{ readonly step: ShardStep; readonly t: number | null }>
  readonly collected: { readonly succeeded: number; readonly failed: number; readonly rescheduled: number } | null
  /** Set when the provider refused the batch at create. */
  readonly rejected: string | null
}

/** What one stage's usage costs, by the mode that answered it. */
export interface SpendLine {
  readonly stage: string
  readonly model: string
  readonly mode: "batch" | "online"
  readonly usage: TokenUsage
  /** At batch prices, and at real-time prices; null when the model has no price. */
  readonly batch: number | null
  readonly realtime: number | null
  /** What it cost: batch answers at batch prices, online ones at real-time prices. */
  readonly spent: number | null
}

export interface Histogram {
  /** Bin i holds values in [edges[i], edges[i+1]). */
  readonly edges: ReadonlyArray<number>
  readonly counts: ReadonlyArray<number>
  readonly count: number
  readonly min: number | null
  readonly max: number | null
  readonly mean: number | null
  readonly p50: number | null
  readonly p95: number | null
}

export interface TokenDistribution {
  readonly stage: string
  /** Answers counted (from the provider; answers from the response cache are not). */
  readonly answers: number
  readonly input: Histogram
  readonly output: Histogram
}

export interface FailureClassView {
  readonly class: string
  readonly count: number
  /** The first few rows of the class, as failures.jsonl lists them. */
  readonly examples: ReadonlyArray<FailureRecord>
}

export interface RunView {
  readonly runId: string
  readonly pipeline: string
  readonly runDir: string
  /** When the view was computed (unix ms). */
  readonly at: number
  readonly stages: ReadonlyArray<{ readonly name: string; readonly provider: string; readonly model: string }>
  /** Exactly what `sluice status --json` reports about the run (without asking the provider). */
  readonly totals: RunSummary
  readonly timeline: ReadonlyArray<TimelinePoint>
  readonly shards: ReadonlyArray<ShardTimeline>
  readonly spend: ReadonlyArray<SpendLine>
  readonly tokens: ReadonlyArray<TokenDistribution>
  readonly failures: ReadonlyArray<FailureClassView>
}

/** Examples kept per failure class. */
export const examplesPerClass = 5

/** The time of a journal line: its own, else a time the event carries (journals before line times). */
const timeOf = (event: JournalEvent, t: number | null): number | null => {
  if (t !== null) return t
  switch (event._tag) {
    case "SubmitIntent":
      return event.at * 1000
    case "OnlineStarted":
    case "BatchRecalled":
      return event.at
    case "StatusChanged":
      return event.at ?? null
    default:
      return null
  }
}

interface ShardTrack {
  readonly steps: Array<{ step: ShardStep; t: number | null }>
  repairs: number
}

const reach = (track: ShardTrack, step: ShardStep, t: number | null) => {
  if (!track.steps.some((s) => s.step === step)) track.steps.push({ step, t })
}

/** The journal folded once: the run's state, rows over time, each shard's steps, usage by stage and mode. */
const foldJournal = (paths: RunDir.RunPaths) =>
  Effect.gen(function* () {
    const state = RunState.empty()
    const timeline: Array<TimelinePoint> = []
    const tracks = new Map<string, ShardTrack>()
    const usage = new Map<string, { stage: string; model: string; mode: "batch" | "online"; usage: TokenUsage }>()
    const track = (shard: string) => {
      let t = tracks.get(shard)
      if (t === undefined) tracks.set(shard, (t = { steps: [], repairs: 0 }))
      return t
    }
    yield* JournalStore.replayTimed(paths).pipe(
      Stream.runForEach(({ event, t: lineTime }) =>
        Effect.sync(() => {
          RunState.apply(state, event)
          const t = timeOf(event, lineTime)
          switch (event._tag) {
            case "ShardPlanned":
              reach(track(event.shard), "planned", t)
              break
            case "RetryPlanned":
              for (const s of event.shards) reach(track(s.shard), "planned", t)
              break
            case "Created":
              reach(track(event.shard), "submitted", t)
              break
            case "OnlineStarted":
              reach(track(event.shard), "submitted", t)
              reach(track(event.shard), "in_progress", t)
              break
            case "StatusChanged":
              if (event.status === "in_progress" || event.status === "finalizing") reach(track(event.shard), "in_progress", t)
              break
            case "Terminal":
            case "OnlineCompleted":
              reach(track(event.shard), "ended", t)
              break
            case "CreateRejected":
              reach(track(event.shard), "ended", t)
              break
            case "Collected": {
              reach(track(event.shard), "ended", t)
              reach(track(event.shard), "collected", t)
              const s = state.shards.get(event.shard)
              if (s !== undefined) {
                const mode = s.online ? "online" : "batch"
                const key = `${s.stage}\u0000${s.model}\u0000${mode}`
                const line = usage.get(key) ?? { stage: s.stage, model: s.model, mode, usage: { input: 0, output: 0, cached: 0 } }
                line.usage = RunState.addUsage(line.usage, event.usage)
                usage.set(key, line)
              }
              break
            }
          }
          // Rows over time only from line times: the times some events carry would place counts at other events' moments.
          if (lineTime === null) return
          const point = { t: lineTime, succeeded: state.succeeded, failed: RunState.totalFailed(state), pending: RunState.pendingRows(state) }
          const last = timeline[timeline.length - 1]
          if (last !== undefined && last.succeeded === point.succeeded && last.failed === point.failed && last.pending === point.pending) return
          // Lines written in the same millisecond: the later counts stand.
          if (last !== undefined && last.t >= point.t) timeline[timeline.length - 1] = { ...point, t: last.t }
          else timeline.push(point)
        })
      )
    )
    return { state, timeline, tracks, usage }
  })

/** Counts by integer value: a distribution kept in memory bounded by the distinct values, not the rows. */
class Tally {
  readonly byValue = new Map<number, number>()
  count = 0
  sum = 0
  add(value: number) {
    this.byValue.set(value, (this.byValue.get(value) ?? 0) + 1)
    this.count++
    this.sum += value
  }
  histogram(bins = 24): Histogram {
    if (this.count === 0) return { edges: [], counts: [], count: 0, min: null, max: null, mean: null, p50: null, p95: null }
    const values = [...this.byValue.keys()].sort((a, b) => a - b)
    const min = values[0]!
    const max = values[values.length - 1]!
    const width = Math.max(1, Math.ceil((max - min + 1) / bins))
    const n = Math.ceil((max - min + 1) / width)
    const edges = Array.from({ length: n + 1 }, (_, i) => min + i * width)
    const counts = new Array<number>(n).fill(0)
    for (const [v, c] of this.byValue) counts[Math.min(n - 1, Math.floor((v - min) / width))]! += c
    const quantile = (q: number) => {
      const rank = Math.ceil(q * this.count)
      let seen = 0
      for (const v of values) {
        seen += this.byValue.get(v)!
        if (seen >= rank) return v
      }
      return max
    }
    return { edges, counts, count: this.count, min, max, mean: this.sum / this.count, p50: quantile(0.5), p95: quantile(0.95) }
  }
}

/**
 * What has been read of an append-only output file, and what it added up to: the next read
 * goes on from `position` while the file is the same one (inode), its committed length has not
 * shrunk, and `key` (what the sums depend on besides the lines) is unchanged; else from the start.
 */
interface Cursor<S> {
  ino: number | null
  position: number
  key: string
  sums: S
}

const readOn = <S, E, R>(
  cursor: { current: Cursor<S> | undefined },
  path: string,
  length: number,
  key: string,
  fresh: () => S,
  read: (sums: S, from: number, to: number) => Effect.Effect<void, E, R>
) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const info = length <= 0 ? undefined : yield* fs.stat(path)
    const ino = info === undefined ? null : Option.getOrNull(info.ino)
    let c = cursor.current
    if (c === undefined || c.ino !== ino || c.key !== key || length < c.position) c = cursor.current = { ino, position: 0, key, sums: fresh() }
    if (length <= c.position) return c.sums
    yield* read(c.sums, c.position, length)
    c.position = length
    return c.sums
  })

interface ResultSums {
  /** Input and output tokens by stage. */
  readonly tallies: Map<string, { readonly input: Tally; readonly output: Tally }>
  /** Repair answers by shard. */
  readonly repairs: Map<string, number>
}

type FailureSums = Map<string, { count: number; examples: Array<FailureRecord> }>

/**
 * Loads a run's view again and again (the live page: on every journal change), reading each
 * output file only from where the last load stopped. The journal, per shard, is replayed whole.
 */
export const makeLoader = (root: string, options: { readonly prices?: Pricing.Prices } = {}) => {
  const results: { current: Cursor<ResultSums> | undefined } = { current: undefined }
  const failures: { current: Cursor<FailureSums> | undefined } = { current: undefined }
  return {
    load: Effect.gen(function* () {
      const path = yield* Path.Path
      const paths = RunDir.paths(path.resolve(root), path)
      const manifest = yield* RunDir.readManifest(paths)
      const { state, timeline, tracks, usage } = yield* foldJournal(paths)
      const prices = options.prices ?? Pricing.builtin
      const totals = summarize({ runId: manifest.runId, paths, state, models: manifest.stages.map((s) => s.model), prices })

      // Token distributions by stage, and repairs by shard, from the heads of the committed results.
      const { tallies, repairs } = yield* readOn(
        results,
        paths.results,
        state.offsets.results,
        "",
        (): ResultSums => ({ tallies: new Map(), repairs: new Map() }),
        (sums, from, to) =>
          Effect.tryPromise(() =>
            scan(paths.results, from, to, (bytes, start, end) => {
              const head = resultHead(bytes, start, end)
              if (head === undefined) return
              if (/-r\d+$/.test(head.customId)) sums.repairs.set(head.shard, (sums.repairs.get(head.shard) ?? 0) + 1)
              const shard = state.shards.get(head.shard)
              if (shard === undefined || head.cached || head.usage === null) return
              let tally = sums.tallies.get(shard.stage)
              if (tally === undefined) sums.tallies.set(shard.stage, (tally = { input: new Tally(), output: new Tally() }))
              tally.input.add(head.usage.input)
              tally.output.add(head.usage.output)
            })
          )
      )
      for (const [shard, n] of repairs) {
        const t = tracks.get(shard)
        if (t !== undefined) t.repairs = n
      }

      // Failure classes as failures.jsonl lists them: committed lines not taken back by a retry
      // (a retry round supersedes lines already read: then they are read again).
      const classes = yield* readOn(
        failures,
        paths.failures,
        state.offsets.failures,
        JSON.stringify(state.retries),
        (): FailureSums => new Map(),
        (sums, from, to) =>
          Effect.tryPromise(() => scan(paths.failures, from, to, (bytes, start, end, at) => {
            const record = JSON.parse(bytes.toString("utf8", start, end)) as FailureRecord
            if (superseded(state, at, record)) return
            let c = sums.get(record.class)
            if (c === undefined) sums.set(record.class, (c = { count: 0, examples: [] }))
            c.count++
            if (c.examples.length < examplesPerClass) c.examples.push(record)
          }))
      )

      const shards: Array<ShardTimeline> = [...state.shards.values()].map((s) => {
        const t = tracks.get(s.id) ?? { steps: [], repairs: 0 }
        return {
          shard: s.id,
          stage: s.stage,
          model: s.model,
          attempt: s.attempt,
          parent: s.parent,
          kind: s.attempt > 1 || s.parent !== null ? "retry" : "first",
          mode: s.online ? "online" : "batch",
          requests: s.requests,
          repairs: t.repairs,
          batchId: s.batchId,
          status: s.rawStatus,
          steps: t.steps,
          collected:
            s.collected === null
              ? null
              : { succeeded: s.collected.succeeded, failed: Object.values(s.collected.failed).reduce((a, b) => a + b, 0), rescheduled: s.collected.rescheduled },
          rejected: s.rejection === null ? null : `${s.rejection.failure}: ${s.rejection.message}`
        }
      })

      const spend: Array<SpendLine> = [...usage.values()].map((u) => {
        const cost = Pricing.cost(u.model, u.usage, prices)
        return {
          stage: u.stage,
          model: u.model,
          mode: u.mode,
          usage: u.usage,
          batch: cost?.batch ?? null,
          realtime: cost?.realtime ?? null,
          spent: cost === undefined ? null : u.mode === "online" ? cost.realtime : cost.batch
        }
      })

      const view: RunView = {
        runId: manifest.runId,
        pipeline: manifest.pipeline,
        runDir: paths.root,
        at: Date.now(),
        stages: manifest.stages.map((s) => ({ name: s.name, provider: s.provider, model: s.model })),
        totals,
        timeline,
        shards,
        spend,
        tokens: manifest.stages.flatMap((s) => {
          const tally = tallies.get(s.name)
          return tally === undefined ? [] : [{ stage: s.name, answers: tally.input.count, input: tally.input.histogram(), output: tally.output.histogram() }]
        }),
        failures: [...classes.entries()].sort((a, b) => b[1].count - a[1].count).map(([cls, c]) => ({ class: cls, count: c.count, examples: [...c.examples] }))
      }
      return view
    })
  }
}

/** The view of a run directory, read once. */
export const load = (root: string, options: { readonly prices?: Pricing.Prices } = {}) => makeLoader(root, options).load

/**
 * The numbers of the terminal view, from a snapshot of the run: rows done of rows planned per
 * stage, each shard in flight with its own counts, rows per second over a recent window, an
 * ETA from the batches' own progress, and spend so far. Pure but for the meter, which keeps
 * the few change-points a windowed rate needs; the time is always passed in, never read.
 */
import type { BatchInfo } from "@sluice/providers"
import * as Pricing from "./Pricing.js"
import type { RunWaits } from "./Runner.js"
import type { RunState, ShardState } from "./RunState.js"
import { awaitingOutput } from "./RunState.js"
import * as Settings from "./Settings.js"

/** What the view is drawn from: the run as the observer last saw it, at `now` (unix ms). */
export interface Snapshot {
  readonly state: RunState
  /** Each batch's last polled status (fresher than the journal, which records changes only). */
  readonly polled: ReadonlyMap<string, BatchInfo>
  /** Online shards in progress: answers so far, of how many. */
  readonly answered: ReadonlyMap<string, { readonly answered: number; readonly total: number }>
  /** What the run waits for besides the provider (absent where the run does not say). */
  readonly waits?: RunWaits | undefined
  readonly now: number
}

/** A shard the provider (or the online executor) is working on. */
export interface ShardProgress {
  readonly shard: ShardState
  /** The provider's status ("in_progress", "validating"), or "online", "submitting", "waiting for its output file". */
  readonly status: string
  readonly done: number
  /** Failed of `done`, when known (online answers are not split until collected). */
  readonly failed: number | null
  readonly total: number
  /** When it started (unix ms): the batch's creation, or the online start. */
  readonly since: number | null
}

/** The journal keeps the intent in unix seconds. */
const intentMs = (shard: ShardState): number | null => (shard.intentAt === null ? null : shard.intentAt * 1000)

export const inFlight = (snap: Snapshot): Array<ShardProgress> => {
  const out: Array<ShardProgress> = []
  for (const shard of snap.state.shards.values()) {
    switch (shard.phase) {
      case "online": {
        const a = snap.answered.get(shard.id)
        out.push({ shard, status: "online", done: a?.answered ?? 0, failed: null, total: a?.total ?? shard.requests, since: shard.statusAt })
        break
      }
      case "intent":
      case "staged":
        out.push({ shard, status: "submitting", done: 0, failed: 0, total: shard.requests, since: intentMs(shard) })
        break
      case "created":
      case "terminal": {
        if (shard.batchId === null && !shard.online) break // answered from the cache alone: nothing in flight
        const info = snap.polled.get(shard.id)
        const counts = shard.phase === "terminal" ? shard.counts : info?.counts ?? shard.counts
        const created = info !== undefined && Number.isFinite(info.createdAt) && info.createdAt > 0 ? info.createdAt * 1000 : intentMs(shard)
        const status = shard.phase === "terminal" ? "collecting" : awaitingOutput(shard) ? "waiting for its output file" : info?.rawStatus ?? shard.rawStatus ?? "submitted"
        out.push({
          shard,
          status,
          done: counts === null ? 0 : counts.succeeded + counts.failed,
          failed: counts?.failed ?? 0,
          total: counts === null || counts.total === 0 ? shard.requests : counts.total,
          since: created
        })
        break
      }
      default:
        break
    }
  }
  return out
}

/** One stage's rows: done (answered, in flight or collected) of `total`; `planning` while more may come. */
export interface StageRows {
  readonly stage: string
  readonly done: number
  readonly total: number
  readonly failed: number
  readonly planning: boolean
}

export const stageRows = (snap: Snapshot, shards: ReadonlyArray<ShardProgress> = inFlight(snap)): Array<StageRows> => {
  const s = snap.state
  const running = new Map<string, { done: number; failed: number }>()
  for (const p of shards) {
    const r = running.get(p.shard.stage) ?? { done: 0, failed: 0 }
    r.done += p.done
    r.failed += p.failed ?? 0
    running.set(p.shard.stage, r)
  }
  const out: Array<StageRows> = []
  let upstreamOpen = !s.planComplete
  for (const [stage, p] of s.stages) {
    const r = running.get(stage) ?? { done: 0, failed: 0 }
    // A later stage's rows are those that reached its inbox; more come while the stage before it runs.
    const total = Math.max(p.planned, p.arrived - p.invalid)
    const done = Math.min(total, p.succeeded + p.failed + r.done)
    out.push({ stage, done, total, failed: p.failed + r.failed, planning: upstreamOpen || total > p.planned })
    upstreamOpen = upstreamOpen || p.planned + Math.max(0, p.arrived - p.planned - p.invalid) > p.succeeded + p.failed
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// Rates over a recent window
// ---------------------------------------------------------------------------------------------

/** Rows per second of a stage over this window; a batch's over `batchWindowMs` (polls are minutes apart). */
export const stageWindowMs = 60_000
export const batchWindowMs = 10 * 60_000
/** Less than this since the first reading, a rate says nothing yet. */
const minimumSpanMs = 1_000

/** Change-points of counters (a stage's rows done, a shard's answers), newest last. */
export interface Meter {
  readonly points: Map<string, Array<{ readonly at: number; readonly value: number }>>
}

export const emptyMeter = (): Meter => ({ points: new Map() })

const stageKey = (stage: string) => `stage:${stage}`
const shardKey = (shard: string) => `shard:${shard}`

const mark = (meter: Meter, key: string, at: number, value: number) => {
  const points = meter.points.get(key)
  if (points === undefined) return void meter.points.set(key, [{ at, value }])
  if (points.at(-1)!.value !== value) points.push({ at, value })
  // The newest point at or before the longest window's start is that window's base; older ones go.
  let base = 0
  while (base + 1 < points.length && points[base + 1]!.at <= at - batchWindowMs) base++
  if (base > 0) points.splice(0, base)
}

/** Takes a reading of every stage and shard in flight; shards no longer in flight are forgotten. */
export const observe = (meter: Meter, snap: Snapshot): void => {
  const shards = inFlight(snap)
  for (const r of stageRows(snap, shards)) mark(meter, stageKey(r.stage), snap.now, r.done)
  const seen = new Set<string>()
  for (const p of shards) {
    seen.add(shardKey(p.shard.id))
    mark(meter, shardKey(p.shard.id), snap.now, p.done)
  }
  for (const key of meter.points.keys()) if (key.startsWith("shard:") && !seen.has(key)) meter.points.delete(key)
}

/** Per second over the last `windowMs` before `now` (or since the first reading); undefined until there is a span to measure. */
const rate = (meter: Meter, key: string, now: number, windowMs: number): number | undefined => {
  const points = meter.points.get(key)
  if (points === undefined || points.length === 0) return undefined
  const start = Math.max(now - windowMs, points[0]!.at)
  if (now - start < minimumSpanMs) return undefined
  let base = points[0]!.value
  for (const p of points) if (p.at <= start) base = p.value
  return Math.max(0, (points.at(-1)!.value - base) / ((now - start) / 1000))
}

export const stageRate = (meter: Meter, stage: string, now: number): number | undefined => rate(meter, stageKey(stage), now, stageWindowMs)

/**
 * How fast a shard moves: an online one by its answers over the last minute; a batch by its
 * polled counts over the last ten minutes, else (no movement seen yet) on average since it was
 * created.
 */
export const shardRate = (meter: Meter, p: ShardProgress, now: number): number | undefined => {
  if (p.status === "online") return rate(meter, shardKey(p.shard.id), now, stageWindowMs)
  const recent = rate(meter, shardKey(p.shard.id), now, batchWindowMs)
  if (recent !== undefined && recent > 0) return recent
  if (p.since !== null && p.done > 0 && now - p.since >= minimumSpanMs) return p.done / ((now - p.since) / 1000)
  return recent
}

/** Seconds until a shard is done at its pace (0 when it is; undefined while it has not moved). */
export const shardEta = (meter: Meter, p: ShardProgress, now: number): number | undefined => {
  const left = p.total - p.done
  if (left <= 0) return 0
  const r = shardRate(meter, p, now)
  return r === undefined || r <= 0 ? undefined : left / r
}

/**
 * Seconds until a stage is done: its shards in flight run side by side, so the slowest of
 * them; rows not moving yet (shards queued, batches still validating) go at the stage's
 * recent pace. Undefined while
 * planning (the total is not known) or before anything has moved.
 */
export const stageEta = (meter: Meter, rows: StageRows, shards: ReadonlyArray<ShardProgress>, now: number): number | undefined => {
  if (rows.done >= rows.total && !rows.planning) return 0
  if (rows.planning) return undefined
  let slowest = 0
  let paced = 0
  for (const p of shards) {
    if (p.shard.stage !== rows.stage) continue
    const eta = shardEta(meter, p, now)
    if (eta === undefined) continue // not moved yet: its rows count as queued
    paced += Math.max(0, p.total - p.done)
    slowest = Math.max(slowest, eta)
  }
  const queued = rows.total - rows.done - paced
  if (queued <= 0) return slowest
  const pace = stageRate(meter, rows.stage, now)
  return pace === undefined || pace <= 0 ? undefined : Math.max(slowest, queued / pace)
}

// ---------------------------------------------------------------------------------------------
// Spend
// ---------------------------------------------------------------------------------------------

export interface Spend {
  /** US dollars: batch answers at batch prices, online ones at real-time prices. */
  readonly usd: number
  /** Part of it is estimated (answers not yet collected: their usage is not known). */
  readonly estimated: boolean
}

/**
 * What a stage has cost so far: the usage its collected shards recorded, and, for answers in
 * flight, an estimate: at the usage per answer of the stage's collected shards once there are
 * some, else from the input tokens counted at planning and the default output per request.
 * Undefined when a model of the stage has no price.
 */
export const stageSpend = (
  snap: Snapshot,
  stage: string,
  shards: ReadonlyArray<ShardProgress>,
  prices: Pricing.Prices,
  outputPerRequest: number = Settings.defaultOutputTokens
): Spend | undefined => {
  let usd = 0
  let estimated = false
  const price = (s: ShardState, usage: { input: number; output: number; cached: number }) => {
    const c = Pricing.cost(s.model, usage, prices)
    if (c === undefined) return false
    usd += s.online ? c.realtime : c.batch
    return true
  }
  const seen = { answers: 0, input: 0, output: 0 }
  for (const s of snap.state.shards.values()) {
    if (s.stage !== stage || s.collected === null) continue
    if (!price(s, s.collected.usage)) return undefined
    seen.answers += s.collected.succeeded + Object.values(s.collected.failed).reduce((a, b) => a + b, 0)
    seen.input += s.collected.usage.input
    seen.output += s.collected.usage.output
  }
  for (const p of shards) {
    if (p.shard.stage !== stage || p.done === 0) continue
    const usage = seen.answers > 0
      ? { input: Math.round((seen.input / seen.answers) * p.done), output: Math.round((seen.output / seen.answers) * p.done), cached: 0 }
      : { input: Math.round(((p.shard.inputTokens ?? 0) * p.done) / Math.max(1, p.shard.requests)), output: p.done * outputPerRequest, cached: 0 }
    if (!price(p.shard, usage)) return undefined
    estimated = true
  }
  return { usd, estimated }
}

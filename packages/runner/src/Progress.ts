/**
 * Progress on stderr: on a terminal, the view of ProgressView.ts redrawn in place (a bar per
 * stage, what the run waits on, the slowest batches), fitted to the terminal's size; otherwise
 * (CI logs, pipes) plain lines: one for every batch created, ended or collected, and the run's
 * status line whenever it changes — never for a poll that changed nothing, but at least once
 * every `heartbeat` while the run waits, so a log shows it is alive. Each stage's rows per
 * second and spend ride on the status line without making it change.
 */
import type { BatchInfo } from "@sluice/providers"
import { Duration, Effect, Schedule } from "effect"
import * as Hybrid from "./Hybrid.js"
import type { JournalEvent } from "./JournalEvent.js"
import * as Pricing from "./Pricing.js"
import * as ProgressMeter from "./ProgressMeter.js"
import * as ProgressView from "./ProgressView.js"
import type { RunObserver, RunWaits } from "./Runner.js"
import type { RunState } from "./RunState.js"
import { awaitingOutput, isFinished, pendingRows } from "./RunState.js"
import { count, number } from "./internal/format.js"
import * as StderrLines from "./internal/stderrLines.js"

export interface Progress {
  readonly observer: RunObserver
  /** Redraws until interrupted; fork it next to the run. */
  readonly render: Effect.Effect<void>
  /** Prints the final state once. */
  readonly finish: Effect.Effect<void>
}

interface Live {
  state: RunState | undefined
  polled: Map<string, BatchInfo>
  /** Online shards in progress: answers so far, of how many. */
  answered: Map<string, { answered: number; total: number }>
  waits: (() => RunWaits) | undefined
}

const line = (live: Live): string => {
  const s = live.state
  if (s === undefined) return "sluice: starting"
  let inFlight = 0
  let waiting = 0
  let done = 0
  let online = 0
  let answered = 0
  let asked = 0
  for (const shard of s.shards.values()) {
    if (shard.phase === "collected") done++
    else if (awaitingOutput(shard)) waiting++
    else if (shard.batchId !== null) inFlight++
    else if (shard.phase === "online") {
      online++
      const progress = live.answered.get(shard.id)
      answered += progress?.answered ?? 0
      asked += progress?.total ?? shard.requests
    }
  }
  const onlinePart = online > 0 ? `${count(online, "shard")} online (${number(answered)}/${number(asked)} answered), ` : ""
  const failed = Object.values(s.failed).reduce((a, b) => a + b, 0) + s.invalidRows
  const planned = s.planComplete ? `${count(s.rowsPlanned, "row")} planned` : `planning (${count(s.rowsPlanned, "row")} so far)`
  return (
    `sluice: ${planned} · ${count(s.shards.size, "shard")}, ${onlinePart}${count(inFlight, "batch", "batches")} in flight, ${waiting > 0 ? `${number(waiting)} completed, waiting for ${waiting === 1 ? "its output file" : "their output files"}, ` : ""}${number(done)} collected · ` +
    `rows ${number(s.succeeded)} ok, ${number(failed)} failed, ${number(pendingRows(s))} pending`
  )
}

const notable = (event: JournalEvent): string | undefined => {
  switch (event._tag) {
    case "Created":
      return `sluice: ${event.shard} → batch ${event.batchId}${event.adopted ? " (adopted after a crash)" : ""}`
    case "Terminal":
      return `sluice: ${event.shard} ${event.rawStatus} (${event.counts.succeeded} ok, ${event.counts.failed} failed)`
    case "Collected":
      return `sluice: ${event.shard} collected: ${event.succeeded} ok, ${Object.values(event.failed).reduce((a, b) => a + b, 0)} failed, ${event.rescheduled} rescheduled`
    case "OnlineStarted":
      return `sluice: ${event.shard} → online${event.hybrid === undefined ? "" : ` (${Hybrid.said[event.hybrid]})`}`
    case "BatchRecalled":
      return `sluice: ${event.shard}: the deadline has passed; cancelling batch ${event.batchId} (its finished rows are kept, the rest go online)`
    case "OnlineCompleted":
      return `sluice: ${event.shard} answered online (${event.counts.succeeded} ok, ${event.counts.failed} failed)${event.cancelled === true ? ", the rest cancelled" : ""}`
    case "CreateRejected":
      return `sluice: ${event.shard} rejected by the provider: ${event.message}`
    case "ShardRecut":
      return `sluice: ${event.shard} over the enqueued-token limit of ${event.limit}: re-cut into ${event.children.map((c) => c.shard).join(", ") || "nothing"}${event.failed > 0 ? ` (${event.failed} failed, each alone over it)` : ""}`
    default:
      return undefined
  }
}

/** How often a plain log repeats an unchanged status line, to show the run is alive. */
export const defaultHeartbeat = Duration.minutes(1)

export interface ProgressOptions {
  readonly stream?: NodeJS.WriteStream
  /** How often a plain log repeats an unchanged status line (default a minute). */
  readonly heartbeat?: Duration.DurationInput
  /** The run's prices, for spend so far (default: the built-in table). */
  readonly prices?: Pricing.Prices
  /** Where NO_COLOR, TERM and FORCE_COLOR are read (default: the process's environment). */
  readonly env?: NodeJS.ProcessEnv
  /** The time the view is drawn at, unix ms (default `Date.now`). */
  readonly now?: () => number
}

export const make = (options: ProgressOptions = {}): Progress => {
  const stream = options.stream ?? process.stderr
  const prices = options.prices ?? Pricing.builtin
  const tty = stream.isTTY === true
  const color = ProgressView.useColor(tty, options.env)
  const heartbeatMs = Duration.toMillis(Duration.decode(options.heartbeat ?? defaultHeartbeat))
  const live: Live = { state: undefined, polled: new Map(), answered: new Map(), waits: undefined }
  const meter = ProgressMeter.emptyMeter()
  const clock = options.now ?? Date.now
  const snapshot = (state: RunState): ProgressMeter.Snapshot => ({ state, polled: live.polled, answered: live.answered, waits: live.waits?.(), now: clock() })
  /** A reading for the rates, at every change the run reports and every redraw. */
  const observe = () => {
    if (live.state !== undefined) ProgressMeter.observe(meter, snapshot(live.state))
  }
  let drawn = 0
  const clear = () => {
    if (drawn > 0) stream.write(`\x1b[${drawn}F\x1b[J`)
    drawn = 0
  }
  const draw = () => {
    if (live.state === undefined) return
    const snap = snapshot(live.state)
    ProgressMeter.observe(meter, snap)
    // The size is read at every redraw: the terminal may have been resized.
    const lines = ProgressView.render(snap, meter, prices, { rows: stream.rows ?? 24, columns: stream.columns ?? 80, color })
    clear()
    stream.write(lines.join("\n") + "\n")
    drawn = lines.length
  }
  /** A line said while the view is on screen goes above it, the view drawn again under it. */
  const above = (text: string) => {
    const shown = drawn > 0
    clear()
    stream.write(text + "\n")
    if (shown) draw()
  }
  // Plain output: the last status line, when it changed, and when anything was written.
  let events = 0
  let last = ""
  let changedAt = 0
  let lastAt = 0
  const write = (text: string) => {
    stream.write(text + "\n")
    lastAt = clock()
  }
  const rates = () => (live.state === undefined ? "" : ProgressView.plainRates(snapshot(live.state), meter, prices))
  const changed = () => {
    if (live.state === undefined) return
    const now = line(live)
    if (now === last) return
    last = now
    changedAt = clock()
    write(now + rates())
  }
  const heartbeatCheck = () => {
    if (live.state === undefined || clock() - lastAt < heartbeatMs) return
    write(`${line(live)}${rates()} · unchanged for ${Math.max(1, Math.round((clock() - changedAt) / 60_000))} min`)
  }
  const observer: RunObserver = {
    started: (state) => {
      live.state = state
      observe()
      // A run that continues says where it stands; a new one starts with its first shard, and
      // a finished one has nothing to report (the summary says so).
      if (!tty && state.shards.size > 0 && !isFinished(state)) changed()
    },
    event: (event, state) => {
      live.state = state
      events++
      if (tty) return
      observe()
      const text = notable(event)
      if (text !== undefined) write(text)
      changed()
    },
    polled: (shard, info) => {
      live.polled.set(shard, info)
      if (!tty) observe()
    },
    answered: (shard, answered, total) => {
      live.answered.set(shard, { answered, total })
      // A plain log shows online progress in steps of a tenth, not per answer.
      if (!tty && (answered === total || Math.floor((answered * 10) / total) > Math.floor(((answered - 1) * 10) / total))) {
        observe()
        changed()
      }
    },
    waits: (probe) => void (live.waits = probe)
  }
  return {
    observer,
    render: tty
      ? Effect.acquireUseRelease(
          Effect.sync(() => StderrLines.divert(above)),
          () => Effect.repeat(Effect.sync(draw), Schedule.spaced(Duration.millis(200))),
          (release) => Effect.sync(release)
        ).pipe(Effect.asVoid)
      : Effect.repeat(Effect.sync(heartbeatCheck), Schedule.spaced(Duration.millis(Math.min(heartbeatMs, 10_000)))).pipe(Effect.asVoid),
    finish: Effect.sync(() => {
      if (tty) {
        clear()
        if (live.state !== undefined) stream.write(line(live) + rates() + "\n")
      } else if (events > 0) {
        // Only a run that did something has a last word; the summary follows.
        changed()
      }
    })
  }
}

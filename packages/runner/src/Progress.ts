/**
 * Progress on stderr: on a terminal, one status block redrawn in place; otherwise (CI logs,
 * pipes) plain lines: one for every batch created, ended or collected, and the run's status
 * line whenever it changes — never for a poll that changed nothing, but at least once every
 * `heartbeat` while the run waits, so a log shows it is alive.
 */
import type { BatchInfo } from "@sluice/providers"
import { Duration, Effect, Schedule } from "effect"
import * as Hybrid from "./Hybrid.js"
import type { JournalEvent } from "./JournalEvent.js"
import type { RunObserver } from "./Runner.js"
import type { RunState } from "./RunState.js"
import { awaitingOutput, isFinished, pendingRows } from "./RunState.js"
import { count, number } from "./internal/format.js"

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

const batchLines = (live: Live): Array<string> => {
  const out: Array<string> = []
  for (const shard of live.state?.shards.values() ?? []) {
    if (shard.batchId === null || shard.phase === "collected") continue
    const info = live.polled.get(shard.id)
    const counts = info?.counts ?? shard.counts
    const status = awaitingOutput(shard) ? "completed, waiting for its output file" : info?.rawStatus ?? shard.rawStatus ?? "submitted"
    out.push(
      `  ${shard.id} ${shard.batchId} ${status}` +
        (counts === null ? "" : ` ${counts.succeeded + counts.failed}/${counts.total} (${counts.failed} failed)`)
    )
  }
  return out.slice(0, 12)
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
    default:
      return undefined
  }
}

/** How often a plain log repeats an unchanged status line, to show the run is alive. */
export const defaultHeartbeat = Duration.minutes(1)

export const make = (stream: NodeJS.WriteStream = process.stderr, heartbeat: Duration.DurationInput = defaultHeartbeat): Progress => {
  const tty = stream.isTTY === true
  const heartbeatMs = Duration.toMillis(Duration.decode(heartbeat))
  const live: Live = { state: undefined, polled: new Map(), answered: new Map() }
  let drawn = 0
  const clear = () => {
    if (drawn > 0) stream.write(`\x1b[${drawn}F\x1b[J`)
    drawn = 0
  }
  const draw = () => {
    if (live.state === undefined) return
    clear()
    const lines = [line(live), ...batchLines(live)]
    stream.write(lines.join("\n") + "\n")
    drawn = lines.length
  }
  // Plain output: the last status line, when it changed, and when anything was written.
  let events = 0
  let last = ""
  let changedAt = 0
  let lastAt = 0
  const write = (text: string) => {
    stream.write(text + "\n")
    lastAt = Date.now()
  }
  const changed = () => {
    if (live.state === undefined) return
    const now = line(live)
    if (now === last) return
    last = now
    changedAt = Date.now()
    write(now)
  }
  const heartbeatCheck = () => {
    if (live.state === undefined || Date.now() - lastAt < heartbeatMs) return
    write(`${line(live)} · unchanged for ${Math.max(1, Math.round((Date.now() - changedAt) / 60_000))} min`)
  }
  const observer: RunObserver = {
    started: (state) => {
      live.state = state
      // A run that continues says where it stands; a new one starts with its first shard, and
      // a finished one has nothing to report (the summary says so).
      if (!tty && state.shards.size > 0 && !isFinished(state)) changed()
    },
    event: (event, state) => {
      live.state = state
      events++
      if (tty) return
      const text = notable(event)
      if (text !== undefined) write(text)
      changed()
    },
    polled: (shard, info) => void live.polled.set(shard, info),
    answered: (shard, answered, total) => {
      live.answered.set(shard, { answered, total })
      // A plain log shows online progress in steps of a tenth, not per answer.
      if (!tty && (answered === total || Math.floor((answered * 10) / total) > Math.floor(((answered - 1) * 10) / total))) changed()
    }
  }
  return {
    observer,
    render: tty
      ? Effect.repeat(Effect.sync(draw), Schedule.spaced(Duration.millis(200))).pipe(Effect.asVoid)
      : Effect.repeat(Effect.sync(heartbeatCheck), Schedule.spaced(Duration.millis(Math.min(heartbeatMs, 10_000)))).pipe(Effect.asVoid),
    finish: Effect.sync(() => {
      if (tty) {
        clear()
        if (live.state !== undefined) stream.write(line(live) + "\n")
      } else if (events > 0) {
        // Only a run that did something has a last word; the summary follows.
        changed()
      }
    })
  }
}

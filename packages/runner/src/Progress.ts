/**
 * Progress on stderr: on a terminal, one status block redrawn in place; otherwise plain
 * lines for every batch that changes state and a summary line now and then.
 */
import type { BatchInfo } from "@sluice/providers"
import { Duration, Effect, Schedule } from "effect"
import type { JournalEvent } from "./JournalEvent.js"
import type { RunObserver } from "./Runner.js"
import type { RunState } from "./RunState.js"
import { awaitingOutput, pendingRows } from "./RunState.js"

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
}

const line = (live: Live): string => {
  const s = live.state
  if (s === undefined) return "sluice: starting"
  let inFlight = 0
  let waiting = 0
  let done = 0
  for (const shard of s.shards.values()) {
    if (shard.phase === "collected") done++
    else if (awaitingOutput(shard)) waiting++
    else if (shard.batchId !== null) inFlight++
  }
  const failed = Object.values(s.failed).reduce((a, b) => a + b, 0) + s.invalidRows
  const planned = s.planComplete ? `${s.rowsPlanned} rows planned` : `planning (${s.rowsPlanned} rows so far)`
  return `sluice: ${planned} · ${s.shards.size} shards, ${inFlight} batches in flight, ${waiting > 0 ? `${waiting} completed, waiting for ${waiting === 1 ? "its output file" : "their output files"}, ` : ""}${done} collected · rows ${s.succeeded} ok, ${failed} failed, ${pendingRows(s)} pending`
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
    case "CreateRejected":
      return `sluice: ${event.shard} rejected by the provider: ${event.message}`
    default:
      return undefined
  }
}

export const make = (stream: NodeJS.WriteStream = process.stderr): Progress => {
  const tty = stream.isTTY === true
  const live: Live = { state: undefined, polled: new Map() }
  let drawn = 0
  const clear = () => {
    if (drawn > 0) stream.write(`\x1b[${drawn}F\x1b[J`)
    drawn = 0
  }
  const draw = () => {
    if (live.state === undefined) return
    if (tty) {
      clear()
      const lines = [line(live), ...batchLines(live)]
      stream.write(lines.join("\n") + "\n")
      drawn = lines.length
    } else {
      stream.write(line(live) + "\n")
    }
  }
  const observer: RunObserver = {
    event: (event, state) => {
      live.state = state
      const text = notable(event)
      if (text !== undefined && !tty) stream.write(text + "\n")
    },
    polled: (shard, info) => void live.polled.set(shard, info)
  }
  return {
    observer,
    render: Effect.repeat(
      Effect.sync(draw),
      Schedule.spaced(tty ? Duration.millis(200) : Duration.seconds(10))
    ).pipe(Effect.asVoid),
    finish: Effect.sync(() => {
      if (tty) clear()
      stream.write(line(live) + "\n")
    })
  }
}

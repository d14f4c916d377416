/**
 * The run on a terminal, as lines: a pure function of a snapshot (ProgressMeter.ts), the meter
 * of recent rates, and the terminal's size. A status line; a bar per stage with rows per
 * second, ETA and spend; one line for what the run waits on; the slowest few batches and
 * "+N more". Lines never exceed the width (a wrapped line would break the redraw) and never
 * the height. Plain output (a pipe, a log) keeps its status line, with `plainRates` after it.
 */
import * as Hybrid from "./Hybrid.js"
import type { Meter, ShardProgress, Snapshot, StageRows } from "./ProgressMeter.js"
import { inFlight, shardEta, stageEta, stageRate, stageRows, stageSpend } from "./ProgressMeter.js"
import type * as Pricing from "./Pricing.js"
import { awaitingOutput, pendingRows, totalFailed } from "./RunState.js"
import { count, money, number } from "./internal/format.js"
import { colorEnabled } from "./internal/helpText.js"

export interface Terminal {
  readonly rows: number
  readonly columns: number
  readonly color: boolean
}

/**
 * Colour only on a terminal (plain lines for logs never carry it), and there as `--help`
 * styles: off with NO_COLOR (non-empty), TERM=dumb or FORCE_COLOR=0.
 */
export const useColor = (isTTY: boolean, env: NodeJS.ProcessEnv = process.env): boolean => isTTY && colorEnabled({ isTTY }, env)

/** The batch lines shown at most; the rest are counted on one line. */
export const slowestShown = 5

// ---------------------------------------------------------------------------------------------
// Lines of styled pieces, cut to the width
// ---------------------------------------------------------------------------------------------

type Style = "bold" | "dim" | "green" | "red" | "yellow" | "cyan"
type Piece = string | readonly [string, Style]
const sgr: Record<Style, readonly [number, number]> = { bold: [1, 22], dim: [2, 22], green: [32, 39], red: [31, 39], yellow: [33, 39], cyan: [36, 39] }

/** Joins the pieces, cut to `width` characters (the last one "…" when cut); styles only with `color`. */
export const fit = (pieces: ReadonlyArray<Piece>, width: number, color: boolean): string => {
  const full = pieces.reduce<number>((n, p) => n + [...(typeof p === "string" ? p : p[0])].length, 0)
  let room = full > width ? Math.max(0, width - 1) : width
  let out = ""
  for (const piece of pieces) {
    if (room <= 0) break
    const [text, style] = typeof piece === "string" ? [piece, undefined] : piece
    const chars = [...text]
    const shown = chars.length > room ? chars.slice(0, room).join("") : text
    room -= Math.min(chars.length, room)
    out += color && style !== undefined && shown !== "" ? `\x1b[${sgr[style][0]}m${shown}\x1b[${sgr[style][1]}m` : shown
  }
  return full > width && width > 0 ? out + "…" : out
}

// ---------------------------------------------------------------------------------------------
// Numbers as the view writes them
// ---------------------------------------------------------------------------------------------

/** "1h02m", "3m05s", "42s". */
export const duration = (seconds: number): string => {
  const s = Math.max(0, Math.round(seconds))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`
  if (s < 100 * 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`
  return `${Math.round(s / 86_400)}d`
}

/** "1,240 rows/s", "12 rows/s", "0.4 rows/s", "— rows/s" (not measured yet). */
export const perSecond = (rate: number | undefined): string =>
  rate === undefined ? "— rows/s" : `${rate >= 10 ? number(Math.round(rate)) : rate === 0 ? "0" : rate.toFixed(1)} rows/s`

const spendText = (snap: Snapshot, stage: string, shards: ReadonlyArray<ShardProgress>, prices: Pricing.Prices): string | undefined => {
  const spend = stageSpend(snap, stage, shards, prices)
  if (spend === undefined) return undefined
  return spend.estimated ? `~${money(spend.usd)} (est.)` : money(spend.usd)
}

const bar = (done: number, total: number, width: number): [string, string] => {
  const filled = total <= 0 ? 0 : Math.min(width, Math.floor((done / total) * width))
  return ["█".repeat(filled), "░".repeat(width - filled)]
}

// ---------------------------------------------------------------------------------------------
// The parts of the view
// ---------------------------------------------------------------------------------------------

/** The batches of the run by where they stand (the status line). */
const shardCounts = (snap: Snapshot) => {
  let inFlightBatches = 0
  let waiting = 0
  let collected = 0
  let online = 0
  let queued = 0
  let collecting = 0
  for (const shard of snap.state.shards.values()) {
    if (shard.phase === "collected") collected++
    else if (shard.phase === "terminal") collecting++
    else if (awaitingOutput(shard)) waiting++
    else if (shard.phase === "online") online++
    else if (shard.phase === "planned") queued++
    else if (shard.phase === "intent" || shard.phase === "staged" || (shard.batchId !== null && shard.phase === "created")) inFlightBatches++
  }
  return { inFlightBatches, waiting, collected, online, queued, collecting }
}

const header = (snap: Snapshot): Array<Piece> => {
  const s = snap.state
  const c = shardCounts(snap)
  const failed = totalFailed(s)
  return [
    ["sluice", "bold"],
    `  rows `,
    [`${number(s.succeeded)} ok`, "green"],
    " · ",
    [`${number(failed)} failed`, failed > 0 ? "red" : "dim"],
    ` · ${number(pendingRows(s))} pending  `,
    ["│", "dim"],
    `  ${count(s.shards.size, "shard")}: ${number(c.inFlightBatches)} in flight` +
      (c.online > 0 ? `, ${number(c.online)} online` : "") +
      (c.waiting > 0 ? `, ${number(c.waiting)} awaiting output` : "") +
      (c.queued > 0 ? `, ${number(c.queued)} queued` : "") +
      (c.collecting > 0 ? `, ${number(c.collecting)} collecting` : "") +
      `, ${number(c.collected)} collected`
  ]
}

const stageLine = (snap: Snapshot, meter: Meter, rows: StageRows, shards: ReadonlyArray<ShardProgress>, prices: Pricing.Prices, nameWidth: number, barWidth: number): Array<Piece> => {
  const [full, empty] = bar(rows.done, rows.total, barWidth)
  const eta = stageEta(meter, rows, shards, snap.now)
  const spend = spendText(snap, rows.stage, shards, prices)
  const finished = !rows.planning && rows.done >= rows.total
  const share = rows.planning ? "    " : `${String(rows.total === 0 ? 100 : Math.floor((rows.done / rows.total) * 100)).padStart(3)}%`
  return [
    [rows.stage.padEnd(nameWidth), "cyan"],
    " ",
    [full, "green"],
    [empty, "dim"],
    ` ${share} ${number(rows.done)}/${number(rows.total)}${rows.planning ? "+" : ""} rows`,
    ...(rows.failed > 0 ? [" (", [`${number(rows.failed)} failed`, "red"] as const, ")"] : []),
    ` · ${perSecond(stageRate(meter, rows.stage, snap.now))}`,
    rows.planning ? " · planning…" : finished ? " · done" : ` · ETA ${eta === undefined ? "—" : duration(eta)}`,
    ...(spend === undefined ? [] : [` · ${spend}`])
  ]
}

/** One line: what keeps the run from going faster besides the provider's own pace (undefined: nothing). */
export const waitLine = (snap: Snapshot): string | undefined => {
  const s = snap.state
  const w = snap.waits
  const parts: Array<string> = []
  const c = shardCounts(snap)
  if (w !== undefined) {
    const tokenWait = w.enqueuedTokens ?? 0
    const queuedBatches = c.queued - w.onlineQueued - w.heldForPlanning - w.overBudget - w.overOnlineBudget - tokenWait
    // A batch waiting for its output file holds its slot too.
    if (queuedBatches > 0 && c.inFlightBatches + c.waiting >= w.concurrency) parts.push(`${count(queuedBatches, "shard")} for a batch slot (concurrency ${w.concurrency})`)
    if (w.onlineQueued > 0 && c.online > 0) parts.push(`${count(w.onlineQueued, "shard")} to go online after the ${c.online === 1 ? "one" : `${c.online}`} running`)
    if (w.heldForPlanning > 0) parts.push(`${count(w.heldForPlanning, "shard")} until the whole source is planned`)
    if (w.overBudget > 0) parts.push(`${count(w.overBudget, "shard")} held back by --budget`)
    if (tokenWait > 0) parts.push(`${count(tokenWait, "shard")} for enqueued-token headroom`)
    if (w.overOnlineBudget > 0) parts.push(`${count(w.overOnlineBudget, "shard")} kept off online by --online-budget`)
    for (const l of w.limiters) {
      if (l.pausedUntil > snap.now) parts.push(`${l.provider} paused ${duration((l.pausedUntil - snap.now) / 1000)} (rate limited)`)
      else if (l.window < l.cap && l.inFlight > 0) parts.push(`${l.provider} sending ${l.window} at once of ${l.cap} (throttled)`)
    }
  }
  if (c.waiting > 0) parts.push(c.waiting === 1 ? "1 batch for its output file" : `${number(c.waiting)} batches for their output files`)
  if (s.deadline !== null) {
    const recalled = [...s.shards.values()].filter((x) => x.recalled && x.phase === "created").length
    if (recalled > 0) parts.push(`${count(recalled, "batch", "batches")} being cancelled at the deadline`)
    else if (s.deadline.at > snap.now && c.inFlightBatches > 0) parts.push(`batches have until the deadline, in ${duration((s.deadline.at - snap.now) / 1000)}; then their unanswered rows go online`)
  }
  return parts.length === 0 ? undefined : `waiting: ${parts.join(" · ")}`
}

/** Least complete first; among equals, the one in progress longest. */
const slowestFirst = (a: ShardProgress, b: ShardProgress) =>
  a.done / Math.max(1, a.total) - b.done / Math.max(1, b.total) || (a.since ?? Infinity) - (b.since ?? Infinity) || a.shard.id.localeCompare(b.shard.id)

const shardLine = (snap: Snapshot, meter: Meter, p: ShardProgress, idWidth: number, statusWidth: number): Array<Piece> => {
  const eta = shardEta(meter, p, snap.now)
  return [
    "  ",
    p.shard.id.padEnd(idWidth),
    " ",
    [p.status.padEnd(statusWidth), p.status === "waiting for its output file" ? "yellow" : "dim"],
    ` ${number(p.done)}/${number(p.total)}`,
    ...(p.failed !== null && p.failed > 0 ? [" (", [`${number(p.failed)} failed`, "red"] as const, ")"] : []),
    p.since === null ? "" : ` · ${duration((snap.now - p.since) / 1000)}`,
    eta === undefined || eta === 0 ? "" : ` · ETA ${duration(eta)}`,
    p.shard.batchId === null ? (p.shard.hybrid === null ? "" : ` · ${Hybrid.said[p.shard.hybrid]}`) : [` ${p.shard.batchId}`, "dim"]
  ]
}

/** "+195 more (140 in_progress, 3 validating, 2 online)": the rest, by status, most first. */
const moreLine = (rest: ReadonlyArray<ShardProgress>): string => {
  const by = new Map<string, number>()
  for (const p of rest) by.set(p.status, (by.get(p.status) ?? 0) + 1)
  const statuses = [...by].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([status, n]) => `${number(n)} ${status}`)
  return `  +${number(rest.length)} more (${statuses.join(", ")})`
}

/**
 * The view on a terminal of `terminal.rows` × `terminal.columns`: at most rows − 1 lines (the
 * cursor keeps the last), none wider than the terminal. The status line comes first, then the
 * stages, the wait line and the batches as room allows.
 */
export const render = (snap: Snapshot, meter: Meter, prices: Pricing.Prices, terminal: Terminal): Array<string> => {
  const width = Math.max(1, terminal.columns - 1)
  const room = Math.max(1, terminal.rows - 1)
  const out: Array<ReadonlyArray<Piece>> = [header(snap)]
  const shards = inFlight(snap)
  const stages = stageRows(snap, shards)
  const nameWidth = Math.min(20, Math.max(0, ...stages.map((r) => r.stage.length)))
  const barWidth = Math.max(8, Math.min(30, width - 80))
  for (const rows of stages) {
    if (out.length >= room) break
    out.push(stageLine(snap, meter, rows, shards, prices, nameWidth, barWidth))
  }
  const wait = waitLine(snap)
  if (wait !== undefined && out.length < room) out.push([[wait, "yellow"]])
  const left = room - out.length
  const listed = shards.filter((p) => p.status !== "collecting").sort(slowestFirst)
  if (left > 0 && listed.length > 0) {
    const all = listed.length <= Math.min(slowestShown, left)
    const shown = all ? listed : listed.slice(0, Math.max(0, Math.min(slowestShown, left - 1)))
    const idWidth = Math.max(...shown.map((p) => p.shard.id.length), 0)
    const statusWidth = Math.max(...shown.map((p) => p.status.length), 0)
    for (const p of shown) out.push(shardLine(snap, meter, p, idWidth, statusWidth))
    if (!all) out.push([[moreLine(listed.slice(shown.length)), "dim"]])
  }
  return out.map((pieces) => fit(pieces, width, terminal.color))
}

/**
 * What a plain log adds to its status line: each stage's rows per second and spend so far
 * (nothing for a stage with neither measured yet). Not part of what makes the line change.
 */
export const plainRates = (snap: Snapshot, meter: Meter, prices: Pricing.Prices): string => {
  const shards = inFlight(snap)
  const parts: Array<string> = []
  for (const rows of stageRows(snap, shards)) {
    const rate = stageRate(meter, rows.stage, snap.now)
    const spend = spendText(snap, rows.stage, shards, prices)
    const said = [...(rate === undefined ? [] : [perSecond(rate)]), ...(spend === undefined ? [] : [spend])]
    if (said.length > 0) parts.push(`${rows.stage} ${said.join(", ")}`)
  }
  return parts.length === 0 ? "" : ` · ${parts.join("; ")}`
}

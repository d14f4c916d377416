/**
 * The rows of a run directory, joined and paged: each row's input (its shard's row sidecar)
 * next to its latest outcome (results.jsonl, failures.jsonl, an online shard's answers), for
 * the row browser of `sluice ui` and `sluice report`.
 *
 * The index is a handful of typed arrays, a few tens of bytes a row and no JavaScript object
 * or string per row, so a million rows stay small: per row its status, failure class, latest
 * shard and the byte positions of its lines (sidecar, result, failure). It is built by one pass
 * over the journal, replaying events in order and reading each file up to the length the
 * journal committed, so a run going on in another process is safe to read; `refresh` carries
 * on from where it stopped. A page then reads only its own rows' lines: the cost of a page
 * does not grow with the run. A text search (`q`) reads the rows as it goes, stopping once the
 * page is full.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Effect, Runtime, Schema } from "effect"
import type { Scope } from "effect"
import { closeSync, openSync, readSync } from "node:fs"
import { IdTable } from "./internal/IdTable.js"
import { Readers, scan } from "./internal/LineScan.js"
import type { JournalEvent } from "./JournalEvent.js"
import * as Journal from "./Journal.js"
import * as JournalStore from "./JournalStore.js"
import type { Offsets } from "./JournalEvent.js"
import type { FailureRecord } from "./Outputs.js"
import * as RunDir from "./RunDir.js"
import * as RunState from "./RunState.js"

export type RowStatus = "succeeded" | "failed" | "pending" | "invalid"

export interface RowView {
  /** Position in the run's row order: stage order, then shard order (plan order), then line. */
  readonly index: number
  readonly customId: string
  readonly key: string | null
  readonly stage: string
  /** The shard that planned it (retries keep the row's index). */
  readonly shard: string
  /** The row's latest outcome: a retried row shows its last attempt. */
  readonly status: RowStatus
  readonly failure: { readonly class: string; readonly code: string; readonly message: string } | null
  /** The row's input as planned (shards/<shard>.rows.jsonl); null for a row rejected before planning. */
  readonly input: unknown
  /** The answer's content: JSON-parsed when it is JSON, else its text; null for a row with no answer. */
  readonly output: unknown | null
  readonly cached: boolean
}

export interface RowQuery {
  readonly offset: number
  readonly limit: number
  readonly status?: RowStatus | undefined
  readonly failureClass?: string | undefined
  readonly stage?: string | undefined
  /** The key exactly or as a substring, or text of the input or output (case-insensitive). */
  readonly q?: string | undefined
}

export interface RowPage {
  readonly offset: number
  readonly limit: number
  /** Rows matching the query; null when not counted (a text search stopped once its page was full). */
  readonly total: number | null
  readonly rows: ReadonlyArray<RowView>
}

export class RunRowsError extends Schema.TaggedError<RunRowsError>()("RunRowsError", {
  path: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return `${this.path}: ${this.description}`
  }
}

export interface RunRows {
  readonly root: string
  /** Rows in the index (all stages, rejected rows included). */
  readonly size: () => number
  /** Bytes held by the index's arrays. */
  readonly bytes: () => number
  readonly page: (query: RowQuery) => Effect.Effect<RowPage, RunRowsError>
  /** The row's latest result line as collected (or as answered online), parsed; null if none. */
  readonly raw: (customId: string) => Effect.Effect<unknown | null, RunRowsError>
  /** Takes in what was committed since the last read; cheap when nothing changed. */
  readonly refresh: Effect.Effect<void, RunRowsError>
}

const STATUS: ReadonlyArray<RowStatus> = ["pending", "succeeded", "failed", "invalid"]
const PENDING = 0
const SUCCEEDED = 1
const FAILED = 2
const INVALID = 3
/** Where a row's answer line is: none, results.jsonl, or its latest shard's online file. */
const NO_ANSWER = 0
const IN_RESULTS = 1
const IN_ONLINE = 2
const NONE = 0xffffffff

/** A run of rows with consecutive numbers, from one shard's sidecar (or rejected before planning). */
interface Range {
  readonly stage: string
  readonly first: number
  count: number
  /** The planning shard's number, or -1 for rows rejected before planning (no sidecar). */
  readonly shard: number
}

interface ShardEntry {
  readonly id: string
  readonly stage: string
  /** A retry or repair shard: the rows it took over, by row number. */
  rows: Int32Array | null
  /** First-attempt shards: their rows are first..first+count. */
  first: number
  count: number
  /** How far its online file was read. */
  onlinePos: number
}


const CUSTOM_ID = Buffer.from(`"customId":"`)

/**
 * The custom_id of a result line (`{"shard":…,"attempt":n,"_tag":…,"customId":"<id>",…}`),
 * read from its bytes: its first `"customId":"` is the key (a quote inside a JSON string is
 * escaped), and it comes before the provider's raw answer.
 */
const resultId = (bytes: Buffer, start: number, end: number): string | undefined => {
  const at = bytes.indexOf(CUSTOM_ID, start)
  if (at === -1 || at >= end) return undefined
  const from = at + CUSTOM_ID.length
  const close = bytes.indexOf(0x22, from)
  if (close === -1 || close >= end) return undefined
  const id = bytes.toString("utf8", from, close)
  return id.includes("\\") ? stringField(bytes.toString("utf8", at, end), "customId") : id
}

/**
 * The first `"name":"…"` of a JSON object's text. Inside a JSON string every quote is escaped,
 * so the first literal match is a key, of this object or a nested one: callers ask for fields
 * that come before any nesting in the lines sluice writes.
 */
const stringField = (text: string, name: string): string | undefined => {
  const needle = `"${name}":"`
  const at = text.indexOf(needle)
  if (at === -1) return undefined
  const start = at + needle.length
  let end = text.indexOf(`"`, start)
  if (end === -1) return undefined
  if (!text.slice(start, end).includes("\\")) return text.slice(start, end)
  // Escapes: find the closing quote and let JSON read the string.
  for (end = start; end < text.length; end++) {
    if (text[end] === "\\") end++
    else if (text[end] === `"`) break
  }
  return JSON.parse(text.slice(start - 1, end + 1)) as string
}

/** A repair's custom_id names its row's: `<id>-r<n>` (Repair.repairId). */
const repairedFrom = (id: string): string | undefined => {
  const m = /-r\d+$/.exec(id)
  return m === null ? undefined : id.slice(0, m.index)
}

const parseMaybeJson = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

class Index {
  n = 0
  status = new Uint8Array(1024)
  klass = new Uint8Array(1024)
  answer = new Uint8Array(1024)
  latest = new Uint32Array(1024)
  rowAt = new Float64Array(1024)
  resultAt = new Float64Array(1024)
  failureAt = new Float64Array(1024)
  readonly ranges: Array<Range> = []
  readonly byStage = new Map<string, Array<Range>>()
  readonly shards: Array<ShardEntry> = []
  readonly shardNo = new Map<string, number>()
  readonly classes: Array<string> = [""]
  readonly classNo = new Map<string, number>()
  ids: IdTable
  state = RunState.empty()
  journalPos = Journal.start
  resultsPos = 0
  failuresPos = 0
  /** Set when the files read so far no longer hold (a shard rewritten after it was read): build again. */
  stale = false

  constructor(
    readonly paths: RunDir.RunPaths,
    readonly stageNames: ReadonlyArray<string>,
    /** The journal's events after a position, wherever the run keeps it (JournalStore.ts). */
    readonly readJournal: (from: Journal.Position) => Promise<Journal.Appended>
  ) {
    this.ids = new IdTable((row) => this.idOfSync(row))
    for (const s of stageNames) this.byStage.set(s, [])
  }

  /** Back to no rows, the files read from the lengths the journal's state holds now. */
  private reset(): void {
    this.n = 0
    this.ranges.length = 0
    for (const list of this.byStage.values()) list.length = 0
    this.shards.length = 0
    this.shardNo.clear()
    this.ids = new IdTable((row) => this.idOfSync(row))
    this.resultsPos = this.state.offsets.results
    this.failuresPos = this.state.offsets.failures
  }

  bytes(): number {
    return (
      this.status.byteLength + this.klass.byteLength + this.answer.byteLength + this.latest.byteLength +
      this.rowAt.byteLength + this.resultAt.byteLength + this.failureAt.byteLength + this.ids.bytes
    )
  }

  private grow(): void {
    const size = this.status.length * 2
    const more = <T extends Uint8Array | Uint32Array | Float64Array>(a: T, make: (n: number) => T): T => {
      const b = make(size)
      b.set(a)
      return b
    }
    this.status = more(this.status, (n) => new Uint8Array(n))
    this.klass = more(this.klass, (n) => new Uint8Array(n))
    this.answer = more(this.answer, (n) => new Uint8Array(n))
    this.latest = more(this.latest, (n) => new Uint32Array(n))
    this.rowAt = more(this.rowAt, (n) => new Float64Array(n))
    this.resultAt = more(this.resultAt, (n) => new Float64Array(n))
    this.failureAt = more(this.failureAt, (n) => new Float64Array(n))
  }

  /** A new row in `range`; returns its number. */
  private addRow(range: Range, at: number, latest: number): number {
    if (this.n === this.status.length) this.grow()
    const r = this.n++
    this.status[r] = PENDING
    this.klass[r] = 0
    this.answer[r] = NO_ANSWER
    this.latest[r] = latest
    this.rowAt[r] = at
    this.resultAt[r] = -1
    this.failureAt[r] = -1
    range.count++
    return r
  }

  private newRange(stage: string, shard: number): Range {
    const range: Range = { stage, first: this.n, count: 0, shard }
    this.ranges.push(range)
    let list = this.byStage.get(stage)
    if (list === undefined) this.byStage.set(stage, (list = []))
    list.push(range)
    return range
  }

  /** The range holding row `r` (ranges are in row-number order). */
  rangeOf(r: number): Range {
    let lo = 0
    let hi = this.ranges.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (this.ranges[mid]!.first <= r) lo = mid
      else hi = mid - 1
    }
    return this.ranges[lo]!
  }

  private classOf(name: string): number {
    let c = this.classNo.get(name)
    if (c === undefined) {
      c = this.classes.length
      // 255 classes fill a byte; more would be a run that invents them (they are a fixed set).
      if (c > 255) return 0
      this.classes.push(name)
      this.classNo.set(name, c)
    }
    return c
  }

  /** The custom_id a row was entered under, read back from its line (only for the rare shared hash). */
  private idOfSync(row: number): string {
    const range = this.rangeOf(row)
    const file = range.shard < 0 ? this.paths.failures : this.paths.rowsFile(this.shards[range.shard]!.id)
    const at = range.shard < 0 ? this.failureAt[row]! : this.rowAt[row]!
    const fd = openSync(file, "r")
    try {
      const buffer = Buffer.allocUnsafe(64 * 1024)
      const n = readSync(fd, buffer, 0, buffer.length, at)
      const nl = buffer.subarray(0, n).indexOf(10)
      const text = buffer.toString("utf8", 0, nl === -1 ? n : nl)
      return range.shard < 0 ? stringField(text, "custom_id") ?? "" : sidecarId(Buffer.from(text), 0, Buffer.byteLength(text))
    } finally {
      closeSync(fd)
    }
  }

  private lookup(id: string): number {
    let r = this.ids.get(id)
    let base: string | undefined = id
    while (r === -1 && (base = repairedFrom(base)) !== undefined) r = this.ids.get(base)
    return r
  }

  // -------------------------------------------------------------------------------------------
  // Building: journal events in order, each file read up to what the journal committed
  // -------------------------------------------------------------------------------------------

  async catchUp(): Promise<boolean> {
    let changed = false
    for (let more = true; more; ) {
      const appended = await this.readJournal(this.journalPos)
      // Replaced (a new generation of the run): the index is built again from its start.
      if (appended.restarted) {
        this.stale = true
        return true
      }
      if (appended.position.at !== this.journalPos.at) changed = true
      for (const { event } of appended.events) await this.apply(event)
      this.journalPos = appended.position
      more = appended.more
    }
    if (await this.readOnline()) changed = true
    return changed
  }

  private async apply(event: JournalEvent): Promise<void> {
    const before = event._tag === "ShardRewritten" ? this.shardNo.get(event.shard) : undefined
    RunState.apply(this.state, event)
    switch (event._tag) {
      case "ShardPlanned": {
        await this.readFailures(event.offsets, event.stage)
        await this.readSidecar(event.shard, event.stage, event.parent === null)
        if (event.offsets !== null) await this.readResults(event.offsets.results)
        return
      }
      case "RetryPlanned": {
        for (const s of event.shards) {
          const stage = this.state.shards.get(s.shard)?.stage ?? this.stageNames[0]!
          await this.readSidecar(s.shard, stage, false)
        }
        return
      }
      case "ShardRecut": {
        // Its rows move to its children; those alone over the limit failed.
        const stage = this.state.shards.get(event.shard)?.stage ?? this.stageNames[0]!
        for (const c of event.children) await this.readSidecar(c.shard, stage, false)
        if (event.offsets !== null) await this.readFailures(event.offsets, stage)
        return
      }
      case "StagePlanned":
        return this.readFailures(event.offsets, event.stage)
      case "PlanComplete":
        return this.readFailures(event.offsets, this.stageNames[0]!)
      case "ShardRewritten": {
        // Read before the rewrite: the sidecar's positions no longer hold.
        if (before !== undefined && this.shards[before]!.count > event.requests + event.cachedRows) this.stale = true
        return this.readFailures(event.offsets, this.state.shards.get(event.shard)?.stage ?? this.stageNames[0]!)
      }
      case "PlanRefused": {
        // Nothing planned before it counts: the next run plans the source again.
        this.reset()
        return
      }
      case "Collected": {
        const stage = this.state.shards.get(event.shard)?.stage ?? this.stageNames[0]!
        await this.readResults(event.offsets.results)
        await this.readFailures(event.offsets, stage)
        const no = this.shardNo.get(event.shard)
        if (no === undefined) return
        this.forRows(no, (r) => {
          if (this.latest[r] === no && this.status[r] === PENDING) this.status[r] = SUCCEEDED
        })
        return
      }
      default:
        return
    }
  }

  private forRows(no: number, f: (row: number) => void): void {
    const shard = this.shards[no]!
    if (shard.rows === null) for (let r = shard.first; r < shard.first + shard.count; r++) f(r)
    else for (const r of shard.rows) f(r)
  }

  /** A shard's row sidecar: new rows for a first attempt; for a retry, the rows it takes over. */
  private async readSidecar(id: string, stage: string, first: boolean): Promise<void> {
    if (this.shardNo.has(id)) return
    const no = this.shards.length
    const entry: ShardEntry = { id, stage, rows: null, first: this.n, count: 0, onlinePos: 0 }
    this.shards.push(entry)
    this.shardNo.set(id, no)
    const range = first ? this.newRange(stage, no) : undefined
    const taken: Array<number> = []
    await scan(this.paths.rowsFile(id), 0, undefined, (bytes, start, end, position) => {
      const rowId = sidecarId(bytes, start, end)
      if (range !== undefined) {
        const r = this.addRow(range, position, no)
        this.ids.set(rowId, r)
        entry.count++
        return
      }
      const r = this.lookup(rowId)
      if (r === -1) return
      this.ids.set(rowId, r) // a repair's new id
      this.latest[r] = no
      if (this.status[r] !== INVALID) this.status[r] = PENDING
      this.klass[r] = 0
      this.failureAt[r] = -1
      taken.push(r)
    })
    if (range === undefined) {
      entry.rows = Int32Array.from(taken)
      entry.count = taken.length
    }
  }

  private async readResults(to: number): Promise<void> {
    if (to <= this.resultsPos) return
    this.resultsPos = await scan(this.paths.results, this.resultsPos, to, (bytes, start, end, position) => {
      const id = resultId(bytes, start, end)
      if (id === undefined) return
      const r = this.lookup(id)
      if (r === -1) return
      this.resultAt[r] = position
      this.answer[r] = IN_RESULTS
    })
  }

  private async readFailures(offsets: Offsets | null, stage: string): Promise<void> {
    if (offsets === null || offsets.failures <= this.failuresPos) return
    let invalid: Range | undefined
    this.failuresPos = await scan(this.paths.failures, this.failuresPos, offsets.failures, (bytes, start, end, position) => {
      const f = JSON.parse(bytes.toString("utf8", start, end)) as FailureRecord
      const known = f.custom_id === null ? -1 : this.lookup(f.custom_id)
      if (f.shard === null) {
        // Rejected before it was sent (invalid input, oversize, a duplicate key): a row of its own,
        // unless the sidecar read held it still (read before its shard was rewritten).
        let r = known
        if (r === -1) {
          const last = this.ranges[this.ranges.length - 1]
          invalid ??= last !== undefined && last.shard === -1 && last.stage === stage && last.first + last.count === this.n ? last : this.newRange(stage, -1)
          r = this.addRow(invalid, -1, NONE)
          this.failureAt[r] = position
          if (f.custom_id !== null) this.ids.set(f.custom_id, r)
        }
        this.status[r] = INVALID
        this.klass[r] = this.classOf(f.class)
        this.failureAt[r] = position
        return
      }
      if (known === -1) return
      // A failure of an earlier attempt than the row's latest is not its outcome.
      if (this.shards[this.latest[known]!]?.id !== f.shard) return
      this.status[known] = FAILED
      this.klass[known] = this.classOf(f.class)
      this.failureAt[known] = position
    })
  }

  /** Answers of online shards not collected yet: shown before their collection. */
  private async readOnline(): Promise<boolean> {
    let changed = false
    for (const s of this.state.shards.values()) {
      if (!s.online || s.phase === "collected") continue
      const no = this.shardNo.get(s.id)
      if (no === undefined) continue
      const entry = this.shards[no]!
      const end = await scan(this.paths.onlineFile(s.id), entry.onlinePos, undefined, (bytes, start, end, position) => {
        const id = resultId(bytes, start, end)
        const r = id === undefined ? -1 : this.lookup(id)
        if (r === -1 || this.latest[r] !== no) return
        this.resultAt[r] = position
        this.answer[r] = IN_ONLINE
      })
      if (end !== entry.onlinePos) changed = true
      entry.onlinePos = end
    }
    return changed
  }

  // -------------------------------------------------------------------------------------------
  // Reading pages
  // -------------------------------------------------------------------------------------------

  /**
   * The rows of `stage` (all stages: undefined) in order, those of `only` status and class
   * (-1: any), from the `skip`-th match on; `at.index` is the yielded row's place in the
   * unfiltered order. Whole shards are skipped without looking at their rows when nothing filters.
   */
  *rows(stage: string | undefined, only: { status: number; klass: number }, skip: number, at: { index: number }): Generator<number> {
    let index = 0
    // Indexes are places in the whole run: a stage's rows come after the earlier stages'.
    if (stage !== undefined) {
      for (const [name, ranges] of this.byStage) {
        if (name === stage) break
        for (const range of ranges) index += range.count
      }
    }
    let matched = 0
    const filtered = only.status >= 0 || only.klass >= 0
    for (const name of stage === undefined ? [...this.byStage.keys()] : [stage]) {
      for (const range of this.byStage.get(name) ?? []) {
        if (!filtered && matched + range.count <= skip) {
          matched += range.count
          index += range.count
          continue
        }
        const end = range.first + range.count
        for (let r = range.first; r < end; r++, index++) {
          if (filtered && ((only.status >= 0 && this.status[r] !== only.status) || (only.klass >= 0 && this.klass[r] !== only.klass))) continue
          if (matched++ < skip) continue
          at.index = index
          yield r
        }
      }
    }
  }

  /** Rows of `stage` (all: undefined) of `only` status and class. */
  count(stage: string | undefined, only: { status: number; klass: number }): number {
    let n = 0
    for (const name of stage === undefined ? [...this.byStage.keys()] : [stage]) {
      for (const range of this.byStage.get(name) ?? []) {
        if (only.status < 0 && only.klass < 0) {
          n += range.count
          continue
        }
        const end = range.first + range.count
        for (let r = range.first; r < end; r++) {
          if ((only.status < 0 || this.status[r] === only.status) && (only.klass < 0 || this.klass[r] === only.klass)) n++
        }
      }
    }
    return n
  }

  /** The ranges of `stage` (all: undefined) in order, with the index of each one's first row. */
  *rangesOf(stage: string | undefined): Generator<{ readonly range: Range; readonly index: number }> {
    let index = 0
    for (const [name, ranges] of this.byStage) {
      if (stage !== undefined && name !== stage) {
        for (const range of ranges) index += range.count
        continue
      }
      for (const range of ranges) {
        yield { range, index }
        index += range.count
      }
    }
  }

  /**
   * The rows among `candidates` (rows of `range`, in order) whose sidecar line or answer
   * text holds `q` (lower case): the sidecar read once from its first candidate on, the
   * answers once over the span of results.jsonl that holds them (a shard's are together).
   */
  async search(range: Range, candidates: ReadonlyArray<number>, q: string, readers: Readers): Promise<Set<number>> {
    const hits = new Set<number>()
    const holds = (bytes: Buffer, start: number, end: number) => bytes.toString("utf8", start, end).toLowerCase().includes(q)
    if (range.shard >= 0) {
      const byPosition = new Map<number, number>()
      for (const r of candidates) byPosition.set(this.rowAt[r]!, r)
      await scan(this.paths.rowsFile(this.shards[range.shard]!.id), this.rowAt[candidates[0]!]!, undefined, (bytes, start, end, position) => {
        const r = byPosition.get(position)
        if (r !== undefined && holds(bytes, start, end)) hits.add(r)
        return position < this.rowAt[candidates[candidates.length - 1]!]!
      })
    } else {
      for (const r of candidates) {
        if (this.failureAt[r]! >= 0 && (await readers.line(this.paths.failures, this.failureAt[r]!)).toLowerCase().includes(q)) hits.add(r)
      }
    }
    const inResults = new Map<number, number>()
    let from = Infinity
    let to = -1
    for (const r of candidates) {
      if (hits.has(r)) continue
      if (this.answer[r] === IN_RESULTS) {
        inResults.set(this.resultAt[r]!, r)
        from = Math.min(from, this.resultAt[r]!)
        to = Math.max(to, this.resultAt[r]!)
      } else if (this.answer[r] === IN_ONLINE) {
        const text = (await this.answerOf(r, readers))?.["text"]
        if (typeof text === "string" && text.toLowerCase().includes(q)) hits.add(r)
      }
    }
    if (to >= 0) {
      await scan(this.paths.results, from, this.resultsPos, (bytes, start, end, position) => {
        const r = inResults.get(position)
        if (r !== undefined) {
          const answer = JSON.parse(bytes.toString("utf8", start, end)) as { text?: unknown }
          if (typeof answer.text === "string" && answer.text.toLowerCase().includes(q)) hits.add(r)
        }
        return position < to
      })
    }
    return hits
  }

  size(): number {
    return this.n
  }

  async view(row: number, index: number, readers: Readers): Promise<RowView> {
    const range = this.rangeOf(row)
    const shard = range.shard < 0 ? null : this.shards[range.shard]!
    const sidecar = shard === null ? undefined : (JSON.parse(await readers.line(this.paths.rowsFile(shard.id), this.rowAt[row]!)) as {
      id: string
      key: string
      input: unknown
      c?: 1
    })
    const failureLine = this.failureAt[row]! < 0 ? undefined : (JSON.parse(await readers.line(this.paths.failures, this.failureAt[row]!)) as FailureRecord)
    const answer = await this.answerOf(row, readers)
    const output = answer !== undefined && answer["_tag"] === "Succeeded" && typeof answer["text"] === "string" ? parseMaybeJson(answer["text"]) : null
    return {
      index,
      customId: sidecar?.id ?? failureLine?.custom_id ?? "",
      key: sidecar?.key ?? failureLine?.key ?? null,
      stage: range.stage,
      shard: shard?.id ?? "",
      status: STATUS[this.status[row]!]!,
      failure: failureLine === undefined ? null : { class: failureLine.class, code: failureLine.code, message: failureLine.message },
      input: sidecar === undefined ? null : sidecar.input,
      output,
      cached: sidecar?.c === 1 || answer?.["cached"] === true
    }
  }

  async answerOf(row: number, readers: Readers): Promise<Record<string, unknown> | undefined> {
    const where = this.answer[row]
    if (where === NO_ANSWER) return undefined
    const file = where === IN_RESULTS ? this.paths.results : this.paths.onlineFile(this.shards[this.latest[row]!]!.id)
    return JSON.parse(await readers.line(file, this.resultAt[row]!)) as Record<string, unknown>
  }

  async sidecarText(row: number, readers: Readers): Promise<string | undefined> {
    const range = this.rangeOf(row)
    if (range.shard < 0) return undefined
    return readers.line(this.paths.rowsFile(this.shards[range.shard]!.id), this.rowAt[row]!)
  }

  find(id: string): number {
    return this.lookup(id)
  }
}

/** The `id` of a sidecar line (its first field, as the planner writes it), else the parsed line's. */
const sidecarId = (bytes: Buffer, start: number, end: number): string => {
  // `{"id":"` is 7 bytes.
  if (bytes[start + 1] === 0x22 && bytes.toString("latin1", start, start + 7) === `{"id":"`) {
    const close = bytes.indexOf(0x22, start + 7)
    if (close !== -1 && close < end) {
      const id = bytes.toString("utf8", start + 7, close)
      if (!id.includes("\\")) return id
    }
  }
  return (JSON.parse(bytes.toString("utf8", start, end)) as { id: string }).id
}

const statusCode = (s: RowStatus | undefined): number => (s === undefined ? -1 : STATUS.indexOf(s))

/** Opens the rows of the run directory at `root`; reading more later is `refresh`. */
export const open = (
  root: string
): Effect.Effect<RunRows, RunRowsError | JournalStore.JournalElsewhere | RunDir.NotARunDirectory | RunDir.RunDirError, FileSystem.FileSystem | Path.Path | Scope.Scope> =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    const paths = RunDir.paths(path.resolve(root), path)
    const manifest = yield* RunDir.readManifest(paths)
    const stageNames = manifest.stages.map((s) => s.name)
    const runtime = yield* Effect.runtime<FileSystem.FileSystem>()
    const readJournal = (from: Journal.Position) => Runtime.runPromise(runtime)(JournalStore.readAfter(paths, from))
    const fail = (e: unknown) =>
      new RunRowsError({ path: paths.root, description: e instanceof Error ? e.message : String(e) })
    // A journal in a database this process is not connected to: said as such (a usage error), not as rows that cannot be read.
    yield* JournalStore.of(paths).pipe(Effect.catchTag("JournalIOError", (e) => Effect.fail(fail(e))))
    let index = new Index(paths, stageNames, readJournal)
    // A catch-up that failed half-way (a file read at a bad moment) has applied part of its
    // events: applying them again would count rows twice, so the next one starts afresh
    // (pages are served from the index as it was meanwhile).
    let broken = false
    const build = Effect.tryPromise({
      try: async () => {
        if (broken) {
          const fresh = new Index(paths, stageNames, readJournal)
          await fresh.catchUp()
          index = fresh
          broken = false
        } else {
          try {
            await index.catchUp()
          } catch (e) {
            broken = true
            throw e
          }
        }
        // A shard rewritten after its sidecar was read: read again from the start (once: a
        // rewrite journaled but not yet renamed into place is done by the run's next start).
        if (index.stale) {
          index = new Index(paths, stageNames, readJournal)
          await index.catchUp()
          index.stale = false
        }
      },
      catch: fail
    })
    const lock = yield* Effect.makeSemaphore(1)
    yield* build

    const page = (query: RowQuery): Effect.Effect<RowPage, RunRowsError> =>
      lock.withPermits(1)(
        Effect.tryPromise({
          try: () => pageOf(index, query),
          catch: fail
        })
      )

    const raw = (customId: string): Effect.Effect<unknown | null, RunRowsError> =>
      lock.withPermits(1)(
        Effect.tryPromise({
          try: async () => {
            const r = index.find(customId)
            if (r === -1) return null
            const readers = new Readers()
            try {
              return (await index.answerOf(r, readers)) ?? null
            } finally {
              await readers.close()
            }
          },
          catch: fail
        })
      )

    return {
      root: paths.root,
      size: () => index.size(),
      bytes: () => index.bytes(),
      page,
      raw,
      refresh: lock.withPermits(1)(build)
    } satisfies RunRows
  })

const pageOf = async (index: Index, query: RowQuery): Promise<RowPage> => {
  const offset = Math.max(0, Math.floor(query.offset))
  const limit = Math.max(0, Math.floor(query.limit))
  const status = statusCode(query.status)
  const klass = query.failureClass === undefined ? -1 : index.classNo.get(query.failureClass) ?? -2
  const stage = query.stage
  const empty = { offset, limit, total: 0, rows: [] }
  if (klass === -2 || (stage !== undefined && !index.byStage.has(stage))) return empty
  const only = { status, klass }
  const readers = new Readers()
  try {
    const picked: Array<readonly [number, number]> = []
    const at = { index: 0 }
    const q = query.q?.trim().toLowerCase()
    const views = () => Promise.all(picked.map(([r, i]) => index.view(r, i, readers)))
    if (q === undefined || q === "") {
      for (const r of index.rows(stage, only, offset, at)) {
        if (picked.length >= limit) break
        picked.push([r, at.index])
      }
      return { offset, limit, total: index.count(stage, only), rows: await views() }
    }
    // A text search reads the candidates' lines shard by shard, and stops once the page is full.
    let matched = 0
    let full = false // stopped with candidates left: the total is not counted
    search: for (const { range, index: first } of index.rangesOf(stage)) {
      const candidates: Array<number> = []
      for (let r = range.first; r < range.first + range.count; r++) {
        if ((status < 0 || index.status[r] === status) && (klass < 0 || index.klass[r] === klass)) candidates.push(r)
      }
      if (candidates.length === 0) continue
      if (picked.length >= limit) {
        full = true
        break
      }
      const hits = await index.search(range, candidates, q, readers)
      for (const r of candidates) {
        if (!hits.has(r)) continue
        if (picked.length >= limit) {
          full = true
          break search
        }
        if (matched++ >= offset) picked.push([r, first + (r - range.first)])
      }
    }
    const total = full ? null : matched
    return { offset, limit, total, rows: await views() }
  } finally {
    await readers.close()
  }
}

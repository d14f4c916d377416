/**
 * What a shard's results said of each of its rows, held between reading the results and
 * settling the rows — without an object or a string per row in V8's heap. Rows are numbered
 * in the order of the shard's row sidecar; their custom_ids go into an `IdTable`, their
 * answers' texts (decoded only when the row is settled) and cache keys into byte buffers.
 * Failed results are rare and kept as they are.
 *
 * Why: a map of decoded outcomes lived through the whole shard, so it was promoted out of the
 * young generation and became old-space garbage at every shard (~30–40 MB per 50,000 rows):
 * most of a collection's peak RSS.
 */
import type { FailureClass } from "@sluice/core"
import { IdTable } from "./IdTable.js"

/** A failed result, as the row will be failed (or rescheduled). */
export interface RowFailure {
  readonly failure: FailureClass
  readonly code: string
  readonly message: string
}

/** What is known of a row: no result line, an answer (its text not decoded yet), or a failure. */
export type RowAnswer =
  | { readonly _tag: "None" }
  | { readonly _tag: "Answer"; readonly text: string; readonly finishReason: string | null }
  | ({ readonly _tag: "Failure" } & RowFailure)

const none: RowAnswer = { _tag: "None" }

/** Bytes of each buffer of a `TextArena` (a longer text gets a buffer of its own). */
const CHUNK = 4 << 20

/** Whether UTF-8 holds the text as it is: a lone surrogate would come back as U+FFFD (ES2024's `isWellFormed`, in Node 20). */
const wellFormed = (text: string): boolean => (text as unknown as { isWellFormed(): boolean }).isWellFormed()

/**
 * Texts kept as UTF-8 bytes in a few large buffers (outside the heap), by number. A text UTF-8
 * cannot hold (a lone surrogate, which a provider's JSON may escape) is kept as it is, apart:
 * an answer is never altered on its way to the sink (which may refuse it, naming the row).
 */
export class TextArena {
  private readonly chunks: Array<Buffer> = []
  private current: Buffer | undefined
  private used = 0
  /** Per text: its chunk (-1: kept apart), start and length in bytes. */
  private where = new Int32Array(3 * 1024)
  private count = 0
  private readonly apart = new Map<number, string>()

  /** Stores `text`; returns its number. */
  add(text: string): number {
    if (!wellFormed(text)) {
      this.grow()
      this.where[this.count * 3] = -1
      this.apart.set(this.count, text)
      return this.count++
    }
    const bytes = text.length > 65_536 ? Buffer.byteLength(text) : text.length * 3
    if (this.current === undefined || this.used + bytes > this.current.length) {
      this.current = Buffer.allocUnsafeSlow(Math.max(CHUNK, bytes))
      this.chunks.push(this.current)
      this.used = 0
    }
    const written = this.current.write(text, this.used, "utf8")
    this.grow()
    const at = this.count * 3
    this.where[at] = this.chunks.length - 1
    this.where[at + 1] = this.used
    this.where[at + 2] = written
    this.used += written
    return this.count++
  }

  private grow(): void {
    if (this.count * 3 + 3 > this.where.length) {
      const bigger = new Int32Array(this.where.length * 2)
      bigger.set(this.where)
      this.where = bigger
    }
  }

  get(n: number): string {
    const at = n * 3
    if (this.where[at] === -1) return this.apart.get(n)!
    const start = this.where[at + 1]!
    return this.chunks[this.where[at]!]!.toString("utf8", start, start + this.where[at + 2]!)
  }
}

/** A row's state: 0 no result line yet. */
const ANSWER = 1
const FAILURE = 2

export class ShardAnswers {
  private readonly ids = new TextArena()
  private readonly table = new IdTable((row) => this.ids.get(row))
  private readonly texts = new TextArena()
  private readonly failures = new Map<number, RowFailure>()
  /** finishReason values by number (0: null), and the number of each. */
  private readonly reasons: Array<string | null> = [null]
  private readonly reasonOf = new Map<string, number>()
  private rows = 0
  private state: Uint8Array
  private text: Int32Array
  private reason: Uint16Array
  /** 32 bytes per row: its cache key (SHA-256), when `keyed` says it has one. */
  private keys: Uint8Array
  private keyed: Uint8Array

  constructor(expectedRows = 1024) {
    const n = Math.max(16, expectedRows)
    this.state = new Uint8Array(n)
    this.text = new Int32Array(n)
    this.reason = new Uint16Array(n)
    this.keys = new Uint8Array(n * 32)
    this.keyed = new Uint8Array(n)
  }

  /** Enters the next row of the sidecar; `cacheKey`: 64 hex digits. */
  addRow(id: string, cacheKey: string | undefined): void {
    if (this.rows === this.state.length) this.grow()
    const row = this.rows++
    this.ids.add(id)
    this.table.set(id, row)
    if (cacheKey !== undefined) {
      Buffer.from(this.keys.buffer, this.keys.byteOffset + row * 32, 32).write(cacheKey, "hex")
      this.keyed[row] = 1
    }
  }

  /** The row sent under `id` (its first, if the sidecar repeats it), or -1: none of this shard's. */
  row(id: string): number {
    return this.table.get(id)
  }

  cacheKey(row: number): string | undefined {
    return this.keyed[row] === 1 ? Buffer.from(this.keys.buffer, this.keys.byteOffset + row * 32, 32).toString("hex") : undefined
  }

  /** Whether the row has an answer already (a duplicated line: the first answer stands). */
  answered(row: number): boolean {
    return this.state[row] === ANSWER
  }

  answer(row: number, text: string, finishReason: string | null): void {
    this.state[row] = ANSWER
    this.failures.delete(row)
    this.text[row] = this.texts.add(text)
    let r = 0
    if (finishReason !== null) {
      r = this.reasonOf.get(finishReason) ?? -1
      if (r === -1) {
        r = this.reasons.length
        // Providers have a handful of reasons; anything past 65,535 distinct ones is not kept.
        if (r <= 0xffff) {
          this.reasons.push(finishReason)
          this.reasonOf.set(finishReason, r)
        } else r = 0
      }
    }
    this.reason[row] = r
  }

  fail(row: number, failure: RowFailure): void {
    this.state[row] = FAILURE
    this.failures.set(row, failure)
  }

  get(row: number): RowAnswer {
    switch (this.state[row]) {
      case ANSWER:
        return { _tag: "Answer", text: this.texts.get(this.text[row]!), finishReason: this.reasons[this.reason[row]!]! }
      case FAILURE:
        return { _tag: "Failure", ...this.failures.get(row)! }
      default:
        return none
    }
  }

  private grow(): void {
    const n = this.state.length * 2
    const state = new Uint8Array(n)
    state.set(this.state)
    this.state = state
    const text = new Int32Array(n)
    text.set(this.text)
    this.text = text
    const reason = new Uint16Array(n)
    reason.set(this.reason)
    this.reason = reason
    const keys = new Uint8Array(n * 32)
    keys.set(this.keys)
    this.keys = keys
    const keyed = new Uint8Array(n)
    keyed.set(this.keyed)
    this.keyed = keyed
  }
}

/**
 * The ledger of real-time calls: one entry per call that reached a real-time endpoint (answered,
 * refused, faulted or lost), so tests can count requests sent twice (by custom_id) and requests
 * per minute (by emulator-clock time) from `GET /_emulator/ledger`.
 *
 * Kept in memory, not in the state dir (a restarted emulator starts an empty list), and bounded:
 * past MAX_CALLS the oldest entries are forgotten and counted in `calls_dropped`.
 */

/** Entries kept; each is ~200 bytes of JSON. */
export const MAX_CALLS = 100_000

/** Longest custom_id recorded (sluice's are at most 64 characters); longer header values are cut. */
export const MAX_CUSTOM_ID = 256

export type RealtimeApi = "openai" | "anthropic" | "gemini"

/** One real-time call, as `GET /_emulator/ledger` lists it under `calls` (exported as `LedgerCall` by EmulatorControl.ts). */
export interface CallEntry {
  /** 1, 2, … in order of arrival, across all real-time endpoints (reset restarts at 1). */
  readonly seq: number
  readonly api: RealtimeApi
  /** `/v1/chat/completions`, `/v1/embeddings`, `/v1/responses`, `/v1/messages` or `generateContent`, whatever the API root. */
  readonly endpoint: string
  /** The `x-sluice-custom-id` header, or null. */
  readonly custom_id: string | null
  /** The model the request named (the path's for Gemini), or null. */
  readonly model: string | null
  /** The HTTP status answered (for a lost response: the one that was not delivered). */
  readonly status: number
  /** Usage of the answer (0 when the call was not answered with 200). */
  readonly input_tokens: number
  readonly output_tokens: number
  /** Emulator-clock ms: when the request was read (and judged by the limits), and when it was answered. */
  readonly received_at: number
  readonly answered_at: number
  /** The delay the latency settings added (ms). */
  readonly latency_ms: number
  /** The call fault that hit it: "RateLimited" (rateLimitRate), "ServerError" or "Reset"; null otherwise. */
  readonly fault: string | null
  /** The response never reached the client: a reset fault, or the client had closed the connection. */
  readonly lost: boolean
}

export class CallLedger {
  private entries: Array<CallEntry> = []
  private start = 0
  private seq = 0
  dropped = 0

  nextSeq(): number {
    return ++this.seq
  }

  add(entry: CallEntry): void {
    this.entries.push(entry)
    // Amortised: compact once the forgotten head is as long as the kept tail.
    if (this.entries.length - this.start > MAX_CALLS) {
      this.start++
      this.dropped++
      if (this.start >= MAX_CALLS) {
        this.entries = this.entries.slice(this.start)
        this.start = 0
      }
    }
  }

  reset(): void {
    this.entries = []
    this.start = 0
    this.seq = 0
    this.dropped = 0
  }

  /** The kept entries as JSON text chunks, in order of arrival (`seq`; they are recorded when answered). */
  *json(): Generator<string> {
    const snapshot = this.entries.slice(this.start).sort((a, b) => a.seq - b.seq)
    const chunk = 1000
    for (let i = 0; i < snapshot.length; i += chunk) {
      yield `${i > 0 ? "," : ""}${snapshot.slice(i, i + chunk).map((entry) => JSON.stringify(entry)).join(",")}`
    }
  }
}

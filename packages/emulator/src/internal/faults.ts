/**
 * Fault switches and the other runtime settings (batch speed; the real-time endpoints' rate
 * limits, latency and hold). Settings can be given at start and changed at runtime
 * (`POST /_emulator/faults`). Call-level faults (429, 5xx, socket resets)
 * follow a deterministic sequence, not a random one, so a failing test
 * replays the same way: each rate feeds an accumulator and a fault fires
 * when it reaches 1 (rate 0.25 = every 4th call). A path that was just
 * faulted is never faulted on its next call, so a client that retries always
 * makes progress.
 */
import { invalidRequest } from "./errors.js"

export interface FaultSettings {
  /** Fraction of batch requests answered with a 500 error line (first submission only). */
  readonly errorRate: number
  /** Fraction of /v1 calls answered 429 with Retry-After and retry-after-ms. */
  readonly rateLimitRate: number
  /** Delay advertised by 429 responses, in ms (Retry-After carries it rounded up to seconds). */
  readonly retryAfterMs: number
  /** Fraction of /v1 calls answered 500, 502 or 503 before doing anything. */
  readonly serverErrorRate: number
  /** Fraction of /v1 calls whose socket is destroyed after the call took effect, without a response. */
  readonly resetRate: number
  /** Fraction of lines silently omitted from both result files of batches finalised from now on. */
  readonly dropLines: number
  /** Completed batches report output_file_id: null until this long after completion. */
  readonly lateOutputFileMs: number
  /** Fraction of first-time structured (JSON) answers that are invalid JSON or do not match the schema. */
  readonly invalidJsonRate: number
  /** Processing speed of batches created from now on (requests per second; Infinity = instant). */
  readonly requestsPerSecond: number
  /** Real-time endpoints: requests per minute per model (token bucket, see rateLimits.ts); Infinity = none. */
  readonly rpmLimit: number
  /** Real-time endpoints: tokens (input + output) per minute per model; Infinity = none. */
  readonly tpmLimit: number
  /** Real-time endpoints: send rate-limit headers (and Retry-After on the limiter's 429s); false = none, like vLLM. */
  readonly rateLimitHeaders: boolean
  /** Real-time endpoints: delay of every answer (ms). */
  readonly latencyMs: number
  /** Real-time endpoints: added delay per output token of the answer (ms). */
  readonly latencyPerTokenMs: number
  /** Real-time endpoints: admitted requests wait (in flight) until this is switched off. */
  readonly holdRequests: boolean
  /** Every DELETE (files, batches; every family) is refused 403, as for a key without delete permission. */
  readonly refuseDeletes: boolean
}

export const defaultFaults: FaultSettings = {
  errorRate: 0,
  rateLimitRate: 0,
  retryAfterMs: 1000,
  serverErrorRate: 0,
  resetRate: 0,
  dropLines: 0,
  lateOutputFileMs: 0,
  invalidJsonRate: 0,
  requestsPerSecond: 1000,
  rpmLimit: Infinity,
  tpmLimit: Infinity,
  rateLimitHeaders: true,
  latencyMs: 0,
  latencyPerTokenMs: 0,
  holdRequests: false,
  refuseDeletes: false
}

const RATE_KEYS = ["errorRate", "rateLimitRate", "serverErrorRate", "resetRate", "dropLines", "invalidJsonRate"] as const
const DURATION_KEYS = ["retryAfterMs", "lateOutputFileMs", "latencyMs", "latencyPerTokenMs"] as const
/** Positive numbers where Infinity (given as the string "Infinity" or null in JSON) means "no limit". */
const UNBOUNDED_KEYS = ["requestsPerSecond", "rpmLimit", "tpmLimit"] as const
const BOOLEAN_KEYS = ["rateLimitHeaders", "holdRequests", "refuseDeletes"] as const

const isOneOf = (keys: ReadonlyArray<string>, key: string): boolean => keys.includes(key)

/** Validates a partial settings object (from options or a JSON body); throws a 400 ApiError when invalid. */
export const parseFaultPatch = (input: Record<string, unknown>, allowed: ReadonlySet<string>): Partial<FaultSettings> => {
  const patch: Record<string, number | boolean> = {}
  for (const [key, value] of Object.entries(input)) {
    if (value === undefined) continue
    if (!allowed.has(key)) {
      throw invalidRequest(`Unknown fault '${key}'. Known: ${[...allowed].join(", ")}.`, key)
    }
    if (isOneOf(RATE_KEYS, key)) {
      if (typeof value !== "number" || !(value >= 0 && value <= 1)) throw invalidRequest(`'${key}' must be a number in [0, 1].`, key)
      patch[key] = value
    } else if (isOneOf(DURATION_KEYS, key)) {
      if (typeof value !== "number" || !(value >= 0) || !Number.isFinite(value)) throw invalidRequest(`'${key}' must be a number of ms >= 0.`, key)
      patch[key] = value
    } else if (isOneOf(UNBOUNDED_KEYS, key)) {
      const n = value === "Infinity" || value === null ? Infinity : value
      if (typeof n !== "number" || !(n > 0)) throw invalidRequest(`'${key}' must be > 0 (or "Infinity").`, key)
      patch[key] = n
    } else if (isOneOf(BOOLEAN_KEYS, key)) {
      if (typeof value !== "boolean") throw invalidRequest(`'${key}' must be true or false.`, key)
      patch[key] = value
    }
  }
  return patch as Partial<FaultSettings>
}

export const FAULT_KEYS: ReadonlySet<string> = new Set([...RATE_KEYS, ...DURATION_KEYS, ...UNBOUNDED_KEYS, ...BOOLEAN_KEYS])

/** JSON view of the settings (Infinity is not JSON: rendered as the string "Infinity"). */
export const faultsJson = (settings: FaultSettings): Record<string, unknown> => {
  const json: Record<string, unknown> = { ...settings }
  for (const key of UNBOUNDED_KEYS) if (!Number.isFinite(settings[key])) json[key] = "Infinity"
  return json
}

export type CallFault =
  | { readonly _tag: "RateLimited"; readonly retryAfterMs: number }
  | { readonly _tag: "ServerError"; readonly status: 500 | 502 | 503 }
  | { readonly _tag: "Reset" }

const SERVER_STATUSES = [500, 502, 503] as const
/** Bound on the per-path memory of the "never twice in a row" rule. */
const MAX_TRACKED_PATHS = 10_000

export class Faults {
  private current: FaultSettings
  private rateLimitAcc = 0
  private serverErrorAcc = 0
  private resetAcc = 0
  private serverErrorCount = 0
  private readonly faultedLast = new Map<string, boolean>()
  private readonly listeners: Array<(settings: FaultSettings) => void> = []

  constructor(private readonly initial: FaultSettings) {
    this.current = initial
  }

  get settings(): FaultSettings {
    return this.current
  }

  /** Called after every change of the settings (the hold of real-time requests follows them). */
  onChange(listener: (settings: FaultSettings) => void): void {
    this.listeners.push(listener)
  }

  update(patch: Partial<FaultSettings>): void {
    this.current = { ...this.current, ...patch }
    for (const listener of this.listeners) listener(this.current)
  }

  reset(): void {
    this.current = this.initial
    this.rateLimitAcc = this.serverErrorAcc = this.resetAcc = this.serverErrorCount = 0
    this.faultedLast.clear()
    for (const listener of this.listeners) listener(this.current)
  }

  /** Decides the fault (if any) of one API call, identified by method + path. */
  decide(callKey: string): CallFault | undefined {
    const s = this.current
    this.rateLimitAcc += s.rateLimitRate
    this.serverErrorAcc += s.serverErrorRate
    this.resetAcc += s.resetRate
    if (this.faultedLast.get(callKey) === true) {
      // Keep the debt for the next call on another path (or this one, next time), but do not let it pile up.
      this.rateLimitAcc = Math.min(this.rateLimitAcc, 1)
      this.serverErrorAcc = Math.min(this.serverErrorAcc, 1)
      this.resetAcc = Math.min(this.resetAcc, 1)
      this.remember(callKey, false)
      return undefined
    }
    let fault: CallFault | undefined
    if (this.rateLimitAcc >= 1) {
      this.rateLimitAcc -= 1
      fault = { _tag: "RateLimited", retryAfterMs: s.retryAfterMs }
    } else if (this.serverErrorAcc >= 1) {
      this.serverErrorAcc -= 1
      fault = { _tag: "ServerError", status: SERVER_STATUSES[this.serverErrorCount++ % SERVER_STATUSES.length]! }
    } else if (this.resetAcc >= 1) {
      this.resetAcc -= 1
      fault = { _tag: "Reset" }
    }
    this.remember(callKey, fault !== undefined)
    return fault
  }

  private remember(callKey: string, faulted: boolean): void {
    if (this.faultedLast.size >= MAX_TRACKED_PATHS && !this.faultedLast.has(callKey)) this.faultedLast.clear()
    this.faultedLast.set(callKey, faulted)
  }
}

/**
 * Rate limits of the real-time endpoints: requests per minute and tokens per minute, per model
 * (OpenAI's rule: limits are per model per organisation, and the emulator is one
 * organisation). Each limit is a token bucket, as OpenAI and Anthropic describe theirs: it holds
 * up to `limit` units, starts full, and refills continuously at `limit` per minute, so a full
 * burst is allowed and then the pace is `limit` a minute. Time is the emulator's clock: a test
 * that drives the clock drives the limits.
 *
 * A request is admitted only when both buckets hold enough (1 request; its tokens), and then
 * takes from both. Its tokens are its answer's usage (input + output): the emulator knows the
 * answer before it admits the request (the real APIs reserve `max_tokens` instead, then adjust).
 */

/** One minute: the window every limit refills over. */
export const WINDOW_MS = 60_000

export interface Limits {
  /** Requests per minute; Infinity = no limit. */
  readonly rpm: number
  /** Tokens per minute; Infinity = no limit. */
  readonly tpm: number
}

/** One bucket as the headers report it. */
export interface BucketState {
  readonly limit: number
  /** Whole units left. */
  readonly remaining: number
  /** Until the bucket is full again (ms). */
  readonly resetMs: number
}

/** The limits that apply (finite ones only) after a decision. */
export interface LimitState {
  readonly requests: BucketState | undefined
  readonly tokens: BucketState | undefined
}

export type Admission =
  | { readonly _tag: "Admitted"; readonly state: LimitState }
  | {
    readonly _tag: "OverLimit"
    readonly state: LimitState
    /** The bucket that refused (the one that takes longer to allow the request). */
    readonly dimension: "requests" | "tokens"
    readonly limit: number
    /** Units of that bucket in use. */
    readonly used: number
    readonly requested: number
    /** When the request would be admitted; undefined when never (more tokens than the limit). */
    readonly retryAfterMs: number | undefined
  }

class Bucket {
  constructor(
    public level: number,
    public at: number
  ) {}

  /** Refills up to `limit` for the time since the last look (a clock going back refills nothing). */
  refill(limit: number, now: number): void {
    if (now > this.at) this.level += ((now - this.at) * limit) / WINDOW_MS
    this.level = Math.min(this.level, limit)
    this.at = Math.max(this.at, now)
  }

  /** Time until `units` are available (0 when they are). */
  waitFor(units: number, limit: number): number {
    return units <= this.level ? 0 : Math.ceil(((units - this.level) * WINDOW_MS) / limit - 1e-9)
  }

  state(limit: number): BucketState {
    return {
      limit,
      remaining: Math.max(0, Math.floor(this.level + 1e-9)),
      resetMs: Math.max(0, Math.ceil(((limit - this.level) * WINDOW_MS) / limit - 1e-9))
    }
  }
}

interface Buckets {
  readonly requests: Bucket
  readonly tokens: Bucket
}

/** Bound on the models tracked (a limit per model; forgetting them all only refills the buckets). */
const MAX_KEYS = 10_000

export class RateLimiter {
  private readonly buckets = new Map<string, Buckets>()

  /** Admits (and charges) one request of `tokens` tokens for `key` at `now`, or says why not. */
  admit(key: string, tokens: number, limits: Limits, now: number): Admission {
    const rpm = Number.isFinite(limits.rpm) ? limits.rpm : undefined
    const tpm = Number.isFinite(limits.tpm) ? limits.tpm : undefined
    if (rpm === undefined && tpm === undefined) return { _tag: "Admitted", state: { requests: undefined, tokens: undefined } }
    const buckets = this.bucketsOf(key, rpm ?? 0, tpm ?? 0, now)
    if (rpm !== undefined) buckets.requests.refill(rpm, now)
    if (tpm !== undefined) buckets.tokens.refill(tpm, now)
    const stateNow = (): LimitState => ({
      requests: rpm === undefined ? undefined : buckets.requests.state(rpm),
      tokens: tpm === undefined ? undefined : buckets.tokens.state(tpm)
    })
    const requestWait = rpm === undefined ? 0 : buckets.requests.waitFor(1, rpm)
    const tokenWait = tpm === undefined ? 0 : tokens > tpm ? Infinity : buckets.tokens.waitFor(tokens, tpm)
    if (requestWait > 0 || tokenWait > 0) {
      const byTokens = tokenWait > requestWait
      const limit = byTokens ? tpm! : rpm!
      const bucket = byTokens ? buckets.tokens : buckets.requests
      return {
        _tag: "OverLimit",
        state: stateNow(),
        dimension: byTokens ? "tokens" : "requests",
        limit,
        used: Math.max(0, Math.ceil(limit - bucket.level - 1e-9)),
        requested: byTokens ? tokens : 1,
        retryAfterMs: Number.isFinite(Math.max(requestWait, tokenWait)) ? Math.max(requestWait, tokenWait) : undefined
      }
    }
    if (rpm !== undefined) buckets.requests.level -= 1
    if (tpm !== undefined) buckets.tokens.level -= tokens
    return { _tag: "Admitted", state: stateNow() }
  }

  /** Forgets every bucket (all full again). */
  reset(): void {
    this.buckets.clear()
  }

  private bucketsOf(key: string, rpm: number, tpm: number, now: number): Buckets {
    let buckets = this.buckets.get(key)
    if (buckets === undefined) {
      if (this.buckets.size >= MAX_KEYS) this.buckets.clear()
      buckets = { requests: new Bucket(rpm, now), tokens: new Bucket(tpm, now) }
      this.buckets.set(key, buckets)
    }
    return buckets
  }
}

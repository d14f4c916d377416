/**
 * How fast an online run may send to one provider: pure decisions over Effect's Clock (so
 * TestClock drives them in tests), no I/O.
 *
 * - **Concurrency, adaptive under a cap.** A window of requests in flight starts at the cap
 *   (`--concurrency`), halves on a throttle or an overloaded server (once per round: answers
 *   to requests sent before the last cut do not cut again), and grows by one after a window's
 *   worth of good answers, never above the cap (AIMD).
 * - **The provider's own figures.** The latest snapshot of its rate-limit headers (on an answer
 *   or a 429: requests and tokens remaining, the limits, when each window is full again) is a
 *   bucket counted down by every request sent since the request it answered. When the provider
 *   said its limit, the bucket refills as the provider's does (OpenAI and Anthropic: a token
 *   bucket, full again within the minute, refilled continuously at the limit per minute), so
 *   once it is empty a request goes every 60 s / limit (tokens likewise) rather than waiting
 *   for the whole window; and no minute holds more than `limit` requests sent (429s
 *   included: a bucket alone would allow a full burst plus a minute's refill). When the
 *   provider did not say its limit, an empty window waits for its reset, and is then
 *   forgotten. A `retry-after` (or a 429's exhausted window) pauses all sending until then.
 * - **The user's caps, never exceeded.** `rpm`: requests are spaced at least 60 s / rpm apart,
 *   so no 60-second window holds more than `rpm`. `tpm`: a request goes only when the tokens
 *   sent in the last 60 seconds plus its own stay within `tpm` (a request larger than `tpm`
 *   goes alone). Tokens are estimates (input counted, output its `max_tokens`); an answer's
 *   real usage, when larger, replaces its estimate.
 */
import type { RateLimitSnapshot, RateLimitWindow } from "@sluice/providers"
import { Clock, Deferred, Duration, Effect, FiberId, Random } from "effect"

export interface LimiterOptions {
  /** Requests in flight at most. */
  readonly concurrency: number
  /** Requests per minute at most (the user's cap). */
  readonly rpm?: number | undefined
  /** Tokens per minute at most (the user's cap, by the requests' estimates). */
  readonly tpm?: number | undefined
}

/** A slot taken for one request: released once its answer is durable. */
export interface Permit {
  /** Requests sent before and including this one (this limiter's count). */
  readonly seq: number
  /** Tokens sent before and including this one. */
  readonly tokensSent: number
  readonly tokens: number
  /** The round it was sent in: a throttle of an older round does not cut the window again. */
  readonly round: number
  readonly at: number
}

export interface LimiterState {
  readonly window: number
  readonly inFlight: number
  readonly pausedUntil: number
  readonly sent: number
}

export interface Limiter {
  /** Waits until a request of `tokens` may be sent, and takes its slot. */
  readonly acquire: (tokens: number) => Effect.Effect<Permit>
  /** An answer came (a success, or a refusal of the request itself); `usedTokens` its real usage. */
  readonly answered: (permit: Permit, limits: RateLimitSnapshot, usedTokens?: number) => Effect.Effect<void>
  /**
   * The request failed in passing. `throttled`: a 429; `waitMs`: the server's hint; `limits`:
   * the refusal's rate-limit figures (what is left, the limit), taken as an answer's. Returns
   * how long this request should wait before it is sent again (jittered backoff by `attempt`,
   * at least the hint).
   */
  readonly failed: (
    permit: Permit,
    failure: { readonly throttled: boolean; readonly waitMs: number | undefined; readonly attempt: number; readonly limits?: RateLimitSnapshot | undefined }
  ) => Effect.Effect<Duration.Duration>
  /** Frees the slot (after the answer is durable, or the request failed). */
  readonly release: (permit: Permit) => Effect.Effect<void>
  readonly state: () => LimiterState
}

const MINUTE = 60_000
/** The longest a snapshot's reset or a server hint holds sending back: a minute window refills within a minute. */
const MAX_WAIT = 60_000
/** Backoff after a failure in passing: 0.5 s doubling up to 30 s, ±20 % jitter. */
const BASE_DELAY = 500
const MAX_DELAY = 30_000

/**
 * What the provider has left of one limit (requests, or tokens), as this client reckons it:
 * its last figure, less what was sent since, refilled since at `limit` a minute when the
 * provider said its limit.
 */
interface Bucket {
  /** Units left at `at` (below 0 when more was sent than the figure allowed). */
  level: number
  at: number
  /** The `seq` of the request whose answer carried the figure: an older answer never replaces it. */
  readonly seq: number
  /** When the provider said the window is full again (what an empty window of unknown size waits for). */
  readonly resetAt: number
  /** What a full window grants, when the provider said. */
  readonly limit: number | undefined
}

/**
 * The bucket brought to `now`: refilled when its limit is known (never above it); one of
 * unknown size is forgotten once past its reset (a minute at most).
 */
const refill = (bucket: Bucket | undefined, now: number): Bucket | undefined => {
  if (bucket === undefined || now <= bucket.at) return bucket
  if (bucket.limit === undefined) return now >= bucket.resetAt ? undefined : bucket
  bucket.level = Math.min(bucket.limit, bucket.level + ((now - bucket.at) * bucket.limit) / MINUTE)
  bucket.at = now
  return bucket
}

/** When `bucket` holds `need` units (undefined: it does now). */
const readyAt = (bucket: Bucket, need: number): number | undefined => {
  if (bucket.level >= need) return undefined
  return bucket.limit === undefined ? bucket.resetAt : bucket.at + Math.ceil(((need - bucket.level) * MINUTE) / bucket.limit)
}

export const make = (options: LimiterOptions): Effect.Effect<Limiter> =>
  Effect.sync(() => {
    const cap = Math.max(1, Math.floor(options.concurrency))
    // Times are whole milliseconds: a fraction below a clock's precision would make a wait of
    // nothing, and `acquire` would spin until the clock moved on.
    const spacing = options.rpm === undefined ? 0 : Math.ceil(MINUTE / options.rpm)
    let window = cap
    let good = 0
    let round = 0
    let inFlight = 0
    let sent = 0
    let tokensSent = 0
    let pausedUntil = 0
    let nextAt = 0
    let streak = 0
    // `sent` when the last 429 backoff started: 429s of requests sent before it are of the
    // round that backoff answers, and do not lengthen the next one.
    let streakSeq = 0
    let requests: Bucket | undefined
    let tokenBudget: Bucket | undefined
    // Sends of the last minute (the provider's request limit, the tpm cap): times and token
    // estimates, oldest first.
    const log: Array<{ at: number; tokens: number; seq: number }> = []
    let logTokens = 0
    let wake = Deferred.unsafeMake<void>(FiberId.none)

    const changed = () => {
      const woken = wake
      wake = Deferred.unsafeMake<void>(FiberId.none)
      Deferred.unsafeDone(woken, Effect.void)
    }

    const expire = (now: number) => {
      while (log.length > 0 && log[0]!.at <= now - MINUTE) logTokens -= log.shift()!.tokens
    }

    /** When a request of `tokens` may go at `now`: now (undefined), a time to wait for, or "slot" (wait for a release). */
    const blockedUntil = (now: number, tokens: number): number | "slot" | undefined => {
      let until = 0
      expire(now)
      if (now < pausedUntil) until = Math.max(until, pausedUntil)
      if (now < nextAt) until = Math.max(until, nextAt)
      requests = refill(requests, now)
      if (requests !== undefined) {
        until = Math.max(until, readyAt(requests, 1) ?? 0)
        // No minute holds more sends than the provider's limit, those it refused included.
        if (requests.limit !== undefined && log.length >= requests.limit) until = Math.max(until, log[log.length - Math.floor(requests.limit)]!.at + MINUTE)
      }
      tokenBudget = refill(tokenBudget, now)
      // A request larger than the whole window goes when the window is full.
      if (tokenBudget !== undefined) until = Math.max(until, readyAt(tokenBudget, Math.min(tokens, tokenBudget.limit ?? Infinity)) ?? 0)
      if (options.tpm !== undefined) {
        if (log.length > 0 && logTokens + tokens > options.tpm) {
          // The earliest time enough of the window's tokens have left it.
          let left = logTokens
          for (const entry of log) {
            left -= entry.tokens
            if (left + tokens <= options.tpm || left === 0) {
              until = Math.max(until, entry.at + MINUTE)
              break
            }
          }
        }
      }
      if (until > now) return until
      return inFlight >= window ? "slot" : undefined
    }

    const take = (now: number, tokens: number): Permit => {
      inFlight++
      sent++
      tokensSent += tokens
      if (spacing > 0) nextAt = now + spacing
      if (requests !== undefined) requests.level -= 1
      if (tokenBudget !== undefined) tokenBudget.level -= tokens
      log.push({ at: now, tokens, seq: sent })
      logTokens += tokens
      return { seq: sent, tokensSent, tokens, round, at: now }
    }

    const acquire = (tokens: number): Effect.Effect<Permit> =>
      Effect.gen(function* () {
        for (;;) {
          const now = yield* Clock.currentTimeMillis
          const blocked = blockedUntil(now, tokens)
          if (blocked === undefined) return take(now, tokens)
          const signal = wake
          if (blocked === "slot") yield* Deferred.await(signal)
          else yield* Effect.race(Deferred.await(signal), Effect.sleep(Duration.millis(Math.ceil(blocked - now))))
        }
      })

    /**
     * The provider's figures from the answer to `permit`: what it had left once it counted that
     * request. Requests sent before it reached it before it (one sender, sending in order) and
     * are in the figure already; those sent after it are counted down as they go.
     */
    const adopt = (now: number, permit: Permit, limits: RateLimitSnapshot) => {
      const bucket = (figure: RateLimitWindow | undefined, current: Bucket | undefined, sentAfter: number): Bucket | undefined =>
        figure?.remaining === undefined || (current !== undefined && permit.seq < current.seq)
          ? current
          : {
            level: figure.remaining - sentAfter,
            at: now,
            seq: permit.seq,
            resetAt: now + Math.ceil(Math.min(figure.resetMs ?? MAX_WAIT, MAX_WAIT)),
            // A limit of 0 would never refill: taken as unsaid.
            limit: figure.limit !== undefined && figure.limit >= 1 ? figure.limit : current?.limit
          }
      requests = bucket(limits.requests, requests, sent - permit.seq)
      tokenBudget = bucket(limits.tokens, tokenBudget, tokensSent - permit.tokensSent)
    }

    const answered: Limiter["answered"] = (permit, limits, usedTokens) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.sync(() => {
          adopt(now, permit, limits)
          streak = 0
          if (++good >= window) {
            good = 0
            window = Math.min(cap, window + 1)
          }
          if (usedTokens !== undefined && usedTokens > permit.tokens) {
            const entry = log.find((e) => e.seq === permit.seq)
            if (entry !== undefined) {
              logTokens += usedTokens - entry.tokens
              entry.tokens = usedTokens
            }
          }
          changed()
        })
      )

    const failed: Limiter["failed"] = (permit, failure) =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const jitter = 0.8 + 0.4 * (yield* Random.next)
        if (failure.limits !== undefined) adopt(now, permit, failure.limits)
        // Cut once per round: answers to requests sent before the cut say nothing new.
        if (permit.round === round) {
          round++
          good = 0
          window = Math.max(1, Math.floor(window / 2))
        }
        const backoff = Math.min(MAX_DELAY, BASE_DELAY * 2 ** Math.max(0, failure.attempt - 1)) * jitter
        // Grown once per round: the 429s of requests sent together are one refusal.
        if (failure.throttled && (streak === 0 || permit.seq > streakSeq)) {
          streak++
          streakSeq = sent
        }
        // A 429 pauses all sending: the hint, else a backoff that grows while rounds of 429s follow each other.
        const pause = failure.waitMs ?? (failure.throttled ? Math.min(MAX_DELAY, BASE_DELAY * 2 ** (streak - 1)) * jitter : undefined)
        if (pause !== undefined) pausedUntil = Math.max(pausedUntil, now + Math.ceil(Math.min(pause, MAX_WAIT)))
        changed()
        return Duration.millis(Math.ceil(Math.max(backoff, Math.min(failure.waitMs ?? 0, MAX_WAIT))))
      })

    const release: Limiter["release"] = () =>
      Effect.sync(() => {
        inFlight--
        changed()
      })

    return { acquire, answered, failed, release, state: () => ({ window, inFlight, pausedUntil, sent }) }
  })

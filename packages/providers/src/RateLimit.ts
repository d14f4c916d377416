/**
 * Rate-limit signals of real-time answers, read into one neutral snapshot: how many requests
 * and tokens the provider still grants, when its windows are full again, and how long it
 * asked us to wait. Every field is optional: self-hosted servers and most gateways send none.
 *
 * - OpenAI (and OpenAI-compatible APIs that copy it): `x-ratelimit-{limit,remaining,reset}-
 *   {requests,tokens}`, resets as Go-style durations (`6m0s`, `1s`, `120ms`).
 * - Anthropic: `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,
 *   remaining,reset}`, resets as RFC 3339 times of the server's clock: measured from the
 *   answer's `date` when it has one, so a client clock that is off does not move them.
 * - Everyone: `retry-after-ms`, then `retry-after` (seconds or an HTTP date).
 * - Gemini: no headers; a 429's body carries a `google.rpc.RetryInfo` with `retryDelay` ("37s").
 */
import { parseRetryAfter } from "./internal/retry.js"

/** One window of a rate limit (requests or tokens per minute). */
export interface RateLimitWindow {
  /** What the window grants in all (per minute at OpenAI and Anthropic). */
  readonly limit?: number
  /** What is left of it now. */
  readonly remaining?: number
  /** Milliseconds until the window is full again. */
  readonly resetMs?: number
}

export interface RateLimitSnapshot {
  readonly requests?: RateLimitWindow
  readonly tokens?: RateLimitWindow
  /** The server asked for this long before the next request. */
  readonly retryAfterMs?: number
}

export const none: RateLimitSnapshot = {}

type Headers = Readonly<Record<string, string | undefined>>

const number = (value: string | undefined): number | undefined => {
  if (value === undefined) return undefined
  const trimmed = value.trim()
  if (!/^\d+(\.\d+)?$/.test(trimmed)) return undefined
  const n = Number(trimmed)
  return Number.isFinite(n) ? n : undefined
}

const units: Readonly<Record<string, number>> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001, "µs": 0.001, ns: 0.000001 }

/**
 * A Go-style duration as OpenAI sends its resets (`6m0s`, `1s`, `20ms`, `1h2m3.5s`, `0s`), in
 * milliseconds; a bare number counts as seconds. `undefined` for anything else.
 */
export const parseDuration = (text: string | undefined): number | undefined => {
  if (text === undefined) return undefined
  const trimmed = text.trim()
  if (trimmed === "") return undefined
  const bare = number(trimmed)
  if (bare !== undefined) return Math.ceil(bare * 1000)
  const part = /(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)/y
  let ms = 0
  let at = 0
  while (at < trimmed.length) {
    part.lastIndex = at
    const match = part.exec(trimmed)
    if (match === null) return undefined
    ms += Number(match[1]) * units[match[2]!]!
    at = part.lastIndex
  }
  return Number.isFinite(ms) ? Math.ceil(ms) : undefined
}

/** Milliseconds from `nowMs` until an RFC 3339 time (never negative). */
const untilTime = (text: string | undefined, nowMs: number): number | undefined => {
  if (text === undefined || text.trim() === "") return undefined
  const at = Date.parse(text.trim())
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs)
}

const window = (limit: number | undefined, remaining: number | undefined, resetMs: number | undefined): RateLimitWindow | undefined =>
  limit === undefined && remaining === undefined && resetMs === undefined
    ? undefined
    : {
        ...(limit === undefined ? {} : { limit }),
        ...(remaining === undefined ? {} : { remaining }),
        ...(resetMs === undefined ? {} : { resetMs })
      }

const snapshot = (requests: RateLimitWindow | undefined, tokens: RateLimitWindow | undefined, retryAfterMs: number | undefined): RateLimitSnapshot => ({
  ...(requests === undefined ? {} : { requests }),
  ...(tokens === undefined ? {} : { tokens }),
  ...(retryAfterMs === undefined ? {} : { retryAfterMs })
})

/** OpenAI's headers (lower-case names), read at `nowMs`. */
export const fromOpenAiHeaders = (headers: Headers, nowMs: number): RateLimitSnapshot =>
  snapshot(
    window(number(headers["x-ratelimit-limit-requests"]), number(headers["x-ratelimit-remaining-requests"]), parseDuration(headers["x-ratelimit-reset-requests"])),
    window(number(headers["x-ratelimit-limit-tokens"]), number(headers["x-ratelimit-remaining-tokens"]), parseDuration(headers["x-ratelimit-reset-tokens"])),
    parseRetryAfter(headers, nowMs)
  )

const anthropicWindow = (headers: Headers, kind: string, nowMs: number) =>
  window(
    number(headers[`anthropic-ratelimit-${kind}-limit`]),
    number(headers[`anthropic-ratelimit-${kind}-remaining`]),
    untilTime(headers[`anthropic-ratelimit-${kind}-reset`], nowMs)
  )

/** The tighter of two windows: the smaller share left, the later reset. */
const tighter = (a: RateLimitWindow | undefined, b: RateLimitWindow | undefined): RateLimitWindow | undefined => {
  if (a === undefined) return b
  if (b === undefined) return a
  const share = (w: RateLimitWindow) => (w.remaining === undefined ? Infinity : w.limit === undefined || w.limit === 0 ? w.remaining : w.remaining / w.limit)
  return share(b) < share(a) ? b : a
}

/**
 * The server's time when it answered: its `date` header (an HTTP date, whole seconds, so up
 * to a second early: a reset measured from it is at most a second late, never early), else
 * the client's `nowMs`.
 */
export const serverNow = (headers: Headers, nowMs: number): number => {
  const date = headers["date"]
  const at = date === undefined || date.trim() === "" ? NaN : Date.parse(date.trim())
  return Number.isNaN(at) ? nowMs : at
}

/**
 * Anthropic's headers, read at `nowMs`. Its resets (and a `retry-after` date) are times of its
 * clock, measured from its `date`. Tokens: the combined `tokens` window when sent, else the
 * tighter of the input- and output-token windows.
 */
export const fromAnthropicHeaders = (headers: Headers, nowMs: number): RateLimitSnapshot => {
  const now = serverNow(headers, nowMs)
  return snapshot(
    anthropicWindow(headers, "requests", now),
    anthropicWindow(headers, "tokens", now) ?? tighter(anthropicWindow(headers, "input-tokens", now), anthropicWindow(headers, "output-tokens", now)),
    parseRetryAfter(headers, now)
  )
}

/**
 * Gemini's wait hint: `retry-after` when a proxy sends one, else the `retryDelay` ("37s") of
 * a `google.rpc.RetryInfo` in the error body's `details`.
 */
export const fromGeminiAnswer = (headers: Headers, body: unknown, nowMs: number): RateLimitSnapshot => {
  const header = parseRetryAfter(headers, nowMs)
  if (header !== undefined) return { retryAfterMs: header }
  const error = typeof body === "object" && body !== null ? (body as { error?: unknown }).error : undefined
  const details = typeof error === "object" && error !== null ? (error as { details?: unknown }).details : undefined
  if (!Array.isArray(details)) return none
  for (const detail of details) {
    if (typeof detail !== "object" || detail === null) continue
    const type = (detail as Record<string, unknown>)["@type"]
    const delay = (detail as Record<string, unknown>)["retryDelay"]
    if (typeof type === "string" && type.endsWith("google.rpc.RetryInfo") && typeof delay === "string") {
      const ms = parseDuration(delay)
      if (ms !== undefined) return { retryAfterMs: ms }
    }
  }
  return none
}

/**
 * How long a 429 says to wait: its retry hint, else the time until the window it ran out of
 * (the one with nothing remaining) holds something again, else nothing (the caller backs off on
 * its own). A window whose limit is stated refills as a token bucket: its reset (until full)
 * over the units missing is the time per unit, an upper bound on the wait for the first one;
 * one of unknown size is waited out to its reset.
 */
export const waitOf = (limits: RateLimitSnapshot): number | undefined => {
  if (limits.retryAfterMs !== undefined) return limits.retryAfterMs
  const exhausted = [limits.requests, limits.tokens].filter((w) => w?.remaining === 0 && w.resetMs !== undefined)
  const wait = (w: RateLimitWindow) => (w.limit !== undefined && w.limit > 0 ? Math.ceil(w.resetMs! / w.limit) : w.resetMs!)
  return exhausted.length === 0 ? undefined : Math.max(...exhausted.map((w) => wait(w!)))
}

/**
 * Rate-limit headers as each real API sends them on its real-time answers:
 *
 * - OpenAI: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`; resets are Go-style
 *   durations until the bucket is full again (`6ms`, `1s`, `1m30.5s`, `6m0s`).
 * - Anthropic: `anthropic-ratelimit-requests-{limit,remaining,reset}` and the same for `tokens`,
 *   `input-tokens` and `output-tokens`; resets are RFC 3339 times (with a `date` on the same
 *   clock, as a real server's). The emulator has one token
 *   limit (input + output), so the three token families report the same bucket.
 * - Gemini sends none (its 429 carries a RetryInfo detail instead).
 */
import type { BucketState, LimitState } from "./rateLimits.js"

/** A duration as Go prints it (what OpenAI's reset headers carry): `0s`, `120ms`, `8.64s`, `6m0s`, `1h2m3s`. */
export const goDuration = (ms: number): string => {
  const total = Math.max(0, Math.round(ms))
  if (total === 0) return "0s"
  if (total < 1000) return `${total}ms`
  const hours = Math.floor(total / 3_600_000)
  const minutes = Math.floor((total % 3_600_000) / 60_000)
  const seconds = `${(total % 60_000) / 1000}s`
  if (hours > 0) return `${hours}h${minutes}m${seconds}`
  if (minutes > 0) return `${minutes}m${seconds}`
  return seconds
}

export const openAiRateLimitHeaders = (state: LimitState): Record<string, string> => {
  const headers: Record<string, string> = {}
  const put = (name: string, bucket: BucketState | undefined) => {
    if (bucket === undefined) return
    headers[`x-ratelimit-limit-${name}`] = String(bucket.limit)
    headers[`x-ratelimit-remaining-${name}`] = String(bucket.remaining)
    headers[`x-ratelimit-reset-${name}`] = goDuration(bucket.resetMs)
  }
  put("requests", state.requests)
  put("tokens", state.tokens)
  return headers
}

/** An RFC 3339 time, whole seconds, rounded up (a client waiting until then finds the bucket full). */
export const rfc3339 = (ms: number): string => new Date(Math.ceil(ms / 1000) * 1000).toISOString().replace(".000Z", "Z")

/**
 * Anthropic's headers, and a `date` on the emulator's clock: the resets are times of that
 * clock, and a client measures them from the server's date (Node's own `date` is the wall
 * clock, which a held or advanced emulator clock is not).
 */
export const anthropicRateLimitHeaders = (state: LimitState, now: number): Record<string, string> => {
  const headers: Record<string, string> = {}
  if (state.requests !== undefined || state.tokens !== undefined) headers["date"] = new Date(now).toUTCString()
  const put = (name: string, bucket: BucketState | undefined) => {
    if (bucket === undefined) return
    headers[`anthropic-ratelimit-${name}-limit`] = String(bucket.limit)
    headers[`anthropic-ratelimit-${name}-remaining`] = String(bucket.remaining)
    headers[`anthropic-ratelimit-${name}-reset`] = rfc3339(now + bucket.resetMs)
  }
  put("requests", state.requests)
  put("tokens", state.tokens)
  put("input-tokens", state.tokens)
  put("output-tokens", state.tokens)
  return headers
}

/** `retry-after` in whole seconds (rounded up, at least 1) and, where the API sends it, `retry-after-ms`. */
export const retryAfterHeaders = (ms: number, withMs: boolean): Record<string, string> => ({
  "retry-after": String(Math.max(1, Math.ceil(ms / 1000))),
  ...(withMs ? { "retry-after-ms": String(Math.ceil(ms)) } : {})
})

/**
 * Retry policy shared by the providers: exponential backoff with jitter, a cap on each
 * delay and on the number of retries, and the server's own hint (`retry-after-ms`,
 * `Retry-After`) taken into account.
 *
 * The schedule works on `ProviderError`s: the HTTP layer (`internal/http.ts`) turns every
 * response into either a value or a `ProviderError` that already carries the parsed
 * `retryAfterMs`, so the policy never needs to look at raw responses.
 */
import { Duration, Effect, Schedule } from "effect"
import type { ProviderError } from "../ProviderError.js"

export interface RetryOptions {
  /** First backoff delay (doubled at every retry, then jittered by ±20 %). */
  readonly baseDelay: Duration.DurationInput
  /** Upper bound of one computed backoff delay. */
  readonly maxDelay: Duration.DurationInput
  /** Retries after the first attempt. 0 disables retrying. */
  readonly maxRetries: number
  /**
   * Server hints longer than this are capped to it (and a warning is logged): batch APIs can
   * answer with Retry-After values of minutes, and sleeping blindly on them would stall a
   * poller; the caller sees the error with its `retryAfterMs` if the retries run out.
   */
  readonly maxRetryAfter: Duration.DurationInput
}

export const defaultRetryOptions: RetryOptions = {
  baseDelay: Duration.millis(500),
  maxDelay: Duration.seconds(30),
  maxRetries: 6,
  maxRetryAfter: Duration.seconds(60)
}

/** Fills unset fields of partial options with the defaults. */
export const retryOptions = (options?: Partial<RetryOptions> | undefined): RetryOptions => ({
  baseDelay: options?.baseDelay ?? defaultRetryOptions.baseDelay,
  maxDelay: options?.maxDelay ?? defaultRetryOptions.maxDelay,
  maxRetries: options?.maxRetries ?? defaultRetryOptions.maxRetries,
  maxRetryAfter: options?.maxRetryAfter ?? defaultRetryOptions.maxRetryAfter
})

/**
 * Reads the server's wait hint from response headers (lower-case names), in milliseconds:
 * `retry-after-ms` (OpenAI) first, then `retry-after` as delta-seconds or as an HTTP date
 * (relative to `nowMs`). Returns `undefined` when there is no usable hint.
 */
export const parseRetryAfter = (
  headers: Readonly<Record<string, string | undefined>>,
  nowMs: number
): number | undefined => {
  const ms = headers["retry-after-ms"]
  if (ms !== undefined && ms.trim() !== "") {
    const value = Number(ms)
    if (Number.isFinite(value) && value >= 0) return Math.ceil(value)
  }
  const raw = headers["retry-after"]
  if (raw === undefined) return undefined
  const trimmed = raw.trim()
  if (trimmed === "") return undefined
  if (/^\d+(\.\d+)?$/.test(trimmed)) {
    return Math.ceil(Number(trimmed) * 1000)
  }
  const at = Date.parse(trimmed)
  if (Number.isNaN(at)) return undefined
  return Math.max(0, at - nowMs)
}

/** "500 ms", "4 s", "1.5 s", "2 min". */
export const formatDelay = (ms: number): string => {
  if (ms < 1000) return `${Math.round(ms)} ms`
  if (ms < 10_000) return `${Number((ms / 1000).toFixed(1))} s`
  if (ms < 120_000) return `${Math.round(ms / 1000)} s`
  return `${Math.round(ms / 60_000)} min`
}

/** What went wrong, and where, in words: "cannot reach https://api.openai.com/v1 (ECONNREFUSED)". */
export const problemOf = (error: ProviderError, endpoint: string): string => {
  switch (error.reason) {
    case "Transport": {
      const code = /^(E[A-Z]+|UND_ERR_[A-Z_]+)\b/.exec(error.description)?.[1]
      return `cannot reach ${endpoint} (${code ?? error.description})`
    }
    case "Timeout":
      return `${endpoint} did not answer ${error.operation} (${error.description})`
    case "RateLimited":
      return `${endpoint} is rate-limiting (HTTP 429)`
    default:
      return `${endpoint} answered ${error.operation} with HTTP ${error.status ?? "5xx"}`
  }
}

/**
 * The retry schedule: exponential jittered backoff capped at `maxDelay`, at most
 * `maxRetries` retries, only while the error is `retryable`; each delay is
 * `max(server hint capped at maxRetryAfter, backoff)`. Each retry is logged as a warning that
 * says what failed where, what is retried when, and how many attempts are left:
 * "openai: cannot reach https://api.openai.com/v1 (ECONNREFUSED): retrying GET /batches/b in 4 s (attempt 3 of 7)".
 */
export const retrySchedule = (
  options: RetryOptions,
  endpoint = "the provider"
): Schedule.Schedule<unknown, ProviderError> => {
  const capMs = Duration.toMillis(Duration.decode(options.maxRetryAfter))
  const attempts = options.maxRetries + 1
  return Schedule.exponential(options.baseDelay, 2).pipe(
    Schedule.jittered,
    Schedule.union(Schedule.spaced(options.maxDelay)),
    Schedule.intersect(Schedule.recurs(options.maxRetries)),
    Schedule.whileInput((error: ProviderError) => error.retryable),
    // The output carries the retry count (recurs) and the error being retried.
    Schedule.intersect(Schedule.identity<ProviderError>()),
    Schedule.modifyDelayEffect(([[, retried], error], computed) => {
      const hint = error.retryAfterMs === undefined ?
        Effect.succeed(computed) :
        error.retryAfterMs > capMs ?
        Effect.as(
          Effect.logWarning(
            `${error.provider} ${error.operation}: server asked to wait ${error.retryAfterMs} ms; capping at ${capMs} ms`
          ),
          Duration.max(Duration.millis(capMs), computed)
        ) :
        Effect.succeed(Duration.max(Duration.millis(error.retryAfterMs), computed))
      return Effect.tap(hint, (delay) =>
        Effect.logWarning(
          `${error.provider}: ${problemOf(error, endpoint)}: retrying ${error.operation} in ${
            formatDelay(Duration.toMillis(delay))
          } (attempt ${retried + 2} of ${attempts})`
        ))
    })
  )
}

/**
 * Retries an effect that fails with `ProviderError` according to `options`. When it gives up
 * after retrying, the error says how many attempts were made.
 */
export const withRetry = (options: RetryOptions, endpoint?: string) =>
<A, R>(effect: Effect.Effect<A, ProviderError, R>): Effect.Effect<A, ProviderError, R> =>
  options.maxRetries <= 0 ? effect : Effect.suspend(() => {
    let attempts = 0
    return Effect.retry(Effect.suspend(() => {
      attempts++
      return effect
    }), retrySchedule(options, endpoint)).pipe(
      Effect.mapError((error) => (attempts > 1 ? error.afterAttempts(attempts) : error))
    )
  })

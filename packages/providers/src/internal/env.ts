/**
 * Reading provider settings from the environment, like the official SDKs: secrets stay
 * Redacted, blank counts as unset, and a missing variable fails with "NAME is not set".
 */
import { Config, ConfigError, Duration, Either, Option, Redacted } from "effect"
import type { RetryOptions } from "./retry.js"

/** A required secret variable, kept Redacted; missing or blank fails with "NAME is not set". */
export const requiredSecret = (name: string): Config.Config<Redacted.Redacted<string>> =>
  Config.option(Config.redacted(name)).pipe(
    Config.mapOrFail((value) =>
      Option.isSome(value) && Redacted.value(value.value).trim() !== "" ?
        Either.right(value.value) :
        Either.left(ConfigError.MissingData([name], `${name} is not set`))
    )
  )

/** An optional variable, trimmed; blank counts as unset. */
export const optionalString = (name: string): Config.Config<string | undefined> =>
  Config.option(Config.string(name)).pipe(
    Config.map((o) => Option.getOrUndefined(Option.map(Option.filter(o, (s) => s.trim() !== ""), (s) => s.trim())))
  )

/** A required variable, trimmed; missing or blank fails with "NAME is not set". */
export const requiredString = (name: string): Config.Config<string> =>
  optionalString(name).pipe(
    Config.mapOrFail((value) =>
      value !== undefined ? Either.right(value) : Either.left(ConfigError.MissingData([name], `${name} is not set`))
    )
  )

/**
 * The retry policy of idempotent calls for every provider configured from the environment:
 * `SLUICE_HTTP_RETRIES` (retries after the first attempt, default 6) and
 * `SLUICE_HTTP_RETRY_DELAY_MS` (the first backoff delay, doubled at each retry, default 500).
 */
export const retryFromEnv: Config.Config<Partial<RetryOptions>> = Config.all({
  maxRetries: Config.option(Config.integer("SLUICE_HTTP_RETRIES").pipe(Config.validate({ message: "must be 0 or more", validation: (n) => n >= 0 }))),
  baseDelay: Config.option(Config.integer("SLUICE_HTTP_RETRY_DELAY_MS").pipe(Config.validate({ message: "must be 1 or more", validation: (n) => n >= 1 })))
}).pipe(
  Config.map(({ baseDelay, maxRetries }) => ({
    ...(Option.isSome(maxRetries) ? { maxRetries: maxRetries.value } : {}),
    ...(Option.isSome(baseDelay) ? { baseDelay: Duration.millis(baseDelay.value) } : {})
  }))
)

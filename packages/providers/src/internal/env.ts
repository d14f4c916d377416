/**
 * Reading provider settings from the environment, like the official SDKs: secrets stay
 * Redacted, blank counts as unset, and a missing variable fails with "NAME is not set".
 * Keys are trimmed and checked, base URLs checked (`origin.ts`), before anything is sent or
 * recorded; a message names the variable, never its value.
 */
import { Config, ConfigError, Duration, Either, Option, Redacted } from "effect"
import { baseUrlProblem } from "./origin.js"
import type { RetryOptions } from "./retry.js"

/**
 * What is wrong with an API key (already trimmed), as the end of a sentence that starts with
 * the setting's name; `undefined` when it can be sent as a header value. A key with a line
 * break or a space inside is a paste gone wrong: refused at once, not retried for a minute.
 */
export const keyProblem = (key: string): string | undefined => {
  if (/\s/.test(key)) return "has whitespace inside (a line break or a second value pasted with it?)"
  if (/[\x00-\x1f\x7f]/.test(key)) return "has a control character inside"
  if (/[^\x21-\x7e]/.test(key)) return "has a character that is not printable ASCII (a typographic quote or dash pasted with it?)"
  return undefined
}

/** A key without the whitespace around it (a trailing newline from `$(cat key.txt)`, say). */
export const trimKey = (key: Redacted.Redacted<string>): Redacted.Redacted<string> => {
  const value = Redacted.value(key)
  const trimmed = value.trim()
  return trimmed === value ? key : Redacted.make(trimmed)
}

/**
 * A required secret variable, trimmed and kept Redacted; missing or blank fails with
 * "NAME is not set", a key that cannot be a header value with "NAME has …".
 */
export const requiredSecret = (name: string): Config.Config<Redacted.Redacted<string>> =>
  Config.option(Config.redacted(name)).pipe(
    Config.mapOrFail((value) => {
      const key = Option.isSome(value) ? Redacted.value(value.value).trim() : ""
      if (key === "") return Either.left(ConfigError.MissingData([name], `${name} is not set`))
      const problem = keyProblem(key)
      return problem === undefined ?
        Either.right(Redacted.make(key)) :
        Either.left(ConfigError.InvalidData([name], `${name} ${problem}`))
    })
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
 * `SLUICE_ALLOW_INSECURE_HTTP` (a boolean, default false): send keys over `http://` to hosts
 * other than this machine. `override` (a configuration's `allowInsecureHttp`) wins.
 */
export const allowInsecureHttp = (override?: boolean | undefined): Config.Config<boolean> =>
  override !== undefined ? Config.succeed(override) : Config.withDefault(Config.boolean("SLUICE_ALLOW_INSECURE_HTTP"), false)

/**
 * An optional base URL variable, trimmed, without a trailing slash, and checked: a URL,
 * http(s), no credentials, no query string, no clear-text http to another machine unless
 * allowed (see `origin.ts`). The message shows the URL masked, never a credential.
 */
export const optionalBaseUrl = (name: string, allowInsecure: Config.Config<boolean>): Config.Config<string | undefined> =>
  Config.all([optionalString(name), allowInsecure]).pipe(
    Config.mapOrFail(([value, insecure]) => {
      if (value === undefined) return Either.right(undefined)
      const problem = baseUrlProblem(value, { allowInsecureHttp: insecure })
      return problem === undefined ?
        Either.right(value.replace(/\/+$/, "")) :
        Either.left(ConfigError.InvalidData([name], `${name} ${problem}`))
    })
  )

/** A required base URL variable: `optionalBaseUrl`, and "NAME is not set" when missing. */
export const requiredBaseUrl = (name: string, allowInsecure: Config.Config<boolean>): Config.Config<string> =>
  optionalBaseUrl(name, allowInsecure).pipe(
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
  maxRetries: Config.option(Config.integer("SLUICE_HTTP_RETRIES").pipe(Config.validate({ message: "SLUICE_HTTP_RETRIES must be 0 or more", validation: (n) => n >= 0 }))),
  baseDelay: Config.option(Config.integer("SLUICE_HTTP_RETRY_DELAY_MS").pipe(Config.validate({ message: "SLUICE_HTTP_RETRY_DELAY_MS must be 1 or more", validation: (n) => n >= 1 })))
}).pipe(
  Config.map(({ baseDelay, maxRetries }) => ({
    ...(Option.isSome(maxRetries) ? { maxRetries: maxRetries.value } : {}),
    ...(Option.isSome(baseDelay) ? { baseDelay: Duration.millis(baseDelay.value) } : {})
  }))
)

/** What every provider configured from the environment shares (see `httpFromEnv`). */
export interface HttpOverrides {
  readonly retry: Partial<RetryOptions>
  readonly allowInsecureHttp?: boolean | undefined
  readonly tracePropagation?: boolean | undefined
  readonly maxResultLineBytes?: number | undefined
}

/**
 * The HTTP settings of every provider configured from the environment: the retry policy
 * (`retryFromEnv`), `SLUICE_ALLOW_INSECURE_HTTP`, `SLUICE_TRACE_PROPAGATION` (send
 * `traceparent`/`b3` to the provider, default off) and `SLUICE_MAX_RESULT_LINE_BYTES` (the
 * longest result line read, default 64 MiB).
 */
export const httpFromEnv: Config.Config<HttpOverrides> = Config.all({
  retry: retryFromEnv,
  allowInsecureHttp: allowInsecureHttp(),
  tracePropagation: Config.withDefault(Config.boolean("SLUICE_TRACE_PROPAGATION"), false),
  maxResultLineBytes: Config.option(
    Config.integer("SLUICE_MAX_RESULT_LINE_BYTES").pipe(Config.validate({ message: "SLUICE_MAX_RESULT_LINE_BYTES must be 1024 or more", validation: (n) => n >= 1024 }))
  )
}).pipe(
  Config.map(({ allowInsecureHttp, maxResultLineBytes, retry, tracePropagation }) => ({
    retry,
    allowInsecureHttp,
    tracePropagation,
    ...(Option.isSome(maxResultLineBytes) ? { maxResultLineBytes: maxResultLineBytes.value } : {})
  }))
)

/**
 * Reading provider settings from the environment, like the official SDKs: secrets stay
 * Redacted, blank counts as unset, and a missing variable fails with "NAME is not set".
 */
import { Config, ConfigError, Either, Option, Redacted } from "effect"

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

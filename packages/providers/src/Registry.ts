/**
 * The providers a run can name, configured from the environment like the official SDKs.
 * Each is built on first use, so a pipeline that names only `openai` needs only its key.
 */
import type { HttpClient } from "@effect/platform"
import { ConfigError, Effect, Layer } from "effect"
import type { BatchProvider } from "./BatchProvider.js"
import { ProviderConfigError, Providers, UnknownProvider } from "./BatchProvider.js"
import * as AnthropicBatch from "./anthropic/AnthropicBatch.js"
import * as GeminiBatch from "./gemini/GeminiBatch.js"
import * as OpenAiBatch from "./openai/OpenAiBatch.js"

type Factory = Effect.Effect<BatchProvider, ConfigError.ConfigError, HttpClient.HttpClient>

const factories: Record<string, { readonly make: Factory; readonly baseUrl: () => string }> = {
  openai: {
    make: OpenAiBatch.makeFromEnv(),
    baseUrl: () => process.env["OPENAI_BASE_URL"] || OpenAiBatch.defaultBaseUrl
  },
  anthropic: {
    make: AnthropicBatch.makeFromEnv(),
    baseUrl: () => process.env["ANTHROPIC_BASE_URL"] || AnthropicBatch.defaultBaseUrl
  },
  gemini: {
    make: GeminiBatch.makeFromEnv(),
    baseUrl: () => process.env["GEMINI_BASE_URL"] || GeminiBatch.defaultBaseUrl
  }
}

export const known = Object.keys(factories)

/** Base URLs of the named providers (never keys), for the run manifest. */
export const endpoints = (names: ReadonlyArray<string>): Record<string, { baseUrl: string }> =>
  Object.fromEntries(names.filter((n) => n in factories).map((n) => [n, { baseUrl: factories[n]!.baseUrl() }]))

/** `Providers` from the environment; `overrides` replace or add providers by name. */
export const layerFromEnv = (
  overrides: Readonly<Record<string, BatchProvider>> = {}
): Layer.Layer<Providers, never, HttpClient.HttpClient> =>
  Layer.effect(
    Providers,
    Effect.gen(function* () {
      const context = yield* Effect.context<HttpClient.HttpClient>()
      const built = new Map<string, BatchProvider>(Object.entries(overrides))
      const names = [...new Set([...known, ...Object.keys(overrides)])]
      return {
        get: (name: string) =>
          Effect.gen(function* () {
            const cached = built.get(name)
            if (cached !== undefined) return cached
            const factory = factories[name]
            if (factory === undefined) return yield* new UnknownProvider({ name, known: names })
            const provider = yield* factory.make.pipe(
              Effect.provide(context),
              Effect.mapError(
                (e) =>
                  new ProviderConfigError({
                    provider: name,
                    description: ConfigError.isMissingData(e) ? e.message : `bad configuration: ${e.message}`
                  })
              )
            )
            built.set(name, provider)
            return provider
          })
      }
    })
  )

/** `Providers` holding exactly the given providers. */
export const layer = (providers: Readonly<Record<string, BatchProvider>>): Layer.Layer<Providers> =>
  Layer.succeed(Providers, {
    get: (name) =>
      providers[name] !== undefined
        ? Effect.succeed(providers[name])
        : Effect.fail(new UnknownProvider({ name, known: Object.keys(providers) }))
  })

/**
 * The providers a run can name, configured from the environment like the official SDKs.
 * Each is built on first use, so a pipeline that names only `openai` needs only its key.
 *
 * | name                | environment                                                                  |
 * |---------------------|------------------------------------------------------------------------------|
 * | `openai`            | OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_ORG_ID, OPENAI_PROJECT_ID             |
 * | `azure`             | AZURE_OPENAI_API_KEY, AZURE_OPENAI_ENDPOINT, AZURE_OPENAI_API_VERSION         |
 * | `openai-compatible` | SLUICE_GATEWAY_BASE_URL, SLUICE_GATEWAY_API_KEY, SLUICE_GATEWAY_AUTH, SLUICE_GATEWAY_HEADERS |
 * | `groq`              | GROQ_API_KEY, GROQ_BASE_URL                                                   |
 * | `together`          | TOGETHER_API_KEY, TOGETHER_BASE_URL                                           |
 * | `anthropic`         | ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL                                         |
 * | `gemini`            | GEMINI_API_KEY, GEMINI_BASE_URL, GEMINI_API_VERSION (`v1beta` or `v1`)        |
 * | `vllm`              | VLLM_BASE_URL (default http://localhost:8000/v1), VLLM_API_KEY (optional)     |
 * | `llamacpp`          | LLAMACPP_BASE_URL (default http://localhost:8080/v1), LLAMACPP_API_KEY        |
 * | `ollama`            | OLLAMA_BASE_URL (default http://localhost:11434/v1), OLLAMA_API_KEY           |
 *
 * The last three are self-hosted servers without a batch API: their stages run online.
 * `openai-compatible` with `SLUICE_GATEWAY_BATCH=off` is online only too.
 *
 * Every one of them retries idempotent calls as `SLUICE_HTTP_RETRIES` and
 * `SLUICE_HTTP_RETRY_DELAY_MS` say, and takes `SLUICE_ALLOW_INSECURE_HTTP`,
 * `SLUICE_TRACE_PROPAGATION` and `SLUICE_MAX_RESULT_LINE_BYTES` (see `internal/env.ts`).
 */
import type { HttpClient } from "@effect/platform"
import { ConfigError, Effect, Layer } from "effect"
import type { BatchProvider } from "./BatchProvider.js"
import { ProviderConfigError, Providers, UnknownProvider } from "./BatchProvider.js"
import * as AnthropicBatch from "./anthropic/AnthropicBatch.js"
import * as GeminiBatch from "./gemini/GeminiBatch.js"
import * as Compatible from "./openai/Compatible.js"
import * as OpenAiBatch from "./openai/OpenAiBatch.js"
import { httpFromEnv } from "./internal/env.js"
import type { HttpOverrides } from "./internal/env.js"
import { reportedBaseUrl } from "./internal/origin.js"

type Factory = (overrides: HttpOverrides) => Effect.Effect<BatchProvider, ConfigError.ConfigError, HttpClient.HttpClient>

const env = (name: string): string | undefined => {
  const value = process.env[name]?.trim()
  return value === undefined || value === "" ? undefined : value
}

const factories: Record<string, { readonly make: Factory; readonly baseUrl: () => string }> = {
  openai: {
    make: (o) => OpenAiBatch.makeFromEnv(o),
    baseUrl: () => process.env["OPENAI_BASE_URL"] || OpenAiBatch.defaultBaseUrl
  },
  azure: {
    make: (o) => Compatible.makeAzureFromEnv(o),
    baseUrl: () => {
      const endpoint = env("AZURE_OPENAI_ENDPOINT")
      return endpoint === undefined ? "" : Compatible.azureBaseUrl(endpoint, env("AZURE_OPENAI_API_VERSION"))
    }
  },
  "openai-compatible": {
    make: (o) => Compatible.makeGatewayFromEnv(o),
    baseUrl: () => env("SLUICE_GATEWAY_BASE_URL")?.replace(/\/+$/, "") ?? ""
  },
  groq: {
    make: (o) => Compatible.makeGroqFromEnv(o),
    baseUrl: () => env("GROQ_BASE_URL") ?? Compatible.groqBaseUrl
  },
  together: {
    make: (o) => Compatible.makeTogetherFromEnv(o),
    baseUrl: () => env("TOGETHER_BASE_URL") ?? Compatible.togetherBaseUrl
  },
  anthropic: {
    make: (o) => AnthropicBatch.makeFromEnv(o),
    baseUrl: () => process.env["ANTHROPIC_BASE_URL"] || AnthropicBatch.defaultBaseUrl
  },
  gemini: {
    make: (o) => GeminiBatch.makeFromEnv(o),
    baseUrl: () => process.env["GEMINI_BASE_URL"] || GeminiBatch.defaultBaseUrl
  },
  ...Object.fromEntries(
    Compatible.selfHosted.map((preset) => [
      preset.name,
      {
        make: (o: HttpOverrides) => Compatible.makeSelfHostedFromEnv(preset, o),
        baseUrl: () => env(`${preset.name.toUpperCase()}_BASE_URL`)?.replace(/\/+$/, "") ?? preset.defaultBaseUrl
      }
    ])
  )
}

export const known = Object.keys(factories)

/**
 * What a configuration error says, leaf by leaf: "AZURE_OPENAI_ENDPOINT is not set; …".
 * Leaves carry only variable names and reasons, never values.
 */
export const describeConfigError = (error: ConfigError.ConfigError): string => {
  const leaves: Array<string> = []
  const walk = (e: ConfigError.ConfigError): void => {
    switch (e._op) {
      case "And":
      case "Or":
        walk(e.left)
        walk(e.right)
        return
      case "MissingData":
        leaves.push(e.message)
        return
      default:
        leaves.push(`bad configuration: ${e.message}`)
    }
  }
  walk(error)
  return [...new Set(leaves)].join("; ")
}

/**
 * Base URLs of the named providers, for the run manifest: never keys, and never the
 * credentials or query string a base URL might carry (such a URL is refused anyway).
 */
export const endpoints = (names: ReadonlyArray<string>): Record<string, { baseUrl: string }> =>
  Object.fromEntries(names.filter((n) => n in factories).map((n) => [n, { baseUrl: reportedBaseUrl(factories[n]!.baseUrl()) }]))

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
            const provider = yield* Effect.flatMap(httpFromEnv, factory.make).pipe(
              Effect.provide(context),
              Effect.mapError((e) => new ProviderConfigError({ provider: name, description: describeConfigError(e) }))
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

/**
 * OpenAI-compatible Batch APIs as configurations of the OpenAI provider (no fork):
 *
 * - **Azure OpenAI** (`azure`): resource-level paths, `${endpoint}/openai/v1/...`, or the older
 *   `${endpoint}/openai/...?api-version=...`; the key goes in an `api-key` header; 100,000
 *   requests and 200 MB per file. The deployment name is the `model` of every request line.
 * - **Gateways** (`openai-compatible`): a base URL (with any path prefix, e.g. a LiteLLM
 *   proxy's `/azure/v1`), an auth header style and extra headers.
 * - **Groq** and **Together** presets.
 *
 * Each has a config builder (`azureConfig` …), a reader of the environment
 * (`azureConfigFromEnv` …) and a `make…FromEnv` used by the registry.
 *
 * Wire facts: `../shared/reference/providers.md` sections 2, 6, 7, 11.
 */
import type { HttpClient } from "@effect/platform"
import { Config, ConfigError, Effect, Either, Option, Redacted } from "effect"
import type { BatchProvider, ProviderLimits } from "../BatchProvider.js"
import type { OpenAiConfig } from "./OpenAiBatch.js"
import { allowInsecureHttp, optionalBaseUrl, optionalString, requiredBaseUrl, requiredSecret } from "../internal/env.js"
import { make } from "./OpenAiBatch.js"


/** `overrides[key]` when given, else the variable. */
const orEnv = <A>(override: A | undefined, config: Config.Config<A>): Config.Config<A> =>
  override !== undefined ? Config.succeed(override) : config

// -----------------------------------------------------------------------------------------
// Azure OpenAI
// -----------------------------------------------------------------------------------------

/** Azure's Global/Data Zone Batch caps: 100,000 requests and 200 MB per file (stay below). */
export const azureLimits: ProviderLimits = { maxRequests: 100_000, maxBytes: 190_000_000, oneModelPerShard: true }

export interface AzureOptions extends Partial<Omit<OpenAiConfig, "apiKey" | "baseUrl">> {
  readonly apiKey: Redacted.Redacted<string>
  /** The resource endpoint, e.g. `https://my-resource.openai.azure.com` (a trailing `/openai[/v1]` is accepted). */
  readonly endpoint: string
  /**
   * Without one, the v1 API (`/openai/v1/files|batches`). With one (`2024-10-21`,
   * `2025-04-01-preview` …), the older paths `/openai/files|batches?api-version=…`.
   * `preview` and `latest` are v1 API versions: v1 paths with `?api-version=preview`.
   */
  readonly apiVersion?: string | undefined
}

/** The API root of an Azure endpoint: `${endpoint}/openai/v1`, or `${endpoint}/openai` with an api-version. */
export const azureBaseUrl = (endpoint: string, apiVersion?: string | undefined): string => {
  const resource = endpoint.replace(/\/+$/, "").replace(/\/openai(\/v1)?$/, "")
  return apiVersion === undefined || isV1Version(apiVersion) ? `${resource}/openai/v1` : `${resource}/openai`
}

const isV1Version = (apiVersion: string): boolean => apiVersion === "preview" || apiVersion === "latest"

/**
 * The OpenAI configuration of an Azure OpenAI resource: `api-key` header, resource-level
 * paths, Azure's limits, name "azure". Requests carry the deployment name as `model`: a
 * pipeline's `model` must be the Global Batch deployment's name.
 */
export const azureConfig = (options: AzureOptions): OpenAiConfig => {
  const { apiVersion, endpoint, ...rest } = options
  return {
    name: "azure",
    auth: { header: "api-key" },
    ...rest,
    baseUrl: azureBaseUrl(endpoint, apiVersion),
    query: apiVersion === undefined ? rest.query : { ...rest.query, "api-version": apiVersion },
    limits: { ...azureLimits, ...rest.limits }
  }
}

/**
 * Reads `AZURE_OPENAI_API_KEY` and `AZURE_OPENAI_ENDPOINT` (required) and
 * `AZURE_OPENAI_API_VERSION` (optional). `overrides` win over the environment.
 */
export const azureConfigFromEnv = (overrides: Partial<AzureOptions> = {}): Config.Config<OpenAiConfig> =>
  Config.all({
    apiKey: orEnv(overrides.apiKey, requiredSecret("AZURE_OPENAI_API_KEY")),
    endpoint: orEnv(overrides.endpoint, requiredBaseUrl("AZURE_OPENAI_ENDPOINT", allowInsecureHttp(overrides.allowInsecureHttp))),
    apiVersion: orEnv(overrides.apiVersion, optionalString("AZURE_OPENAI_API_VERSION")),
    allowInsecureHttp: allowInsecureHttp(overrides.allowInsecureHttp)
  }).pipe(Config.map((env) => azureConfig({ ...overrides, ...env })))

export const makeAzureFromEnv = (
  overrides: Partial<AzureOptions> = {}
): Effect.Effect<BatchProvider, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Effect.flatMap(azureConfigFromEnv(overrides), make)

// -----------------------------------------------------------------------------------------
// Gateways
// -----------------------------------------------------------------------------------------

export interface GatewayOptions extends Partial<Omit<OpenAiConfig, "apiKey" | "baseUrl">> {
  readonly apiKey: Redacted.Redacted<string>
  /**
   * The gateway's API root, with its path prefix and version: `https://gw.example.com/v1`,
   * a LiteLLM proxy's `https://litellm.example.com/azure/v1` …
   */
  readonly baseUrl: string
}

/**
 * A gateway that speaks the OpenAI Files + Batches API. `auth` says how the key is sent
 * (`Authorization: Bearer <key>` by default; a gateway that wants `Bearer <token>:<project>`
 * gets the key `<token>:<project>`); `headers`/`secretHeaders` add headers. Name
 * "openai-compatible" unless given.
 */
export const gatewayConfig = (options: GatewayOptions): OpenAiConfig => ({
  name: "openai-compatible",
  ...options,
  baseUrl: options.baseUrl.replace(/\/+$/, "")
})

/** Parses `bearer` or `header:<name>` (SLUICE_GATEWAY_AUTH). */
export const parseAuth = (value: string): Either.Either<NonNullable<OpenAiConfig["auth"]>, string> => {
  const trimmed = value.trim()
  if (trimmed.toLowerCase() === "bearer") return Either.right("bearer")
  const match = /^header:\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)$/i.exec(trimmed)
  if (match !== null) {
    const header = match[1]!.toLowerCase()
    return header === "authorization" ? Either.right("bearer") : Either.right({ header })
  }
  return Either.left(`must be "bearer" or "header:<name>" (e.g. header:api-key)`)
}

/**
 * Parses a JSON object of header names to string values (SLUICE_GATEWAY_HEADERS). The
 * reason of a failure never quotes the text: it may hold a token.
 */
export const parseHeaders = (text: string): Either.Either<Record<string, string>, string> => {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return Either.left(`is not valid JSON (expected an object such as {"x-team": "data"})`)
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    return Either.left("must be a JSON object of header names to string values")
  }
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(parsed as Record<string, unknown>)) {
    if (!/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(name)) return Either.left("has a key that is not a valid header name")
    if (typeof value !== "string") return Either.left(`must map every header to a string (header ${name} does not)`)
    if (/[\r\n\0]/.test(value)) return Either.left(`has a line break in the value of header ${name}`)
    out[name.toLowerCase()] = value
  }
  return Either.right(out)
}

/**
 * Reads `SLUICE_GATEWAY_BASE_URL` and `SLUICE_GATEWAY_API_KEY` (required),
 * `SLUICE_GATEWAY_AUTH` (`bearer` | `header:<name>`, default bearer),
 * `SLUICE_GATEWAY_HEADERS` (a JSON object of extra headers) and `SLUICE_GATEWAY_BATCH`
 * (`on`, the default, or `off` for a gateway without a batch API: online runs only). The extra headers are sent
 * as secret headers: a gateway's headers often carry tokens, so their values are scrubbed
 * from every error text.
 */
export const gatewayConfigFromEnv = (overrides: Partial<GatewayOptions> = {}): Config.Config<OpenAiConfig> =>
  Config.all({
    baseUrl: orEnv(overrides.baseUrl, requiredBaseUrl("SLUICE_GATEWAY_BASE_URL", allowInsecureHttp(overrides.allowInsecureHttp))),
    allowInsecureHttp: allowInsecureHttp(overrides.allowInsecureHttp),
    batch: overrides.capabilities?.batch !== undefined
      ? Config.succeed(overrides.capabilities.batch)
      : optionalString("SLUICE_GATEWAY_BATCH").pipe(
          Config.mapOrFail((v) => {
            const value = v?.toLowerCase()
            if (value === undefined || value === "on" || value === "true" || value === "1") return Either.right(true)
            if (value === "off" || value === "false" || value === "0") return Either.right(false)
            return Either.left(ConfigError.InvalidData(["SLUICE_GATEWAY_BATCH"], `SLUICE_GATEWAY_BATCH must be "on" or "off"`))
          })
        ),
    apiKey: orEnv(overrides.apiKey, requiredSecret("SLUICE_GATEWAY_API_KEY")),
    auth: orEnv(
      overrides.auth,
      optionalString("SLUICE_GATEWAY_AUTH").pipe(
        Config.mapOrFail((v) =>
          v === undefined ? Either.right("bearer" as const) : Either.mapLeft(parseAuth(v), (reason) =>
            ConfigError.InvalidData(["SLUICE_GATEWAY_AUTH"], `SLUICE_GATEWAY_AUTH ${reason}`))
        )
      )
    ),
    // Redacted: a bad value is never printed, even by Config's own messages.
    headers: Config.option(Config.redacted("SLUICE_GATEWAY_HEADERS")).pipe(
      Config.mapOrFail((o) => {
        const text = Option.getOrUndefined(Option.filter(Option.map(o, Redacted.value), (s) => s.trim() !== ""))
        if (text === undefined) return Either.right<Record<string, string>>({})
        return Either.mapLeft(parseHeaders(text), (reason) =>
          ConfigError.InvalidData(["SLUICE_GATEWAY_HEADERS"], `SLUICE_GATEWAY_HEADERS ${reason}`))
      })
    )
  }).pipe(
    Config.map(({ allowInsecureHttp, apiKey, auth, baseUrl, batch, headers }) => {
      const secretHeaders: Record<string, Redacted.Redacted<string>> = {}
      for (const [name, value] of Object.entries(headers)) secretHeaders[name] = Redacted.make(value)
      return gatewayConfig({
        ...overrides,
        apiKey,
        baseUrl,
        allowInsecureHttp,
        auth,
        secretHeaders: { ...secretHeaders, ...overrides.secretHeaders },
        ...(batch ? {} : { capabilities: { ...onlineOnly, ...overrides.capabilities } })
      })
    })
  )

export const makeGatewayFromEnv = (
  overrides: Partial<GatewayOptions> = {}
): Effect.Effect<BatchProvider, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Effect.flatMap(gatewayConfigFromEnv(overrides), make)

// -----------------------------------------------------------------------------------------
// Presets: Groq, Together
// -----------------------------------------------------------------------------------------

export interface PresetOptions extends Partial<Omit<OpenAiConfig, "apiKey">> {
  readonly apiKey: Redacted.Redacted<string>
}

export const groqBaseUrl = "https://api.groq.com/openai/v1"

/** Online-only providers: no batch API, so no batch calls (cancel, list, metadata) either. */
export const onlineOnly = { batch: false, cancel: false, list: false, metadata: false, partialResults: false } as const
/** Groq: 50,000 lines and 100 MB per file (stay below). */
export const groqLimits: ProviderLimits = { maxRequests: 50_000, maxBytes: 95_000_000, oneModelPerShard: true }

/** Groq's OpenAI-compatible Batch API (`https://api.groq.com/openai/v1`). */
export const groqConfig = (options: PresetOptions): OpenAiConfig => ({
  name: "groq",
  ...options,
  baseUrl: (options.baseUrl ?? groqBaseUrl).replace(/\/+$/, ""),
  limits: { ...groqLimits, ...options.limits }
})

export const togetherBaseUrl = "https://api.together.xyz/v1"
/** Together: 50,000 requests and 100 MB per input file (stay below). */
export const togetherLimits: ProviderLimits = { maxRequests: 50_000, maxBytes: 95_000_000, oneModelPerShard: true }

/**
 * Together's Batch API: uploads by multipart `POST /files/upload` (`file`, `file_name`,
 * `purpose: batch-api`, `file_type: jsonl`); statuses are upper case (`COMPLETED`, normalised
 * like any other); create answers `{job, warning}`, the batch list is a bare array and a
 * failed job's reason a string `error` (all understood by the OpenAI provider). Together
 * documents no batch metadata, so the runner does not rely on it (capability
 * `metadata: false`).
 */
export const togetherConfig = (options: PresetOptions): OpenAiConfig => ({
  name: "together",
  purpose: "batch-api",
  upload: { path: "/files/upload", fileNameField: "file_name", fields: { file_type: "jsonl" } },
  ...options,
  baseUrl: (options.baseUrl ?? togetherBaseUrl).replace(/\/+$/, ""),
  limits: { ...togetherLimits, ...options.limits },
  capabilities: { metadata: false, ...options.capabilities }
})

const presetFromEnv = (
  keyVar: string,
  baseUrlVar: string,
  build: (options: PresetOptions) => OpenAiConfig
) =>
(overrides: Partial<PresetOptions> = {}): Config.Config<OpenAiConfig> =>
  Config.all({
    apiKey: orEnv(overrides.apiKey, requiredSecret(keyVar)),
    baseUrl: orEnv(overrides.baseUrl, optionalBaseUrl(baseUrlVar, allowInsecureHttp(overrides.allowInsecureHttp))),
    allowInsecureHttp: allowInsecureHttp(overrides.allowInsecureHttp)
  }).pipe(
    Config.map(({ allowInsecureHttp, apiKey, baseUrl }) =>
      build({ ...overrides, apiKey, allowInsecureHttp, ...(baseUrl === undefined ? {} : { baseUrl }) })
    )
  )

/** Reads `GROQ_API_KEY` (required) and `GROQ_BASE_URL` (optional, as the official SDK does). */
export const groqConfigFromEnv = presetFromEnv("GROQ_API_KEY", "GROQ_BASE_URL", groqConfig)

/** Reads `TOGETHER_API_KEY` (required) and `TOGETHER_BASE_URL` (optional, as the official SDK does). */
export const togetherConfigFromEnv = presetFromEnv("TOGETHER_API_KEY", "TOGETHER_BASE_URL", togetherConfig)

export const makeGroqFromEnv = (
  overrides: Partial<PresetOptions> = {}
): Effect.Effect<BatchProvider, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Effect.flatMap(groqConfigFromEnv(overrides), make)

export const makeTogetherFromEnv = (
  overrides: Partial<PresetOptions> = {}
): Effect.Effect<BatchProvider, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Effect.flatMap(togetherConfigFromEnv(overrides), make)

// -----------------------------------------------------------------------------------------
// Self-hosted servers: online only
// -----------------------------------------------------------------------------------------

/**
 * OpenAI-compatible servers that run on your own machines and have no batch API: their
 * stages run `online`. The base URL includes `/v1`; a key is optional (sent as a Bearer
 * token when given, e.g. vLLM's `--api-key`).
 */
export interface SelfHosted {
  /** The registry name, also the variables' prefix: `vllm` reads `VLLM_BASE_URL` and `VLLM_API_KEY`. */
  readonly name: string
  readonly defaultBaseUrl: string
  /** For messages: "vLLM", "llama.cpp server", "Ollama". */
  readonly label: string
}

export const selfHosted: ReadonlyArray<SelfHosted> = [
  { name: "vllm", defaultBaseUrl: "http://localhost:8000/v1", label: "vLLM" },
  { name: "llamacpp", defaultBaseUrl: "http://localhost:8080/v1", label: "llama.cpp server" },
  { name: "ollama", defaultBaseUrl: "http://localhost:11434/v1", label: "Ollama" }
]

export type SelfHostedOptions = Partial<OpenAiConfig>

/** The configuration of a self-hosted server: online only, its default port and path unless given. */
export const selfHostedConfig = (preset: SelfHosted, options: SelfHostedOptions = {}): OpenAiConfig => ({
  name: preset.name,
  // Without a key, no credential header is sent.
  ...(options.apiKey === undefined ? { auth: "none" as const } : {}),
  ...options,
  apiKey: options.apiKey ?? Redacted.make(""),
  baseUrl: (options.baseUrl ?? preset.defaultBaseUrl).replace(/\/+$/, ""),
  capabilities: { ...onlineOnly, ...options.capabilities }
})

const variable = (preset: SelfHosted, suffix: string) => `${preset.name.toUpperCase()}_${suffix}`

/** Reads `<NAME>_BASE_URL` and `<NAME>_API_KEY` (both optional). */
export const selfHostedConfigFromEnv = (preset: SelfHosted, overrides: SelfHostedOptions = {}): Config.Config<OpenAiConfig> =>
  Config.all({
    baseUrl: orEnv(overrides.baseUrl, optionalBaseUrl(variable(preset, "BASE_URL"), allowInsecureHttp(overrides.allowInsecureHttp))),
    apiKey: overrides.apiKey !== undefined
      ? Config.succeed(overrides.apiKey)
      : Config.option(requiredSecret(variable(preset, "API_KEY"))).pipe(Config.map(Option.getOrUndefined)),
    allowInsecureHttp: allowInsecureHttp(overrides.allowInsecureHttp)
  }).pipe(
    Config.map(({ allowInsecureHttp, apiKey, baseUrl }) =>
      selfHostedConfig(preset, {
        ...overrides,
        allowInsecureHttp,
        ...(apiKey === undefined ? {} : { apiKey }),
        ...(baseUrl === undefined ? {} : { baseUrl })
      })
    )
  )

export const makeSelfHostedFromEnv = (
  preset: SelfHosted,
  overrides: SelfHostedOptions = {}
): Effect.Effect<BatchProvider, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Effect.flatMap(selfHostedConfigFromEnv(preset, overrides), make)

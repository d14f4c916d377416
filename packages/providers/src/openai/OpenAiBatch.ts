/**
 * The OpenAI Batch API provider (Files + Batches), implementing `BatchProvider`.
 *
 * Works against api.openai.com and against OpenAI-compatible services (Azure OpenAI, LiteLLM,
 * company proxies, Groq, Together): each is a base URL, an auth header style, extra headers
 * and query parameters, an upload purpose and limits, nothing more. Presets and their
 * environment variables live in `Compatible.ts`.
 *
 * This module is the public face: the configuration, `make` and the layers. The wire codec
 * (request lines, wire objects, result lines: pure functions) is `internal/codec.ts`; the
 * calls (upload, create, poll, list, cancel, download) are `internal/lifecycle.ts`. What
 * they export for users is re-exported here.
 *
 * Wire facts: `../shared/reference/providers.md` section 1.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import { Config, ConfigError, Context, Duration, Effect, Layer, Redacted } from "effect"
import type { BatchProvider, ProviderCapabilities, ProviderLimits } from "../BatchProvider.js"
import { allowInsecureHttp, optionalBaseUrl, optionalString, requiredSecret } from "../internal/env.js"
import type { HttpOptions } from "../internal/http.js"
import type { RetryOptions } from "../internal/retry.js"
import { makeWithClient } from "./internal/lifecycle.js"

export {
  classifyLine,
  decodeBatchInfo,
  encode,
  endpointUrl,
  failureClassOfCode,
  failureClassOfStatus,
  normaliseStatus,
  parseResultLine,
  toBatchInfo,
  WireBatch
} from "./internal/codec.js"
export { capabilities, limits, makeWithClient, missingVersionHint, stagedFileName } from "./internal/lifecycle.js"

// -----------------------------------------------------------------------------------------
// Configuration
// -----------------------------------------------------------------------------------------

export const defaultBaseUrl = "https://api.openai.com/v1"

export interface OpenAiConfig extends HttpOptions {
  readonly apiKey: Redacted.Redacted<string>
  /** Includes the version prefix, like the official SDK: `https://api.openai.com/v1`. */
  readonly baseUrl: string
  /** Sent as `OpenAI-Organization`. */
  readonly organization?: string | undefined
  /** Sent as `OpenAI-Project`. */
  readonly project?: string | undefined
  /** Extra (non-secret) headers sent with every request, e.g. for a gateway. */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** Extra secret headers (a proxy token …): sent, and scrubbed from every error text. */
  readonly secretHeaders?: Readonly<Record<string, Redacted.Redacted<string>>> | undefined
  /**
   * How the API key is sent: `Authorization: Bearer <key>` (default), or as the bare value
   * of another header (Azure: `{ header: "api-key" }`), or not at all (`"none"`: a
   * self-hosted server without a key; `apiKey` is then ignored).
   */
  readonly auth?: "bearer" | { readonly header: string } | "none" | undefined
  /** Provider name in errors and in the registry. Default "openai". */
  readonly name?: string | undefined
  /**
   * Query parameters appended to every request, e.g. Azure's `{ "api-version": "2024-10-21" }`.
   * Not for secrets (use `secretHeaders`); they never appear in errors, which name only
   * method and path.
   */
  readonly query?: Readonly<Record<string, string>> | undefined
  /** Upload purpose of shard files. Default "batch" (Together: "batch-api"). */
  readonly purpose?: string | undefined
  /**
   * Where and how shard files are uploaded (multipart). Default `POST /files` with the fields
   * `purpose` and `file`. Together: `POST /files/upload`, the name also in `file_name`, and
   * `file_type: "jsonl"`.
   */
  readonly upload?: UploadForm | undefined
  /** Overrides of the OpenAI limits (50,000 requests, 190 MB), e.g. Azure's 100,000 requests. */
  readonly limits?: Partial<ProviderLimits> | undefined
  /** Overrides of the capabilities, for a compatible API that lacks one (e.g. batch metadata). */
  readonly capabilities?: Partial<ProviderCapabilities> | undefined
  /** Timeout of one JSON call (status poll, list, create …), per attempt. Default 60 s. */
  readonly requestTimeout?: Duration.DurationInput | undefined
  /**
   * Uploads get `requestTimeout` plus the time the file takes at this rate (default
   * 256 KiB/s: about 13 minutes for a 190 MB shard).
   */
  readonly minUploadBytesPerSecond?: number | undefined
  /** A result download fails when no bytes arrive for this long. Default 60 s. */
  readonly downloadIdleTimeout?: Duration.DurationInput | undefined
  /** Retry policy of idempotent calls (never of create). */
  readonly retry?: Partial<RetryOptions> | undefined
  /** Page size of `list` (1–100). Default 100. */
  readonly listPageSize?: number | undefined
  /** Page size of the file listing used by `findStaged` (1–10,000). Default 1,000. */
  readonly filesPageSize?: number | undefined
}

export interface UploadForm {
  /** Path of the multipart upload below the base URL. Default "/files". */
  readonly path?: string | undefined
  /** Also send the file name in this form field (Together: "file_name"). */
  readonly fileNameField?: string | undefined
  /** Further form fields (Together: `{file_type: "jsonl"}`). */
  readonly fields?: Readonly<Record<string, string>> | undefined
}

const apiKeyConfig = requiredSecret("OPENAI_API_KEY")

/**
 * Reads `OPENAI_API_KEY` (required, kept Redacted, trimmed), `OPENAI_BASE_URL`,
 * `OPENAI_ORG_ID` and `OPENAI_PROJECT_ID`, like the official SDK, and
 * `SLUICE_ALLOW_INSECURE_HTTP`. Values in `overrides` win over the environment (an `apiKey`
 * override means the variable is not needed). A missing key fails with a `ConfigError`
 * (MissingData) whose message is "OPENAI_API_KEY is not set"; a key with whitespace inside,
 * or a base URL with credentials, a query string, or `http://` to another machine (unless
 * allowed), with one that names the variable (see `internal/env.ts`).
 */
const fromEnv = (overrides: Partial<OpenAiConfig> = {}): Config.Config<OpenAiConfig> =>
  Config.all({
    apiKey: overrides.apiKey !== undefined ? Config.succeed(overrides.apiKey) : apiKeyConfig,
    allowInsecureHttp: allowInsecureHttp(overrides.allowInsecureHttp),
    baseUrl: overrides.baseUrl !== undefined ?
      Config.succeed(overrides.baseUrl) :
      optionalBaseUrl("OPENAI_BASE_URL", allowInsecureHttp(overrides.allowInsecureHttp)),
    organization: overrides.organization !== undefined ?
      Config.succeed(overrides.organization) :
      optionalString("OPENAI_ORG_ID"),
    project: overrides.project !== undefined ? Config.succeed(overrides.project) : optionalString("OPENAI_PROJECT_ID")
  }).pipe(
    Config.map(({ allowInsecureHttp, apiKey, baseUrl, organization, project }): OpenAiConfig => ({
      ...overrides,
      apiKey,
      allowInsecureHttp,
      baseUrl: baseUrl ?? defaultBaseUrl,
      organization,
      project
    }))
  )

export const OpenAiConfig = {
  defaultBaseUrl,
  fromEnv
} as const

/** Builds the provider from a configuration, over the ambient `HttpClient`. */
export const make = (config: OpenAiConfig): Effect.Effect<BatchProvider, never, HttpClient.HttpClient> =>
  Effect.map(HttpClient.HttpClient, (client) => makeWithClient(client, config))

/** Reads the configuration from the environment (see `OpenAiConfig.fromEnv`) and builds the provider. */
export const makeFromEnv = (
  overrides: Partial<OpenAiConfig> = {}
): Effect.Effect<BatchProvider, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Effect.flatMap(fromEnv(overrides), make)

/** The OpenAI provider as a service, for programs that use only this one. */
export class OpenAiBatch extends Context.Tag("@sluice/providers/OpenAiBatch")<OpenAiBatch, BatchProvider>() {
  static readonly layer = (config: OpenAiConfig): Layer.Layer<OpenAiBatch, never, HttpClient.HttpClient> =>
    Layer.effect(OpenAiBatch, make(config))

  static readonly layerFromEnv = (
    overrides: Partial<OpenAiConfig> = {}
  ): Layer.Layer<OpenAiBatch, ConfigError.ConfigError, HttpClient.HttpClient> =>
    Layer.effect(OpenAiBatch, makeFromEnv(overrides))
}

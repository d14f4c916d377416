/**
 * The Gemini API batch mode provider (Developer API, `generativelanguage.googleapis.com`),
 * implementing `BatchProvider`.
 *
 * - Small shards are sent inline (`inputConfig.requests`, the whole create body < 20 MB):
 *   `stage` uploads nothing and returns `inline:<path>`; `create` reads the shard file.
 *   Larger shards go through the File API (resumable upload, ≤ 2 GB) and the batch reads
 *   `inputConfig.fileName`.
 * - The model is part of the URL (`models/{model}:batchGenerateContent`): one model per shard.
 *   Every line also names it in `request.model` (as the official SDK does for inline
 *   requests), which is how `create` learns it from the shard file.
 * - Batches carry no metadata, only a `displayName`: sluice writes
 *   `sluice.<run>.<shard>.s<submission>` there and parses it back into
 *   `metadata.sluice_run|sluice_shard|sluice_submission` on retrieve and list, so orphan
 *   adoption works unchanged. (Dots, not dashes, separate the fields: run and shard ids
 *   contain dashes, so a dash-separated name could not be split back; a `.` or `%` inside
 *   a field is percent-escaped.) Other metadata keys are not kept.
 * - Structured output is sent as `generationConfig.responseJsonSchema` (JSON Schema, the
 *   subset Gemini documents; unsupported keywords are dropped, `const` becomes a one-value
 *   `enum`). The answer is still checked by the stage's Schema decoder.
 * - `BATCH_STATE_*` (and the SDKs' `JOB_STATE_*`) are normalised; PENDING (queued, nothing
 *   processed yet) is "validating". Counts arrive as int64 strings.
 * - An EXPIRED (or CANCELLED, or FAILED) batch returns no results at all: `results` yields
 *   nothing, and the runner finds every request of the shard *missing* by diffing against
 *   its manifest and reschedules it.
 * - Generation params: `temperature`, `max_tokens`/`max_completion_tokens`, `top_p`, `top_k`,
 *   `stop`, `seed`, `n`, `presence_penalty`, `frequency_penalty` are mapped; Gemini's own
 *   `generationConfig` field names pass through as they are, and `safetySettings`, `tools`,
 *   `toolConfig`, `cachedContent` go to the request. Other (OpenAI-only) params are ignored.
 *
 * This module is the public face: the configuration, `make` and the layers. The wire codec
 * (request lines, the inline body, wire objects, result lines: pure functions) is
 * `internal/codec.ts`; the calls (upload, create, poll, list, cancel, results) are
 * `internal/lifecycle.ts`. What they export for users is re-exported here.
 *
 * Wire facts: `../shared/reference/providers.md` section 4.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import { Config, ConfigError, Context, Duration, Effect, Either, Layer, Redacted } from "effect"
import type { BatchProvider } from "../BatchProvider.js"
import { allowInsecureHttp, optionalBaseUrl, optionalString, requiredSecret } from "../internal/env.js"
import type { HttpOptions } from "../internal/http.js"
import type { RetryOptions } from "../internal/retry.js"
import { defaultApiVersion, makeWithClient } from "./internal/lifecycle.js"

export {
  classifyError,
  classifyLine,
  count,
  decodeBatchInfo,
  decodeOperation,
  displayNameOf,
  encode,
  inlineResponseLines,
  inlineResponses,
  inlineToLine,
  metadataOfDisplayName,
  modelName,
  normaliseState,
  parseResultLine,
  parseResultRecord,
  toBatchInfo,
  toGeminiJsonSchema,
  WireOperation
} from "./internal/codec.js"
export {
  capabilities,
  defaultApiVersion,
  defaultInlineMaxBytes,
  inlinePrefix,
  limits,
  makeWithClient,
  maxInlineBodyBytes
} from "./internal/lifecycle.js"

// -----------------------------------------------------------------------------------------
// Configuration
// -----------------------------------------------------------------------------------------

export const defaultBaseUrl = "https://generativelanguage.googleapis.com"

/** What an API version segment looks like: `v1`, `v1beta`, `v1alpha`, `v2beta1` … */
const apiVersionPattern = /^v\d+[a-z0-9]*$/

export interface GeminiConfig extends HttpOptions {
  readonly apiKey: Redacted.Redacted<string>
  /** Origin (and optional path prefix) without the API version: `https://generativelanguage.googleapis.com`. */
  readonly baseUrl: string
  /** API version segment: "v1beta" (default) or "v1"; from `GEMINI_API_VERSION` in `fromEnv`. */
  readonly apiVersion?: string | undefined
  /** Extra (non-secret) headers sent with every request, e.g. for a gateway. */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** Extra secret headers: sent, and scrubbed from every error text. */
  readonly secretHeaders?: Readonly<Record<string, Redacted.Redacted<string>>> | undefined
  /** How the key is sent: `x-goog-api-key: <key>` (default), `Authorization: Bearer <key>`, or another header. */
  readonly auth?: "api-key" | "bearer" | { readonly header: string } | undefined
  /** Provider name in errors and in the registry. Default "gemini". */
  readonly name?: string | undefined
  /** Timeout of one JSON call, per attempt. Default 60 s. */
  readonly requestTimeout?: Duration.DurationInput | undefined
  /** Uploads (and inline creates) get `requestTimeout` plus the time the body takes at this rate. Default 256 KiB/s. */
  readonly minUploadBytesPerSecond?: number | undefined
  /** A result download fails when no bytes arrive for this long. Default 60 s. */
  readonly downloadIdleTimeout?: Duration.DurationInput | undefined
  /** Retry policy of idempotent calls (never of create). */
  readonly retry?: Partial<RetryOptions> | undefined
  /** Page size of `list` (1–1,000). Default 100. */
  readonly listPageSize?: number | undefined
  /** Page size of the file listing used by `findStaged` (1–100). Default 100. */
  readonly filesPageSize?: number | undefined
  /**
   * Largest shard file (bytes) sent inline instead of through the File API. Default 16 MB;
   * 0 sends every shard through the File API. Capped so the inline body stays < 20 MB.
   */
  readonly inlineMaxBytes?: number | undefined
}

const apiKeyConfig = requiredSecret("GEMINI_API_KEY")

/** `GEMINI_API_VERSION`, if set: one path segment such as `v1beta` or `v1` (a typo would only 404 later). */
const apiVersionConfig = optionalString("GEMINI_API_VERSION").pipe(
  Config.mapOrFail((value) =>
    value === undefined || apiVersionPattern.test(value) ?
      Either.right(value) :
      Either.left(
        ConfigError.InvalidData(["GEMINI_API_VERSION"], `GEMINI_API_VERSION must be an API version such as v1beta or v1, got '${value.slice(0, 40)}'`)
      )
  )
)

/**
 * Reads `GEMINI_API_KEY` (required, kept Redacted, trimmed), `GEMINI_BASE_URL`,
 * `GEMINI_API_VERSION` and `SLUICE_ALLOW_INSECURE_HTTP` (checked as `internal/env.ts` says).
 * Values in `overrides` win over the environment. A missing key fails with a `ConfigError`
 * (MissingData) whose message is "GEMINI_API_KEY is not set".
 */
const fromEnv = (overrides: Partial<GeminiConfig> = {}): Config.Config<GeminiConfig> =>
  Config.all({
    apiKey: overrides.apiKey !== undefined ? Config.succeed(overrides.apiKey) : apiKeyConfig,
    allowInsecureHttp: allowInsecureHttp(overrides.allowInsecureHttp),
    baseUrl: overrides.baseUrl !== undefined ?
      Config.succeed(overrides.baseUrl) :
      optionalBaseUrl("GEMINI_BASE_URL", allowInsecureHttp(overrides.allowInsecureHttp)),
    apiVersion: overrides.apiVersion !== undefined ? Config.succeed(overrides.apiVersion) : apiVersionConfig
  }).pipe(
    Config.map(({ allowInsecureHttp, apiKey, apiVersion, baseUrl }): GeminiConfig => ({
      ...overrides,
      apiKey,
      allowInsecureHttp,
      baseUrl: baseUrl ?? defaultBaseUrl,
      apiVersion: apiVersion ?? defaultApiVersion
    }))
  )

export const GeminiConfig = {
  defaultBaseUrl,
  defaultApiVersion,
  fromEnv
} as const

/** Builds the provider from a configuration, over the ambient `HttpClient`. */
export const make = (config: GeminiConfig): Effect.Effect<BatchProvider, never, HttpClient.HttpClient> =>
  Effect.map(HttpClient.HttpClient, (client) => makeWithClient(client, config))

/** Reads the configuration from the environment (see `GeminiConfig.fromEnv`) and builds the provider. */
export const makeFromEnv = (
  overrides: Partial<GeminiConfig> = {}
): Effect.Effect<BatchProvider, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Effect.flatMap(fromEnv(overrides), make)

/** The Gemini provider as a service, for programs that use only this one. */
export class GeminiBatch extends Context.Tag("@sluice/providers/GeminiBatch")<GeminiBatch, BatchProvider>() {
  static readonly layer = (config: GeminiConfig): Layer.Layer<GeminiBatch, never, HttpClient.HttpClient> =>
    Layer.effect(GeminiBatch, make(config))

  static readonly layerFromEnv = (
    overrides: Partial<GeminiConfig> = {}
  ): Layer.Layer<GeminiBatch, ConfigError.ConfigError, HttpClient.HttpClient> =>
    Layer.effect(GeminiBatch, makeFromEnv(overrides))
}

/**
 * The Anthropic Message Batches provider, implementing `BatchProvider`.
 *
 * Requests are sent inline: there is no upload step. `stage` hands back the shard file's path,
 * and `create` streams the shard's lines (each one `{custom_id, params}`, written by `encode`)
 * as the body `{"requests":[line,line,…]}`, so a 250 MB shard never sits in memory.
 *
 * Works against api.anthropic.com and against Anthropic-shaped gateways that serve other
 * models under another path (`POST /v1/batches` with `{requests: [{custom_id, params}]}`): a
 * gateway is a base URL, a batches path, an auth style and extra headers, nothing more.
 *
 * This module is the public face: the configuration, `make` and the layers. The wire codec
 * (request lines, wire objects, result lines: pure functions) is `internal/codec.ts`; the
 * calls (create, poll, list, cancel, results, orphan search) are `internal/lifecycle.ts`;
 * the shard file as a streamed create body is `internal/shardFile.ts`. What they export for
 * users is re-exported here.
 *
 * Wire facts: `../shared/reference/providers.md` section 3.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import { Config, ConfigError, Context, Duration, Effect, Layer, Redacted } from "effect"
import type { BatchInfo, BatchProvider, OrphanSearch, ShardIdentity } from "../BatchProvider.js"
import { allowInsecureHttp, optionalBaseUrl, requiredSecret } from "../internal/env.js"
import type { HttpOptions } from "../internal/http.js"
import type { RetryOptions } from "../internal/retry.js"
import type { ProviderError } from "../ProviderError.js"
import { defaultBatchesPath, defaultBearerVersion, defaultVersion, makeWithClient } from "./internal/lifecycle.js"

export {
  classifyResult,
  decodeBatchInfo,
  defaultMaxTokens,
  encode,
  encodeWith,
  failureClassOfErrorType,
  normaliseStatus,
  parseResultLine,
  toBatchInfo,
  toolName,
  usageOf,
  WireMessageBatch
} from "./internal/codec.js"
export {
  capabilities,
  defaultBatchesPath,
  defaultBearerVersion,
  defaultVersion,
  limits,
  makeWithClient
} from "./internal/lifecycle.js"
export { measureRequestBody, requestBody, shardCustomIds } from "./internal/shardFile.js"

// -----------------------------------------------------------------------------------------
// Configuration
// -----------------------------------------------------------------------------------------

/** Without the version prefix, like the official SDK: paths carry `/v1`. */
export const defaultBaseUrl = "https://api.anthropic.com"

export type AnthropicAuth = "x-api-key" | "bearer"

export interface AnthropicConfig extends HttpOptions {
  readonly apiKey: Redacted.Redacted<string>
  /** Origin (plus any gateway prefix), without `/v1`: `https://api.anthropic.com`. */
  readonly baseUrl: string
  /**
   * `"x-api-key"` (default): `x-api-key: <key>` with `anthropic-version: 2023-06-01`.
   * `"bearer"`: `Authorization: Bearer <key>` with a newer version (default `2026-10-21`).
   */
  readonly auth?: AnthropicAuth | undefined
  /** `anthropic-version` header; the default depends on `auth`. */
  readonly version?: string | undefined
  /**
   * Path of the batches collection below `baseUrl`. Default `/v1/messages/batches`; an
   * Anthropic-shaped gateway for other models typically serves `/v1/batches`.
   */
  readonly batchesPath?: string | undefined
  /**
   * Path of the Messages endpoint below `baseUrl`, for real-time requests. Default
   * `/v1/messages` (a gateway's `batchesPath` ending in `/messages/batches` gives its own).
   */
  readonly messagesPath?: string | undefined
  /** Sent as `anthropic-beta` (comma-separated) when non-empty. */
  readonly betas?: ReadonlyArray<string> | undefined
  /** Extra (non-secret) headers sent with every request, e.g. for a gateway. */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** Extra secret headers (a proxy token …): sent, and scrubbed from every error text. */
  readonly secretHeaders?: Readonly<Record<string, Redacted.Redacted<string>>> | undefined
  /** Provider name in errors and in the registry. Default "anthropic". */
  readonly name?: string | undefined
  /** `max_tokens` of requests whose params set none. Default 1024. */
  readonly defaultMaxTokens?: number | undefined
  /** Timeout of one JSON call (poll, list, cancel …), per attempt. Default 60 s. */
  readonly requestTimeout?: Duration.DurationInput | undefined
  /** `create` gets `requestTimeout` plus the body's size at this rate (default 256 KiB/s). */
  readonly minUploadBytesPerSecond?: number | undefined
  /** A results download fails when no bytes arrive for this long. Default 60 s. */
  readonly downloadIdleTimeout?: Duration.DurationInput | undefined
  /** Retry policy of idempotent calls (never of create). */
  readonly retry?: Partial<RetryOptions> | undefined
  /** Page size of `list` (1–1000). Default 100. */
  readonly listPageSize?: number | undefined
}

const apiKeyConfig = requiredSecret("ANTHROPIC_API_KEY")

/**
 * Reads `ANTHROPIC_API_KEY` (required, kept Redacted, trimmed) and `ANTHROPIC_BASE_URL`, like
 * the official SDK, and `SLUICE_ALLOW_INSECURE_HTTP` (both checked as `internal/env.ts` says). Values in `overrides` win over the environment (an `apiKey` override means
 * the variable is not needed). A missing key fails with a `ConfigError` (MissingData) whose
 * message is "ANTHROPIC_API_KEY is not set".
 */
const fromEnv = (overrides: Partial<AnthropicConfig> = {}): Config.Config<AnthropicConfig> =>
  Config.all({
    apiKey: overrides.apiKey !== undefined ? Config.succeed(overrides.apiKey) : apiKeyConfig,
    allowInsecureHttp: allowInsecureHttp(overrides.allowInsecureHttp),
    baseUrl: overrides.baseUrl !== undefined ?
      Config.succeed(overrides.baseUrl) :
      optionalBaseUrl("ANTHROPIC_BASE_URL", allowInsecureHttp(overrides.allowInsecureHttp))
  }).pipe(
    Config.map(({ allowInsecureHttp, apiKey, baseUrl }): AnthropicConfig => ({
      ...overrides,
      apiKey,
      allowInsecureHttp,
      baseUrl: baseUrl ?? defaultBaseUrl
    }))
  )

export const AnthropicConfig = {
  defaultBaseUrl,
  defaultBatchesPath,
  defaultVersion,
  defaultBearerVersion,
  fromEnv
} as const

/**
 * - `match`: the batch has ended and every result read carries one of the shard's custom_ids
 *   (a custom_id is `<stage>-<key>-<request hash>`, so another shard's results cannot pass);
 * - `mismatch`: created too early, another request count, or a foreign custom_id;
 * - `undecided`: plausible (time and count fit) but still in progress, so its custom_ids
 *   cannot be seen yet.
 */
export type OrphanVerdict = "match" | "mismatch" | "undecided"

/** Builds the provider from a configuration, over the ambient `HttpClient`. */
export const make = (config: AnthropicConfig): Effect.Effect<AnthropicBatchProvider, never, HttpClient.HttpClient> =>
  Effect.map(HttpClient.HttpClient, (client) => makeWithClient(client, config))

/** The port plus what only Anthropic-shaped APIs offer. */
export interface AnthropicBatchProvider extends BatchProvider {
  /** `DELETE {batchesPath}/{id}`: only after processing has ended (cancel first). Idempotent. */
  readonly deleteBatch: (batchId: string) => Effect.Effect<void, ProviderError>
  /** Whether a listed batch holds the shard (see `OrphanVerdict`). */
  readonly matchShard: (
    batch: BatchInfo,
    shard: ShardIdentity,
    customIds?: ReadonlySet<string>
  ) => Effect.Effect<OrphanVerdict, ProviderError>
  /**
   * Orphan search without metadata: lists batches created since the intent (less skew),
   * newest first, and judges each with `matchShard`. `adopt` is set when a batch is proven to
   * hold the shard (the newest, if a lost create took effect twice); plausible batches still
   * in progress are returned as `undecided`
   * for the caller to wait on (see "Orphan adoption without metadata" in `internal/lifecycle.ts`).
   */
  readonly findOrphan: (shard: ShardIdentity) => Effect.Effect<OrphanSearch, ProviderError>
}

/** Reads the configuration from the environment (see `AnthropicConfig.fromEnv`) and builds the provider. */
export const makeFromEnv = (
  overrides: Partial<AnthropicConfig> = {}
): Effect.Effect<AnthropicBatchProvider, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Effect.flatMap(fromEnv(overrides), make)

/**
 * An Anthropic-shaped gateway serving other models: `POST {baseUrl}/v1/batches` with
 * `{requests: [{custom_id, params}]}`, statuses and results in the Anthropic shape. The
 * pipeline's `model` names the gateway's model; bearer auth unless told otherwise.
 */
export const gatewayConfig = (
  config: Omit<AnthropicConfig, "batchesPath"> & { readonly batchesPath?: string | undefined }
): AnthropicConfig => ({
  auth: "bearer",
  name: "anthropic-gateway",
  ...config,
  batchesPath: config.batchesPath ?? "/v1/batches"
})

/** The Anthropic provider as a service, for programs that use only this one. */
export class AnthropicBatch extends Context.Tag("@sluice/providers/AnthropicBatch")<AnthropicBatch, AnthropicBatchProvider>() {
  static readonly layer = (config: AnthropicConfig): Layer.Layer<AnthropicBatch, never, HttpClient.HttpClient> =>
    Layer.effect(AnthropicBatch, make(config))

  static readonly layerFromEnv = (
    overrides: Partial<AnthropicConfig> = {}
  ): Layer.Layer<AnthropicBatch, ConfigError.ConfigError, HttpClient.HttpClient> =>
    Layer.effect(AnthropicBatch, makeFromEnv(overrides))
}

/**
 * The provider port: one interface, implemented once per wire format. A provider knows
 * nothing of runs or checkpoints: it turns neutral requests into wire lines and wire
 * results back into neutral results.
 */
import type { BatchRequest, BatchResult, Endpoint } from "@sluice/core"
import { Context, Schema } from "effect"
import type { Effect, Option, Stream } from "effect"
import type { ProviderError } from "./ProviderError.js"
import type { ProviderIdentity } from "./ProviderIdentity.js"
import type { RateLimitSnapshot } from "./RateLimit.js"

/** Hard limits of one batch; the planner packs shards to the tightest of them. */
export interface ProviderLimits {
  readonly maxRequests: number
  readonly maxBytes: number
  /** Requests of one shard must all name the same model. */
  readonly oneModelPerShard: boolean
}

export interface ProviderCapabilities {
  /**
   * The provider has a batch API (absent: it has). Self-hosted servers (vLLM, llama.cpp,
   * Ollama) and gateways declared without one are online only: a stage in `batch` mode on
   * them is refused before anything is sent.
   */
  readonly batch?: boolean
  readonly cancel: boolean
  /** Batches can be listed (needed to adopt an orphan after a crash). */
  readonly list: boolean
  /** Batches carry user metadata (run, shard, attempt). */
  readonly metadata: boolean
  /** An expired or cancelled batch still returns what it finished. */
  readonly partialResults: boolean
}

/** Provider statuses, normalised. The raw value is always kept next to it. */
export const BatchStatus = Schema.Literal(
  "validating",
  "in_progress",
  "finalizing",
  "completed",
  "failed",
  "expired",
  "cancelling",
  "cancelled",
  "unknown"
)
export type BatchStatus = typeof BatchStatus.Type

export const terminalStatuses: ReadonlySet<BatchStatus> = new Set(["completed", "failed", "expired", "cancelled"])
export const isTerminal = (status: BatchStatus): boolean => terminalStatuses.has(status)

export const BatchCounts = Schema.Struct({
  total: Schema.Number,
  succeeded: Schema.Number,
  failed: Schema.Number
})
export type BatchCounts = typeof BatchCounts.Type

export const BatchInfo = Schema.Struct({
  id: Schema.String,
  status: BatchStatus,
  rawStatus: Schema.String,
  counts: BatchCounts,
  inputRef: Schema.NullOr(Schema.String),
  outputFileId: Schema.NullOr(Schema.String),
  errorFileId: Schema.NullOr(Schema.String),
  metadata: Schema.Record({ key: Schema.String, value: Schema.String }),
  /** Unix seconds. */
  createdAt: Schema.Number,
  /** Validation errors of a failed batch, as the provider reported them. */
  errors: Schema.Array(Schema.Struct({ code: Schema.String, message: Schema.String, line: Schema.NullOr(Schema.Number) }))
})
export type BatchInfo = typeof BatchInfo.Type

/** An input staged at the provider (an uploaded file, or a path for inline providers). */
export interface StagedInput {
  readonly inputRef: string
}

export interface CreateBatch {
  readonly inputRef: string
  /** The shard file on disk, for providers that send requests inline. */
  readonly path: string
  readonly endpoint: Endpoint
  readonly metadata: Readonly<Record<string, string>>
}

/** What identifies a shard's batch at a provider that keeps no metadata on batches. */
export interface ShardIdentity {
  /** The shard file: the requests, with their custom_ids. */
  readonly path: string
  /** Unix seconds of the submit intent, journaled before `create`. */
  readonly intentAt: number
  /** Batch ids the run already knows: never candidates. */
  readonly exclude?: ReadonlySet<string> | undefined
  /** Allowed clock difference between us and the provider. */
  readonly skewSeconds?: number | undefined
}

export interface OrphanSearch {
  /** The one batch proven to hold the shard. */
  readonly adopt: Option.Option<BatchInfo>
  /** Batches that may hold it but cannot be told yet (still in progress). */
  readonly undecided: ReadonlyArray<BatchInfo>
}

/** One real-time answer: the result, classified as a batch result line would be, and the rate limits it reported. */
export interface OnlineAnswer {
  readonly result: BatchResult
  readonly limits: RateLimitSnapshot
}

/**
 * Real-time execution of the same wire lines a batch would upload (`encode`'s output): each
 * line's request goes to the provider's real-time endpoint (chat completions, embeddings,
 * responses, messages, generateContent), with the header `x-sluice-custom-id`.
 */
export interface OnlineApi {
  /**
   * Sends one line's request. An answer — a success, or a refusal of the request itself (a
   * 400, an unknown model) — is a `result`; a failure that says nothing about the request
   * (429, 5xx, 408/409, a lost connection, a timeout) fails with a retryable `ProviderError`
   * carrying the server's wait hint (`retryAfterMs`), and so do a rejected key
   * (`Unauthorized`), exhausted credit (`Quota`) and an endpoint that is not there
   * (`NotFound`), which are not retryable. Never retried here: the caller paces and retries.
   */
  readonly send: (line: string, customId: string) => Effect.Effect<OnlineAnswer, ProviderError>
}

/** A file held at the provider (an uploaded input, a batch's output or error file). */
export interface StoredFile {
  readonly id: string
  /** The name it was uploaded under (OpenAI `filename`, Gemini `displayName`); null for none. */
  readonly name: string | null
  /** null when the provider does not say. */
  readonly bytes: number | null
  /** Unix seconds. */
  readonly createdAt: number
  /** OpenAI `purpose` (`batch`, `batch_output`), Gemini `source` (`UPLOADED`, `GENERATED`); null for none. */
  readonly purpose: string | null
}

/**
 * Files at the provider: what a run deletes once a shard is collected, and what \`sluice gc\`
 * lists. Absent where the provider keeps no files (Anthropic: requests inline, results a URL).
 */
export interface ProviderStorage {
  /** The provider file an input ref names, or null when the input was sent inline. */
  readonly inputFile: (inputRef: string) => string | null
  /** The files a batch wrote its results to (output, error): none when results are inline or a URL. */
  readonly outputFiles: (batch: BatchInfo) => ReadonlyArray<string>
  /** Deletes a file; one already gone (404) counts as deleted. */
  readonly deleteFile: (fileId: string) => Effect.Effect<void, ProviderError>
  /** Every file held, lazily paginated. */
  readonly files: Stream.Stream<StoredFile, ProviderError>
}

/** True unless the provider declares that it has no batch API. */
export const hasBatchApi = (provider: BatchProvider): boolean => provider.capabilities.batch !== false

export interface BatchProvider {
  readonly name: string
  /**
   * Where its requests go (the base URL, never a key): answers are reused from the response
   * cache only for the same provider at the same origin. Without one, nothing is cached.
   */
  readonly origin?: string
  /**
   * What makes this endpoint's answers its own (wire API, origin, path prefix, API version …,
   * never a key): a run is bound to it. Without one, the name and `origin` stand for it.
   */
  readonly identity?: ProviderIdentity
  readonly limits: ProviderLimits
  readonly capabilities: ProviderCapabilities
  /** The wire line (without newline) for one request. */
  readonly encode: (request: BatchRequest, customId: string) => string
  /** Uploads a shard file under a name that identifies it, so an orphan upload can be found. */
  readonly stage: (path: string, name: string) => Effect.Effect<StagedInput, ProviderError>
  /** Finds an input staged earlier under `name` (after a crash between upload and journal). */
  readonly findStaged: (name: string) => Effect.Effect<Option.Option<StagedInput>, ProviderError>
  /** Creates a batch. Not idempotent: never retried here; the caller reconciles with `list`. */
  readonly create: (input: CreateBatch) => Effect.Effect<BatchInfo, ProviderError>
  /** Current state; sends Cache-Control: no-cache. */
  readonly retrieve: (batchId: string) => Effect.Effect<BatchInfo, ProviderError>
  /** Batches, newest first, lazily paginated. */
  readonly list: Stream.Stream<BatchInfo, ProviderError>
  readonly cancel: (batchId: string) => Effect.Effect<BatchInfo, ProviderError>
  /** Every result line of a terminal batch, from both the output and the error file, streamed. */
  readonly results: (batch: BatchInfo) => Stream.Stream<BatchResult, ProviderError>
  /** Deletes a staged input that will not be used. */
  readonly deleteStaged: (inputRef: string) => Effect.Effect<void, ProviderError>
  /** Files at the provider; absent when it keeps none. */
  readonly storage?: ProviderStorage
  /**
   * Deletes an ended batch (Anthropic, Gemini; OpenAI has no such call). One already gone
   * (404) counts as deleted. Never called on a batch in progress.
   */
  readonly deleteBatch?: (batchId: string) => Effect.Effect<void, ProviderError>
  /**
   * For providers without batch metadata: finds a shard's orphan by what the API does show
   * (creation time, request count, and once it has ended, its results' custom_ids).
   */
  readonly findOrphan?: (shard: ShardIdentity) => Effect.Effect<OrphanSearch, ProviderError>
  /** Real-time execution of the same lines; absent when the provider cannot answer online. */
  readonly online?: OnlineApi
}

/** The providers available to a run, by name ("openai", …). */
export class Providers extends Context.Tag("@sluice/providers/Providers")<
  Providers,
  { readonly get: (name: string) => Effect.Effect<BatchProvider, UnknownProvider | ProviderConfigError> }
>() {}

/** A provider is known but not configured (e.g. its API key is not set). */
export class ProviderConfigError extends Schema.TaggedError<ProviderConfigError>()("ProviderConfigError", {
  provider: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return `provider ${this.provider}: ${this.description}`
  }
}

export class UnknownProvider extends Schema.TaggedError<UnknownProvider>()("UnknownProvider", {
  name: Schema.String,
  known: Schema.Array(Schema.String)
}) {
  override get message(): string {
    return `unknown provider "${this.name}" (known: ${this.known.join(", ")})`
  }
}

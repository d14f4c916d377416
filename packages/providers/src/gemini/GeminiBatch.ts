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
 * Wire facts: `../shared/reference/providers.md` section 4.
 */
import { HttpBody, HttpClient } from "@effect/platform"
import type { BatchRequest, BatchResult, Content, FailureClass } from "@sluice/core"
import { GeminiDisplayName, Prompt } from "@sluice/core"
import {
  Chunk,
  Config,
  ConfigError,
  Context,
  Duration,
  Effect,
  Either,
  Layer,
  Option,
  Redacted,
  Schema,
  Stream
} from "effect"
import * as NodeFs from "node:fs"
import type {
  BatchInfo,
  BatchProvider,
  BatchStatus,
  CreateBatch,
  ProviderCapabilities,
  ProviderLimits,
  StagedInput
} from "../BatchProvider.js"
import type { HttpSettings, ProviderHttp, RequestSpec } from "../internal/http.js"
import { makeProviderHttp, truncate } from "../internal/http.js"
import type { RetryOptions } from "../internal/retry.js"
import { retryOptions } from "../internal/retry.js"
import { ProviderError } from "../ProviderError.js"
import * as ProviderIdentity from "../ProviderIdentity.js"
import { optionalString, requiredSecret } from "../internal/env.js"

export const { displayNameOf, metadataOfDisplayName } = GeminiDisplayName

// -----------------------------------------------------------------------------------------
// Configuration
// -----------------------------------------------------------------------------------------

export const defaultBaseUrl = "https://generativelanguage.googleapis.com"

/**
 * Default API version. Batch mode is served under `v1beta` and `v1` alike (the official SDK
 * 2.x calls `v1beta`, 3.x `v1`); `GEMINI_API_VERSION` (or `apiVersion`) picks another.
 */
export const defaultApiVersion = "v1beta"

/** What an API version segment looks like: `v1`, `v1beta`, `v1alpha`, `v2beta1` … */
const apiVersionPattern = /^v\d+[a-z0-9]*$/

/** The whole inline create body must stay under this (Gemini: "< 20 MB"). */
export const maxInlineBodyBytes = 20_000_000

/**
 * Default largest shard file sent inline. The inline body is a little larger than the file
 * (`"metadata":{"key":…}` instead of `"key":…`, about 16 bytes a line, so under 10 % for
 * any line sluice writes), so this leaves a safe margin below 20 MB.
 */
export const defaultInlineMaxBytes = 16_000_000

export interface GeminiConfig {
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
 * Reads `GEMINI_API_KEY` (required, kept Redacted), `GEMINI_BASE_URL` and `GEMINI_API_VERSION`.
 * Values in `overrides` win over the environment. A missing key fails with a `ConfigError`
 * (MissingData) whose message is "GEMINI_API_KEY is not set".
 */
const fromEnv = (overrides: Partial<GeminiConfig> = {}): Config.Config<GeminiConfig> =>
  Config.all({
    apiKey: overrides.apiKey !== undefined ? Config.succeed(overrides.apiKey) : apiKeyConfig,
    baseUrl: overrides.baseUrl !== undefined ? Config.succeed(overrides.baseUrl) : optionalString("GEMINI_BASE_URL"),
    apiVersion: overrides.apiVersion !== undefined ? Config.succeed(overrides.apiVersion) : apiVersionConfig
  }).pipe(
    Config.map(({ apiKey, apiVersion, baseUrl }): GeminiConfig => ({
      ...overrides,
      apiKey,
      baseUrl: baseUrl ?? defaultBaseUrl,
      apiVersion: apiVersion ?? defaultApiVersion
    }))
  )

export const GeminiConfig = {
  defaultBaseUrl,
  defaultApiVersion,
  fromEnv
} as const

// -----------------------------------------------------------------------------------------
// Limits and capabilities
// -----------------------------------------------------------------------------------------

export const limits: ProviderLimits = {
  // Gemini documents no request-count limit per batch; this is a sane ceiling.
  maxRequests: 100_000,
  // The File API takes files up to 2 GB; stay safely below it.
  maxBytes: 1_900_000_000,
  // The model is part of the create URL.
  oneModelPerShard: true
}

export const capabilities: ProviderCapabilities = {
  cancel: true,
  list: true,
  // No metadata field, but `displayName` carries run, shard and submission and is parsed back
  // into `metadata` (see the module comment): the runner adopts orphans by it.
  metadata: true,
  // EXPIRED batches return no results.
  partialResults: false
}

// -----------------------------------------------------------------------------------------
// Encoding request lines
// -----------------------------------------------------------------------------------------

type Rec = Record<string, unknown>
const isRecord = (u: unknown): u is Rec => typeof u === "object" && u !== null && !Array.isArray(u)
const asString = (u: unknown): string | undefined => (typeof u === "string" && u !== "" ? u : undefined)
const asNumber = (u: unknown): number | undefined => (typeof u === "number" && Number.isFinite(u) ? u : undefined)

/** `gemini-2.5-flash` -> `models/gemini-2.5-flash`; names with a collection (`tunedModels/x`) stay. */
export const modelName = (model: string): string => (model.includes("/") ? model : `models/${model}`)

/** JSON Schema keywords `responseJsonSchema` documents; others are dropped. */
const jsonSchemaKeys: ReadonlySet<string> = new Set([
  "$id",
  "$defs",
  "$ref",
  "$anchor",
  "type",
  "format",
  "title",
  "description",
  "enum",
  "items",
  "prefixItems",
  "minItems",
  "maxItems",
  "minimum",
  "maximum",
  "anyOf",
  "oneOf",
  "properties",
  "additionalProperties",
  "required",
  "propertyOrdering"
])

const mapValues = (u: unknown): unknown =>
  isRecord(u) ? Object.fromEntries(Object.entries(u).map(([k, v]) => [k, toGeminiJsonSchema(v)])) : u

/**
 * A JSON Schema reduced to what Gemini's `responseJsonSchema` supports: unsupported keywords
 * (`pattern`, `multipleOf`, exclusive bounds, `$schema` …) are dropped, `const` becomes a
 * one-value `enum`, and a node with `$ref` keeps only `$`-keywords (Gemini's rule).
 */
export const toGeminiJsonSchema = (schema: unknown): unknown => {
  if (Array.isArray(schema)) return schema.map(toGeminiJsonSchema)
  if (!isRecord(schema)) return schema
  const out: Rec = {}
  const refOnly = typeof schema["$ref"] === "string"
  for (const [key, value] of Object.entries(schema)) {
    if (refOnly && !key.startsWith("$")) continue
    if (key === "const") {
      if (schema["enum"] === undefined) out["enum"] = [value]
      continue
    }
    if (!jsonSchemaKeys.has(key)) continue
    switch (key) {
      case "properties":
      case "$defs":
        out[key] = mapValues(value)
        break
      case "items":
      case "additionalProperties":
      case "anyOf":
      case "oneOf":
      case "prefixItems":
        out[key] = toGeminiJsonSchema(value)
        break
      default:
        out[key] = value
    }
  }
  return out
}

/** Gemini `generationConfig` fields passed through under their own names. */
const generationConfigKeys: ReadonlySet<string> = new Set([
  "temperature",
  "topP",
  "topK",
  "candidateCount",
  "maxOutputTokens",
  "stopSequences",
  "presencePenalty",
  "frequencyPenalty",
  "seed",
  "responseLogprobs",
  "logprobs",
  "responseModalities",
  "thinkingConfig",
  "mediaResolution",
  "speechConfig",
  "enableEnhancedCivicAnswers"
])

/** OpenAI-style params -> Gemini `generationConfig` fields. */
const mappedParams: Readonly<Record<string, string>> = {
  max_tokens: "maxOutputTokens",
  max_completion_tokens: "maxOutputTokens",
  max_output_tokens: "maxOutputTokens",
  top_p: "topP",
  top_k: "topK",
  n: "candidateCount",
  presence_penalty: "presencePenalty",
  frequency_penalty: "frequencyPenalty"
}

/** Top-level `GenerateContentRequest` fields a pipeline may set through params. */
const requestKeys: ReadonlySet<string> = new Set(["safetySettings", "tools", "toolConfig", "cachedContent"])

const generationConfigOf = (params: Readonly<Rec>): Rec => {
  const config: Rec = {}
  for (const key in params) {
    const value = params[key]
    if (value === undefined || value === null) continue
    if (key === "stop") config["stopSequences"] = Array.isArray(value) ? value : [value]
    else if (mappedParams[key] !== undefined) config[mappedParams[key]!] = value
    else if (generationConfigKeys.has(key)) config[key] = value
  }
  return config
}

/** The media type of an image URL by its path's extension, if it has a known one. */
const urlMediaType = (url: string): string | undefined => {
  try {
    return Prompt.mediaTypeOf(new URL(url).pathname)
  } catch {
    return undefined
  }
}

/**
 * A message's content as Gemini parts: `{text}`; an image given as base64 data as
 * `{inlineData: {mimeType, data}}`; an image URL as `{fileData: {fileUri, mimeType}}`, with
 * the media type of the URL's extension (left out when it has none). Gemini reads a `fileUri`
 * that is a File API URI, a public or signed http(s) URL (newer models), or a registered
 * Cloud Storage object.
 */
const wireParts = (content: Content): Array<Rec> => {
  if (typeof content === "string") return [{ text: content }]
  return content.map((part): Rec => {
    if (part.type === "text") return { text: part.text }
    if (part.source.type === "base64") return { inlineData: { mimeType: part.source.mediaType, data: part.source.data } }
    const mimeType = urlMediaType(part.source.url)
    return { fileData: mimeType === undefined ? { fileUri: part.source.url } : { fileUri: part.source.url, mimeType } }
  })
}

/**
 * One input line: `{"key": customId, "request": GenerateContentRequest}`. System messages
 * become `systemInstruction`, assistant turns the `model` role. Structured output sets
 * `responseMimeType: application/json` and `responseJsonSchema`. Content parts become Gemini
 * parts (see `wireParts`); images only in user turns.
 */
export const encode = (request: BatchRequest, customId: string): string => {
  if (request._tag === "embeddings") {
    // An EmbedContentRequest; Gemini embeddings batches are a separate API (see `create`).
    return JSON.stringify({
      key: customId,
      request: { model: modelName(request.model), content: { parts: [{ text: request.input }] } }
    })
  }
  if (request.messages.some((m) => typeof m.content !== "string")) {
    const problem = Prompt.problemOf(request.messages)
    if (problem !== undefined) throw new Error(`gemini: ${problem} (custom_id ${customId})`)
  }
  const system: Array<Rec> = []
  const contents: Array<{ role: "user" | "model"; parts: Array<Rec> }> = []
  for (const message of request.messages) {
    if (message.role === "system") system.push(...wireParts(message.content))
    else contents.push({ role: message.role === "assistant" ? "model" : "user", parts: wireParts(message.content) })
  }
  const body: Rec = { model: modelName(request.model), contents }
  if (system.length > 0) body["systemInstruction"] = { parts: system }
  for (const key in request.params) {
    if (requestKeys.has(key)) body[key] = request.params[key]
  }
  const generationConfig = generationConfigOf(request.params)
  if (request.output !== undefined) {
    generationConfig["responseMimeType"] = "application/json"
    generationConfig["responseJsonSchema"] = toGeminiJsonSchema(request.output.schema)
  }
  if (Object.keys(generationConfig).length > 0) body["generationConfig"] = generationConfig
  return JSON.stringify({ key: customId, request: body })
}

// -----------------------------------------------------------------------------------------
// Wire objects -> neutral BatchInfo
// -----------------------------------------------------------------------------------------

const Nullish = <S extends Schema.Schema.Any>(schema: S) => Schema.optional(Schema.NullOr(schema))
/** int64 counts are JSON strings; accept numbers too. */
const Count = Schema.Union(Schema.String, Schema.Number)

export const WireOperation = Schema.Struct({
  name: Schema.String,
  done: Nullish(Schema.Boolean),
  metadata: Nullish(
    Schema.Struct({
      displayName: Nullish(Schema.String),
      model: Nullish(Schema.String),
      state: Nullish(Schema.String),
      createTime: Nullish(Schema.String),
      batchStats: Nullish(
        Schema.Struct({
          requestCount: Nullish(Count),
          successfulRequestCount: Nullish(Count),
          failedRequestCount: Nullish(Count),
          pendingRequestCount: Nullish(Count)
        })
      ),
      inputConfig: Nullish(Schema.Struct({ fileName: Nullish(Schema.String) })),
      output: Nullish(Schema.Unknown)
    })
  ),
  response: Nullish(Schema.Unknown),
  error: Nullish(
    Schema.Struct({
      code: Nullish(Schema.Number),
      message: Nullish(Schema.String),
      status: Nullish(Schema.String)
    })
  )
})
export type WireOperation = typeof WireOperation.Type

const stateTable: Readonly<Record<string, BatchStatus>> = {
  PENDING: "validating",
  QUEUED: "validating",
  RUNNING: "in_progress",
  UPDATING: "in_progress",
  SUCCEEDED: "completed",
  PARTIALLY_SUCCEEDED: "completed",
  FAILED: "failed",
  CANCELLING: "cancelling",
  CANCELLED: "cancelled",
  EXPIRED: "expired"
}

/**
 * Normalises `BATCH_STATE_*` (REST) and `JOB_STATE_*` (SDK spelling): PENDING -> validating
 * (queued, nothing processed yet), RUNNING -> in_progress, SUCCEEDED -> completed,
 * FAILED -> failed, CANCELLED -> cancelled, EXPIRED -> expired; anything else (UNSPECIFIED,
 * PAUSED, new values) -> unknown, with the raw value kept by the caller.
 */
export const normaliseState = (raw: string): BatchStatus => {
  const key = raw.trim().toUpperCase().replace(/^(BATCH|JOB)_STATE_/, "")
  return stateTable[key] ?? "unknown"
}

/** An int64 count (string or number); 0 when absent or malformed. */
export const count = (value: string | number | null | undefined): number => {
  if (typeof value === "number") return Number.isFinite(value) ? Math.max(0, Math.floor(value)) : 0
  if (typeof value === "string" && /^\s*\d+\s*$/.test(value)) return Number(value)
  return 0
}

/** `outputFileId` of a batch whose responses are inline in the Operation (`results` re-reads it). */
export const inlineResponses = "inlinedResponses"

/** The batch output: the Operation's `response`, mirrored in `metadata.output`. */
const outputOf = (wire: WireOperation): Rec | undefined =>
  isRecord(wire.response) ? wire.response : isRecord(wire.metadata?.output) ? wire.metadata.output : undefined

const outputFileOf = (wire: WireOperation): string | null => {
  const output = outputOf(wire)
  if (output === undefined) return null
  const file = asString(output["responsesFile"])
  if (file !== undefined) return file
  return isRecord(output["inlinedResponses"]) || Array.isArray(output["inlinedResponses"]) ? inlineResponses : null
}

export const toBatchInfo = (wire: WireOperation): BatchInfo => {
  const meta = wire.metadata
  const rawStatus = meta?.state ?? ""
  const stats = meta?.batchStats
  const createdMs = meta?.createTime ? Date.parse(meta.createTime) : Number.NaN
  const error = wire.error
  return {
    id: wire.name,
    status: normaliseState(rawStatus),
    rawStatus,
    counts: {
      total: count(stats?.requestCount),
      succeeded: count(stats?.successfulRequestCount),
      failed: count(stats?.failedRequestCount)
    },
    inputRef: asString(meta?.inputConfig?.fileName) ?? null,
    outputFileId: outputFileOf(wire),
    errorFileId: null,
    metadata: metadataOfDisplayName(meta?.displayName),
    createdAt: Number.isNaN(createdMs) ? 0 : Math.floor(createdMs / 1000),
    errors: error === undefined || error === null ?
      [] :
      [{
        code: error.status ?? (error.code === undefined || error.code === null ? "unknown" : String(error.code)),
        message: error.message ?? "",
        line: null
      }]
  }
}

const decodeWireOperation = Schema.decodeUnknownEither(WireOperation)

/** Decodes a wire Operation; `Left` holds a short reason. */
export const decodeOperation = (u: unknown): Either.Either<WireOperation, string> =>
  Either.mapLeft(decodeWireOperation(u), (e) => e.message)

export const decodeBatchInfo = (u: unknown): Either.Either<BatchInfo, string> =>
  Either.map(decodeOperation(u), toBatchInfo)

// -----------------------------------------------------------------------------------------
// Result lines -> neutral BatchResult
// -----------------------------------------------------------------------------------------

/** google.rpc.Code -> name. */
const grpcNames: Readonly<Record<number, string>> = {
  1: "CANCELLED",
  2: "UNKNOWN",
  3: "INVALID_ARGUMENT",
  4: "DEADLINE_EXCEEDED",
  5: "NOT_FOUND",
  6: "ALREADY_EXISTS",
  7: "PERMISSION_DENIED",
  8: "RESOURCE_EXHAUSTED",
  9: "FAILED_PRECONDITION",
  10: "ABORTED",
  11: "OUT_OF_RANGE",
  12: "UNIMPLEMENTED",
  13: "INTERNAL",
  14: "UNAVAILABLE",
  15: "DATA_LOSS",
  16: "UNAUTHENTICATED"
}

/** google.rpc.Code -> HTTP status (the mapping Google's own gateways use). */
const grpcHttp: Readonly<Record<number, number>> = {
  1: 499,
  2: 500,
  3: 400,
  4: 504,
  5: 404,
  6: 409,
  7: 403,
  8: 429,
  9: 400,
  10: 409,
  11: 400,
  12: 501,
  13: 500,
  14: 503,
  15: 500,
  16: 401
}

const retryableStatuses: ReadonlySet<string> = new Set([
  "RESOURCE_EXHAUSTED",
  "UNAVAILABLE",
  "INTERNAL",
  "DEADLINE_EXCEEDED",
  "ABORTED",
  "UNKNOWN"
])

/**
 * Failure class of a per-request error `{code, message, status?}`. `code` may be an HTTP
 * status (429, 503) or a google.rpc.Code (8, 14): both are read. 429/500/503/504,
 * RESOURCE_EXHAUSTED, UNAVAILABLE, INTERNAL, DEADLINE_EXCEEDED, ABORTED -> retryable;
 * CANCELLED -> cancelled; everything else -> permanent.
 */
export const classifyError = (error: Rec): { failure: FailureClass; code: string; status: number | null } => {
  const rawCode = asNumber(error["code"])
  const http = rawCode === undefined ? null : rawCode >= 100 ? rawCode : (grpcHttp[rawCode] ?? null)
  const name = asString(error["status"])?.toUpperCase() ??
    (rawCode !== undefined && rawCode < 100 ? grpcNames[rawCode] : undefined)
  const failure: FailureClass = name === "CANCELLED" ?
    "cancelled" :
    (name !== undefined && retryableStatuses.has(name)) ||
        (http !== null && (http === 408 || http === 429 || http >= 500)) ?
    "retryable" :
    "permanent"
  return { failure, code: name ?? (http !== null ? `http_${http}` : "unknown_error"), status: http }
}

const failed = (
  customId: string,
  failure: FailureClass,
  code: string,
  message: string,
  status: number | null,
  raw: unknown
): BatchResult => ({ _tag: "Failed", customId, failure, code, message, status, raw })

/** Finish reasons that mean the answer was withheld. */
const blockedReasons: ReadonlySet<string> = new Set([
  "SAFETY",
  "RECITATION",
  "BLOCKLIST",
  "PROHIBITED_CONTENT",
  "SPII",
  "IMAGE_SAFETY",
  "LANGUAGE"
])

const usageOf = (response: Rec) => {
  const usage = response["usageMetadata"]
  if (!isRecord(usage)) return null
  return {
    inputTokens: asNumber(usage["promptTokenCount"]) ?? 0,
    // Thinking tokens are billed as output.
    outputTokens: (asNumber(usage["candidatesTokenCount"]) ?? 0) + (asNumber(usage["thoughtsTokenCount"]) ?? 0),
    cachedInputTokens: asNumber(usage["cachedContentTokenCount"]) ?? 0
  }
}

const succeeded = (customId: string, response: Rec, raw: unknown): BatchResult => {
  const candidate = Array.isArray(response["candidates"]) ? response["candidates"][0] : undefined
  if (!isRecord(candidate)) {
    const feedback = response["promptFeedback"]
    const blockReason = isRecord(feedback) ? asString(feedback["blockReason"]) : undefined
    if (blockReason !== undefined) {
      return failed(customId, "permanent", "prompt_blocked", `the prompt was blocked: ${blockReason}`, null, raw)
    }
    return failed(customId, "parse", "no_candidates", "the response has no candidates", null, raw)
  }
  const finishReason = asString(candidate["finishReason"]) ?? null
  const content = candidate["content"]
  const parts = isRecord(content) && Array.isArray(content["parts"]) ? content["parts"] : []
  const texts: Array<string> = []
  for (const part of parts) {
    // Thought summaries (`thought: true`) are not the answer.
    if (isRecord(part) && typeof part["text"] === "string" && part["thought"] !== true) texts.push(part["text"])
  }
  if (texts.length > 0) {
    return { _tag: "Succeeded", customId, text: texts.join(""), finishReason, usage: usageOf(response), raw }
  }
  if (finishReason !== null && blockedReasons.has(finishReason)) {
    return failed(customId, "permanent", finishReason.toLowerCase(), `the answer was withheld (${finishReason})`, null, raw)
  }
  return failed(
    customId,
    "parse",
    "no_content",
    `the response has no text (finishReason: ${finishReason ?? "none"})`,
    null,
    raw
  )
}

/** Classifies one result line `{key, response}` or `{key, error | status}`. */
export const classifyLine = (line: Rec & { readonly key: string }): BatchResult => {
  const customId = line.key
  const response = line["response"]
  if (isRecord(response)) return succeeded(customId, response, line)
  const error = isRecord(line["error"]) ? line["error"] : isRecord(line["status"]) ? line["status"] : undefined
  if (error !== undefined) {
    const { code, failure, status } = classifyError(error)
    return failed(customId, failure, code, asString(error["message"]) ?? "", status, line)
  }
  return failed(customId, "retryable", "no_response", "the result line has neither a response nor an error", null, line)
}

/** Classifies a parsed result line; `Left` says why it is unusable (no key). */
export const parseResultRecord = (record: unknown): Either.Either<BatchResult, string> => {
  if (!isRecord(record)) return Either.left("not a JSON object")
  const key = record["key"]
  if (typeof key !== "string" || key === "") return Either.left("no key")
  return Either.right(classifyLine(record as Rec & { key: string }))
}

/** Parses one JSONL line of a responses file. */
export const parseResultLine = (text: string): Either.Either<BatchResult, string> => {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return Either.left(`not JSON: ${truncate(text, 80)}`)
  }
  return parseResultRecord(parsed)
}

/** An inline response `{response | error, metadata: {key}}` as a result line `{key, response | error}`. */
export const inlineToLine = (entry: unknown): unknown => {
  if (!isRecord(entry)) return entry
  const metadata = entry["metadata"]
  const key = isRecord(metadata) ? metadata["key"] : undefined
  const { metadata: _, ...rest } = entry
  return { key, ...rest }
}

/** The inline responses of an Operation, as result lines. */
export const inlineResponseLines = (wire: WireOperation): ReadonlyArray<unknown> => {
  const output = outputOf(wire)
  const outer = output?.["inlinedResponses"]
  const list = Array.isArray(outer) ? outer : isRecord(outer) ? outer["inlinedResponses"] : undefined
  return Array.isArray(list) ? list.map(inlineToLine) : []
}

// -----------------------------------------------------------------------------------------
// Shard files
// -----------------------------------------------------------------------------------------

/** The first non-blank line of a file, read in small chunks (never the whole file). */
const readFirstLine = async (path: string): Promise<string> => {
  const handle = await NodeFs.promises.open(path, "r")
  try {
    const chunks: Array<Buffer> = []
    let position = 0
    for (;;) {
      const buffer = Buffer.alloc(64 * 1024)
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, position)
      if (bytesRead === 0) break
      position += bytesRead
      const chunk = buffer.subarray(0, bytesRead)
      let start = 0
      for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
        const line = Buffer.concat([...chunks, chunk.subarray(start, nl)]).toString("utf8")
        chunks.length = 0
        if (line.trim() !== "") return line
        start = nl + 1
      }
      chunks.push(chunk.subarray(start))
    }
    return Buffer.concat(chunks).toString("utf8")
  } finally {
    await handle.close()
  }
}

/** The model named by a shard file's lines (`request.model`). */
const modelOfLine = (line: string): string | undefined => {
  try {
    const parsed: unknown = JSON.parse(line)
    const request = isRecord(parsed) ? parsed["request"] : undefined
    return isRecord(request) ? asString(request["model"]) : undefined
  } catch {
    return undefined
  }
}

/** The inline create body, built from the shard file's lines. */
const inlineBody = (text: string, displayName: string): string => {
  const requests: Array<string> = []
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue
    const parsed: unknown = JSON.parse(line)
    if (!isRecord(parsed) || !isRecord(parsed["request"])) throw new Error("a line has no request object")
    const key = parsed["key"]
    requests.push(
      typeof key === "string" ?
        `{"request":${JSON.stringify(parsed["request"])},"metadata":{"key":${JSON.stringify(key)}}}` :
        `{"request":${JSON.stringify(parsed["request"])}}`
    )
  }
  return `{"batch":{"displayName":${JSON.stringify(displayName)},"inputConfig":{"requests":{"requests":[${
    requests.join(",")
  }]}}}}`
}

// -----------------------------------------------------------------------------------------
// The provider
// -----------------------------------------------------------------------------------------

export const inlinePrefix = "inline:"
const jsonlMimeType = "application/jsonl"

const clamp = (n: number | undefined, min: number, max: number, fallback: number): number =>
  n === undefined || !Number.isFinite(n) ? fallback : Math.min(max, Math.max(min, Math.floor(n)))

/** Encodes each segment of a resource name (`batches/abc`), keeping the slashes. */
const resourcePath = (name: string): string => name.split("/").map(encodeURIComponent).join("/")

/** A batch name from an id given with or without its collection. */
const batchName = (id: string): string => (id.startsWith("batches/") ? id : `batches/${id}`)

const describe = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/** Builds the provider from a configuration, over the ambient `HttpClient`. */
export const make = (config: GeminiConfig): Effect.Effect<BatchProvider, never, HttpClient.HttpClient> =>
  Effect.map(HttpClient.HttpClient, (client) => makeWithClient(client, config))

/** Builds the provider over a given `HttpClient`. */
export const makeWithClient = (client: HttpClient.HttpClient, config: GeminiConfig): BatchProvider => {
  const name = config.name ?? "gemini"
  const version = `/${(config.apiVersion ?? "").replace(/^\/+|\/+$/g, "") || defaultApiVersion}`
  const baseUrl = config.baseUrl.replace(/\/+$/, "")
  const requestTimeout = config.requestTimeout ?? Duration.seconds(60)
  const idleTimeout = config.downloadIdleTimeout ?? Duration.seconds(60)
  const uploadRate = config.minUploadBytesPerSecond ?? 256 * 1024
  const listPageSize = clamp(config.listPageSize, 1, 1000, 100)
  const filesPageSize = clamp(config.filesPageSize, 1, 100, 100)
  const inlineMaxBytes = clamp(config.inlineMaxBytes, 0, maxInlineBodyBytes, defaultInlineMaxBytes)
  const retry = retryOptions(config.retry)

  const headers: Record<string, string> = { accept: "application/json", "user-agent": "sluice", ...config.headers }
  const auth = config.auth ?? "api-key"
  const secretHeaders: Record<string, Redacted.Redacted<string>> = { ...config.secretHeaders }
  if (auth === "api-key") secretHeaders["x-goog-api-key"] = config.apiKey
  else if (auth === "bearer") secretHeaders["authorization"] = Redacted.make(`Bearer ${Redacted.value(config.apiKey)}`)
  else secretHeaders[auth.header.toLowerCase()] = config.apiKey

  const settings: HttpSettings = {
    provider: name,
    baseUrl,
    headers,
    secretHeaders,
    secrets: [config.apiKey],
    requestTimeout,
    retry,
    quotaCodes: new Set()
  }
  const http: ProviderHttp = makeProviderHttp(client, settings)

  /** Gemini answers a wrong key with 400 INVALID_ARGUMENT "API key not valid": that is Unauthorized. */
  const fixAuth = (e: ProviderError): ProviderError =>
    e.reason === "Rejected" && /API key not valid|API_KEY_INVALID/i.test(e.description) ?
      new ProviderError({
        reason: "Unauthorized",
        provider: e.provider,
        operation: e.operation,
        description: e.description,
        ...(e.status === undefined ? {} : { status: e.status })
      }) :
      e

  const json = (spec: RequestSpec | Effect.Effect<RequestSpec, ProviderError>, options: Parameters<ProviderHttp["json"]>[1]) =>
    http.json(spec, options).pipe(Effect.mapError(fixAuth))

  const decodeWith = <A>(operation: string, decode: (u: unknown) => Either.Either<A, string>) => (u: unknown) =>
    Either.match(decode(u), {
      onLeft: (reason) =>
        Effect.fail(http.error({ reason: "Decode", operation, description: truncate(`unexpected response: ${reason}`) })),
      onRight: Effect.succeed
    })

  const readError = (operation: string) => (cause: unknown) =>
    http.error({ reason: "Rejected", operation, description: `cannot read shard file: ${describe(cause)}` })

  const jsonBody = (value: unknown) => HttpBody.text(JSON.stringify(value), "application/json")

  const timeoutFor = (bytes: number) => Duration.sum(requestTimeout, Duration.millis(Math.ceil((bytes / uploadRate) * 1000)))

  // --- files ---

  /** Resumable upload, step 1: opens a session; its URL comes back in `x-goog-upload-url`. */
  const startUpload = (size: number, displayName: string): Effect.Effect<string, ProviderError> =>
    Effect.suspend(() => {
      let uploadUrl: string | undefined
      // A client that keeps the header of this one call (the JSON helper returns bodies only).
      const capturing = HttpClient.tap(client, (response) =>
        Effect.sync(() => {
          uploadUrl = response.headers["x-goog-upload-url"]
        }))
      const operation = `POST /upload${version}/files`
      return makeProviderHttp(capturing, settings).json({
        method: "POST",
        path: `/upload${version}/files`,
        headers: {
          "x-goog-upload-protocol": "resumable",
          "x-goog-upload-command": "start",
          "x-goog-upload-header-content-length": String(size),
          "x-goog-upload-header-content-type": jsonlMimeType
        },
        body: jsonBody({ file: { display_name: displayName } })
      }, { retry: true }).pipe(
        Effect.mapError(fixAuth),
        Effect.flatMap(() =>
          uploadUrl === undefined || uploadUrl === "" ?
            Effect.fail(http.error({ reason: "Decode", operation, description: "no x-goog-upload-url in the answer" })) :
            Effect.succeed(uploadUrl)
        )
      )
    })

  /**
   * Where to send the bytes. Under the base URL: through the normal client. Elsewhere: the
   * session URL is itself the credential, so the API key is sent only to the base URL's origin.
   */
  const uploadTarget = (uploadUrl: string): { http: ProviderHttp; path: string; urlParams: Record<string, string> } => {
    const url = new URL(uploadUrl)
    const urlParams = Object.fromEntries(url.searchParams)
    const base = new URL(baseUrl)
    const basePath = base.pathname.replace(/\/+$/, "")
    if (url.origin === base.origin && url.pathname.startsWith(`${basePath}/`)) {
      return { http, path: url.pathname.slice(basePath.length), urlParams }
    }
    const other = makeProviderHttp(client, {
      ...settings,
      baseUrl: url.origin,
      secretHeaders: url.origin === base.origin ? secretHeaders : {}
    })
    return { http: other, path: url.pathname, urlParams }
  }

  const WireFile = Schema.Struct({
    name: Schema.String,
    displayName: Nullish(Schema.String),
    state: Nullish(Schema.String),
    createTime: Nullish(Schema.String)
  })
  const decodeUploaded = Schema.decodeUnknownEither(Schema.Struct({ file: WireFile }))
  const decodeFilePage = Schema.decodeUnknownEither(
    Schema.Struct({ files: Nullish(Schema.Array(WireFile)), nextPageToken: Nullish(Schema.String) })
  )

  /** Uploads a shard through the File API (resumable: start, then upload + finalize in one request). */
  const upload = (path: string, displayName: string): Effect.Effect<StagedInput, ProviderError> => {
    const operation = `POST /upload${version}/files`
    return Effect.gen(function*() {
      const size = (yield* Effect.tryPromise({ try: () => NodeFs.promises.stat(path), catch: readError(operation) })).size
      // One session: start, then the bytes (upload + finalize, offset 0). Each step retries
      // transient failures on its own; the body is streamed afresh from disk at every try.
      const session = Effect.gen(function*() {
        const target = uploadTarget(yield* startUpload(size, displayName))
        const answer = yield* target.http.json({
          method: "POST",
          path: target.path,
          urlParams: target.urlParams,
          headers: { "x-goog-upload-command": "upload, finalize", "x-goog-upload-offset": "0" },
          body: HttpBody.stream(
            // Opened only when the body is sent, closed when it ends or is interrupted.
            Stream.suspend(() =>
              Stream.fromAsyncIterable(
                NodeFs.createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Uint8Array>,
                (cause) => cause
              )
            ),
            jsonlMimeType,
            size
          )
        }, { retry: true, timeout: timeoutFor(size) }).pipe(Effect.mapError(fixAuth))
        return yield* decodeWith(operation, (u) => Either.mapLeft(decodeUploaded(u), (e) => e.message))(answer)
      })
      // A session the server no longer accepts (lost, or a retry at offset 0 after part of the
      // body got through) is abandoned for one fresh session.
      const uploaded = yield* session.pipe(
        Effect.catchIf((e) => e.reason === "Rejected" || e.reason === "NotFound", () => session)
      )
      return { inputRef: uploaded.file.name }
    })
  }

  const stage = (path: string, stagedName: string): Effect.Effect<StagedInput, ProviderError> =>
    Effect.tryPromise({ try: () => NodeFs.promises.stat(path), catch: readError("stage") }).pipe(
      Effect.flatMap((stat) =>
        stat.size <= inlineMaxBytes ? Effect.succeed({ inputRef: `${inlinePrefix}${path}` }) : upload(path, stagedName)
      )
    )

  const findStaged = (stagedName: string): Effect.Effect<Option.Option<StagedInput>, ProviderError> => {
    const path = `${version}/files`
    const decodePage = decodeWith(`GET ${path}`, (u) => Either.mapLeft(decodeFilePage(u), (e) => e.message))
    const loop = (pageToken: string | undefined): Effect.Effect<Option.Option<StagedInput>, ProviderError> =>
      json({
        method: "GET",
        path,
        headers: { "cache-control": "no-cache" },
        urlParams: { pageSize: String(filesPageSize), ...(pageToken === undefined ? {} : { pageToken }) }
      }, { retry: true }).pipe(
        Effect.flatMap(decodePage),
        Effect.flatMap((page) => {
          const hit = (page.files ?? []).find((f) => f.displayName === stagedName && f.state !== "FAILED")
          if (hit !== undefined) return Effect.succeed(Option.some({ inputRef: hit.name }))
          const next = page.nextPageToken ?? undefined
          return next !== undefined && next !== "" && next !== pageToken ? loop(next) : Effect.succeed(Option.none())
        })
      )
    return loop(undefined)
  }

  const deleteStaged = (inputRef: string): Effect.Effect<void, ProviderError> =>
    inputRef.startsWith(inlinePrefix) ?
      Effect.void :
      json({ method: "DELETE", path: `${version}/${resourcePath(inputRef)}` }, { retry: true }).pipe(
        Effect.asVoid,
        Effect.catchIf((e) => e.reason === "NotFound", () => Effect.void)
      )

  // --- batches ---

  const operationInfo = (operation: string) => decodeWith(operation, decodeBatchInfo)

  const create = (input: CreateBatch): Effect.Effect<BatchInfo, ProviderError> =>
    Effect.gen(function*() {
      if (input.endpoint !== "chat") {
        return yield* Effect.fail(http.error({
          reason: "Rejected",
          operation: "create",
          description: "Gemini embeddings batches (asyncBatchEmbedContent) are not supported; use a chat stage"
        }))
      }
      const displayName = displayNameOf(input.metadata)
      const inline = input.inputRef.startsWith(inlinePrefix)
      // The shard file as the runner knows it now (a run directory may have moved since stage).
      const shardPath = input.path !== "" ? input.path : input.inputRef.slice(inlinePrefix.length)
      const firstLine = yield* Effect.tryPromise({ try: () => readFirstLine(shardPath), catch: readError("create") })
      const model = modelOfLine(firstLine)
      if (model === undefined) {
        return yield* Effect.fail(http.error({
          reason: "Rejected",
          operation: "create",
          description: "the shard file's first line names no request.model"
        }))
      }
      const path = `${version}/${resourcePath(modelName(model))}:batchGenerateContent`
      const operation = `POST ${path}`
      let body: string
      if (inline) {
        const text = yield* Effect.tryPromise({ try: () => NodeFs.promises.readFile(shardPath, "utf8"), catch: readError(operation) })
        body = yield* Effect.try({
          try: () => inlineBody(text, displayName),
          catch: (cause) => http.error({ reason: "Rejected", operation, description: `bad shard line: ${describe(cause)}` })
        })
        const bytes = Buffer.byteLength(body)
        if (bytes >= maxInlineBodyBytes) {
          return yield* Effect.fail(http.error({
            reason: "Rejected",
            operation,
            description: `the inline request body is ${bytes} bytes; Gemini takes less than 20 MB inline ` +
              "(lower inlineMaxBytes so such shards go through the File API)"
          }))
        }
      } else {
        body = JSON.stringify({ batch: { displayName, inputConfig: { fileName: input.inputRef } } })
      }
      // Not idempotent (Gemini says so explicitly): never retried here. The caller reconciles
      // an ambiguous failure with `list` (the displayName names run, shard and submission).
      const answer = yield* json(
        { method: "POST", path, body: HttpBody.text(body, "application/json") },
        { retry: false, timeout: timeoutFor(body.length) }
      )
      return yield* operationInfo(operation)(answer)
    })

  const getOperation = (batchId: string): Effect.Effect<WireOperation, ProviderError> => {
    const path = `${version}/${resourcePath(batchName(batchId))}`
    return json({ method: "GET", path, headers: { "cache-control": "no-cache" } }, { retry: true }).pipe(
      Effect.flatMap(decodeWith(`GET ${path}`, decodeOperation))
    )
  }

  const retrieve = (batchId: string): Effect.Effect<BatchInfo, ProviderError> =>
    Effect.map(getOperation(batchId), toBatchInfo)

  const cancel = (batchId: string): Effect.Effect<BatchInfo, ProviderError> => {
    const path = `${version}/${resourcePath(batchName(batchId))}:cancel`
    // Cancel answers an empty object: read the batch back for its state.
    return json({ method: "POST", path }, { retry: true }).pipe(Effect.zipRight(retrieve(batchId)))
  }

  const listPath = `${version}/batches`
  const decodeListPage = decodeWith(`GET ${listPath}`, (u) => {
    if (!isRecord(u) && u !== null) return Either.left("not an object")
    const record = (u ?? {}) as Rec
    const operations = record["operations"] ?? []
    if (!Array.isArray(operations)) return Either.left("operations is not an array")
    return Either.map(
      Either.all(operations.map(decodeBatchInfo)),
      (batches) => ({ batches, next: asString(record["nextPageToken"]) })
    )
  })

  const list: Stream.Stream<BatchInfo, ProviderError> = Stream.paginateChunkEffect(
    undefined as string | undefined,
    (pageToken) =>
      json({
        method: "GET",
        path: listPath,
        headers: { "cache-control": "no-cache" },
        urlParams: { pageSize: String(listPageSize), ...(pageToken === undefined ? {} : { pageToken }) }
      }, { retry: true }).pipe(
        Effect.flatMap(decodeListPage),
        Effect.map((page) =>
          [
            Chunk.unsafeFromArray(page.batches),
            page.next !== undefined && page.next !== pageToken ? Option.some(page.next) : Option.none()
          ] as const
        )
      )
  )

  // --- results ---

  /**
   * Classifies result lines (text, or parsed inline entries). One that cannot be attributed
   * to a request (not JSON, no key) is logged with its position and skipped, so one garbage
   * line never costs the other results; the runner finds that request *missing*.
   */
  const classify = (source: string, records: ReadonlyArray<unknown>, firstLine: number) => {
    const out: Array<BatchResult> = []
    const warnings: Array<string> = []
    records.forEach((record, i) => {
      if (typeof record === "string" && record.trim() === "") return
      const parsed = typeof record === "string" ? parseResultLine(record) : parseResultRecord(record)
      if (Either.isRight(parsed)) out.push(parsed.right)
      else warnings.push(`${name}: skipping unusable result ${firstLine + i} of ${source}: ${parsed.left}`)
    })
    const chunk = Chunk.unsafeFromArray(out)
    return warnings.length === 0 ?
      Effect.succeed(chunk) :
      Effect.as(Effect.forEach(warnings, (w) => Effect.logWarning(w), { discard: true }), chunk)
  }

  /** The lines of a responses file, streamed. */
  const fileResults = (file: string): Stream.Stream<BatchResult, ProviderError> =>
    Stream.suspend(() => {
      let lineNo = 0
      return http.stream(
        {
          method: "GET",
          path: `/download${version}/${resourcePath(file)}:download`,
          urlParams: { alt: "media" },
          headers: { accept: "application/octet-stream" }
        },
        { retry: true, idleTimeout }
      ).pipe(
        Stream.mapError(fixAuth),
        Stream.decodeText(),
        Stream.splitLines,
        Stream.mapChunksEffect((lines) => {
          const first = lineNo + 1
          lineNo += lines.length
          return classify(`file ${file}`, Chunk.toReadonlyArray(lines), first)
        })
      )
    })

  /** Inline responses live in the Operation itself: read it again and iterate them. */
  const inlineResults = (batchId: string): Stream.Stream<BatchResult, ProviderError> =>
    Stream.unwrap(
      Effect.flatMap(getOperation(batchId), (wire) =>
        Effect.map(classify(`batch ${batchId}`, inlineResponseLines(wire), 1), (chunk) => Stream.fromChunk(chunk)))
    )

  const results = (batch: BatchInfo): Stream.Stream<BatchResult, ProviderError> =>
    batch.outputFileId === null || batch.outputFileId === "" ?
      // EXPIRED / CANCELLED / FAILED batches return nothing: the runner finds the requests missing.
      Stream.empty :
      batch.outputFileId === inlineResponses ?
      inlineResults(batch.id) :
      fileResults(batch.outputFileId)

  return {
    name,
    origin: baseUrl,
    identity: ProviderIdentity.make({ family: "gemini", provider: name, baseUrl, apiVersion: version.slice(1) }),
    limits,
    capabilities,
    encode,
    stage,
    findStaged,
    create,
    retrieve,
    list,
    cancel,
    results,
    deleteStaged
  }
}

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

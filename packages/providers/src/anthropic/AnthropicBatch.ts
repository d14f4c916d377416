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
 * Wire facts: `../shared/reference/providers.md` section 3.
 */
import { HttpBody, HttpClient } from "@effect/platform"
import type { BatchRequest, BatchResult, ContentPart, FailureClass } from "@sluice/core"
import { Prompt } from "@sluice/core"
import { Chunk, Config, ConfigError, Context, Duration, Effect, Either, Layer, Option, Redacted, Schema, Stream } from "effect"
import * as NodeFs from "node:fs"
import * as NodeReadline from "node:readline"
import type {
  BatchInfo,
  BatchProvider,
  BatchStatus,
  CreateBatch,
  ProviderCapabilities,
  OrphanSearch,
  ProviderLimits,
  ShardIdentity,
  StagedInput
} from "../BatchProvider.js"
import { isTerminal } from "../BatchProvider.js"
import { displayUrl, makeProviderHttp, truncate } from "../internal/http.js"
import type { ProviderHttp, RequestSpec } from "../internal/http.js"
import type { RetryOptions } from "../internal/retry.js"
import { retryOptions } from "../internal/retry.js"
import type { ProviderError } from "../ProviderError.js"
import * as ProviderIdentity from "../ProviderIdentity.js"
import { optionalString, requiredSecret } from "../internal/env.js"

// -----------------------------------------------------------------------------------------
// Configuration
// -----------------------------------------------------------------------------------------

/** Without the version prefix, like the official SDK: paths carry `/v1`. */
export const defaultBaseUrl = "https://api.anthropic.com"
export const defaultBatchesPath = "/v1/messages/batches"
/** The API version sent with `x-api-key` auth. */
export const defaultVersion = "2023-06-01"
/** The API version sent with `Authorization: Bearer` auth (the one `@anthropic-ai/sdk` 1.12 sends). */
export const defaultBearerVersion = "2026-10-21"
/** Anthropic requires `max_tokens`; used when a request's params carry none. */
export const defaultMaxTokens = 1024

export type AnthropicAuth = "x-api-key" | "bearer"

export interface AnthropicConfig {
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
 * Reads `ANTHROPIC_API_KEY` (required, kept Redacted) and `ANTHROPIC_BASE_URL`, like the
 * official SDK. Values in `overrides` win over the environment (an `apiKey` override means
 * the variable is not needed). A missing key fails with a `ConfigError` (MissingData) whose
 * message is "ANTHROPIC_API_KEY is not set".
 */
const fromEnv = (overrides: Partial<AnthropicConfig> = {}): Config.Config<AnthropicConfig> =>
  Config.all({
    apiKey: overrides.apiKey !== undefined ? Config.succeed(overrides.apiKey) : apiKeyConfig,
    baseUrl: overrides.baseUrl !== undefined ? Config.succeed(overrides.baseUrl) : optionalString("ANTHROPIC_BASE_URL")
  }).pipe(
    Config.map(({ apiKey, baseUrl }): AnthropicConfig => ({
      ...overrides,
      apiKey,
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

// -----------------------------------------------------------------------------------------
// Limits and capabilities
// -----------------------------------------------------------------------------------------

export const limits: ProviderLimits = {
  maxRequests: 100_000,
  // The documented cap is 256 MB per create request. The shard file counts one newline per
  // line where the body has one comma, plus 15 bytes of envelope: 250,000,000 file bytes stay
  // below 256 MB whether "MB" means 10^6 or 2^20 bytes.
  maxBytes: 250_000_000,
  // Models may differ within one batch.
  oneModelPerShard: false
}

export const capabilities: ProviderCapabilities = {
  cancel: true,
  list: true,
  // Message batches carry no user metadata: see `findOrphan` below for what can be done instead.
  metadata: false,
  partialResults: true
}

// -----------------------------------------------------------------------------------------
// Encoding request lines (hot path: runs once per row, so plain objects + JSON.stringify)
// -----------------------------------------------------------------------------------------

const toolNamePattern = /^[A-Za-z0-9_-]{1,64}$/
const toolNames = new Map<string, string>()

/** Anthropic tool names must match `^[a-zA-Z0-9_-]{1,64}$`; other names are sanitised. */
export const toolName = (name: string): string => {
  if (toolNamePattern.test(name)) return name
  let cached = toolNames.get(name)
  if (cached === undefined) {
    cached = name.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 64) || "output"
    if (toolNames.size < 1000) toolNames.set(name, cached)
  }
  return cached
}

/**
 * Params of the neutral request that have an Anthropic spelling. `max_completion_tokens`
 * and `stop` are the OpenAI names of `max_tokens` and `stop_sequences`.
 */
const renamedParams: Readonly<Record<string, string>> = {
  max_completion_tokens: "max_tokens",
  stop: "stop_sequences"
}

/**
 * OpenAI-only params dropped from Anthropic requests: the Messages API refuses unknown
 * params ("Extra inputs are not permitted"), and a pipeline moved from OpenAI to Anthropic
 * by changing only its provider must not fail every row. `response_format` is superseded by
 * the forced tool of `output`. Anything not listed here is passed through as-is.
 */
const droppedParams: ReadonlySet<string> = new Set([
  "response_format",
  "n",
  "seed",
  "frequency_penalty",
  "presence_penalty",
  "logprobs",
  "top_logprobs",
  "logit_bias",
  "parallel_tool_calls",
  "stream_options",
  "store",
  "user",
  "reasoning_effort",
  "modalities",
  "prediction"
])

/** Keys `encode` sets itself; params cannot override them. */
const ownKeys: ReadonlySet<string> = new Set(["model", "messages", "system"])

/**
 * A content part as a Messages API content block: `{type: "text", text}`, or
 * `{type: "image", source}` with `{type: "url", url}` or `{type: "base64", media_type, data}`.
 */
const wireBlock = (part: ContentPart): unknown =>
  part.type === "text"
    ? part
    : {
        type: "image",
        source:
          part.source.type === "url"
            ? { type: "url", url: part.source.url }
            : { type: "base64", media_type: part.source.mediaType, data: part.source.data }
      }

/**
 * One request line: `{custom_id, params}`. System messages are hoisted into `system`
 * (joined by a blank line, as are the text parts of a system message given as parts); user
 * and assistant turns stay in `messages`, content parts as content blocks (images only in
 * user turns). `max_tokens` is required by Anthropic: the request's own value, else
 * `defaultMaxTokens`. Structured output
 * is a forced tool whose input schema is the output schema:
 * `tools: [{name, description, input_schema}]`, `tool_choice: {type: "tool", name}`; the
 * answer is then the tool_use block's `input` (see `classifyResult`). A forced tool cannot be
 * combined with extended thinking (`thinking`): Anthropic refuses that combination.
 */
export const encodeWith = (maxTokens: number) => (request: BatchRequest, customId: string): string => {
  if (request._tag !== "chat") {
    // The runner routes embeddings stages only to providers that serve them.
    throw new Error(`anthropic: the Message Batches API has no embeddings endpoint (custom_id ${customId})`)
  }
  if (request.messages.some((m) => typeof m.content !== "string")) {
    const problem = Prompt.problemOf(request.messages)
    if (problem !== undefined) throw new Error(`anthropic: ${problem} (custom_id ${customId})`)
  }
  const system: Array<string> = []
  const messages: Array<{ role: "user" | "assistant"; content: string | ReadonlyArray<unknown> }> = []
  for (const m of request.messages) {
    if (m.role === "system") system.push(Prompt.textOf(m.content, "\n\n"))
    else messages.push({ role: m.role, content: typeof m.content === "string" ? m.content : m.content.map(wireBlock) })
  }
  const params: Record<string, unknown> = { model: request.model, max_tokens: maxTokens }
  if (system.length > 0) params["system"] = system.join("\n\n")
  params["messages"] = messages
  for (const key in request.params) {
    if (ownKeys.has(key) || droppedParams.has(key)) continue
    const value = request.params[key]
    const name = renamedParams[key] ?? key
    if (name === "stop_sequences" && typeof value === "string") params[name] = [value]
    else if (value !== undefined && value !== null) params[name] = value
  }
  if (request.output !== undefined) {
    const name = toolName(request.output.name)
    const tool = {
      name,
      description: `Record the answer. Call this tool exactly once; its input is the answer and must conform to the schema.`,
      input_schema: request.output.schema
    }
    const given = params["tools"]
    params["tools"] = Array.isArray(given) ? [...given, tool] : [tool]
    params["tool_choice"] = { type: "tool", name }
  }
  return JSON.stringify({ custom_id: customId, params })
}

/** `encodeWith(defaultMaxTokens)`. */
export const encode = encodeWith(defaultMaxTokens)

// -----------------------------------------------------------------------------------------
// Wire objects -> neutral BatchInfo (lenient: extra fields ignored, nullable fields null)
// -----------------------------------------------------------------------------------------

const Nullish = <S extends Schema.Schema.Any>(schema: S) => Schema.optional(Schema.NullOr(schema))

export const WireMessageBatch = Schema.Struct({
  id: Schema.String,
  processing_status: Nullish(Schema.String),
  request_counts: Nullish(
    Schema.Struct({
      processing: Nullish(Schema.Number),
      succeeded: Nullish(Schema.Number),
      errored: Nullish(Schema.Number),
      canceled: Nullish(Schema.Number),
      expired: Nullish(Schema.Number)
    })
  ),
  // RFC 3339 at Anthropic; a gateway may send Unix seconds.
  created_at: Nullish(Schema.Union(Schema.String, Schema.Number)),
  ended_at: Nullish(Schema.Union(Schema.String, Schema.Number)),
  cancel_initiated_at: Nullish(Schema.Union(Schema.String, Schema.Number)),
  results_url: Nullish(Schema.String)
})
export type WireMessageBatch = typeof WireMessageBatch.Type

const WirePage = Schema.Struct({
  data: Schema.Array(Schema.Unknown),
  has_more: Nullish(Schema.Boolean),
  first_id: Nullish(Schema.String),
  last_id: Nullish(Schema.String)
})

const unixSeconds = (value: number | string | null | undefined): number => {
  if (typeof value === "number") return Number.isFinite(value) ? Math.floor(value) : 0
  if (typeof value === "string") {
    const ms = Date.parse(value)
    if (!Number.isNaN(ms)) return Math.floor(ms / 1000)
    const n = Number(value)
    return value.trim() !== "" && Number.isFinite(n) ? Math.floor(n) : 0
  }
  return 0
}

/**
 * `processing_status` -> normalised status. Anthropic has three statuses and reports expiry
 * and cancellation per request, so an `ended` batch is classified by what happened to it,
 * with OpenAI's meaning of the statuses (an expired or cancelled batch still has partial
 * results):
 * - `cancelled` when a cancel was initiated (`cancel_initiated_at` set) or any request was
 *   canceled — even if every request had finished before the cancel took effect;
 * - else `expired` when any request expired (the 24 h window ran out);
 * - else `completed` (errored requests do not make the batch fail: they are per-row results).
 * The raw `processing_status` is kept as `rawStatus`; an unknown one maps to "unknown".
 */
export const normaliseStatus = (wire: WireMessageBatch): BatchStatus => {
  switch (wire.processing_status) {
    case "in_progress":
      return "in_progress"
    case "canceling":
      return "cancelling"
    case "ended": {
      const counts = wire.request_counts
      if (isPresent(wire.cancel_initiated_at) || (counts?.canceled ?? 0) > 0) return "cancelled"
      if ((counts?.expired ?? 0) > 0) return "expired"
      return "completed"
    }
    default:
      return "unknown"
  }
}

const isPresent = (value: unknown): boolean => value !== undefined && value !== null && value !== ""

/**
 * The neutral view. `outputFileId` is the `results_url` (set once the batch has ended);
 * `inputRef` and `errorFileId` are null (requests are inline; results are one stream);
 * `metadata` is empty: message batches carry none.
 */
export const toBatchInfo = (wire: WireMessageBatch): BatchInfo => {
  const c = wire.request_counts
  const processing = c?.processing ?? 0
  const succeeded = c?.succeeded ?? 0
  const errored = c?.errored ?? 0
  const canceled = c?.canceled ?? 0
  const expired = c?.expired ?? 0
  return {
    id: wire.id,
    status: normaliseStatus(wire),
    rawStatus: wire.processing_status ?? "",
    counts: {
      total: processing + succeeded + errored + canceled + expired,
      succeeded,
      failed: errored + canceled + expired
    },
    inputRef: null,
    outputFileId: isPresent(wire.results_url) ? wire.results_url! : null,
    errorFileId: null,
    metadata: {},
    createdAt: unixSeconds(wire.created_at),
    errors: []
  }
}

const decodeWireBatch = Schema.decodeUnknownEither(WireMessageBatch)
const decodeWirePage = Schema.decodeUnknownEither(WirePage)

/** Decodes a wire MessageBatch object; `Left` holds a short reason. */
export const decodeBatchInfo = (u: unknown): Either.Either<BatchInfo, string> =>
  Either.mapBoth(decodeWireBatch(u), { onLeft: (e) => e.message, onRight: toBatchInfo })

// -----------------------------------------------------------------------------------------
// Result lines -> neutral BatchResult
// -----------------------------------------------------------------------------------------

type Rec = Record<string, unknown>
const asRecord = (u: unknown): Rec | undefined =>
  typeof u === "object" && u !== null && !Array.isArray(u) ? (u as Rec) : undefined
const asString = (u: unknown): string | undefined => (typeof u === "string" && u !== "" ? u : undefined)
const asNumber = (u: unknown): number | undefined => (typeof u === "number" && Number.isFinite(u) ? u : undefined)

/** HTTP status Anthropic gives each error type (for `Failed.status`). */
const errorStatus: Readonly<Record<string, number>> = {
  invalid_request_error: 400,
  authentication_error: 401,
  billing_error: 402,
  permission_error: 403,
  not_found_error: 404,
  request_too_large: 413,
  rate_limit_error: 429,
  api_error: 500,
  timeout_error: 504,
  overloaded_error: 529
}

/** Error types that the same request will hit again: rerunning it as-is does not help. */
const permanentErrorTypes: ReadonlySet<string> = new Set([
  "invalid_request_error",
  "authentication_error",
  "billing_error",
  "permission_error",
  "not_found_error",
  "request_too_large"
])

/**
 * Error type of an `errored` result -> failure class: server-side trouble (`api_error`,
 * `overloaded_error`, `rate_limit_error`, `timeout_error`, and anything unknown) is
 * retryable; a request Anthropic refuses (`invalid_request_error`, auth, billing, not found)
 * is permanent.
 */
export const failureClassOfErrorType = (type: string): "retryable" | "permanent" =>
  permanentErrorTypes.has(type) ? "permanent" : "retryable"

const failed = (
  customId: string,
  failure: FailureClass,
  code: string,
  message: string,
  status: number | null,
  raw: unknown
): BatchResult => ({ _tag: "Failed", customId, failure, code, message, status, raw })

/**
 * Token usage. Anthropic's `input_tokens` excludes cache reads and cache writes; the neutral
 * `inputTokens` includes them (as OpenAI's `prompt_tokens` does), with the cache reads also
 * counted in `cachedInputTokens`. Cache writes are counted as plain input.
 */
export const usageOf = (message: Rec) => {
  const usage = asRecord(message["usage"])
  if (usage === undefined) return null
  const cacheRead = asNumber(usage["cache_read_input_tokens"]) ?? 0
  const cacheWrite = asNumber(usage["cache_creation_input_tokens"]) ?? 0
  return {
    inputTokens: (asNumber(usage["input_tokens"]) ?? 0) + cacheRead + cacheWrite,
    outputTokens: asNumber(usage["output_tokens"]) ?? 0,
    cachedInputTokens: cacheRead
  }
}

/**
 * A succeeded result. The answer is the `input` of the (first) `tool_use` block when there is
 * one — the forced output tool — serialised as JSON text, so the stage's Schema decoder works
 * unchanged; otherwise the concatenated text blocks.
 */
const succeeded = (customId: string, message: Rec | undefined, raw: unknown): BatchResult => {
  if (message === undefined) return failed(customId, "retryable", "empty_body", "succeeded result has no message", 200, raw)
  const content = Array.isArray(message["content"]) ? (message["content"] as ReadonlyArray<unknown>) : []
  const finishReason = asString(message["stop_reason"]) ?? null
  if (finishReason === "refusal") {
    const explanation = asString(asRecord(message["stop_details"])?.["explanation"])
    return failed(customId, "permanent", "refusal", explanation ?? "the model refused to answer", 200, raw)
  }
  let text: string | undefined
  let sawText = false
  let joined = ""
  for (const item of content) {
    const block = asRecord(item)
    if (block === undefined) continue
    if (block["type"] === "tool_use") {
      text = JSON.stringify(block["input"] ?? null)
      break
    }
    if (block["type"] === "text" && typeof block["text"] === "string") {
      sawText = true
      joined += block["text"]
    }
  }
  if (text === undefined && sawText) text = joined
  if (text === undefined) {
    return failed(
      customId,
      "parse",
      "no_content",
      `the message has no text or tool_use block (stop_reason: ${finishReason ?? "none"})`,
      200,
      raw
    )
  }
  return { _tag: "Succeeded", customId, text, finishReason, usage: usageOf(message), raw }
}

/** Classifies one parsed result line (which has a `custom_id`). */
export const classifyResult = (line: Rec & { readonly custom_id: string }): BatchResult => {
  const customId = line.custom_id
  const result = asRecord(line["result"])
  const type = asString(result?.["type"])
  switch (type) {
    case "succeeded":
      return succeeded(customId, asRecord(result?.["message"]), line)
    case "errored": {
      // `error` is an ErrorResponse `{type: "error", error: {type, message}, request_id}`;
      // tolerate a gateway that puts `{type, message}` there directly.
      const outer = asRecord(result?.["error"])
      const inner = asRecord(outer?.["error"]) ?? outer
      const errorType = asString(inner?.["type"]) ?? "api_error"
      const message = asString(inner?.["message"]) ?? errorType
      return failed(customId, failureClassOfErrorType(errorType), errorType, message, errorStatus[errorType] ?? null, line)
    }
    case "canceled":
      return failed(customId, "cancelled", "canceled", "the batch was canceled before this request ran", null, line)
    case "expired":
      return failed(customId, "expired", "expired", "the batch expired before this request ran", null, line)
    default:
      return failed(
        customId,
        "retryable",
        "unknown_result",
        `unknown result type ${JSON.stringify(type ?? null)}`,
        null,
        line
      )
  }
}

/** Parses one JSONL result line; `Left` says why it is unusable (not JSON, no custom_id). */
export const parseResultLine = (text: string): Either.Either<BatchResult, string> => {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return Either.left(`not JSON: ${truncate(text, 80)}`)
  }
  const record = asRecord(parsed)
  if (record === undefined) return Either.left("not a JSON object")
  const customId = record["custom_id"]
  if (typeof customId !== "string" || customId === "") return Either.left("no custom_id")
  return Either.right(classifyResult(record as Rec & { custom_id: string }))
}

// -----------------------------------------------------------------------------------------
// Shard files -> request bodies
// -----------------------------------------------------------------------------------------

const NEWLINE = 10
const CARRIAGE_RETURN = 13
const BODY_PREFIX = Buffer.from('{"requests":[')
const BODY_SUFFIX = Buffer.from("]}")
const COMMA = Buffer.from(",")

const isBlankLine = (line: Buffer): boolean => {
  for (let i = 0; i < line.length; i++) {
    const b = line[i]
    if (b !== 32 && b !== 9 && b !== 13 && b !== 10) return false
  }
  return true
}

/**
 * The create body `{"requests":[line,line,…]}` as chunks read from a shard file (one request
 * per line; blank lines skipped, "\r\n" handled). `stats.lines` counts the requests.
 */
export async function* requestBody(path: string, stats: { lines: number } = { lines: 0 }): AsyncGenerator<Uint8Array> {
  yield BODY_PREFIX
  let pending: Array<Buffer> = []
  const emit = (line: Buffer, out: Array<Buffer>) => {
    const end = line.length > 0 && line[line.length - 1] === CARRIAGE_RETURN ? line.length - 1 : line.length
    const trimmed = end === line.length ? line : line.subarray(0, end)
    if (isBlankLine(trimmed)) return
    if (stats.lines > 0) out.push(COMMA)
    stats.lines++
    out.push(trimmed)
  }
  for await (const chunk of NodeFs.createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    const out: Array<Buffer> = []
    let start = 0
    let newline = chunk.indexOf(NEWLINE, start)
    while (newline !== -1) {
      const piece = chunk.subarray(start, newline)
      emit(pending.length > 0 ? Buffer.concat([...pending, piece]) : piece, out)
      pending = []
      start = newline + 1
      newline = chunk.indexOf(NEWLINE, start)
    }
    if (start < chunk.length) pending.push(chunk.subarray(start))
    if (out.length > 0) yield Buffer.concat(out)
  }
  if (pending.length > 0) {
    const out: Array<Buffer> = []
    emit(Buffer.concat(pending), out)
    if (out.length > 0) yield Buffer.concat(out)
  }
  yield BODY_SUFFIX
}

/** Size in bytes and request count of the body `requestBody(path)` produces. */
export const measureRequestBody = async (path: string): Promise<{ readonly bytes: number; readonly requests: number }> => {
  const stats = { lines: 0 }
  let bytes = 0
  for await (const chunk of requestBody(path, stats)) bytes += chunk.length
  return { bytes, requests: stats.lines }
}

const customIdPrefix = /^\s*\{\s*"custom_id"\s*:\s*"([A-Za-z0-9_-]{1,64})"/

/** The custom_ids of a shard file, in order. */
export const shardCustomIds = async (path: string): Promise<Array<string>> => {
  const ids: Array<string> = []
  const lines = NodeReadline.createInterface({ input: NodeFs.createReadStream(path), crlfDelay: Infinity })
  for await (const line of lines) {
    if (line.trim() === "") continue
    const fast = customIdPrefix.exec(line)
    if (fast !== null) {
      ids.push(fast[1]!)
      continue
    }
    try {
      const id = asRecord(JSON.parse(line))?.["custom_id"]
      if (typeof id === "string") ids.push(id)
    } catch {
      // not a request line: it identifies nothing
    }
  }
  return ids
}

// -----------------------------------------------------------------------------------------
// Orphan adoption without metadata
// -----------------------------------------------------------------------------------------
//
// The runner adopts the batch of a create whose answer it never journaled (a crash, a lost
// response) by listing batches and matching `metadata.sluice_run/shard/submission`. Message
// batches carry no metadata, and a listed batch shows only its id, `created_at`,
// `processing_status` and `request_counts` (whose five members always sum to the number of
// requests). The custom_ids — `<stage>-<key>-<request hash>`, unique to the rows of one shard
// — become visible only in the results, once the batch has ended. So:
//
// - a batch *can* hold a shard when it was created after the shard's submit intent (less
//   clock skew), is not journaled for any shard of the run, and holds exactly as many
//   requests ("undecided" while it runs);
// - it *does* hold the shard once it has ended and its results carry the shard's custom_ids
//   ("match"); one foreign custom_id refutes it ("mismatch").
//
// `findOrphan(shard)` below does that search (`matchShard` judges one batch). The remaining
// window: from the lost create until the orphan ends (up to 24 h), an orphan can be proven
// only if it is the *only* unjournaled batch of that request count created since the intent
// (less skew). Two or more such batches — sibling shards of the same size whose creates were
// in flight together at the crash (the planner packs shards to equal sizes), or another
// process in the same workspace — stay `undecided` until they end.
//
// What the runner needs (Submitter.ts matches metadata only, so today it never adopts an
// Anthropic batch and creates the shard again, paying twice):
// 1. An optional port member, `findOrphan?: (shard: ShardIdentity) => Effect<OrphanSearch>`
//    (with `ShardIdentity` and `OrphanSearch` moved to BatchProvider.ts), used by
//    `Submitter.findOrphan` when `capabilities.metadata` is false: pass the shard file,
//    `intentAt`, and as `exclude` every batch id the run's journal names (all shards, all
//    submissions — a resubmission reuses the custom_ids of the batch it retries, so that
//    batch would "match" too).
// 2. `adopt` set: journal `Created {adopted: true}` as today.
// 3. `undecided` non-empty: do not create. Adopt the single candidate tentatively when exactly
//    one remains (journal it as adopted but unverified), poll it as usual, and at collection
//    check that its results' custom_ids are the shard's (the Collector already reads them);
//    on a foreign id, journal the adoption as refuted and search again. With several
//    candidates, wait for them to end (they are then proven or refuted), bounded by a
//    setting after which the shard is created again, knowingly risking a duplicate.
// 4. For providers without metadata, run at most one `create` at a time per provider: a crash
//    then leaves at most one orphan per run, which removes the sibling-shard ambiguity; what
//    remains is another process creating a batch of the same size in the same window.

/**
 * - `match`: the batch has ended and every result read carries one of the shard's custom_ids
 *   (a custom_id is `<stage>-<key>-<request hash>`, so another shard's results cannot pass);
 * - `mismatch`: created too early, another request count, or a foreign custom_id;
 * - `undecided`: plausible (time and count fit) but still in progress, so its custom_ids
 *   cannot be seen yet.
 */
export type OrphanVerdict = "match" | "mismatch" | "undecided"

/** Results read to prove a match (all of them for smaller batches). */
const verifyLines = 2_000

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
   * for the caller to wait on (see "Orphan adoption without metadata" above).
   */
  readonly findOrphan: (shard: ShardIdentity) => Effect.Effect<OrphanSearch, ProviderError>
}

const clamp = (n: number | undefined, min: number, max: number, fallback: number): number =>
  n === undefined || !Number.isFinite(n) ? fallback : Math.min(max, Math.max(min, Math.floor(n)))

const quotaCodes: ReadonlySet<string> = new Set(["billing_error"])

/** Builds the provider over a given `HttpClient`. */
export const makeWithClient = (client: HttpClient.HttpClient, config: AnthropicConfig): AnthropicBatchProvider => {
  const name = config.name ?? "anthropic"
  const requestTimeout = config.requestTimeout ?? Duration.seconds(60)
  const idleTimeout = config.downloadIdleTimeout ?? Duration.seconds(60)
  const uploadRate = config.minUploadBytesPerSecond ?? 256 * 1024
  const listPageSize = clamp(config.listPageSize, 1, 1000, 100)
  const maxTokens = clamp(config.defaultMaxTokens, 1, Number.MAX_SAFE_INTEGER, defaultMaxTokens)
  const batchesPath = "/" + (config.batchesPath ?? defaultBatchesPath).replace(/^\/+/, "").replace(/\/+$/, "")
  const baseUrl = config.baseUrl.replace(/\/+$/, "")
  const auth = config.auth ?? "x-api-key"

  const headers: Record<string, string> = {
    accept: "application/json",
    "user-agent": "sluice",
    "anthropic-version": config.version ?? (auth === "bearer" ? defaultBearerVersion : defaultVersion)
  }
  if (config.betas !== undefined && config.betas.length > 0) headers["anthropic-beta"] = config.betas.join(",")
  Object.assign(headers, config.headers ?? {})

  const secretHeaders: Record<string, Redacted.Redacted<string>> = { ...config.secretHeaders }
  if (auth === "bearer") secretHeaders["authorization"] = Redacted.make(`Bearer ${Redacted.value(config.apiKey)}`)
  else secretHeaders["x-api-key"] = config.apiKey

  const settings = {
    provider: name,
    headers,
    secretHeaders,
    secrets: [config.apiKey],
    requestTimeout,
    retry: retryOptions(config.retry),
    quotaCodes
  }
  // Anthropic's base URL stops before the version its paths start with: `…/v1` doubles it.
  const doubledVersion = /\/v1\/?$/.test(baseUrl) && batchesPath.startsWith("/v1/")
  const notFoundHint = doubledVersion
    ? `the base URL ${displayUrl(baseUrl)} ends in /v1, which Anthropic's paths start with: did you mean ${displayUrl(baseUrl).replace(/\/v1$/, "")}?`
    : undefined
  const http: ProviderHttp = makeProviderHttp(client, { ...settings, baseUrl, notFoundHint })

  // Same origin, other path prefix: `results_url` may lie outside `baseUrl` (e.g. when the
  // base URL carries a gateway prefix the API does not echo). Built on first use.
  let originHttp: ProviderHttp | undefined
  // An unparsable base URL fails every call with a clear "invalid URL" error (http.ts), not here.
  const base = URL.canParse(baseUrl) ? new URL(baseUrl) : undefined
  const basePath = base?.pathname.replace(/\/+$/, "") ?? ""
  const atOrigin = (origin: string) => (originHttp ??= makeProviderHttp(client, { ...settings, baseUrl: origin }))

  const decodeWith = <A>(operation: string, decode: (u: unknown) => Either.Either<A, string>) => (u: unknown) =>
    Either.match(decode(u), {
      onLeft: (reason) =>
        Effect.fail(http.error({ reason: "Decode", operation, description: truncate(`unexpected response: ${reason}`) })),
      onRight: Effect.succeed
    })

  const batchInfo = (operation: string) => decodeWith(operation, decodeBatchInfo)
  const enc = encodeURIComponent
  const batchPath = (id: string) => `${batchesPath}/${enc(id)}`

  // --- staging: nothing to upload ---

  /** Requests are sent inline by `create`: the shard file itself is the staged input. */
  const stage = (path: string, _name: string): Effect.Effect<StagedInput, ProviderError> =>
    Effect.succeed({ inputRef: path })

  /** Nothing is ever staged at the provider. */
  const findStaged = (_name: string): Effect.Effect<Option.Option<StagedInput>, ProviderError> => Effect.succeedNone

  /** The staged input is the runner's own shard file: never deleted here. */
  const deleteStaged = (_inputRef: string): Effect.Effect<void, ProviderError> => Effect.void

  // --- batches ---

  const create = (input: CreateBatch): Effect.Effect<BatchInfo, ProviderError> => {
    const operation = `POST ${batchesPath}`
    const path = input.path !== "" ? input.path : input.inputRef
    const measured = Effect.tryPromise({
      try: () => measureRequestBody(path),
      catch: (cause) =>
        http.error({
          reason: "Rejected",
          operation,
          description: `cannot read shard file ${path}: ${cause instanceof Error ? cause.message : String(cause)}`
        })
    })
    return Effect.gen(function*() {
      const { bytes, requests } = yield* measured
      if (requests === 0) {
        return yield* Effect.fail(http.error({ reason: "Rejected", operation, description: `shard file ${path} holds no requests` }))
      }
      if (requests > limits.maxRequests) {
        return yield* Effect.fail(http.error({
          reason: "Rejected",
          operation,
          description: `shard file ${path} holds ${requests} requests; a message batch takes at most ${limits.maxRequests}`
        }))
      }
      const timeout = Duration.sum(requestTimeout, Duration.millis(Math.ceil((bytes / uploadRate) * 1000)))
      const body = HttpBody.stream(
        Stream.fromAsyncIterable(requestBody(path), (cause) => cause),
        "application/json",
        bytes
      )
      // Not idempotent: never retried here. A Transport/Timeout/Server failure is `ambiguous`
      // and the caller reconciles (see `findOrphan`). The spec is built lazily, once.
      const json = yield* http.json({ method: "POST", path: batchesPath, body }, { retry: false, timeout })
      return yield* batchInfo(operation)(json)
    })
  }

  const retrieve = (batchId: string): Effect.Effect<BatchInfo, ProviderError> => {
    const path = batchPath(batchId)
    return http.json({ method: "GET", path, headers: { "cache-control": "no-cache" } }, { retry: true }).pipe(
      Effect.flatMap(batchInfo(`GET ${path}`))
    )
  }

  const cancel = (batchId: string): Effect.Effect<BatchInfo, ProviderError> => {
    const path = `${batchPath(batchId)}/cancel`
    return http.json({ method: "POST", path }, { retry: true }).pipe(Effect.flatMap(batchInfo(`POST ${path}`)))
  }

  const deleteBatch = (batchId: string): Effect.Effect<void, ProviderError> =>
    http.json({ method: "DELETE", path: batchPath(batchId) }, { retry: true }).pipe(
      Effect.asVoid,
      // Already gone (or deleted by an earlier attempt whose answer was lost): done.
      Effect.catchIf((e) => e.reason === "NotFound", () => Effect.void)
    )

  const decodePage = decodeWith(`GET ${batchesPath}`, (u) =>
    Either.flatMap(Either.mapLeft(decodeWirePage(u), (e) => e.message), (page) =>
      Either.map(
        Either.all(page.data.map(decodeBatchInfo)),
        (batches) => ({ batches, hasMore: page.has_more === true, lastId: page.last_id ?? null })
      )))

  /** Newest first; `after_id` = the previous page's `last_id` while `has_more`. */
  const list: Stream.Stream<BatchInfo, ProviderError> = Stream.paginateChunkEffect(
    undefined as string | undefined,
    (after) =>
      http.json({
        method: "GET",
        path: batchesPath,
        headers: { "cache-control": "no-cache" },
        urlParams: { limit: String(listPageSize), ...(after === undefined ? {} : { after_id: after }) }
      }, { retry: true }).pipe(
        Effect.flatMap(decodePage),
        Effect.map((page) => {
          const next = page.lastId ?? page.batches[page.batches.length - 1]?.id
          return [
            Chunk.unsafeFromArray(page.batches),
            page.hasMore && next !== undefined && next !== after ? Option.some(next) : Option.none()
          ] as const
        })
      )
  )

  // --- results ---

  /**
   * Where the results of a batch are read. `results_url` is absolute; it is fetched with our
   * credentials only at the configured origin. A `results_url` at another origin (a gateway
   * passing the upstream's URL through) never gets our key: the documented path
   * `{batchesPath}/{id}/results` below our base URL is read instead, as it is when the batch
   * info has no `results_url` at all.
   */
  const resultsRequest = (batch: BatchInfo): { readonly http: ProviderHttp; readonly spec: RequestSpec } => {
    const fallback = { http, spec: { method: "GET" as const, path: `${batchPath(batch.id)}/results` } }
    if (batch.outputFileId === null) return fallback
    let url: URL
    try {
      url = new URL(batch.outputFileId, `${baseUrl}/`)
    } catch {
      return fallback
    }
    if (base === undefined || url.origin !== base.origin) return fallback
    const urlParams = Object.fromEntries(url.searchParams.entries())
    const params = Object.keys(urlParams).length > 0 ? { urlParams } : {}
    if (basePath !== "" && (url.pathname === basePath || url.pathname.startsWith(`${basePath}/`))) {
      return { http, spec: { method: "GET", path: url.pathname.slice(basePath.length), ...params } }
    }
    return { http: basePath === "" ? http : atOrigin(base.origin), spec: { method: "GET", path: url.pathname, ...params } }
  }

  /**
   * Every result line of an ended batch, streamed and classified. A line that is not JSON or
   * has no `custom_id` cannot be attributed: it is logged (batch id, line number) and skipped;
   * the runner finds the request *missing* by diffing against the shard manifest.
   */
  const results = (batch: BatchInfo): Stream.Stream<BatchResult, ProviderError> =>
    Stream.suspend(() => {
      const { http: via, spec } = resultsRequest(batch)
      let lineNo = 0
      return via.stream({ ...spec, headers: { accept: "application/binary" } }, { retry: true, idleTimeout }).pipe(
        Stream.decodeText(),
        Stream.splitLines,
        Stream.mapChunksEffect((lines) => {
          const out: Array<BatchResult> = []
          const warnings: Array<string> = []
          for (const line of lines) {
            lineNo++
            if (line.trim() === "") continue
            const parsed = parseResultLine(line)
            if (Either.isRight(parsed)) out.push(parsed.right)
            else warnings.push(`${name}: skipping unusable result line ${lineNo} of batch ${batch.id}: ${parsed.left}`)
          }
          const chunk = Chunk.unsafeFromArray(out)
          return warnings.length === 0 ?
            Effect.succeed(chunk) :
            Effect.as(Effect.forEach(warnings, (w) => Effect.logWarning(w), { discard: true }), chunk)
        })
      )
    })

  // --- orphans ---

  const readShardIds = (path: string) =>
    Effect.tryPromise({
      try: () => shardCustomIds(path).then((ids) => new Set(ids)),
      catch: (cause) =>
        http.error({
          reason: "Rejected",
          operation: "findOrphan",
          description: `cannot read shard file ${path}: ${cause instanceof Error ? cause.message : String(cause)}`
        })
    })

  const matchShard = (
    batch: BatchInfo,
    shard: ShardIdentity,
    customIds?: ReadonlySet<string>
  ): Effect.Effect<OrphanVerdict, ProviderError> =>
    Effect.gen(function*() {
      if (shard.exclude?.has(batch.id) === true) return "mismatch" as const
      if (batch.createdAt < shard.intentAt - (shard.skewSeconds ?? 600)) return "mismatch" as const
      const ids = customIds ?? (yield* readShardIds(shard.path))
      if (batch.counts.total !== ids.size) return "mismatch" as const
      if (!isTerminal(batch.status) || batch.outputFileId === null) return "undecided" as const
      const seen = yield* results(batch).pipe(
        Stream.take(verifyLines),
        Stream.runFoldWhile(
          { read: 0, foreign: false },
          (s) => !s.foreign,
          (s, r) => ({ read: s.read + 1, foreign: !ids.has(r.customId) })
        )
      )
      if (seen.foreign) return "mismatch" as const
      return seen.read > 0 ? ("match" as const) : ("undecided" as const)
    })

  const findOrphan = (shard: ShardIdentity): Effect.Effect<OrphanSearch, ProviderError> =>
    Effect.gen(function*() {
      const ids = yield* readShardIds(shard.path)
      const since = shard.intentAt - (shard.skewSeconds ?? 600)
      const candidates = yield* list.pipe(
        Stream.takeWhile((b) => b.createdAt >= since),
        Stream.filter((b) => shard.exclude?.has(b.id) !== true && b.counts.total === ids.size),
        Stream.runCollect
      )
      const matches: Array<BatchInfo> = []
      const undecided: Array<BatchInfo> = []
      for (const batch of candidates) {
        const verdict = yield* matchShard(batch, shard, ids)
        if (verdict === "match") matches.push(batch)
        else if (verdict === "undecided") undecided.push(batch)
      }
      // Two proven matches mean the same submission was created twice (both after the intent,
      // neither journaled): both are paid for; adopt the newest (listed first).
      return { adopt: matches.length > 0 ? Option.some(matches[0]!) : Option.none(), undecided }
    })

  return {
    name,
    origin: baseUrl,
    identity: ProviderIdentity.make({ family: "anthropic", provider: name, baseUrl, batchesPath }),
    limits,
    capabilities,
    encode: encodeWith(maxTokens),
    stage,
    findStaged,
    create,
    retrieve,
    list,
    cancel,
    results,
    deleteStaged,
    deleteBatch,
    matchShard,
    findOrphan
  }
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

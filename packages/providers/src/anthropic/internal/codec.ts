/**
 * The Anthropic Message Batches wire codec: pure functions, no HTTP. A request as a request
 * line `{custom_id, params}` (`encodeWith`), the MessageBatch and list objects as Schemas and
 * their neutral `BatchInfo` (status normalised, raw kept), and result lines as classified
 * `BatchResult`s. The calls are in `lifecycle.ts`; the shard file as a create body in
 * `shardFile.ts`.
 *
 * Wire facts: `../shared/reference/providers.md` section 3.
 */
import type { BatchRequest, BatchResult, ContentPart, FailureClass } from "@sluice/core"
import { Prompt } from "@sluice/core"
import { Either, Schema } from "effect"
import type { BatchInfo, BatchStatus } from "../../BatchProvider.js"
import { truncate } from "../../internal/http.js"
import { withRawText } from "../../internal/lines.js"
import { count, lookup } from "../../internal/wire.js"

/** Anthropic requires `max_tokens`; used when a request's params carry none. */
export const defaultMaxTokens = 1024

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
    const name = lookup(renamedParams, key) ?? key
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
      if (isPresent(wire.cancel_initiated_at) || count(counts?.canceled) > 0) return "cancelled"
      if (count(counts?.expired) > 0) return "expired"
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
  const processing = count(c?.processing)
  const succeeded = count(c?.succeeded)
  const errored = count(c?.errored)
  const canceled = count(c?.canceled)
  const expired = count(c?.expired)
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

/** A page of `GET {batchesPath}`, decoded; `Left` holds a short reason. */
export const decodeBatchPage = (u: unknown) =>
  Either.flatMap(Either.mapLeft(decodeWirePage(u), (e) => e.message), (page) =>
    Either.map(
      Either.all(page.data.map(decodeBatchInfo)),
      (batches) => ({ batches, hasMore: page.has_more === true, lastId: page.last_id ?? null })
    ))

// -----------------------------------------------------------------------------------------
// Result lines -> neutral BatchResult
// -----------------------------------------------------------------------------------------

type Rec = Record<string, unknown>
export const asRecord = (u: unknown): Rec | undefined =>
  typeof u === "object" && u !== null && !Array.isArray(u) ? (u as Rec) : undefined
const asString = (u: unknown): string | undefined => (typeof u === "string" && u !== "" ? u : undefined)

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
  const cacheRead = count(usage["cache_read_input_tokens"])
  const cacheWrite = count(usage["cache_creation_input_tokens"])
  return {
    inputTokens: count(count(usage["input_tokens"]) + cacheRead + cacheWrite),
    outputTokens: count(usage["output_tokens"]),
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
      return failed(customId, failureClassOfErrorType(errorType), errorType, message, lookup(errorStatus, errorType) ?? null, line)
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
  return Either.right(withRawText(classifyResult(record as Rec & { custom_id: string }), parsed, text))
}

/** Error types (of an HTTP error body) that mean "out of credit". */
export const quotaCodes: ReadonlySet<string> = new Set(["billing_error"])

// -----------------------------------------------------------------------------------------
// Real-time: a line's request, and the answer as the batch result line would carry it
// -----------------------------------------------------------------------------------------

/** The Messages request (`params`) of an input line, as JSON text; `Left` says why it cannot be sent. */
export const onlineParams = (line: string): Either.Either<string, string> => {
  let parsed: unknown
  try {
    parsed = JSON.parse(line)
  } catch {
    return Either.left("the shard line is not JSON")
  }
  const params = asRecord(asRecord(parsed)?.["params"])
  return params === undefined ? Either.left("the shard line has no params") : Either.right(JSON.stringify(params))
}

/**
 * A real-time answer of `POST /v1/messages` (status and parsed body) classified as the batch
 * result line wrapping it would be: a message as `{result: {type: "succeeded", message}}`,
 * an error body `{type: "error", error: {type, message}}` as `{result: {type: "errored", error}}`.
 */
export const onlineResult = (customId: string, status: number, body: unknown): BatchResult =>
  classifyResult(
    status >= 200 && status < 300
      ? { custom_id: customId, result: { type: "succeeded", message: body } }
      : { custom_id: customId, result: { type: "errored", error: asRecord(body)?.["error"] !== undefined ? body : { type: "error", error: { type: statusErrorType(status), message: `HTTP ${status}` } } } }
  )

/** The error type of a status whose body names none. */
const statusErrorType = (status: number): string =>
  status === 404 ? "not_found_error" : status === 413 ? "request_too_large" : status >= 500 ? "api_error" : "invalid_request_error"

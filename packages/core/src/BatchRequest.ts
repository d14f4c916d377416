/**
 * The neutral request and result model: what the runner hands to a provider and what a
 * provider hands back, independent of any wire format.
 */
import { Schema } from "effect"
import { Message } from "./Prompt.js"

/**
 * The API a request targets. One endpoint per shard. `responses` is a chat request sent to
 * OpenAI's Responses API (`/v1/responses`) instead of chat completions.
 */
export const Endpoint = Schema.Literal("chat", "embeddings", "responses")
export type Endpoint = typeof Endpoint.Type

/** A JSON Schema that the response must conform to (structured output). */
export const OutputFormat = Schema.Struct({
  name: Schema.String,
  schema: Schema.Record({ key: Schema.String, value: Schema.Unknown })
})
export type OutputFormat = typeof OutputFormat.Type

/** Generation parameters passed through to the provider as-is (temperature, max_tokens …). */
export const Params = Schema.Record({ key: Schema.String, value: Schema.Unknown })
export type Params = typeof Params.Type

export const ChatRequest = Schema.TaggedStruct("chat", {
  model: Schema.String,
  messages: Schema.Array(Message),
  params: Params,
  output: Schema.optional(OutputFormat),
  /** Sent to OpenAI's Responses API (`/v1/responses`) rather than chat completions. */
  api: Schema.optional(Schema.Literal("responses"))
})
export type ChatRequest = typeof ChatRequest.Type

export const EmbeddingsRequest = Schema.TaggedStruct("embeddings", {
  model: Schema.String,
  input: Schema.String,
  params: Params
})
export type EmbeddingsRequest = typeof EmbeddingsRequest.Type

export const BatchRequest = Schema.Union(ChatRequest, EmbeddingsRequest)
export type BatchRequest = typeof BatchRequest.Type

/**
 * Why a row failed. `retryable`, `expired` and `missing` are rescheduled automatically;
 * `cancelled` and `parse` on request; `permanent` and `sink_rejected` (the answer was fine,
 * but the pipeline's sink cannot store the row: see `SinkWriter.refuse`) only when asked for
 * explicitly.
 */
export const FailureClass = Schema.Literal("retryable", "permanent", "expired", "cancelled", "missing", "parse", "sink_rejected")
export type FailureClass = typeof FailureClass.Type

export const Usage = Schema.Struct({
  inputTokens: Schema.Number,
  outputTokens: Schema.Number,
  cachedInputTokens: Schema.Number
})
export type Usage = typeof Usage.Type

export const Succeeded = Schema.TaggedStruct("Succeeded", {
  customId: Schema.String,
  /** The model's answer: message text for chat, the vector (as JSON) for embeddings. */
  text: Schema.String,
  finishReason: Schema.NullOr(Schema.String),
  usage: Schema.NullOr(Usage),
  /** The provider's response body, kept so that re-parsing needs no API call. */
  raw: Schema.Unknown,
  /**
   * The JSON text `raw` was parsed from, when a provider's result line is `raw` whole: the
   * runner writes it into results.jsonl and the cache as it came, instead of serialising
   * `raw` again. The same JSON as `raw`, not necessarily the same bytes (spacing, escapes).
   * Absent when `raw` was built rather than received; never stored as a field of its own.
   */
  rawText: Schema.optional(Schema.String)
})
export type Succeeded = typeof Succeeded.Type

export const Failed = Schema.TaggedStruct("Failed", {
  customId: Schema.String,
  failure: FailureClass,
  code: Schema.String,
  message: Schema.String,
  status: Schema.NullOr(Schema.Number),
  raw: Schema.Unknown,
  /** The JSON text `raw` was parsed from (see `Succeeded`). */
  rawText: Schema.optional(Schema.String)
})
export type Failed = typeof Failed.Type

/** One result line, as read from a provider's output or error file. */
export const BatchResult = Schema.Union(Succeeded, Failed)
export type BatchResult = typeof BatchResult.Type

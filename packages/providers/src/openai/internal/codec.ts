/**
 * The OpenAI Batch API's wire codec: pure functions, no HTTP. A request as an input line
 * (`encode`), the Batch, File and list objects as Schemas and their neutral `BatchInfo`
 * (status normalised, raw kept), result lines as classified `BatchResult`s, and the error
 * codes that mean "out of quota". The calls that move these over HTTP are in `lifecycle.ts`.
 *
 * Wire facts: `../shared/reference/providers.md` section 1.
 */
import type { BatchRequest, BatchResult, ContentPart, Endpoint, FailureClass, Message, OutputFormat, Params } from "@sluice/core"
import { Prompt } from "@sluice/core"
import { Either, Schema } from "effect"
import type { BatchInfo, BatchStatus, StoredFile } from "../../BatchProvider.js"
import { truncate } from "../../internal/http.js"
import { withRawText } from "../../internal/lines.js"
import { count, lookup } from "../../internal/wire.js"

// -----------------------------------------------------------------------------------------
// Encoding request lines (hot path: runs once per row, so plain objects + JSON.stringify)
// -----------------------------------------------------------------------------------------

export const endpointUrl = (endpoint: Endpoint): "/v1/chat/completions" | "/v1/embeddings" | "/v1/responses" =>
  endpoint === "chat" ? "/v1/chat/completions" : endpoint === "embeddings" ? "/v1/embeddings" : "/v1/responses"

const schemaNamePattern = /^[A-Za-z0-9_-]{1,64}$/
const schemaNames = new Map<string, string>()

/** OpenAI requires `json_schema.name` to match `^[a-zA-Z0-9_-]{1,64}$`; other names are sanitised. */
const schemaName = (name: string): string => {
  if (schemaNamePattern.test(name)) return name
  let cached = schemaNames.get(name)
  if (cached === undefined) {
    cached = name.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 64) || "output"
    if (schemaNames.size < 1000) schemaNames.set(name, cached)
  }
  return cached
}

/** A content part as a chat-completions part: `text`, or `image_url` (base64 data as a `data:` URL). */
const wirePart = (part: ContentPart): unknown =>
  part.type === "text"
    ? part
    : {
        type: "image_url",
        image_url: {
          url: part.source.type === "url" ? part.source.url : `data:${part.source.mediaType};base64,${part.source.data}`
        }
      }

/**
 * The messages' JSON. Text-only messages are serialised as they are (the bytes, and so the
 * lines, of text prompts never change); content parts become chat-completions parts. Images
 * are only allowed in user turns.
 */
const wireMessages = (messages: ReadonlyArray<Message>, customId: string): string => {
  if (messages.every((m) => typeof m.content === "string")) return JSON.stringify(messages)
  const problem = Prompt.problemOf(messages)
  if (problem !== undefined) throw new Error(`openai: ${problem} (custom_id ${customId})`)
  return JSON.stringify(messages.map((m) => (typeof m.content === "string" ? m : { ...m, content: m.content.map(wirePart) })))
}

/**
 * One input line: `{custom_id, method: "POST", url, body}`. For chat, `model` and `messages`
 * come first and cannot be overridden by `params`; structured output becomes
 * `response_format: {type: "json_schema", json_schema: {name, strict: true, schema}}`
 * (it wins over a `response_format` given in `params`). Content parts become
 * `[{type: "text", text}, {type: "image_url", image_url: {url}}]`, an image given as base64
 * data as a `data:<media type>;base64,<data>` URL.
 */
export const encode = (request: BatchRequest, customId: string): string => {
  if (request._tag === "chat" && request.api === "responses") return encodeResponses(request, customId)
  // Built as a string: the part after the row's own fields (params, response_format with its
  // JSON Schema) is the same for every row of a stage, so it is serialised once, not per row.
  // The bytes are exactly JSON.stringify({custom_id, method, url, body: {model, messages, ...}}).
  if (request._tag === "chat") {
    return `{"custom_id":${JSON.stringify(customId)},"method":"POST","url":"/v1/chat/completions","body":{"model":${JSON.stringify(request.model)},"messages":${wireMessages(request.messages, customId)}${chatTail(request.params, request.output)}}}`
  }
  return `{"custom_id":${JSON.stringify(customId)},"method":"POST","url":"/v1/embeddings","body":{"model":${JSON.stringify(request.model)},"input":${JSON.stringify(request.input)}${tailOf(request.params, ["model", "input"], undefined)}}}`
}

/** A content part as a Responses API input part: `input_text`, or `input_image` (base64 data as a `data:` URL). */
const responsesPart = (part: ContentPart): unknown =>
  part.type === "text"
    ? { type: "input_text", text: part.text }
    : {
        type: "input_image",
        image_url: part.source.type === "url" ? part.source.url : `data:${part.source.mediaType};base64,${part.source.data}`
      }

/** Chat-completions params the Responses API names otherwise, or does not take. */
const responsesParams: Readonly<Record<string, string | null>> = {
  max_tokens: "max_output_tokens",
  max_completion_tokens: "max_output_tokens",
  response_format: null
}

/**
 * One input line for the Responses API: `{custom_id, method: "POST", url: "/v1/responses",
 * body: {model, input, ...params, text: {format}}}`. Messages keep their roles (system turns
 * included); content parts become `input_text` / `input_image`; `max_tokens` becomes
 * `max_output_tokens`; structured output is `text: {format: {type: "json_schema", name,
 * strict: true, schema}}`.
 */
const encodeResponses = (request: Extract<BatchRequest, { _tag: "chat" }>, customId: string): string => {
  if (request.messages.some((m) => typeof m.content !== "string")) {
    const problem = Prompt.problemOf(request.messages)
    if (problem !== undefined) throw new Error(`openai: ${problem} (custom_id ${customId})`)
  }
  const body: Record<string, unknown> = {
    model: request.model,
    input: request.messages.map((m) => (typeof m.content === "string" ? m : { role: m.role, content: m.content.map(responsesPart) }))
  }
  for (const key in request.params) {
    if (key === "model" || key === "input") continue
    const renamed = Object.hasOwn(responsesParams, key) ? responsesParams[key] : key
    if (renamed !== null && renamed !== undefined) body[renamed] = request.params[key]
  }
  if (request.output !== undefined) {
    const given = typeof body["text"] === "object" && body["text"] !== null ? (body["text"] as Record<string, unknown>) : {}
    body["text"] = { ...given, format: { type: "json_schema", name: schemaName(request.output.name), strict: true, schema: request.output.schema } }
  }
  return JSON.stringify({ custom_id: customId, method: "POST", url: "/v1/responses", body })
}

const NO_OUTPUT = {}
const tails = new WeakMap<object, WeakMap<object, string>>()

/** `,"key":value…` for the params (minus the row's own fields) and the response format. */
const tailOf = (params: Params, own: ReadonlyArray<string>, responseFormat: unknown): string => {
  const rest: Record<string, unknown> = {}
  for (const key in params) if (!own.includes(key)) rest[key] = params[key]
  if (responseFormat !== undefined) rest["response_format"] = responseFormat
  const json = JSON.stringify(rest)
  return json === "{}" ? "" : `,${json.slice(1, -1)}`
}

const chatTail = (params: Params, output: OutputFormat | undefined): string => {
  let byOutput = tails.get(params)
  if (byOutput === undefined) tails.set(params, (byOutput = new WeakMap()))
  const key = output ?? NO_OUTPUT
  let tail = byOutput.get(key)
  if (tail === undefined) {
    const format =
      output === undefined
        ? undefined
        : { type: "json_schema", json_schema: { name: schemaName(output.name), strict: true, schema: output.schema } }
    tail = tailOf(params, ["model", "messages"], format)
    byOutput.set(key, tail)
  }
  return tail
}

// -----------------------------------------------------------------------------------------
// Wire objects -> neutral BatchInfo (lenient: extra fields ignored, nullable fields null)
// -----------------------------------------------------------------------------------------

const Nullish = <S extends Schema.Schema.Any>(schema: S) => Schema.optional(Schema.NullOr(schema))

const WireBatchError = Schema.Struct({
  code: Nullish(Schema.String),
  message: Nullish(Schema.String),
  line: Nullish(Schema.Number)
})

export const WireBatch = Schema.Struct({
  id: Schema.String,
  status: Nullish(Schema.String),
  input_file_id: Nullish(Schema.String),
  output_file_id: Nullish(Schema.String),
  error_file_id: Nullish(Schema.String),
  // Unix seconds at OpenAI; some gateways (Azure) send ISO strings.
  created_at: Nullish(Schema.Union(Schema.Number, Schema.String)),
  request_counts: Nullish(
    Schema.Struct({
      total: Nullish(Schema.Number),
      completed: Nullish(Schema.Number),
      failed: Nullish(Schema.Number)
    })
  ),
  metadata: Nullish(Schema.Record({ key: Schema.String, value: Schema.Unknown })),
  errors: Nullish(Schema.Struct({ data: Nullish(Schema.Array(WireBatchError)) })),
  // Together: a failed job's reason as a plain string.
  error: Schema.optional(Schema.Unknown)
})
export type WireBatch = typeof WireBatch.Type

/**
 * Some compatible APIs wrap the created batch (Together: `{job: {...}, warning}`); the
 * batch itself is what counts.
 */
const unwrapJob = (u: unknown): unknown => {
  if (typeof u !== "object" || u === null || Array.isArray(u)) return u
  const record = u as Record<string, unknown>
  const job = record["job"]
  return record["id"] === undefined && typeof job === "object" && job !== null && !Array.isArray(job) ? job : u
}

/** A list page; a bare array (Together's batch list) is one complete page. */
const listPage = (u: unknown): unknown => (Array.isArray(u) ? { data: u, has_more: false } : u)

const WireList = Schema.Struct({
  data: Schema.Array(Schema.Unknown),
  has_more: Nullish(Schema.Boolean),
  last_id: Nullish(Schema.String)
})

const WireFile = Schema.Struct({
  id: Schema.String,
  filename: Nullish(Schema.String),
  purpose: Nullish(Schema.String),
  status: Nullish(Schema.String),
  bytes: Nullish(Schema.Number),
  created_at: Nullish(Schema.Union(Schema.Number, Schema.String))
})

const statusTable: Readonly<Record<string, BatchStatus>> = {
  validating: "validating",
  in_progress: "in_progress",
  inprogress: "in_progress",
  finalizing: "finalizing",
  completed: "completed",
  failed: "failed",
  expired: "expired",
  cancelling: "cancelling",
  canceling: "cancelling",
  cancelled: "cancelled",
  canceled: "cancelled"
}

/** Normalises a wire status; case and separators are ignored (Azure sends "InProgress"). */
export const normaliseStatus = (raw: string): BatchStatus => {
  const key = raw.trim().toLowerCase().replace(/[\s-]/g, "_")
  return lookup(statusTable, key) ?? lookup(statusTable, key.replace(/_/g, "")) ?? "unknown"
}

/** Empty-string file ids (Azure) mean "no file". */
const fileId = (id: string | null | undefined): string | null => (id === undefined || id === null || id === "" ? null : id)

const unixSeconds = (value: number | string | null | undefined): number => {
  if (typeof value === "number") return Number.isFinite(value) ? Math.floor(value) : 0
  if (typeof value === "string") {
    const n = Number(value)
    if (value.trim() !== "" && Number.isFinite(n)) return Math.floor(n)
    const ms = Date.parse(value)
    return Number.isNaN(ms) ? 0 : Math.floor(ms / 1000)
  }
  return 0
}

export const toBatchInfo = (wire: WireBatch): BatchInfo => {
  const rawStatus = wire.status ?? ""
  const metadata: Record<string, string> = {}
  for (const [k, v] of Object.entries(wire.metadata ?? {})) {
    if (typeof v === "string") metadata[k] = v
  }
  return {
    id: wire.id,
    status: normaliseStatus(rawStatus),
    rawStatus,
    counts: {
      total: count(wire.request_counts?.total),
      succeeded: count(wire.request_counts?.completed),
      failed: count(wire.request_counts?.failed)
    },
    inputRef: fileId(wire.input_file_id),
    outputFileId: fileId(wire.output_file_id),
    errorFileId: fileId(wire.error_file_id),
    metadata,
    createdAt: unixSeconds(wire.created_at),
    errors: wire.errors?.data !== undefined && wire.errors.data !== null ?
      wire.errors.data.map((e) => ({
        code: e.code ?? "unknown",
        message: e.message ?? "",
        line: e.line ?? null
      })) :
      typeof wire.error === "string" && wire.error !== "" ?
      [{ code: "batch_failed", message: wire.error, line: null }] :
      []
  }
}

const decodeWireBatch = Schema.decodeUnknownEither(WireBatch)
const decodeWireList = Schema.decodeUnknownEither(WireList)
const decodeWireFile = Schema.decodeUnknownEither(WireFile)

/** Decodes a wire Batch object; `Left` holds a short reason. */
export const decodeBatchInfo = (u: unknown): Either.Either<BatchInfo, string> =>
  Either.mapBoth(decodeWireBatch(unwrapJob(u)), { onLeft: (e) => e.message, onRight: toBatchInfo })

/** A page of `GET /batches`, decoded; `Left` holds a short reason. */
export const decodeBatchPage = (u: unknown) =>
  Either.flatMap(Either.mapLeft(decodeWireList(listPage(u)), (e) => e.message), (page) =>
    Either.map(
      Either.all(page.data.map(decodeBatchInfo)),
      (batches) => ({ batches, hasMore: page.has_more === true, lastId: page.last_id ?? null })
    ))

/** A page of `GET /files`, decoded; `Left` holds a short reason. */
export const decodeFilePage = (u: unknown) =>
  Either.flatMap(Either.mapLeft(decodeWireList(listPage(u)), (e) => e.message), (page) =>
    Either.map(
      Either.all(page.data.map((f) => Either.mapLeft(decodeWireFile(f), (e) => e.message))),
      (files) => ({ files, hasMore: page.has_more === true, lastId: page.last_id ?? null })
    ))

/** The neutral view of a listed file (see `ProviderStorage.files`). */
export const toStoredFile = (file: typeof WireFile.Type): StoredFile => ({
  id: file.id,
  name: file.filename ?? null,
  bytes: typeof file.bytes === "number" && Number.isFinite(file.bytes) ? file.bytes : null,
  createdAt: unixSeconds(file.created_at),
  purpose: file.purpose ?? null
})

/** A file object (the answer of an upload); `Left` holds a short reason. */
export const decodeFile = (u: unknown) => Either.mapLeft(decodeWireFile(u), (e) => e.message)

// -----------------------------------------------------------------------------------------
// Result lines -> neutral BatchResult
// -----------------------------------------------------------------------------------------

type Rec = Record<string, unknown>
const asRecord = (u: unknown): Rec | undefined =>
  typeof u === "object" && u !== null && !Array.isArray(u) ? (u as Rec) : undefined
const asString = (u: unknown): string | undefined => (typeof u === "string" && u !== "" ? u : undefined)
const asNumber = (u: unknown): number | undefined => (typeof u === "number" && Number.isFinite(u) ? u : undefined)

/** Codes in a top-level `error` of a result line that rerunning will not fix. */
const permanentLineCodes: ReadonlySet<string> = new Set([
  "invalid_request",
  "invalid_request_error",
  "invalid_json_line",
  "url_mismatch",
  "model_mismatch",
  "model_not_found",
  "duplicate_custom_id",
  "context_length_exceeded",
  "content_policy_violation",
  "content_filter",
  "invalid_prompt"
])

/** HTTP status of one request inside a batch -> failure class. */
export const failureClassOfStatus = (status: number): "retryable" | "permanent" =>
  status === 408 || status === 409 || status === 429 || status >= 500 ? "retryable" : "permanent"

/** Code of a top-level `error` (no HTTP response) -> failure class. */
export const failureClassOfCode = (code: string): FailureClass =>
  code === "batch_expired" ?
    "expired" :
    code === "batch_cancelled" || code === "batch_canceled" ?
    "cancelled" :
    permanentLineCodes.has(code) ?
    "permanent" :
    "retryable"

const failed = (
  customId: string,
  failure: FailureClass,
  code: string,
  message: string,
  status: number | null,
  raw: unknown
): BatchResult => ({ _tag: "Failed", customId, failure, code, message, status, raw })

const chatUsage = (body: Rec) => {
  const usage = asRecord(body["usage"])
  if (usage === undefined) return null
  return {
    inputTokens: count(usage["prompt_tokens"]),
    outputTokens: count(usage["completion_tokens"]),
    cachedInputTokens: count(asRecord(usage["prompt_tokens_details"])?.["cached_tokens"])
  }
}

const succeeded = (customId: string, status: number, body: Rec | undefined, raw: unknown): BatchResult => {
  if (body === undefined) return failed(customId, "retryable", "empty_body", "response has no body", status, raw)
  // Embeddings: {object: "list", data: [{embedding}], usage: {prompt_tokens}}
  if (Array.isArray(body["data"])) {
    const embedding = asRecord(body["data"][0])?.["embedding"]
    if (embedding === undefined) {
      return failed(customId, "parse", "no_embedding", "embeddings response has no data[0].embedding", status, raw)
    }
    const usage = asRecord(body["usage"])
    return {
      _tag: "Succeeded",
      customId,
      text: JSON.stringify(embedding),
      finishReason: null,
      usage: usage === undefined ? null : {
        inputTokens: count(usage["prompt_tokens"]),
        outputTokens: 0,
        cachedInputTokens: 0
      },
      raw
    }
  }
  // Responses API: {object: "response", output: [{type: "message", content: [{type: "output_text", text}]}]}
  if (Array.isArray(body["output"])) return responsesResult(customId, status, body, raw)
  // Chat completion: choices[0].message.content
  const choice = asRecord(Array.isArray(body["choices"]) ? body["choices"][0] : undefined)
  const message = asRecord(choice?.["message"])
  const finishReason = asString(choice?.["finish_reason"]) ?? null
  const content = message?.["content"]
  if (typeof content === "string") {
    return { _tag: "Succeeded", customId, text: content, finishReason, usage: chatUsage(body), raw }
  }
  const refusal = asString(message?.["refusal"])
  if (refusal !== undefined) return failed(customId, "permanent", "refusal", refusal, status, raw)
  if (finishReason === "content_filter") {
    return failed(customId, "permanent", "content_filter", "the answer was withheld by the content filter", status, raw)
  }
  return failed(
    customId,
    "parse",
    "no_content",
    `the response has no message content (finish_reason: ${finishReason ?? "none"})`,
    status,
    raw
  )
}

/**
 * A Responses API answer: the `output_text` parts of its `message` items, joined; a refusal
 * part fails the row; `incomplete` for `max_output_tokens` reads as finish reason `length`
 * (so repair asks again with more room).
 */
const responsesResult = (customId: string, status: number, body: Rec, raw: unknown): BatchResult => {
  let text = ""
  let sawText = false
  for (const item of body["output"] as ReadonlyArray<unknown>) {
    const record = asRecord(item)
    if (record?.["type"] !== "message" || !Array.isArray(record["content"])) continue
    for (const part of record["content"]) {
      const p = asRecord(part)
      if (p?.["type"] === "output_text" && typeof p["text"] === "string") {
        sawText = true
        text += p["text"]
      } else if (p?.["type"] === "refusal") {
        return failed(customId, "permanent", "refusal", asString(p["refusal"]) ?? "the model refused to answer", status, raw)
      }
    }
  }
  const reason = asString(asRecord(body["incomplete_details"])?.["reason"])
  const finishReason = body["status"] === "incomplete" ? (reason === "max_output_tokens" ? "length" : reason ?? "incomplete") : asString(body["status"]) ?? null
  if (!sawText) {
    if (reason === "content_filter") return failed(customId, "permanent", "content_filter", "the answer was withheld by the content filter", status, raw)
    return failed(customId, "parse", "no_content", `the response has no output text (status: ${asString(body["status"]) ?? "none"})`, status, raw)
  }
  const usage = asRecord(body["usage"])
  return {
    _tag: "Succeeded",
    customId,
    text,
    finishReason,
    usage: usage === undefined ? null : {
      inputTokens: count(usage["input_tokens"]),
      outputTokens: count(usage["output_tokens"]),
      cachedInputTokens: count(asRecord(usage["input_tokens_details"])?.["cached_tokens"])
    },
    raw
  }
}

/** Classifies one parsed output/error line (which has a `custom_id`). */
export const classifyLine = (line: Rec & { readonly custom_id: string }): BatchResult => {
  const customId = line.custom_id
  const response = asRecord(line["response"])
  const status = asNumber(response?.["status_code"])
  if (response !== undefined && status !== undefined) {
    const body = asRecord(response["body"])
    if (status >= 200 && status < 300) return succeeded(customId, status, body, line)
    // HTTP-level failures live in the error file with `error: null`: check status_code.
    const error = asRecord(body?.["error"])
    const code = asString(error?.["code"]) ?? asString(error?.["type"]) ?? `http_${status}`
    const message = asString(error?.["message"]) ?? `HTTP ${status}`
    return failed(customId, failureClassOfStatus(status), code, message, status, line)
  }
  const error = asRecord(line["error"])
  if (error !== undefined) {
    const code = asString(error["code"]) ?? "unknown_error"
    return failed(customId, failureClassOfCode(code), code, asString(error["message"]) ?? "", null, line)
  }
  return failed(customId, "retryable", "no_response", "the result line has neither a response nor an error", null, line)
}

/** Parses one JSONL line; `Left` says why it is unusable (not JSON, no custom_id). */
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
  return Either.right(withRawText(classifyLine(record as Rec & { custom_id: string }), parsed, text))
}

/** Error codes (of an HTTP error body) that mean "out of credit / quota". */
export const quotaCodes: ReadonlySet<string> = new Set([
  "insufficient_quota",
  "billing_hard_limit_reached",
  "token_limit_exceeded"
])

// -----------------------------------------------------------------------------------------
// Real-time: a line's request, and the answer as the batch output line would carry it
// -----------------------------------------------------------------------------------------

/** What a real-time call needs of an input line: its URL (`/v1/…`), body text and model. */
export interface OnlineLine {
  readonly url: string
  readonly body: string
  readonly model: string | undefined
}

/** Reads an input line for a real-time call; `Left` says why it cannot be sent. */
export const onlineLine = (line: string): Either.Either<OnlineLine, string> => {
  let parsed: unknown
  try {
    parsed = JSON.parse(line)
  } catch {
    return Either.left("the shard line is not JSON")
  }
  const record = asRecord(parsed)
  const url = asString(record?.["url"])
  const body = asRecord(record?.["body"])
  if (url === undefined || body === undefined) return Either.left("the shard line has no url or body")
  return Either.right({ url, body: JSON.stringify(body), model: asString(body["model"]) })
}

/**
 * A real-time answer (status and parsed body) classified as the batch output line
 * `{custom_id, response: {status_code, body}}` that wraps the same body would be.
 */
export const onlineResult = (customId: string, status: number, body: unknown): BatchResult =>
  classifyLine({ custom_id: customId, response: { status_code: status, body } })

/**
 * The Gemini batch mode wire codec: pure functions, no HTTP. A request as an input line
 * `{key, request}` (`encode`, with structured output as `responseJsonSchema`), the inline
 * create body built from a shard's lines, the Operation, File and list objects as Schemas and
 * their neutral `BatchInfo` (state normalised, raw kept; run, shard and submission read back
 * from the `displayName`), and result lines (a responses file, or inline responses) as
 * classified `BatchResult`s. The calls are in `lifecycle.ts`.
 *
 * Wire facts: `../shared/reference/providers.md` section 4.
 */
import type { BatchRequest, BatchResult, Content, FailureClass } from "@sluice/core"
import { GeminiDisplayName, Prompt } from "@sluice/core"
import { Either, Schema } from "effect"
import type { BatchInfo, BatchStatus, StoredFile } from "../../BatchProvider.js"
import { truncate } from "../../internal/http.js"
import { withRawText } from "../../internal/lines.js"
import { count as tokens, lookup } from "../../internal/wire.js"

export const { displayNameOf, metadataOfDisplayName } = GeminiDisplayName

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
    const mapped = lookup(mappedParams, key)
    if (key === "stop") config["stopSequences"] = Array.isArray(value) ? value : [value]
    else if (mapped !== undefined) config[mapped] = value
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
  return lookup(stateTable, key) ?? "unknown"
}

/** An int64 count (string or number); 0 when absent or malformed. */
export const count = (value: string | number | null | undefined): number => {
  if (typeof value === "number") return Number.isFinite(value) ? Math.max(0, Math.floor(value)) : 0
  // More digits than a double holds parse as Infinity, which a journal cannot keep.
  if (typeof value === "string" && /^\s*\d+\s*$/.test(value)) return Number.isFinite(Number(value)) ? Number(value) : 0
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

/** A page of `GET /batches`, decoded; `Left` holds a short reason. */
export const decodeBatchPage = (u: unknown) => {
  if (!isRecord(u) && u !== null) return Either.left("not an object")
  const record = (u ?? {}) as Rec
  const operations = record["operations"] ?? []
  if (!Array.isArray(operations)) return Either.left("operations is not an array")
  return Either.map(
    Either.all(operations.map(decodeBatchInfo)),
    (batches) => ({ batches, next: asString(record["nextPageToken"]) })
  )
}

const WireFile = Schema.Struct({
  name: Schema.String,
  displayName: Nullish(Schema.String),
  state: Nullish(Schema.String),
  createTime: Nullish(Schema.String),
  /** int64 as a string. */
  sizeBytes: Nullish(Schema.Union(Schema.String, Schema.Number)),
  /** `UPLOADED` or `GENERATED` (a batch's responses file). */
  source: Nullish(Schema.String)
})

/** The neutral view of a listed file (see `ProviderStorage.files`). */
export const toStoredFile = (file: typeof WireFile.Type): StoredFile => {
  const bytes = file.sizeBytes === undefined || file.sizeBytes === null ? Number.NaN : Number(file.sizeBytes)
  const createdMs = file.createTime ? Date.parse(file.createTime) : Number.NaN
  return {
    id: file.name,
    name: file.displayName ?? null,
    bytes: Number.isFinite(bytes) ? bytes : null,
    createdAt: Number.isFinite(createdMs) ? Math.floor(createdMs / 1000) : 0,
    purpose: file.source ?? null
  }
}
const decodeWireUploaded = Schema.decodeUnknownEither(Schema.Struct({ file: WireFile }))
const decodeWireFilePage = Schema.decodeUnknownEither(
  Schema.Struct({ files: Nullish(Schema.Array(WireFile)), nextPageToken: Nullish(Schema.String) })
)

/** The answer of a finished upload `{file}`; `Left` holds a short reason. */
export const decodeUploaded = (u: unknown) => Either.mapLeft(decodeWireUploaded(u), (e) => e.message)

/** A page of `GET /files`; `Left` holds a short reason. */
export const decodeFilePage = (u: unknown) => Either.mapLeft(decodeWireFilePage(u), (e) => e.message)

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
    inputTokens: tokens(usage["promptTokenCount"]),
    // Thinking tokens are billed as output.
    outputTokens: tokens(tokens(usage["candidatesTokenCount"]) + tokens(usage["thoughtsTokenCount"])),
    cachedInputTokens: tokens(usage["cachedContentTokenCount"])
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
  return Either.map(parseResultRecord(parsed), (result) => withRawText(result, parsed, text))
}

/** An inline response `{response | error, metadata: {key}}` as a result line `{key, response | error}`. */
export const inlineToLine = (entry: unknown): unknown => {
  if (!isRecord(entry)) return entry
  const metadata = entry["metadata"]
  const key = isRecord(metadata) ? metadata["key"] : undefined
  const { metadata: _, ...rest } = entry
  // The key sluice sent is the one in `metadata`; a `key` beside it does not override it.
  return { ...rest, key }
}

/** The inline responses of an Operation, as result lines. */
export const inlineResponseLines = (wire: WireOperation): ReadonlyArray<unknown> => {
  const output = outputOf(wire)
  const outer = output?.["inlinedResponses"]
  const list = Array.isArray(outer) ? outer : isRecord(outer) ? outer["inlinedResponses"] : undefined
  return Array.isArray(list) ? list.map(inlineToLine) : []
}

// -----------------------------------------------------------------------------------------
// Shard files -> the inline create body
// -----------------------------------------------------------------------------------------

/** The model named by a shard file's lines (`request.model`). */
export const modelOfLine = (line: string): string | undefined => {
  try {
    const parsed: unknown = JSON.parse(line)
    const request = isRecord(parsed) ? parsed["request"] : undefined
    return isRecord(request) ? asString(request["model"]) : undefined
  } catch {
    return undefined
  }
}

/** The inline create body, built from the shard file's lines. */
export const inlineBody = (text: string, displayName: string): string => {
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
// Real-time: a line's request, and the answer as the batch result line would carry it
// -----------------------------------------------------------------------------------------

/** What a real-time call needs of an input line: the model and the request body. */
export interface OnlineLine {
  readonly model: string
  readonly body: string
  readonly embeddings: boolean
}

/** Reads an input line `{key, request}` for a real-time call; `Left` says why it cannot be sent. */
export const onlineLine = (line: string): Either.Either<OnlineLine, string> => {
  let parsed: unknown
  try {
    parsed = JSON.parse(line)
  } catch {
    return Either.left("the shard line is not JSON")
  }
  const request = isRecord(parsed) ? parsed["request"] : undefined
  if (!isRecord(request)) return Either.left("the shard line has no request")
  const model = asString(request["model"])
  if (model === undefined) return Either.left("the shard line's request names no model")
  return Either.right({ model: modelName(model), body: JSON.stringify(request), embeddings: isRecord(request["content"]) && request["contents"] === undefined })
}

/**
 * A real-time answer of `generateContent` (status and parsed body) classified as the batch
 * result line wrapping it would be: `{key, response}` or `{key, error}`.
 */
export const onlineResult = (customId: string, status: number, body: unknown): BatchResult => {
  const embedding = isRecord(body) && isRecord(body["embedding"]) ? body["embedding"]["values"] : undefined
  if (status >= 200 && status < 300 && Array.isArray(embedding)) {
    // `embedContent`: the vector is the answer (Gemini reports no token usage for it).
    return { _tag: "Succeeded", customId, text: JSON.stringify(embedding), finishReason: null, usage: null, raw: { key: customId, response: body } }
  }
  if (status >= 200 && status < 300) return classifyLine({ key: customId, response: body })
  const error = isRecord(body) && isRecord(body["error"]) ? body["error"] : { code: status, message: `HTTP ${status}` }
  return classifyLine({ key: customId, error })
}

/**
 * The OpenAI Batch API provider (Files + Batches), implementing `BatchProvider`.
 *
 * Works against api.openai.com and against OpenAI-compatible services (Azure OpenAI, LiteLLM,
 * company proxies, Groq, Together): each is a base URL, an auth header style, extra headers
 * and query parameters, an upload purpose and limits, nothing more. Presets and their
 * environment variables live in `Compatible.ts`.
 *
 * Wire facts: `../shared/reference/providers.md` section 1.
 */
import { HttpBody, HttpClient } from "@effect/platform"
import * as Undici from "@effect/platform-node/Undici"
import type { BatchRequest, BatchResult, ContentPart, Endpoint, FailureClass, Message, OutputFormat, Params } from "@sluice/core"
import { Prompt } from "@sluice/core"
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
import { displayUrl, makeProviderHttp, truncate } from "../internal/http.js"
import type { ProviderHttp } from "../internal/http.js"
import type { RetryOptions } from "../internal/retry.js"
import { retryOptions } from "../internal/retry.js"
import type { ProviderError } from "../ProviderError.js"
import * as ProviderIdentity from "../ProviderIdentity.js"
import { optionalString, requiredSecret } from "../internal/env.js"

// -----------------------------------------------------------------------------------------
// Configuration
// -----------------------------------------------------------------------------------------

export const defaultBaseUrl = "https://api.openai.com/v1"

export interface OpenAiConfig {
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
   * of another header (Azure: `{ header: "api-key" }`).
   */
  readonly auth?: "bearer" | { readonly header: string } | undefined
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
 * Reads `OPENAI_API_KEY` (required, kept Redacted), `OPENAI_BASE_URL`, `OPENAI_ORG_ID` and
 * `OPENAI_PROJECT_ID`, like the official SDK. Values in `overrides` win over the environment
 * (an `apiKey` override means the variable is not needed). A missing key fails with a
 * `ConfigError` (MissingData) whose message is "OPENAI_API_KEY is not set".
 */
const fromEnv = (overrides: Partial<OpenAiConfig> = {}): Config.Config<OpenAiConfig> =>
  Config.all({
    apiKey: overrides.apiKey !== undefined ? Config.succeed(overrides.apiKey) : apiKeyConfig,
    baseUrl: overrides.baseUrl !== undefined ? Config.succeed(overrides.baseUrl) : optionalString("OPENAI_BASE_URL"),
    organization: overrides.organization !== undefined ?
      Config.succeed(overrides.organization) :
      optionalString("OPENAI_ORG_ID"),
    project: overrides.project !== undefined ? Config.succeed(overrides.project) : optionalString("OPENAI_PROJECT_ID")
  }).pipe(
    Config.map(({ apiKey, baseUrl, organization, project }): OpenAiConfig => ({
      ...overrides,
      apiKey,
      baseUrl: baseUrl ?? defaultBaseUrl,
      organization,
      project
    }))
  )

export const OpenAiConfig = {
  defaultBaseUrl,
  fromEnv
} as const

// -----------------------------------------------------------------------------------------
// Limits and capabilities
// -----------------------------------------------------------------------------------------

export const limits: ProviderLimits = {
  maxRequests: 50_000,
  // The documented cap is 200 MB; stay safely below it.
  maxBytes: 190_000_000,
  oneModelPerShard: true
}

export const capabilities: ProviderCapabilities = {
  cancel: true,
  list: true,
  metadata: true,
  partialResults: true
}

// -----------------------------------------------------------------------------------------
// Encoding request lines (hot path: runs once per row, so plain objects + JSON.stringify)
// -----------------------------------------------------------------------------------------

export const endpointUrl = (endpoint: Endpoint): "/v1/chat/completions" | "/v1/embeddings" =>
  endpoint === "chat" ? "/v1/chat/completions" : "/v1/embeddings"

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
  // Built as a string: the part after the row's own fields (params, response_format with its
  // JSON Schema) is the same for every row of a stage, so it is serialised once, not per row.
  // The bytes are exactly JSON.stringify({custom_id, method, url, body: {model, messages, ...}}).
  if (request._tag === "chat") {
    return `{"custom_id":${JSON.stringify(customId)},"method":"POST","url":"/v1/chat/completions","body":{"model":${JSON.stringify(request.model)},"messages":${wireMessages(request.messages, customId)}${chatTail(request.params, request.output)}}}`
  }
  return `{"custom_id":${JSON.stringify(customId)},"method":"POST","url":"/v1/embeddings","body":{"model":${JSON.stringify(request.model)},"input":${JSON.stringify(request.input)}${tailOf(request.params, ["model", "input"], undefined)}}}`
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
  status: Nullish(Schema.String)
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
  return statusTable[key] ?? statusTable[key.replace(/_/g, "")] ?? "unknown"
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
      total: wire.request_counts?.total ?? 0,
      succeeded: wire.request_counts?.completed ?? 0,
      failed: wire.request_counts?.failed ?? 0
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
    inputTokens: asNumber(usage["prompt_tokens"]) ?? 0,
    outputTokens: asNumber(usage["completion_tokens"]) ?? 0,
    cachedInputTokens: asNumber(asRecord(usage["prompt_tokens_details"])?.["cached_tokens"]) ?? 0
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
        inputTokens: asNumber(usage["prompt_tokens"]) ?? 0,
        outputTokens: 0,
        cachedInputTokens: 0
      },
      raw
    }
  }
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
  return Either.right(classifyLine(record as Rec & { custom_id: string }))
}

// -----------------------------------------------------------------------------------------
// The provider
// -----------------------------------------------------------------------------------------

/** The shard's file name at OpenAI: the Batch API accepts only `.jsonl` names. */
export const stagedFileName = (name: string): string => (name.endsWith(".jsonl") ? name : `${name}.jsonl`)

const quotaCodes: ReadonlySet<string> = new Set([
  "insufficient_quota",
  "billing_hard_limit_reached",
  "token_limit_exceeded"
])

const clamp = (n: number | undefined, min: number, max: number, fallback: number): number =>
  n === undefined || !Number.isFinite(n) ? fallback : Math.min(max, Math.max(min, Math.floor(n)))

/** Builds the provider from a configuration, over the ambient `HttpClient`. */
/**
 * OpenAI-style base URLs end in their API version (`https://api.openai.com/v1`, a gateway's
 * `…/azure/v1`); one without a version segment (`http://localhost:8080`) answers every path
 * 404. The hint a 404 then carries, unless the version travels in the query (Azure's
 * `api-version`).
 */
export const missingVersionHint = (baseUrl: string, query: Readonly<Record<string, string>> | undefined): string | undefined => {
  if (query !== undefined && Object.keys(query).length > 0) return undefined
  let path: string
  try {
    path = new URL(baseUrl).pathname
  } catch {
    return undefined
  }
  if (path.split("/").some((segment) => /^v\d/.test(segment))) return undefined
  const shown = displayUrl(baseUrl)
  return `the base URL ${shown} has no API version: did you mean ${shown}/v1?`
}

export const make = (config: OpenAiConfig): Effect.Effect<BatchProvider, never, HttpClient.HttpClient> =>
  Effect.map(HttpClient.HttpClient, (client) => makeWithClient(client, config))

/** Builds the provider over a given `HttpClient`. */
export const makeWithClient = (client: HttpClient.HttpClient, config: OpenAiConfig): BatchProvider => {
  const name = config.name ?? "openai"
  const requestTimeout = config.requestTimeout ?? Duration.seconds(60)
  const idleTimeout = config.downloadIdleTimeout ?? Duration.seconds(60)
  const uploadRate = config.minUploadBytesPerSecond ?? 256 * 1024
  const listPageSize = clamp(config.listPageSize, 1, 100, 100)
  const filesPageSize = clamp(config.filesPageSize, 1, 10_000, 1_000)
  const purpose = config.purpose ?? "batch"
  const uploadPath = config.upload?.path ?? "/files"
  const providerLimits: ProviderLimits = { ...limits, ...config.limits }
  const providerCapabilities: ProviderCapabilities = { ...capabilities, ...config.capabilities }

  const headers: Record<string, string> = { accept: "application/json", "user-agent": "sluice" }
  if (config.organization !== undefined) headers["openai-organization"] = config.organization
  if (config.project !== undefined) headers["openai-project"] = config.project
  Object.assign(headers, config.headers ?? {})

  const auth = config.auth ?? "bearer"
  const secretHeaders: Record<string, Redacted.Redacted<string>> = { ...config.secretHeaders }
  if (auth === "bearer") {
    secretHeaders["authorization"] = Redacted.make(`Bearer ${Redacted.value(config.apiKey)}`)
  } else {
    secretHeaders[auth.header.toLowerCase()] = config.apiKey
  }

  const http: ProviderHttp = makeProviderHttp(client, {
    provider: name,
    baseUrl: config.baseUrl.replace(/\/+$/, ""),
    headers,
    secretHeaders,
    secrets: [config.apiKey],
    query: config.query,
    requestTimeout,
    retry: retryOptions(config.retry),
    quotaCodes,
    notFoundHint: missingVersionHint(config.baseUrl, config.query)
  })

  const decodeWith = <A>(operation: string, decode: (u: unknown) => Either.Either<A, string>) => (u: unknown) =>
    Either.match(decode(u), {
      onLeft: (reason) =>
        Effect.fail(http.error({ reason: "Decode", operation, description: truncate(`unexpected response: ${reason}`) })),
      onRight: Effect.succeed
    })

  const batchInfo = (operation: string) => decodeWith(operation, decodeBatchInfo)

  const jsonBody = (value: unknown) => HttpBody.text(JSON.stringify(value), "application/json")

  const enc = encodeURIComponent

  // --- files ---

  const stage = (path: string, stagedName: string): Effect.Effect<StagedInput, ProviderError> => {
    const operation = `POST ${uploadPath}`
    const filename = stagedFileName(stagedName)
    // openAsBlob gives a lazy, file-backed Blob: the body is streamed from disk, never read
    // into memory. A fresh Blob and form per attempt, since a request body is read once.
    const openBlob = Effect.tryPromise({
      try: () => NodeFs.openAsBlob(path, { type: "application/jsonl" }),
      catch: (cause) =>
        http.error({
          reason: "Rejected",
          operation,
          description: `cannot read shard file ${path}: ${cause instanceof Error ? cause.message : String(cause)}`
        })
    })
    return Effect.gen(function*() {
      const size = (yield* openBlob).size
      const timeout = Duration.sum(requestTimeout, Duration.millis(Math.ceil((size / uploadRate) * 1000)))
      const spec = Effect.map(openBlob, (blob) => {
        // npm undici's FormData, not Node 20's global one (which undici 7 cannot send).
        const form = new Undici.FormData()
        form.append("purpose", purpose)
        if (config.upload?.fileNameField !== undefined) form.append(config.upload.fileNameField, filename)
        for (const [field, value] of Object.entries(config.upload?.fields ?? {})) form.append(field, value)
        form.append("file", blob as unknown as Parameters<typeof form.append>[1], filename)
        return {
          method: "POST" as const,
          path: uploadPath,
          body: HttpBody.formData(form as unknown as globalThis.FormData)
        }
      })
      const json = yield* http.json(spec, { retry: true, timeout })
      const file = yield* decodeWith(operation, (u) => Either.mapLeft(decodeWireFile(u), (e) => e.message))(json)
      return { inputRef: file.id }
    })
  }

  const findStaged = (stagedName: string): Effect.Effect<Option.Option<StagedInput>, ProviderError> => {
    const filename = stagedFileName(stagedName)
    const operation = "GET /files"
    const decodeFiles = decodeWith(operation, (u) =>
      Either.flatMap(Either.mapLeft(decodeWireList(listPage(u)), (e) => e.message), (page) =>
        Either.map(
          Either.all(page.data.map((f) => Either.mapLeft(decodeWireFile(f), (e) => e.message))),
          (files) => ({ files, hasMore: page.has_more === true, lastId: page.last_id ?? null })
        )))
    const loop = (after: string | undefined): Effect.Effect<Option.Option<StagedInput>, ProviderError> =>
      http.json({
        method: "GET",
        path: "/files",
        urlParams: {
          purpose,
          order: "desc",
          limit: String(filesPageSize),
          ...(after === undefined ? {} : { after })
        }
      }, { retry: true }).pipe(
        Effect.flatMap(decodeFiles),
        Effect.flatMap((page) => {
          // Newest first: the most recent upload under this name wins.
          const hit = page.files.find((f) =>
            f.filename === filename &&
            (f.purpose === undefined || f.purpose === null || f.purpose === purpose) &&
            f.status !== "error" && f.status !== "deleted"
          )
          if (hit !== undefined) return Effect.succeed(Option.some({ inputRef: hit.id }))
          const next = page.lastId ?? page.files[page.files.length - 1]?.id
          return page.hasMore && next !== undefined && next !== after ? loop(next) : Effect.succeed(Option.none())
        })
      )
    return loop(undefined)
  }

  const deleteStaged = (inputRef: string): Effect.Effect<void, ProviderError> =>
    http.json({ method: "DELETE", path: `/files/${enc(inputRef)}` }, { retry: true }).pipe(
      Effect.asVoid,
      // Already gone (or deleted by an earlier attempt whose answer was lost): done.
      Effect.catchIf((e) => e.reason === "NotFound", () => Effect.void)
    )

  // --- batches ---

  const create = (input: CreateBatch): Effect.Effect<BatchInfo, ProviderError> =>
    // Not idempotent: never retried here. A Transport/Timeout/Server failure is `ambiguous`
    // and the caller reconciles with `list` (metadata names run, shard and attempt).
    http.json({
      method: "POST",
      path: "/batches",
      body: jsonBody({
        input_file_id: input.inputRef,
        endpoint: endpointUrl(input.endpoint),
        completion_window: "24h",
        metadata: input.metadata
      })
    }, { retry: false }).pipe(Effect.flatMap(batchInfo("POST /batches")))

  const retrieve = (batchId: string): Effect.Effect<BatchInfo, ProviderError> => {
    const path = `/batches/${enc(batchId)}`
    return http.json({ method: "GET", path, headers: { "cache-control": "no-cache" } }, { retry: true }).pipe(
      Effect.flatMap(batchInfo(`GET ${path}`))
    )
  }

  const cancel = (batchId: string): Effect.Effect<BatchInfo, ProviderError> => {
    const path = `/batches/${enc(batchId)}/cancel`
    return http.json({ method: "POST", path }, { retry: true }).pipe(Effect.flatMap(batchInfo(`POST ${path}`)))
  }

  const decodeBatchPage = decodeWith("GET /batches", (u) =>
    Either.flatMap(Either.mapLeft(decodeWireList(listPage(u)), (e) => e.message), (page) =>
      Either.map(
        Either.all(page.data.map(decodeBatchInfo)),
        (batches) => ({ batches, hasMore: page.has_more === true, lastId: page.last_id ?? null })
      )))

  const list: Stream.Stream<BatchInfo, ProviderError> = Stream.paginateChunkEffect(
    undefined as string | undefined,
    (after) =>
      http.json({
        method: "GET",
        path: "/batches",
        headers: { "cache-control": "no-cache" },
        urlParams: { limit: String(listPageSize), ...(after === undefined ? {} : { after }) }
      }, { retry: true }).pipe(
        Effect.flatMap(decodeBatchPage),
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
   * The lines of one output or error file, classified. A line that is not JSON or has no
   * `custom_id` cannot be attributed to a request: it is logged as a warning (file id and
   * line number) and skipped, so one garbage line never costs the other results. The runner
   * finds the affected request as *missing* by diffing results against the shard manifest,
   * and reschedules it.
   */
  const fileResults = (id: string): Stream.Stream<BatchResult, ProviderError> =>
    Stream.suspend(() => {
      let lineNo = 0
      return http.stream(
        { method: "GET", path: `/files/${enc(id)}/content`, headers: { accept: "application/binary" } },
        { retry: true, idleTimeout }
      ).pipe(
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
            else warnings.push(`${name}: skipping unusable result line ${lineNo} of file ${id}: ${parsed.left}`)
          }
          const chunk = Chunk.unsafeFromArray(out)
          return warnings.length === 0 ?
            Effect.succeed(chunk) :
            Effect.as(Effect.forEach(warnings, (w) => Effect.logWarning(w), { discard: true }), chunk)
        })
      )
    })

  const results = (batch: BatchInfo): Stream.Stream<BatchResult, ProviderError> => {
    const ids = [batch.outputFileId, batch.errorFileId].filter((id): id is string => id !== null && id !== "")
    return Stream.flatMap(Stream.fromIterable(ids), fileResults)
  }

  return {
    name,
    origin: config.baseUrl.replace(/\/+$/, ""),
    identity: ProviderIdentity.make({ family: "openai", provider: name, baseUrl: config.baseUrl, apiVersion: config.query?.["api-version"] }),
    limits: providerLimits,
    capabilities: providerCapabilities,
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

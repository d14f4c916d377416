/**
 * Gemini wire shapes for the emulator: errors (`{error: {code, message, status}}`),
 * GenerateContentRequest -> the chat body the shared answer engine understands, and chat
 * completion -> GenerateContentResponse.
 */
import type { IncomingMessage } from "node:http"
import { ApiError } from "./errors.js"
import type { Reply } from "./http.js"

type Obj = { readonly [key: string]: unknown }
export const isObject = (value: unknown): value is Obj => typeof value === "object" && value !== null && !Array.isArray(value)

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/** A Google API error: HTTP status, canonical status name, message, optional details. */
export class GeminiError extends Error {
  constructor(
    readonly httpStatus: number,
    readonly status: string,
    message: string,
    readonly details: ReadonlyArray<unknown> = [],
    readonly headers: Readonly<Record<string, string>> = {}
  ) {
    super(message)
  }
}

const statusNames: Readonly<Record<number, string>> = {
  400: "INVALID_ARGUMENT",
  401: "UNAUTHENTICATED",
  403: "PERMISSION_DENIED",
  404: "NOT_FOUND",
  409: "ABORTED",
  413: "INVALID_ARGUMENT",
  429: "RESOURCE_EXHAUSTED",
  499: "CANCELLED",
  500: "INTERNAL",
  501: "UNIMPLEMENTED",
  502: "UNAVAILABLE",
  503: "UNAVAILABLE",
  504: "DEADLINE_EXCEEDED"
}

export const statusName = (httpStatus: number): string => statusNames[httpStatus] ?? (httpStatus >= 500 ? "INTERNAL" : "UNKNOWN")

export const invalidArgument = (message: string): GeminiError => new GeminiError(400, "INVALID_ARGUMENT", message)
export const notFound = (message: string): GeminiError => new GeminiError(404, "NOT_FOUND", message)
export const failedPrecondition = (message: string): GeminiError => new GeminiError(400, "FAILED_PRECONDITION", message)

/** Errors of the shared helpers (OpenAI-shaped ApiError) in Gemini's shape. */
export const toGeminiError = (error: ApiError): GeminiError => {
  if (error.status === 413) {
    return new GeminiError(400, "INVALID_ARGUMENT", `Request payload size exceeds the limit. ${error.message}`)
  }
  return new GeminiError(error.status, statusName(error.status), error.message, [], error.headers)
}

export const replyError = (reply: Reply, error: GeminiError): void => {
  const body: Record<string, unknown> = { code: error.httpStatus, message: error.message, status: error.status }
  if (error.details.length > 0) body["details"] = error.details
  reply.json(error.httpStatus, { error: body }, error.headers)
}

// ---------------------------------------------------------------------------------------------
// Auth
// ---------------------------------------------------------------------------------------------

const header = (req: IncomingMessage, name: string): string | undefined => {
  const value = req.headers[name]
  return typeof value === "string" && value.length > 0 ? value : undefined
}

/**
 * `x-goog-api-key: K`, `?key=K` or `Authorization: Bearer K`; checked only when the emulator
 * has an `apiKey`. Like Google: no key -> 403 PERMISSION_DENIED, a wrong one -> 400
 * INVALID_ARGUMENT "API key not valid" (reason API_KEY_INVALID). The key is never echoed.
 */
export const checkGeminiKey = (apiKey: string | undefined, req: IncomingMessage, query: URLSearchParams): void => {
  if (apiKey === undefined) return
  const bearer = /^Bearer\s+(.+)$/i.exec(header(req, "authorization")?.trim() ?? "")?.[1]
  const key = header(req, "x-goog-api-key") ?? (query.get("key") || undefined) ?? bearer
  if (key === undefined) {
    throw new GeminiError(
      403,
      "PERMISSION_DENIED",
      "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API."
    )
  }
  if (key !== apiKey) {
    throw new GeminiError(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", [
      { "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "API_KEY_INVALID", domain: "googleapis.com" }
    ])
  }
}

// ---------------------------------------------------------------------------------------------
// GenerateContentRequest -> chat body
// ---------------------------------------------------------------------------------------------

/** A field under its JSON name or its proto (snake_case) name; the REST API accepts both. */
const field = (obj: Obj, camel: string): unknown => {
  if (camel in obj) return obj[camel]
  const snake = camel.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)
  return obj[snake]
}

const CHAT_IMAGE_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"]

/**
 * One Gemini part as a chat-completions part, for the shared checks and answers:
 * - `{text}` -> a text part;
 * - an image in `inlineData {mimeType, data}` -> an `image_url` part with a base64 data URL
 *   (URL-safe base64 made standard); PNG, JPEG, GIF and WebP only — other inline data
 *   (HEIC, audio, PDF …) -> a `file` part, accepted and counted as a non-image part;
 * - `fileData {fileUri, mimeType?}` of an image (or of no stated type) -> an `image_url` part
 *   with the URI (a `gs://bucket/object` URI as its `https://storage.googleapis.com` URL);
 *   the emulator fetches nothing; other file types -> a `file` part;
 * - function calls and responses, code parts -> a `file` part;
 * - anything malformed -> a part of an unknown type, which the shared check refuses (the
 *   request's line then fails with 400 INVALID_ARGUMENT).
 */
const chatPartOf = (part: unknown): Obj => {
  if (!isObject(part)) return { type: "invalid_part" }
  if (typeof part["text"] === "string") return { type: "text", text: part["text"] }
  const inline = field(part, "inlineData")
  if (inline !== undefined) {
    if (!isObject(inline)) return { type: "invalid_part" }
    const mimeType = field(inline, "mimeType")
    const data = inline["data"]
    if (typeof mimeType !== "string" || typeof data !== "string" || data.length === 0) return { type: "invalid_part" }
    if (!CHAT_IMAGE_TYPES.includes(mimeType.toLowerCase())) return { type: "file", file: {} }
    return { type: "image_url", image_url: { url: `data:${mimeType.toLowerCase()};base64,${data.replace(/-/g, "+").replace(/_/g, "/")}` } }
  }
  const file = field(part, "fileData")
  if (file !== undefined) {
    if (!isObject(file)) return { type: "invalid_part" }
    const uri = field(file, "fileUri")
    const mimeType = field(file, "mimeType")
    if (typeof uri !== "string" || uri.length === 0 || (mimeType !== undefined && typeof mimeType !== "string")) return { type: "invalid_part" }
    if (typeof mimeType === "string" && !mimeType.toLowerCase().startsWith("image/")) return { type: "file", file: {} }
    const gs = /^gs:\/\/(.+)$/.exec(uri)
    return { type: "image_url", image_url: { url: gs === null ? uri : `https://storage.googleapis.com/${gs[1]}` } }
  }
  for (const key of ["functionCall", "functionResponse", "executableCode", "codeExecutionResult"]) {
    if (field(part, key) !== undefined) return { type: "file", file: {} }
  }
  return { type: "invalid_part" }
}

/** `parts` -> string content, or content parts when some are not text (images and others count as tokens). */
const contentOf = (parts: unknown): string | Array<Obj> => {
  if (!Array.isArray(parts)) return ""
  if (parts.every((part) => isObject(part) && typeof part["text"] === "string")) {
    return parts.map((part) => (part as Obj)["text"] as string).join("")
  }
  return parts.map(chatPartOf)
}

/** Gemini's OpenAPI-subset `responseSchema` (upper-case types, `nullable`) as JSON Schema. */
export const fromOpenApiSchema = (schema: unknown): unknown => {
  if (Array.isArray(schema)) return schema.map(fromOpenApiSchema)
  if (!isObject(schema)) return schema
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(schema)) {
    if (key === "type" && typeof value === "string") out["type"] = value.toLowerCase()
    else if (key === "properties" && isObject(value)) {
      out["properties"] = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fromOpenApiSchema(v)]))
    } else if (key === "items" || key === "anyOf") out[key] = fromOpenApiSchema(value)
    else if (key !== "nullable" && key !== "propertyOrdering") out[key] = value
  }
  if (schema["nullable"] === true && typeof out["type"] === "string") out["type"] = [out["type"], "null"]
  return out
}

/**
 * The chat-completions body the shared answer engine (answers.ts) answers for a Gemini
 * request: contents -> messages (model -> assistant), systemInstruction -> a system message,
 * generationConfig -> temperature / max_tokens / n, and JSON output -> `response_format`
 * (`responseJsonSchema` as is, `responseSchema` converted, neither -> json_object).
 * A request without contents gets no messages, so it is answered as a 400 line.
 */
export const toChatBody = (model: string, request: unknown): Record<string, unknown> => {
  if (!isObject(request)) return { model, messages: [] }
  const messages: Array<Obj> = []
  const contents = field(request, "contents")
  const system = field(request, "systemInstruction")
  if (Array.isArray(contents) && contents.length > 0) {
    if (isObject(system)) messages.push({ role: "system", content: contentOf(system["parts"]) })
    for (const content of contents) {
      if (!isObject(content)) continue
      messages.push({ role: content["role"] === "model" ? "assistant" : "user", content: contentOf(content["parts"]) })
    }
  }
  const body: Record<string, unknown> = { model, messages }
  const config = field(request, "generationConfig")
  if (isObject(config)) {
    const temperature = field(config, "temperature")
    if (typeof temperature === "number") body["temperature"] = temperature
    const maxTokens = field(config, "maxOutputTokens")
    if (typeof maxTokens === "number") body["max_tokens"] = maxTokens
    const candidates = field(config, "candidateCount")
    if (typeof candidates === "number") body["n"] = candidates
    if (field(config, "responseMimeType") === "application/json") {
      const jsonSchema = field(config, "responseJsonSchema")
      const openApiSchema = field(config, "responseSchema")
      body["response_format"] = isObject(jsonSchema) ?
        { type: "json_schema", json_schema: { name: "response", schema: jsonSchema } } :
        isObject(openApiSchema) ?
        { type: "json_schema", json_schema: { name: "response", schema: fromOpenApiSchema(openApiSchema) } } :
        { type: "json_object" }
    }
  }
  return body
}

// ---------------------------------------------------------------------------------------------
// Chat answer -> GenerateContentResponse
// ---------------------------------------------------------------------------------------------

const finishReasons: Readonly<Record<string, string>> = {
  stop: "STOP",
  length: "MAX_TOKENS",
  content_filter: "SAFETY"
}

/** A chat.completion body (from answers.ts) as a GenerateContentResponse. */
export const toGenerateContentResponse = (completion: Obj, modelVersion: string): Obj => {
  const choices = Array.isArray(completion["choices"]) ? completion["choices"] : []
  const usage = isObject(completion["usage"]) ? completion["usage"] : {}
  const prompt = typeof usage["prompt_tokens"] === "number" ? usage["prompt_tokens"] : 0
  const output = typeof usage["completion_tokens"] === "number" ? usage["completion_tokens"] : 0
  const id = typeof completion["id"] === "string" ? completion["id"].replace(/^chatcmpl-/, "") : ""
  return {
    candidates: choices.filter(isObject).map((choice, index) => {
      const message = isObject(choice["message"]) ? choice["message"] : {}
      const text = typeof message["content"] === "string" ? message["content"] : ""
      return {
        content: { parts: [{ text }], role: "model" },
        finishReason: finishReasons[String(choice["finish_reason"])] ?? "STOP",
        index
      }
    }),
    usageMetadata: {
      promptTokenCount: prompt,
      candidatesTokenCount: output,
      totalTokenCount: prompt + output,
      promptTokensDetails: [{ modality: "TEXT", tokenCount: prompt }]
    },
    modelVersion,
    responseId: id
  }
}

/** gRPC codes of the canonical status names (google.rpc.Code). */
const grpcCodes: Readonly<Record<string, number>> = {
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16
}

/**
 * A failed request's per-line error: a google.rpc.Status (`{code, message}`), whose `code` is
 * the gRPC code (3 INVALID_ARGUMENT, 14 UNAVAILABLE …), not an HTTP status as in the JSON
 * error body of a failed call; the proto has no status name (and no empty `details`).
 */
export const lineError = (httpStatus: number): Obj => {
  const [status, message] = httpStatus === 400 ?
    ["INVALID_ARGUMENT", "Request contains an invalid argument."] :
    httpStatus >= 500 ?
    ["UNAVAILABLE", "The model is overloaded. Please try again later."] :
    [statusName(httpStatus), `The request failed with HTTP ${httpStatus}.`]
  return { code: grpcCode(status), message }
}

export const grpcCode = (status: string): number => grpcCodes[status] ?? 2

/** Re-exported for the routes: shared-helper errors become Gemini errors there. */
export { ApiError }

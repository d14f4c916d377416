/**
 * Deterministic answers for the endpoints the emulator serves, shared by the
 * synchronous routes and the batch result writer so both give the same
 * content for the same request body.
 *
 * - chat with `response_format: json_schema` -> JSON conforming to the schema
 * - chat with `response_format: json_object` -> a small JSON object
 * - other chat -> a short sentence derived from the last user message
 * - embeddings -> unit vectors of 8 floats (or `dimensions`), float or base64
 * Prompt tokens are counted like `sluice estimate` counts them (see `promptTokens`); output
 * tokens as ceil(chars / 4).
 */
import type { ApiErrorBody } from "./errors.js"
import type { KnownModels } from "./models.js"
import { seededRandom, sha1 } from "./hash.js"
import { valueForSchema } from "./schemaValue.js"
import { Prompt, Tokens } from "@sluice/core"

export const CHAT_ENDPOINT = "/v1/chat/completions"
export const EMBEDDINGS_ENDPOINT = "/v1/embeddings"
export const SUPPORTED_ENDPOINTS: ReadonlyArray<string> = [CHAT_ENDPOINT, EMBEDDINGS_ENDPOINT]
/** Endpoints OpenAI accepts for batches; the ones not in SUPPORTED_ENDPOINTS are refused with a clear message. */
export const OPENAI_BATCH_ENDPOINTS: ReadonlyArray<string> = [
  "/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/moderations",
  "/v1/images/generations", "/v1/images/edits", "/v1/videos"
]

export const DEFAULT_EMBEDDING_DIMENSIONS = 8

export interface AnswerContext {
  readonly seed: string
  /** Unix seconds for the `created` field. */
  readonly created: number
  /** Hex suffix of the `chatcmpl-` id. */
  readonly id: string
  /** Fault: answer a structured request with invalid JSON / a non-conforming value. */
  readonly invalidJson: boolean
  /** Count prompt tokens at ~4 characters a token, not with the model's tokenizer (EmulatorOptions.approximateTokens). */
  readonly approximateTokens?: boolean | undefined
}

export interface Answer {
  readonly body: Record<string, unknown>
  readonly inputTokens: number
  readonly outputTokens: number
}

type Obj = { readonly [key: string]: unknown }
const isObject = (value: unknown): value is Obj => typeof value === "object" && value !== null && !Array.isArray(value)

const requestError = (message: string, param: string | null, code: string | null = null): ApiErrorBody => ({
  message,
  type: "invalid_request_error",
  param,
  code
})

// ---------------------------------------------------------------------------------------------
// Request checks (the 400s a real endpoint gives; in a batch they become error-file lines)
// ---------------------------------------------------------------------------------------------

/**
 * OpenAI's answer to a model it does not know (HTTP 404; in a batch, an error-file line with
 * `status_code` 404), or undefined when the body names no model (checkRequest's 400) or a known one.
 */
export const unknownModel = (models: KnownModels, body: unknown): ApiErrorBody | undefined => {
  const model = isObject(body) ? body["model"] : undefined
  return typeof model !== "string" || model.length === 0 || models.accepts(model) ? undefined : modelNotFound(model)
}

export const modelNotFound = (model: string): ApiErrorBody =>
  requestError(`The model \`${model}\` does not exist or you do not have access to it.`, null, "model_not_found")

export const checkRequest = (endpoint: string, body: unknown): ApiErrorBody | undefined => {
  if (!isObject(body)) return requestError("The request body must be a JSON object.", null)
  if (typeof body["model"] !== "string" || body["model"].length === 0) {
    return requestError("you must provide a model parameter", "model", "missing_required_parameter")
  }
  if (body["stream"] === true) {
    return requestError("Streaming is not supported by the sluice emulator (nor by the Batch API).", "stream", "invalid_value")
  }
  return endpoint === EMBEDDINGS_ENDPOINT ? checkEmbeddings(body) : checkChat(body)
}

const checkChat = (body: Obj): ApiErrorBody | undefined => {
  const messages = body["messages"]
  if (messages === undefined) return requestError("Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
  if (!Array.isArray(messages) || messages.length === 0) {
    return requestError("Invalid 'messages': expected a non-empty array.", "messages", "invalid_value")
  }
  for (let i = 0; i < messages.length; i++) {
    const message: unknown = messages[i]
    if (!isObject(message) || typeof message["role"] !== "string") {
      return requestError(`Invalid 'messages[${i}]': expected an object with a 'role'.`, `messages[${i}]`, "invalid_value")
    }
    const content = message["content"]
    if (Array.isArray(content)) {
      const problem = checkContentParts(content, message["role"], i)
      if (problem !== undefined) return problem
    }
  }
  const n = body["n"]
  if (n !== undefined && n !== null && (!Number.isInteger(n) || (n as number) < 1 || (n as number) > 128)) {
    return requestError("Invalid 'n': expected an integer between 1 and 128.", "n", "invalid_value")
  }
  const format = body["response_format"]
  if (format !== undefined && format !== null) {
    if (!isObject(format) || !["text", "json_object", "json_schema"].includes(format["type"] as string)) {
      return requestError("Invalid 'response_format.type': expected 'text', 'json_object' or 'json_schema'.", "response_format.type", "invalid_value")
    }
    if (format["type"] === "json_schema") {
      const spec = format["json_schema"]
      if (!isObject(spec) || typeof spec["name"] !== "string") {
        return requestError("Missing required parameter: 'response_format.json_schema.name'.", "response_format.json_schema.name", "missing_required_parameter")
      }
    }
  }
  return undefined
}

/** Content part types of chat messages (text and image are checked in detail, the others only by name). */
const PART_TYPES = ["text", "image_url", "input_audio", "file", "refusal"]
const IMAGE_DATA_URL = /^data:image\/(png|jpeg|gif|webp);base64,([A-Za-z0-9+/]*={0,2})$/
const DETAILS = ["auto", "low", "high"]

/**
 * A content part list as the chat completions endpoint checks it: every part a known type;
 * `text` with a string; `image_url` with an http(s) URL or a base64 `data:` URL of a PNG,
 * JPEG, GIF or WebP image, and only in user turns. The emulator fetches no URL.
 */
const checkContentParts = (parts: ReadonlyArray<unknown>, role: string, i: number): ApiErrorBody | undefined => {
  for (let j = 0; j < parts.length; j++) {
    const part = parts[j]
    const at = `messages[${i}].content[${j}]`
    if (!isObject(part)) return requestError(`Invalid '${at}': expected an object.`, at, "invalid_type")
    const type = part["type"]
    if (typeof type !== "string" || !PART_TYPES.includes(type)) {
      return requestError(
        `Invalid value: ${JSON.stringify(type ?? null)}. Supported values are: ${PART_TYPES.map((t) => `'${t}'`).join(", ")}.`,
        `${at}.type`,
        "invalid_value"
      )
    }
    if (type === "text" && typeof part["text"] !== "string") {
      return requestError(`Missing required parameter: '${at}.text'.`, `${at}.text`, "missing_required_parameter")
    }
    if (type !== "image_url") continue
    if (role !== "user") {
      return requestError(
        `Invalid '${at}'. Image URLs are only allowed for messages with role 'user', but this message has role '${role}'.`,
        `messages[${i}]`,
        "invalid_value"
      )
    }
    const image = part["image_url"]
    if (!isObject(image) || typeof image["url"] !== "string") {
      return requestError(`Missing required parameter: '${at}.image_url.url'.`, `${at}.image_url.url`, "missing_required_parameter")
    }
    const url = image["url"]
    if (url.startsWith("data:") ? !IMAGE_DATA_URL.test(url) : !/^https?:\/\/[^\s/]+/i.test(url)) {
      return requestError(
        `Invalid '${at}.image_url.url': expected an http(s) URL or a base64 data URL of a PNG, JPEG, GIF or WebP image.`,
        `${at}.image_url.url`,
        "invalid_image_url"
      )
    }
    if (image["detail"] !== undefined && !DETAILS.includes(image["detail"] as string)) {
      return requestError(`Invalid '${at}.image_url.detail': expected 'auto', 'low' or 'high'.`, `${at}.image_url.detail`, "invalid_value")
    }
  }
  return undefined
}

const checkEmbeddings = (body: Obj): ApiErrorBody | undefined => {
  const input = body["input"]
  if (input === undefined) return requestError("Missing required parameter: 'input'.", "input", "missing_required_parameter")
  const items = embeddingItems(input)
  if (items === undefined || items.length === 0 || items.some((item) => item.length === 0)) {
    return requestError("'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.", "input", "invalid_value")
  }
  const format = body["encoding_format"]
  if (format !== undefined && format !== "float" && format !== "base64") {
    return requestError("Invalid 'encoding_format': expected 'float' or 'base64'.", "encoding_format", "invalid_value")
  }
  const dimensions = body["dimensions"]
  if (dimensions !== undefined && (!Number.isInteger(dimensions) || (dimensions as number) < 1 || (dimensions as number) > 4096)) {
    return requestError("Invalid 'dimensions': expected an integer between 1 and 4096.", "dimensions", "invalid_value")
  }
  return undefined
}

/** An embeddings `input` as a list of items (strings or token arrays); undefined when malformed. */
const embeddingItems = (input: unknown): ReadonlyArray<string | ReadonlyArray<number>> | undefined => {
  if (typeof input === "string") return [input]
  if (!Array.isArray(input)) return undefined
  if (input.every((x) => typeof x === "string")) return input as ReadonlyArray<string>
  if (input.every((x) => typeof x === "number")) return [input as ReadonlyArray<number>]
  if (input.every((x) => Array.isArray(x) && x.every((t) => typeof t === "number"))) return input as ReadonlyArray<ReadonlyArray<number>>
  return undefined
}

/** Number of embedding inputs of a request (the Batch API caps their total at 50,000). */
export const embeddingInputCount = (body: unknown): number =>
  isObject(body) ? (embeddingItems(body["input"])?.length ?? 0) : 0

/** True when the request asks for JSON content (the target of the invalidJsonRate fault). */
export const isStructured = (endpoint: string, body: unknown): boolean => {
  if (endpoint !== CHAT_ENDPOINT || !isObject(body)) return false
  const format = body["response_format"]
  return isObject(format) && (format["type"] === "json_schema" || format["type"] === "json_object")
}

// ---------------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------------

/** Answers a request that passed `checkRequest`. `bodyJson` is the body's JSON text (hashed for determinism). */
export const answerRequest = (endpoint: string, body: Obj, bodyJson: string, ctx: AnswerContext): Answer => {
  const digest = sha1(`${ctx.seed}\u0000${bodyJson}`)
  return endpoint === EMBEDDINGS_ENDPOINT ? answerEmbeddings(body, ctx) : answerChat(body, digest, ctx)
}

const approxTokens = (chars: number): number => Math.ceil(chars / 4)

/** A non-text, non-image content part: a flat guess. */
const OTHER_PART_TOKENS = 85

/** The text of a message's content: a string, or its text parts (OpenAI parts, Anthropic blocks) joined by newlines. */
const partsText = (content: unknown): string => {
  if (typeof content === "string") return content
  if (!Array.isArray(content)) return ""
  let text = ""
  for (const part of content) {
    if (isObject(part) && typeof part["text"] === "string") text += (text ? "\n" : "") + part["text"]
  }
  return text
}

/**
 * Prompt tokens as OpenAI would bill them: with the model's real tokenizer where sluice has
 * one, else about four characters a token — the count `sluice estimate` makes. A string
 * content is counted whole with its message's framing; of a part list, each text part on its
 * own, each image (an OpenAI `image_url` part, an Anthropic `image` block, a Gemini image
 * part) as `Prompt.imageTokens` — a fixed number: the emulator neither downloads nor decodes
 * images — and any other part (audio, a file, a tool block) as OTHER_PART_TOKENS.
 */
export const promptTokens = (messages: ReadonlyArray<unknown>, model = ""): number => {
  const textual: Array<{ role: string; content: string }> = []
  let parts = 0
  for (const message of messages) {
    if (!isObject(message)) continue
    const content = message["content"]
    textual.push({ role: typeof message["role"] === "string" ? message["role"] : "user", content: typeof content === "string" ? content : "" })
    if (!Array.isArray(content)) continue
    for (const part of content) {
      if (!isObject(part)) continue
      parts +=
        typeof part["text"] === "string" ? Tokens.text(model, part["text"]).tokens :
        part["type"] === "image_url" || part["type"] === "image" ? Prompt.imageTokens :
        OTHER_PART_TOKENS
    }
  }
  return Tokens.chat(model, textual).tokens + parts
}

/**
 * A `json_schema` response format is part of the prompt, billed as input: counted the way
 * `sluice estimate` counts it (`Tokens.schema`: the schema's JSON text and its name).
 */
export const schemaTokens = (format: unknown, model = ""): number => {
  if (!isObject(format) || format["type"] !== "json_schema") return 0
  const spec = format["json_schema"]
  if (!isObject(spec) || !isObject(spec["schema"])) return 0
  return Tokens.schema(model, { name: typeof spec["name"] === "string" ? spec["name"] : "", schema: spec["schema"] }).tokens
}

const SENTENCES = [
  (s: string) => `Here is a short reply about "${s}".`,
  (s: string) => `Emulated answer: "${s}" has been considered.`,
  (s: string) => `Noted. Regarding "${s}", everything looks fine.`,
  (s: string) => `Thanks for asking about "${s}".`
] as const

const snippetOf = (text: string): string => {
  const flat = text.replace(/\s+/g, " ").trim()
  if (flat.length <= 60) return flat
  const cut = flat.slice(0, 60)
  const space = cut.lastIndexOf(" ")
  return `${space > 20 ? cut.slice(0, space) : cut}...`
}

const lastUserText = (messages: ReadonlyArray<unknown>): string => {
  for (let i = messages.length - 1; i >= 0; i--) {
    const message = messages[i]
    if (isObject(message) && message["role"] === "user") return partsText(message["content"])
  }
  return ""
}

const answerChat = (body: Obj, digest: Buffer, ctx: AnswerContext): Answer => {
  const messages = body["messages"] as ReadonlyArray<unknown>
  const format = body["response_format"]
  const n = typeof body["n"] === "number" ? body["n"] : 1
  const choices: Array<Record<string, unknown>> = []
  let outputTokens = 0
  for (let index = 0; index < n; index++) {
    const random = seededRandom((digest.readUInt32BE(0) + Math.imul(index, 0x9e3779b9)) >>> 0)
    const content = chatContent(messages, format, random, ctx.invalidJson && index === 0, digest)
    outputTokens += Math.max(1, approxTokens(content.length))
    choices.push({
      index,
      message: { role: "assistant", content, refusal: null },
      finish_reason: "stop",
      logprobs: null
    })
  }
  // No model name, no tokenizer: Tokens counts ~4 characters a token.
  const model = ctx.approximateTokens === true ? "" : typeof body["model"] === "string" ? body["model"] : ""
  const inputTokens = promptTokens(messages, model) + schemaTokens(format, model)
  return {
    inputTokens,
    outputTokens,
    body: {
      id: `chatcmpl-${ctx.id}`,
      object: "chat.completion",
      created: ctx.created,
      model: body["model"],
      choices,
      usage: {
        prompt_tokens: inputTokens,
        completion_tokens: outputTokens,
        total_tokens: inputTokens + outputTokens,
        prompt_tokens_details: { cached_tokens: 0 },
        completion_tokens_details: { reasoning_tokens: 0 }
      },
      system_fingerprint: null
    }
  }
}

const chatContent = (
  messages: ReadonlyArray<unknown>,
  format: unknown,
  random: () => number,
  invalid: boolean,
  digest: Buffer
): string => {
  const snippet = snippetOf(lastUserText(messages)) || "your request"
  const sentence = SENTENCES[Math.floor(random() * SENTENCES.length)]!(snippet)
  if (!isObject(format) || format["type"] === "text") return sentence
  const spec = format["json_schema"]
  const schemaMode = format["type"] === "json_schema"
  const value = schemaMode ? valueForSchema(isObject(spec) ? (spec["schema"] ?? {}) : {}, random) : { answer: sentence, score: Math.round(random() * 100) / 100 }
  const json = JSON.stringify(value) ?? "null"
  if (!invalid) return json
  // Fault: half the time truncated JSON, half the time well-formed JSON the schema does not describe.
  if (schemaMode && (digest[19]! & 1) === 0) return JSON.stringify({ emulator_invalid_output: sentence })
  return `${json.slice(0, Math.max(1, Math.floor(json.length / 2)))}\u2026`
}

const answerEmbeddings = (body: Obj, ctx: AnswerContext): Answer => {
  const items = embeddingItems(body["input"]) ?? []
  const dimensions = typeof body["dimensions"] === "number" ? body["dimensions"] : DEFAULT_EMBEDDING_DIMENSIONS
  const base64 = body["encoding_format"] === "base64"
  let inputTokens = 0
  const data = items.map((item, index) => {
    inputTokens += typeof item === "string" ? Math.max(1, approxTokens(item.length)) : item.length
    const vector = embeddingVector(`${ctx.seed}\u0000${String(body["model"])}\u0000${JSON.stringify(item)}`, dimensions)
    const embedding = base64 ? Buffer.from(Float32Array.from(vector).buffer).toString("base64") : vector
    return { object: "embedding", index, embedding }
  })
  return {
    inputTokens,
    outputTokens: 0,
    body: { object: "list", data, model: body["model"], usage: { prompt_tokens: inputTokens, total_tokens: inputTokens } }
  }
}

/** A deterministic unit vector (rounded to float32 precision so float and base64 agree). */
const embeddingVector = (key: string, dimensions: number): Array<number> => {
  const random = seededRandom(sha1(key).readUInt32BE(0))
  const raw = Array.from({ length: dimensions }, () => random() * 2 - 1)
  const norm = Math.sqrt(raw.reduce((sum, x) => sum + x * x, 0)) || 1
  return raw.map((x) => Math.fround(x / norm))
}

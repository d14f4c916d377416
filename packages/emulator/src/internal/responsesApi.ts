/**
 * OpenAI's Responses API (`POST /v1/responses`) over the shared answer engine: a request is
 * checked, seen as the equivalent chat request (`instructions` -> a system message, `input` ->
 * messages, `text.format` -> `response_format`), answered by answers.ts, and the chat answer is
 * returned as a Response object (`output[]` with one `message` item of `output_text` content,
 * `usage.input_tokens/output_tokens`). A structured request gets JSON conforming to its schema,
 * as in chat completions.
 */
import { answerRequest, CHAT_ENDPOINT, checkRequest, isStructured } from "./answers.js"
import { ApiError, invalidRequest, missingParameter } from "./errors.js"

type Obj = { readonly [key: string]: unknown }
const isObject = (value: unknown): value is Obj => typeof value === "object" && value !== null && !Array.isArray(value)

const ROLES = ["user", "assistant", "system", "developer"]
const PART_TYPES = ["input_text", "input_image", "input_file", "output_text", "refusal"]
const FORMAT_TYPES = ["text", "json_schema", "json_object"]

const invalid = (param: string, message: string): ApiError => invalidRequest(message, param, "invalid_value")

/** The 400 the Responses API gives for this body, or undefined. */
export const checkResponsesRequest = (body: unknown): ApiError | undefined => {
  if (!isObject(body)) return invalidRequest("The request body must be a JSON object.")
  if (typeof body["model"] !== "string" || body["model"].length === 0) return missingParameter("model")
  if (body["stream"] === true) return invalid("stream", "Streaming is not supported by the sluice emulator.")
  if (body["background"] === true) return invalid("background", "Background responses are not supported by the sluice emulator.")
  const input = body["input"]
  if (input === undefined || input === null) return missingParameter("input")
  if (typeof input !== "string") {
    if (!Array.isArray(input) || input.length === 0) return invalid("input", "Invalid 'input': expected a string or a non-empty array of input items.")
    for (let i = 0; i < input.length; i++) {
      const problem = checkItem(input[i], `input[${i}]`)
      if (problem !== undefined) return problem
    }
  }
  const instructions = body["instructions"]
  if (instructions !== undefined && instructions !== null && typeof instructions !== "string") {
    return invalid("instructions", "Invalid 'instructions': expected a string.")
  }
  const max = body["max_output_tokens"]
  if (max !== undefined && max !== null && (!Number.isInteger(max) || (max as number) < 16)) {
    return invalid("max_output_tokens", `Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got ${JSON.stringify(max)} instead.`)
  }
  const text = body["text"]
  if (text !== undefined && text !== null) {
    if (!isObject(text)) return invalid("text", "Invalid 'text': expected an object.")
    const format = text["format"]
    if (format !== undefined && format !== null) {
      if (!isObject(format) || !FORMAT_TYPES.includes(format["type"] as string)) {
        return invalid("text.format.type", "Invalid 'text.format.type': expected 'text', 'json_schema' or 'json_object'.")
      }
      if (format["type"] === "json_schema") {
        if (typeof format["name"] !== "string" || format["name"].length === 0) return missingParameter("text.format.name")
        if (!isObject(format["schema"])) return missingParameter("text.format.schema")
      }
    }
  }
  return undefined
}

/** An input item: a message (`{role, content}`, `type: "message"` optional); other item types (tool outputs …) pass. */
const checkItem = (item: unknown, at: string): ApiError | undefined => {
  if (!isObject(item)) return invalid(at, `Invalid '${at}': expected an object.`)
  if (item["type"] !== undefined && item["type"] !== "message") return undefined
  if (!ROLES.includes(item["role"] as string)) {
    return invalid(`${at}.role`, `Invalid value for '${at}.role': expected one of ${ROLES.map((r) => `'${r}'`).join(", ")}.`)
  }
  const content = item["content"]
  if (typeof content === "string") return undefined
  if (!Array.isArray(content)) return missingParameter(`${at}.content`)
  for (let j = 0; j < content.length; j++) {
    const part: unknown = content[j]
    const path = `${at}.content[${j}]`
    if (!isObject(part) || !PART_TYPES.includes(part["type"] as string)) {
      const type = isObject(part) ? part["type"] : undefined
      return invalid(`${path}.type`, `Invalid value: ${JSON.stringify(type ?? null)}. Supported values are: ${PART_TYPES.map((t) => `'${t}'`).join(", ")}.`)
    }
    if ((part["type"] === "input_text" || part["type"] === "output_text") && typeof part["text"] !== "string") {
      return missingParameter(`${path}.text`)
    }
  }
  return undefined
}

/** One content part as a chat part: text stays text, an image URL an `image_url`, anything else a file. */
const chatPart = (part: Obj): Obj => {
  if (typeof part["text"] === "string") return { type: "text", text: part["text"] }
  if (part["type"] === "input_image" && typeof part["image_url"] === "string") {
    return { type: "image_url", image_url: { url: part["image_url"] } }
  }
  return { type: "file", file: {} }
}

/** The chat-completions body answers.ts answers for a Responses request that passed the checks. */
export const toChatBody = (body: Obj): Record<string, unknown> => {
  const messages: Array<Obj> = []
  if (typeof body["instructions"] === "string" && body["instructions"].length > 0) messages.push({ role: "system", content: body["instructions"] })
  const input = body["input"]
  if (typeof input === "string") messages.push({ role: "user", content: input })
  else {
    for (const item of input as ReadonlyArray<Obj>) {
      if (item["type"] !== undefined && item["type"] !== "message") continue
      const role = item["role"] === "developer" ? "system" : item["role"]
      const content = item["content"]
      messages.push({ role, content: typeof content === "string" ? content : (content as ReadonlyArray<Obj>).map(chatPart) })
    }
  }
  const chat: Record<string, unknown> = { model: body["model"], messages }
  const format = isObject(body["text"]) ? body["text"]["format"] : undefined
  if (isObject(format) && format["type"] === "json_schema") {
    chat["response_format"] = { type: "json_schema", json_schema: { name: format["name"], schema: format["schema"] } }
  } else if (isObject(format) && format["type"] === "json_object") {
    chat["response_format"] = { type: "json_object" }
  }
  return chat
}

export interface ResponsesAnswerContext {
  readonly seed: string
  /** Unix seconds. */
  readonly created: number
  /** Hex identity of the response and its message item. */
  readonly id: string
  readonly invalidJson: boolean
  /** See AnswerContext.approximateTokens. */
  readonly approximateTokens?: boolean | undefined
}

/** True when the request asks for JSON (the target of the invalidJsonRate fault). */
export const isStructuredResponse = (chat: Obj): boolean => isStructured(CHAT_ENDPOINT, chat)

/** Answers a request that passed `checkResponsesRequest` (throws the chat check's 400, if any). */
export const answerResponses = (body: Obj, chat: Obj, ctx: ResponsesAnswerContext) => {
  const problem = checkRequest(CHAT_ENDPOINT, chat)
  if (problem !== undefined) throw new ApiError(400, problem.message, problem.type, problem.param, problem.code)
  const answer = answerRequest(CHAT_ENDPOINT, chat, JSON.stringify(chat), { seed: ctx.seed, created: ctx.created, id: ctx.id, invalidJson: ctx.invalidJson, approximateTokens: ctx.approximateTokens })
  const choice = (answer.body["choices"] as ReadonlyArray<Obj>)[0]!
  const text = (choice["message"] as Obj)["content"] as string
  const format = isObject(body["text"]) && isObject(body["text"]["format"]) ? body["text"]["format"] : { type: "text" }
  return {
    inputTokens: answer.inputTokens,
    outputTokens: answer.outputTokens,
    body: {
      id: `resp_${ctx.id}`,
      object: "response",
      created_at: ctx.created,
      status: "completed",
      completed_at: ctx.created,
      background: false,
      error: null,
      incomplete_details: null,
      instructions: typeof body["instructions"] === "string" ? body["instructions"] : null,
      max_output_tokens: typeof body["max_output_tokens"] === "number" ? body["max_output_tokens"] : null,
      model: body["model"],
      output: [
        {
          id: `msg_${ctx.id}`,
          type: "message",
          status: "completed",
          role: "assistant",
          content: [{ type: "output_text", text, annotations: [], logprobs: [] }]
        }
      ],
      parallel_tool_calls: true,
      previous_response_id: null,
      reasoning: { effort: null, summary: null },
      service_tier: "default",
      store: body["store"] !== false,
      temperature: typeof body["temperature"] === "number" ? body["temperature"] : 1,
      text: { format, verbosity: "medium" },
      tool_choice: "auto",
      tools: [],
      top_p: typeof body["top_p"] === "number" ? body["top_p"] : 1,
      truncation: "disabled",
      usage: {
        input_tokens: answer.inputTokens,
        input_tokens_details: { cached_tokens: 0, cache_write_tokens: 0 },
        output_tokens: answer.outputTokens,
        output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: answer.inputTokens + answer.outputTokens
      },
      user: null,
      metadata: isObject(body["metadata"]) ? body["metadata"] : {}
    }
  }
}

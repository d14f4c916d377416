/**
 * Anthropic Messages params: the checks a real endpoint makes (in a batch they become
 * `errored` results, since params are validated after create) and deterministic answers.
 *
 * Answers reuse the OpenAI answer generator (answers.ts, schemaValue.ts): the params are
 * seen as the equivalent chat request (system + messages; a forced tool's `input_schema` as a
 * JSON schema response format), so a pipeline switched between the two wire formats gets the
 * same content. A forced tool is answered with a `tool_use` block whose `input` conforms to
 * its schema; anything else with a text block.
 */
import { Tokens } from "@sluice/core"
import { answerRequest, CHAT_ENDPOINT, promptTokens } from "./answers.js"

type Obj = { readonly [key: string]: unknown }
const isObject = (value: unknown): value is Obj => typeof value === "object" && value !== null && !Array.isArray(value)

export const CUSTOM_ID_PATTERN = /^[a-zA-Z0-9_-]{1,64}$/
const TOOL_NAME_PATTERN = /^[a-zA-Z0-9_-]{1,128}$/

/**
 * OpenAI parameter names the Messages API refuses ("Extra inputs are not permitted"). Only
 * these are refused: an unknown name may be a newer Anthropic parameter.
 */
const OPENAI_ONLY = [
  "response_format", "n", "seed", "frequency_penalty", "presence_penalty", "logprobs", "top_logprobs",
  "logit_bias", "max_completion_tokens", "stop", "user", "parallel_tool_calls", "functions",
  "function_call", "stream_options", "modalities", "reasoning_effort"
]

/** Why the Messages API would refuse these params (an `invalid_request_error` message), or undefined. */
export const checkParams = (params: unknown): string | undefined => {
  if (!isObject(params)) return "params: Input should be a valid dictionary"
  for (const key of OPENAI_ONLY) if (key in params) return `${key}: Extra inputs are not permitted`
  const model = params["model"]
  if (model === undefined) return "model: Field required"
  if (typeof model !== "string" || model.length === 0) return "model: Input should be a valid string"
  const maxTokens = params["max_tokens"]
  if (maxTokens === undefined) return "max_tokens: Field required"
  if (typeof maxTokens !== "number" || !Number.isInteger(maxTokens)) return "max_tokens: Input should be a valid integer"
  if (maxTokens < 1) return "max_tokens: Input should be greater than or equal to 1"
  if (params["stream"] === true) return "stream: Message Batches requests cannot be streamed"
  const messages = params["messages"]
  if (messages === undefined) return "messages: Field required"
  if (!Array.isArray(messages)) return "messages: Input should be a valid list"
  if (messages.length === 0) return "messages: List should have at least 1 item"
  for (let i = 0; i < messages.length; i++) {
    const message: unknown = messages[i]
    if (!isObject(message)) return `messages.${i}: Input should be a valid dictionary`
    if (message["role"] !== "user" && message["role"] !== "assistant") {
      return `messages.${i}.role: Input should be 'user' or 'assistant'`
    }
    const content = message["content"]
    if (content === undefined) return `messages.${i}.content: Field required`
    if (typeof content !== "string" && !Array.isArray(content)) return `messages.${i}.content: Input should be a valid string or list`
    if (Array.isArray(content)) {
      const problem = checkBlocks(content, `messages.${i}.content`)
      if (problem !== undefined) return problem
    }
  }
  const system = params["system"]
  if (system !== undefined && typeof system !== "string" && !Array.isArray(system)) return "system: Input should be a valid string or list"
  if (Array.isArray(system)) {
    for (let j = 0; j < system.length; j++) {
      const block: unknown = system[j]
      if (!isObject(block) || block["type"] !== "text") return `system.${j}.type: Input should be 'text'`
    }
    const problem = checkBlocks(system, "system")
    if (problem !== undefined) return problem
  }
  const temperature = params["temperature"]
  if (temperature !== undefined && (typeof temperature !== "number" || temperature < 0 || temperature > 1)) {
    return "temperature: Input should be a number between 0 and 1"
  }
  const stops = params["stop_sequences"]
  if (stops !== undefined && (!Array.isArray(stops) || stops.some((s) => typeof s !== "string"))) {
    return "stop_sequences: Input should be a valid list of strings"
  }
  const tools = params["tools"]
  const names = new Set<string>()
  if (tools !== undefined) {
    if (!Array.isArray(tools)) return "tools: Input should be a valid list"
    for (let i = 0; i < tools.length; i++) {
      const tool: unknown = tools[i]
      if (!isObject(tool)) return `tools.${i}: Input should be a valid dictionary`
      const name = tool["name"]
      if (typeof name !== "string" || !TOOL_NAME_PATTERN.test(name)) {
        return `tools.${i}.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'`
      }
      names.add(name)
      // Server tools (web search …) carry a `type` and no schema.
      if (tool["type"] !== undefined && tool["type"] !== "custom") continue
      const schema = tool["input_schema"]
      if (!isObject(schema)) return `tools.${i}.input_schema: Field required`
      if (schema["type"] !== "object") return `tools.${i}.input_schema.type: Input should be 'object'`
    }
  }
  const choice = params["tool_choice"]
  if (choice !== undefined) {
    if (!isObject(choice) || !["auto", "any", "tool", "none"].includes(choice["type"] as string)) {
      return "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'"
    }
    if (choice["type"] === "tool") {
      const name = choice["name"]
      if (typeof name !== "string") return "tool_choice.name: Field required"
      if (!names.has(name)) return `tool_choice: Tool '${name}' not found in tools`
    }
    if (choice["type"] !== "none" && choice["type"] !== "auto" && names.size === 0) {
      return "tool_choice: tools must be given when tool_choice forces a tool"
    }
  }
  return undefined
}

const IMAGE_MEDIA_TYPES = ["image/jpeg", "image/png", "image/gif", "image/webp"]
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

/**
 * Content blocks as the Messages API checks them: each an object with a `type`; `text` with a
 * non-empty string; `image` with a `source` of type `base64` (`media_type` JPEG, PNG, GIF or
 * WebP, `data` base64), `url` (an http(s) URL; the emulator fetches nothing) or `file`
 * (`file_id`). Other block types (tool use and results, documents, thinking …) pass unchecked.
 */
const checkBlocks = (blocks: ReadonlyArray<unknown>, at: string): string | undefined => {
  for (let j = 0; j < blocks.length; j++) {
    const block: unknown = blocks[j]
    const path = `${at}.${j}`
    if (!isObject(block)) return `${path}: Input should be a valid dictionary`
    const type = block["type"]
    if (typeof type !== "string") return `${path}.type: Field required`
    if (type === "text") {
      if (typeof block["text"] !== "string") return `${path}.text.text: Input should be a valid string`
      if (block["text"].length === 0) return `${path}: text content blocks must be non-empty`
      continue
    }
    if (type !== "image") continue
    const source = block["source"]
    if (!isObject(source)) return `${path}.image.source: Field required`
    switch (source["type"]) {
      case "base64": {
        const mediaType = source["media_type"]
        if (typeof mediaType !== "string" || !IMAGE_MEDIA_TYPES.includes(mediaType)) {
          return `${path}.image.source.base64.media_type: Input should be ${IMAGE_MEDIA_TYPES.map((t) => `'${t}'`).join(", ")}`
        }
        const data = source["data"]
        if (typeof data !== "string" || data.length === 0 || data.length % 4 !== 0 || !BASE64.test(data)) {
          return `${path}.image.source.base64.data: Input should be a valid base64 string`
        }
        continue
      }
      case "url":
        if (typeof source["url"] !== "string" || !/^https?:\/\/[^\s/]+/i.test(source["url"])) {
          return `${path}.image.source.url.url: Input should be a valid http(s) URL`
        }
        continue
      case "file":
        if (typeof source["file_id"] !== "string") return `${path}.image.source.file.file_id: Field required`
        continue
      default:
        return `${path}.image.source: Input tag ${JSON.stringify(source["type"] ?? null)} does not match any of the expected tags: 'base64', 'url', 'file'`
    }
  }
  return undefined
}

/** The tool the model is forced to call (`tool_choice` `tool`, or `any` with a single tool), if any. */
export const forcedTool = (params: Obj): { readonly name: string; readonly schema: unknown } | undefined => {
  const choice = params["tool_choice"]
  const tools = Array.isArray(params["tools"]) ? (params["tools"] as ReadonlyArray<unknown>).filter(isObject) : []
  if (!isObject(choice)) return undefined
  const pick =
    choice["type"] === "tool" ? tools.find((t) => t["name"] === choice["name"]) :
    choice["type"] === "any" && tools.length === 1 ? tools[0] :
    undefined
  if (pick === undefined || typeof pick["name"] !== "string") return undefined
  return { name: pick["name"], schema: pick["input_schema"] ?? { type: "object" } }
}

const systemText = (system: unknown): string | undefined => {
  if (typeof system === "string") return system.length > 0 ? system : undefined
  if (!Array.isArray(system)) return undefined
  const texts = system.filter(isObject).map((b) => b["text"]).filter((t): t is string => typeof t === "string")
  return texts.length > 0 ? texts.join("\n") : undefined
}

export interface AnthropicAnswerContext {
  readonly seed: string
  /** Hex identity of this answer (message and tool_use ids). */
  readonly id: string
  /** Fault: a forced tool's input does not conform to its schema. */
  readonly invalidJson: boolean
  /** See AnswerContext.approximateTokens. */
  readonly approximateTokens?: boolean | undefined
}

export interface AnthropicAnswer {
  readonly message: Record<string, unknown>
  readonly inputTokens: number
  readonly outputTokens: number
}

/** Answers params that passed `checkParams` with a Message object, as the SDK types it. */
export const answerParams = (params: Obj, ctx: AnthropicAnswerContext): AnthropicAnswer => {
  const system = systemText(params["system"])
  const messages = (params["messages"] as ReadonlyArray<Obj>).map((m) => ({ role: m["role"], content: m["content"] }))
  const tool = forcedTool(params)
  const body: Record<string, unknown> = {
    model: params["model"],
    messages: system === undefined ? messages : [{ role: "system", content: system }, ...messages],
    ...(tool === undefined ? {} : { response_format: { type: "json_schema", json_schema: { name: tool.name, schema: tool.schema } } })
  }
  const answer = answerRequest(CHAT_ENDPOINT, body, JSON.stringify(body), {
    seed: ctx.seed,
    created: 0,
    id: ctx.id,
    invalidJson: ctx.invalidJson,
    approximateTokens: ctx.approximateTokens
  })
  const choice = (answer.body["choices"] as ReadonlyArray<Obj>)[0]!
  const content = (choice["message"] as Obj)["content"] as string
  // Tool definitions are part of the prompt (counted here, not as the stand-in response format).
  const model = ctx.approximateTokens === true ? "" : String(params["model"])
  const toolsTokens = params["tools"] === undefined ? 0 : Tokens.text(model, JSON.stringify(params["tools"])).tokens
  const inputTokens = promptTokens(body["messages"] as ReadonlyArray<unknown>, model) + toolsTokens
  const maxTokens = params["max_tokens"] as number

  let blocks: Array<Record<string, unknown>>
  let stopReason: string
  let outputTokens = answer.outputTokens
  if (tool !== undefined) {
    let input: unknown
    try {
      input = JSON.parse(content)
    } catch {
      input = undefined
    }
    // The truncated-JSON fault of the OpenAI answer cannot be a tool input: a non-conforming object instead.
    if (!isObject(input)) input = { emulator_invalid_output: content }
    blocks = [{ type: "tool_use", id: `toolu_${ctx.id}`, name: tool.name, input, caller: { type: "direct" } }]
    stopReason = "tool_use"
  } else {
    let text = content
    stopReason = "end_turn"
    if (outputTokens > maxTokens) {
      text = text.slice(0, maxTokens * 4)
      outputTokens = maxTokens
      stopReason = "max_tokens"
    }
    blocks = [{ type: "text", text, citations: null }]
  }
  return {
    inputTokens,
    outputTokens,
    message: {
      id: `msg_${ctx.id}`,
      type: "message",
      role: "assistant",
      model: params["model"],
      content: blocks,
      stop_reason: stopReason,
      stop_sequence: null,
      stop_details: null,
      container: null,
      diagnostics: null,
      usage: {
        input_tokens: inputTokens,
        output_tokens: outputTokens,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 0,
        cache_creation: { ephemeral_1h_input_tokens: 0, ephemeral_5m_input_tokens: 0 },
        inference_geo: null,
        output_tokens_details: null,
        server_tool_use: null,
        service_tier: "batch",
        speed: null
      }
    }
  }
}

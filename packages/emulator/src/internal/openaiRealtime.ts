/**
 * OpenAI's real-time endpoints — `POST /v1/chat/completions`, `/v1/embeddings`, `/v1/responses`
 * (and the same under Azure's and gateways' roots, see router.ts) — on the common path of
 * realtime.ts: OpenAI's error shape, its `x-ratelimit-*` headers, its 429 messages.
 * Chat completions and embeddings answer exactly what a batch answers for the same body.
 */
import { answerRequest, CHAT_ENDPOINT, checkRequest, EMBEDDINGS_ENDPOINT, isStructured, unknownModel } from "./answers.js"
import { toUnixSeconds } from "./clock.js"
import { ApiError } from "./errors.js"
import { randomHex } from "./hash.js"
import type { Reply } from "./http.js"
import { goDuration, openAiRateLimitHeaders, retryAfterHeaders } from "./rateLimitHeaders.js"
import type { RealtimeEndpoint, RealtimeWire } from "./realtime.js"
import { answerResponses, checkResponsesRequest, isStructuredResponse, toChatBody } from "./responsesApi.js"

type Obj = { readonly [key: string]: unknown }
const isObject = (value: unknown): value is Obj => typeof value === "object" && value !== null && !Array.isArray(value)

export const RESPONSES_ENDPOINT = "/v1/responses"

/** The organisation the emulator's 429 messages name. */
const ORGANIZATION = "org-sluice-emulator"

export const openAiWire: RealtimeWire = {
  api: "openai",
  rateLimitHeaders: (state) => openAiRateLimitHeaders(state),
  rateLimitFault: (ms) =>
    new ApiError(429, "Rate limit reached for requests (sluice emulator). Please try again later.", "requests", null, "rate_limit_exceeded", retryAfterHeaders(ms, true)),
  serverFault: (status) => new ApiError(status, "The server had an error while processing your request. Sorry about that!", "server_error"),
  overLimit: (over, model, headers) => {
    const per = over.dimension === "requests" ? "requests per min (RPM)" : "tokens per min (TPM)"
    if (over.retryAfterMs === undefined) {
      // As OpenAI answers a request bigger than the whole limit: a 429 that no wait cures.
      return new ApiError(
        429,
        `Request too large for ${model} in organization ${ORGANIZATION} on ${per}: Limit ${over.limit}, Requested ${over.requested}. The input or output tokens must be reduced in order to run successfully.`,
        over.dimension,
        null,
        "rate_limit_exceeded"
      )
    }
    return new ApiError(
      429,
      `Rate limit reached for ${model} in organization ${ORGANIZATION} on ${per}: Limit ${over.limit}, Used ${over.used}, Requested ${over.requested}. Please try again in ${goDuration(over.retryAfterMs)}.`,
      over.dimension,
      null,
      "rate_limit_exceeded",
      headers ? retryAfterHeaders(over.retryAfterMs, true) : {}
    )
  },
  render: (reply: Reply, error, headers) => {
    if (!(error instanceof ApiError)) return false
    reply.json(error.status, error.body, { ...headers, ...error.headers })
    return true
  },
  answerHeaders: () => ({})
}

const modelOf = (body: unknown): string | undefined => (isObject(body) && typeof body["model"] === "string" ? body["model"] : undefined)

const checkModel: RealtimeEndpoint["checkModel"] = (body, models) => {
  const unknown = unknownModel(models, body)
  if (unknown !== undefined) throw new ApiError(404, unknown.message, unknown.type, unknown.param, unknown.code)
}

/** Chat completions or embeddings: the batch answer of the same body. */
const sameAsBatch = (endpoint: string): RealtimeEndpoint => ({
  wire: openAiWire,
  endpoint,
  modelOf,
  checkModel,
  answer: async (body, tools) => {
    const problem = checkRequest(endpoint, body)
    if (problem !== undefined) throw new ApiError(400, problem.message, problem.type, problem.param, problem.code)
    const request = body as Obj
    const bodyJson = JSON.stringify(request)
    const invalidJson = await tools.invalidJson(isStructured(endpoint, request), bodyJson)
    return answerRequest(endpoint, request, bodyJson, { seed: tools.seed, created: toUnixSeconds(tools.clock()), id: randomHex(12), invalidJson, approximateTokens: tools.approximateTokens })
  }
})

export const chatCompletions: RealtimeEndpoint = sameAsBatch(CHAT_ENDPOINT)
export const embeddings: RealtimeEndpoint = sameAsBatch(EMBEDDINGS_ENDPOINT)

export const responses: RealtimeEndpoint = {
  wire: openAiWire,
  endpoint: RESPONSES_ENDPOINT,
  modelOf,
  checkModel,
  answer: async (body, tools) => {
    const problem = checkResponsesRequest(body)
    if (problem !== undefined) throw problem
    const request = body as Obj
    const chat = toChatBody(request)
    const invalidJson = await tools.invalidJson(isStructuredResponse(chat), JSON.stringify(chat))
    return answerResponses(request, chat, { seed: tools.seed, created: toUnixSeconds(tools.clock()), id: randomHex(12), invalidJson, approximateTokens: tools.approximateTokens })
  }
}

/** The real-time endpoint of a POST to `rest` (the segments after an OpenAI API root), if any. */
export const openAiRealtimeEndpoint = (method: string, rest: ReadonlyArray<string>): RealtimeEndpoint | undefined => {
  if (method !== "POST") return undefined
  const path = rest.join("/")
  return path === "chat/completions" ? chatCompletions : path === "embeddings" ? embeddings : path === "responses" ? responses : undefined
}

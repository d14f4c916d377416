/**
 * Anthropic's real-time Messages API, `POST /v1/messages` (and the Anthropic-shaped gateway's
 * `/anthropic-gateway/v1/messages`), on the common path of realtime.ts: Anthropic's error shape
 * and `request-id`, its `anthropic-ratelimit-*` headers, `retry-after` (seconds only, as
 * Anthropic sends it) on 429s, and 529 `overloaded_error` for the 503s of serverErrorRate.
 * The answer is the batch answer of the same params (a forced tool -> a `tool_use` block whose
 * input conforms to the tool's schema), with `service_tier: "standard"`.
 */
import { answerParams, checkParams, forcedTool } from "./anthropicAnswers.js"
import { replyAnthropicError } from "./anthropicRoutes.js"
import { ApiError, invalidRequest } from "./errors.js"
import { randomHex } from "./hash.js"
import { anthropicRateLimitHeaders, retryAfterHeaders } from "./rateLimitHeaders.js"
import type { RealtimeEndpoint, RealtimeWire } from "./realtime.js"

type Obj = { readonly [key: string]: unknown }
const isObject = (value: unknown): value is Obj => typeof value === "object" && value !== null && !Array.isArray(value)

export const MESSAGES_ENDPOINT = "/v1/messages"

const ORGANIZATION = "00000000-0000-0000-0000-5107ce000000"

export const anthropicWire: RealtimeWire = {
  api: "anthropic",
  rateLimitHeaders: (state, now) => anthropicRateLimitHeaders(state, now),
  rateLimitFault: (ms) => new ApiError(429, "Number of requests has exceeded your rate limit (sluice emulator fault).", "rate_limit_error", null, null, retryAfterHeaders(ms, false)),
  serverFault: (status) =>
    status === 503
      ? new ApiError(529, "Overloaded", "overloaded_error")
      : new ApiError(status, "Internal server error", "api_error"),
  overLimit: (over, _model, headers) => {
    const what = over.dimension === "requests" ? "requests" : "tokens"
    return new ApiError(
      429,
      over.retryAfterMs === undefined
        ? `This request would exceed the rate limit for your organization (${ORGANIZATION}) of ${over.limit} ${what} per minute on its own (it needs ${over.requested}). Please reduce the prompt length or the maximum tokens requested.`
        : `This request would exceed the rate limit for your organization (${ORGANIZATION}) of ${over.limit} ${what} per minute. You can see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later.`,
      "rate_limit_error",
      null,
      null,
      headers && over.retryAfterMs !== undefined ? retryAfterHeaders(over.retryAfterMs, false) : {}
    )
  },
  render: (reply, error, headers) => {
    if (!(error instanceof ApiError)) return false
    replyAnthropicError(reply, new ApiError(error.status, error.message, error.type, error.param, error.code, { ...headers, ...error.headers }))
    return true
  },
  answerHeaders: (reply) => ({ "request-id": reply.requestId })
}

export const messages: RealtimeEndpoint = {
  wire: anthropicWire,
  endpoint: MESSAGES_ENDPOINT,
  modelOf: (body) => (isObject(body) && typeof body["model"] === "string" ? body["model"] : undefined),
  checkModel: (body, models) => {
    const model = isObject(body) ? body["model"] : undefined
    // As the Messages API answers an unknown model: 404 not_found_error.
    if (typeof model === "string" && model.length > 0 && !models.accepts(model)) throw new ApiError(404, `model: ${model}`, "not_found_error")
  },
  answer: async (body, tools) => {
    if (isObject(body) && body["stream"] === true) throw invalidRequest("stream: streaming is not supported by the sluice emulator")
    const problem = checkParams(body)
    if (problem !== undefined) throw invalidRequest(problem)
    const params = body as Obj
    const invalidJson = await tools.invalidJson(forcedTool(params) !== undefined, JSON.stringify(params))
    const answer = answerParams(params, { seed: tools.seed, id: randomHex(12), invalidJson, approximateTokens: tools.approximateTokens })
    const usage = answer.message["usage"] as Obj
    return { ...answer, body: { ...answer.message, usage: { ...usage, service_tier: "standard" } } }
  }
}

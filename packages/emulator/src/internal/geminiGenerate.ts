/**
 * Gemini's real-time `POST /{v}/models/{model}:generateContent` (`v1beta` or `v1`, routed as the
 * batch calls are: geminiRoutes.ts) on the common path of realtime.ts. Google-shaped errors;
 * no rate-limit headers (Gemini sends none): a 429 is RESOURCE_EXHAUSTED with a QuotaFailure
 * and a RetryInfo `retryDelay` in `error.details`. The answer is the batch answer of the same
 * GenerateContentRequest (same translation: geminiWire.ts).
 */
import { answerRequest, CHAT_ENDPOINT, checkRequest, isStructured } from "./answers.js"
import { toUnixSeconds } from "./clock.js"
import { ApiError } from "./errors.js"
import { randomHex } from "./hash.js"
import type { RealtimeEndpoint, RealtimeWire } from "./realtime.js"
import { GeminiError, invalidArgument, isObject, notFound, replyError, toChatBody, toGenerateContentResponse, toGeminiError } from "./geminiWire.js"

export const GENERATE_CONTENT_ENDPOINT = "generateContent"

const retryInfo = (ms: number) => ({ "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay: `${Math.max(1, Math.ceil(ms / 1000))}s` })

export const geminiWire: RealtimeWire = {
  api: "gemini",
  rateLimitHeaders: () => ({}),
  rateLimitFault: (ms) => new GeminiError(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).", [retryInfo(ms)]),
  serverFault: (status) =>
    status === 500
      ? new GeminiError(500, "INTERNAL", "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting")
      : new GeminiError(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
  overLimit: (over, model) => {
    const perMinute = over.dimension === "requests" ? "GenerateRequestsPerMinutePerProjectPerModel" : "GenerateContentInputTokensPerModelPerMinute"
    const metric = over.dimension === "requests" ? "generate_content_requests" : "generate_content_input_token_count"
    const quotaFailure = {
      "@type": "type.googleapis.com/google.rpc.QuotaFailure",
      violations: [
        {
          quotaMetric: `generativelanguage.googleapis.com/${metric}`,
          quotaId: perMinute,
          quotaDimensions: { location: "global", model },
          quotaValue: String(over.limit)
        }
      ]
    }
    const retry = over.retryAfterMs
    return new GeminiError(
      429,
      "RESOURCE_EXHAUSTED",
      `You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.${retry === undefined ? "" : ` Please retry in ${retry / 1000}s.`}`,
      retry === undefined ? [quotaFailure] : [quotaFailure, retryInfo(retry)]
    )
  },
  render: (reply, error, headers) => {
    const gemini = error instanceof GeminiError ? error : error instanceof ApiError ? toGeminiError(error) : undefined
    if (gemini === undefined) return false
    replyError(reply, new GeminiError(gemini.httpStatus, gemini.status, gemini.message, gemini.details, { ...headers, ...gemini.headers }))
    return true
  },
  answerHeaders: () => ({})
}

/** `models/{model}:generateContent` of one API version. */
export const generateContent = (model: string, version: string): RealtimeEndpoint => ({
  wire: geminiWire,
  endpoint: GENERATE_CONTENT_ENDPOINT,
  modelOf: () => model,
  checkModel: (_body, models) => {
    if (!models.accepts(model)) {
      throw notFound(
        `models/${model} is not found for API version ${version}, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.`
      )
    }
  },
  answer: async (body, tools) => {
    if (!isObject(body)) throw invalidArgument("Invalid JSON payload: expected a GenerateContentRequest object.")
    const chat = toChatBody(model, body)
    if ((chat["messages"] as ReadonlyArray<unknown>).length === 0) throw invalidArgument("* GenerateContentRequest.contents: contents is not specified")
    const problem = checkRequest(CHAT_ENDPOINT, chat)
    if (problem !== undefined) throw invalidArgument(problem.message)
    const chatJson = JSON.stringify(chat)
    const invalidJson = await tools.invalidJson(isStructured(CHAT_ENDPOINT, chat), chatJson)
    const answer = answerRequest(CHAT_ENDPOINT, chat, chatJson, { seed: tools.seed, created: toUnixSeconds(tools.clock()), id: randomHex(12), invalidJson, approximateTokens: tools.approximateTokens })
    return { ...answer, body: toGenerateContentResponse(answer.body, model) }
  }
})

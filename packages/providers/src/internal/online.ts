/**
 * One real-time call, shared by the families: send a wire line's request, read the rate-limit
 * signals of the answer whatever its status, and turn the answer into what the runner acts
 * on — a classified `BatchResult` (through the family's batch codec, the answer wrapped as the
 * batch output line would wrap it), or a `ProviderError` when the answer says nothing about
 * the request (429, 5xx, a lost connection) or stops the run (a rejected key, no credit, no
 * such endpoint).
 */
import * as HttpBody from "@effect/platform/HttpBody"
import type { BatchResult } from "@sluice/core"
import { Clock, Effect } from "effect"
import type { OnlineAnswer } from "../BatchProvider.js"
import { ProviderError } from "../ProviderError.js"
import type { RateLimitSnapshot } from "../RateLimit.js"
import { waitOf } from "../RateLimit.js"
import { parseErrorBody, truncate } from "./http.js"
import type { ProviderHttp } from "./http.js"

/** The header that names the row of every real-time request (logs, ledgers, gateways). */
export const customIdHeader = "x-sluice-custom-id"

export interface OnlineRequest {
  /** Path below the base URL. */
  readonly path: string
  /** The request body's JSON text. */
  readonly body: string
  readonly urlParams?: Readonly<Record<string, string>> | undefined
}

export interface OnlineCodec {
  /** The snapshot of an answer's rate-limit signals (its parsed body, for hints carried there). */
  readonly limits: (headers: Readonly<Record<string, string | undefined>>, body: unknown, nowMs: number) => RateLimitSnapshot
  /** The result of an answer the request itself decides (a 2xx, or a 4xx about the request). */
  readonly result: (customId: string, status: number, body: unknown) => BatchResult
  /**
   * An error a 4xx body may carry that is the provider's, not the request's (Gemini: a wrong
   * key is a 400 INVALID_ARGUMENT). Default: none.
   */
  readonly fatal?: ((status: number, text: string) => ProviderError["reason"] | undefined) | undefined
}

const parseJson = (text: string): unknown => {
  try {
    return text.trim() === "" ? null : JSON.parse(text)
  } catch {
    return undefined
  }
}

/** A failure the same request may not hit again: a throttle, an overloaded or broken server. */
const transient = (status: number): boolean => status === 408 || status === 409 || status === 429 || status >= 500

/** Sends one request and classifies its answer (see `OnlineApi.send`). */
export const send = (
  http: ProviderHttp,
  codec: OnlineCodec,
  request: OnlineRequest,
  customId: string,
  timeout: Parameters<ProviderHttp["call"]>[1]["timeout"]
): Effect.Effect<OnlineAnswer, ProviderError> =>
  Effect.gen(function*() {
    const operation = `POST ${request.path}`
    const answer = yield* http.call(
      {
        method: "POST",
        path: request.path,
        urlParams: request.urlParams,
        headers: { [customIdHeader]: customId },
        body: HttpBody.text(request.body, "application/json")
      },
      { timeout }
    )
    const now = yield* Clock.currentTimeMillis
    const body = parseJson(answer.text)
    const limits = codec.limits(answer.headers, body, now)
    const status = answer.status
    if (status >= 200 && status < 300) {
      if (!answer.complete) {
        const result: BatchResult = {
          _tag: "Failed", customId, failure: "permanent", code: "result_too_large",
          message: "the answer is larger than the provider's maxResponseBytes; not read further", status, raw: null
        }
        return { result, limits }
      }
      if (body === undefined || typeof body !== "object" || body === null) {
        // A proxy's error page with a 200, say: nothing to keep, worth asking again later.
        const result: BatchResult = {
          _tag: "Failed", customId, failure: "retryable", code: "invalid_response",
          message: `the answer is not a JSON object: ${truncate(answer.text, 120)}`, status, raw: answer.text
        }
        return { result, limits }
      }
      return { result: codec.result(customId, status, body), limits }
    }
    const error = http.errorOf(operation, status, answer.headers, answer.text, now)
    const fatal = codec.fatal?.(status, answer.text)
    if (fatal !== undefined) return yield* Effect.fail(withReason(error, fatal))
    if (error.reason === "Unauthorized" || error.reason === "Quota") return yield* Effect.fail(error)
    if (transient(status)) {
      const wait = waitOf(limits) ?? error.retryAfterMs
      return yield* Effect.fail(copy(error, { ...(wait === undefined ? {} : { retryAfterMs: wait }), rateLimits: limits }))
    }
    // A 404 for a path the server does not have (a wrong base URL) is no answer about this
    // row: it stops the run rather than failing every row. An unknown model is the row's.
    if (status === 404 && isMissingPath(answer.text)) return yield* Effect.fail(error)
    return { result: codec.result(customId, status, body ?? { error: { message: truncate(answer.text) } }), limits }
  })

/**
 * A 404 body that speaks of the path, not the request: no error code or type at all
 * (`{"detail": "Not Found"}`, "404 page not found"), or OpenAI's "Invalid URL (POST …)".
 */
const isMissingPath = (text: string): boolean => {
  const parsed = parseErrorBody(text)
  if (parsed.code === undefined && parsed.type === undefined) return true
  return parsed.code === undefined && /^invalid url\b/i.test(parsed.message ?? "")
}

const copy = (error: ProviderError, fields: { reason?: ProviderError["reason"]; retryAfterMs?: number; rateLimits?: RateLimitSnapshot }): ProviderError =>
  new ProviderError({
    reason: fields.reason ?? error.reason,
    provider: error.provider,
    operation: error.operation,
    description: error.description,
    ...(error.status === undefined ? {} : { status: error.status }),
    ...(fields.retryAfterMs !== undefined ? { retryAfterMs: fields.retryAfterMs } : error.retryAfterMs === undefined ? {} : { retryAfterMs: error.retryAfterMs }),
    ...(error.endpoint === undefined ? {} : { endpoint: error.endpoint }),
    ...(fields.rateLimits === undefined ? {} : { rateLimits: fields.rateLimits })
  })

const withReason = (error: ProviderError, reason: ProviderError["reason"]) => copy(error, { reason })

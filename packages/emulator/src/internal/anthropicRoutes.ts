/**
 * The Anthropic wire routes, at the same origin as the OpenAI ones:
 *
 *   /v1/messages/batches[/{id}[/cancel|/results]]            the Message Batches API
 *   /anthropic-gateway/v1/batches[/{id}[/cancel|/results]]   the same shape as an
 *       Anthropic-shaped gateway serves it (for other models); its own batches. The prefix
 *       keeps it apart from OpenAI's `/v1/batches` at this origin.
 *   POST /v1/messages, POST /anthropic-gateway/v1/messages   the real-time Messages API
 *       (anthropicMessages.ts, on the common real-time path)
 *
 * Auth: `x-api-key: K` or `Authorization: Bearer K` (a key is required; it must equal the
 * emulator's `apiKey` when one is set). The Messages API also requires `anthropic-version`
 * (any `YYYY-MM-DD`); the gateway shape does not. Errors are Anthropic-shaped:
 * `{type: "error", error: {type, message}, request_id}` with a `request-id` header.
 */
import type { IncomingMessage } from "node:http"
import type { AnthropicBatches } from "./anthropicBatches.js"
import { ApiError, invalidRequest } from "./errors.js"
import { intParam, type Reply } from "./http.js"
import type { AnthropicSurface } from "./store.js"

export interface AnthropicRoute {
  readonly surface: AnthropicSurface
  /** `batches` (the Message Batches routes) or `messages` (the real-time Messages API). */
  readonly resource: "batches" | "messages"
  /** Path segments after `…/batches` (or `…/messages`). */
  readonly rest: ReadonlyArray<string>
}

/** The Anthropic route of a path (segments without the leading slash), or undefined. */
export const anthropicRoute = (segments: ReadonlyArray<string>): AnthropicRoute | undefined => {
  if (segments[0] === "v1" && segments[1] === "messages") {
    return segments[2] === "batches"
      ? { surface: "anthropic", resource: "batches", rest: segments.slice(3) }
      : { surface: "anthropic", resource: "messages", rest: segments.slice(2) }
  }
  if (segments[0] === "anthropic-gateway" && segments[1] === "v1") {
    if (segments[2] === "batches") return { surface: "gateway", resource: "batches", rest: segments.slice(3) }
    if (segments[2] === "messages") return { surface: "gateway", resource: "messages", rest: segments.slice(3) }
  }
  return undefined
}

const header = (req: IncomingMessage, name: string): string | undefined => {
  const value = req.headers[name]
  return typeof value === "string" && value.length > 0 ? value : undefined
}

/** Checks credentials (and `anthropic-version` on the Messages API); throws a 401/400 ApiError. */
export const checkAnthropicAuth = (apiKey: string | undefined, req: IncomingMessage, route: AnthropicRoute): void => {
  const bearer = /^Bearer\s+(.+)$/i.exec(header(req, "authorization")?.trim() ?? "")?.[1]
  const key = header(req, "x-api-key") ?? bearer
  if (key === undefined) {
    throw new ApiError(
      401,
      route.surface === "anthropic"
        ? "x-api-key header is required (or Authorization: Bearer <key>)"
        : "Authorization header is required: send Authorization: Bearer <key>",
      "authentication_error"
    )
  }
  // The key is never echoed: error messages may end up in logs.
  if (apiKey !== undefined && key !== apiKey) throw new ApiError(401, "invalid x-api-key", "authentication_error")
  if (route.surface === "anthropic") {
    const version = header(req, "anthropic-version")
    if (version === undefined) throw invalidRequest("anthropic-version: header is required")
    if (!/^\d{4}-\d{2}-\d{2}$/.test(version)) throw invalidRequest(`anthropic-version: '${version.slice(0, 40)}' is not a valid version`)
  }
}

/** `scheme://host` the client used (results_url must point back at it). */
const originOf = (req: IncomingMessage): string | undefined => {
  const host = header(req, "x-forwarded-host") ?? header(req, "host")
  if (host === undefined) return undefined
  const proto = header(req, "x-forwarded-proto") ?? "http"
  return `${proto}://${host}`
}

const optional = (query: URLSearchParams, name: string): string | undefined => {
  const value = query.get(name)
  return value === null || value === "" ? undefined : value
}

/** Dispatches an Anthropic route; returns false when no route matches. */
export const handleAnthropic = async (
  batches: AnthropicBatches,
  method: string,
  route: AnthropicRoute,
  query: URLSearchParams,
  reply: Reply
): Promise<boolean> => {
  const [id, action, ...extra] = route.rest
  if (extra.length > 0) return false
  const origin = originOf(reply.req)
  const json = (body: unknown) => reply.json(200, body, { "request-id": reply.requestId })
  const { surface } = route
  if (id === undefined) {
    if (method === "POST") {
      json(await batches.create(reply.req, surface, origin ?? "http://127.0.0.1"))
      return true
    }
    if (method === "GET") {
      const limit = intParam(query, "limit", 20, 1, 1000)
      json(await batches.list(surface, { limit, afterId: optional(query, "after_id"), beforeId: optional(query, "before_id") }, origin))
      return true
    }
    return false
  }
  if (action === undefined) {
    if (method === "GET") {
      json(await batches.retrieve(id, surface, origin))
      return true
    }
    if (method === "DELETE") {
      json(await batches.remove(id, surface))
      return true
    }
    return false
  }
  if (action === "cancel" && method === "POST") {
    json(await batches.cancel(id, surface, origin))
    return true
  }
  if (action === "results" && method === "GET") {
    const file = await batches.results(id, surface)
    await reply.file(file.path, file.bytes, "application/x-jsonl")
    return true
  }
  return false
}

const TYPE_BY_STATUS: Readonly<Record<number, string>> = {
  400: "invalid_request_error",
  401: "authentication_error",
  402: "billing_error",
  403: "permission_error",
  404: "not_found_error",
  413: "request_too_large",
  429: "rate_limit_error",
  500: "api_error",
  502: "api_error",
  503: "api_error",
  504: "timeout_error",
  529: "overloaded_error"
}

/** Renders an error the Anthropic way: the type follows the HTTP status. */
export const replyAnthropicError = (reply: Reply, error: ApiError): void => {
  const type = TYPE_BY_STATUS[error.status] ?? error.type
  reply.json(
    error.status,
    { type: "error", error: { type, message: error.message }, request_id: reply.requestId },
    { ...error.headers, "request-id": reply.requestId }
  )
}

/**
 * Request entry point: the Host check of every route and the test API's guard (access.ts),
 * routing, API-key check, call-level faults, error rendering and the optional access log. The
 * real-time endpoints (chat completions, embeddings, responses, messages, generateContent) go,
 * after the auth check, to realtime.ts, which applies the call faults itself.
 *
 * The OpenAI routes answer under several API roots (aliases of the same handlers, same
 * files and batches):
 *
 *   /v1/...                      OpenAI
 *   /openai/v1/...               Azure OpenAI, v1 API (an `api-version` query is accepted)
 *   /openai/...?api-version=V    Azure OpenAI, versioned API (400 without api-version)
 *   /<prefix>/v1/...             a gateway's path prefix, 1–3 segments (`/azure/v1`, `/gateway/v1`,
 *                                `/proxy/openai/v1` …), when followed by an OpenAI resource
 *
 * Gemini's calls are routed first (see `geminiRoute`): `/v1beta`, `/upload/{v}`, `/download/{v}`,
 * and the Gemini-shaped calls under `/v1`, which Gemini's API shares with OpenAI's.
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import { checkControlRequest, type HostPolicy } from "./access.js"
import { anthropicRoute, checkAnthropicAuth, handleAnthropic, replyAnthropicError } from "./anthropicRoutes.js"
import type { EmulatorClock } from "./clock.js"
import { handleControl } from "./controlRoutes.js"
import { geminiRoute, handleGemini } from "./geminiRoutes.js"
import { ApiError, notFound } from "./errors.js"
import { apiKeyOf, Reply } from "./http.js"
import { messages } from "./anthropicMessages.js"
import { openAiRealtimeEndpoint } from "./openaiRealtime.js"
import { handleOpenAi, type OpenAiContext } from "./openaiRoutes.js"
import type { RealtimeCalls } from "./realtime.js"
import type { RequestCounts } from "./requestCounts.js"
import type { Webhooks } from "./webhooks.js"

export interface RouterContext extends OpenAiContext {
  readonly realtime: RealtimeCalls
  /** Requests per route (`GET /_emulator/requests`). */
  readonly requests: RequestCounts
  readonly apiKey: string | undefined
  /** The Host names every route answers to (see access.ts). */
  readonly hosts: HostPolicy
  /** The clock behind `clock`, for `/_emulator/clock`. */
  readonly emulatorClock: EmulatorClock
  /** Access and lifecycle log; undefined = silent (no log lines are even built). */
  readonly log: ((line: string) => void) | undefined
  /** Signed batch events to a URL (`/_emulator/webhooks`). */
  readonly webhooks: Webhooks
}

export const createHandler =
  (ctx: RouterContext) =>
  (req: IncomingMessage, res: ServerResponse): void => {
    // handle() answers every error itself; this only guards against a throwing user `log` callback.
    handle(ctx, req, res).catch(() => res.destroy())
  }

const invalidUrl = (method: string, path: string) => notFound(`Invalid URL (${method} ${path})`)

/** First segment after the API root of every OpenAI route. */
const OPENAI_RESOURCES: ReadonlySet<string> = new Set(["files", "batches", "chat", "embeddings", "responses"])

export interface OpenAiRoute {
  /** Segments after the API root (`files`, `batches/{id}` …). */
  readonly rest: ReadonlyArray<string>
  /** Azure's versioned API (`/openai/...`): `api-version` is required. */
  readonly versioned: boolean
}

/** The OpenAI-shaped route of a path (segments without the leading slash), or undefined. */
export const openAiRoute = (segments: ReadonlyArray<string>): OpenAiRoute | undefined => {
  if (segments[0] === "v1") return { rest: segments.slice(1), versioned: false }
  if (segments[0] === "openai") {
    if (segments[1] === "v1") return { rest: segments.slice(2), versioned: false }
    if (OPENAI_RESOURCES.has(segments[1] ?? "")) return { rest: segments.slice(1), versioned: true }
    return undefined
  }
  for (let i = 1; i <= 3; i++) {
    if (segments[i] === "v1" && OPENAI_RESOURCES.has(segments[i + 1] ?? "")) return { rest: segments.slice(i + 1), versioned: false }
  }
  return undefined
}

const decodeSegment = (segment: string): string => {
  try {
    return decodeURIComponent(segment)
  } catch {
    return segment
  }
}

const handle = async (ctx: RouterContext, req: IncomingMessage, res: ServerResponse): Promise<void> => {
  const started = ctx.log === undefined ? 0 : performance.now()
  const method = (req.method ?? "GET").toUpperCase()
  const url = new URL(req.url ?? "/", "http://emulator.invalid")
  let reply = new Reply(req, res, false)
  let note = ""
  // Anthropic routes (/v1/messages/batches, /anthropic-gateway/v1/batches) answer errors in their own shape.
  let anthropic: ReturnType<typeof anthropicRoute>
  try {
    ctx.hosts.check(req)
    const segments = url.pathname.split("/").filter((segment) => segment.length > 0).map(decodeSegment)
    if (segments[0] === "_emulator") {
      // One guard for every test-API route, present and future: key, no Origin, JSON bodies.
      checkControlRequest(req, method, ctx.apiKey)
      const control = { ...ctx, log: ctx.log ?? (() => undefined) }
      if (!(await handleControl(control, method, segments.slice(1), reply))) throw invalidUrl(method, url.pathname)
      return
    }
    ctx.requests.add(method, url.pathname)
    // Gemini routes (/v1beta, /upload/{v}, /download/{v}, and the Gemini-shaped calls under /v1)
    // check auth and answer errors in their own shape.
    const gemini = geminiRoute(method, segments, url.searchParams, req)
    if (gemini !== undefined) {
      ;({ reply, note } = await handleGemini(ctx, method, gemini, url, req, res))
      return
    }
    anthropic = anthropicRoute(segments)
    const openAi = anthropic === undefined ? openAiRoute(segments) : undefined
    if (openAi === undefined && anthropic === undefined) throw invalidUrl(method, url.pathname)
    if (anthropic === undefined) checkApiKey(ctx, req)
    else checkAnthropicAuth(ctx.apiKey, req, anthropic)
    if (openAi?.versioned === true && (url.searchParams.get("api-version") ?? "") === "") {
      throw new ApiError(
        400,
        "Missing required query parameter 'api-version' (e.g. ?api-version=2024-10-21), or use the v1 API under /openai/v1.",
        "invalid_request_error",
        "api-version",
        "missing_required_parameter"
      )
    }
    const realtime = anthropic === undefined
      ? openAiRealtimeEndpoint(method, openAi?.rest ?? [])
      : anthropic.resource === "messages" && method === "POST" && anthropic.rest.length === 0 ? messages : undefined
    if (realtime !== undefined) {
      ;({ reply, note } = await ctx.realtime.serve(realtime, url.pathname, req, res))
      return
    }
    if (anthropic?.resource === "messages") throw invalidUrl(method, url.pathname)
    const fault = ctx.faults.decide(`${method} ${url.pathname}`)
    if (fault !== undefined) note = ` [fault ${fault._tag}]`
    if (fault?._tag === "RateLimited") {
      const ms = fault.retryAfterMs
      throw new ApiError(429, "Rate limit reached for requests (sluice emulator). Please try again later.", "requests", null, "rate_limit_exceeded", {
        "retry-after": String(Math.ceil(ms / 1000)),
        "retry-after-ms": String(ms)
      })
    }
    if (fault?._tag === "ServerError") {
      throw new ApiError(fault.status, "The server had an error while processing your request. Sorry about that!", "server_error")
    }
    if (fault?._tag === "Reset") reply = new Reply(req, res, true)
    if (method === "DELETE" && ctx.faults.settings.refuseDeletes) {
      throw new ApiError(403, "You have insufficient permissions for this operation.", anthropic === undefined ? "invalid_request_error" : "permission_error")
    }
    const handled = anthropic !== undefined
      ? await handleAnthropic(ctx.batches.anthropic, method, anthropic, url.searchParams, reply)
      : openAi !== undefined && (await handleOpenAi(ctx, method, openAi.rest, url.searchParams, reply))
    if (!handled) throw invalidUrl(method, url.pathname)
  } catch (error) {
    const render = (e: ApiError) => (anthropic === undefined ? reply.error(e) : replyAnthropicError(reply, e))
    if (res.headersSent || res.destroyed) {
      res.destroy() // failed mid-stream: the client sees a truncated body, as with a real network error
    } else if (error instanceof ApiError) {
      render(error)
    } else {
      ctx.log?.(`internal error on ${method} ${url.pathname}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`)
      render(new ApiError(500, "The sluice emulator failed to handle this request.", "server_error"))
    }
  } finally {
    ctx.log?.(`${method} ${url.pathname}${url.search} -> ${reply.lost ? "reset" : reply.status} ${(performance.now() - started).toFixed(1)}ms${note}`)
  }
}

const checkApiKey = (ctx: RouterContext, req: IncomingMessage): void => {
  if (ctx.apiKey === undefined) return
  const key = apiKeyOf(req)
  if (key === undefined) {
    throw new ApiError(
      401,
      "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
      "invalid_request_error"
    )
  }
  // The key is never echoed: error messages may end up in logs.
  if (key !== ctx.apiKey) throw new ApiError(401, "Incorrect API key provided.", "invalid_request_error", null, "invalid_api_key")
}

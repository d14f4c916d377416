/**
 * HTTP plumbing shared by the providers, over `@effect/platform`'s HttpClient (undici in
 * production, or any client a library user provides). It adds what undici leaves out
 * (timeouts), maps every failure to a `ProviderError` that names the method, the path and
 * the base URL (never its credentials or query string), retries idempotent calls (saying so
 * in the log), and keeps secrets out of every error text.
 *
 * Credentials go to the base URL's origin only, whatever the client: it is told not to
 * follow redirects (fetch: `redirect: "manual"`; undici: `maxRedirections: 0`), redirects
 * are handled here (same origin: followed a few times; another origin: an error naming both,
 * never followed), and a client that followed one anyway is caught by the URL its response
 * answers. Trace context headers (`traceparent`, `b3`) are sent only when the configuration
 * turns them on. Bodies are read up to a cap, then the connection is dropped.
 *
 * Raw `HttpClientError`s never escape from here: they hold the request, whose headers carry
 * the credentials.
 */
import type { HttpBody } from "@effect/platform"
import type { HttpClientError, HttpClientResponse } from "@effect/platform"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as Headers from "@effect/platform/Headers"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type * as Undici from "@effect/platform-node/Undici"
import { Clock, Duration, Effect, Option, Redacted, Stream } from "effect"
import { ProviderError } from "../ProviderError.js"
import { keyProblem } from "./env.js"
import { baseUrlProblem, originOf } from "./origin.js"
import type { RetryOptions } from "./retry.js"
import { parseRetryAfter, withRetry } from "./retry.js"

/** What every provider configuration says about its HTTP calls. */
export interface HttpOptions {
  /**
   * Send the key over `http://` to a host other than this machine (127.0.0.0/8, ::1,
   * localhost). Default false: such a base URL is refused, since the key would cross the
   * network unencrypted. From the environment: `SLUICE_ALLOW_INSECURE_HTTP=1`.
   */
  readonly allowInsecureHttp?: boolean | undefined
  /**
   * Send the current span's trace context (`traceparent`, `b3`) with every request. Default
   * false: a provider gets only the headers its API needs. Turn it on when your program
   * exports traces and the provider (a company gateway, say) should join them. From the
   * environment: `SLUICE_TRACE_PROPAGATION=1`.
   */
  readonly tracePropagation?: boolean | undefined
  /**
   * The longest result line read, in bytes (default 64 MiB, far above any legal answer): a
   * longer line is not held in memory; its row fails (`result_too_large`) when its custom_id
   * can be read from the line's start, else the line is skipped and counted. From the
   * environment: `SLUICE_MAX_RESULT_LINE_BYTES`.
   */
  readonly maxResultLineBytes?: number | undefined
  /** The largest JSON answer read, in bytes (default 64 MiB); a larger one fails the call. */
  readonly maxResponseBytes?: number | undefined
  /**
   * How long one real-time request may take, answer included (default 10 minutes: a long
   * answer of a reasoning model takes minutes). A request that takes longer fails as a
   * timeout and is retried.
   */
  readonly onlineTimeout?: Duration.DurationInput | undefined
}

/** Default of `HttpOptions.onlineTimeout`. */
export const defaultOnlineTimeout = Duration.minutes(10)

/** Default of `HttpOptions.maxResponseBytes`. */
export const defaultMaxResponseBytes = 64 * 1024 * 1024

/** The part of an error body read for its message; the rest is never downloaded. */
export const maxErrorBodyBytes = 64 * 1024

/** Same-origin redirects followed for one call before it fails. */
export const maxRedirects = 5

/** "64 MiB", "512 KiB", "100 bytes". */
export const formatBytes = (n: number): string =>
  n >= 1024 * 1024 && n % (1024 * 1024) === 0 ? `${n / (1024 * 1024)} MiB`
  : n >= 1024 && n % 1024 === 0 ? `${n / 1024} KiB`
  : `${n} bytes`

export interface HttpSettings {
  /** Provider name used in errors ("openai"). */
  readonly provider: string
  /** Base URL every path is appended to, e.g. `https://api.openai.com/v1` (no trailing slash). */
  readonly baseUrl: string
  /** Non-secret headers sent with every request. */
  readonly headers: Readonly<Record<string, string>>
  /**
   * Query parameters appended to every request (Azure's `api-version`). Never part of an
   * error text: operations name only method and path.
   */
  readonly query?: Readonly<Record<string, string>> | undefined
  /** Secret headers (credentials); their values are also scrubbed from every error text. */
  readonly secretHeaders: Readonly<Record<string, Redacted.Redacted<string>>>
  /** Further secrets (e.g. the bare API key) scrubbed from every error text. */
  readonly secrets: ReadonlyArray<Redacted.Redacted<string>>
  /** Timeout of a JSON call (request, response headers and body), per attempt. */
  readonly requestTimeout: Duration.DurationInput
  readonly retry: RetryOptions
  /** Provider error codes (from the error body) that mean "out of credit / quota". */
  readonly quotaCodes: ReadonlySet<string>
  /**
   * Added to the description of a 404, when the base URL itself looks wrong (OpenAI's without
   * its `/v1`): "did you mean …/v1?".
   */
  readonly notFoundHint?: string | undefined
  /** See `HttpOptions`. */
  readonly allowInsecureHttp?: boolean | undefined
  /** See `HttpOptions`. */
  readonly tracePropagation?: boolean | undefined
  /** See `HttpOptions`; default `defaultMaxResponseBytes`. */
  readonly maxResponseBytes?: number | undefined
}

export type Method = "GET" | "POST" | "DELETE"

export interface RequestSpec {
  readonly method: Method
  /** Path below the base URL, starting with "/". Appears in errors, with the base URL shown without credentials or query. */
  readonly path: string
  readonly urlParams?: Readonly<Record<string, string>> | undefined
  readonly headers?: Readonly<Record<string, string>> | undefined
  readonly body?: HttpBody.HttpBody | undefined
}

export interface CallOptions {
  /** Retry transient failures (only for idempotent calls). */
  readonly retry: boolean
  /** Overrides the settings' request timeout for this call. */
  readonly timeout?: Duration.DurationInput | undefined
}

export interface StreamOptions {
  readonly retry: boolean
  /** Fails the stream when no bytes arrive for this long (the download is alive while it moves). */
  readonly idleTimeout: Duration.DurationInput
}

/** Longest provider error text kept in a `ProviderError` description. */
const maxDescription = 500

export const truncate = (text: string, max: number = maxDescription): string =>
  text.length <= max ? text : `${text.slice(0, max)}…`

/** Replaces every occurrence of a secret with "[redacted]". Secrets shorter than 6 chars are ignored. */
export const scrub = (text: string, secrets: ReadonlyArray<string>): string => {
  let out = text
  for (const secret of secrets) {
    if (secret.length >= 6 && out.includes(secret)) out = out.split(secret).join("[redacted]")
  }
  return out
}

/** What a provider error body says: `{error: {code, type, message}}` (OpenAI, Anthropic) or `{message}`. */
export interface ErrorBody {
  readonly code: string | undefined
  readonly type: string | undefined
  readonly message: string | undefined
}

const str = (u: unknown): string | undefined => (typeof u === "string" && u !== "" ? u : undefined)

export const parseErrorBody = (text: string): ErrorBody => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return { code: undefined, type: undefined, message: text.trim() === "" ? undefined : text.trim() }
  }
  if (typeof json !== "object" || json === null) {
    return { code: undefined, type: undefined, message: undefined }
  }
  const record = json as Record<string, unknown>
  const error = record["error"]
  if (typeof error === "object" && error !== null) {
    const e = error as Record<string, unknown>
    return { code: str(e["code"]), type: str(e["type"]), message: str(e["message"]) }
  }
  return { code: undefined, type: str(record["type"]), message: str(error) ?? str(record["message"]) }
}

/** A base URL as errors show it: without credentials, query string or trailing slash. */
export const displayUrl = (baseUrl: string): string => {
  try {
    const url = new URL(baseUrl)
    return `${url.protocol}//${url.host}${url.pathname}`.replace(/\/+$/, "")
  } catch {
    return baseUrl.replace(/[?#].*$/, "").replace(/\/+$/, "")
  }
}

/** The operation label used in errors: method and path, without query string or base URL. */
export const operationOf = (spec: RequestSpec): string => `${spec.method} ${spec.path}`

export interface ProviderHttp {
  readonly settings: HttpSettings
  /** A `ProviderError` for this provider, with secrets scrubbed from the description. */
  readonly error: (fields: {
    readonly reason: ProviderError["reason"]
    readonly operation: string
    readonly description: string
    readonly status?: number | undefined
    readonly retryAfterMs?: number | undefined
  }) => ProviderError
  /**
   * Sends a request and parses the JSON answer (null for an empty body). Non-2xx answers,
   * transport failures and timeouts fail with a `ProviderError`. `spec` is a lazy effect so
   * that every attempt gets a fresh body (an upload stream can be read only once).
   */
  readonly json: (
    spec: RequestSpec | Effect.Effect<RequestSpec, ProviderError>,
    options: CallOptions
  ) => Effect.Effect<unknown, ProviderError>
  /** The `ProviderError` a non-2xx answer maps to (as `json` would fail with it). */
  readonly errorOf: (
    operation: string,
    status: number,
    headers: Readonly<Record<string, string | undefined>>,
    text: string,
    nowMs: number
  ) => ProviderError
  /**
   * Sends one request, never retried, and answers whatever its status: its status, headers
   * and body text (read up to `maxResponseBytes` for a 2xx — `complete` false when longer —
   * and up to 64 KiB otherwise). Fails only when no answer came (transport, timeout, a
   * refused redirect, a configuration that must not be sent). For real-time calls, whose
   * caller reads rate-limit headers and classifies every status itself.
   */
  readonly call: (spec: RequestSpec, options: { readonly timeout?: Duration.DurationInput | undefined }) => Effect.Effect<
    {
      readonly status: number
      readonly headers: Readonly<Record<string, string | undefined>>
      readonly text: string
      readonly complete: boolean
    },
    ProviderError
  >
  /**
   * Streams a response body. The request (up to the response headers) is retried like a JSON
   * call; once bytes flow, a failure or an idle period fails the stream.
   */
  readonly stream: (spec: RequestSpec, options: StreamOptions) => Stream.Stream<Uint8Array, ProviderError>
}

export const makeProviderHttp = (client: HttpClient.HttpClient, settings: HttpSettings): ProviderHttp => {
  const secrets = [...Object.values(settings.secretHeaders), ...settings.secrets].map((r) => Redacted.value(r))
  const endpoint = scrub(displayUrl(settings.baseUrl), secrets)
  const retry = withRetry(settings.retry, endpoint)
  const maxResponseBytes = settings.maxResponseBytes ?? defaultMaxResponseBytes
  const home = originOf(settings.baseUrl)
  const secretNames = Object.keys(settings.secretHeaders).map((name) => name.toLowerCase())

  /**
   * A configuration that must not be sent at all (checked once): every call fails with it at
   * once, never retried. Configurations read from the environment were refused earlier,
   * naming the variable; this covers configurations built in code.
   */
  const configProblem = ((): string | undefined => {
    const url = baseUrlProblem(settings.baseUrl, { allowInsecureHttp: settings.allowInsecureHttp })
    if (url !== undefined) return `the base URL ${url}`
    for (const secret of settings.secrets) {
      const problem = keyProblem(Redacted.value(secret))
      if (problem !== undefined) return `the API key ${problem}`
    }
    const values = [
      ...Object.entries(settings.headers),
      ...Object.entries(settings.secretHeaders).map(([name, value]) => [name, Redacted.value(value)] as const)
    ]
    for (const [name, value] of values) {
      if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) return `the value of header ${name} has a line break or control character`
    }
    return undefined
  })()

  const error: ProviderHttp["error"] = (fields) =>
    new ProviderError({
      reason: fields.reason,
      provider: settings.provider,
      operation: fields.operation,
      description: scrub(fields.description, secrets),
      endpoint,
      ...(fields.status === undefined ? {} : { status: fields.status }),
      ...(fields.retryAfterMs === undefined ? {} : { retryAfterMs: fields.retryAfterMs })
    })

  const toRequest = (spec: RequestSpec): HttpClientRequest.HttpClientRequest => {
    let request = HttpClientRequest.make(spec.method)(settings.baseUrl + spec.path).pipe(
      HttpClientRequest.setHeaders(settings.headers)
    )
    for (const [name, value] of Object.entries(settings.secretHeaders)) {
      request = HttpClientRequest.setHeader(request, name, Redacted.value(value))
    }
    if (spec.headers !== undefined) request = HttpClientRequest.setHeaders(request, spec.headers)
    if (spec.urlParams !== undefined || settings.query !== undefined) {
      request = HttpClientRequest.setUrlParams(request, { ...settings.query, ...spec.urlParams })
    }
    if (spec.body !== undefined) request = HttpClientRequest.setBody(request, spec.body)
    return request
  }

  const describeCause = (cause: unknown): string => {
    if (cause instanceof Error) {
      const code = (cause as { code?: unknown }).code
      const inner = (cause as { cause?: unknown }).cause
      const base = typeof code === "string" ? `${code}: ${cause.message}` : cause.message
      return inner instanceof Error && inner.message !== cause.message ? `${base} (${inner.message})` : base
    }
    return cause === undefined ? "" : String(cause)
  }

  const fromClientError = (operation: string, e: HttpClientError.HttpClientError): ProviderError => {
    if (e._tag === "RequestError") {
      switch (e.reason) {
        case "Transport":
          return error({ reason: "Transport", operation, description: describeCause(e.cause) || "transport error" })
        case "InvalidUrl":
          return error({ reason: "Rejected", operation, description: "invalid URL (check the base URL)" })
        case "Encode":
          return error({ reason: "Rejected", operation, description: `cannot encode request: ${describeCause(e.cause)}` })
      }
    }
    // A ResponseError here comes from reading the body: the connection broke mid-body.
    return error({
      reason: "Transport",
      operation,
      description: `reading response body failed: ${describeCause(e.cause)}`,
      status: e.response.status
    })
  }

  /** Maps a non-2xx answer (status, headers, the start of its body) to a `ProviderError`. */
  const errorOf = (
    operation: string,
    status: number,
    headers: Readonly<Record<string, string | undefined>>,
    text: string,
    nowMs: number
  ): ProviderError => {
    const body = parseErrorBody(text)
    const retryAfterMs = parseRetryAfter(headers, nowMs)
    const detail = [body.code ?? body.type, body.message].filter((s) => s !== undefined).join(": ")
    const description = truncate(detail === "" ? `HTTP ${status}` : detail)
    const quota = (body.code !== undefined && settings.quotaCodes.has(body.code)) ||
      (body.type !== undefined && settings.quotaCodes.has(body.type))
    const base = { operation, description, status, retryAfterMs }
    if (quota) return error({ ...base, reason: "Quota" })
    if (status === 401 || status === 403) return error({ ...base, reason: "Unauthorized" })
    if (status === 404) {
      const hint = settings.notFoundHint === undefined ? "" : `; ${settings.notFoundHint}`
      return error({ ...base, description: `${description}${hint}`, reason: "NotFound" })
    }
    if (status === 408) return error({ ...base, reason: "Timeout" })
    // 409: a conflicting request in flight (OpenAI's SDK retries it too); transient.
    if (status === 409) return error({ ...base, reason: "Server" })
    if (status === 429) return error({ ...base, reason: "RateLimited" })
    if (status >= 500) return error({ ...base, reason: "Server" })
    return error({ ...base, reason: "Rejected" })
  }

  /** Reads at most `maxErrorBodyBytes` of a non-2xx body (never failing: "" when it cannot). */
  const errorText = (response: HttpClientResponse.HttpClientResponse): Effect.Effect<string> =>
    readCapped(response, maxErrorBodyBytes).pipe(
      Effect.map((body) => decodeUtf8(body.bytes)),
      Effect.timeout(Duration.seconds(10)),
      Effect.orElseSucceed(() => "")
    )

  /** Maps a non-2xx response to a `ProviderError`, reading at most `maxErrorBodyBytes` of its body. */
  const fromStatus = (
    operation: string,
    response: HttpClientResponse.HttpClientResponse
  ): Effect.Effect<ProviderError> =>
    Effect.gen(function*() {
      const text = yield* errorText(response)
      const now = yield* Clock.currentTimeMillis
      return errorOf(operation, response.status, response.headers as Readonly<Record<string, string | undefined>>, text, now)
    })

  const timeoutError = (operation: string, duration: Duration.DurationInput) => () =>
    error({ reason: "Timeout", operation, description: `no answer within ${Duration.format(Duration.decode(duration))}` })

  /**
   * Runs one exchange with the client told not to follow redirects (fetch and undici; other
   * clients are checked by `send`), without trace headers unless turned on, and with the
   * secret headers redacted from any span the client records.
   */
  const exchange = (request: HttpClientRequest.HttpClientRequest) =>
    Effect.gen(function*() {
      const init = Option.getOrElse(yield* Effect.serviceOption(FetchHttpClient.RequestInit), () => ({}))
      const undici = Option.getOrElse(yield* Effect.serviceOption(NodeHttpClient.UndiciRequestOptions), () => ({}))
      const execute = client.execute(request).pipe(
        Effect.provideService(FetchHttpClient.RequestInit, { ...init, redirect: "manual" }),
        // Undici's redirect interceptor follows unless told 0 (the option is not in its types).
        Effect.provideService(NodeHttpClient.UndiciRequestOptions, {
          ...undici,
          maxRedirections: 0
        } as Undici.Dispatcher.RequestOptions),
        Effect.locallyWith(Headers.currentRedactedNames, (names) => [...names, ...secretNames])
      )
      return yield* settings.tracePropagation === true ?
        execute :
        Effect.locally(execute, HttpClient.currentTracerPropagation, false)
    })

  const redirectStatuses: ReadonlySet<number> = new Set([301, 302, 303, 307, 308])

  /**
   * The request a same-origin redirect leads to, or the error that refuses it: another origin
   * (the credentials would go there), too many hops, or a method or body that cannot be sent
   * again (only GET follows 301/302/303; 307/308 resend a body held in memory).
   */
  const redirected = (
    request: HttpClientRequest.HttpClientRequest,
    response: HttpClientResponse.HttpClientResponse,
    operation: string,
    hops: number
  ): Effect.Effect<HttpClientRequest.HttpClientRequest, ProviderError> => {
    const status = response.status
    const refuse = (description: string) => Effect.fail(error({ reason: "Rejected", operation, description, status }))
    const location = response.headers["location"]
    if (location === undefined || location === "") return refuse(`answered with a redirect (HTTP ${status}) without a Location`)
    let target: URL
    try {
      target = new URL(location, request.url)
    } catch {
      return refuse(`answered with a redirect (HTTP ${status}) to an invalid URL`)
    }
    if (target.origin !== home) {
      return refuse(
        `answered with a redirect (HTTP ${status}) from ${home} to another origin, ${target.origin}: ` +
          `credentials are sent only to ${home}, so it is not followed (check the base URL)`
      )
    }
    if (hops >= maxRedirects) return refuse(`more than ${maxRedirects} redirects (the last to ${target.pathname})`)
    const resendable = request.body._tag === "Empty" || request.body._tag === "Uint8Array"
    const follows = status === 307 || status === 308 ? resendable : request.method === "GET"
    if (!follows) {
      return refuse(
        `answered with a redirect (HTTP ${status}) to ${target.pathname}; sluice follows one for a ${request.method} ` +
          `only with status 307 or 308 and a body it can send again (set the base URL to where the API answers)`
      )
    }
    return Effect.succeed(HttpClientRequest.setUrl(request, target))
  }

  /**
   * Sends a request, following same-origin redirects; succeeds with the answer whatever its
   * status (redirects aside), fails on transport errors and refused redirects.
   */
  const sendAny = (
    request: HttpClientRequest.HttpClientRequest,
    operation: string
  ): Effect.Effect<HttpClientResponse.HttpClientResponse, ProviderError> => {
    if (configProblem !== undefined) return Effect.fail(error({ reason: "Rejected", operation, description: configProblem }))
    const loop = (
      request: HttpClientRequest.HttpClientRequest,
      hops: number
    ): Effect.Effect<HttpClientResponse.HttpClientResponse, ProviderError> =>
      exchange(request).pipe(
        Effect.mapError((e) => fromClientError(operation, e)),
        Effect.flatMap((response) => {
          // A client that follows redirects by itself (Effect's `HttpClient.followRedirects`)
          // answers for another URL: too late to keep the headers from it, but never accepted.
          const answered = originOf(response.request.url)
          if (answered !== originOf(request.url)) {
            return Effect.zipRight(
              discard(response),
              Effect.fail(error({
                reason: "Rejected",
                operation,
                description: `the HTTP client followed a redirect from ${home} to ${answered ?? "another URL"} by itself ` +
                  "and may have sent the credentials there: give sluice a client that does not follow redirects",
                status: response.status
              }))
            )
          }
          if (redirectStatuses.has(response.status)) {
            return Effect.zipRight(
              discard(response),
              Effect.flatMap(redirected(request, response, operation, hops), (next) => loop(next, hops + 1))
            )
          }
          return Effect.succeed(response)
        })
      )
    return loop(request, 0)
  }

  /** Sends a request; succeeds with a 2xx response, fails with a mapped `ProviderError` otherwise. */
  const send = (
    request: HttpClientRequest.HttpClientRequest,
    operation: string
  ): Effect.Effect<HttpClientResponse.HttpClientResponse, ProviderError> =>
    Effect.flatMap(sendAny(request, operation), (response) =>
      response.status >= 200 && response.status < 300 ? Effect.succeed(response) : Effect.flatMap(fromStatus(operation, response), Effect.fail))

  const call: ProviderHttp["call"] = (spec, options) => {
    const operation = operationOf(spec)
    const timeout = options.timeout ?? settings.requestTimeout
    return sendAny(toRequest(spec), operation).pipe(
      Effect.flatMap((response) => {
        const ok = response.status >= 200 && response.status < 300
        const read = ok
          ? readCapped(response, maxResponseBytes).pipe(Effect.mapError((e) => fromClientError(operation, e)))
          : Effect.map(errorText(response), (text) => ({ bytes: new TextEncoder().encode(text), complete: true }))
        return Effect.map(read, (body) => ({
          status: response.status,
          headers: response.headers as Readonly<Record<string, string | undefined>>,
          // The text becomes a row's answer or failure message in the run directory: a server
          // or proxy that echoes the request's headers must not put the key there.
          text: scrub(decodeUtf8(body.bytes), secrets),
          complete: body.complete
        }))
      }),
      Effect.timeoutFail({ duration: timeout, onTimeout: timeoutError(operation, timeout) })
    )
  }

  const json: ProviderHttp["json"] = (specOrEffect, options) => {
    const timeout = options.timeout ?? settings.requestTimeout
    const specEffect = Effect.isEffect(specOrEffect) ? specOrEffect : Effect.succeed(specOrEffect)
    const attempt = Effect.flatMap(specEffect, (spec) => {
      const operation = operationOf(spec)
      return send(toRequest(spec), operation).pipe(
        Effect.flatMap((response) =>
          readCapped(response, maxResponseBytes).pipe(
            Effect.mapError((e) => fromClientError(operation, e)),
            Effect.flatMap((body) => {
              if (!body.complete) {
                return Effect.fail(error({
                  reason: "Decode",
                  operation,
                  description: `the answer is larger than ${formatBytes(maxResponseBytes)}; not read further (maxResponseBytes)`,
                  status: response.status
                }))
              }
              const text = decodeUtf8(body.bytes)
              return Effect.try({
                try: () => (text.trim() === "" ? null : (JSON.parse(text) as unknown)),
                catch: () =>
                  error({
                    reason: "Decode",
                    operation,
                    description: `response is not JSON: ${truncate(text, 120)}`,
                    status: response.status
                  })
              })
            })
          )
        ),
        Effect.timeoutFail({ duration: timeout, onTimeout: timeoutError(operation, timeout) })
      )
    })
    return options.retry ? retry(attempt) : attempt
  }

  const stream: ProviderHttp["stream"] = (spec, options) => {
    const operation = operationOf(spec)
    const start = send(toRequest(spec), operation).pipe(
      Effect.timeoutFail({
        duration: settings.requestTimeout,
        onTimeout: timeoutError(operation, settings.requestTimeout)
      })
    )
    return Stream.unwrap(
      Effect.map(options.retry ? retry(start) : start, (response) =>
        response.stream.pipe(
          Stream.mapError((e) => fromClientError(operation, e)),
          Stream.timeoutFail(
            () =>
              error({
                reason: "Timeout",
                operation,
                description: `download stalled: no data for ${Duration.format(Duration.decode(options.idleTimeout))}`
              }),
            options.idleTimeout
          )
        ))
    )
  }

  return { settings, error, errorOf, json, call, stream }
}

const utf8 = new TextDecoder()

/** UTF-8 text of bytes (a cut multi-byte character becomes U+FFFD). */
export const decodeUtf8 = (bytes: Uint8Array): string => utf8.decode(bytes)

/**
 * Reads a body up to `max` bytes, then stops: the stream is closed, which destroys the body,
 * so the rest is never downloaded. `complete` is false when the body was longer.
 */
export const readCapped = (
  response: HttpClientResponse.HttpClientResponse,
  max: number
): Effect.Effect<{ readonly bytes: Uint8Array; readonly complete: boolean }, HttpClientError.ResponseError> =>
  Effect.map(
    Stream.runFoldWhile(
      response.stream,
      { parts: [] as Array<Uint8Array>, size: 0 },
      (read) => read.size <= max,
      (read, chunk) => {
        read.parts.push(chunk)
        read.size += chunk.length
        return read
      }
    ),
    ({ parts, size }) => ({ bytes: Buffer.concat(parts).subarray(0, Math.min(size, max)), complete: size <= max })
  )

/** Drops a body that is not wanted (a redirect's), reading at most one chunk of it. */
const discard = (response: HttpClientResponse.HttpClientResponse): Effect.Effect<void> =>
  Effect.ignore(Effect.timeout(readCapped(response, 0), Duration.seconds(10)))

/** Appends a path to a base URL, without doubling slashes. */
export const joinUrl = (baseUrl: string, path: string): string => baseUrl.replace(/\/+$/, "") + path

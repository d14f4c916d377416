/**
 * HTTP plumbing shared by the providers, over `@effect/platform`'s HttpClient (undici in
 * production). It adds what undici leaves out (timeouts), maps every failure to a
 * `ProviderError` that names the method, the path and the base URL (never its credentials or
 * query string), retries idempotent calls (saying so in the log), and keeps
 * secrets out of every error text.
 *
 * Raw `HttpClientError`s never escape from here: they hold the request, whose headers carry
 * the credentials.
 */
import type { HttpBody } from "@effect/platform"
import type { HttpClient, HttpClientError, HttpClientResponse } from "@effect/platform"
import { HttpClientRequest } from "@effect/platform"
import { Clock, Duration, Effect, Redacted, Stream } from "effect"
import { ProviderError } from "../ProviderError.js"
import type { RetryOptions } from "./retry.js"
import { parseRetryAfter, withRetry } from "./retry.js"

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

  /** Maps a non-2xx response to a `ProviderError`, reading (a bounded part of) its body. */
  const fromStatus = (
    operation: string,
    response: HttpClientResponse.HttpClientResponse
  ): Effect.Effect<ProviderError> =>
    Effect.gen(function*() {
      const status = response.status
      const text = yield* response.text.pipe(
        Effect.timeout(Duration.seconds(10)),
        Effect.orElseSucceed(() => "")
      )
      const body = parseErrorBody(text.length > 64_000 ? text.slice(0, 64_000) : text)
      const now = yield* Clock.currentTimeMillis
      const retryAfterMs = parseRetryAfter(response.headers as Readonly<Record<string, string | undefined>>, now)
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
    })

  const timeoutError = (operation: string, duration: Duration.DurationInput) => () =>
    error({ reason: "Timeout", operation, description: `no answer within ${Duration.format(Duration.decode(duration))}` })

  /** Sends a request; succeeds with a 2xx response, fails with a mapped `ProviderError` otherwise. */
  const send = (
    request: HttpClientRequest.HttpClientRequest,
    operation: string
  ): Effect.Effect<HttpClientResponse.HttpClientResponse, ProviderError> =>
    client.execute(request).pipe(
      Effect.mapError((e) => fromClientError(operation, e)),
      Effect.flatMap((response) =>
        response.status >= 200 && response.status < 300
          ? Effect.succeed(response)
          : Effect.flatMap(fromStatus(operation, response), Effect.fail)
      )
    )

  const json: ProviderHttp["json"] = (specOrEffect, options) => {
    const timeout = options.timeout ?? settings.requestTimeout
    const specEffect = Effect.isEffect(specOrEffect) ? specOrEffect : Effect.succeed(specOrEffect)
    const attempt = Effect.flatMap(specEffect, (spec) => {
      const operation = operationOf(spec)
      return send(toRequest(spec), operation).pipe(
        Effect.flatMap((response) =>
          response.text.pipe(
            Effect.mapError((e) => fromClientError(operation, e)),
            Effect.flatMap((text) =>
              Effect.try({
                try: () => (text.trim() === "" ? null : (JSON.parse(text) as unknown)),
                catch: () =>
                  error({
                    reason: "Decode",
                    operation,
                    description: `response is not JSON: ${truncate(text, 120)}`,
                    status: response.status
                  })
              })
            )
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

  return { settings, error, json, stream }
}

/** Appends a path to a base URL, without doubling slashes. */
export const joinUrl = (baseUrl: string, path: string): string => baseUrl.replace(/\/+$/, "") + path

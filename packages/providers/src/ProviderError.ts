/**
 * The one error a provider call can fail with: a tag, a small `reason` union and a computed
 * `retryable`. Messages never contain credentials: only method, path and the provider's
 * own error text.
 */
import { Schema } from "effect"

export const ProviderErrorReason = Schema.Literal(
  "RateLimited", // 429
  "Transport", // connection refused/reset, DNS, socket hang-up
  "Timeout", // no answer in time
  "Server", // 5xx
  "Unauthorized", // 401/403
  "NotFound", // 404
  "Rejected", // other 4xx: the request itself is wrong
  "Quota", // out of credit / enqueued-token limit
  "Decode" // the response did not match the wire schema
)
export type ProviderErrorReason = typeof ProviderErrorReason.Type

const RateLimitWindow = Schema.Struct({
  limit: Schema.optionalWith(Schema.Number, { exact: true }),
  remaining: Schema.optionalWith(Schema.Number, { exact: true }),
  resetMs: Schema.optionalWith(Schema.Number, { exact: true })
})

/** A refusal's rate-limit figures (the shape of `RateLimitSnapshot`, see RateLimit.ts). */
export const RateLimitFigures = Schema.Struct({
  requests: Schema.optionalWith(RateLimitWindow, { exact: true }),
  tokens: Schema.optionalWith(RateLimitWindow, { exact: true }),
  retryAfterMs: Schema.optionalWith(Schema.Number, { exact: true })
})

export class ProviderError extends Schema.TaggedError<ProviderError>()("ProviderError", {
  reason: ProviderErrorReason,
  provider: Schema.String,
  /** e.g. "POST /batches" — never a full URL with credentials. */
  operation: Schema.String,
  description: Schema.String,
  status: Schema.optional(Schema.Number),
  /** Milliseconds the server asked us to wait (Retry-After / retry-after-ms). */
  retryAfterMs: Schema.optional(Schema.Number),
  /** Where the call went: the base URL, without credentials or query string. */
  endpoint: Schema.optional(Schema.String),
  /** How many attempts were made, when the call was retried before it gave up. */
  attempts: Schema.optional(Schema.Number),
  /** A real-time refusal's rate-limit headers (a 429 says what is left, and the limit). */
  rateLimits: Schema.optional(RateLimitFigures)
}) {
  get retryable(): boolean {
    switch (this.reason) {
      case "RateLimited":
      case "Transport":
      case "Timeout":
      case "Server":
        return true
      default:
        return false
    }
  }

  /**
   * True when the request may have reached the provider and taken effect even though we
   * got no answer: a create that failed like this must be reconciled, not blindly retried.
   */
  get ambiguous(): boolean {
    return this.reason === "Transport" || this.reason === "Timeout" || this.reason === "Server"
  }

  override get message(): string {
    const status = this.status === undefined ? "" : ` (HTTP ${this.status})`
    const tries = this.attempts === undefined ? "" : `; gave up after ${this.attempts} attempts`
    if (this.reason === "Transport" && this.endpoint !== undefined) {
      return `${this.provider} ${this.operation} failed: cannot reach ${this.endpoint}: ${this.description}${tries}`
    }
    const where = this.endpoint === undefined ? "" : ` at ${this.endpoint}`
    return `${this.provider} ${this.operation}${where} failed: ${this.reason}${status}: ${this.description}${tries}`
  }

  /** This error, noting that it is the last of `attempts` attempts. */
  afterAttempts(attempts: number): ProviderError {
    return new ProviderError({
      reason: this.reason,
      provider: this.provider,
      operation: this.operation,
      description: this.description,
      ...(this.status === undefined ? {} : { status: this.status }),
      ...(this.retryAfterMs === undefined ? {} : { retryAfterMs: this.retryAfterMs }),
      ...(this.endpoint === undefined ? {} : { endpoint: this.endpoint }),
      ...(this.rateLimits === undefined ? {} : { rateLimits: this.rateLimits }),
      attempts
    })
  }
}

/**
 * The Promise API's error: an ordinary `Error` that keeps the tagged reason of the Effect
 * failure behind it, so plain `async` code can branch on it.
 */
import { Cause } from "effect"

export class SluiceError extends Error {
  override readonly name = "SluiceError"
  /** The tag of the failure: "ProviderError", "InvalidInput", "PipelineChanged", "Interrupted", … */
  readonly tag: string
  /** The failure's reason, where it has one (ProviderError: "RateLimited", "Unauthorized", …). */
  readonly reason: string | undefined
  /** True when trying again later may succeed (a transient provider or network failure). */
  readonly retryable: boolean

  constructor(tag: string, message: string, reason: string | undefined, retryable: boolean, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause })
    this.tag = tag
    this.reason = reason
    this.retryable = retryable
  }

  /** Turns the cause of a failed run into a SluiceError. */
  static fromCause(cause: Cause.Cause<unknown>): SluiceError {
    if (Cause.isInterruptedOnly(cause)) {
      return new SluiceError("Interrupted", "the run was stopped; resume it to continue", undefined, true)
    }
    const failure = Cause.failureOption(cause)
    if (failure._tag === "Some") {
      const e = failure.value as { _tag?: unknown; message?: unknown; reason?: unknown; retryable?: unknown }
      return new SluiceError(
        typeof e._tag === "string" ? e._tag : "Error",
        typeof e.message === "string" ? e.message : String(failure.value),
        typeof e.reason === "string" ? e.reason : undefined,
        e.retryable === true,
        failure.value
      )
    }
    const defect = Cause.squash(cause)
    return new SluiceError("Defect", defect instanceof Error ? defect.message : String(defect), undefined, false, defect)
  }
}

/**
 * Enqueued-token limits, the pure part. A provider caps the input tokens an organisation may
 * have enqueued per model (OpenAI: `token_limit_exceeded` on a batch that would pass it). The
 * scheduler (TokenLedger.ts) submits a shard only when its tokens fit beside what is in flight;
 * a limit comes from configuration (`--max-enqueued-tokens`) or is learned from a failure.
 */
import { ProviderIdentity } from "@sluice/providers"
import type { BatchProvider } from "@sluice/providers"

/** The ledger's key of a provider identity and model: the limit is the organisation's, per model. */
export const keyOf = (provider: BatchProvider, model: string): string => {
  const identity = ProviderIdentity.of(provider)
  return `${identity.family} ${ProviderIdentity.baseUrl(identity)} ${model}`
}

/**
 * A shard's input tokens as the scheduler counts them: as counted at planning, else a quarter
 * of its request bytes (an overcount: the JSON around each prompt is counted too).
 */
export const estimate = (shard: { readonly inputTokens: number | undefined; readonly bytes: number }): number =>
  shard.inputTokens ?? Math.ceil(shard.bytes / 4)

/** Whether a failed batch's errors (as journaled: "code: message") say the enqueued-token limit was reached. */
export const isTokenLimit = (errors: ReadonlyArray<string>): boolean => errors.some((e) => e.startsWith("token_limit_exceeded"))

/** The limit a provider's message states ("… Limit: 90,000 enqueued tokens …"), if it states one. */
export const statedLimit = (errors: ReadonlyArray<string>): number | undefined => {
  for (const e of errors) {
    const m = /Limit:\s*([\d,_.]+)\s*enqueued tokens/i.exec(e)
    if (m !== null) {
      const n = Number(m[1]!.replace(/[,_]/g, ""))
      if (Number.isFinite(n) && n > 0) return Math.floor(n)
    }
  }
  return undefined
}

/** Learned limits keep this share of what failed: the provider counts tokens its own way. */
export const MARGIN = 0.9

/**
 * What a `token_limit_exceeded` failure teaches: under the limit the provider states, and under
 * the tokens that were in flight with the shard (others may enqueue there too); lowered by
 * MARGIN. `inFlight` is undefined when unknown (a failure found on resume).
 */
export const learn = (input: { readonly stated: number | undefined; readonly inFlight: number | undefined }): number | undefined => {
  const bounds = [input.stated, input.inFlight].filter((n): n is number => n !== undefined)
  if (bounds.length === 0) return undefined
  return Math.max(1, Math.floor(Math.min(...bounds) * MARGIN))
}

/**
 * Whether a shard of `tokens` may be submitted with `inFlight` tokens of its model enqueued,
 * under `limit`. A shard alone above the limit (planned before the limit was lowered) goes
 * when nothing else is in flight: waiting longer would never let it go.
 */
export const fits = (inFlight: number, tokens: number, limit: number | undefined): boolean =>
  limit === undefined || inFlight === 0 || inFlight + tokens <= limit

/** The lower of two limits, either possibly unknown. */
export const lower = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined ? b : b === undefined ? a : Math.min(a, b)

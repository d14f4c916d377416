/**
 * Enqueued-token limits, the pure part. A provider caps the input tokens an organisation may
 * have enqueued per model (OpenAI: `token_limit_exceeded` on a batch that would pass it). The
 * scheduler (TokenLedger.ts) submits a shard only when its tokens fit beside what is in flight;
 * a limit comes from configuration (`--max-enqueued-tokens`) or is learned from a failure.
 */
import { ProviderIdentity } from "@sluice/providers"
import type { BatchProvider } from "@sluice/providers"
import { Either } from "effect"

/** The ledger's key of a provider identity and model: the limit is the organisation's, per model. */
export const keyOf = (provider: BatchProvider, model: string): string => keyOfIdentity(ProviderIdentity.of(provider), model)

/** `keyOf` of a provider identity as a run records it (its manifest's binding). */
export const keyOfIdentity = (identity: ProviderIdentity.ProviderIdentity, model: string): string =>
  `${identity.family} ${ProviderIdentity.baseUrl(identity)} ${model}`

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
 * under `limit`. A shard alone above the limit goes when nothing else is in flight: waiting
 * longer would never let it go. (One never run is re-cut before it gets here, Recut.ts: this
 * is a batch already created, registered on resume.)
 */
export const fits = (inFlight: number, tokens: number, limit: number | undefined): boolean =>
  limit === undefined || inFlight === 0 || inFlight + tokens <= limit

/** The lower of two limits, either possibly unknown. */
export const lower = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined ? b : b === undefined ? a : Math.min(a, b)

/**
 * Configured limits (`--max-enqueued-tokens`): one number for every model, or numbers by model
 * with `*` for the models not named. Each provider and model is limited on its own.
 */
export type Limits = number | Readonly<Record<string, number>>

/** The configured limit of a model, if any. */
export const limitFor = (limits: Limits | undefined, model: string): number | undefined =>
  limits === undefined ? undefined : typeof limits === "number" ? limits : limits[model] ?? limits["*"]

/** The bounds of one limit (OpenAI's tiers run from 90,000 to billions). */
export const MAX_LIMIT = 1_000_000_000_000

const checkLimit = (n: number): boolean => Number.isSafeInteger(n) && n >= 1 && n <= MAX_LIMIT

/** What is wrong with configured limits given to the library (none: empty); `name` is the option's. */
export const limitsProblems = (limits: Limits, name = "maxEnqueuedTokens"): Array<string> => {
  const bad = typeof limits === "number" ? (checkLimit(limits) ? [] : [["every model", limits] as const]) : Object.entries(limits).filter(([, n]) => !checkLimit(n))
  return bad.map(([model, n]) => `${name}${typeof limits === "number" ? "" : `["${model}"]`} must be an integer from 1 to ${MAX_LIMIT}, got ${n}`)
}

/**
 * Parses `--max-enqueued-tokens`: `90000` (every model), or comma-separated `model=tokens`
 * with at most one bare number for the models not named (`gpt-4o-mini=2000000,gpt-4o=90000,500000`).
 * Digits may be grouped with `_`. Left: what is wrong, as a sentence.
 */
export const parseLimits = (text: string, flag = "--max-enqueued-tokens", unit = "tokens"): Either.Either<Limits, string> => {
  const fail = (why: string) => Either.left(`${flag} ${JSON.stringify(text)}: ${why}`)
  const byModel: Record<string, number> = {}
  let rest: number | undefined
  const items = text.split(",").map((s) => s.trim())
  for (const item of items) {
    if (item === "") return fail(`an empty item (give ${unit}, or model=${unit}, separated by commas)`)
    // The item is named only when the flag holds several.
    const named = items.length > 1 ? `"${item}": ` : ""
    const at = item.lastIndexOf("=")
    const model = at === -1 ? undefined : item.slice(0, at).trim()
    const digits = (at === -1 ? item : item.slice(at + 1)).trim()
    if (model === "") return fail(`"${item}" names no model (model=${unit})`)
    if (!/^\d[\d_]*$/.test(digits)) return fail(`${named}the number of ${unit} must be a whole number, got "${digits}"`)
    const n = Number(digits.replace(/_/g, ""))
    if (!checkLimit(n)) return fail(`${named}the number of ${unit} must be an integer from 1 to ${MAX_LIMIT}`)
    if (model === undefined || model === "*") {
      if (rest !== undefined) return fail("two limits for every model (one bare number at most)")
      rest = n
    } else {
      if (byModel[model] !== undefined) return fail(`two limits for ${model}`)
      byModel[model] = n
    }
  }
  if (Object.keys(byModel).length === 0) return Either.right(rest!)
  return Either.right(rest === undefined ? byModel : { ...byModel, "*": rest })
}

/** Limits as `--max-enqueued-tokens` takes them (models sorted, the rest last). */
export const formatLimits = (limits: Limits): string => {
  if (typeof limits === "number") return String(limits)
  const named = Object.keys(limits).filter((m) => m !== "*").sort().map((m) => `${m}=${limits[m]}`)
  return [...named, ...(limits["*"] === undefined ? [] : [String(limits["*"])])].join(",")
}

/** Whether two configured limits say the same. */
export const sameLimits = (a: Limits | undefined, b: Limits | undefined): boolean =>
  a === undefined || b === undefined ? a === b : formatLimits(a) === formatLimits(b)

/** The model of a ledger key (keyOf: the model is its last part). */
export const modelOfKey = (key: string): string => key.split(" ").slice(2).join(" ")

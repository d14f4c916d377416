/**
 * The allowed ranges of a run's numeric settings. The CLI's flags (Flags.ts) and the
 * library's `RunOptions` are checked against this one table: a concurrency of 0 would wait
 * forever for a permit, a shard size of 0 would mean one request per batch, and a budget of
 * -1 or a poll interval of 0 mean nothing sensible.
 */
import { Duration, Either, Schema } from "effect"
import * as EnqueuedTokens from "./EnqueuedTokens.js"
import { parseDuration } from "./Hybrid.js"

/** An allowed range: `min` inclusive unless `above` is set (then exclusive); `max` inclusive. */
export interface Range {
  readonly min: number
  readonly max?: number
  readonly above?: boolean
  readonly integer?: boolean
  /** What the number counts, said in messages ("seconds", "USD"). */
  readonly unit?: string
}

/** "an integer from 1 to 10000", "a number of seconds from 0.01 to 3600", "a number of USD above 0". */
export const describeRange = (range: Range): string => {
  const what = `${range.integer === true ? "an integer" : "a number"}${range.unit === undefined ? "" : ` of ${range.unit}`}`
  if (range.above === true) return `${what} above ${range.min}${range.max === undefined ? "" : ` and at most ${range.max}`}`
  return range.max === undefined ? `${what} of at least ${range.min}` : `${what} from ${range.min} to ${range.max}`
}

export const inRange = (range: Range, n: number): boolean =>
  Number.isFinite(n) &&
  (range.integer !== true || Number.isInteger(n)) &&
  (range.above === true ? n > range.min : n >= range.min) &&
  (range.max === undefined || n <= range.max)

export const ranges = {
  concurrency: { min: 1, max: 10_000, integer: true },
  /** Above the provider's own limit a shard holds the provider's limit (the run says so). */
  shardSize: { min: 1, max: 1_000_000, integer: true },
  /** Sub-second polls are for the emulator: against a remote address the runner polls at most once a second. */
  pollSeconds: { min: 0.01, max: 3600, unit: "seconds" },
  /** The adaptive schedule's cap; under the provider family's floor, the floor wins (PollSchedule.ts). */
  maxPollSeconds: { min: 0.01, max: 3600, unit: "seconds" },
  budget: { min: 0, above: true, unit: "USD" },
  outputTokens: { min: 1, max: 1_000_000, integer: true },
  outputFileWaitSeconds: { min: 0, max: 86_400, unit: "seconds" },
  rpm: { min: 1, max: 100_000_000, integer: true },
  tpm: { min: 1, max: 10_000_000_000, integer: true },
  /** Input tokens enqueued per provider and model (OpenAI's tiers run from 90,000 to billions). */
  maxEnqueuedTokens: { min: 1, max: EnqueuedTokens.MAX_LIMIT, integer: true },
  /** `sluice preview -n`: a preview is for looking at answers, not for running a dataset. */
  previewRows: { min: 1, max: 1000, integer: true },
  /** Hybrid runs: retry shards of fewer rows go online (0: none do). */
  onlineBelow: { min: 0, max: 1_000_000, integer: true },
  /** `sluice ui --port`: 0 picks a free port. */
  port: { min: 0, max: 65_535, integer: true }
} as const satisfies Record<string, Range>

/** Output tokens per request assumed where a request names no `max_tokens` (`--output-tokens` overrides). */
export const defaultOutputTokens = 100

/** `--concurrency` when not given: batches in flight, and online requests in flight. */
export const defaultConcurrency = { batch: 4, online: 8 } as const

/** The slowest poll a run against a remote provider makes: providers rate-limit status calls. */
export const minimumRemotePoll = Duration.seconds(1)

export class InvalidSettings extends Schema.TaggedError<InvalidSettings>()("InvalidSettings", {
  problems: Schema.Array(Schema.String)
}) {
  override get message(): string {
    return `invalid run settings: ${this.problems.join("; ")}`
  }
}

/** What is out of range in a run's settings (the library's options, which no flag parser checked). */
export const problems = (settings: {
  readonly concurrency?: number | undefined
  readonly onlineConcurrency?: number | undefined
  readonly shardSize?: number | undefined
  readonly pollInterval?: Duration.Duration | undefined
  readonly maxPollInterval?: Duration.Duration | undefined
  readonly budget?: number | undefined
  readonly maxEnqueuedTokens?: EnqueuedTokens.Limits | undefined
  readonly maxBatches?: EnqueuedTokens.Limits | undefined
  readonly budgetOutputTokens?: number | undefined
  readonly outputFileWait?: Duration.Duration | undefined
  readonly rpm?: number | undefined
  readonly tpm?: number | undefined
  readonly mode?: string | undefined
  readonly deadline?: Duration.Duration | string | undefined
  readonly onlineBudget?: number | undefined
  readonly onlineBelow?: number | undefined
}): Array<string> => {
  const out: Array<string> = []
  const check = (name: string, range: Range, value: number | undefined) => {
    if (value !== undefined && !inRange(range, value)) out.push(`${name} must be ${describeRange(range)}, got ${value}`)
  }
  check("concurrency", ranges.concurrency, settings.concurrency)
  check("onlineConcurrency", ranges.concurrency, settings.onlineConcurrency)
  check("shardSize", ranges.shardSize, settings.shardSize)
  check("pollInterval", ranges.pollSeconds, settings.pollInterval === undefined ? undefined : Duration.toMillis(settings.pollInterval) / 1000)
  check("maxPollInterval", ranges.maxPollSeconds, settings.maxPollInterval === undefined ? undefined : Duration.toMillis(settings.maxPollInterval) / 1000)
  check("budget", ranges.budget, settings.budget)
  check("budgetOutputTokens", ranges.outputTokens, settings.budgetOutputTokens)
  check("rpm", ranges.rpm, settings.rpm)
  check("tpm", ranges.tpm, settings.tpm)
  if (settings.maxEnqueuedTokens !== undefined) out.push(...EnqueuedTokens.limitsProblems(settings.maxEnqueuedTokens))
  if (settings.maxBatches !== undefined) out.push(...EnqueuedTokens.limitsProblems(settings.maxBatches, "maxBatches"))
  check("onlineBudget", ranges.budget, settings.onlineBudget)
  check("onlineBelow", ranges.onlineBelow, settings.onlineBelow)
  if (typeof settings.deadline === "string") {
    const parsed = parseDuration(settings.deadline)
    if (Either.isLeft(parsed)) out.push(`deadline must be ${parsed.left}`)
  } else if (settings.deadline !== undefined && !(Duration.toMillis(settings.deadline) > 0)) {
    out.push(`deadline must be a duration above 0, got ${Duration.format(settings.deadline)}`)
  }
  if (settings.mode !== undefined && !["batch", "online", "auto"].includes(settings.mode)) {
    out.push(`mode must be "batch", "online" or "auto", got ${JSON.stringify(settings.mode)}`)
  }
  check(
    "outputFileWait",
    ranges.outputFileWaitSeconds,
    settings.outputFileWait === undefined ? undefined : Duration.toMillis(settings.outputFileWait) / 1000
  )
  return out
}

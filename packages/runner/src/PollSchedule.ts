/**
 * When to ask about a batch next: a pure function of what the polls so far have shown, so the
 * schedule can be tested with given times and counts (Poller.ts runs it).
 *
 * - A batch just created is first asked about `firstMs` after its submit intent (not at once:
 *   create has just said it is validating); a batch found on resume is asked about at once.
 * - Then the wait grows by `factor` per poll up to `maxMs` (`--max-poll-interval`, 30 s).
 * - Once the batch's counts move, its end is predicted from their rate between the first poll
 *   that showed progress and the latest; a predicted end sooner than the next backed-off poll
 *   is polled at instead (the wait then grows again from there, through finalizing).
 * - Never below `minMs`: the provider family's floor (status calls are rate-limited; a local
 *   emulator has none). A 429 is waited out by the HTTP layer (Retry-After) before a poll returns.
 *
 * `--poll-interval` replaces all of this with a fixed wait (Poller.ts), as before.
 */
import type { BatchCounts, BatchProvider } from "@sluice/providers"

export interface PollPolicy {
  /** The wait from the submit intent to the first poll of a batch created by this process. */
  readonly firstMs: number
  /** Growth of the wait from one poll to the next. */
  readonly factor: number
  /** The longest wait between two polls (the cap). */
  readonly maxMs: number
  /** The shortest wait between two polls (the provider's floor). */
  readonly minMs: number
}

/** What one poll showed: when (ms) and how many of the batch's requests were done. */
export interface Sample {
  readonly atMs: number
  readonly done: number
  readonly total: number
}

/** What the schedule remembers of one batch's polls. */
export interface PollMemory {
  /** The wait before the latest poll (null: no poll waited yet). */
  readonly lastWaitMs: number | null
  /** The first poll that showed requests done (the rate's start), and the latest poll. */
  readonly anchor: Sample | null
  readonly latest: Sample | null
}

export const defaults = { firstMs: 2_000, factor: 1.5, maxMs: 30_000 } as const

/** The floor of each provider family against its real address (a local emulator: `localMinMs`). */
export const familyMinMs: Readonly<Record<string, number>> = {
  // OpenAI and Azure: status calls share the account's request limits; a second is plenty.
  openai: 1_000,
  // Anthropic's batch endpoints (create, list, retrieve) share one RPM limit (50 at tier 1).
  anthropic: 5_000,
  gemini: 2_000
}
export const otherMinMs = 1_000
/** The local emulator: no rate limit to respect, and batches that may end in a fraction of a second. */
export const localMinMs = 10
export const localFirstMs = 250

/** An address on this machine (the emulator), which no rate limit protects. */
export const isLocalOrigin = (origin: string): boolean => {
  try {
    return ["127.0.0.1", "localhost", "[::1]", "::1"].includes(new URL(origin).hostname)
  } catch {
    return false
  }
}

const isLocal = (provider: Pick<BatchProvider, "origin">): boolean => provider.origin === undefined || isLocalOrigin(provider.origin)

/** The floor for a provider: its family's, unless it is local (or an in-process fake, which says no origin). */
export const minMsFor = (provider: Pick<BatchProvider, "origin" | "identity">): number =>
  isLocal(provider) ? localMinMs : (familyMinMs[provider.identity?.family ?? ""] ?? otherMinMs)

/** The schedule for a provider under a cap (`--max-poll-interval`). */
export const policyFor = (provider: Pick<BatchProvider, "origin" | "identity">, maxMs: number = defaults.maxMs): PollPolicy => ({
  firstMs: isLocal(provider) ? localFirstMs : defaults.firstMs,
  factor: defaults.factor,
  maxMs,
  minMs: minMsFor(provider)
})

export const empty: PollMemory = { lastWaitMs: null, anchor: null, latest: null }

export const sampleOf = (atMs: number, counts: BatchCounts): Sample => ({
  atMs,
  done: counts.succeeded + counts.failed,
  total: counts.total
})

/** Remembers a poll's counts. Counts that went back (a provider recounting) restart the rate. */
export const observe = (memory: PollMemory, sample: Sample): PollMemory => {
  const restart = memory.anchor === null || sample.done < (memory.latest?.done ?? 0) || sample.total !== memory.anchor.total
  const anchor = restart ? (sample.done > 0 ? sample : null) : memory.anchor
  return { ...memory, anchor, latest: sample }
}

/**
 * Ms from the latest poll until the batch's requests are predicted done, at the rate they
 * went between the anchor and the latest poll; null when the counts say nothing (no total,
 * no progress yet, or every request done already: what follows is finalizing, not counted).
 */
export const remainingMs = (memory: PollMemory): number | null => {
  const { anchor, latest } = memory
  if (anchor === null || latest === null || latest.total <= 0 || latest.done >= latest.total) return null
  const elapsed = latest.atMs - anchor.atMs
  const progressed = latest.done - anchor.done
  if (elapsed <= 0 || progressed <= 0) return null
  return ((latest.total - latest.done) * elapsed) / progressed
}

const clamp = (policy: PollPolicy, ms: number): number => Math.min(Math.max(ms, policy.minMs), Math.max(policy.maxMs, policy.minMs))

/** The wait before the first poll: what is left of `firstMs` since the intent; none for a batch seen before. */
export const firstWaitMs = (policy: PollPolicy, intentAtMs: number | null, nowMs: number, seenBefore: boolean): number => {
  if (seenBefore || intentAtMs === null) return 0
  const left = intentAtMs + Math.min(policy.firstMs, policy.maxMs) - nowMs
  return left <= 0 ? 0 : clamp(policy, left)
}

/** The wait after a poll that found the batch still running. */
export const nextWaitMs = (policy: PollPolicy, memory: PollMemory): number => {
  const backedOff = memory.lastWaitMs === null || memory.lastWaitMs <= 0 ? policy.firstMs : memory.lastWaitMs * policy.factor
  const remaining = remainingMs(memory)
  return clamp(policy, remaining !== null && remaining < backedOff ? remaining : backedOff)
}

/** Remembers the wait chosen before the next poll. */
export const waited = (memory: PollMemory, waitMs: number): PollMemory => ({ ...memory, lastWaitMs: waitMs })

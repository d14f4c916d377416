/**
 * Hybrid runs: a stage in `auto` mode goes by batch, and sends online what a batch did not
 * answer in time. A planned shard goes online instead of into a batch when
 *
 * - the run's deadline has passed (`--deadline`): every row still unanswered goes online,
 *   and batches still in flight are recalled (cancelled; their finished rows are collected,
 *   never sent again, and only the rest go online);
 * - it retries the rows of a batch that expired or was recalled: a new batch could take as
 *   long again;
 * - it retries fewer rows than `--online-below`: a small remainder is not worth another wait
 *   of up to a day.
 *
 * Only a stage whose mode is `auto` on a provider with both a batch API and a real-time
 * endpoint is hybrid: `batch` never sends online, `online` never batches. What goes online
 * is capped by `--online-budget` (at real-time prices). The decision is a function of the
 * journal (the deadline is journaled as an absolute time, each online shard with its reason),
 * so a resume takes it again the same way.
 */
import { Duration, Either } from "effect"
import type { HybridReason } from "./JournalEvent.js"

/** Retry shards of fewer rows than this go online in a hybrid stage (`--online-below`). */
export const defaultOnlineBelow = 100

/** Why a shard of a hybrid stage went online (journaled with its OnlineStarted). */
export type Reason = typeof HybridReason.Type

/** A reason, as progress and `status` say it. */
export const said: Readonly<Record<Reason, string>> = {
  deadline: "the deadline had passed",
  expired: "its rows' batch expired",
  recalled: "its rows' batch was cancelled at the deadline",
  remainder: "a small remainder, not worth another batch"
}

/** What the decision needs of a planned shard. */
export interface PlannedShard {
  readonly requests: number
  readonly attempt: number
}

/** What the decision needs of the shard whose rows a retry shard retries (absent for first attempts). */
export interface ParentShard {
  readonly status: string | null
  readonly online: boolean
  /** Recalled at the deadline (BatchRecalled journaled). */
  readonly recalled: boolean
}

export interface Situation {
  /** The stage is hybrid: mode `auto`, a provider with a batch API and a real-time endpoint. */
  readonly hybrid: boolean
  readonly deadlinePassed: boolean
  readonly onlineBelow: number
}

/**
 * Whether a planned shard of a stage goes online rather than into a batch, and why; null:
 * it goes by batch.
 */
export const decide = (situation: Situation, shard: PlannedShard, parent: ParentShard | undefined): Reason | null => {
  if (!situation.hybrid || shard.requests === 0) return null
  if (situation.deadlinePassed) return "deadline"
  if (parent !== undefined) {
    if (parent.recalled) return "recalled"
    if (parent.status === "expired") return "expired"
    // Rows an online shard could not answer stay online: they went there for a reason.
    if (parent.online) return "remainder"
  }
  if (shard.attempt > 1 && shard.requests < situation.onlineBelow) return "remainder"
  return null
}

const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/**
 * A deadline's duration as people write it: `90s`, `45m`, `2h`, `1h30m`, `1d`, `500ms`; a
 * bare number is seconds.
 */
export const parseDuration = (text: string): Either.Either<Duration.Duration, string> => {
  const t = text.trim()
  if (/^\d+(\.\d+)?$/.test(t)) return Either.right(Duration.millis(Number(t) * 1000))
  const parts = [...t.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)]
  if (t === "" || parts.map((p) => p[0]).join("") !== t) {
    return Either.left(`a duration like 90s, 45m, 2h, 1h30m or 1d, got ${JSON.stringify(text)}`)
  }
  const ms = parts.reduce((sum, p) => sum + Number(p[1]) * units[p[2]!]!, 0)
  if (!(ms > 0)) return Either.left(`a duration above 0, got ${JSON.stringify(text)}`)
  return Either.right(Duration.millis(ms))
}

/**
 * The batch status lifecycle as a pure function of time. Nothing ticks: each
 * retrieve computes where the batch is now from the instants captured in its
 * record (created, cancel requested, forced expiry) and its speed.
 *
 *   validating --(validatingMs)--> failed | in_progress --(total / rps)--> finalizing --(finalizingMs)--> completed
 *   in_progress --(expiry first)--> expired           (requests not processed by then: batch_expired)
 *   any live state --(cancel)--> cancelling --(cancellingMs)--> cancelled (processing stops at the cancel)
 * Expiry during finalizing is ignored: processing has finished by then.
 */
import type { BatchRecord } from "./store.js"

/** What the lifecycle reads of a batch record (OpenAI and Anthropic records both have it). */
export type LifecycleRecord = Pick<
  BatchRecord,
  "createdMs" | "validatingMs" | "finalizingMs" | "cancellingMs" | "expiresAtMs" | "rps" | "cancelRequestedMs" | "forcedExpireMs"
>

export type BatchStatus =
  | "validating"
  | "failed"
  | "in_progress"
  | "finalizing"
  | "completed"
  | "expired"
  | "cancelling"
  | "cancelled"

export const isTerminal = (status: BatchStatus): boolean =>
  status === "completed" || status === "failed" || status === "expired" || status === "cancelled"

/** What the lifecycle needs to know of the input file once validated. */
export interface InputSummary {
  readonly valid: boolean
  readonly total: number
}

export interface Timeline {
  readonly status: BatchStatus
  /** Requests processed so far (frozen at the cancel or the expiry). */
  readonly processed: number
  readonly inProgressAtMs: number | null
  readonly finalizingAtMs: number | null
  readonly completedAtMs: number | null
  readonly failedAtMs: number | null
  readonly expiredAtMs: number | null
  readonly cancellingAtMs: number | null
  readonly cancelledAtMs: number | null
}

const EMPTY: Timeline = {
  status: "validating",
  processed: 0,
  inProgressAtMs: null,
  finalizingAtMs: null,
  completedAtMs: null,
  failedAtMs: null,
  expiredAtMs: null,
  cancellingAtMs: null,
  cancelledAtMs: null
}

const validationEnd = (rec: LifecycleRecord): number => rec.createdMs + rec.validatingMs
const expiryOf = (rec: LifecycleRecord): number => Math.min(rec.expiresAtMs, rec.forcedExpireMs ?? Infinity)
const cancelOf = (rec: LifecycleRecord): number => rec.cancelRequestedMs ?? Infinity

/** Whether computing the state at `now` needs the validated input (before that, it is plain "validating"). */
export const needsInput = (rec: LifecycleRecord, now: number): boolean =>
  now >= Math.min(validationEnd(rec), cancelOf(rec), expiryOf(rec))

export const timeline = (rec: LifecycleRecord, input: InputSummary | undefined, now: number): Timeline => {
  const V = validationEnd(rec)
  const C = cancelOf(rec)
  const E = expiryOf(rec)
  if (!needsInput(rec, now) || input === undefined) return EMPTY

  const cancelled = (processed: number, base: Partial<Timeline>): Timeline => ({
    ...EMPTY,
    ...base,
    processed,
    status: now >= C + rec.cancellingMs ? "cancelled" : "cancelling",
    cancellingAtMs: C,
    cancelledAtMs: now >= C + rec.cancellingMs ? C + rec.cancellingMs : null
  })

  // Stopped before validation finished.
  if (Math.min(C, E) < V) {
    if (C <= E) return cancelled(0, {})
    return { ...EMPTY, status: "expired", expiredAtMs: E }
  }
  if (!input.valid) return { ...EMPTY, status: "failed", failedAtMs: V }

  const total = input.total
  const processedAt = (t: number): number =>
    rec.rps === null ? total : Math.max(0, Math.min(total, Math.floor(((t - V) * rec.rps) / 1000)))
  const P = V + (rec.rps === null ? 0 : Math.ceil((total * 1000) / rec.rps))
  const running: Partial<Timeline> = { inProgressAtMs: V }
  const inProgress = (): Timeline => ({ ...EMPTY, ...running, status: "in_progress", processed: processedAt(now) })

  if (P <= Math.min(C, E)) {
    if (now < P) return inProgress()
    const F = P + rec.finalizingMs
    const finished: Partial<Timeline> = { ...running, finalizingAtMs: P }
    if (C < F) return cancelled(total, finished)
    if (now < F) return { ...EMPTY, ...finished, status: "finalizing", processed: total }
    return { ...EMPTY, ...finished, status: "completed", processed: total, completedAtMs: F }
  }
  if (C <= E) return now < C ? inProgress() : cancelled(processedAt(C), running)
  if (now < E) return inProgress()
  return { ...EMPTY, ...running, status: "expired", processed: processedAt(E), expiredAtMs: E }
}

/**
 * The OpenAI Batch object (providers.md 1.3), rendered from a record and
 * either its live timeline or its final state.
 */
import type { AnalysedInput, ValidInput } from "./analysis.js"
import { toUnixSeconds, toUnixSecondsOrNull } from "./clock.js"
import type { BatchStatus, Timeline } from "./lifecycle.js"
import type { BatchFinal, BatchRecord } from "./store.js"

type Obj = { readonly [key: string]: unknown }

/** What a Batch object shows, whether computed live or read from the final record. */
export interface Snapshot extends Omit<BatchFinal, "status" | "outputVisibleAtMs"> {
  readonly status: BatchStatus
}

export const liveSnapshot = (input: AnalysedInput | undefined, line: Timeline): Snapshot => {
  const valid: ValidInput | undefined = input?.valid === true ? input : undefined
  const reached = line.status !== "validating" && line.status !== "failed"
  const total = valid !== undefined && reached ? valid.total : 0
  const failed = valid !== undefined && reached ? valid.failedBefore[line.processed]! : 0
  const completed = valid !== undefined && reached ? line.processed - failed : 0
  return {
    status: line.status,
    model: line.status === "validating" ? null : (input?.model ?? null),
    errors: line.status === "failed" && input !== undefined && !input.valid ? input.errors : null,
    inProgressAtMs: line.inProgressAtMs,
    finalizingAtMs: line.finalizingAtMs,
    completedAtMs: line.completedAtMs,
    failedAtMs: line.failedAtMs,
    expiredAtMs: line.expiredAtMs,
    cancellingAtMs: line.cancellingAtMs,
    cancelledAtMs: line.cancelledAtMs,
    total,
    completed,
    failed,
    inputTokens: 0,
    outputTokens: 0,
    outputFileId: null,
    errorFileId: null
  }
}

export const render = (record: BatchRecord, s: Snapshot | BatchFinal, now: number): Obj => {
  const hideOutput = "outputVisibleAtMs" in s && s.status === "completed" && now < s.outputVisibleAtMs
  return {
    id: record.id,
    object: "batch",
    endpoint: record.endpoint,
    model: s.model,
    errors: s.errors === null ? null : { object: "list", data: s.errors },
    input_file_id: record.input_file_id,
    completion_window: record.completion_window,
    status: s.status,
    output_file_id: hideOutput ? null : s.outputFileId,
    error_file_id: s.errorFileId,
    created_at: toUnixSeconds(record.createdMs),
    in_progress_at: toUnixSecondsOrNull(s.inProgressAtMs),
    expires_at: toUnixSeconds(record.expiresAtMs),
    finalizing_at: toUnixSecondsOrNull(s.finalizingAtMs),
    completed_at: toUnixSecondsOrNull(s.completedAtMs),
    failed_at: toUnixSecondsOrNull(s.failedAtMs),
    expired_at: toUnixSecondsOrNull(s.expiredAtMs),
    cancelling_at: toUnixSecondsOrNull(s.cancellingAtMs),
    cancelled_at: toUnixSecondsOrNull(s.cancelledAtMs),
    request_counts: { total: s.total, completed: s.completed, failed: s.failed },
    usage: {
      input_tokens: s.inputTokens,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: s.outputTokens,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: s.inputTokens + s.outputTokens
    },
    metadata: record.metadata
  }
}

// ---------------------------------------------------------------------------------------------

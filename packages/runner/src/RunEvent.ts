/**
 * Run events for callers' own progress displays and alerting: what the CLI shows, as values.
 * Derived from journal events, with the run's running totals attached.
 */
import type { BatchCounts, BatchStatus } from "@sluice/providers"
import type { Reason } from "./Hybrid.js"
import type { JournalEvent } from "./JournalEvent.js"
import type { RunSummary } from "./RunSummary.js"
import type { RunState } from "./RunState.js"
import { pendingRows } from "./RunState.js"

/** Totals over the whole run, the same counts the CLI prints. */
export interface Totals {
  readonly rows: number
  readonly succeeded: number
  readonly failed: number
  readonly pending: number
}

export type RunEvent =
  | { readonly _tag: "ShardPlanned"; readonly shard: string; readonly requests: number; readonly totals: Totals }
  | { readonly _tag: "ShardSubmitted"; readonly shard: string; readonly batchId: string; readonly adopted: boolean; readonly totals: Totals }
  /**
   * A shard's requests go online, one by one to the provider's real-time endpoint; `hybrid`:
   * why a stage in auto mode sent online what it would have batched (see Hybrid.ts).
   */
  | { readonly _tag: "ShardOnline"; readonly shard: string; readonly requests: number; readonly hybrid?: Reason; readonly totals: Totals }
  /** The deadline passed with this shard's batch in flight: it is cancelled; its unfinished rows go online. */
  | { readonly _tag: "BatchRecalled"; readonly shard: string; readonly batchId: string; readonly totals: Totals }
  | {
      readonly _tag: "StatusChanged"
      readonly shard: string
      readonly batchId: string
      readonly status: BatchStatus
      readonly rawStatus: string
      readonly counts: BatchCounts
      readonly totals: Totals
    }
  | { readonly _tag: "RowsSucceeded"; readonly shard: string; readonly count: number; readonly totals: Totals }
  | {
      readonly _tag: "RowsFailed"
      readonly shard: string
      readonly count: number
      /** By failure class; rescheduled rows are not failed (yet). */
      readonly byClass: Readonly<Record<string, number>>
      readonly rescheduled: number
      readonly totals: Totals
    }
  | { readonly _tag: "RunFinished"; readonly summary: RunSummary }

export const totals = (state: RunState): Totals => ({
  rows: state.rowsPlanned + state.invalidRows + state.duplicateRows,
  succeeded: state.succeeded,
  failed: Object.values(state.failed).reduce((a, b) => a + b, 0) + state.invalidRows,
  pending: pendingRows(state)
})

/** The run events a journal event stands for (none for bookkeeping events). */
export const fromJournal = (event: JournalEvent, state: RunState): ReadonlyArray<RunEvent> => {
  switch (event._tag) {
    case "ShardPlanned":
      return [{ _tag: "ShardPlanned", shard: event.shard, requests: event.requests, totals: totals(state) }]
    case "OnlineStarted":
      return [
        {
          _tag: "ShardOnline",
          shard: event.shard,
          requests: state.shards.get(event.shard)?.requests ?? 0,
          ...(event.hybrid === undefined ? {} : { hybrid: event.hybrid }),
          totals: totals(state)
        }
      ]
    case "BatchRecalled":
      return [{ _tag: "BatchRecalled", shard: event.shard, batchId: event.batchId, totals: totals(state) }]
    case "Created":
      return [{ _tag: "ShardSubmitted", shard: event.shard, batchId: event.batchId, adopted: event.adopted, totals: totals(state) }]
    case "StatusChanged":
      return [
        {
          _tag: "StatusChanged",
          shard: event.shard,
          batchId: event.batchId,
          status: event.status,
          rawStatus: event.rawStatus,
          counts: event.counts,
          totals: totals(state)
        }
      ]
    case "Collected": {
      const failed = Object.values(event.failed).reduce((a, b) => a + b, 0)
      const out: Array<RunEvent> = []
      // Rows of a stage that feeds another are not done yet: they went on to the next stage.
      if (event.succeeded > 0 && event.children === undefined) out.push({ _tag: "RowsSucceeded", shard: event.shard, count: event.succeeded, totals: totals(state) })
      if (failed > 0 || event.rescheduled > 0) {
        out.push({
          _tag: "RowsFailed",
          shard: event.shard,
          count: failed,
          byClass: event.failed,
          rescheduled: event.rescheduled,
          totals: totals(state)
        })
      }
      return out
    }
    case "ShardRecut":
      // Rows alone over the enqueued-token limit end failed; the rest went to its children.
      return event.failed === 0 ? [] : [{
        _tag: "RowsFailed",
        shard: event.shard,
        count: event.failed,
        byClass: { permanent: event.failed },
        rescheduled: event.children.reduce((a, c) => a + c.requests + c.cachedRows, 0),
        totals: totals(state)
      }]
    default:
      return []
  }
}

/**
 * The run's state, rebuilt by folding journal events. It is per shard, never per row, so
 * replaying a million-row run stays small in memory: row outcomes live in results.jsonl,
 * failures.jsonl and the sink, whose committed lengths the journal records.
 */
import type { BatchCounts, BatchStatus } from "@sluice/providers"
import type { JournalEvent, Offsets, TokenUsage } from "./JournalEvent.js"

export type ShardPhase = "planned" | "intent" | "staged" | "created" | "terminal" | "collected" | "rejected"

export interface ShardState {
  readonly id: string
  readonly stage: string
  readonly provider: string
  readonly model: string
  readonly endpoint: string
  readonly requests: number
  readonly bytes: number
  readonly sha256: string
  readonly attempt: number
  readonly parent: string | null
  readonly inputTokens: number | undefined
  phase: ShardPhase
  submission: number
  intentAt: number | null
  inputRef: string | null
  batchId: string | null
  adopted: boolean
  status: BatchStatus | null
  rawStatus: string | null
  /** Unix milliseconds when the current status was first seen. */
  statusAt: number | null
  counts: BatchCounts | null
  errors: ReadonlyArray<string>
  rejection: { failure: string; message: string } | null
  collected: {
    succeeded: number
    failed: Readonly<Record<string, number>>
    rescheduled: number
    retryShard: string | null
  } | null
}

export interface RunState {
  readonly shards: Map<string, ShardState>
  /** Source items consumed by planned first-attempt shards and skipped invalid rows. */
  sourceOffset: number
  planComplete: boolean
  /** Rows read from the source (first attempts). */
  rowsPlanned: number
  invalidRows: number
  succeeded: number
  failed: Record<string, number>
  usage: TokenUsage
  /** Committed lengths of results.jsonl, failures.jsonl and the sink. */
  offsets: Offsets
  /** `sluice retry` rounds so far, with what each superseded in failures.jsonl. */
  retries: Array<{ readonly classes: ReadonlyArray<string>; readonly failuresOffset: number }>
}

export const empty = (): RunState => ({
  shards: new Map(),
  sourceOffset: 0,
  planComplete: false,
  rowsPlanned: 0,
  invalidRows: 0,
  succeeded: 0,
  failed: {},
  usage: { input: 0, output: 0, cached: 0 },
  offsets: { results: 0, failures: 0, sink: null },
  retries: []
})

interface NewShard {
  readonly shard: string
  readonly stage: string
  readonly provider: string
  readonly model: string
  readonly endpoint: string
  readonly requests: number
  readonly bytes: number
  readonly sha256: string
  readonly attempt: number
  readonly parent: string | null
  readonly inputTokens?: number | undefined
}

const addShard = (state: RunState, e: NewShard) => {
  state.shards.set(e.shard, {
    id: e.shard,
    stage: e.stage,
    provider: e.provider,
    model: e.model,
    endpoint: e.endpoint,
    requests: e.requests,
    bytes: e.bytes,
    sha256: e.sha256,
    attempt: e.attempt,
    parent: e.parent,
    inputTokens: e.inputTokens,
    phase: "planned",
    submission: 0,
    intentAt: null,
    inputRef: null,
    batchId: null,
    adopted: false,
    status: null,
    rawStatus: null,
    statusAt: null,
    counts: null,
    errors: [],
    rejection: null,
    collected: null
  })
}

const shard = (state: RunState, id: string): ShardState => {
  const s = state.shards.get(id)
  if (s === undefined) throw new Error(`journal names shard ${id} before planning it`)
  return s
}

/** Applies one event. Mutates in place: replay folds thousands of events. */
export const apply = (state: RunState, event: JournalEvent): RunState => {
  switch (event._tag) {
    case "ShardPlanned": {
      addShard(state, event)
      if (event.parent === null) state.rowsPlanned += event.requests
      if (event.sourceOffset !== null) state.sourceOffset = event.sourceOffset
      state.invalidRows += event.invalid
      if (event.offsets !== null) state.offsets = event.offsets
      break
    }
    case "RetryPlanned": {
      const first = [...state.shards.values()].find((s) => s.parent === null)
      for (const s of event.shards) {
        addShard(state, {
          ...s,
          stage: first?.stage ?? "",
          provider: first?.provider ?? "",
          model: first?.model ?? "",
          endpoint: first?.endpoint ?? "chat",
          parent: `retry-${event.round}`
        })
      }
      for (const [k, v] of Object.entries(event.taken)) state.failed[k] = (state.failed[k] ?? 0) - v
      state.retries.push({ classes: event.classes, failuresOffset: event.failuresOffset })
      break
    }
    case "PlanComplete": {
      state.planComplete = true
      state.sourceOffset = event.sourceOffset
      state.invalidRows += event.invalid
      if (event.offsets !== null) state.offsets = event.offsets
      break
    }
    case "SubmitIntent": {
      const s = shard(state, event.shard)
      s.phase = "intent"
      s.submission = event.submission
      s.intentAt = event.at
      s.inputRef = null
      break
    }
    case "Staged": {
      const s = shard(state, event.shard)
      s.phase = "staged"
      s.inputRef = event.inputRef
      break
    }
    case "Created": {
      const s = shard(state, event.shard)
      s.phase = "created"
      s.batchId = event.batchId
      s.adopted = event.adopted
      break
    }
    case "CreateRejected": {
      const s = shard(state, event.shard)
      s.phase = "rejected"
      s.rejection = { failure: event.failure, message: event.message }
      break
    }
    case "StatusChanged": {
      const s = shard(state, event.shard)
      s.status = event.status
      s.rawStatus = event.rawStatus
      s.statusAt = event.at ?? null
      s.counts = event.counts
      break
    }
    case "Terminal": {
      const s = shard(state, event.shard)
      s.phase = "terminal"
      s.status = event.status
      s.rawStatus = event.rawStatus
      s.counts = event.counts
      s.errors = event.errors
      break
    }
    case "Collected": {
      const s = shard(state, event.shard)
      s.phase = "collected"
      s.collected = {
        succeeded: event.succeeded,
        failed: event.failed,
        rescheduled: event.rescheduled,
        retryShard: event.retryShard
      }
      state.succeeded += event.succeeded
      for (const [k, v] of Object.entries(event.failed)) state.failed[k] = (state.failed[k] ?? 0) + v
      state.usage = {
        input: state.usage.input + event.usage.input,
        output: state.usage.output + event.usage.output,
        cached: state.usage.cached + event.usage.cached
      }
      state.offsets = event.offsets
      break
    }
  }
  return state
}

export const totalFailed = (state: RunState): number =>
  Object.values(state.failed).reduce((a, b) => a + b, 0) + state.invalidRows

/** Rows not yet in a final state. */
export const pendingRows = (state: RunState): number =>
  Math.max(0, state.rowsPlanned - state.succeeded - Object.values(state.failed).reduce((a, b) => a + b, 0))

/** Shards that still need work (anything not collected or rejected-and-accounted). */
export const openShards = (state: RunState): Array<ShardState> =>
  [...state.shards.values()].filter((s) => s.phase !== "collected")

export const isFinished = (state: RunState): boolean => state.planComplete && openShards(state).length === 0

/**
 * The run's state, rebuilt by folding journal events. It is per shard, never per row, so
 * replaying a million-row run stays small in memory: row outcomes live in results.jsonl,
 * failures.jsonl and the sink, whose committed lengths the journal records.
 */
import type { BatchCounts, BatchStatus } from "@sluice/providers"
import type { HybridReason, JournalEvent, Offsets, SourceFile, TokenUsage } from "./JournalEvent.js"

export type ShardPhase = "planned" | "intent" | "staged" | "created" | "online" | "terminal" | "collected" | "rejected"

/** How a shard's requests went: to a batch, or one by one to the real-time endpoint. */
export type ShardMode = "batch" | "online"

export interface ShardState {
  readonly id: string
  readonly stage: string
  readonly provider: string
  readonly model: string
  readonly endpoint: string
  /** Requests, bytes, hash and rows from the cache change once if the duplicate-key check rewrites the shard. */
  requests: number
  bytes: number
  sha256: string
  readonly attempt: number
  readonly parent: string | null
  inputTokens: number | undefined
  /** Rows answered from the response cache (not among `requests`). */
  cachedRows: number
  /** The duplicate-key check took rows out of it (ShardRewritten). */
  rewritten: boolean
  phase: ShardPhase
  /** Online once `OnlineStarted` is journaled; its answers are in `shards/<id>.online.jsonl`. */
  online: boolean
  /** An online shard cancelled before every line was sent: its unsent rows end `cancelled`. */
  cancelled: boolean
  /** Why a hybrid stage sent it online rather than by batch (null: it went as its stage's mode says). */
  hybrid: typeof HybridReason.Type | null
  /** Its batch was cancelled at the deadline: the rows it did not finish are rescheduled, not failed. */
  recalled: boolean
  submission: number
  intentAt: number | null
  inputRef: string | null
  batchId: string | null
  adopted: boolean
  status: BatchStatus | null
  rawStatus: string | null
  /** Unix milliseconds when the current status was first seen. */
  statusAt: number | null
  /** The batch completed without an output file to collect (Poller.awaitsResultFile). */
  awaitingOutput: boolean
  counts: BatchCounts | null
  errors: ReadonlyArray<string>
  rejection: { failure: string; message: string } | null
  collected: {
    succeeded: number
    failed: Readonly<Record<string, number>>
    rescheduled: number
    retryShard: string | null
    /** Tokens its answers used (what a display prices per stage). */
    usage: TokenUsage
  } | null
  /** Its files at the provider were deleted (ProviderFilesDeleted); `kept`: those left on purpose. */
  released: { readonly files: ReadonlyArray<string>; readonly kept: ReadonlyArray<string> } | null
}

/** Row counts of one stage (rows of the first stage are source rows; later ones, upstream outputs). */
export interface StageProgress {
  /** Rows planned as first attempts. */
  planned: number
  /** Rows that arrived in its inbox (later stages). */
  arrived: number
  /** Rows rejected at planning (invalid, oversize). */
  invalid: number
  succeeded: number
  /** Rows ended failed, less those taken back by `retry`. */
  failed: number
  /** Inbox bytes planned (later stages). */
  consumed: number
}

export interface RunState {
  readonly shards: Map<string, ShardState>
  readonly stages: Map<string, StageProgress>
  /** Rows answered from the response cache. */
  fromCache: number
  /** Token usage by model, for the cost of runs whose stages use several models. */
  readonly usageByModel: Map<string, TokenUsage>
  /** The same by mode: online answers are priced at real-time prices, batch ones at batch prices. */
  readonly usageByMode: { readonly batch: Map<string, TokenUsage>; readonly online: Map<string, TokenUsage> }
  /** Source items consumed by planned first-attempt shards and skipped invalid rows. */
  sourceOffset: number
  planComplete: boolean
  /** The source's files as planning found them (journals since sluice records them). */
  sourceFiles: ReadonlyArray<SourceFile>
  /** Rows read from the source (first attempts). */
  rowsPlanned: number
  invalidRows: number
  /** Rows not sent because an earlier row has their key and request (answered by it). */
  duplicateRows: number
  /** The first stage's keys were checked for duplicates (or need no check: see KeyCheck.ts). */
  keysChecked: boolean
  /** The output lengths before the first stage's planning began: where a refused plan goes back to. */
  planStart: Offsets | null
  succeeded: number
  failed: Record<string, number>
  usage: TokenUsage
  /** Committed lengths of results.jsonl, failures.jsonl and the sink. */
  offsets: Offsets
  /** `sluice retry` rounds so far, with what each superseded in failures.jsonl. */
  retries: Array<{ readonly classes: ReadonlyArray<string>; readonly failuresOffset: number }>
  /** The run's deadline (unix ms), once given: then hybrid stages send the rest online. */
  deadline: { readonly at: number; readonly given: string } | null
  /** Rows answered (succeeded or failed for good), by the mode that answered them. */
  readonly rowsByMode: { batch: number; online: number }
  /** Enqueued-token limits the run learned (`TokenLimitReached`), by key: a resume schedules under them. */
  readonly learnedLimits: Map<string, number>
}

export const empty = (): RunState => ({
  learnedLimits: new Map(),
  shards: new Map(),
  stages: new Map(),
  fromCache: 0,
  usageByModel: new Map(),
  usageByMode: { batch: new Map(), online: new Map() },
  sourceOffset: 0,
  planComplete: false,
  sourceFiles: [],
  rowsPlanned: 0,
  invalidRows: 0,
  duplicateRows: 0,
  keysChecked: false,
  planStart: null,
  succeeded: 0,
  failed: {},
  usage: { input: 0, output: 0, cached: 0 },
  offsets: { results: 0, failures: 0, sink: null },
  retries: [],
  deadline: null,
  rowsByMode: { batch: 0, online: 0 }
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
  readonly cachedRows?: number | undefined
}

export const stageProgress = (state: RunState, stage: string): StageProgress => {
  let p = state.stages.get(stage)
  if (p === undefined) state.stages.set(stage, (p = { planned: 0, arrived: 0, invalid: 0, succeeded: 0, failed: 0, consumed: 0 }))
  return p
}

export const addUsage = (a: TokenUsage, b: TokenUsage): TokenUsage => ({
  input: a.input + b.input,
  output: a.output + b.output,
  cached: a.cached + b.cached
})

const addShard = (state: RunState, e: NewShard) => {
  const cachedOnly = e.requests === 0 && (e.cachedRows ?? 0) > 0
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
    cachedRows: e.cachedRows ?? 0,
    rewritten: false,
    // A shard answered from the cache alone has its results already: straight to collection.
    phase: cachedOnly ? "terminal" : "planned",
    online: false,
    cancelled: false,
    hybrid: null,
    recalled: false,
    submission: 0,
    intentAt: null,
    inputRef: null,
    batchId: null,
    adopted: false,
    status: cachedOnly ? "completed" : null,
    rawStatus: cachedOnly ? "cached" : null,
    statusAt: null,
    awaitingOutput: false,
    counts: null,
    errors: [],
    rejection: null,
    collected: null,
    released: null
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
      if (event.sourceOffset !== null && state.planStart === null) state.planStart = state.offsets
      addShard(state, event)
      const progress = stageProgress(state, event.stage)
      if (event.parent === null) {
        const rows = event.requests + (event.cachedRows ?? 0)
        progress.planned += rows
        // Rows of the run are the first stage's; later stages' rows derive from them.
        if (event.inboxOffset === undefined) state.rowsPlanned += rows
      }
      if (event.sourceOffset !== null) state.sourceOffset = event.sourceOffset
      if (event.inboxOffset !== undefined) progress.consumed = event.inboxOffset
      progress.invalid += event.invalid
      state.invalidRows += event.invalid
      if (event.offsets !== null) state.offsets = event.offsets
      break
    }
    case "StagePlanned": {
      const progress = stageProgress(state, event.stage)
      progress.consumed = event.inboxOffset
      progress.invalid += event.invalid
      state.invalidRows += event.invalid
      if (event.offsets !== null) state.offsets = event.offsets
      break
    }
    case "RetryPlanned": {
      const first = [...state.shards.values()].find((s) => s.parent === null)
      for (const s of event.shards) {
        const like = s.stage === undefined ? first : [...state.shards.values()].find((x) => x.stage === s.stage)
        addShard(state, {
          ...s,
          stage: like?.stage ?? "",
          provider: like?.provider ?? "",
          model: like?.model ?? "",
          endpoint: like?.endpoint ?? "chat",
          parent: `retry-${event.round}`
        })
        stageProgress(state, like?.stage ?? "").failed -= s.requests
      }
      for (const [k, v] of Object.entries(event.taken)) state.failed[k] = (state.failed[k] ?? 0) - v
      state.retries.push({ classes: event.classes, failuresOffset: event.failuresOffset })
      break
    }
    case "PlanComplete": {
      if (state.planStart === null) state.planStart = state.offsets
      state.planComplete = true
      state.sourceOffset = event.sourceOffset
      state.sourceFiles = event.sourceFiles ?? []
      state.invalidRows += event.invalid
      if (event.offsets !== null) state.offsets = event.offsets
      break
    }
    case "ShardRewritten": {
      const s = shard(state, event.shard)
      const removed = s.requests + s.cachedRows - event.requests - event.cachedRows
      s.requests = event.requests
      s.bytes = event.bytes
      s.sha256 = event.sha256
      s.cachedRows = event.cachedRows
      s.inputTokens = event.inputTokens
      s.rewritten = true
      if (event.requests === 0) {
        // Nothing left to submit: straight to collection, like a shard of cached rows.
        s.phase = "terminal"
        s.status = "completed"
        s.rawStatus = event.cachedRows > 0 ? "cached" : "empty"
      }
      const progress = stageProgress(state, s.stage)
      progress.planned -= removed
      state.rowsPlanned -= removed
      progress.invalid += event.conflicts
      state.invalidRows += event.conflicts
      state.duplicateRows += event.duplicates
      state.offsets = event.offsets
      break
    }
    case "KeysChecked": {
      state.keysChecked = true
      break
    }
    case "PlanRefused": {
      // Nothing was submitted or collected: the run goes back to before its planning began.
      const offsets = state.planStart ?? state.offsets
      state.shards.clear()
      state.stages.clear()
      state.usageByModel.clear()
      state.usageByMode.batch.clear()
      state.usageByMode.online.clear()
      state.retries.length = 0
      Object.assign(state, { ...empty(), shards: state.shards, stages: state.stages, usageByModel: state.usageByModel, usageByMode: state.usageByMode, retries: state.retries, deadline: state.deadline, offsets })
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
    case "OnlineStarted": {
      const s = shard(state, event.shard)
      s.phase = "online"
      s.online = true
      s.statusAt = event.at
      s.hybrid = event.hybrid ?? null
      break
    }
    case "DeadlineSet": {
      state.deadline = { at: event.deadline, given: event.given }
      break
    }
    case "BatchRecalled": {
      shard(state, event.shard).recalled = true
      break
    }
    case "OnlineCompleted": {
      const s = shard(state, event.shard)
      s.phase = "terminal"
      s.status = event.cancelled === true ? "cancelled" : "completed"
      s.rawStatus = "online"
      s.counts = event.counts
      s.cancelled = event.cancelled === true
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
      s.awaitingOutput = event.awaitingOutput === true
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
    case "TokenLimitReached": {
      if (event.limit !== undefined) {
        const known = state.learnedLimits.get(event.key)
        state.learnedLimits.set(event.key, known === undefined ? event.limit : Math.min(known, event.limit))
      }
      // Back to waiting with its upload: the next create is a new submission of the same file.
      const s = shard(state, event.shard)
      s.phase = "staged"
      s.submission = event.submission
      s.intentAt = event.at
      s.batchId = null
      s.adopted = false
      s.status = null
      s.rawStatus = null
      s.statusAt = null
      s.awaitingOutput = false
      s.counts = null
      s.errors = []
      break
    }
    case "ShardRecut": {
      const s = shard(state, event.shard)
      for (const c of event.children) {
        addShard(state, { ...c, stage: s.stage, provider: s.provider, model: s.model, endpoint: s.endpoint, attempt: s.attempt, parent: s.id })
      }
      // Its rows are the children's now, but those alone over the limit: it is done with.
      s.phase = "collected"
      const failed = event.failed > 0 ? { permanent: event.failed } : {}
      s.collected = {
        succeeded: 0,
        failed,
        rescheduled: event.children.reduce((a, c) => a + c.requests + c.cachedRows, 0),
        retryShard: null,
        usage: { input: 0, output: 0, cached: 0 }
      }
      if (event.failed > 0) {
        state.failed["permanent"] = (state.failed["permanent"] ?? 0) + event.failed
        stageProgress(state, s.stage).failed += event.failed
      }
      if (event.offsets !== null) state.offsets = event.offsets
      break
    }
    case "ProviderRebound": {
      // Files of shards collected before the move stay at the provider the stage left: this run
      // no longer reaches it (a `sluice gc` there does), so it stops counting them as its own to delete.
      for (const s of state.shards.values()) if (s.stage === event.stage && holdsFiles(s)) s.released = { files: [], kept: [] }
      break
    }
    case "ProviderFilesDeleted": {
      shard(state, event.shard).released = { files: event.files, kept: event.kept }
      break
    }
    case "Collected": {
      const s = shard(state, event.shard)
      s.phase = "collected"
      s.collected = {
        succeeded: event.succeeded,
        failed: event.failed,
        rescheduled: event.rescheduled,
        retryShard: event.retryShard,
        usage: event.usage
      }
      const progress = stageProgress(state, s.stage)
      progress.succeeded += event.succeeded
      // A stage that feeds another passes its rows on; only the last stage's reach the sink.
      if (event.children === undefined) state.succeeded += event.succeeded
      else stageProgress(state, event.children.stage).arrived += event.children.rows
      for (const [k, v] of Object.entries(event.failed)) {
        state.failed[k] = (state.failed[k] ?? 0) + v
        progress.failed += v
      }
      state.fromCache += event.fromCache ?? 0
      state.usage = addUsage(state.usage, event.usage)
      state.usageByModel.set(s.model, addUsage(state.usageByModel.get(s.model) ?? { input: 0, output: 0, cached: 0 }, event.usage))
      const byMode = s.online ? state.usageByMode.online : state.usageByMode.batch
      byMode.set(s.model, addUsage(byMode.get(s.model) ?? { input: 0, output: 0, cached: 0 }, event.usage))
      // Rows this shard answered (cached ones were not sent either way; rescheduled ones are not answered yet).
      const answered = event.succeeded + Object.values(event.failed).reduce((a, b) => a + b, 0) - (event.fromCache ?? 0)
      state.rowsByMode[s.online ? "online" : "batch"] += Math.max(0, answered)
      state.offsets = event.offsets
      break
    }
  }
  return state
}

export const totalFailed = (state: RunState): number =>
  Object.values(state.failed).reduce((a, b) => a + b, 0) + state.invalidRows

/** Rows not yet in a final state, at any stage (a row passed on to the next stage is pending there). */
export const pendingRows = (state: RunState): number => {
  let pending = 0
  for (const p of state.stages.values()) {
    pending += Math.max(0, p.planned - p.succeeded - p.failed) + Math.max(0, p.arrived - p.planned - p.invalid)
  }
  return pending
}

/**
 * A collected shard whose files at the provider were not deleted yet: it was staged or sent
 * as a batch (online and cached shards never were) and no `ProviderFilesDeleted` followed.
 */
export const holdsFiles = (s: ShardState): boolean =>
  s.phase === "collected" && !s.online && (s.batchId !== null || s.inputRef !== null) && s.released === null

export const holdingFiles = (state: RunState): Array<ShardState> => [...state.shards.values()].filter(holdsFiles)

/** Shards that still need work (anything not collected or rejected-and-accounted). */
export const openShards = (state: RunState): Array<ShardState> =>
  [...state.shards.values()].filter((s) => s.phase !== "collected")

/** Later stages whose inbox holds committed rows not yet planned. */
export const unplannedInboxes = (state: RunState): Array<string> =>
  Object.entries(state.offsets.inbox ?? {}).filter(([stage, length]) => (state.stages.get(stage)?.consumed ?? 0) < length).map(([s]) => s)

export const isFinished = (state: RunState): boolean =>
  state.planComplete && openShards(state).length === 0 && unplannedInboxes(state).length === 0

/**
 * A batch the provider says completed whose results the run has not taken yet: it is waiting
 * for its output file (see Poller.awaitsResultFile), not in flight.
 */
export const awaitingOutput = (shard: ShardState): boolean => shard.phase === "created" && shard.awaitingOutput

/**
 * The journal's events: every state change of a run, in the order it happened. Replaying
 * them rebuilds the run's state exactly (see RunState.ts).
 */
import { FailureClass, Sink } from "@sluice/core"
import { BatchCounts, BatchStatus, ProviderIdentity } from "@sluice/providers"
import { Schema } from "effect"

/** Byte lengths of the run's append-only output files at a commit point. */
const { SinkCheckpoint } = Sink

export const Offsets = Schema.Struct({
  results: Schema.Number,
  failures: Schema.Number,
  /** The sink's checkpoint: a number, or with `Sink.all` one per sink. */
  sink: Schema.NullOr(Schema.Union(Schema.Number, SinkCheckpoint)),
  /** Lengths of the inboxes of later stages (`stages/<stage>.jsonl`), in a multi-stage pipeline. */
  inbox: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Number }))
})
export type Offsets = typeof Offsets.Type

export const TokenUsage = Schema.Struct({
  input: Schema.Number,
  output: Schema.Number,
  cached: Schema.Number
})
export type TokenUsage = typeof TokenUsage.Type

/** A shard file was written and is ready to submit. */
export const ShardPlanned = Schema.TaggedStruct("ShardPlanned", {
  shard: Schema.String,
  stage: Schema.String,
  provider: Schema.String,
  model: Schema.String,
  endpoint: Schema.String,
  requests: Schema.Number,
  bytes: Schema.Number,
  sha256: Schema.String,
  /** Attempt number of every row in this shard (1 for first submission). */
  attempt: Schema.Number,
  /** The shard whose failed rows this one resubmits. */
  parent: Schema.NullOr(Schema.String),
  /** Source items consumed once this shard is planned (first-attempt shards only). */
  sourceOffset: Schema.NullOr(Schema.Number),
  /** Invalid or oversize source rows listed in failures.jsonl since the previous shard. */
  invalid: Schema.Number,
  /** Output lengths after listing them (null when there were none). */
  offsets: Schema.NullOr(Offsets),
  /** Input tokens of the shard's requests, counted when the run has a budget. */
  inputTokens: Schema.optional(Schema.Number),
  /** For a later stage's first attempts: bytes of its inbox consumed once this shard is planned. */
  inboxOffset: Schema.optional(Schema.Number),
  /**
   * Rows answered from the response cache, beyond the `requests` to submit: their answers are
   * in `shards/<id>.cached.jsonl`. A shard of cached rows only is never submitted.
   */
  cachedRows: Schema.optional(Schema.Number)
})

/** A later stage's inbox was planned up to `inboxOffset` (journaled when no shard closed there). */
export const StagePlanned = Schema.TaggedStruct("StagePlanned", {
  stage: Schema.String,
  inboxOffset: Schema.Number,
  invalid: Schema.Number,
  offsets: Schema.NullOr(Offsets)
})

/** A source file as planning found it before reading it (`Source.paths`). */
export const SourceFile = Schema.Struct({
  path: Schema.String,
  size: Schema.Number,
  mtimeMs: Schema.NullOr(Schema.Number)
})
export type SourceFile = typeof SourceFile.Type

/** The source was read to its end. */
export const PlanComplete = Schema.TaggedStruct("PlanComplete", {
  sourceOffset: Schema.Number,
  invalid: Schema.Number,
  offsets: Schema.NullOr(Offsets),
  /** Absent in journals written before sluice recorded them. */
  sourceFiles: Schema.optional(Schema.Array(SourceFile))
})

/**
 * The duplicate-key check took rows out of a first-stage shard before it was ever submitted
 * (see KeyCheck.ts): its files now hold what is left. The rows taken out are listed in
 * failures.jsonl, committed at `offsets`.
 */
export const ShardRewritten = Schema.TaggedStruct("ShardRewritten", {
  shard: Schema.String,
  requests: Schema.Number,
  bytes: Schema.Number,
  sha256: Schema.String,
  cachedRows: Schema.Number,
  inputTokens: Schema.optional(Schema.Number),
  /** Rows taken out because an earlier row has their key and request (they are answered by it). */
  duplicates: Schema.Number,
  /** Rows taken out because other rows have their key with another request (onInvalid "skip"). */
  conflicts: Schema.Number,
  offsets: Offsets
})

/** The first stage's keys were checked (and its shards rewritten): its shards may be submitted. */
export const KeysChecked = Schema.TaggedStruct("KeysChecked", {
  stage: Schema.String,
  duplicates: Schema.Number,
  conflicts: Schema.Number
})

/**
 * Rows with conflicting keys refused the plan (onInvalid "fail") before anything was
 * submitted: the planned shards are void, and the next run plans the source again.
 */
export const PlanRefused = Schema.TaggedStruct("PlanRefused", {
  stage: Schema.String,
  /** Rows whose key another row has with a different request, and how many keys. */
  rows: Schema.Number,
  keys: Schema.Number
})

/** About to upload and create a batch for a shard; written before either. */
export const SubmitIntent = Schema.TaggedStruct("SubmitIntent", {
  shard: Schema.String,
  submission: Schema.Number,
  /** Unix seconds: orphan batches created before this are not ours. */
  at: Schema.Number
})

export const Staged = Schema.TaggedStruct("Staged", {
  shard: Schema.String,
  submission: Schema.Number,
  inputRef: Schema.String
})

export const Created = Schema.TaggedStruct("Created", {
  shard: Schema.String,
  submission: Schema.Number,
  batchId: Schema.String,
  /** True when found at the provider after a crash instead of created now. */
  adopted: Schema.Boolean
})

/** Why a hybrid stage (mode auto) sent a shard online rather than by batch (see Hybrid.ts). */
export const HybridReason = Schema.Literal("deadline", "expired", "recalled", "remainder")

/**
 * A shard goes online: its lines are sent to the provider's real-time endpoint, and each
 * answer is appended to `shards/<shard>.online.jsonl` (durable before its request's slot is
 * freed). Written before the first request; a shard that started online stays online.
 */
export const OnlineStarted = Schema.TaggedStruct("OnlineStarted", {
  shard: Schema.String,
  /** Unix milliseconds. */
  at: Schema.Number,
  /** Set when a hybrid stage (mode auto) sent online what it would have batched: why (see Hybrid.ts). */
  hybrid: Schema.optional(HybridReason)
})

/**
 * The run's deadline (`--deadline`), as an absolute time: when it passes, a hybrid stage
 * sends online every row still unanswered. Journaled once, when first given: a resume keeps it.
 */
export const DeadlineSet = Schema.TaggedStruct("DeadlineSet", {
  /** Unix milliseconds. */
  deadline: Schema.Number,
  /** The duration as given ("2h"). */
  given: Schema.String
})

/**
 * A hybrid stage's batch still in flight at the deadline is being cancelled; written before
 * the cancel. Its finished rows are collected; the rest are rescheduled (and go online),
 * rather than ending \`cancelled\`.
 */
export const BatchRecalled = Schema.TaggedStruct("BatchRecalled", {
  shard: Schema.String,
  batchId: Schema.String,
  /** Unix milliseconds. */
  at: Schema.Number
})

/**
 * Every line of an online shard has its answer in the shard's online file (or, `cancelled`,
 * the rest were never sent): the shard is collected from that file like a finished batch.
 */
export const OnlineCompleted = Schema.TaggedStruct("OnlineCompleted", {
  shard: Schema.String,
  counts: BatchCounts,
  cancelled: Schema.optional(Schema.Boolean)
})

/** The provider refused to create the batch (a definite answer, not a lost one). */
export const CreateRejected = Schema.TaggedStruct("CreateRejected", {
  shard: Schema.String,
  submission: Schema.Number,
  failure: FailureClass,
  message: Schema.String
})

export const StatusChanged = Schema.TaggedStruct("StatusChanged", {
  shard: Schema.String,
  batchId: Schema.String,
  status: BatchStatus,
  rawStatus: Schema.String,
  counts: BatchCounts,
  /** Unix milliseconds when the change was seen. */
  at: Schema.optional(Schema.Number),
  /** Set when the batch completed without a file to collect its results from (yet). */
  awaitingOutput: Schema.optional(Schema.Boolean)
})

export const Terminal = Schema.TaggedStruct("Terminal", {
  shard: Schema.String,
  batchId: Schema.String,
  status: BatchStatus,
  rawStatus: Schema.String,
  counts: BatchCounts,
  /** Validation errors of a failed batch. */
  errors: Schema.Array(Schema.String)
})

/**
 * A shard's batch failed with `token_limit_exceeded`: it was never run, so the shard goes back to
 * waiting for token headroom, its upload kept, under a new submission number (the failed batch
 * is never adopted for it). `limit`: what the run learned for its provider and model, if anything.
 */
export const TokenLimitReached = Schema.TaggedStruct("TokenLimitReached", {
  shard: Schema.String,
  batchId: Schema.String,
  submission: Schema.Number,
  /** Unix seconds (the new submission's intent time: its orphan search starts there). */
  at: Schema.Number,
  key: Schema.String,
  /** Tokens in flight with the shard's when its batch was created (unknown after a crash). */
  inFlight: Schema.optional(Schema.Number),
  limit: Schema.optional(Schema.Number)
})

/**
 * A shard whose estimated input tokens exceed its model's enqueued-token limit (learned or
 * lowered after it was planned) was never run and never will be whole: its rows moved to
 * `children`, each under the limit (Recut.ts). Rows alone over the limit ended failed
 * (`oversize`, listed in failures.jsonl, committed at `offsets`). One event: a crash leaves the
 * shard either whole or re-cut, never both. The shard counts as collected from then on.
 */
export const ShardRecut = Schema.TaggedStruct("ShardRecut", {
  shard: Schema.String,
  /** The limit it was cut to. */
  limit: Schema.Number,
  children: Schema.Array(
    Schema.Struct({
      shard: Schema.String,
      requests: Schema.Number,
      bytes: Schema.Number,
      sha256: Schema.String,
      inputTokens: Schema.Number,
      cachedRows: Schema.Number
    })
  ),
  /** Rows that ended failed, each alone over the limit. */
  failed: Schema.Number,
  offsets: Schema.NullOr(Offsets)
})

/**
 * `sluice retry` built new shards from rows that had ended failed. Their counts move from
 * failed back to pending; failures.jsonl lines before `failuresOffset` whose class is in
 * `classes` are superseded.
 */
export const RetryPlanned = Schema.TaggedStruct("RetryPlanned", {
  round: Schema.Number,
  classes: Schema.Array(FailureClass),
  failuresOffset: Schema.Number,
  /** Rows taken back from failed, by class. */
  taken: Schema.Record({ key: Schema.String, value: Schema.Number }),
  shards: Schema.Array(
    Schema.Struct({
      shard: Schema.String,
      requests: Schema.Number,
      bytes: Schema.Number,
      sha256: Schema.String,
      attempt: Schema.Number,
      /** The stage of the rows (absent in journals of single-stage runs: the first stage). */
      stage: Schema.optional(Schema.String),
      /** Input tokens of its requests, counted under an enqueued-token limit. */
      inputTokens: Schema.optional(Schema.Number)
    })
  )
})

/** A shard's results were written to results, failures and the sink. */
export const Collected = Schema.TaggedStruct("Collected", {
  shard: Schema.String,
  succeeded: Schema.Number,
  /** Rows that ended failed, by class. */
  failed: Schema.Record({ key: Schema.String, value: Schema.Number }),
  /** Rows rescheduled into `retryShard`. */
  rescheduled: Schema.Number,
  retryShard: Schema.NullOr(Schema.String),
  usage: TokenUsage,
  offsets: Offsets,
  /**
   * For a stage that feeds another: the rows written to that stage's inbox (its succeeded
   * rows went there, not to the sink).
   */
  children: Schema.optional(Schema.Struct({ stage: Schema.String, rows: Schema.Number })),
  /** Rows answered from the response cache (no usage counted for them). */
  fromCache: Schema.optional(Schema.Number)
})

/**
 * A collected shard's files at the provider were deleted (ProviderStorage.ts): its input,
 * and its output and error files unless kept (`--keep-provider-files`). Written after every
 * deletion succeeded (a file already gone counts), so a crash before it leaves the shard
 * holding files, which the next resume deletes again. Written with empty lists too (inline
 * input, results at a URL): the shard holds nothing more. Absent in older journals.
 */
export const ProviderFilesDeleted = Schema.TaggedStruct("ProviderFilesDeleted", {
  shard: Schema.String,
  files: Schema.Array(Schema.String),
  /** Output and error files left at the provider on purpose. */
  kept: Schema.Array(Schema.String)
})

/**
 * The run was moved to another provider identity (`--rebind-provider`), with no batch in
 * flight: later shards go to `to`; what was collected before stays.
 */
export const ProviderRebound = Schema.TaggedStruct("ProviderRebound", {
  stage: Schema.String,
  from: ProviderIdentity.ProviderIdentity,
  to: ProviderIdentity.ProviderIdentity,
  /** ISO time. */
  at: Schema.String
})

export const JournalEvent = Schema.Union(
  ShardPlanned,
  StagePlanned,
  PlanComplete,
  ShardRewritten,
  KeysChecked,
  PlanRefused,
  SubmitIntent,
  Staged,
  Created,
  CreateRejected,
  OnlineStarted,
  OnlineCompleted,
  DeadlineSet,
  BatchRecalled,
  RetryPlanned,
  StatusChanged,
  Terminal,
  TokenLimitReached,
  ShardRecut,
  Collected,
  ProviderFilesDeleted,
  ProviderRebound
)
export type JournalEvent = typeof JournalEvent.Type

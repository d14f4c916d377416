/**
 * Exactly-once submission. The intent is journaled before anything reaches the provider;
 * the batch is created with metadata naming run, shard and submission. After a crash (or a
 * create whose answer was lost) the provider's batches are listed and a matching one is
 * adopted; a batch is created again only when none exists. An upload made before the crash
 * is found by its file name and reused instead of leaked.
 */
import type { BatchInfo, ProviderError } from "@sluice/providers"
import { Duration, Effect, Option, Schema, Stream } from "effect"
import * as EnqueuedTokens from "./EnqueuedTokens.js"
import * as Failpoint from "./internal/Failpoint.js"
import { defaultMaxPollInterval } from "./Poller.js"
import type { BatchContext, RunContext } from "./RunContext.js"
import type { ShardState } from "./RunState.js"
import * as Telemetry from "./Telemetry.js"

export class SubmitError extends Schema.TaggedError<SubmitError>()("SubmitError", {
  shard: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return `cannot submit shard ${this.shard}: ${this.description}`
  }
}

/**
 * The provider refused the create at once for its enqueued-token limit (Azure's fail-fast
 * queueing: HTTP 400 `token_limit_exceeded`). No batch exists; the upload is kept. The runner
 * treats it as a learned limit: the shard waits for headroom, or is re-cut (Runner.ts).
 */
export class TokenLimitRefused extends Schema.TaggedError<TokenLimitRefused>()("TokenLimitRefused", {
  shard: Schema.String,
  /** The provider's error, as "token_limit_exceeded: <message>". */
  error: Schema.String
}) {
  override get message(): string {
    return `shard ${this.shard}: the provider refused the batch for its enqueued-token limit: ${this.error}`
  }
}

/** Metadata every batch carries, so it can be recognised after a crash. */
export const batchMetadata = (ctx: RunContext, shard: ShardState): Record<string, string> => ({
  sluice_run: ctx.runId,
  sluice_shard: shard.id,
  sluice_submission: String(shard.submission),
  sluice_sha256: shard.sha256.slice(0, 32)
})

/** The upload's file name: unique per run, shard and submission. */
export const stagedName = (ctx: RunContext, shard: ShardState): string =>
  `sluice-${ctx.runId}-${shard.id}-s${shard.submission}.jsonl`

const nowSeconds = Effect.map(Effect.clockWith((c) => c.currentTimeMillis), (ms) => Math.floor(ms / 1000))

/** Orphans older than the intent (less some clock skew) cannot be ours; stop listing there. */
const SKEW_SECONDS = 600

/** Finds a batch created for this shard's current submission, if the provider can list. */
export const findOrphan = (ctx: BatchContext, shard: ShardState): Effect.Effect<Option.Option<BatchInfo>, ProviderError> => {
  const provider = ctx.stageOf(shard.stage).provider
  if (!provider.capabilities.list || shard.intentAt === null) return Effect.succeedNone
  if (!provider.capabilities.metadata) return findOrphanByContent(ctx, shard)
  const since = shard.intentAt - SKEW_SECONDS
  const submission = String(shard.submission)
  return provider.list.pipe(
    Stream.takeWhile((b) => b.createdAt >= since),
    Stream.find(
      (b) =>
        b.metadata["sluice_run"] === ctx.runId &&
        b.metadata["sluice_shard"] === shard.id &&
        b.metadata["sluice_submission"] === submission
    ),
    Stream.runHead
  )
}

/**
 * Without metadata (Anthropic), a batch is known by its creation time and request count, and
 * proven by its results' custom_ids once it has ended. A plausible batch still in progress is
 * waited for rather than paid for twice: its results are needed anyway. Creates of such
 * providers run one at a time (see `submit`), so a crash leaves at most one orphan per run.
 */
const findOrphanByContent = (ctx: BatchContext, shard: ShardState): Effect.Effect<Option.Option<BatchInfo>, ProviderError> => {
  const search = ctx.stageOf(shard.stage).provider.findOrphan
  if (search === undefined || shard.intentAt === null) return Effect.succeedNone
  const known = new Set([...ctx.state.shards.values()].flatMap((s) => (s.batchId === null ? [] : [s.batchId])))
  const identity = { path: ctx.paths.shardFile(shard.id), intentAt: shard.intentAt, exclude: known, skewSeconds: SKEW_SECONDS }
  const attempt: Effect.Effect<Option.Option<BatchInfo>, ProviderError> = Effect.gen(function* () {
    const found = yield* search(identity)
    if (Option.isSome(found.adopt) || found.undecided.length === 0) return found.adopt
    yield* Effect.logInfo(
      `shard ${shard.id}: ${found.undecided.length} batch(es) may be this shard's, created before a crash; waiting for them to end to tell`
    )
    yield* Effect.sleep(ctx.settings.pollInterval ?? ctx.settings.maxPollInterval ?? defaultMaxPollInterval)
    return yield* attempt
  })
  return Effect.suspend(() => attempt)
}

/** Adopts this shard's orphan batch, if the provider has one; true when it did. */
export const adoptOrphan = (ctx: BatchContext, shard: ShardState) =>
  Effect.gen(function* () {
    const orphan = yield* findOrphan(ctx, shard)
    if (Option.isNone(orphan)) return false
    yield* Effect.logInfo(`shard ${shard.id}: adopting batch ${orphan.value.id}, created before a crash or a lost answer`)
    yield* ctx.record({ _tag: "Created", shard: shard.id, submission: shard.submission, batchId: orphan.value.id, adopted: true })
    return true
  })

const MAX_CREATE_TRIES = 8

const submitOnce = (ctx: RunContext, shard: ShardState) =>
  Effect.gen(function* () {
    if (shard.phase !== "planned" && shard.phase !== "intent" && shard.phase !== "staged") return
    const { provider } = ctx.stageOf(shard.stage)
    // Only an intent found already recorded (by an earlier process or attempt) can have left an
    // upload or a batch behind: a fresh submission has nothing to search for. (Recording the
    // intent below moves `shard.phase` to "intent", so the phase cannot tell them apart later.)
    const resumed = shard.phase === "intent"
    if (shard.phase === "planned") {
      yield* ctx.record({ _tag: "SubmitIntent", shard: shard.id, submission: shard.submission + 1, at: yield* nowSeconds })
    } else {
      // An intent without a recorded batch: we crashed, or never heard back from create.
      if (yield* adoptOrphan(ctx, shard)) return
    }

    if (shard.inputRef === null) {
      const name = stagedName(ctx, shard)
      const earlier = resumed ? yield* provider.findStaged(name) : Option.none()
      const staged = Option.isSome(earlier) ? earlier.value : yield* provider.stage(ctx.paths.shardFile(shard.id), name)
      Failpoint.hit("after-upload")
      yield* ctx.record({ _tag: "Staged", shard: shard.id, submission: shard.submission, inputRef: staged.inputRef })
    }

    for (let attempt = 1; ; attempt++) {
      const created = yield* provider
        .create({
          inputRef: shard.inputRef!,
          path: ctx.paths.shardFile(shard.id),
          endpoint: shard.endpoint === "embeddings" ? "embeddings" : "chat",
          metadata: batchMetadata(ctx, shard)
        })
        .pipe(Effect.either)
      if (created._tag === "Right") {
        Failpoint.hit("after-create")
        return yield* ctx.record({
          _tag: "Created",
          shard: shard.id,
          submission: shard.submission,
          batchId: created.right.id,
          adopted: false
        })
      }
      const error = created.left
      // A definite refusal, whatever status carried it: creating again now would be refused again.
      if (EnqueuedTokens.isTokenLimit([error.description])) {
        return yield* new TokenLimitRefused({ shard: shard.id, error: error.description })
      }
      if (error.reason === "Unauthorized" || error.reason === "Quota") {
        return yield* new SubmitError({ shard: shard.id, description: error.message })
      }
      if (error.reason === "Rejected" || error.reason === "NotFound" || error.reason === "Decode") {
        // The upload will never be used: don't leave it at the provider.
        yield* provider.deleteStaged(shard.inputRef!).pipe(Effect.ignore)
        return yield* ctx.record({
          _tag: "CreateRejected",
          shard: shard.id,
          submission: shard.submission,
          failure: "permanent",
          message: error.message
        })
      }
      if (attempt >= MAX_CREATE_TRIES) {
        return yield* new SubmitError({ shard: shard.id, description: `gave up after ${attempt} tries: ${error.message}` })
      }
      const wait = Duration.millis(Math.max(error.retryAfterMs ?? 0, Math.min(30_000, 500 * 2 ** attempt)))
      yield* Effect.logWarning(`shard ${shard.id}: create failed (${error.reason}); trying again in ${Duration.format(wait)}`)
      yield* Effect.sleep(wait)
      if (error.ambiguous) {
        // The batch may exist although we got no answer: look before creating another.
        if (yield* adoptOrphan(ctx, shard)) return
      }
    }
  })

/** Brings a shard to "created" (or "rejected"), whatever phase a crash left it in. */
export const submit = (ctx: RunContext, shard: ShardState) =>
  // Without metadata, creates run one at a time: a crash then leaves at most one orphan.
  (ctx.stageOf(shard.stage).provider.capabilities.metadata ? submitOnce(ctx, shard) : ctx.createLock.withPermits(1)(submitOnce(ctx, shard))).pipe(
    Telemetry.shardSpan("sluice.submit", shard, { when: (s) => s.phase === "planned" || s.phase === "intent" || s.phase === "staged" })
  )

/**
 * Takes back a shard that has no batch yet (cancelling a run): a batch created for it before a
 * crash is adopted (and is then cancelled like any other); otherwise the shard is journaled as
 * rejected (`cancelled`) and never submitted.
 */
export const withdraw = (ctx: BatchContext, shard: ShardState) =>
  Effect.gen(function* () {
    if (shard.phase === "intent" || shard.phase === "staged") yield* adoptOrphan(ctx, shard)
    if (shard.phase === "planned" || shard.phase === "intent" || shard.phase === "staged") {
      yield* ctx.record({
        _tag: "CreateRejected",
        shard: shard.id,
        submission: shard.submission,
        failure: "cancelled",
        message: "cancelled before it was submitted"
      })
    }
  })

/**
 * What a run amounts to, as `run`, `status` and the run events report it: counts, usage and
 * cost, derived from the run's state alone. Apart from Runner.ts so that the modules that
 * report a run (RunEvent, Status, RunView …) need not import the module that drives it.
 */
import type { TokenUsage } from "./JournalEvent.js"
import * as Pricing from "./Pricing.js"
import type * as Retry from "./Retry.js"
import type * as RunDir from "./RunDir.js"
import type { SourceChange } from "./SourceFiles.js"
import * as RunState from "./RunState.js"

export interface RunSummary {
  readonly runId: string
  readonly runDir: string
  readonly finished: boolean
  readonly rows: number
  readonly succeeded: number
  readonly failed: Readonly<Record<string, number>>
  readonly invalid: number
  /** Rows not sent because an earlier row has their key and request (its answer stands for both; listed in failures.jsonl). */
  readonly duplicates: number
  readonly pending: number
  readonly batches: number
  /** Shards sent online (request by request to the real-time endpoint). */
  readonly onlineShards: number
  readonly usage: { readonly input: number; readonly output: number; readonly cached: number }
  /** The first stage's model (see `models` for all). */
  readonly model: string
  readonly models: ReadonlyArray<string>
  /** What all the usage costs at batch prices, and at real-time prices; null when a model has no price. */
  readonly cost: Pricing.Cost | null
  /**
   * Usage and cost per mode: batch answers at batch prices, online answers at real-time
   * prices (cost null when a model has no price).
   */
  readonly costByMode: {
    readonly batch: { readonly usage: TokenUsage; readonly cost: number | null }
    readonly online: { readonly usage: TokenUsage; readonly cost: number | null }
  }
  /** What the run spent: its batch answers at batch prices plus its online answers at real-time prices; null when a model has no price. */
  readonly spent: number | null
  /** Which prices `cost` comes from (the built-in table's date, and a prices file if given). */
  readonly prices: string
  /** Rows answered from the response cache instead of the provider. */
  readonly fromCache: number
  /** Set by a retry: what it resubmitted. */
  readonly retry?: Retry.RetryPlan
  /** Set when the run had a budget: the projected cost submitted, and what it held back. */
  readonly budget?: { readonly limit: number; readonly projected: number; readonly heldShards: number; readonly heldRows: number }
  /**
   * Set when the run had an online budget (`onlineBudget`): what hybrid stages sent online,
   * projected at real-time prices, and the shards (rows) it held back, unanswered.
   */
  readonly onlineBudget?: { readonly limit: number; readonly projected: number; readonly heldShards: number; readonly heldRows: number }
  /** The run's deadline (hybrid stages), once given: when it passes (ISO time), as given, and whether it has. */
  readonly deadline: { readonly at: string; readonly given: string; readonly passed: boolean } | null
  /** Rows answered (succeeded or failed for good, not from the cache), by the mode that answered them. */
  readonly rowsByMode: { readonly batch: number; readonly online: number }
  /** True when the run had finished before this call, which then had nothing to do. */
  readonly alreadyFinished?: boolean
  /** Source files changed since planning read them: their rows after that are not in this run. */
  readonly sourceChanged?: ReadonlyArray<SourceChange>
}

export const summarize = (ctx: {
  runId: string
  paths: RunDir.RunPaths
  state: RunState.RunState
  models: ReadonlyArray<string>
  prices?: Pricing.Prices
}): RunSummary => ({
  runId: ctx.runId,
  runDir: ctx.paths.root,
  finished: RunState.isFinished(ctx.state),
  rows: ctx.state.rowsPlanned + ctx.state.invalidRows + ctx.state.duplicateRows,
  succeeded: ctx.state.succeeded,
  failed: { ...ctx.state.failed, ...(ctx.state.invalidRows > 0 ? { invalid: ctx.state.invalidRows } : {}) },
  invalid: ctx.state.invalidRows,
  duplicates: ctx.state.duplicateRows,
  pending: RunState.pendingRows(ctx.state),
  batches: [...ctx.state.shards.values()].filter((s) => s.batchId !== null).length,
  onlineShards: [...ctx.state.shards.values()].filter((s) => s.online).length,
  usage: ctx.state.usage,
  model: ctx.models[0] ?? "unknown",
  models: ctx.models,
  cost:
    (ctx.state.usageByModel.size === 0
      ? Pricing.cost(ctx.models[0] ?? "", ctx.state.usage, ctx.prices)
      : Pricing.costByModel(ctx.state.usageByModel, ctx.prices)) ?? null,
  ...costsByMode(ctx.state, ctx.prices),
  prices: (ctx.prices ?? Pricing.builtin).label,
  fromCache: ctx.state.fromCache,
  deadline:
    ctx.state.deadline === null
      ? null
      : { at: new Date(ctx.state.deadline.at).toISOString(), given: ctx.state.deadline.given, passed: Date.now() >= ctx.state.deadline.at },
  rowsByMode: { ...ctx.state.rowsByMode }
})

const sumUsage = (byModel: ReadonlyMap<string, TokenUsage>): TokenUsage =>
  [...byModel.values()].reduce(RunState.addUsage, { input: 0, output: 0, cached: 0 })

/** Batch answers at batch prices, online answers at real-time prices. */
const costsByMode = (state: RunState.RunState, prices: Pricing.Prices | undefined): Pick<RunSummary, "costByMode" | "spent"> => {
  const batch = Pricing.costByModel(state.usageByMode.batch, prices)?.batch ?? null
  const online = Pricing.costByModel(state.usageByMode.online, prices)?.realtime ?? null
  return {
    costByMode: {
      batch: { usage: sumUsage(state.usageByMode.batch), cost: batch },
      online: { usage: sumUsage(state.usageByMode.online), cost: online }
    },
    spent: batch === null || online === null ? null : batch + online
  }
}


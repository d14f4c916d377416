/**
 * A run's status from its directory alone, refreshed from the provider when it can be.
 */
import { Path } from "@effect/platform"
import { Providers, isTerminal } from "@sluice/providers"
import type { BatchCounts } from "@sluice/providers"
import { Effect, Option } from "effect"
import * as RunDir from "./RunDir.js"
import { loadState, summarize } from "./Runner.js"
import type { RunSummary } from "./Runner.js"

export interface ShardStatus {
  readonly shard: string
  readonly attempt: number
  readonly requests: number
  readonly phase: string
  readonly batchId: string | null
  readonly status: string | null
  readonly counts: BatchCounts | null
  /** True when the status came from the provider just now, not from the journal. */
  readonly live: boolean
}

export interface RunStatus extends RunSummary {
  readonly pipeline: string
  readonly shards: ReadonlyArray<ShardStatus>
  /** ISO time at which in-flight batches should finish at their current pace, if known. */
  readonly estimatedCompletion: string | null
  /** Why the provider could not be asked, when it could not. */
  readonly refreshError: string | null
}

export const status = (runDir: string, options: { readonly refresh: boolean }) =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    const paths = RunDir.paths(path.resolve(runDir), path)
    const manifest = yield* RunDir.readManifest(paths)
    const state = yield* loadState(paths.journal)
    const shards: Array<ShardStatus> = []
    let refreshError: string | null = null
    let eta: number | null = null
    const providers = yield* Effect.serviceOption(Providers)
    for (const s of state.shards.values()) {
      let status = s.rawStatus
      let counts = s.counts
      let live = false
      if (options.refresh && s.batchId !== null && s.phase === "created" && refreshError === null && Option.isSome(providers)) {
        const info = yield* providers.value.get(s.provider).pipe(
          Effect.flatMap((p) => p.retrieve(s.batchId!)),
          Effect.tapError((e) => Effect.sync(() => (refreshError = e.message))),
          Effect.option
        )
        if (Option.isSome(info)) {
          status = info.value.rawStatus
          counts = info.value.counts
          live = true
          const done = counts.succeeded + counts.failed
          const elapsed = Date.now() / 1000 - info.value.createdAt
          if (!isTerminal(info.value.status) && done > 0 && elapsed > 0) {
            const finish = Date.now() + ((counts.total - done) / (done / elapsed)) * 1000
            eta = Math.max(eta ?? 0, finish)
          }
        }
      }
      shards.push({ shard: s.id, attempt: s.attempt, requests: s.requests, phase: s.phase, batchId: s.batchId, status, counts, live })
    }
    const summary = summarize({ runId: manifest.runId, paths, state, models: manifest.stages.map((s) => s.model) })
    const result: RunStatus = {
      ...summary,
      pipeline: manifest.pipeline,
      shards,
      estimatedCompletion: eta === null ? null : new Date(eta).toISOString(),
      refreshError
    }
    return result
  })

export const render = (s: RunStatus): string => {
  const failed = Object.entries(s.failed).filter(([, n]) => n > 0)
  const lines = [
    `run ${s.runId} (${s.pipeline}) in ${s.runDir}`,
    `  ${s.finished ? "finished" : "not finished"}: ${s.rows} rows · ${s.succeeded} succeeded · ${failed.reduce((a, [, n]) => a + n, 0)} failed${failed.length ? ` (${failed.map(([k, n]) => `${k} ${n}`).join(", ")})` : ""} · ${s.pending} pending${s.duplicates > 0 ? ` · ${s.duplicates} duplicates (answered by an earlier row)` : ""}`,
    `  ${s.batches} batches · tokens in ${s.usage.input}, out ${s.usage.output}` +
      (s.cost === null ? "" : ` · spent $${s.cost.batch.toFixed(4)} (real-time price $${s.cost.realtime.toFixed(4)})`),
    ...(s.estimatedCompletion === null ? [] : [`  estimated completion ${s.estimatedCompletion}`]),
    ...(s.refreshError === null ? [] : [`  (provider status not refreshed: ${s.refreshError})`]),
    "  shards:",
    ...s.shards.map(
      (sh) =>
        `    ${sh.shard} ${sh.phase}${sh.batchId === null ? "" : ` ${sh.batchId}`}${sh.status === null ? "" : ` ${sh.status}${sh.live ? "" : " (journal)"}`}` +
        (sh.counts === null ? ` ${sh.requests} requests` : ` ${sh.counts.succeeded}/${sh.counts.total} ok, ${sh.counts.failed} failed`)
    )
  ]
  return lines.join("\n")
}

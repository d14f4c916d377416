/**
 * A run's status from its directory alone, refreshed from the provider when it can be. It
 * loads nothing the run directory names: the pipeline file is only hashed, to say whether
 * `resume` would take it.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { ProviderIdentity, Providers, isTerminal } from "@sluice/providers"
import type { BatchCounts, BatchInfo } from "@sluice/providers"
import { Duration, Effect, Option } from "effect"
import * as Hybrid from "./Hybrid.js"
import * as KeptSettings from "./KeptSettings.js"
import { sha256Of } from "./internal/fileHash.js"
import { awaitsResultFile } from "./Poller.js"
import type * as Pricing from "./Pricing.js"
import * as RunDir from "./RunDir.js"
import { count, money, number } from "./internal/format.js"
import { awaitingOutput, holdingFiles } from "./RunState.js"
import type { ShardState } from "./RunState.js"
import { loadState } from "./JournalState.js"
import { summarize } from "./RunSummary.js"
import type { RunSummary } from "./RunSummary.js"

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
  /** The provider says the batch completed, and it has no output file yet. */
  readonly awaitingOutput: boolean
  /** How the shard's requests go: by batch, or online (one by one to the real-time endpoint). */
  readonly mode: "batch" | "online"
  /** Why a hybrid stage (mode auto) sent it online (null: as its mode says); `recalled`: its batch was cancelled at the deadline. */
  readonly hybrid: ShardState["hybrid"]
  readonly recalled: boolean
}

export interface RunStatus extends RunSummary {
  readonly pipeline: string
  readonly shards: ReadonlyArray<ShardStatus>
  /** ISO time at which in-flight batches should finish at their current pace, if known. */
  readonly estimatedCompletion: string | null
  /** Why the provider could not be asked, when it could not. */
  readonly refreshError: string | null
  /** Batches in flight the provider had not answered for within `refreshBudgetSeconds`: shown from the journal (`live: false`). */
  readonly notRefreshed: number
  /** The directory the run was started in, where its relative paths resolve (null in older runs). */
  readonly baseDir: string | null
  /** Each stage's provider identity, as the run is bound to it (null where not yet recorded). */
  readonly bindings: Readonly<Record<string, ProviderIdentity.ProviderIdentity | null>>
  /**
   * The pipeline file `resume` and `retry` load, and whether it is as the run recorded it:
   * "recorded" (same SHA-256), "changed" (they refuse it), "missing", or "unrecorded" (a run
   * from before hashes were recorded).
   */
  readonly pipelineFile: { readonly path: string; readonly state: "recorded" | "changed" | "missing" | "unrecorded" } | null
  /** The settings `resume` and `retry` keep unless given again: `--mode`, `--online-budget`, `--online-below`, `--budget`, `--keep-provider-files` (see KeptSettings.ts). */
  readonly settings: KeptSettings.Kept
  /**
   * Files at the provider: `holding`, collected shards whose files were not deleted yet (a
   * deletion that failed or a crash; the next resume deletes them); `kept`, output and error
   * files left there by `--keep-provider-files`.
   */
  readonly providerFiles: { readonly holding: number; readonly kept: number }
}

const pipelineFileOf = (root: string, manifest: RunDir.Manifest, path: Path.Path): RunStatus["pipelineFile"] => {
  if (manifest.pipelineFile === null) return null
  const file = path.resolve(root, manifest.pipelineFile)
  let sha256: string
  try {
    sha256 = sha256Of(file)
  } catch {
    return { path: file, state: "missing" }
  }
  if (manifest.pipelineSha256 === undefined) return { path: file, state: "unrecorded" }
  return { path: file, state: sha256 === manifest.pipelineSha256 ? "recorded" : "changed" }
}

/** Lines of an online shard's file (complete ones only) and how many are successes. */
const onlineAnswers = (file: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    if (!(yield* fs.exists(file))) return { lines: 0, succeeded: 0 }
    const text = new TextDecoder().decode(yield* fs.readFile(file))
    const complete = text.slice(0, text.lastIndexOf("\n") + 1).split("\n").filter((l) => l !== "")
    return { lines: complete.length, succeeded: complete.filter((l) => l.startsWith(`{"_tag":"Succeeded"`)).length }
  }).pipe(Effect.orElseSucceed(() => ({ lines: 0, succeeded: 0 })))

/**
 * How status asks the provider about the run's batches in flight: at most this many at once, and
 * for at most `refreshBudgetSeconds` in all. One at a time, a run with many batches in flight, or a
 * provider busy answering, kept status waiting for seconds; a batch still unanswered when the
 * budget is spent is shown from the journal, marked so, and counted (`notRefreshed`).
 */
export const refreshConcurrency = 8
export const defaultRefreshSeconds = 2

/** The refresh's budget: `SLUICE_STATUS_REFRESH_SECONDS` (a slow provider, a loaded machine), else 2 s. */
export const refreshBudgetSeconds = (): number => {
  const given = Number(process.env["SLUICE_STATUS_REFRESH_SECONDS"])
  return Number.isFinite(given) && given > 0 ? given : defaultRefreshSeconds
}

export const status = (runDir: string, options: { readonly refresh: boolean; readonly prices?: Pricing.Prices }) =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    const paths = RunDir.paths(path.resolve(runDir), path)
    const manifest = yield* RunDir.readManifest(paths)
    const state = yield* loadState(paths)
    const providers = Option.getOrUndefined(yield* Effect.serviceOption(Providers))
    const inFlight = options.refresh && providers !== undefined ? [...state.shards.values()].filter((s) => s.batchId !== null && s.phase === "created") : []
    const answers = new Map<string, BatchInfo>()
    let refreshError: string | null = null
    const ask = (s: ShardState) => {
      const binding = manifest.stages.find((st) => st.name === s.stage)?.binding
      return providers!.get(s.provider).pipe(
        // A provider configured elsewhere than the run is bound to would not know its batches.
        Effect.filterOrFail(
          (p) => binding === undefined || ProviderIdentity.equals(binding, ProviderIdentity.of(p)),
          (p) => ({
            message: `stage "${s.stage}" is bound to ${ProviderIdentity.render(binding!)}, but ${s.provider} is now ${ProviderIdentity.render(ProviderIdentity.of(p))}`
          })
        ),
        Effect.flatMap((p) => p.retrieve(s.batchId!)),
        Effect.match({
          onFailure: (e) => void (refreshError ??= e.message),
          onSuccess: (info) => void answers.set(s.id, info)
        })
      )
    }
    const budget = refreshBudgetSeconds()
    // After a failure no more are asked (the message says why); those already asked are used.
    const asked = yield* Effect.forEach(inFlight, (s) => Effect.suspend(() => (refreshError === null ? ask(s) : Effect.void)), {
      concurrency: refreshConcurrency,
      discard: true
    }).pipe(Effect.timeoutOption(Duration.seconds(budget)))
    const notRefreshed = Option.isNone(asked) && refreshError === null ? inFlight.filter((s) => !answers.has(s.id)).length : 0
    const shards: Array<ShardStatus> = []
    let eta: number | null = null
    for (const s of state.shards.values()) {
      let status = s.rawStatus
      let counts = s.counts
      let live = false
      let waiting = awaitingOutput(s)
      const info = answers.get(s.id)
      if (info !== undefined) {
        status = info.rawStatus
        counts = info.counts
        live = true
        waiting = awaitsResultFile(info)
        const done = counts.succeeded + counts.failed
        const elapsed = Date.now() / 1000 - info.createdAt
        // A batch with every request done is finalizing: its pace says nothing of when it ends.
        if (!isTerminal(info.status) && done > 0 && done < counts.total && elapsed > 0) {
          const finish = Date.now() + ((counts.total - done) / (done / elapsed)) * 1000
          eta = Math.max(eta ?? 0, finish)
        }
      }
      if (s.phase === "online") {
        // Answers so far: the online file's complete lines (each durable before it counts).
        const answered = yield* onlineAnswers(paths.onlineFile(s.id))
        counts = { total: s.requests, succeeded: answered.succeeded, failed: answered.lines - answered.succeeded }
      }
      shards.push({ shard: s.id, attempt: s.attempt, requests: s.requests, phase: s.phase, batchId: s.batchId, status, counts, live, awaitingOutput: waiting, mode: s.online ? "online" : "batch", hybrid: s.hybrid, recalled: s.recalled })
    }
    const summary = summarize({ runId: manifest.runId, paths, state, models: manifest.stages.map((s) => s.model), ...(options.prices === undefined ? {} : { prices: options.prices }) })
    const result: RunStatus = {
      ...summary,
      pipeline: manifest.pipeline,
      shards,
      estimatedCompletion: eta === null ? null : new Date(eta).toISOString(),
      refreshError,
      notRefreshed,
      baseDir: manifest.baseDir ?? null,
      bindings: Object.fromEntries(manifest.stages.map((st) => [st.name, st.binding ?? null])),
      pipelineFile: pipelineFileOf(paths.root, manifest, path),
      settings: manifest.settings ?? {},
      providerFiles: {
        holding: holdingFiles(state).length,
        kept: [...state.shards.values()].reduce((n, sh) => n + (sh.released?.kept.length ?? 0), 0)
      }
    }
    return result
  })

const fileNotes: Record<NonNullable<RunStatus["pipelineFile"]>["state"], string> = {
  recorded: "",
  unrecorded: "",
  missing: " (missing: resume and retry cannot load it)",
  changed: " (changed since the run recorded it: resume and retry refuse it; `sluice run <file> --run-dir <dir>` takes it as it is now)"
}

export const render = (s: RunStatus): string => {
  const failed = Object.entries(s.failed).filter(([, n]) => n > 0)
  const lines = [
    `run ${s.runId} (${s.pipeline}) in ${s.runDir}`,
    `  ${s.finished ? "finished" : "not finished"}: ${count(s.rows, "row")} · ${number(s.succeeded)} succeeded · ${number(failed.reduce((a, [, x]) => a + x, 0))} failed${failed.length ? ` (${failed.map(([k, x]) => `${k} ${number(x)}`).join(", ")})` : ""} · ${number(s.pending)} pending${s.duplicates > 0 ? ` · ${count(s.duplicates, "duplicate")} (answered by an earlier row)` : ""}`,
    `  ${count(s.batches, "batch", "batches")} · tokens in ${number(s.usage.input)}, out ${number(s.usage.output)}` +
      (s.cost === null
        ? ""
        : s.costByMode.online.usage.input + s.costByMode.online.usage.output === 0 || s.spent === null
        ? ` · spent ${money(s.cost.batch)} (real-time price ${money(s.cost.realtime)})`
        : ` · spent ${money(s.spent)} (online ${money(s.costByMode.online.cost ?? 0)} at real-time prices, batch ${money(s.costByMode.batch.cost ?? 0)}; all in batch ${money(s.cost.batch)})`),
    ...Object.entries(s.bindings).map(([stage, b]) => `  stage ${stage}: ${b === null ? "provider not recorded yet" : ProviderIdentity.render(b)}`),
    ...(s.baseDir === null ? [] : [`  started in ${s.baseDir} (relative paths resolve there)`]),
    ...(s.pipelineFile === null ? [] : [`  pipeline file ${s.pipelineFile.path}${fileNotes[s.pipelineFile.state]}`]),
    ...(KeptSettings.isEmpty(s.settings) ? [] : [`  recorded ${KeptSettings.describe(s.settings)} (resume and retry use ${Object.keys(s.settings).length === 1 ? "it" : "them"} unless given again)`]),
    ...(s.deadline === null
      ? []
      : [`  deadline ${s.deadline.at} (--deadline ${s.deadline.given})${s.deadline.passed ? ", passed" : ""} · rows answered by batch ${number(s.rowsByMode.batch)}, online ${number(s.rowsByMode.online)}`]),
    ...(s.estimatedCompletion === null ? [] : [`  estimated completion ${s.estimatedCompletion}`]),
    ...(s.refreshError === null ? [] : [`  (provider status not refreshed: ${s.refreshError})`]),
    ...(s.notRefreshed === 0
      ? []
      : [`  (provider status of ${count(s.notRefreshed, "batch", "batches")} not given within ${refreshBudgetSeconds()} s: shown from the journal)`]),
    ...(s.providerFiles.holding === 0
      ? []
      : [`  provider files: ${count(s.providerFiles.holding, "collected shard")} still ${s.providerFiles.holding === 1 ? "holds" : "hold"} files at the provider (\`sluice resume ${s.runDir}\` deletes them)`]),
    ...(s.providerFiles.kept === 0 ? [] : [`  provider files: ${count(s.providerFiles.kept, "output file")} left at the provider by --keep-provider-files (\`sluice gc ${s.runDir} --yes\` deletes what is still there)`]),
    "  shards:",
    ...s.shards.map(
      (sh) =>
        `    ${sh.shard} ${sh.phase}${sh.batchId === null ? "" : ` ${sh.batchId}`}${sh.mode === "online" && sh.phase !== "online" ? " (online)" : ""}` +
          (sh.hybrid === null ? "" : ` (sent online: ${Hybrid.said[sh.hybrid]})`) +
          (sh.recalled ? " (recalled at the deadline)" : "") +
          (sh.awaitingOutput ? ` completed, waiting for its output file${sh.live ? "" : " (journal)"}` : sh.status === null ? "" : ` ${sh.status}${sh.live ? "" : " (journal)"}`) +
        (sh.counts === null ? ` ${count(sh.requests, "request")}` : ` ${number(sh.counts.succeeded)}/${number(sh.counts.total)} ok, ${number(sh.counts.failed)} failed`)
    )
  ]
  return lines.join("\n")
}

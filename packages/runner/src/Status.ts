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
import * as EnqueuedTokens from "./EnqueuedTokens.js"
import type * as TokenLedger from "./TokenLedger.js"
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

/**
 * A provider and model of a run on a cluster as the cluster's enqueued-token ledger counts them
 * (ClusterLedger.ts): what every run of the cluster holds, what this run holds, and the limits.
 */
export interface ClusterLedgerLine {
  /** The ledger's key: provider family, base URL, model. */
  readonly key: string
  readonly model: string
  /** Every run of the cluster: enqueued tokens and batches held, shards waiting in line. */
  readonly cluster: { readonly tokens: number; readonly batches: number; readonly waiting: number }
  /** This run's part of it. */
  readonly run: { readonly tokens: number; readonly batches: number; readonly waiting: number }
  /**
   * The limits the ledger schedules the key under: the lowest configured by a live run of the
   * cluster (`--max-enqueued-tokens`, `--max-batches`), this run's own, and the one learned
   * from a `token_limit_exceeded` (null: none).
   */
  readonly limits: {
    readonly tokens: number | null
    readonly batches: number | null
    readonly runTokens: number | null
    readonly runBatches: number | null
    readonly learned: number | null
  }
}

/** The lines of the ledger for the run: its stages' keys (by their binding), and any key it holds or waits for. */
export const ledgerLines = (data: TokenLedger.LedgerData, runId: string, manifest: Pick<RunDir.Manifest, "stages">): Array<ClusterLedgerLine> => {
  const keys = new Set<string>()
  for (const st of manifest.stages) if (st.binding !== undefined) keys.add(EnqueuedTokens.keyOfIdentity(st.binding, st.model))
  for (const e of [...data.entries, ...data.waiting, ...(data.configured ?? [])]) if (e.run === runId) keys.add(e.key)
  const sum = (es: ReadonlyArray<TokenLedger.Entry>) => es.reduce((a, e) => a + e.tokens, 0)
  const lowest = (values: ReadonlyArray<number | undefined>) => values.reduce<number | undefined>((a, v) => EnqueuedTokens.lower(a, v), undefined) ?? null
  return [...keys].sort().map((key) => {
    const entries = data.entries.filter((e) => e.key === key)
    const waiting = data.waiting.filter((e) => e.key === key)
    const configured = (data.configured ?? []).filter((c) => c.key === key)
    const own = configured.filter((c) => c.run === runId)
    const mine = entries.filter((e) => e.run === runId)
    return {
      key,
      model: EnqueuedTokens.modelOfKey(key),
      cluster: { tokens: sum(entries), batches: entries.length, waiting: waiting.length },
      run: { tokens: sum(mine), batches: mine.length, waiting: waiting.filter((e) => e.run === runId).length },
      limits: {
        tokens: lowest([...configured.map((c) => c.tokens), data.limits[key]?.tokens]),
        batches: lowest(configured.map((c) => c.batches)),
        runTokens: lowest(own.map((c) => c.tokens)),
        runBatches: lowest(own.map((c) => c.batches)),
        learned: data.limits[key]?.tokens ?? null
      }
    }
  })
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
  /** A run on a cluster whose ledger was read (ClusterLedger.ts): its provider and models there; null for any other run. */
  readonly clusterLedger: ReadonlyArray<ClusterLedgerLine> | null
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
 * budget is spent is shown from the journal, marked so, and counted (`notRefreshed`). The default
 * keeps status under a second during a run (issue 15): in the 10M-row benchmark a 2-s budget
 * left it at a median 1.65 s, waiting on a provider busy with the run's batches.
 */
export const refreshConcurrency = 8
export const defaultRefreshSeconds = 0.6

/** The refresh's budget: `SLUICE_STATUS_REFRESH_SECONDS` (a slow provider, a loaded machine), else 0.6 s. */
export const refreshBudgetSeconds = (): number => {
  const given = Number(process.env["SLUICE_STATUS_REFRESH_SECONDS"])
  return Number.isFinite(given) && given > 0 ? given : defaultRefreshSeconds
}

export const status = (
  runDir: string,
  options: {
    readonly refresh: boolean
    readonly prices?: Pricing.Prices
    /** The cluster's enqueued-token ledger, for a run on a cluster (ClusterJournal.ledgerFor). */
    readonly clusterLedger?: TokenLedger.LedgerData | undefined
  }
) =>
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
      },
      clusterLedger: options.clusterLedger === undefined ? null : ledgerLines(options.clusterLedger, manifest.runId, manifest)
    }
    return result
  })

const fileNotes: Record<NonNullable<RunStatus["pipelineFile"]>["state"], string> = {
  recorded: "",
  unrecorded: "",
  missing: " (missing: resume and retry cannot load it)",
  changed: " (changed since the run recorded it: resume and retry refuse it; `sluice run <file> --run-dir <dir>` takes it as it is now)"
}

/** "1,234 tokens in 2 batches" */
const held = (h: { readonly tokens: number; readonly batches: number }) => `${count(h.tokens, "token")} in ${count(h.batches, "batch", "batches")}`

const ledgerLine = (l: ClusterLedgerLine): string => {
  const limit = (all: number | null, own: number | null, unit: string, units: string) =>
    all === null ? [] : [`${count(all, unit, units)}${own === null ? "" : own === all ? " (this run's)" : ` (this run's ${number(own)})`}`]
  const limits = [...limit(l.limits.tokens, l.limits.runTokens, "token", "tokens"), ...limit(l.limits.batches, l.limits.runBatches, "batch", "batches")]
  return (
    `  cluster ledger ${l.model} (${l.key.split(" ").slice(0, 2).join(" ")}): enqueued cluster-wide ${held(l.cluster)}, this run ${held(l.run)}` +
    (l.cluster.waiting === 0 ? "" : `; ${count(l.cluster.waiting, "shard")} waiting in line (this run's ${number(l.run.waiting)})`) +
    (limits.length === 0 ? "; no limit" : `; limit ${limits.join(", ")}`) +
    (l.limits.learned === null ? "" : ` (learned from the provider: ${count(l.limits.learned, "token")})`)
  )
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
    ...(s.clusterLedger ?? []).map(ledgerLine),
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

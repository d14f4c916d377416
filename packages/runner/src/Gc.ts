/**
 * `sluice gc`: what sluice left at a provider and no run needs any more — input files,
 * output and error files, ended batches — listed, and deleted on request.
 *
 * What is sluice's is told by what sluice writes: a batch's metadata (`sluice_run`,
 * `sluice_shard`; Gemini: its display name), an upload's name (`sluice-<run>-<shard>-s<n>.jsonl`,
 * Submitter.stagedName), the output and error files of sluice's batches, and the batch ids the
 * run directories given journaled (Anthropic batches carry no metadata: only those are known).
 * Anything else is never touched.
 *
 * What is needed: every file of a batch still in progress, and whatever belongs to a shard of a
 * run directory given that is not collected yet, or that an unfinished run given does not know
 * (it may be one it is submitting now). Runs whose directory is not given are taken as done once
 * what they made is older than `olderThan`: a run of another machine or directory may still
 * collect a batch that ended an hour ago, and gc cannot see it.
 */
import * as Path from "@effect/platform/Path"
import { Providers, isTerminal } from "@sluice/providers"
import type { BatchProvider, ProviderError, StoredFile } from "@sluice/providers"
import { Effect, Either, Schema, Stream } from "effect"
import type { DatabaseGc } from "./ClusterGc.js"
import { count, number } from "./internal/format.js"
import * as RunDir from "./RunDir.js"
import { loadState } from "./JournalState.js"
import * as RunState from "./RunState.js"

export type Kind = "input" | "output" | "batch"

export interface GcItem {
  readonly provider: string
  readonly kind: Kind
  readonly id: string
  /** The file's name at the provider, when it has one. */
  readonly name: string | null
  readonly bytes: number | null
  /** The run it belongs to, when known. */
  readonly run: string | null
}

export interface GcReport {
  readonly dryRun: boolean
  readonly providers: ReadonlyArray<string>
  readonly runs: ReadonlyArray<{ readonly runDir: string; readonly runId: string; readonly finished: boolean }>
  /** sluice's, not needed: deleted with --yes. Batches have no bytes (null). */
  readonly unneeded: Readonly<Record<"input" | "output", { readonly count: number; readonly bytes: number }>> & {
    readonly batch: { readonly count: number; readonly bytes: null }
  }
  /** sluice's, kept: still needed by a run given, or of a batch in progress. */
  readonly needed: { readonly files: number; readonly batches: number }
  /** sluice's batches still in progress (never deleted: `sluice cancel` stops them). */
  readonly inProgress: number
  /** sluice's, of runs it does not see, kept because they are younger than `olderThanSeconds`. */
  readonly recent: { readonly files: number; readonly batches: number }
  readonly olderThanSeconds: number
  /** Not sluice's: never touched. */
  readonly foreign: { readonly files: number; readonly batches: number }
  /** Deleted now (with --yes). */
  readonly deleted: Readonly<Record<Kind, number>>
  readonly failed: ReadonlyArray<{ readonly provider: string; readonly kind: Kind; readonly id: string; readonly message: string }>
  readonly items: ReadonlyArray<GcItem>
  /** Runs that keep their journal in a cluster's database: the rows of their old generations there (ClusterGc.ts). */
  readonly database?: DatabaseGc
}

/** Neither a provider nor a run directory to look at. */
export class GcUsageError extends Schema.TaggedError<GcUsageError>()("GcUsageError", {
  description: Schema.String
}) {
  override get message(): string {
    return this.description
  }
}

/** What the run directories given say: per run, its shards and whether it is finished. */
interface KnownRun {
  readonly runDir: string
  readonly runId: string
  readonly providers: ReadonlySet<string>
  readonly state: RunState.RunState
  readonly finished: boolean
}

const readRun = (runDir: string) =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    const paths = RunDir.paths(path.resolve(runDir), path)
    const manifest = yield* RunDir.readManifest(paths)
    const state = yield* loadState(paths)
    return {
      runDir: paths.root,
      runId: manifest.runId,
      providers: new Set([...manifest.stages.map((s) => s.provider), ...[...state.shards.values()].map((s) => s.provider)]),
      state,
      finished: RunState.isFinished(state)
    } satisfies KnownRun
  })

/** The upload name `Submitter.stagedName` gives; the run and shard are read back against known runs. */
const stagedPattern = /^sluice-.+-s\d+\.jsonl$/

/** "recent": of a run gc does not see, and too young to be taken as done. */
type Need = "needed" | "recent" | "unneeded"

/** Of two needs of one file (two batches name it), the stronger. */
const stronger = (a: Need, b: Need): Need => (a === "needed" || b === "needed" ? "needed" : a === "recent" || b === "recent" ? "recent" : "unneeded")

/**
 * Whether a run needs what belongs to (run, shard), made at `createdAt` (unix seconds): a shard
 * not collected needs its files and batch; an unfinished run may need one of a shard it does not
 * know yet; a run not seen, what it made after `youngAfter`.
 */
const needOf = (
  runs: ReadonlyMap<string, KnownRun>,
  runId: string | undefined,
  shardId: string | undefined,
  createdAt: number,
  youngAfter: number
): Need => {
  const run = runId === undefined ? undefined : runs.get(runId)
  if (run === undefined) return createdAt > youngAfter ? "recent" : "unneeded"
  const shard = shardId === undefined ? undefined : run.state.shards.get(shardId)
  if (shard === undefined) return run.finished ? "unneeded" : "needed"
  return shard.phase === "collected" ? "unneeded" : "needed"
}

interface ProviderScan {
  readonly items: Array<GcItem>
  needed: { files: number; batches: number }
  recent: { files: number; batches: number }
  inProgress: number
  foreign: { files: number; batches: number }
}

const scanProvider = (provider: BatchProvider, runs: ReadonlyMap<string, KnownRun>, youngAfter: number): Effect.Effect<ProviderScan, ProviderError> =>
  Effect.gen(function* () {
    const scan: ProviderScan = { items: [], needed: { files: 0, batches: 0 }, recent: { files: 0, batches: 0 }, inProgress: 0, foreign: { files: 0, batches: 0 } }
    // Batch ids the runs journaled: the only way to know an Anthropic batch is sluice's.
    const journaled = new Map<string, { runId: string; shard: string }>()
    for (const run of runs.values()) {
      for (const s of run.state.shards.values()) if (s.batchId !== null && s.provider === provider.name) journaled.set(s.batchId, { runId: run.runId, shard: s.id })
    }
    const storage = provider.storage
    /** Files sluice's batches name, with whether they are needed. */
    const batchFiles = new Map<string, { need: Need; kind: Kind; run: string | null }>()
    const batches = provider.capabilities.list ? yield* Stream.runCollect(provider.list) : []
    for (const batch of batches) {
      const owner: { runId: string; shard: string } | undefined =
        batch.metadata["sluice_run"] !== undefined && batch.metadata["sluice_shard"] !== undefined
          ? { runId: batch.metadata["sluice_run"], shard: batch.metadata["sluice_shard"] }
          : journaled.get(batch.id)
      if (owner === undefined) {
        scan.foreign.batches++
        continue
      }
      const ended = isTerminal(batch.status)
      const need: Need = !ended ? "needed" : needOf(runs, owner.runId, owner.shard, batch.createdAt, youngAfter)
      if (!ended) scan.inProgress++
      else if (need === "needed") scan.needed.batches++
      else if (need === "recent") scan.recent.batches++
      else if (provider.deleteBatch !== undefined) {
        scan.items.push({ provider: provider.name, kind: "batch", id: batch.id, name: null, bytes: null, run: owner.runId })
      }
      if (storage !== undefined) {
        const input = batch.inputRef === null ? null : storage.inputFile(batch.inputRef)
        const named = (id: string, kind: Kind) => {
          const earlier = batchFiles.get(id)
          // A file two batches name (an input adopted after a crash) is needed if either needs it.
          batchFiles.set(id, { need: earlier === undefined ? need : stronger(earlier.need, need), kind, run: owner.runId })
        }
        if (input !== null) named(input, "input")
        for (const id of storage.outputFiles(batch)) named(id, "output")
      }
    }
    if (storage === undefined) return scan

    // Uploads by name: `sluice-<run>-<shard>-s<n>.jsonl`, for the shards of the runs given.
    const uploadOwners = new Map<string, { runId: string; shard: string }>()
    for (const run of runs.values()) {
      for (const s of run.state.shards.values()) uploadOwners.set(`sluice-${run.runId}-${s.id}-s`, { runId: run.runId, shard: s.id })
    }
    const runIdOfName = (name: string): string | undefined =>
      [...runs.values()].find((r) => name.startsWith(`sluice-${r.runId}-`))?.runId

    /** Whose a file is and whether it is needed; undefined: not sluice's. */
    const ownerOf = (file: StoredFile): { need: Need; kind: Kind; run: string | null } | undefined => {
      const byBatch = batchFiles.get(file.id)
      if (byBatch !== undefined) return byBatch
      if (file.name === null || !stagedPattern.test(file.name)) return undefined
      // An upload no batch names: before its create, or its batch rejected or forgotten.
      const owner = uploadOwners.get(file.name.replace(/\d+\.jsonl$/, ""))
      if (owner !== undefined) return { need: needOf(runs, owner.runId, owner.shard, file.createdAt, youngAfter), kind: "input", run: owner.runId }
      const run = runIdOfName(file.name)
      return { need: needOf(runs, run, undefined, file.createdAt, youngAfter), kind: "input", run: run ?? null }
    }
    for (const file of yield* Stream.runCollect(storage.files)) {
      const owner = ownerOf(file)
      if (owner === undefined) scan.foreign.files++
      else if (owner.need === "needed") scan.needed.files++
      else if (owner.need === "recent") scan.recent.files++
      else scan.items.push({ provider: provider.name, kind: owner.kind, id: file.id, name: file.name, bytes: file.bytes, run: owner.run })
    }
    return scan
  })

/** Deletes one item; a failure is reported, never fatal: a later gc tries again. */
const deleteItem = (provider: BatchProvider, item: GcItem): Effect.Effect<Either.Either<void, ProviderError>> =>
  (item.kind === "batch" ? provider.deleteBatch?.(item.id) ?? Effect.void : provider.storage?.deleteFile(item.id) ?? Effect.void).pipe(Effect.either)

export const gc = (options: {
  readonly provider?: string | undefined
  readonly runDirs: ReadonlyArray<string>
  /** Every run directory under it is read too (the CLI's default: .sluice/runs), so a local run is never taken as done. */
  readonly runsDir?: string | undefined
  readonly yes: boolean
  /** What runs it does not see made more recently than this (seconds ago) is kept. */
  readonly olderThanSeconds: number
}) =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    const youngAfter = Date.now() / 1000 - options.olderThanSeconds
    const runs = new Map<string, KnownRun>()
    const given = options.runDirs.map((d) => path.resolve(d))
    const found = options.runsDir === undefined ? [] : yield* RunDir.under(options.runsDir)
    for (const dir of [...new Set([...given, ...found])]) {
      const run = yield* readRun(dir)
      runs.set(run.runId, run)
    }
    const names =
      options.provider !== undefined ? [options.provider] : [...new Set([...runs.values()].flatMap((r) => [...r.providers]))].sort()
    if (names.length === 0) {
      return yield* new GcUsageError({
        description: "gc needs a provider: name one (--provider openai) or give the run directories whose providers to clean up"
      })
    }
    const registry = yield* Providers
    const items: Array<GcItem> = []
    const needed = { files: 0, batches: 0 }
    const recent = { files: 0, batches: 0 }
    const foreign = { files: 0, batches: 0 }
    let inProgress = 0
    const deleted: Record<Kind, number> = { input: 0, output: 0, batch: 0 }
    const failed: Array<GcReport["failed"][number]> = []
    for (const name of names) {
      const provider = yield* registry.get(name)
      const scan = yield* scanProvider(provider, runs, youngAfter)
      items.push(...scan.items)
      needed.files += scan.needed.files
      needed.batches += scan.needed.batches
      recent.files += scan.recent.files
      recent.batches += scan.recent.batches
      foreign.files += scan.foreign.files
      foreign.batches += scan.foreign.batches
      inProgress += scan.inProgress
      if (!options.yes) continue
      // Files first: a Gemini batch's responses file stays findable through the batch until then.
      const ordered = [...scan.items.filter((i) => i.kind !== "batch"), ...scan.items.filter((i) => i.kind === "batch")]
      const outcomes = yield* Effect.forEach(ordered, (item) => Effect.map(deleteItem(provider, item), (r) => [item, r] as const), { concurrency: 4 })
      for (const [item, outcome] of outcomes) {
        if (Either.isRight(outcome)) deleted[item.kind]++
        else failed.push({ provider: name, kind: item.kind, id: item.id, message: outcome.left.message })
      }
    }
    const unneeded = (kind: Kind) => {
      const of = items.filter((i) => i.kind === kind)
      return { count: of.length, bytes: of.reduce((a, i) => a + (i.bytes ?? 0), 0) }
    }
    const report: GcReport = {
      dryRun: !options.yes,
      providers: names,
      runs: [...runs.values()].map((r) => ({ runDir: r.runDir, runId: r.runId, finished: r.finished })),
      unneeded: { input: unneeded("input"), output: unneeded("output"), batch: { count: unneeded("batch").count, bytes: null } },
      needed,
      inProgress,
      recent,
      olderThanSeconds: options.olderThanSeconds,
      foreign,
      deleted,
      failed,
      items
    }
    return report
  })

/** "7 days", "12 hours", "30 minutes", "45 seconds". */
const age = (seconds: number): string =>
  seconds >= 86_400 && seconds % 86_400 === 0 ? count(seconds / 86_400, "day")
  : seconds >= 3600 && seconds % 3600 === 0 ? count(seconds / 3600, "hour")
  : seconds >= 60 && seconds % 60 === 0 ? count(seconds / 60, "minute")
  : count(seconds, "second")

/** Human-readable bytes: "512 B", "1.2 kB", "3.4 MB". */
const bytes = (n: number): string => {
  if (n < 1000) return `${n} B`
  const units = ["kB", "MB", "GB", "TB"]
  let value = n
  let unit = ""
  for (const u of units) {
    value /= 1000
    unit = u
    if (value < 1000) break
  }
  return `${value.toFixed(1)} ${unit}`
}

/** The cluster database's part: old generations' rows, listed, then deleted or to delete. */
const databaseLines = (d: DatabaseGc, dryRun: boolean): Array<string> => {
  if (d.oldGenerations.length === 0) return ["  cluster database: no rows of old generations"]
  const rows = d.oldGenerations.reduce((a, g) => a + g.journalRows, 0)
  const attempts = d.oldGenerations.filter((g) => g.attempts).length
  const files = d.oldGenerations.reduce((a, g) => a + g.files, 0)
  return [
    `  cluster database: ${count(rows, "journal row")}, ${count(attempts, "attempts row")} and ${count(files, "file")} of ${count(d.oldGenerations.length, "old generation")} no run uses any more` +
      (dryRun ? "" : `: deleted ${count(d.deleted.journalRows, "journal row")}, ${count(d.deleted.attempts, "attempts row")}, ${count(d.deleted.files, "file")}`),
    ...d.oldGenerations.map((g) => `    run ${g.runId} (before ${g.current}, ${g.runDir}): ${count(g.journalRows, "journal row")}${g.attempts ? ", its attempts row" : ""}${g.files > 0 ? `, ${count(g.files, "file")}` : ""}`)
  ]
}

export const render = (r: GcReport): string => {
  const { input, output, batch } = r.unneeded
  const lines = [
    `sluice gc (${r.providers.join(", ")}): sluice's and no longer needed: ` +
      `${count(input.count, "input file")} (${bytes(input.bytes)}), ${count(output.count, "output file")} (${bytes(output.bytes)}), ` +
      `${count(batch.count, "ended batch", "ended batches")}`,
    `  kept: ${count(r.needed.files, "file")} and ${count(r.needed.batches, "ended batch", "ended batches")} a run given still needs, ` +
      `${count(r.inProgress, "batch", "batches")} in progress; left alone: ${count(r.foreign.files, "file")} and ` +
      `${count(r.foreign.batches, "batch", "batches")} sluice did not create`
  ]
  if (r.recent.files + r.recent.batches > 0) {
    lines.push(
      `  kept too: ${count(r.recent.files, "file")} and ${count(r.recent.batches, "ended batch", "ended batches")} of runs gc does not see, ` +
        `made in the last ${age(r.olderThanSeconds)} (they may still be collected: give their run directories, or --older-than to choose the age)`
    )
  }
  if (r.database !== undefined) lines.push(...databaseLines(r.database, r.dryRun))
  if (r.dryRun) {
    const total = input.count + output.count + batch.count + (r.database?.oldGenerations.length ?? 0)
    lines.push(total === 0 ? "dry run: nothing to delete" : `dry run: nothing deleted; run again with --yes to delete ${number(total)}`)
  } else {
    lines.push(
      `deleted: ${count(r.deleted.input, "input file")}, ${count(r.deleted.output, "output file")}, ${count(r.deleted.batch, "batch", "batches")}` +
        (r.failed.length === 0 ? "" : `; ${r.failed.length} could not be deleted (a later gc tries again):`)
    )
    for (const f of r.failed.slice(0, 10)) lines.push(`  ${f.provider} ${f.kind} ${f.id}: ${f.message}`)
  }
  return lines.join("\n")
}

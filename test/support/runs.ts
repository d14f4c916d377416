/**
 * Helpers for the recovery tests (test/recovery.e2e.test.ts), on top of test/support/cli.ts:
 * a pipeline file with a configurable prompt and attempt budget, the run directory's
 * journal, manifest, sink and failures, the emulator's batches and files, and waiting.
 */
import { readFile } from "node:fs/promises"
import { existsSync } from "node:fs"
import { join } from "node:path"
import { expect } from "vitest"
import { advanceClock, holdClock, releaseClock, setFaults } from "../../packages/emulator/src/EmulatorControl.js"
import type { FaultPatch } from "../../packages/emulator/src/EmulatorControl.js"
import { type Ledger, type LedgerBatch, readJsonl, type TempProject, writeText } from "./cli.js"

export { advanceClock, holdClock, releaseClock, setFaults }
export type { FaultPatch }

// ---------------------------------------------------------------------------------------------
// Pipelines
// ---------------------------------------------------------------------------------------------

export interface RecoveryPipelineSpec {
  /** Pipeline name (default "recovery"). */
  readonly name?: string
  /** JSONL source relative to the CLI's working directory (default "data/rows.jsonl"). */
  readonly source?: string
  /** JSONL sink relative to the CLI's working directory (default "out/labeled.jsonl"). */
  readonly sink?: string
  /** The system prompt: changing it changes the pipeline's fingerprint. */
  readonly system?: string
  /** The stage's attempts per row (default: the library's, 3). */
  readonly maxAttempts?: number
}

/** A pipeline file: rows {id, text} keyed by id, a strict Label output, a JSONL sink. */
export const recoveryPipelineSource = (spec: RecoveryPipelineSpec = {}): string => `import { Pipeline, Prompt, Sink, Source } from "@sluice/core"
import { Schema } from "effect"

const Review = Schema.Struct({ id: Schema.String, text: Schema.String })
const Label = Schema.Struct({
  sentiment: Schema.Literal("positive", "negative", "neutral"),
  topics: Schema.Array(Schema.String)
})

export default Pipeline.make(${JSON.stringify(spec.name ?? "recovery")}).pipe(
  Pipeline.from(Source.jsonl(${JSON.stringify(spec.source ?? "data/rows.jsonl")}, Review), { key: (r) => r.id }),
  Pipeline.batch("label", {
    provider: "openai",
    model: "gpt-4o-mini",${spec.maxAttempts === undefined ? "" : `\n    maxAttempts: ${spec.maxAttempts},`}
    prompt: (r) => Prompt.chat({ system: ${JSON.stringify(spec.system ?? "You label product reviews.")}, user: r.text }),
    output: Label
  }),
  Pipeline.to(Sink.jsonl(${JSON.stringify(spec.sink ?? "out/labeled.jsonl")}))
)
`

/** Writes a pipeline built by `recoveryPipelineSource`; returns its absolute path. */
export const writeRecoveryPipeline = async (project: TempProject, relPath: string, spec: RecoveryPipelineSpec = {}): Promise<string> => {
  await writeText(project, relPath, recoveryPipelineSource(spec))
  return project.path(relPath)
}

/** CLI flags of a test run: a run directory, fast polling, small shards. */
export const runFlags = (runDir: string, shardSize: number, extra: ReadonlyArray<string> = []): Array<string> => [
  "--run-dir",
  runDir,
  "--poll-interval",
  "0.05",
  "--shard-size",
  String(shardSize),
  ...extra
]

// ---------------------------------------------------------------------------------------------
// The run directory
// ---------------------------------------------------------------------------------------------

/** A journal event as written (see packages/runner/src/JournalEvent.ts). */
export interface JournalLine {
  readonly _tag: string
  readonly shard?: string
  readonly [field: string]: any
}

export const journalPath = (runDir: string): string => join(runDir, "journal.jsonl")

export const readJournal = (runDir: string): Promise<Array<JournalLine>> => readJsonl<JournalLine>(journalPath(runDir))

/**
 * The complete lines of the journal of a run that may be writing it right now (none when it
 * does not exist yet): a line still being appended is left out.
 */
export const readJournalSoFar = async (runDir: string): Promise<Array<JournalLine>> => {
  if (!existsSync(journalPath(runDir))) return []
  const text = await readFile(journalPath(runDir), "utf8")
  const complete = text.slice(0, text.lastIndexOf("\n") + 1)
  return complete
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as JournalLine)
}

export const eventsTagged = (events: ReadonlyArray<JournalLine>, tag: string): Array<JournalLine> => events.filter((e) => e._tag === tag)

export const runIdOf = async (runDir: string): Promise<string> =>
  (JSON.parse(await readFile(join(runDir, "manifest.json"), "utf8")) as { runId: string }).runId

/** One line of failures.jsonl. */
export interface FailureLine {
  readonly custom_id: string | null
  readonly key: string | null
  readonly shard: string | null
  readonly attempt: number
  readonly class: string
  readonly code: string
  readonly message: string
}

/** failures.jsonl of a run (empty when the file does not exist). */
export const readFailures = async (runDir: string): Promise<Array<FailureLine>> => {
  const file = join(runDir, "failures.jsonl")
  return existsSync(file) ? readJsonl<FailureLine>(file) : []
}

/** One sink line. */
export interface SinkLine {
  readonly key: string
  readonly custom_id: string
  readonly input: { readonly id: string; readonly text: string }
  readonly output: unknown
}

/** The sink's lines (empty when the file does not exist). */
export const readSink = async (file: string): Promise<Array<SinkLine>> => (existsSync(file) ? readJsonl<SinkLine>(file) : [])

/** How many times each value occurs. */
export const countBy = <A>(items: ReadonlyArray<A>, keyOf: (a: A) => string): Map<string, number> => {
  const counts = new Map<string, number>()
  for (const item of items) counts.set(keyOf(item), (counts.get(keyOf(item)) ?? 0) + 1)
  return counts
}

/** Values occurring more than once. */
export const duplicates = (values: ReadonlyArray<string>): Array<string> =>
  [...countBy(values, (v) => v)].filter(([, n]) => n > 1).map(([v]) => v)

// ---------------------------------------------------------------------------------------------
// The emulator
// ---------------------------------------------------------------------------------------------

/** The ledger's batches created for a run (by their `sluice_run` metadata). */
export const batchesOfRun = (ledger: Ledger, runId: string): Array<LedgerBatch> =>
  ledger.batches.filter((b) => b.metadata?.["sluice_run"] === runId)

/**
 * Nothing paid twice for a run: one batch per shard attempt, and no custom_id delivered as a
 * success by two batches. Returns the custom_ids delivered.
 */
export const expectPaidOnce = (ledger: Ledger, runId: string): Array<string> => {
  const batches = batchesOfRun(ledger, runId)
  const perShard = countBy(batches, (b) => b.metadata!["sluice_shard"]!)
  for (const [shard, n] of perShard) expect(n, `batches created for shard ${shard}`).toBe(1)
  const ours = new Set(batches.map((b) => b.id))
  const delivered = ledger.deliveries.filter((d) => ours.has(d.batch_id)).map((d) => d.custom_id)
  expect(new Set(delivered).size, "custom_ids delivered as a success twice").toBe(delivered.length)
  return delivered
}

/** The custom_ids delivered as a success by one batch. */
export const deliveredBy = (ledger: Ledger, batchId: string): Array<string> =>
  ledger.deliveries.filter((d) => d.batch_id === batchId).map((d) => d.custom_id)

export interface WireBatch {
  readonly id: string
  readonly status: string
  readonly output_file_id: string | null
  readonly error_file_id: string | null
  readonly request_counts: { readonly total: number; readonly completed: number; readonly failed: number }
}

/** GET /v1/batches/{id}, as a client sees it. */
export const retrieveBatch = async (emulatorUrl: string, batchId: string, apiKey = "sk-test-fake-key"): Promise<WireBatch> => {
  const response = await fetch(`${emulatorUrl}/v1/batches/${batchId}`, { headers: { authorization: `Bearer ${apiKey}` } })
  if (!response.ok) throw new Error(`GET /v1/batches/${batchId} -> ${response.status}: ${await response.text()}`)
  return (await response.json()) as WireBatch
}

// ---------------------------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------------------------

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `probe` until it returns a value other than undefined; fails after `timeoutMs`. */
export const waitFor = async <A>(
  what: string,
  probe: () => Promise<A | undefined> | A | undefined,
  options: { readonly timeoutMs?: number; readonly intervalMs?: number } = {}
): Promise<A> => {
  const deadline = Date.now() + (options.timeoutMs ?? 30_000)
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(options.intervalMs ?? 25)
  }
}

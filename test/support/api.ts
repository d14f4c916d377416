/**
 * Helpers for the programmatic-API tests (test/api.e2e.test.ts): an in-process emulator, temp
 * run directories, a labelling pipeline without a sink, the Effect environment pointed at the
 * emulator, and readers for the run directory (manifest, journal, lock) and the ledger.
 */
import { NodeContext, NodeHttpClient } from "@effect/platform-node"
import { Pipeline, Prompt, Source } from "@sluice/core"
import { OpenAiBatch, Registry } from "@sluice/providers"
import { startEmulator } from "@sluice/emulator"
import type { EmulatorHandle, EmulatorOptions } from "@sluice/emulator"
import { getLedger } from "@sluice/emulator/control"
import type { LedgerBatch } from "@sluice/emulator/control"
import { Live } from "@sluice/runner"
import { Effect, Layer, Redacted, Schema } from "effect"
import { existsSync } from "node:fs"
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"

// ---------------------------------------------------------------------------------------------
// Emulator
// ---------------------------------------------------------------------------------------------

/** Small, fast emulator settings. */
export const fast: EmulatorOptions = { validatingMs: 20, finalizingMs: 20, requestsPerSecond: 2000 }

/** An emulator on 127.0.0.1, port 0, fast unless `options` say otherwise. */
export const startApiEmulator = (options: EmulatorOptions = {}): Promise<EmulatorHandle> =>
  startEmulator({ ...fast, ...options, host: "127.0.0.1", port: 0 })

/** The Promise API's connection option for an emulator. */
export const promiseConnection = (emulator: EmulatorHandle, apiKey = "test") => ({
  openai: { baseUrl: `${emulator.url}/v1`, apiKey }
})

/** The batches of one run in the emulator's ledger (by the run id in their metadata). */
export const ledgerBatchesOf = async (emulator: EmulatorHandle, runId: string): Promise<Array<LedgerBatch>> =>
  (await getLedger(emulator.url)).batches.filter((b) => b.metadata?.["sluice_run"] === runId)

// ---------------------------------------------------------------------------------------------
// The Effect environment
// ---------------------------------------------------------------------------------------------

const openAi = (emulator: EmulatorHandle, apiKey = "test") =>
  OpenAiBatch.make({ apiKey: Redacted.make(apiKey), baseUrl: `${emulator.url}/v1` })

/** `Live.layer` with the `openai` provider pointed at the emulator. */
export const liveLayer = (emulator: EmulatorHandle) =>
  Layer.unwrapEffect(Effect.map(openAi(emulator), (openai) => Live.layer({ openai }))).pipe(
    Layer.provide(NodeHttpClient.layerUndici)
  )

/** `Registry.layer` holding exactly the emulator's `openai` provider, plus the Node context. */
export const registryLayer = (emulator: EmulatorHandle) =>
  Layer.mergeAll(
    NodeContext.layer,
    Layer.unwrapEffect(Effect.map(openAi(emulator), (openai) => Registry.layer({ openai }))).pipe(
      Layer.provide(NodeHttpClient.layerUndici)
    )
  )

// ---------------------------------------------------------------------------------------------
// Pipelines
// ---------------------------------------------------------------------------------------------

export const Review = Schema.Struct({ id: Schema.String, text: Schema.String })
export type Review = typeof Review.Type

export const sentiments = ["positive", "negative", "neutral"] as const
export const Label = Schema.Struct({
  sentiment: Schema.Literal(...sentiments),
  topics: Schema.Array(Schema.String)
})
export type Label = typeof Label.Type

const moods = ["I love it, works great", "Terrible, broke after a day", "It is fine, nothing special", "Good value but slow shipping"]

/** Rows `r0001`… with varied review texts. */
export const makeReviews = (n: number, prefix = "r"): Array<Review> =>
  Array.from({ length: n }, (_, i) => ({ id: `${prefix}${String(i + 1).padStart(4, "0")}`, text: `${moods[i % moods.length]} (review ${i + 1})` }))

export interface LabelPipelineSpec {
  readonly name: string
  /** Rows in memory (Source.array) or a JSONL file (Source.jsonl). */
  readonly source: { readonly rows: ReadonlyArray<Review> } | { readonly file: string }
  readonly provider?: string
  readonly maxAttempts?: number
}

/** A labelling pipeline without a sink: its outputs stay in the run directory. */
export const labelPipeline = (spec: LabelPipelineSpec) =>
  Pipeline.make(spec.name).pipe(
    Pipeline.from("rows" in spec.source ? Source.array(spec.source.rows, spec.name) : Source.jsonl(spec.source.file, Review), {
      key: (r) => r.id
    }),
    Pipeline.batch("label", {
      provider: spec.provider ?? "openai",
      model: "gpt-4o-mini",
      ...(spec.maxAttempts === undefined ? {} : { maxAttempts: spec.maxAttempts }),
      prompt: (r) => Prompt.chat({ system: "You label product reviews.", user: r.text }),
      output: Label
    })
  )

// ---------------------------------------------------------------------------------------------
// Temp directories and the run directory
// ---------------------------------------------------------------------------------------------

export interface TempDirs {
  /** A new, empty temp directory (removed by `cleanup`). */
  readonly make: (prefix?: string) => Promise<string>
  readonly cleanup: () => Promise<void>
}

export const tempDirs = (): TempDirs => {
  const made: Array<string> = []
  return {
    make: async (prefix = "sluice-api-") => {
      const dir = await mkdtemp(join(tmpdir(), prefix))
      made.push(dir)
      return dir
    },
    cleanup: async () => {
      await Promise.all(made.splice(0).map((d) => rm(d, { recursive: true, force: true })))
    }
  }
}

/** Writes rows as JSONL; returns the file. */
export const writeReviews = async (file: string, rows: ReadonlyArray<Review>): Promise<string> => {
  await writeFile(file, rows.map((r) => JSON.stringify(r)).join("\n") + "\n")
  return file
}

export const readManifest = async (runDir: string): Promise<{ runId: string; pipeline: string; sink: string | null }> =>
  JSON.parse(await readFile(join(runDir, "manifest.json"), "utf8"))

export type JournalLine = { readonly _tag: string; readonly shard?: string; readonly batchId?: string } & Record<string, unknown>

export const readJournal = async (runDir: string): Promise<Array<JournalLine>> =>
  (await readFile(join(runDir, "journal.jsonl"), "utf8"))
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as JournalLine)

export const lockExists = (runDir: string): boolean => existsSync(join(runDir, "run.lock"))

/** The sum of a `{ class: count }` record. */
export const total = (counts: Readonly<Record<string, number>>): number => Object.values(counts).reduce((a, b) => a + b, 0)

/** Collects an async iterable. */
export const collect = async <A>(iterable: AsyncIterable<A>): Promise<Array<A>> => {
  const out: Array<A> = []
  for await (const a of iterable) out.push(a)
  return out
}

/**
 * State of the emulator: file and batch records, the "seen" map behind the
 * first-time-only faults, and where everything lives on disk.
 *
 * Layout of the data directory (the stateDir, or a temp dir removed on close):
 *   state.json               records, rewritten atomically (tmp + rename) after each change
 *   files/<file-id>.jsonl    uploaded and generated file contents
 *   batches/<id>.ids         custom_ids of a batch input, one JSON string per line (ledger)
 *   batches/<id>.delivered   custom_ids delivered as successes in its output file (ledger)
 *   batches/<id>.requests.jsonl  an Anthropic batch's requests, one {custom_id, params} per line
 *   batches/<id>.results.jsonl   an Anthropic batch's results, once it has ended
 * Non-terminal batches are not persisted as "progress": their state is
 * recomputed from the wall clock and the input file, so a restarted
 * emulator continues them.
 */
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"

export interface FileRecord {
  readonly id: string
  readonly bytes: number
  /** Unix seconds. */
  readonly created_at: number
  readonly filename: string
  readonly purpose: string
  readonly seq: number
}

export interface BatchErrorEntry {
  readonly code: string
  readonly message: string
  readonly param: string | null
  readonly line: number | null
}

export type TerminalStatus = "completed" | "failed" | "expired" | "cancelled"

/** Everything a terminal batch reports; written once, when the batch is first seen terminal. */
export interface BatchFinal {
  readonly status: TerminalStatus
  readonly model: string | null
  readonly errors: ReadonlyArray<BatchErrorEntry> | null
  readonly inProgressAtMs: number | null
  readonly finalizingAtMs: number | null
  readonly completedAtMs: number | null
  readonly failedAtMs: number | null
  readonly expiredAtMs: number | null
  readonly cancellingAtMs: number | null
  readonly cancelledAtMs: number | null
  readonly total: number
  readonly completed: number
  readonly failed: number
  readonly inputTokens: number
  readonly outputTokens: number
  readonly outputFileId: string | null
  readonly errorFileId: string | null
  /** lateOutputFileMs fault: output_file_id is reported as null before this instant. */
  readonly outputVisibleAtMs: number
}

/**
 * A batch's lifecycle as captured at creation: its timing and fault settings, so later
 * changes of the settings (or a restart with other options) never rewrite the past of a
 * running batch; and the cancel or forced expiry asked of it since.
 */
export interface BatchTiming {
  readonly createdMs: number
  readonly validatingMs: number
  readonly finalizingMs: number
  readonly cancellingMs: number
  readonly expiresAtMs: number
  /** Requests per second; null stands for Infinity (instant), which JSON cannot hold. */
  readonly rps: number | null
  readonly errorRate: number
  readonly invalidJsonRate: number
  cancelRequestedMs: number | null
  forcedExpireMs: number | null
}

/** A new batch's timing as of `now`, from the emulator's timings and its fault settings now. */
export const captureTiming = (
  now: number,
  timings: { readonly finalizingMs: number; readonly cancellingMs: number; readonly expireAfterMs: number },
  validatingMs: number,
  settings: { readonly requestsPerSecond: number; readonly errorRate: number; readonly invalidJsonRate: number }
): BatchTiming => ({
  createdMs: now,
  validatingMs,
  finalizingMs: timings.finalizingMs,
  cancellingMs: timings.cancellingMs,
  expiresAtMs: now + timings.expireAfterMs,
  rps: Number.isFinite(settings.requestsPerSecond) ? settings.requestsPerSecond : null,
  errorRate: settings.errorRate,
  invalidJsonRate: settings.invalidJsonRate,
  cancelRequestedMs: null,
  forcedExpireMs: null
})

/** An OpenAI-shaped batch as created. */
export interface BatchRecord extends BatchTiming {
  readonly id: string
  readonly seq: number
  readonly endpoint: string
  readonly input_file_id: string
  readonly completion_window: string
  readonly metadata: Readonly<Record<string, string>> | null
  final: BatchFinal | null
}

/** Where an Anthropic-shaped batch was created: the Message Batches API, or the gateway shape. */
export type AnthropicSurface = "anthropic" | "gateway"

/** What an ended Anthropic batch reports; written once, with its results file. */
export interface AnthropicFinal {
  /** The lifecycle's terminal status (the wire shows "ended" for all three). */
  readonly status: "completed" | "expired" | "cancelled"
  readonly endedAtMs: number
  readonly succeeded: number
  readonly errored: number
  readonly canceled: number
  readonly expired: number
  readonly resultsBytes: number
  readonly inputTokens: number
  readonly outputTokens: number
}

/**
 * An Anthropic message batch as created (see anthropicBatches.ts). Like BatchRecord, timing
 * and fault settings are captured at creation; the requests live in `<id>.requests.jsonl`.
 * Its `validatingMs` is always 0: the envelope is validated synchronously, params per request.
 */
export interface AnthropicBatchRecord extends BatchTiming {
  readonly id: string
  readonly seq: number
  readonly surface: AnthropicSurface
  /** Number of requests. */
  readonly total: number
  /** Size of the create body. */
  readonly bytes: number
  /** `scheme://host` the batch was created through: results_url when a call carries no Host. */
  readonly origin: string
  deletedMs: number | null
  final: AnthropicFinal | null
}

interface PersistedState {
  readonly version: 1
  readonly seq: number
  readonly files: ReadonlyArray<FileRecord>
  readonly batches: ReadonlyArray<BatchRecord>
  readonly seen: ReadonlyArray<readonly [string, string]>
  /** Absent in state written before Anthropic batches existed. */
  readonly anthropicBatches?: ReadonlyArray<AnthropicBatchRecord>
}

export class Store {
  readonly files = new Map<string, FileRecord>()
  readonly batches = new Map<string, BatchRecord>()
  readonly anthropicBatches = new Map<string, AnthropicBatchRecord>()
  /** Key "<kind>:<request digest>" -> id of the batch (or "sync") that took the first-time fault. */
  readonly seen = new Map<string, string>()
  private seq = 0
  private writing: Promise<void> = Promise.resolve()
  private queued: Promise<void> | null = null

  private constructor(
    readonly dataDir: string,
    readonly persistent: boolean
  ) {}

  static async open(stateDir: string | undefined): Promise<Store> {
    const dataDir = stateDir ?? (await mkdtemp(join(tmpdir(), "sluice-emulator-")))
    const store = new Store(dataDir, stateDir !== undefined)
    await store.ensureDirs()
    if (store.persistent) await store.load()
    return store
  }

  nextSeq(): number {
    return ++this.seq
  }

  filePath(id: string): string {
    return join(this.dataDir, "files", `${id}.jsonl`)
  }

  idsPath(batchId: string): string {
    return join(this.dataDir, "batches", `${batchId}.ids`)
  }

  deliveredPath(batchId: string): string {
    return join(this.dataDir, "batches", `${batchId}.delivered`)
  }

  anthropicRequestsPath(batchId: string): string {
    return join(this.dataDir, "batches", `${batchId}.requests.jsonl`)
  }

  anthropicResultsPath(batchId: string): string {
    return join(this.dataDir, "batches", `${batchId}.results.jsonl`)
  }

  /** True while a batch that has not written its results still needs this file as input. */
  isInputOfLiveBatch(fileId: string): boolean {
    for (const batch of this.batches.values()) if (batch.final === null && batch.input_file_id === fileId) return true
    return false
  }

  /**
   * Writes state.json (when persistent). Calls are coalesced: a write that has
   * not started yet already includes every change made before it starts.
   */
  persist(): Promise<void> {
    if (!this.persistent) return Promise.resolve()
    if (this.queued !== null) return this.queued
    const next = this.writing.then(() => {
      this.queued = null
      return this.writeNow()
    })
    this.queued = next
    this.writing = next.catch(() => undefined)
    return next
  }

  async reset(): Promise<void> {
    await this.writing
    this.files.clear()
    this.batches.clear()
    this.anthropicBatches.clear()
    this.seen.clear()
    await rm(join(this.dataDir, "files"), { recursive: true, force: true })
    await rm(join(this.dataDir, "batches"), { recursive: true, force: true })
    await this.ensureDirs()
    await this.persist()
  }

  async close(): Promise<void> {
    await this.writing
    if (!this.persistent) await rm(this.dataDir, { recursive: true, force: true })
  }

  private async ensureDirs(): Promise<void> {
    await mkdir(join(this.dataDir, "files"), { recursive: true })
    await mkdir(join(this.dataDir, "batches"), { recursive: true })
  }

  private async writeNow(): Promise<void> {
    const state: PersistedState = {
      version: 1,
      seq: this.seq,
      files: [...this.files.values()],
      batches: [...this.batches.values()],
      seen: [...this.seen.entries()],
      anthropicBatches: [...this.anthropicBatches.values()]
    }
    const path = join(this.dataDir, "state.json")
    const tmp = `${path}.tmp`
    await writeFile(tmp, JSON.stringify(state))
    await rename(tmp, path)
  }

  private async load(): Promise<void> {
    let text: string
    try {
      text = await readFile(join(this.dataDir, "state.json"), "utf8")
    } catch {
      return // a fresh state dir
    }
    const state = JSON.parse(text) as PersistedState
    if (state.version !== 1) throw new Error(`Unsupported emulator state version in ${this.dataDir}`)
    this.seq = state.seq
    for (const file of state.files) this.files.set(file.id, file)
    for (const batch of state.batches) this.batches.set(batch.id, { ...batch })
    for (const batch of state.anthropicBatches ?? []) this.anthropicBatches.set(batch.id, { ...batch })
    for (const [key, owner] of state.seen) this.seen.set(key, owner)
  }
}

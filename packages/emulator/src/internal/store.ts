/**
 * State of the emulator: file and batch records, the "seen" map behind the
 * first-time-only faults, and where everything lives on disk.
 *
 * Layout of the data directory (the stateDir, or a temp dir removed on close):
 *   state.json               records and the list of files the emulator wrote, rewritten
 *                            atomically (tmp + rename) after each change
 *   files/<file-id>.jsonl    uploaded and generated file contents
 *   batches/<id>.ids         custom_ids of a batch input, one JSON string per line (ledger)
 *   batches/<id>.delivered   custom_ids delivered as successes in its output file (ledger)
 *   batches/<id>.requests.jsonl  an Anthropic batch's requests, one {custom_id, params} per line
 *   batches/<id>.results.jsonl   an Anthropic batch's results, once it has ended
 * Non-terminal batches are not persisted as "progress": their state is
 * recomputed from the wall clock and the input file, so a restarted
 * emulator continues them.
 *
 * A stateDir is the user's directory: the emulator may share it with files of their own. Every
 * path under it comes from the path helpers below, which record it as the emulator's (persisted
 * as `owned`); reset deletes exactly those paths, never a directory and never anything else. A
 * directory whose state.json is not the emulator's is refused rather than overwritten.
 */
import { mkdir, mkdtemp, readFile, rename, rm, unlink, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Either, Schema } from "effect"

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
  /** Under an enqueued-token limit: the batch's model and input tokens (enqueuedTokens.ts). */
  readonly enqueued?: { readonly model: string; readonly tokens: number }
  /** Set when the batch took its model past the enqueued-token limit: it fails validation with this message. */
  readonly tokenLimitExceeded?: string
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

const STATE_FORMAT = "sluice-emulator-state"

/**
 * What state.json must look like to be the emulator's: the envelope is checked (the records
 * inside are the emulator's own, written by this module). `format` and `owned` are absent in
 * state written by earlier versions.
 */
const PersistedEnvelope = Schema.Struct({
  format: Schema.optional(Schema.Literal(STATE_FORMAT)),
  version: Schema.Literal(1),
  seq: Schema.Number,
  files: Schema.Array(Schema.Unknown),
  batches: Schema.Array(Schema.Unknown),
  seen: Schema.Array(Schema.Tuple(Schema.String, Schema.String)),
  anthropicBatches: Schema.optional(Schema.Array(Schema.Unknown)),
  owned: Schema.optional(Schema.Array(Schema.String))
})
const decodeEnvelope = Schema.decodeUnknownEither(Schema.parseJson(PersistedEnvelope))

interface PersistedState {
  readonly format: typeof STATE_FORMAT
  readonly version: 1
  readonly seq: number
  readonly files: ReadonlyArray<FileRecord>
  readonly batches: ReadonlyArray<BatchRecord>
  readonly seen: ReadonlyArray<readonly [string, string]>
  /** Absent in state written before Anthropic batches existed. */
  readonly anthropicBatches?: ReadonlyArray<AnthropicBatchRecord>
  /** Paths (relative to the data dir) of the files the emulator wrote: what reset may delete. */
  readonly owned?: ReadonlyArray<string>
}

/** A file name the emulator gives (its ids, a suffix): never a path out of its directory. */
const OWN_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/
const isOwnedPath = (relative: string): boolean => {
  const [dir, name, ...rest] = relative.split("/")
  return (dir === "files" || dir === "batches") && name !== undefined && OWN_NAME.test(name) && rest.length === 0
}

export class Store {
  readonly files = new Map<string, FileRecord>()
  readonly batches = new Map<string, BatchRecord>()
  readonly anthropicBatches = new Map<string, AnthropicBatchRecord>()
  /** Key "<kind>:<request digest>" -> id of the batch (or "sync") that took the first-time fault. */
  readonly seen = new Map<string, string>()
  /** Paths relative to the data dir that the emulator named (and so wrote or may write). */
  private readonly owned = new Set<string>()
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
    return this.own("files", `${id}.jsonl`)
  }

  idsPath(batchId: string): string {
    return this.own("batches", `${batchId}.ids`)
  }

  deliveredPath(batchId: string): string {
    return this.own("batches", `${batchId}.delivered`)
  }

  anthropicRequestsPath(batchId: string): string {
    return this.own("batches", `${batchId}.requests.jsonl`)
  }

  anthropicResultsPath(batchId: string): string {
    return this.own("batches", `${batchId}.results.jsonl`)
  }

  /**
   * The absolute path of one of the emulator's files, recorded as its own. Names come from ids
   * the emulator generated (callers look ids up in the records first), so a path named here is
   * never a user's file; recording paths that are only read costs nothing.
   */
  private own(dir: "files" | "batches", name: string): string {
    // Ids are the emulator's own; a name that could leave the directory is a bug, never a path.
    if (!OWN_NAME.test(name)) throw new Error(`Not an emulator file name: ${JSON.stringify(name.slice(0, 100))}`)
    const relative = `${dir}/${name}`
    this.owned.add(relative)
    return join(this.dataDir, dir, name)
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

  /** Forgets every record and deletes the files the emulator wrote, and only those. */
  async reset(): Promise<void> {
    await this.writing
    this.files.clear()
    this.batches.clear()
    this.anthropicBatches.clear()
    this.seen.clear()
    const owned = [...this.owned]
    this.owned.clear()
    for (let i = 0; i < owned.length; i += 64) {
      await Promise.all(owned.slice(i, i + 64).map((relative) => unlink(join(this.dataDir, relative)).catch(() => undefined)))
    }
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
      format: STATE_FORMAT,
      version: 1,
      seq: this.seq,
      files: [...this.files.values()],
      batches: [...this.batches.values()],
      seen: [...this.seen.entries()],
      anthropicBatches: [...this.anthropicBatches.values()],
      owned: [...this.owned]
    }
    const path = join(this.dataDir, "state.json")
    const tmp = `${path}.tmp`
    await writeFile(tmp, JSON.stringify(state))
    await rename(tmp, path)
  }

  private async load(): Promise<void> {
    const path = join(this.dataDir, "state.json")
    let text: string
    try {
      text = await readFile(path, "utf8")
    } catch (error) {
      if ((error as { code?: unknown }).code === "ENOENT") return // a fresh state dir
      throw error
    }
    if (Either.isLeft(decodeEnvelope(text))) {
      throw new Error(
        `${path} is not the emulator's state file (not JSON of its format): the emulator would overwrite it. Give a stateDir of its own (a new or empty directory).`
      )
    }
    const state = JSON.parse(text) as PersistedState
    this.seq = state.seq
    for (const file of state.files) this.files.set(file.id, file)
    for (const batch of state.batches) this.batches.set(batch.id, { ...batch })
    for (const batch of state.anthropicBatches ?? []) this.anthropicBatches.set(batch.id, { ...batch })
    for (const [key, owner] of state.seen) this.seen.set(key, owner)
    // Only names the emulator could have given: a state.json edited by hand never points reset elsewhere.
    if (state.owned !== undefined) for (const relative of state.owned.filter(isOwnedPath)) this.owned.add(relative)
    else this.ownRecordedFiles()
  }

  /** State written before `owned` existed: the files its records name are the emulator's. */
  private ownRecordedFiles(): void {
    for (const file of this.files.values()) this.filePath(file.id)
    for (const batch of this.batches.values()) {
      for (const id of [batch.input_file_id, batch.final?.outputFileId, batch.final?.errorFileId]) if (typeof id === "string" && id !== "") this.filePath(id)
      this.idsPath(batch.id)
      this.deliveredPath(batch.id)
    }
    for (const batch of this.anthropicBatches.values()) {
      this.idsPath(batch.id)
      this.deliveredPath(batch.id)
      this.anthropicRequestsPath(batch.id)
      this.anthropicResultsPath(batch.id)
    }
  }
}

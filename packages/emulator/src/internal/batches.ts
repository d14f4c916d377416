/**
 * The batch service: create, observe (retrieve/list), cancel, forced expiry,
 * and the ledger. Work happens lazily when a batch is observed:
 * validation runs once per batch (started eagerly at create, recomputed after
 * a restart), and the result files are written once, the first time the
 * batch is seen in a terminal state.
 */
import { readFile, unlink } from "node:fs/promises"
import { OPENAI_BATCH_ENDPOINTS, SUPPORTED_ENDPOINTS } from "./answers.js"
import { type AnalysedInput, analyseInput } from "./analysis.js"
import { AnthropicBatches, type LedgerEntry } from "./anthropicBatches.js"
import { geminiLedgerFields } from "./geminiBatches.js"
import type { KnownModels } from "./models.js"
import { parseMetadata, parseOutputExpiresAfter } from "./batchCreate.js"
import { liveSnapshot, render } from "./batchObject.js"
import { type Clock, settledForPoll, toUnixSeconds } from "./clock.js"
import { ApiError, invalidRequest, invalidValue, missingParameter, notFound } from "./errors.js"
import type { Faults } from "./faults.js"
import { randomHex } from "./hash.js"
import { type BatchStatus, isTerminal, needsInput, type Timeline, timeline } from "./lifecycle.js"
import { writeResults } from "./results.js"
import { countInput, EnqueuedTokens, limitMessage } from "./enqueuedTokens.js"
import { captureTiming } from "./store.js"
import type { BatchErrorEntry, BatchFinal, BatchRecord, Store } from "./store.js"

export interface BatchTimings {
  readonly validatingMs: number
  readonly finalizingMs: number
  readonly cancellingMs: number
  readonly expireAfterMs: number
}

export interface BatchesConfig extends BatchTimings {
  readonly seed: string
  /** Model names requests may use; others fail as on the real API (see models.ts). */
  readonly models: KnownModels
  readonly clock: Clock
  /** Whether a test drives the clock (see EmulatorClock.driven). */
  readonly clockDriven: () => boolean
  readonly log: (line: string) => void
  /** Told once when an OpenAI batch reaches its terminal state (webhooks.ts). */
  readonly ended?: (id: string, status: string) => void
  /** The organisation's enqueued-token limit per model (EmulatorOptions.enqueuedTokenLimit). */
  readonly enqueuedTokenLimit?: number | undefined
  /** Over the limit, the create is refused (HTTP 400), as Azure's fail-fast queueing does. */
  readonly enqueuedLimitOnCreate?: boolean | undefined
  /** See EmulatorOptions.approximateTokens. */
  readonly approximateTokens?: boolean | undefined
}

type Obj = { readonly [key: string]: unknown }
const isObject = (value: unknown): value is Obj => typeof value === "object" && value !== null && !Array.isArray(value)

export class Batches {
  private readonly inputs = new Map<string, Promise<AnalysedInput>>()
  /** Settled entries of `inputs`: the hot path of a poll needs no promise or timer. */
  private readonly readyInputs = new Map<string, AnalysedInput>()
  private readonly finishing = new Map<string, Promise<void>>()
  private readonly inflight = new Set<Promise<unknown>>()
  /** Anthropic message batches: same store, faults, timings and ledger. */
  readonly anthropic: AnthropicBatches
  /** The model names requests may use (every API of the emulator). */
  readonly models: KnownModels
  /** Enqueued tokens per model: the limit, and the most seen at once. */
  readonly enqueued: EnqueuedTokens

  constructor(
    private readonly store: Store,
    private readonly faults: Faults,
    private readonly config: BatchesConfig
  ) {
    this.anthropic = new AnthropicBatches(store, faults, config)
    this.models = config.models
    this.enqueued = new EnqueuedTokens(config.enqueuedTokenLimit)
  }

  // -------------------------------------------------------------------------------------------
  // API operations
  // -------------------------------------------------------------------------------------------

  /** `id`: the new batch's id (default `batch_<hex>`, OpenAI's shape). */
  async create(body: unknown, id = `batch_${randomHex(16)}`): Promise<Obj> {
    if (!isObject(body)) throw invalidRequest("The request body must be a JSON object.")
    const inputFileId = body["input_file_id"]
    const endpoint = body["endpoint"]
    const window = body["completion_window"]
    if (typeof inputFileId !== "string" || inputFileId.length === 0) throw missingParameter("input_file_id")
    if (typeof endpoint !== "string" || endpoint.length === 0) throw missingParameter("endpoint")
    if (!OPENAI_BATCH_ENDPOINTS.includes(endpoint)) {
      throw invalidValue("endpoint", `'${endpoint}'. Supported values are: ${OPENAI_BATCH_ENDPOINTS.map((e) => `'${e}'`).join(", ")}.`)
    }
    if (!SUPPORTED_ENDPOINTS.includes(endpoint)) {
      throw invalidRequest(
        `The sluice emulator does not serve '${endpoint}' batches; it serves ${SUPPORTED_ENDPOINTS.join(" and ")}.`,
        "endpoint",
        "unsupported_value"
      )
    }
    if (window === undefined || window === null) throw missingParameter("completion_window")
    if (window !== "24h") throw invalidValue("completion_window", `'${String(window)}'. Supported values are: '24h'.`)
    const metadata = parseMetadata(body["metadata"])
    parseOutputExpiresAfter(body["output_expires_after"])

    const file = this.store.files.get(inputFileId)
    if (file === undefined) throw notFound(`No such File object: ${inputFileId}`, "input_file_id")
    if (file.purpose !== "batch" && file.purpose !== "batch-api") {
      throw invalidRequest(`The input file must have purpose 'batch' (or 'batch-api'), not '${file.purpose}'.`, "input_file_id", "invalid_value")
    }

    // The check and the record are one step: two creates at once must not both fit under the limit.
    const record = await this.serially(async (): Promise<BatchRecord> => {
      const limited = await this.enqueuedCheck(inputFileId)
      if (limited.tokenLimitExceeded !== undefined && this.config.enqueuedLimitOnCreate === true) {
        throw new ApiError(400, limited.tokenLimitExceeded, "invalid_request_error", null, "token_limit_exceeded")
      }
      const made: BatchRecord = {
        id,
        seq: this.store.nextSeq(),
        endpoint,
        input_file_id: inputFileId,
        completion_window: "24h",
        metadata,
        ...limited,
        ...captureTiming(this.config.clock(), this.config, this.config.validatingMs, this.faults.settings),
        final: null
      }
      this.store.batches.set(made.id, made)
      return made
    })
    await this.store.persist()
    // Validate in the background now, so the first retrieve after validatingMs finds it done.
    this.inputFor(record).catch(() => undefined)
    this.config.log(`batch ${record.id} created (input ${inputFileId}, ${endpoint})`)
    return this.observe(record)
  }

  /**
   * Under an enqueued-token limit: the new batch's model and tokens, and whether they take the
   * model past the limit with the batches not yet ended (then it fails validation, as on OpenAI).
   */
  private createQueue: Promise<unknown> = Promise.resolve()
  private serially<A>(f: () => Promise<A>): Promise<A> {
    const next = this.createQueue.then(f, f)
    this.createQueue = next.catch(() => undefined)
    return next
  }

  private async enqueuedCheck(inputFileId: string): Promise<Pick<BatchRecord, "enqueued" | "tokenLimitExceeded">> {
    const limit = this.enqueued.limit
    if (limit === undefined) return {}
    const counted = await countInput(this.store.filePath(inputFileId), this.config.approximateTokens === true)
    let enqueued = 0
    for (const other of this.store.batches.values()) {
      if (other.enqueued?.model !== counted.model || other.tokenLimitExceeded !== undefined) continue
      if (!isTerminal(await this.currentStatus(other))) enqueued += other.enqueued.tokens
    }
    const total = enqueued + counted.tokens
    if (total > limit) {
      this.config.log(`enqueued tokens ${counted.model}: ${counted.tokens} more would make ${total}, over the limit of ${limit}: token_limit_exceeded`)
      return { enqueued: counted, tokenLimitExceeded: limitMessage(counted.model, limit, enqueued) }
    }
    this.enqueued.accepted(counted.model, total)
    this.config.log(`enqueued tokens ${counted.model}: ${total} of ${limit}`)
    return { enqueued: counted }
  }

  async retrieve(id: string): Promise<Obj> {
    return this.observe(this.get(id))
  }

  async list(after: string | undefined, limit: number): Promise<Obj> {
    const all = [...this.store.batches.values()].sort((a, b) => b.seq - a.seq)
    let start = 0
    if (after !== undefined) {
      const index = all.findIndex((batch) => batch.id === after)
      start = index === -1 ? all.length : index + 1
    }
    const page = all.slice(start, start + limit)
    const data = await Promise.all(page.map((batch) => this.observe(batch)))
    return {
      object: "list",
      data,
      first_id: page[0]?.id ?? null,
      last_id: page[page.length - 1]?.id ?? null,
      has_more: start + limit < all.length
    }
  }

  async cancel(id: string): Promise<Obj> {
    const record = this.get(id)
    const status = await this.currentStatus(record)
    if (isTerminal(status)) throw invalidRequest(`Cannot cancel a batch with status '${status}'.`, null, "invalid_state")
    if (status !== "cancelling") {
      record.cancelRequestedMs = this.config.clock()
      await this.store.persist()
      this.config.log(`batch ${id} cancel requested`)
    }
    return this.observe(record)
  }

  /** Test API: expire a live batch now, keeping the results finished so far. */
  async expireNow(id: string): Promise<Obj> {
    if (this.anthropic.owns(id)) return this.anthropic.expireNow(id)
    const record = this.get(id)
    const status = await this.currentStatus(record)
    if (isTerminal(status)) throw invalidRequest(`Cannot expire a batch with status '${status}'.`, null, "invalid_state")
    record.forcedExpireMs = this.config.clock()
    await this.store.persist()
    this.config.log(`batch ${id} expired by fault`)
    return this.observe(record)
  }

  /**
   * The ledger's batch members, `"batches":[…],"deliveries":[…]`, as JSON text chunks (custom_ids
   * can be many: never one big string); controlRoutes.ts wraps them with the real-time calls.
   */
  async *ledgerMembers(): AsyncGenerator<string> {
    const openai = [...this.store.batches.values()].map((record): LedgerEntry => ({
      seq: record.seq,
      id: record.id,
      head: async () => {
        const view = await this.observe(record)
        if (record.final === null) await this.inputFor(record).catch(() => undefined)
        return {
          id: record.id,
          created_at: view["created_at"],
          status: view["status"],
          metadata: record.metadata,
          input_file_id: record.input_file_id,
          ...geminiLedgerFields(record)
        }
      },
      ended: () => record.final !== null
    }))
    // Anthropic batches (metadata {}, input_file_id null) interleave by creation order.
    const entries = [...openai, ...this.anthropic.ledgerEntries()].sort((a, b) => a.seq - b.seq)
    yield '"batches":['
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!
      const head = JSON.stringify(await entry.head())
      const ids = await readLines(this.store.idsPath(entry.id))
      yield `${i > 0 ? "," : ""}${head.slice(0, -1)},"custom_ids":[${ids.join(",")}]}`
    }
    yield '],"deliveries":['
    let first = true
    for (const entry of entries) {
      if (!entry.ended()) continue
      const batchId = JSON.stringify(entry.id)
      const delivered = await readLines(this.store.deliveredPath(entry.id))
      if (delivered.length === 0) continue
      yield `${first ? "" : ","}${delivered.map((id) => `{"custom_id":${id},"batch_id":${batchId}}`).join(",")}`
      first = false
    }
    yield "]"
  }

  /**
   * Observes every live OpenAI batch once, so those whose time has come end now (and `ended`
   * hears of them) without waiting for a poll: the webhooks' sweep.
   */
  async sweep(): Promise<void> {
    const live = [...this.store.batches.values()].filter((r) => r.final === null && r.id.startsWith("batch_"))
    for (const record of live) await this.observe(record).catch(() => undefined)
  }

  /** Waits for background validation and result writing (before close or reset). */
  async quiesce(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight])
    await this.anthropic.quiesce()
  }

  async reset(): Promise<void> {
    await this.quiesce()
    await this.anthropic.reset()
    this.inputs.clear()
    this.readyInputs.clear()
    this.enqueued.reset()
    this.finishing.clear()
  }

  // -------------------------------------------------------------------------------------------
  // Lifecycle
  // -------------------------------------------------------------------------------------------

  private get(id: string): BatchRecord {
    const record = this.store.batches.get(id)
    if (record === undefined) throw notFound(`No batch found with id '${id}'.`, "batch_id")
    return record
  }

  private track<A>(promise: Promise<A>): Promise<A> {
    this.inflight.add(promise)
    const done = () => this.inflight.delete(promise)
    promise.then(done, done)
    return promise
  }

  private inputFor(record: BatchRecord): Promise<AnalysedInput> {
    const cached = this.inputs.get(record.id)
    if (cached !== undefined) return cached
    if (record.tokenLimitExceeded !== undefined) {
      const error: BatchErrorEntry = { code: "token_limit_exceeded", message: record.tokenLimitExceeded, param: null, line: null }
      const failed: AnalysedInput = { valid: false, total: 0, model: record.enqueued?.model ?? null, errors: [error] }
      this.readyInputs.set(record.id, failed)
      const settled = Promise.resolve(failed)
      this.inputs.set(record.id, settled)
      return settled
    }
    const promise = this.track(
      analyseInput({
        inputPath: this.store.filePath(record.input_file_id),
        idsPath: this.store.idsPath(record.id),
        endpoint: record.endpoint,
        batchId: record.id,
        seed: this.config.seed,
        errorRate: record.errorRate,
        invalidJsonRate: record.invalidJsonRate,
        models: this.config.models,
        seen: this.store.seen
      }).then(
        async (input) => {
          if (input.valid && input.seenKeys.length > 0) await this.store.persist()
          this.readyInputs.set(record.id, input)
          return input
        },
        (error: unknown): AnalysedInput => {
          if ((error as { code?: unknown }).code !== "ENOENT") throw error
          // The input vanished (e.g. state dir edited by hand): fail the batch rather than the API call.
          const missing: BatchErrorEntry = {
            code: "invalid_request",
            message: `The input file ${record.input_file_id} no longer exists.`,
            param: "input_file_id",
            line: null
          }
          const failed: AnalysedInput = { valid: false, total: 0, model: null, errors: [missing] }
          this.readyInputs.set(record.id, failed)
          return failed
        }
      )
    )
    this.inputs.set(record.id, promise)
    promise.catch(() => this.inputs.delete(record.id)) // an I/O failure is retried on the next observation
    return promise
  }

  private async currentStatus(record: BatchRecord): Promise<BatchStatus> {
    const view = await this.observe(record)
    return view["status"] as BatchStatus
  }

  /** The Batch object as of now; writes the results first if the batch just became terminal. */
  private async observe(record: BatchRecord): Promise<Obj> {
    const now = this.config.clock()
    if (record.final === null && needsInput(record, now)) {
      let input = this.readyInputs.get(record.id)
      if (input === undefined) {
        const pending = this.inputFor(record)
        // A big input can take a second or more to validate: until then the batch is simply still "validating".
        if (!(await settledForPoll(pending, this.config.clockDriven()))) return render(record, liveSnapshot(undefined, timeline(record, undefined, now)), now)
        input = await pending
      }
      const line = timeline(record, input, now)
      if (!isTerminal(line.status)) return render(record, liveSnapshot(input, line), now)
      const writing = this.finish(record, input, line)
      if (line.status === "completed" && !(await settledForPoll(writing, this.config.clockDriven()))) {
        // Big result files take a while: keep answering "finalizing" (as the real service would)
        // instead of holding the poll open; "completed" shows once the files exist.
        return render(record, liveSnapshot(input, { ...line, status: "finalizing", completedAtMs: null }), now)
      }
      await writing
    }
    if (record.final !== null) return render(record, record.final, now)
    return render(record, liveSnapshot(undefined, timeline(record, undefined, now)), now)
  }

  private finish(record: BatchRecord, input: AnalysedInput, line: Timeline): Promise<void> {
    const running = this.finishing.get(record.id)
    if (running !== undefined) return running
    const promise = this.track(this.writeFinal(record, input, line))
    this.finishing.set(record.id, promise)
    const cleanup = () => this.finishing.delete(record.id)
    promise.then(cleanup, cleanup)
    return promise
  }

  private async writeFinal(record: BatchRecord, input: AnalysedInput, line: Timeline): Promise<void> {
    if (record.final !== null) return
    const snapshot = liveSnapshot(input, line)
    let outputFileId: string | null = null
    let errorFileId: string | null = null
    let inputTokens = 0
    let outputTokens = 0
    if (input.valid && line.status !== "failed") {
      const settings = this.faults.settings
      const outputId = `file-${randomHex(12)}`
      const errorId = `file-${randomHex(12)}`
      const written = await writeResults({
        batchId: record.id,
        endpoint: record.endpoint,
        seed: this.config.seed,
        approximateTokens: this.config.approximateTokens === true,
        inputPath: this.store.filePath(record.input_file_id),
        input,
        processed: line.processed,
        notRun: line.status === "expired" ? "batch_expired" : "batch_cancelled",
        dropLines: settings.dropLines,
        created: toUnixSeconds(line.inProgressAtMs ?? record.createdMs),
        outputPath: this.store.filePath(outputId),
        errorPath: this.store.filePath(errorId),
        deliveredPath: this.store.deliveredPath(record.id)
      })
      inputTokens = written.inputTokens
      outputTokens = written.outputTokens
      const createdAt = toUnixSeconds(this.config.clock())
      const register = async (id: string, lines: number, bytes: number, suffix: string): Promise<string | null> => {
        if (lines === 0) {
          await unlink(this.store.filePath(id)).catch(() => undefined)
          return null
        }
        const filename = `${record.id}_${suffix}.jsonl`
        this.store.files.set(id, { id, bytes, created_at: createdAt, filename, purpose: "batch_output", seq: this.store.nextSeq() })
        return id
      }
      outputFileId = await register(outputId, written.outputLines, written.outputBytes, "output")
      errorFileId = await register(errorId, written.errorLines, written.errorBytes, "error")
    }
    const terminalAt =
      line.completedAtMs ?? line.cancelledAtMs ?? line.expiredAtMs ?? line.failedAtMs ?? this.config.clock()
    record.final = {
      ...snapshot,
      status: line.status as BatchFinal["status"],
      inputTokens,
      outputTokens,
      outputFileId,
      errorFileId,
      outputVisibleAtMs: terminalAt + this.faults.settings.lateOutputFileMs
    }
    this.inputs.delete(record.id)
    this.readyInputs.delete(record.id)
    // An input deleted while this batch ran kept its bytes until now (see deleteFile).
    if (!this.store.files.has(record.input_file_id) && !this.store.isInputOfLiveBatch(record.input_file_id)) {
      await unlink(this.store.filePath(record.input_file_id)).catch(() => undefined)
    }
    await this.store.persist()
    this.config.log(
      `batch ${record.id} ${line.status}: ${snapshot.completed} completed, ${snapshot.failed} failed of ${snapshot.total}`
    )
    if (record.id.startsWith("batch_")) this.config.ended?.(record.id, line.status)
  }
}

// ---------------------------------------------------------------------------------------------

const readLines = async (path: string): Promise<Array<string>> => {
  try {
    const text = await readFile(path, "utf8")
    return text.split("\n").filter((line) => line.length > 0)
  } catch {
    return []
  }
}

/**
 * Anthropic message batches (providers.md section 3 and 14): create with synchronous
 * envelope validation, the `in_progress` -> (`canceling` ->) `ended` lifecycle, list,
 * cancel, delete, results, forced expiry and the ledger.
 *
 * - Create streams the body (up to 256 MB, `requests` ≤ 100,000) into `<id>.requests.jsonl`
 *   and the ledger's ids file; custom_ids are checked (pattern, uniqueness) before the batch
 *   exists. Params are checked only when the batch runs: a bad request becomes an `errored`
 *   result, never a 400.
 * - The lifecycle is the OpenAI one (lifecycle.ts) without a validating phase: requests are
 *   processed at the batch's speed in windows of 512 in hash order; "finalizing" still shows
 *   `in_progress`. `request_counts` stay `{processing: N}` until the batch has ended.
 * - The results file is written once, when the batch is first seen terminal; per-request
 *   outcomes are decided then (params check, then the first-time errorRate / invalidJsonRate
 *   faults, remembered in the store's seen map so a resubmitted request succeeds), and lines
 *   not processed by a cancel or an expiry become `canceled` / `expired`.
 */
import { unlink } from "node:fs/promises"
import type { IncomingMessage } from "node:http"
import { seenKey, WINDOW, windowOrder } from "./analysis.js"
import { answerParams, checkParams, CUSTOM_ID_PATTERN, forcedTool } from "./anthropicAnswers.js"
import { BodyError, RequestsScanner } from "./anthropicBody.js"
import type { BatchesConfig } from "./batches.js"
import { settledForPoll } from "./clock.js"
import { ApiError, invalidRequest, notFound } from "./errors.js"
import type { Faults } from "./faults.js"
import { DigestOffset, fractionAt, mixHex, randomHex, requestDigest, sha256 } from "./hash.js"
import { isBlank, readLineChunks } from "./jsonl.js"
import { isTerminal, type Timeline, timeline } from "./lifecycle.js"
import { captureTiming } from "./store.js"
import type { AnthropicBatchRecord, AnthropicFinal, AnthropicSurface, Store } from "./store.js"
import { AppendFile } from "./appendFile.js"

/** 256 MB, read as 10^6 bytes (the stricter reading): a client that passes here passes there. */
export const MAX_BODY_BYTES = 256_000_000
export const MAX_REQUESTS = 100_000

/** Where each surface serves its batches (results_url is built from it). */
export const SURFACE_PATHS: Readonly<Record<AnthropicSurface, string>> = {
  anthropic: "/v1/messages/batches",
  gateway: "/anthropic-gateway/v1/batches"
}

type Obj = { readonly [key: string]: unknown }
const isObject = (value: unknown): value is Obj => typeof value === "object" && value !== null && !Array.isArray(value)

const iso = (ms: number): string => new Date(ms).toISOString()
const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(ms))

/** A ledger line source: one per batch, merged with the OpenAI batches by creation order. */
export interface LedgerEntry {
  readonly seq: number
  readonly id: string
  /** The batch's ledger fields (without custom_ids); observing it may end it. */
  readonly head: () => Promise<Record<string, unknown>>
  /** True once the results (and the delivered ids) are written. */
  readonly ended: () => boolean
}

const tooLarge = () =>
  new ApiError(413, `Request too large: a message batch takes at most ${MAX_BODY_BYTES} bytes.`, "request_too_large")

/** Checks one element of `requests`; returns its custom_id. */
const checkEnvelope = (element: unknown, index: number, seen: ReadonlySet<string>): string => {
  if (!isObject(element)) throw invalidRequest(`requests.${index}: Input should be a valid dictionary`)
  for (const key of Object.keys(element)) {
    if (key !== "custom_id" && key !== "params") throw invalidRequest(`requests.${index}.${key}: Extra inputs are not permitted`)
  }
  const customId = element["custom_id"]
  if (customId === undefined) throw invalidRequest(`requests.${index}.custom_id: Field required`)
  if (typeof customId !== "string") throw invalidRequest(`requests.${index}.custom_id: Input should be a valid string`)
  if (customId.length > 64) throw invalidRequest(`requests.${index}.custom_id: String should have at most 64 characters`)
  if (!CUSTOM_ID_PATTERN.test(customId)) {
    throw invalidRequest(`requests.${index}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'`)
  }
  if (seen.has(customId)) {
    throw invalidRequest(`requests.${index}.custom_id: Duplicate custom_id '${customId}'; each request in a batch needs a unique custom_id.`)
  }
  if (element["params"] === undefined) throw invalidRequest(`requests.${index}.params: Field required`)
  if (!isObject(element["params"])) throw invalidRequest(`requests.${index}.params: Input should be a valid dictionary`)
  return customId
}

interface Counts {
  succeeded: number
  errored: number
  canceled: number
  expired: number
}

interface ParsedLine {
  readonly customId: string
  readonly params: Obj
  readonly digest: Buffer
}

export class AnthropicBatches {
  private readonly finishing = new Map<string, Promise<void>>()
  private readonly inflight = new Set<Promise<unknown>>()

  constructor(
    private readonly store: Store,
    private readonly faults: Faults,
    private readonly config: BatchesConfig
  ) {}

  owns(id: string): boolean {
    return this.store.anthropicBatches.has(id)
  }

  // -------------------------------------------------------------------------------------------
  // API operations
  // -------------------------------------------------------------------------------------------

  /** `POST …/batches`: reads the body as a stream; answers only once it has all arrived. */
  async create(req: IncomingMessage, surface: AnthropicSurface, origin: string): Promise<Obj> {
    const declared = Number(req.headers["content-length"])
    if (Number.isFinite(declared) && declared > MAX_BODY_BYTES) throw tooLarge()
    const id = `msgbatch_${randomHex(12)}`
    const requestsPath = this.store.anthropicRequestsPath(id)
    const idsPath = this.store.idsPath(id)
    const requests = new AppendFile(requestsPath)
    const ids = new AppendFile(idsPath)
    const scanner = new RequestsScanner()
    const customIds = new Set<string>()
    let size = 0
    let failure: unknown = undefined
    try {
      // Never leave the loop early: a client gets its answer only after sending the whole body
      // (destroying the request would reset the socket instead of answering).
      for await (const chunk of req as AsyncIterable<Buffer>) {
        size += chunk.length
        if (failure !== undefined) continue
        if (size > MAX_BODY_BYTES) {
          failure = tooLarge()
          continue
        }
        try {
          let lines = ""
          let idLines = ""
          for (const element of scanner.feed(chunk)) {
            const customId = checkEnvelope(element, customIds.size, customIds)
            customIds.add(customId)
            if (customIds.size > MAX_REQUESTS) throw invalidRequest(`requests: List should have at most ${MAX_REQUESTS} items`)
            const { params } = element as Obj
            lines += `${JSON.stringify({ custom_id: customId, params })}\n`
            idLines += `${JSON.stringify(customId)}\n`
          }
          await requests.write(lines)
          await ids.write(idLines)
        } catch (error) {
          failure = error
        }
      }
      if (failure === undefined) {
        try {
          scanner.end()
          if (customIds.size === 0) throw invalidRequest("requests: List should have at least 1 item")
        } catch (error) {
          failure = error
        }
      }
      if (failure !== undefined) throw failure instanceof BodyError ? invalidRequest(failure.message) : failure
      await requests.close()
      await ids.close()
    } catch (error) {
      await requests.close().catch(() => undefined)
      await ids.close().catch(() => undefined)
      await unlink(requestsPath).catch(() => undefined)
      await unlink(idsPath).catch(() => undefined)
      throw error
    }

    const record: AnthropicBatchRecord = {
      id,
      seq: this.store.nextSeq(),
      surface,
      total: customIds.size,
      bytes: size,
      origin,
      ...captureTiming(this.config.clock(), this.config, 0, this.faults.settings),
      deletedMs: null,
      final: null
    }
    this.store.anthropicBatches.set(id, record)
    await this.store.persist()
    this.config.log(`message batch ${id} created (${record.total} requests, ${surface})`)
    return this.observe(record, origin)
  }

  async retrieve(id: string, surface: AnthropicSurface, origin: string | undefined): Promise<Obj> {
    return this.observe(this.get(id, surface), origin)
  }

  /** Newest first; `after_id` pages towards older batches, `before_id` towards newer ones. */
  async list(
    surface: AnthropicSurface,
    page: { readonly limit: number; readonly afterId: string | undefined; readonly beforeId: string | undefined },
    origin: string | undefined
  ): Promise<Obj> {
    if (page.afterId !== undefined && page.beforeId !== undefined) {
      throw invalidRequest("after_id and before_id cannot be given together.")
    }
    const all = [...this.store.anthropicBatches.values()]
      .filter((r) => r.surface === surface && r.deletedMs === null)
      .sort((a, b) => b.seq - a.seq)
    let start: number
    let end: number
    let hasMore: boolean
    if (page.beforeId !== undefined) {
      const index = all.findIndex((r) => r.id === page.beforeId)
      end = index === -1 ? 0 : index
      start = Math.max(0, end - page.limit)
      hasMore = start > 0
    } else {
      const index = page.afterId === undefined ? -1 : all.findIndex((r) => r.id === page.afterId)
      start = page.afterId === undefined ? 0 : index === -1 ? all.length : index + 1
      end = Math.min(all.length, start + page.limit)
      hasMore = end < all.length
    }
    const records = all.slice(start, end)
    const data = await Promise.all(records.map((r) => this.observe(r, origin)))
    return {
      data,
      has_more: hasMore,
      first_id: records[0]?.id ?? null,
      last_id: records[records.length - 1]?.id ?? null
    }
  }

  async cancel(id: string, surface: AnthropicSurface, origin: string | undefined): Promise<Obj> {
    const record = this.get(id, surface)
    if (this.hasEnded(record)) throw invalidRequest(`Message batch ${id} has already ended and cannot be canceled.`)
    if (record.cancelRequestedMs === null) {
      record.cancelRequestedMs = this.config.clock()
      await this.store.persist()
      this.config.log(`message batch ${id} cancel requested`)
    }
    return this.observe(record, origin)
  }

  /** `DELETE`: only once processing has ended. The ledger keeps the batch. */
  async remove(id: string, surface: AnthropicSurface): Promise<Obj> {
    const record = this.get(id, surface)
    await this.observe(record, undefined)
    if (record.final === null) {
      throw invalidRequest(`Message batch ${id} is still processing; cancel it and wait for it to end before deleting it.`)
    }
    record.deletedMs = this.config.clock()
    await this.store.persist()
    await unlink(this.store.anthropicRequestsPath(id)).catch(() => undefined)
    await unlink(this.store.anthropicResultsPath(id)).catch(() => undefined)
    this.config.log(`message batch ${id} deleted`)
    return { id, type: "message_batch_deleted" }
  }

  /** The results file of an ended batch. */
  async results(id: string, surface: AnthropicSurface): Promise<{ readonly path: string; readonly bytes: number }> {
    const record = this.get(id, surface)
    await this.observe(record, undefined)
    if (record.final === null) {
      throw notFound(`No results for message batch ${id} yet: its processing has not ended.`)
    }
    return { path: this.store.anthropicResultsPath(id), bytes: record.final.resultsBytes }
  }

  /** Test API: expire a live batch now; what it finished so far stays. */
  async expireNow(id: string): Promise<Obj> {
    const record = this.store.anthropicBatches.get(id)
    if (record === undefined || record.deletedMs !== null) throw notFound(`Not found: message batch ${id}`)
    if (this.hasEnded(record)) throw invalidRequest(`Message batch ${id} has already ended and cannot expire.`)
    record.forcedExpireMs = this.config.clock()
    await this.store.persist()
    this.config.log(`message batch ${id} expired by fault`)
    return this.observe(record, undefined)
  }

  ledgerEntries(): Array<LedgerEntry> {
    return [...this.store.anthropicBatches.values()].map((record) => ({
      seq: record.seq,
      id: record.id,
      head: async () => {
        const view = await this.observe(record, undefined)
        return {
          id: record.id,
          created_at: Math.floor(record.createdMs / 1000),
          status: view["processing_status"],
          metadata: {},
          input_file_id: null,
          api: record.surface === "anthropic" ? "anthropic" : "anthropic-gateway",
          deleted: record.deletedMs !== null
        }
      },
      ended: () => record.final !== null
    }))
  }

  async quiesce(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight])
  }

  async reset(): Promise<void> {
    await this.quiesce()
    this.finishing.clear()
  }

  // -------------------------------------------------------------------------------------------
  // Lifecycle
  // -------------------------------------------------------------------------------------------

  private get(id: string, surface: AnthropicSurface): AnthropicBatchRecord {
    const record = this.store.anthropicBatches.get(id)
    if (record === undefined || record.surface !== surface || record.deletedMs !== null) {
      throw notFound(`Not found: message batch ${id}`)
    }
    return record
  }

  private hasEnded(record: AnthropicBatchRecord): boolean {
    return record.final !== null || isTerminal(this.line(record, this.config.clock()).status)
  }

  private line(record: AnthropicBatchRecord, now: number): Timeline {
    return timeline(record, { valid: true, total: record.total }, now)
  }

  private track<A>(promise: Promise<A>): Promise<A> {
    this.inflight.add(promise)
    const done = () => this.inflight.delete(promise)
    promise.then(done, done)
    return promise
  }

  /** The MessageBatch object as of now; writes the results first if the batch just ended. */
  private async observe(record: AnthropicBatchRecord, origin: string | undefined): Promise<Obj> {
    if (record.final === null) {
      const line = this.line(record, this.config.clock())
      if (isTerminal(line.status)) {
        const writing = this.finish(record, line)
        // A big batch takes a while to answer: it stays in progress until its results exist.
        if (!(await settledForPoll(writing, this.config.clockDriven()))) return this.render(record, origin)
        await writing
      }
    }
    return this.render(record, origin)
  }

  private render(record: AnthropicBatchRecord, origin: string | undefined): Obj {
    const final = record.final
    const ended = final !== null
    const counts = ended
      ? { processing: 0, succeeded: final.succeeded, errored: final.errored, canceled: final.canceled, expired: final.expired }
      : { processing: record.total, succeeded: 0, errored: 0, canceled: 0, expired: 0 }
    return {
      id: record.id,
      type: "message_batch",
      processing_status: ended ? "ended" : record.cancelRequestedMs !== null ? "canceling" : "in_progress",
      request_counts: counts,
      ended_at: ended ? iso(final.endedAtMs) : null,
      created_at: iso(record.createdMs),
      expires_at: iso(record.expiresAtMs),
      archived_at: null,
      cancel_initiated_at: isoOrNull(record.cancelRequestedMs),
      results_url: ended ? `${origin ?? record.origin}${SURFACE_PATHS[record.surface]}/${record.id}/results` : null
    }
  }

  private finish(record: AnthropicBatchRecord, line: Timeline): Promise<void> {
    const running = this.finishing.get(record.id)
    if (running !== undefined) return running
    const promise = this.track(this.writeFinal(record, line))
    this.finishing.set(record.id, promise)
    const cleanup = () => this.finishing.delete(record.id)
    promise.then(cleanup, cleanup)
    return promise
  }

  private async writeFinal(record: AnthropicBatchRecord, line: Timeline): Promise<void> {
    if (record.final !== null) return
    const seed = this.config.seed
    const dropLines = this.faults.settings.dropLines
    const notRun = line.status === "expired" ? "expired" : "canceled"
    const batchKey = sha256(record.id)
    const out = new AppendFile(this.store.anthropicResultsPath(record.id))
    const delivered = new AppendFile(this.store.deliveredPath(record.id))
    const counts: Counts = { succeeded: 0, errored: 0, canceled: 0, expired: 0 }
    let bytes = 0
    let inputTokens = 0
    let outputTokens = 0
    let window: Array<ParsedLine> = []
    let windowStart = 0

    const firstTime = (key: string): boolean => {
      const owner = this.store.seen.get(key)
      if (owner !== undefined && owner !== record.id) return false
      if (owner === undefined) this.store.seen.set(key, record.id)
      return true
    }

    const resultOf = (request: ParsedLine): Record<string, unknown> => {
      const problem = checkParams(request.params)
      const requestId = `req_${mixHex(request.digest, batchKey, 12, 4)}`
      const model = request.params["model"]
      // As the Messages API answers an unknown model (404 not_found_error), after the shape checks.
      if (problem === undefined && typeof model === "string" && !this.config.models.accepts(model)) {
        counts.errored++
        return errored("not_found_error", `model: ${model}`, requestId)
      }
      if (problem !== undefined) {
        counts.errored++
        return errored("invalid_request_error", problem, requestId)
      }
      if (fractionAt(request.digest, DigestOffset.error) < record.errorRate && firstTime(seenKey("error", request.digest))) {
        counts.errored++
        return errored("api_error", "Internal server error (sluice emulator errorRate fault).", requestId)
      }
      const invalidJson =
        forcedTool(request.params) !== undefined &&
        fractionAt(request.digest, DigestOffset.invalidJson) < record.invalidJsonRate &&
        firstTime(seenKey("invalidJson", request.digest))
      const answer = answerParams(request.params, { seed, id: mixHex(request.digest, batchKey, 12), invalidJson, approximateTokens: this.config.approximateTokens })
      counts.succeeded++
      inputTokens += answer.inputTokens
      outputTokens += answer.outputTokens
      return { type: "succeeded", message: answer.message }
    }

    const flush = async () => {
      let text = ""
      let ids = ""
      const keys = window.map((request) => request.digest.readUInt32BE(DigestOffset.order))
      const ranked = windowOrder(keys, 0, window.length)
      for (let rank = 0; rank < ranked.length; rank++) {
        const request = window[ranked[rank]!]!
        let result: Record<string, unknown>
        if (windowStart + rank >= line.processed) {
          counts[notRun]++
          result = { type: notRun }
        } else {
          result = resultOf(request)
        }
        // dropLines: the provider "lost" the line; its outcome (and count) stands. Drops are
        // per batch (digest mixed with the batch key), as for OpenAI batches: the same request
        // resubmitted usually comes back.
        if (parseInt(mixHex(request.digest, batchKey, 4, DigestOffset.drop), 16) / 0x1_0000_0000 < dropLines) continue
        text += `${JSON.stringify({ custom_id: request.customId, result })}\n`
        if (result["type"] === "succeeded") ids += `${JSON.stringify(request.customId)}\n`
      }
      bytes += Buffer.byteLength(text)
      await out.write(text)
      await delivered.write(ids)
      windowStart += window.length
      window = []
    }

    let complete = false
    try {
      for await (const lines of readLineChunks(this.store.anthropicRequestsPath(record.id))) {
        for (const raw of lines) {
          if (isBlank(raw)) continue
          const parsed = JSON.parse(raw) as { custom_id: string; params: Obj }
          const paramsJson = JSON.stringify(parsed.params)
          window.push({ customId: parsed.custom_id, params: parsed.params, digest: requestDigest(seed, parsed.custom_id, paramsJson) })
          if (window.length === WINDOW) await flush()
        }
      }
      if (window.length > 0) await flush()
      complete = true
    } finally {
      const closing = Promise.all([out.close(), delivered.close()])
      if (complete) await closing
      else await closing.catch(() => undefined)
    }

    const endedAtMs = line.completedAtMs ?? line.cancelledAtMs ?? line.expiredAtMs ?? this.config.clock()
    const final: AnthropicFinal = {
      status: line.status as AnthropicFinal["status"],
      endedAtMs,
      ...counts,
      resultsBytes: bytes,
      inputTokens,
      outputTokens
    }
    record.final = final
    await this.store.persist()
    this.config.log(
      `message batch ${record.id} ended (${line.status}): ${counts.succeeded} succeeded, ${counts.errored} errored, ` +
        `${counts.canceled} canceled, ${counts.expired} expired of ${record.total}`
    )
  }
}

const errored = (type: string, message: string, requestId: string): Record<string, unknown> => ({
  type: "errored",
  error: { type: "error", error: { type, message }, request_id: requestId }
})
